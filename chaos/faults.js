'use strict'
/**
 * Link and outage faults the kill/terminate phases cannot produce, each on a harness
 * of its own (chaos/harness.js `Chaos`) whose workers reach a service through a fault
 * proxy (chaos/proxy.js) while the checker and the nodes' side table use the service
 * directly. Used by __test__/faults.test.js (short) and chaos/run.js (full).
 *
 * Every case returns { name, expected, observed, pass, ms } where `ms` holds the
 * measured times (detection, recovery) for the report.
 */
const fs = require('node:fs')
const path = require('node:path')
const { Chaos } = require('./harness')
const { sleep } = require('./services')
const { blueprints } = require('./blueprints')
const { FaultProxy } = require('./proxy')
const { startPrivatePostgres, startPrivateRedis } = require('./private')

const PG_PORT = 5432
const AMQP_PORT = 5672
const POSTGRES_URL = process.env.POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/test'
const RABBITMQ_URL = process.env.RABBITMQ_URL || 'amqp://guest:guest@127.0.0.1:5672'

const viaProxy = (url, port) => {
	const u = new URL(url)
	u.hostname = '127.0.0.1'
	u.port = String(port)
	return u.toString()
}

/** Worker log lines `{ at (ms), text }` of every worker of the harness that contain `needle`. */
function logLines(h, needle) {
	const out = []
	for (const f of fs.readdirSync(h.logDir)) {
		const text = fs.readFileSync(path.join(h.logDir, f), 'utf8')
		for (const line of text.split('\n')) {
			if (!line.includes(needle)) continue
			const m = /\] (\d{4}-\d\d-\d\dT[\d:.]+Z) /.exec(line)
			if (m) out.push({ at: Date.parse(m[1]), text: line })
		}
	}
	return out.sort((a, b) => a.at - b.at)
}

/** Seconds from `t0` to the first log line containing `needle` after it, or null. */
function firstAfter(h, needle, t0) {
	const l = logLines(h, needle).find((x) => x.at >= t0)
	return l ? l.at - t0 : null
}

/** (run, node) pairs executed more than once, as "run/node×n". */
function reRuns(execs) {
	const n = new Map()
	for (const e of execs) n.set(`${e.run_id}/${e.node_id}`, (n.get(`${e.run_id}/${e.node_id}`) || 0) + 1)
	return [...n].filter(([, c]) => c > 1).map(([k, c]) => `${k.split('.').slice(-2).join('.')}×${c}`)
}

async function waitFor(check, timeoutMs, everyMs = 50) {
	const deadline = Date.now() + timeoutMs
	while (Date.now() < deadline) {
		if (await check()) return true
		await sleep(everyMs)
	}
	return false
}

/** A harness whose workers reach `service` through a new proxy. */
async function proxiedHarness({ label, service, workers = 1, concurrency = 16, log, timings }) {
	const proxy = await FaultProxy.start({ port: service === 'pg' ? PG_PORT : AMQP_PORT })
	const env = {}
	if (service === 'pg') env.ADAPTER_POSTGRES_URL = viaProxy(POSTGRES_URL, proxy.port)
	else env.ADAPTER_RABBITMQ_URL = viaProxy(RABBITMQ_URL, proxy.port)
	if (timings) env.TIMINGS = JSON.stringify(timings)
	const h = new Chaos({ label, workers, concurrency, log, workerEnv: () => env })
	await h.setup()
	await h.startWorkers()
	return { h, proxy }
}

/** Runs whose start node has committed (their branches are in flight). */
async function waitForStarted(h, runs, timeoutMs = 20000) {
	return waitFor(async () => {
		const r = await h.pg.query(
			`SELECT count(*)::int AS n FROM "${h.t.ctx}_nodes" WHERE run_id = ANY($1) AND node_id = 'start' AND state = 'done'`,
			[runs.map((x) => x.runId)],
		)
		return r.rows[0].n === runs.length
	}, timeoutMs)
}

/**
 * PostgreSQL black hole: the worker's connections stay open and carry nothing, new
 * connections work. Expected: a stall warning naming PostgreSQL, the connections
 * replaced within 30 s (default timings), every run completed, no node run twice.
 */
async function pgBlackholeCase({ log = () => {}, runs = 6, keepLogs = false } = {}) {
	const { h, proxy } = await proxiedHarness({ label: 'pgbh', service: 'pg', log })
	let failed = true
	try {
		const list = h.fanoutRuns('pgbh', runs, () => ({ delays: { b2: 1500, b5: 800 } }))
		await h.startRuns(list)
		await waitForStarted(h, list)
		const t0 = Date.now()
		const held = proxy.blackhole()
		log(`black-holed ${held} PostgreSQL connections`)
		const pending = await h.waitForRuns(
			list.map((r) => r.runId),
			{ stallMs: 60000, timeoutMs: 90000 },
		)
		const doneMs = Date.now() - t0
		const warnMs = firstAfter(h, 'PostgreSQL at', t0)
		const replacedMs = firstAfter(h, 'the connection was closed and will be replaced', t0)
		const st = await h.statuses(list.map((r) => r.runId))
		const completed = [...st.values()].filter((s) => s.status === 'completed').length
		const again = reRuns(await h.executions(list.map((r) => r.runId)))
		const pass =
			pending.length === 0 &&
			completed === runs &&
			again.length === 0 &&
			warnMs !== null &&
			replacedMs !== null &&
			replacedMs <= 30000
		failed = !pass
		return {
			name: 'PostgreSQL black hole (sockets open, no byte flows; new connections work)',
			expected: 'stall warning naming PostgreSQL; dead connections replaced within 30 s; runs complete; no node re-run',
			observed: `${completed}/${runs} completed; stall warning after ${warnMs} ms, connection replaced after ${replacedMs} ms, all runs final after ${doneMs} ms; re-runs: ${again.join(', ') || 'none'}`,
			pass,
			ms: { warn: warnMs, replaced: replacedMs, done: doneMs },
		}
	} finally {
		await proxy.close()
		await h.cleanup({ keepLogs: keepLogs || failed })
	}
}

/**
 * A PostgreSQL outage longer than the old 30 s commit retry: every connection reset,
 * new ones refused for `outageMs`, while branches are running. Expected: their
 * commits wait in place (the broker connection is alive), no node runs again, every
 * run completes once PostgreSQL is back, and the wait is logged.
 */
async function pgOutageCase({ log = () => {}, runs = 4, outageMs = 35000, keepLogs = false } = {}) {
	const { h, proxy } = await proxiedHarness({ label: 'pgout', service: 'pg', log })
	let failed = true
	try {
		const delays = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`b${i}`, 1000]))
		const list = h.fanoutRuns('pgout', runs, () => ({ delays }))
		await h.startRuns(list)
		await waitForStarted(h, list)
		await sleep(200)
		const t0 = Date.now()
		proxy.refuse(true)
		const reset = proxy.reset()
		log(`PostgreSQL down (through the proxy) for ${outageMs} ms: ${reset} connections reset, new ones refused`)
		await sleep(outageMs)
		proxy.refuse(false)
		const t1 = Date.now()
		const pending = await h.waitForRuns(
			list.map((r) => r.runId),
			{ stallMs: 45000, timeoutMs: 90000 },
		)
		const backMs = Date.now() - t1
		const retryLog = logLines(h, 'retrying (the node is not run again)').filter((l) => l.at >= t0)
		const st = await h.statuses(list.map((r) => r.runId))
		const completed = [...st.values()].filter((s) => s.status === 'completed').length
		const again = reRuns(await h.executions(list.map((r) => r.runId)))
		const pass = pending.length === 0 && completed === runs && again.length === 0 && retryLog.length > 0
		failed = !pass
		return {
			name: `PostgreSQL unreachable for ${outageMs / 1000} s while nodes run`,
			expected:
				'commits retried in place for as long as the broker connection lives; no node re-run; runs complete after; the wait is logged',
			observed: `${completed}/${runs} completed ${backMs} ms after PostgreSQL came back; ${retryLog.length} retry warnings; re-runs: ${again.join(', ') || 'none'}`,
			pass,
			ms: { afterBack: backMs },
		}
	} finally {
		await proxy.close()
		await h.cleanup({ keepLogs: keepLogs || failed })
	}
}

/**
 * RabbitMQ black hole on the worker's connection (new connections work). Expected:
 * the dead link is declared by the heartbeat (default 10 s) within 30 s, the worker
 * reconnects, the broker redelivers what it held, every run completes. (A run may
 * complete before the reconnect: a branch's worker goes on with the join it fired, and
 * the join with its successor, under the delivery it holds; the reconnect is awaited
 * either way.)
 */
async function amqpBlackholeCase({ log = () => {}, runs = 4, keepLogs = false } = {}) {
	const { h, proxy } = await proxiedHarness({ label: 'amqpbh', service: 'amqp', log })
	let failed = true
	try {
		const list = h.fanoutRuns('amqpbh', runs, () => ({ delays: { b2: 1500 } }))
		await h.startRuns(list)
		await waitForStarted(h, list)
		const t0 = Date.now()
		const held = proxy.blackhole()
		log(`black-holed ${held} AMQP connections`)
		const pending = await h.waitForRuns(
			list.map((r) => r.runId),
			{ stallMs: 60000, timeoutMs: 90000 },
		)
		const doneMs = Date.now() - t0
		await waitFor(() => firstAfter(h, 'Reconnected to RabbitMQ', t0) !== null, Math.max(0, 35000 - doneMs))
		const reconnectMs = firstAfter(h, 'Reconnected to RabbitMQ', t0)
		const st = await h.statuses(list.map((r) => r.runId))
		const completed = [...st.values()].filter((s) => s.status === 'completed').length
		const pass = pending.length === 0 && completed === runs && reconnectMs !== null && reconnectMs <= 30000
		failed = !pass
		return {
			name: 'RabbitMQ black hole on the worker connection (new connections work)',
			expected: 'dead link detected (heartbeat) and replaced within 30 s; runs complete',
			observed: `${completed}/${runs} completed; reconnected after ${reconnectMs} ms; all runs final after ${doneMs} ms`,
			pass,
			ms: { reconnected: reconnectMs, done: doneMs },
		}
	} finally {
		await proxy.close()
		await h.cleanup({ keepLogs: keepLogs || failed })
	}
}

/**
 * After a worker dies with a full prefetch, the survivor receives its jobs marked
 * redelivered. Expected: they run at the survivor's full concurrency, not one at a
 * time (a redelivered job runs alone only once its node already started on an earlier
 * redelivery). Measured on the survivor's executions of the dead worker's nodes: each
 * sleeps `nodeMs`, so executions one at a time start at least `nodeMs` apart.
 */
async function redeliveryConcurrencyCase({ log = () => {}, keepLogs = false, nodeMs = 2500 } = {}) {
	const h = new Chaos({ label: 'redconc', workers: 2, concurrency: 8, log })
	let failed = true
	await h.setup()
	try {
		await h.startWorkers()
		const delays = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`b${i}`, nodeMs]))
		const list = h.fanoutRuns('redconc', 2, () => ({ delays }))
		await h.startRuns(list)
		const ids = list.map((r) => r.runId)
		const branches = async () => (await h.executions(ids)).filter((e) => /^b\d$/.test(e.node_id))
		await waitFor(async () => (await branches()).length >= 16, 20000)
		const byPid = new Map()
		for (const e of await branches()) byPid.set(e.pid, (byPid.get(e.pid) || 0) + 1)
		const [victim] = [...byPid].sort((a, b) => b[1] - a[1])[0]
		h.autoRestart = false
		h.killWorkerByPid(victim)
		log(`kill -9 worker ${victim} with ${byPid.get(victim)} branches in flight`)
		const pending = await h.waitForRuns(ids, { stallMs: 60000, timeoutMs: 120000 })
		const execs = await branches()
		const victimNodes = new Set(execs.filter((e) => e.pid === victim).map((e) => `${e.run_id}/${e.node_id}`))
		const again = execs
			.filter((e) => e.pid !== victim && victimNodes.has(`${e.run_id}/${e.node_id}`))
			.map((e) => new Date(e.at).getTime())
			.sort((a, b) => a - b)
		// The most re-executions that started within one node's duration of each other.
		let concurrent = 0
		for (let i = 0; i < again.length; i++) {
			concurrent = Math.max(concurrent, again.filter((t) => t >= again[i] && t < again[i] + nodeMs * 0.8).length)
		}
		const st = await h.statuses(ids)
		const completed = [...st.values()].filter((s) => s.status === 'completed').length
		const pass = pending.length === 0 && completed === 2 && again.length >= 4 && concurrent >= 4
		failed = !pass
		return {
			name: 'jobs redelivered after a worker died run at full concurrency',
			expected: "the survivor re-runs the dead worker's nodes concurrently (≥ 4 at once), runs complete",
			observed: `${completed}/2 completed; ${again.length} nodes re-run by the survivor, at most ${concurrent} at once; spread ${again.length ? again[again.length - 1] - again[0] : 0} ms`,
			pass,
			ms: { spread: again.length ? again[again.length - 1] - again[0] : null },
		}
	} finally {
		await h.cleanup({ keepLogs: keepLogs || failed })
	}
}

/**
 * A poison job (its node kills the worker every time) with maxDeliveries 4, while the
 * worker's Redis (a private one) is flushed after every crash. Expected: the count
 * survives (it is in PostgreSQL): the job is dead-lettered after 4 starts, its run
 * fails with the poison reason.
 */
async function poisonRedisFlushCase({ log = () => {}, keepLogs = false, maxDeliveries = 4 } = {}) {
	const redis = await startPrivateRedis()
	const h = new Chaos({
		label: 'poisonflush',
		workers: 1,
		concurrency: 8,
		log,
		maxDeliveries,
		workerEnv: () => ({ ADAPTER_REDIS_URL: redis.url }),
	})
	let failed = true
	await h.setup()
	try {
		await h.startWorkers()
		const [poison] = h.fanoutRuns('poison', 1, () => ({ crash: { b5: 'always' } }))
		await h.startRuns([poison])
		let seen = 0
		let flushes = 0
		const flushing = setInterval(async () => {
			if (h.stats.selfKills > seen) {
				seen = h.stats.selfKills
				await redis.flushall().catch(() => {})
				flushes++
			}
		}, 100)
		let pending
		try {
			pending = await h.waitForRuns([poison.runId], { stallMs: 60000, timeoutMs: 90000 })
		} finally {
			clearInterval(flushing)
		}
		const st = (await h.statuses([poison.runId])).get(poison.runId)
		const b5 = (await h.executions([poison.runId])).filter((e) => e.node_id === 'b5').length
		// The reason says how many times the node really started.
		const pass =
			pending.length === 0 &&
			st?.status === 'failed' &&
			/poison/.test(st?.reason || '') &&
			b5 <= maxDeliveries + 1 &&
			(st?.reason || '').includes(`was started ${b5} times`)
		failed = !pass
		return {
			name: `poison job with maxDeliveries ${maxDeliveries}, Redis flushed after every crash`,
			expected: `dead-lettered after at most ${maxDeliveries + 1} starts (the count is in PostgreSQL); run failed as poison, the reason naming the true number of starts`,
			observed: `status ${st?.status} (${(st?.reason || '').slice(0, 90)}); b5 started ${b5}x; ${flushes} FLUSHALLs`,
			pass,
			ms: {},
		}
	} finally {
		await h.cleanup({ keepLogs: keepLogs || failed })
		await redis.remove()
	}
}

/**
 * A full restart of the workers' PostgreSQL (a private cluster) while runs are in
 * flight and a client waits for each. Expected: every run completes, no waitForRun
 * rejects, no node re-runs (the broker connections stayed up).
 */
async function pgRestartCase({ log = () => {}, keepLogs = false, runs = 10 } = {}) {
	const pg = await startPrivatePostgres()
	const h = new Chaos({ label: 'pgrestart', workers: 2, concurrency: 16, log, postgresUrl: pg.url })
	let failed = true
	let client
	await h.setup()
	try {
		await h.startWorkers()
		const { RabbitMqAdapter, RedisCoordinationStore } = require(path.join(__dirname, '..'))
		client = new RabbitMqAdapter({
			amqpConnection: RABBITMQ_URL,
			pgClient: pg.url,
			coordinationStore: new RedisCoordinationStore(process.env.REDIS_URL || 'redis://127.0.0.1:6379'),
			queueName: h.queue,
			contextTableName: h.t.ctx,
			statusTableName: h.t.st,
			createTables: false,
			runtimeOptions: { registry: {}, blueprints, logger: { debug() {}, info() {}, warn() {}, error() {} } },
		})
		const delays = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`b${i}`, 1500]))
		const list = h.fanoutRuns('pgrestart', runs, () => ({ delays }))
		await h.startRuns(list)
		const waits = list.map((r) =>
			client.waitForRun(r.runId, { timeoutMs: 60000 }).then(
				(v) => v.status,
				(e) => `rejected ${e.code}`,
			),
		)
		await waitForStarted(h, list)
		const t0 = Date.now()
		await pg.restart()
		log(`private PostgreSQL restarted in ${Date.now() - t0} ms`)
		const outcomes = await Promise.all(waits)
		const pending = await h.waitForRuns(
			list.map((r) => r.runId),
			{ stallMs: 30000, timeoutMs: 60000 },
		)
		const st = await h.statuses(list.map((r) => r.runId))
		const completed = [...st.values()].filter((x) => x.status === 'completed').length
		const rejected = outcomes.filter((o) => o.startsWith('rejected'))
		const again = reRuns(await h.executions(list.map((r) => r.runId)))
		const pass = pending.length === 0 && completed === runs && rejected.length === 0 && again.length === 0
		failed = !pass
		return {
			name: 'PostgreSQL restarted (pg_ctlcluster restart of a private cluster) while runs are in flight',
			expected: 'every run completes; no waitForRun rejects; no node re-run',
			observed: `${completed}/${runs} completed; waitForRun: ${outcomes.filter((o) => o === 'completed').length} completed, ${rejected.length} rejected${rejected.length ? ` (${[...new Set(rejected)].join(', ')})` : ''}; re-runs: ${again.join(', ') || 'none'}`,
			pass,
			ms: { done: Date.now() - t0 },
		}
	} finally {
		if (client) await client.close().catch(() => {})
		await h.cleanup({ keepLogs: keepLogs || failed })
		await pg.remove()
	}
}

module.exports = {
	poisonRedisFlushCase,
	pgRestartCase,
	pgBlackholeCase,
	pgOutageCase,
	amqpBlackholeCase,
	redeliveryConcurrencyCase,
	logLines,
	viaProxy,
}
