'use strict'
/**
 * `npm run bench`: our adapter against the JS peers, on the same services, in one
 * invocation, alternating systems A B A B over rounds:
 *   - peer: flowcraft's BaseDistributedAdapter with an amqplib / pg / ioredis transport
 *     (bench/peer.mjs, the TypeScript RabbitMQ adapter's documented behaviour);
 *   - bullmq: flowcraft's BaseDistributedAdapter on BullMQ and Redis (bench/peer-bullmq.mjs,
 *     Flowcraft's BullMQ adapter's behaviour): its jobs go through a BullMQ queue, its
 *     context and joins live in Redis, and its final result too; it PUBLISHes
 *     '<runId> <status> <epoch ms>' on the phase's Redis channel, which stands in for the
 *     status table's NOTIFY (its safety-net poll reads the `workflow:status:` keys).
 *
 * For every round, workflow and system: a fresh worker process (or two), its own queue,
 * tables and Redis key prefix; runs are started by this process over the wire protocol
 * (context row, then persistent start jobs) in a closed loop of BENCH_INFLIGHT runs in
 * flight; a run's latency is from the publish of its start job(s) to the `updated_at` of
 * its final status row (delivered by LISTEN/NOTIFY from a trigger on the status table,
 * identical for both systems). Then the worker is stopped and everything it used is
 * dropped.
 *
 * Environment:
 *   BENCH_RUNS        measured runs per phase, for every system (default: per system and
 *                     workflow, sized for a few seconds each; see DEFAULT_RUNS)
 *   BENCH_ROUNDS      rounds (default 2)
 *   BENCH_WORKFLOWS   comma list of diamond,chain,fanout,width20,width200,width2000,batch10000 (default all; the
 *                     width series runs for our worker only)
 *   BENCH_SYSTEMS     comma list of ours,peer-documented,peer-tuned,bullmq-default,bullmq-tuned,ours-x2
 *                     (default all), or the opt-in ours-ungrouped, ours-uninlined, ours-unreadgrouped,
 *                     ours-unset and ours-baseline
 *   BENCH_BASELINE    a built checkout of this package (another commit): the opt-in system
 *                     ours-baseline runs our worker from it, to measure a change in one invocation
 *   BENCH_OUT         where to write the report (default bench/results.md)
 *   BENCH_INFLIGHT    runs in flight in the closed loop (default 64; ×workers for ours-x2)
 *   BENCH_IDLE_RUNS   chain runs one at a time, for the idle latency (default per system)
 *   BENCH_CEILING_MS  duration of each ceiling measurement, taken at the start of every round (default 1500; 0 skips them)
 *   BENCH_PHASE_MAX_S stop starting runs in a phase after this long (default 60)
 *   BENCH_VERBOSE     1: forward the workers' stderr
 *   POSTGRES_URL, REDIS_URL, RABBITMQ_URL
 */
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const crypto = require('node:crypto')
const { spawn, execFileSync } = require('node:child_process')
const { Pool, Client } = require('pg')
const amqplib = require('amqplib')
const IORedis = require('ioredis')
const { Queue: BullQueue } = require('bullmq')
const { workflows, startNodeIds, jobsPerRun } = require('./workflows')
const { measureCeilings } = require('./ceilings')

const POSTGRES_URL = process.env.POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/test'
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379'
const RABBITMQ_URL = process.env.RABBITMQ_URL || 'amqp://guest:guest@127.0.0.1:5672'

const SYSTEMS = {
	ours: { key: 'ours', label: 'ours (default settings)', kind: 'ours', workers: 1 },
	'peer-documented': {
		key: 'peer-documented',
		label: 'peer, documented amqplib.connect(url)',
		kind: 'peer',
		variant: 'documented',
		workers: 1,
	},
	'peer-tuned': {
		key: 'peer-tuned',
		label: 'peer, tuned { noDelay: true }',
		kind: 'peer',
		variant: 'tuned',
		workers: 1,
	},
	'bullmq-default': {
		key: 'bullmq-default',
		label: "Flowcraft's BullMQ adapter as shipped (Worker concurrency 5)",
		kind: 'bullmq',
		variant: 'default',
		workers: 1,
	},
	'bullmq-tuned': {
		key: 'bullmq-tuned',
		label: "Flowcraft's BullMQ adapter, Worker concurrency 64",
		kind: 'bullmq',
		variant: 'tuned',
		workers: 1,
	},
	'ours-x2': { key: 'ours-x2', label: 'ours, two worker processes', kind: 'ours', workers: 2, only: ['diamond'] },
	// opt-in (BENCH_SYSTEMS): our worker without group commit, to measure what it brings
	'ours-ungrouped': {
		key: 'ours-ungrouped',
		label: 'ours, one commit transaction per job (FLOWCRAFT_GROUP_COMMIT=0)',
		kind: 'ours',
		workers: 1,
		env: { FLOWCRAFT_GROUP_COMMIT: '0' },
		optIn: true,
	},
	// opt-in: our worker reading each job's run with a statement of its own
	'ours-unreadgrouped': {
		key: 'ours-unreadgrouped',
		label: 'ours, one read statement per job (FLOWCRAFT_GROUP_READ=0)',
		kind: 'ours',
		workers: 1,
		env: { FLOWCRAFT_GROUP_READ: '0' },
		optIn: true,
	},
	// opt-in: our worker sending a group's plain commits as one statement each (no commit set)
	'ours-unset': {
		key: 'ours-unset',
		label: 'ours, one statement per commit in a group (FLOWCRAFT_SET_COMMIT=0)',
		kind: 'ours',
		workers: 1,
		env: { FLOWCRAFT_SET_COMMIT: '0' },
		optIn: true,
	},
	// opt-in: our worker publishing every successor (no successor run under its predecessor's delivery)
	'ours-uninlined': {
		key: 'ours-uninlined',
		label: 'ours, every successor published (FLOWCRAFT_INLINE=0)',
		kind: 'ours',
		workers: 1,
		env: { FLOWCRAFT_INLINE: '0' },
		optIn: true,
	},
	// opt-in: our worker from another checkout (BENCH_BASELINE=<its folder>, built), to
	// measure a change against the code before it in one invocation
	'ours-baseline': {
		key: 'ours-baseline',
		label: `ours at BENCH_BASELINE (${process.env.BENCH_BASELINE || 'unset'})`,
		kind: 'ours',
		workers: 1,
		env: { ADAPTER_MODULE: process.env.BENCH_BASELINE || '' },
		optIn: true,
	},
}

/** Measured runs per phase, sized for a few seconds each on a 2-core machine. */
const OURS_RUNS = { diamond: 3000, chain: 1500, fanout: 150, width20: 200, width200: 20, width2000: 3, batch10000: 1 }
const DEFAULT_RUNS = {
	ours: OURS_RUNS,
	'ours-x2': { diamond: 3000 },
	// our worker in another setting or from another checkout: measured as ours is
	'ours-ungrouped': OURS_RUNS,
	'ours-uninlined': OURS_RUNS,
	'ours-unreadgrouped': OURS_RUNS,
	'ours-unset': OURS_RUNS,
	'ours-baseline': OURS_RUNS,
	'peer-documented': { diamond: 40, chain: 12, fanout: 10 },
	'peer-tuned': { diamond: 300, chain: 150, fanout: 25 },
	'bullmq-default': { diamond: 3000, chain: 1500, fanout: 150 },
	'bullmq-tuned': { diamond: 3000, chain: 1500, fanout: 150 },
}
const DEFAULT_IDLE_RUNS = {
	ours: 30,
	'ours-x2': 0,
	'ours-ungrouped': 30,
	'ours-uninlined': 30,
	'ours-unreadgrouped': 30,
	'ours-unset': 30,
	'ours-baseline': 30,
	'peer-documented': 5,
	'peer-tuned': 10,
	'bullmq-default': 30,
	'bullmq-tuned': 30,
}

const env = process.env
const cfg = {
	runs: env.BENCH_RUNS ? positiveInt(env.BENCH_RUNS, 'BENCH_RUNS') : null,
	rounds: env.BENCH_ROUNDS ? positiveInt(env.BENCH_ROUNDS, 'BENCH_ROUNDS') : 2,
	workflows: list(env.BENCH_WORKFLOWS, Object.keys(workflows), 'BENCH_WORKFLOWS'),
	systems: list(
		env.BENCH_SYSTEMS,
		Object.keys(SYSTEMS).filter((k) => !SYSTEMS[k].optIn),
		'BENCH_SYSTEMS',
		Object.keys(SYSTEMS),
	),
	out: path.resolve(env.BENCH_OUT || path.join(__dirname, 'results.md')),
	inflight: env.BENCH_INFLIGHT ? positiveInt(env.BENCH_INFLIGHT, 'BENCH_INFLIGHT') : 64,
	idleRuns: env.BENCH_IDLE_RUNS !== undefined ? Number(env.BENCH_IDLE_RUNS) : null,
	ceilingMs: env.BENCH_CEILING_MS !== undefined ? Number(env.BENCH_CEILING_MS) : 1500,
	phaseMaxMs: (env.BENCH_PHASE_MAX_S ? Number(env.BENCH_PHASE_MAX_S) : 60) * 1000,
	verbose: env.BENCH_VERBOSE === '1',
}

if (cfg.systems.includes('ours-baseline') && !env.BENCH_BASELINE) {
	throw new Error(
		'BENCH_SYSTEMS has ours-baseline: set BENCH_BASELINE to the folder of a built checkout of this package',
	)
}

function positiveInt(v, name) {
	const n = Number(v)
	if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive whole number; got ${v}`)
	return n
}

function list(v, all, name, known = all) {
	if (!v) return all
	const items = v
		.split(',')
		.map((s) => s.trim())
		.filter(Boolean)
	for (const i of items) if (!known.includes(i)) throw new Error(`${name}: unknown ${i} (known: ${known.join(', ')})`)
	return items
}

const CLK_TCK = (() => {
	try {
		return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100
	} catch {
		return 100
	}
})()

/** Wall-clock milliseconds with sub-millisecond resolution (comparable with PostgreSQL's now()). */
const wallMs = () => performance.timeOrigin + performance.now()
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const BENCH_APP = 'flowcraft-bench'
const NCPU = os.availableParallelism ? os.availableParallelism() : os.cpus().length

function log(msg) {
	process.stderr.write(`[bench] ${msg}\n`)
}

// ───────────────────────────────────────────────────────────── /proc sampling

/** { rssKb, hwmKb } of a process, or null once it is gone. */
function procMemory(pid) {
	try {
		const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8')
		const rss = /VmRSS:\s+(\d+)/.exec(s)
		const hwm = /VmHWM:\s+(\d+)/.exec(s)
		return { rssKb: rss ? Number(rss[1]) : 0, hwmKb: hwm ? Number(hwm[1]) : 0 }
	} catch {
		return null
	}
}

/** utime + stime of a process in clock ticks (0 once it is gone). */
function procTicks(pid) {
	try {
		const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
		const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
		return Number(f[11]) + Number(f[12])
	} catch {
		return 0
	}
}

const SERVICE_COMM = {
	postgres: /^postgres$/,
	rabbitmq: /^(beam\.smp|erl_child_setup|inet_gethost|epmd)$/,
	redis: /^redis-server$/,
}

/** CPU ticks of every process of each service (all of PostgreSQL's backends, …), by pid. */
function serviceTicks() {
	const out = { postgres: new Map(), rabbitmq: new Map(), redis: new Map() }
	for (const pid of fs.readdirSync('/proc')) {
		if (!/^\d+$/.test(pid)) continue
		let s
		try {
			s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
		} catch {
			continue
		}
		const comm = s.slice(s.indexOf('(') + 1, s.lastIndexOf(')'))
		for (const [svc, re] of Object.entries(SERVICE_COMM)) {
			if (re.test(comm)) {
				const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
				out[svc].set(pid, Number(f[11]) + Number(f[12]))
			}
		}
	}
	return out
}

/** Ticks used between two snapshots by the processes alive at the end (a new pid counts from 0). */
function ticksBetween(a, b) {
	let sum = 0
	for (const [pid, t] of b) sum += Math.max(0, t - (a.get(pid) ?? 0))
	return sum
}

/** { busy, total } ticks of the whole machine. */
function machineTicks() {
	const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]
	const v = line.trim().split(/\s+/).slice(1).map(Number)
	const idle = v[3] + (v[4] || 0)
	const total = v.reduce((a, b) => a + b, 0)
	return { busy: total - idle, total }
}

function cpuSnapshot(pids) {
	return {
		at: performance.now(),
		workers: pids.reduce((a, pid) => a + procTicks(pid), 0),
		services: serviceTicks(),
		machine: machineTicks(),
		bench: process.cpuUsage(),
	}
}

/** CPU use between two snapshots, as % of one core (machine: % of all cores). */
function cpuDelta(a, b) {
	const secs = (b.at - a.at) / 1000
	const pct = (ticks) => (ticks / CLK_TCK / secs) * 100
	const m = { busy: b.machine.busy - a.machine.busy, total: b.machine.total - a.machine.total }
	const benchUs = b.bench.user + b.bench.system - (a.bench.user + a.bench.system)
	const out = {
		seconds: secs,
		worker: pct(b.workers - a.workers),
		workerCpuSeconds: (b.workers - a.workers) / CLK_TCK,
		postgres: pct(ticksBetween(a.services.postgres, b.services.postgres)),
		rabbitmq: pct(ticksBetween(a.services.rabbitmq, b.services.rabbitmq)),
		redis: pct(ticksBetween(a.services.redis, b.services.redis)),
		bench: (benchUs / 1e6 / secs) * 100,
		machine: m.total > 0 ? (m.busy / m.total) * 100 : 0,
	}
	// whatever else ran meanwhile (other agents' builds and tests), in % of one core
	out.others = Math.max(0, out.machine * NCPU - out.worker - out.postgres - out.rabbitmq - out.redis - out.bench)
	/** CPU-seconds of the worker and the three services together. */
	out.stackCpuSeconds = ((out.worker + out.postgres + out.rabbitmq + out.redis) / 100) * secs
	return out
}

/** What a backend is doing, in a few words. */
function waitCategory({ state, type, event }) {
	if (state === 'idle') return 'idle'
	if (state === 'idle in transaction') return 'idle in transaction'
	if (!type) return 'cpu'
	if (type === 'Lock') return 'row/tx lock'
	if (/^WAL/.test(event || '') || (type === 'IO' && /WAL/.test(event || ''))) return 'WAL write/fsync'
	if (type === 'Client') return 'client I/O'
	return `${type}:${event}`
}

// ───────────────────────────────────────────────────────────── services (bench side)

class Services {
	async connect() {
		this.pool = new Pool({ connectionString: POSTGRES_URL, max: 4, application_name: BENCH_APP })
		this.pool.on('error', () => {})
		this.listener = new Client({ connectionString: POSTGRES_URL, application_name: BENCH_APP })
		await this.listener.connect()
		this.listener.on('error', (e) => log(`listener error: ${e.message}`))
		this.channels = new Map()
		this.listener.on('notification', (n) => {
			const handler = this.channels.get(n.channel)
			if (handler) handler(n.payload)
		})
		this.amqp = await amqplib.connect(RABBITMQ_URL, { noDelay: true })
		this.amqp.on('error', (e) => log(`amqp error: ${e.message}`))
		this.pub = await this.amqp.createConfirmChannel()
		this.pub.on('error', (e) => log(`publish channel error: ${e.message}`))
		this.redis = new IORedis(REDIS_URL)
		// the BullMQ peer's side: its start jobs go through a BullMQ Queue (on this shared
		// connection), its completions arrive on a Redis channel
		this.bullRedis = new IORedis(REDIS_URL, { maxRetriesPerRequest: null })
		this.bullRedis.on('error', (e) => log(`bullmq redis error: ${e.message}`))
		this.subscriber = new IORedis(REDIS_URL)
		this.subscriber.on('error', (e) => log(`redis subscriber error: ${e.message}`))
		this.subscriber.on('message', (channel, payload) => {
			const handler = this.channels.get(channel)
			if (handler) handler(payload)
		})
		this.bullQueues = new Map()
		this.notifyFn = `bench_notify_${process.pid}_${crypto.randomBytes(3).toString('hex')}`
		await this.pool.query(
			`CREATE OR REPLACE FUNCTION ${this.notifyFn}() RETURNS trigger LANGUAGE plpgsql AS $$
			 BEGIN
			   PERFORM pg_notify(TG_ARGV[0], NEW.run_id || ' ' || NEW.status || ' ' || (extract(epoch FROM NEW.updated_at) * 1000)::text);
			   RETURN NULL;
			 END $$`,
		)
		return this
	}

	async versions() {
		const pg = (await this.pool.query('SHOW server_version')).rows[0].server_version
		const info = await this.redis.info('server')
		const redis = (/redis_version:(\S+)/.exec(info) || [])[1]
		const sp = this.amqp.connection.serverProperties || {}
		const rabbitmq = `${sp.product || 'RabbitMQ'} ${sp.version || '?'}${sp.platform ? ` (${sp.platform})` : ''}`
		return { pg, redis, rabbitmq }
	}

	/** How much of its data this Redis keeps on disk (read only: CONFIG GET). */
	async redisDurability() {
		const get = async (name) => {
			try {
				const reply = await this.redis.config('GET', name)
				return reply.length >= 2 ? reply[1] : '?'
			} catch (e) {
				return `? (${e.message})`
			}
		}
		const appendonly = await get('appendonly')
		const appendfsync = await get('appendfsync')
		const save = await get('save')
		const meaning =
			appendonly === 'yes'
				? appendfsync === 'always'
					? 'AOF fsynced on every write'
					: appendfsync === 'everysec'
						? 'AOF fsynced once a second (up to ~1 s of writes lost on a crash)'
						: 'AOF left to the kernel to flush'
				: save
					? 'no AOF; RDB snapshots only (everything since the last snapshot lost on a crash)'
					: 'nothing on disk (everything lost on a restart)'
		return `appendonly ${appendonly}, appendfsync ${appendfsync}, save "${save}": ${meaning}`
	}

	/** The BullMQ peer's context hashes, as a client seeds them (blueprintId, blueprintVersion). */
	async seedRedisContexts(prefix, runIds, blueprint) {
		const id = JSON.stringify(blueprint.id)
		const version = JSON.stringify(blueprint.metadata?.version ?? null)
		for (let i = 0; i < runIds.length; i += 1000) {
			const p = this.redis.pipeline()
			for (const runId of runIds.slice(i, i + 1000))
				p.hset(`${prefix}workflow:state:${runId}`, 'blueprintId', id, 'blueprintVersion', version)
			await p.exec()
		}
	}

	/** The BullMQ queue of a phase, as the peer's own (same name, prefix and default job options). */
	openBullQueue(names) {
		const q = new BullQueue(names.queue, {
			connection: this.bullRedis,
			prefix: `${names.prefix}bull`,
			defaultJobOptions: { removeOnComplete: { age: 7 * 24 * 3600 }, removeOnFail: { age: 15 * 24 * 3600 } },
		})
		q.on('error', (e) => log(`bullmq queue error: ${e.message}`))
		this.bullQueues.set(names.queue, q)
		return q
	}

	/** Sends one start job of a run, by the system's own transport. */
	publishStart(names, job, onError) {
		if (names.kind === 'bullmq') {
			this.bullQueues
				.get(names.queue)
				.add('executeNode', job, { jobId: `${job.runId}_${job.nodeId}` })
				.catch(onError)
			return
		}
		this.pub.sendToQueue(
			names.queue,
			Buffer.from(JSON.stringify(job)),
			{ persistent: true, contentType: 'application/json' },
			(err) => {
				if (err) onError(err)
			},
		)
	}

	/** The documented tables, plus the NOTIFY trigger on final statuses. */
	async createPhaseTables(names) {
		await this.pool.query(`CREATE TABLE ${names.ctx} (run_id TEXT PRIMARY KEY, context_data JSONB)`)
		await this.pool.query(
			`CREATE TABLE ${names.status} (run_id TEXT PRIMARY KEY, status TEXT, status_data JSONB, updated_at TIMESTAMPTZ)`,
		)
		await this.pool.query(
			`CREATE TRIGGER ${names.status}_final AFTER INSERT OR UPDATE ON ${names.status} FOR EACH ROW
			 WHEN (NEW.status IN ('completed', 'failed')) EXECUTE FUNCTION ${this.notifyFn}('${names.channel}')`,
		)
	}

	async insertContexts(ctxTable, runIds, blueprint, initial = {}) {
		const context = JSON.stringify({
			...initial,
			blueprintId: blueprint.id,
			blueprintVersion: blueprint.metadata?.version ?? null,
		})
		for (let i = 0; i < runIds.length; i += 5000) {
			await this.pool.query(
				`INSERT INTO ${ctxTable} (run_id, context_data) SELECT id, $2::jsonb FROM unnest($1::text[]) AS id`,
				[runIds.slice(i, i + 5000), context],
			)
		}
	}

	async listen(names, handler) {
		this.channels.set(names.channel, handler)
		if (names.kind === 'bullmq') await this.subscriber.subscribe(names.channel)
		else await this.listener.query(`LISTEN ${names.channel}`)
	}

	async unlisten(names) {
		this.channels.delete(names.channel)
		if (names.kind === 'bullmq') await this.subscriber.unsubscribe(names.channel).catch(() => {})
		else await this.listener.query(`UNLISTEN ${names.channel}`).catch(() => {})
	}

	/** Final statuses of runs (the fallback when a notification is missed). */
	async finalStatuses(names, runIds) {
		if (names.kind === 'bullmq') {
			// the BullMQ adapter's status keys; they hold no time, so a run found here counts as finished now
			const values = await this.redis.mget(runIds.map((id) => `${names.prefix}workflow:status:${id}`))
			const now = wallMs()
			const rows = []
			values.forEach((v, i) => {
				if (!v) return
				const status = JSON.parse(v).status
				if (status === 'completed' || status === 'failed') rows.push({ run_id: runIds[i], status, t: now })
			})
			return rows
		}
		const statusTable = names.status
		const { rows } = await this.pool.query(
			`SELECT run_id, status, (extract(epoch FROM updated_at) * 1000)::float8 AS t FROM ${statusTable}
			 WHERE run_id = ANY($1::text[]) AND status IN ('completed', 'failed')`,
			[runIds],
		)
		return rows
	}

	/** Cluster-wide PostgreSQL counters: transaction ids assigned (= write transactions) and WAL bytes written. */
	async pgCounters() {
		const { rows } = await this.pool.query(
			`SELECT pg_snapshot_xmax(pg_current_snapshot())::text::float8 AS xid,
			        pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8 AS wal`,
		)
		return { at: performance.now(), ...rows[0] }
	}

	/**
	 * Samples pg_stat_activity every 20 ms for the backends whose statement names this
	 * phase's tables (`token` is in both names; the workers' connections, not the bench's
	 * own): what they are doing.
	 */
	startWaitSampler(token) {
		const tally = new Map()
		let samples = 0
		const backends = new Set()
		let running = true
		const loop = (async () => {
			while (running) {
				try {
					const { rows } = await this.pool.query(
						`SELECT pid, state, wait_event_type AS type, wait_event AS event FROM pg_stat_activity
						 WHERE backend_type = 'client backend' AND application_name <> $2 AND query LIKE $1 AND pid <> pg_backend_pid()`,
						[`%${token}%`, BENCH_APP],
					)
					samples++
					for (const r of rows) {
						backends.add(r.pid)
						const k = waitCategory(r)
						tally.set(k, (tally.get(k) || 0) + 1)
					}
				} catch {}
				await sleep(20)
			}
		})()
		return async () => {
			running = false
			await loop
			const total = [...tally.values()].reduce((a, b) => a + b, 0)
			const pct = {}
			for (const [k, v] of tally) pct[k] = (v / total) * 100
			return {
				samples,
				backends: backends.size,
				busyBackends: samples ? (total - (tally.get('idle') || 0)) / samples : 0,
				pct,
			}
		}
	}

	/** Rows inserted, updated and deleted in the phase's tables, our node rows included (exact once the workers disconnected). */
	async rowsWritten(names) {
		const { rows } = await this.pool.query(
			`SELECT COALESCE(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::float8 AS n FROM pg_stat_user_tables WHERE relname = ANY($1::text[])`,
			[[names.ctx, names.status, `${names.ctx}_nodes`]],
		)
		return rows[0].n
	}

	async queueDepth(queue) {
		const ch = await this.amqp.createChannel()
		ch.on('error', () => {})
		try {
			return (await ch.checkQueue(queue)).messageCount
		} catch {
			return null
		} finally {
			await ch.close().catch(() => {})
		}
	}

	async cleanupPhase(names) {
		await this.unlisten(names)
		const q = this.bullQueues.get(names.queue)
		if (q) {
			this.bullQueues.delete(names.queue)
			await q.close().catch((e) => log(`close bullmq queue: ${e.message}`))
		}
		for (const t of [names.ctx, `${names.ctx}_nodes`, names.status])
			await this.pool.query(`DROP TABLE IF EXISTS ${t}`).catch((e) => log(`drop ${t}: ${e.message}`))
		for (const q of [names.queue, `${names.queue}.dead`]) {
			const ch = await this.amqp.createChannel()
			ch.on('error', () => {})
			await ch.deleteQueue(q).catch(() => {})
			await ch.close().catch(() => {})
		}
		let cursor = '0'
		do {
			const [next, keys] = await this.redis.scan(cursor, 'MATCH', `*${names.token}*`, 'COUNT', 1000)
			cursor = next
			if (keys.length) await this.redis.del(...keys)
		} while (cursor !== '0')
	}

	async close() {
		await this.pool.query(`DROP FUNCTION IF EXISTS ${this.notifyFn}() CASCADE`).catch(() => {})
		await this.pub.close().catch(() => {})
		await this.amqp.close().catch(() => {})
		await this.listener.end().catch(() => {})
		await this.pool.end().catch(() => {})
		for (const q of this.bullQueues.values()) await q.close().catch(() => {})
		await this.bullRedis.quit().catch(() => {})
		await this.subscriber.quit().catch(() => {})
		await this.redis.quit().catch(() => {})
	}
}

// ───────────────────────────────────────────────────────────── workers

const liveChildren = new Set()

function spawnWorker(system, names) {
	const script = path.join(
		__dirname,
		{ ours: 'worker-ours.js', peer: 'peer.mjs', bullmq: 'peer-bullmq.mjs' }[system.kind],
	)
	const child = spawn(process.execPath, [script], {
		env: {
			...process.env,
			QUEUE: names.queue,
			CTX_TABLE: names.ctx,
			STATUS_TABLE: names.status,
			REDIS_PREFIX: names.prefix,
			DONE_CHANNEL: names.channel,
			POSTGRES_URL,
			REDIS_URL,
			RABBITMQ_URL,
			PEER_VARIANT: system.variant || '',
			...(system.env ?? {}),
		},
		stdio: ['ignore', 'pipe', 'pipe'],
	})
	liveChildren.add(child)
	child.stderrTail = []
	child.stderr.on('data', (d) => {
		const text = d.toString()
		if (cfg.verbose) process.stderr.write(text)
		child.stderrTail.push(...text.split('\n').filter(Boolean))
		if (child.stderrTail.length > 40) child.stderrTail.splice(0, child.stderrTail.length - 40)
	})
	child.exited = new Promise((resolve) =>
		child.on('exit', (code, signal) => {
			liveChildren.delete(child)
			resolve({ code, signal })
		}),
	)
	child.ready = new Promise((resolve, reject) => {
		let out = ''
		const timer = setTimeout(
			() => reject(new Error(`worker ${system.key} not ready after 60 s: ${child.stderrTail.join(' | ')}`)),
			60000,
		)
		child.stdout.on('data', (d) => {
			out += d.toString()
			if (out.includes('WORKER_READY')) {
				clearTimeout(timer)
				resolve()
			} else if (out.includes('WORKER_FAILED')) {
				clearTimeout(timer)
				reject(new Error(`worker ${system.key} failed to start: ${child.stderrTail.join(' | ')}`))
			}
		})
		child.exited.then(({ code, signal }) => {
			clearTimeout(timer)
			reject(
				new Error(
					`worker ${system.key} exited (${code ?? signal}) before it was ready: ${child.stderrTail.join(' | ')}`,
				),
			)
		})
	})
	child.ready.catch(() => {})
	return child
}

async function stopWorker(child) {
	if (child.exitCode !== null || child.signalCode !== null) return
	child.kill('SIGTERM')
	const t = setTimeout(() => child.kill('SIGKILL'), 15000)
	await child.exited
	clearTimeout(t)
}

// ───────────────────────────────────────────────────────────── the closed loop

/**
 * Starts `runIds` with at most `inflight` in flight, starting the next one as soon as a
 * run finishes; resolves with [{ runId, t0, t1, status }] (t1 = updated_at of the final
 * status row). Stops starting runs after `deadline`; gives up on runs that show no
 * progress for 60 s.
 */
function drive({ services, names, blueprint, runIds, inflight, deadline }) {
	const starts = startNodeIds(blueprint)
	const pending = new Map()
	const results = []
	let next = 0
	let lastProgress = performance.now()
	return new Promise((resolve, reject) => {
		let finished = false
		const finish = (err) => {
			if (finished) return
			finished = true
			clearInterval(poll)
			services.channels.delete(names.channel)
			if (err) reject(err)
			else resolve(results)
		}
		const complete = (runId, status, t1) => {
			const p = pending.get(runId)
			if (!p) return
			pending.delete(runId)
			results.push({ runId, t0: p.t0, t1, status })
			lastProgress = performance.now()
			launch()
		}
		const launch = () => {
			while (pending.size < inflight && next < runIds.length && performance.now() < deadline) {
				const runId = runIds[next++]
				const t0 = wallMs()
				pending.set(runId, { t0 })
				for (const nodeId of starts) {
					const job = { runId, blueprintId: blueprint.id, nodeId }
					services.publishStart(names, job, (err) =>
						finish(new Error(`publish of ${runId} was not confirmed: ${err.message || err}`)),
					)
				}
			}
			if (pending.size === 0) finish()
		}
		services.channels.set(names.channel, (payload) => {
			const [runId, status, t] = payload.split(' ')
			complete(runId, status, Number(t))
		})
		// Safety net: a notification lost (or a run that never finishes) must not hang the bench.
		const poll = setInterval(async () => {
			if (finished || pending.size === 0) return
			try {
				const rows = await services.finalStatuses(names, [...pending.keys()])
				for (const r of rows) complete(r.run_id, r.status, Number(r.t))
			} catch (e) {
				log(`poll failed: ${e.message}`)
			}
			if (!finished && performance.now() - lastProgress > 60000) {
				log(`${pending.size} runs made no progress for 60 s; giving up on them`)
				for (const runId of pending.keys()) results.push({ runId, t0: pending.get(runId).t0, t1: NaN, status: 'lost' })
				pending.clear()
				finish()
			}
		}, 2000)
		launch()
	})
}

function percentile(sorted, p) {
	if (!sorted.length) return NaN
	const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
	return sorted[i]
}

function summarize(results, nodes) {
	const ok = results.filter((r) => r.status === 'completed')
	const failed = results.filter((r) => r.status === 'failed').length
	const lost = results.filter((r) => r.status === 'lost').length
	const lat = ok.map((r) => r.t1 - r.t0).sort((a, b) => a - b)
	const first = Math.min(...results.map((r) => r.t0))
	const last = Math.max(...ok.map((r) => r.t1))
	const seconds = ok.length ? (last - first) / 1000 : NaN
	const runsPerSec = ok.length / seconds
	return {
		runs: results.length,
		completed: ok.length,
		failed,
		lost,
		seconds,
		runsPerSec,
		jobsPerSec: runsPerSec * nodes,
		latencies: lat,
	}
}

/**
 * Names of one phase. Tables follow the jest helpers' `t_<label>_<pid>_<8 hex>` pattern, so a
 * test suite running beside the benchmark (`listStableTables`) ignores them as it ignores
 * the tables of other test processes. `token` (`<pid>_<8 hex>`) is in every name: table
 * names, queue, Redis key prefix, run ids.
 */
function phaseNames(system, wf) {
	const short = {
		ours: 'o',
		'ours-x2': 'o2',
		'ours-ungrouped': 'ou',
		'ours-uninlined': 'oi',
		'ours-unreadgrouped': 'or',
		'ours-unset': 'os',
		'ours-baseline': 'ob',
		'peer-documented': 'pd',
		'peer-tuned': 'pt',
		'bullmq-default': 'bd',
		'bullmq-tuned': 'bt',
	}[system.key]
	const token = `${process.pid}_${crypto.randomBytes(4).toString('hex')}`
	const id = `t_bench_${short}_${wf}_${token}`
	return {
		id,
		token,
		kind: system.kind,
		/** every Redis key of the phase starts with this */
		prefix: `${id}:`,
		queue: id,
		ctx: `t_bench_${short}_${wf}_ctx_${token}`,
		status: `t_bench_${short}_${wf}_st_${token}`,
		channel: `${id}_ch`,
	}
}

function runsFor(system, wf) {
	const runs = cfg.runs || DEFAULT_RUNS[system.key][wf]
	return workflows[wf].maxRuns ? Math.min(runs, workflows[wf].maxRuns) : runs
}

function idleRunsFor(system) {
	if (cfg.idleRuns !== null) return cfg.idleRuns
	const d = DEFAULT_IDLE_RUNS[system.key] ?? 0
	return cfg.runs ? Math.min(d, cfg.runs) : d
}

/** One worker (or two), one workflow: warm-up, measured closed loop, and for the chain the idle runs. */
async function runPhase(services, system, wf, round) {
	const { blueprint } = workflows[wf]
	const nodes = jobsPerRun(wf)
	const names = phaseNames(system, wf)
	const n = runsFor(system, wf)
	const inflight = cfg.inflight * system.workers
	const warm = Math.max(1, Math.min(inflight, Math.round(n / 10)))
	const idleN = wf === 'chain' ? idleRunsFor(system) : 0
	const idleWarm = idleN > 0 ? 2 : 0
	const runIds = Array.from({ length: warm + n + idleWarm + idleN }, (_, i) => `${names.id}-r${i}`)
	log(
		`round ${round} ${wf} ${system.key}: ${n} runs (+${warm} warm-up${idleN ? `, ${idleN} idle` : ''}), ${inflight} in flight`,
	)
	const bull = system.kind === 'bullmq'
	// the BullMQ peer uses no PostgreSQL: its context hashes are seeded in Redis instead
	if (!bull) await services.createPhaseTables(names)
	const children = []
	let result
	try {
		if (bull) {
			await services.seedRedisContexts(names.prefix, runIds, blueprint)
			services.openBullQueue(names)
		} else await services.insertContexts(names.ctx, runIds, blueprint, workflows[wf].context)
		await services.listen(names, () => {})
		// Other agents' test runs share PostgreSQL (max_connections): a worker that cannot get
		// a connection is started again after a pause rather than failing the whole bench.
		for (let attempt = 1; ; attempt++) {
			for (let i = 0; i < system.workers; i++) children.push(spawnWorker(system, names))
			try {
				await Promise.all(children.map((c) => c.ready))
				break
			} catch (e) {
				await Promise.all(children.map(stopWorker))
				children.length = 0
				if (attempt >= 6) throw e
				log(`  worker start failed (${e.message.split('|')[0].trim()}); retrying in 5 s`)
				await sleep(5000)
			}
		}
		const pids = children.map((c) => c.pid)
		let peakRssKb = 0
		const sampler = setInterval(() => {
			for (const pid of pids) {
				const m = procMemory(pid)
				if (m) peakRssKb = Math.max(peakRssKb, m.rssKb, m.hwmKb)
			}
		}, 100)
		try {
			const started = performance.now()
			const warmRes = await drive({
				services,
				names,
				blueprint,
				runIds: runIds.slice(0, warm),
				inflight,
				deadline: started + cfg.phaseMaxMs,
			})
			const stopSampler = bull
				? async () => ({ samples: 0, backends: 0, busyBackends: NaN, pct: {} })
				: services.startWaitSampler(names.token)
			const pg0 = await services.pgCounters()
			const cpu0 = cpuSnapshot(pids)
			const measured = await drive({
				services,
				names,
				blueprint,
				runIds: runIds.slice(warm, warm + n),
				inflight,
				deadline: performance.now() + cfg.phaseMaxMs,
			})
			const cpu1 = cpuSnapshot(pids)
			const pg1 = await services.pgCounters()
			const waits = await stopSampler()
			for (const pid of pids) {
				const m = procMemory(pid)
				if (m) peakRssKb = Math.max(peakRssKb, m.rssKb, m.hwmKb)
			}
			let allCompleted =
				warmRes.filter((r) => r.status === 'completed').length + measured.filter((r) => r.status === 'completed').length
			const stats = summarize(measured, nodes)
			const cpu = cpuDelta(cpu0, cpu1)
			const jobs = stats.completed * nodes
			const pgStats = {
				xidsPerJob: bull ? NaN : (pg1.xid - pg0.xid) / jobs,
				walKbPerJob: bull ? NaN : (pg1.wal - pg0.wal) / 1024 / jobs,
				waits,
			}
			let idle = null
			if (idleN > 0) {
				const idleIds = runIds.slice(warm + n)
				const w = await drive({
					services,
					names,
					blueprint,
					runIds: idleIds.slice(0, idleWarm),
					inflight: 1,
					deadline: performance.now() + cfg.phaseMaxMs,
				})
				const r = await drive({
					services,
					names,
					blueprint,
					runIds: idleIds.slice(idleWarm),
					inflight: 1,
					deadline: performance.now() + cfg.phaseMaxMs,
				})
				allCompleted += [...w, ...r].filter((x) => x.status === 'completed').length
				const lat = r.filter((x) => x.status === 'completed').map((x) => x.t1 - x.t0)
				idle = { runLatencies: lat, perNode: lat.map((l) => l / nodes) }
			}
			result = {
				system: system.key,
				workflow: wf,
				round,
				nodes,
				inflight,
				...stats,
				peakRssMb: peakRssKb / 1024,
				cpu,
				workerCpuMsPerJob: (cpu.workerCpuSeconds * 1000) / jobs,
				stackCpuMsPerJob: (cpu.stackCpuSeconds * 1000) / jobs,
				pg: pgStats,
				allCompleted,
				idle,
			}
			const msg =
				`  ${stats.completed}/${stats.runs} completed${stats.failed ? `, ${stats.failed} FAILED` : ''}${stats.lost ? `, ${stats.lost} LOST` : ''} in ${stats.seconds.toFixed(2)} s: ` +
				`${stats.runsPerSec.toFixed(1)} runs/s, ${stats.jobsPerSec.toFixed(0)} jobs/s, p50 ${percentile(stats.latencies, 50).toFixed(1)} ms, ` +
				`p99 ${percentile(stats.latencies, 99).toFixed(1)} ms, RSS ${result.peakRssMb.toFixed(0)} MB, worker CPU ${cpu.worker.toFixed(0)}%, ` +
				`pg ${cpu.postgres.toFixed(0)}%, rabbit ${cpu.rabbitmq.toFixed(0)}%, redis ${cpu.redis.toFixed(0)}%, others ${cpu.others.toFixed(0)}%, machine ${cpu.machine.toFixed(0)}%; ` +
				(bull
					? 'pg: not used'
					: `pg: ${pgStats.xidsPerJob.toFixed(2)} write tx/job, ${pgStats.walKbPerJob.toFixed(1)} KB WAL/job, ` +
						`${waits.busyBackends.toFixed(1)} of ${waits.backends} backends busy: ${formatWaits(waits.pct)}`) +
				(idle
					? `; idle ${percentile(
							[...idle.perNode].sort((a, b) => a - b),
							50,
						).toFixed(2)} ms/node`
					: '')
			log(msg)
			if (stats.failed || stats.lost) {
				const depth = bull
					? JSON.stringify(await services.bullQueues.get(names.queue)?.getJobCounts())
					: await services.queueDepth(names.queue)
				log(
					`  queue depth ${depth}; worker stderr: ${children.map((c) => c.stderrTail.slice(-5).join(' | ')).join(' || ')}`,
				)
			}
		} finally {
			clearInterval(sampler)
		}
	} finally {
		await Promise.all(children.map(stopWorker))
		if (result && bull) result.rowsPerJob = NaN
		else if (result) {
			// The workers' backends flush their table statistics as they exit.
			await sleep(300)
			const rows = await services.rowsWritten(names).catch(() => null)
			const jobsAll = result.allCompleted * nodes
			result.rowsPerJob = rows === null ? NaN : (rows - runIds.length) / jobsAll
		}
		await services.cleanupPhase(names)
	}
	return result
}

// ───────────────────────────────────────────────────────────── report

const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : '–')
const f0 = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '–')
const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : '–')
const ratio = (x) => (Number.isFinite(x) ? `${x >= 10 ? x.toFixed(0) : x.toFixed(1)}×` : '–')
const mean = (xs) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN)

function meanPct(list) {
	const keys = new Set(list.flatMap((p) => Object.keys(p)))
	const out = {}
	for (const k of keys) out[k] = mean(list.map((p) => p[k] || 0))
	return out
}

/** "cpu 40 %, row/tx lock 30 %, …", largest first, without the idle share. */
function formatWaits(pct) {
	const busy = Object.entries(pct).filter(([k]) => k !== 'idle')
	const idle = pct.idle || 0
	const parts = busy
		.sort((a, b) => b[1] - a[1])
		.filter(([, v]) => v >= 1)
		.map(([k, v]) => `${k} ${v.toFixed(0)} %`)
	return `${parts.join(', ') || 'nothing'}${idle ? `; idle ${idle.toFixed(0)} %` : ''}`
}

/** Rounds of one system × workflow pooled: rates averaged, latencies pooled, RSS max. */
function aggregate(results) {
	const by = new Map()
	for (const r of results) {
		const k = `${r.workflow}/${r.system}`
		if (!by.has(k)) by.set(k, [])
		by.get(k).push(r)
	}
	const out = new Map()
	for (const [k, rs] of by) {
		const lat = rs.flatMap((r) => r.latencies).sort((a, b) => a - b)
		const idle = rs.filter((r) => r.idle)
		out.set(k, {
			system: rs[0].system,
			workflow: rs[0].workflow,
			nodes: rs[0].nodes,
			inflight: rs[0].inflight,
			rounds: rs.length,
			runs: rs.reduce((a, r) => a + r.completed, 0),
			failed: rs.reduce((a, r) => a + r.failed + r.lost, 0),
			runsPerSec: mean(rs.map((r) => r.runsPerSec)),
			perRound: rs.map((r) => r.runsPerSec),
			jobsPerSec: mean(rs.map((r) => r.jobsPerSec)),
			p50: percentile(lat, 50),
			p99: percentile(lat, 99),
			peakRssMb: Math.max(...rs.map((r) => r.peakRssMb)),
			cpu: {
				worker: mean(rs.map((r) => r.cpu.worker)),
				postgres: mean(rs.map((r) => r.cpu.postgres)),
				rabbitmq: mean(rs.map((r) => r.cpu.rabbitmq)),
				redis: mean(rs.map((r) => r.cpu.redis)),
				bench: mean(rs.map((r) => r.cpu.bench)),
				machine: mean(rs.map((r) => r.cpu.machine)),
				others: mean(rs.map((r) => r.cpu.others)),
			},
			pg: {
				xidsPerJob: mean(rs.map((r) => r.pg.xidsPerJob)),
				rowsPerJob: mean(rs.map((r) => r.rowsPerJob)),
				walKbPerJob: mean(rs.map((r) => r.pg.walKbPerJob)),
				backends: Math.max(...rs.map((r) => r.pg.waits.backends)),
				busyBackends: mean(rs.map((r) => r.pg.waits.busyBackends)),
				waits: meanPct(rs.map((r) => r.pg.waits.pct)),
			},
			workerCpuMsPerJob: mean(rs.map((r) => r.workerCpuMsPerJob)),
			stackCpuMsPerJob: mean(rs.map((r) => r.stackCpuMsPerJob)),
			idlePerNode: idle.length ? idle.flatMap((r) => r.idle.perNode).sort((a, b) => a - b) : null,
			idleRun: idle.length ? idle.flatMap((r) => r.idle.runLatencies).sort((a, b) => a - b) : null,
		})
	}
	return out
}

function buildReport({ agg, ceilings, machine, command, startedAt, elapsedS }) {
	const L = []
	const get = (wf, sys) => agg.get(`${wf}/${sys}`)
	L.push('# Benchmark: @flowcraft/rabbitmq-adapter vs the JS peers')
	L.push('')
	L.push(`Measured ${startedAt} by \`${command}\` in ${elapsedS.toFixed(0)} s.`)
	L.push('')
	L.push('## Machine')
	L.push('')
	for (const [k, v] of Object.entries(machine)) L.push(`- ${k}: ${v}`)
	L.push(
		"- Shared: the machine (2 cores) also runs other agents' builds and test suites, and the services are the same PostgreSQL, Redis and RabbitMQ they use; " +
			'numbers move from run to run by ±20 % or more. Every service is on loopback; PostgreSQL runs with its defaults (`synchronous_commit = on`).',
	)
	if (cfg.systems.some((s) => SYSTEMS[s].kind === 'bullmq'))
		L.push(
			'- The BullMQ peer keeps everything (queue, context, joins, final result) in that Redis, so its durability is the Redis durability above; ' +
				'ours and the RabbitMQ peer keep the context and the result in PostgreSQL (committed, fsynced WAL) and the jobs in durable RabbitMQ queues.',
		)
	L.push('')
	L.push('## Throughput and latency')
	L.push('')
	L.push(
		`Closed loop: ${cfg.inflight} runs in flight per worker process (the next run starts when one finishes), ${cfg.rounds} round(s) alternating the systems ` +
			'(A B A B), each round with a fresh worker process per system, its own queue, tables and Redis key prefix. ' +
			'Latency = publish of the start job → `updated_at` of the final status row (BullMQ peer: → the time it stored the final result, sent with its PUBLISH). Rates are the mean over rounds; latency percentiles pool every round; ' +
			"RSS is the worker's peak (VmHWM) over the phase. `ours ÷ this` = our runs/s divided by this row's (for `ours-x2`: two workers ÷ one).",
	)
	L.push('')
	L.push('| workflow | system | runs | runs/s | node jobs/s | p50 ms | p99 ms | peak RSS MB | ours ÷ this |')
	L.push('|---|---|--:|--:|--:|--:|--:|--:|--:|')
	for (const wf of cfg.workflows) {
		const ours = get(wf, 'ours')
		for (const sys of cfg.systems) {
			const a = get(wf, sys)
			if (!a) continue
			let r = ''
			if (sys === 'ours-x2') r = ours ? `${ratio(a.runsPerSec / ours.runsPerSec)} (x2÷x1)` : '–'
			else if (sys !== 'ours' && ours) r = ratio(ours.runsPerSec / a.runsPerSec)
			L.push(
				`| ${wf} | ${sys} | ${a.runs}${a.failed ? ` (${a.failed} failed/lost)` : ''} | ${f1(a.runsPerSec)} | ${f0(a.jobsPerSec)} | ${f1(a.p50)} | ${f1(a.p99)} | ${f0(a.peakRssMb)} | ${r} |`,
			)
		}
	}
	L.push('')
	L.push(`Systems: ${cfg.systems.map((s) => `\`${s}\` = ${SYSTEMS[s].label}`).join('; ')}.`)
	L.push(`Workflows: ${cfg.workflows.map((w) => `\`${w}\` = ${workflows[w].label}`).join('; ')}.`)
	L.push('')
	L.push(
		'Runs/s per round: ' +
			[...agg.values()].map((a) => `${a.workflow}/${a.system} ${a.perRound.map(f1).join(', ')}`).join('; ') +
			'.',
	)
	L.push('')

	// The width series (issue 10): a node job should cost the same whatever the run's width.
	const widths = cfg.workflows.filter((w) => workflows[w].width).map((w) => [w, get(w, 'ours')])
	const measured = widths.filter(([, a]) => a)
	if (measured.length) {
		L.push('## Width series (ours: s → b1..bN → j (all) → t, and s → a batch of N items → t; 200-byte outputs)')
		L.push('')
		L.push('| width | node jobs per run | runs | node jobs/s | cost per node job vs the narrowest |')
		L.push('|---|---|---|---|---|')
		const narrow = measured[0][1]
		for (const [w, a] of measured) {
			L.push(
				`| ${workflows[w].jobs ? 'batch ' : ''}${workflows[w].width} | ${jobsPerRun(w)} | ${a.runs} | ${f0(a.jobsPerSec)} | ${ratio(narrow.jobsPerSec / a.jobsPerSec)} |`,
			)
		}
		const wide = measured[measured.length - 1][1]
		L.push('')
		L.push(
			`Widest / narrowest cost per node job: ${ratio(narrow.jobsPerSec / wide.jobsPerSec)} (target ≤ 1.5×; before the node rows, 21–26×).`,
		)
		L.push('')
	}

	L.push('## Where the CPU goes (mean over rounds, % of one core)')
	L.push('')
	L.push(
		'| workflow | system | worker | postgres (all backends) | rabbitmq | redis | bench client | other processes | machine busy (of 2 cores) | worker CPU ms / node job | worker+services CPU ms / node job | jobs/s if CPU-bound on 2 cores |',
	)
	L.push('|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|')
	for (const wf of cfg.workflows) {
		for (const sys of cfg.systems) {
			const a = get(wf, sys)
			if (!a) continue
			L.push(
				`| ${wf} | ${sys} | ${f0(a.cpu.worker)} | ${f0(a.cpu.postgres)} | ${f0(a.cpu.rabbitmq)} | ${f0(a.cpu.redis)} | ${f0(a.cpu.bench)} | ${f0(a.cpu.others)} | ${f0(a.cpu.machine)} % | ${f2(a.workerCpuMsPerJob)} | ${f2(a.stackCpuMsPerJob)} | ${f0((NCPU * 1000) / a.stackCpuMsPerJob)} |`,
			)
		}
	}
	L.push('')
	L.push(
		"Service CPU is every process of that service on the machine (so other agents' use of the same services shows up here too); " +
			'"other processes" is the rest of the machine\'s busy time (other agents\' builds and tests).',
	)
	L.push('')
	L.push('## PostgreSQL per node job')
	L.push('')
	L.push(
		"Rows written = inserts + updates + deletes in the phase's own tables (context, status and, for ours, node rows; `pg_stat_user_tables`, read after the workers disconnected), per node job of the whole phase. " +
			"Write transactions (transaction ids assigned) and WAL bytes are cluster-wide deltas over the measured window, so other agents' writes are included: " +
			'they are only meaningful for the fast phases (a slow phase lasts long and writes little). ' +
			"The wait profile samples `pg_stat_activity` every 20 ms for the backends running this phase's statements: share of backend samples by state " +
			'(`cpu` = active, no wait event; `idle` = waiting for the worker to send the next statement).',
	)
	L.push('')
	L.push(
		'| workflow | system | rows written / job (exact) | write tx / job (cluster-wide) | WAL KB / job (cluster-wide) | backends (busy on average) | busy backend samples | idle share |',
	)
	L.push('|---|---|--:|--:|--:|--:|---|--:|')
	for (const wf of cfg.workflows) {
		for (const sys of cfg.systems) {
			const a = get(wf, sys)
			if (!a || SYSTEMS[sys].kind === 'bullmq') continue
			const busy = Object.entries(a.pg.waits)
				.filter(([k]) => k !== 'idle')
				.sort((x, y) => y[1] - x[1])
				.filter(([, v]) => v >= 1)
			L.push(
				`| ${wf} | ${sys} | ${f2(a.pg.rowsPerJob)} | ${f2(a.pg.xidsPerJob)} | ${f1(a.pg.walKbPerJob)} | ${a.pg.backends} (${f1(a.pg.busyBackends)}) | ${busy.map(([k, v]) => `${k} ${v.toFixed(0)} %`).join(', ') || '–'} | ${f0(a.pg.waits.idle || 0)} % |`,
			)
		}
	}
	L.push('')
	if (cfg.systems.some((s) => SYSTEMS[s].kind === 'bullmq')) {
		L.push('The BullMQ peer uses no PostgreSQL and has no rows here.')
		L.push('')
	}

	L.push('## Idle latency (chain of 10, one run at a time)')
	L.push('')
	L.push('| system | runs | run p50 ms | run p99 ms | added latency per node p50 ms | per node p99 ms |')
	L.push('|---|--:|--:|--:|--:|--:|')
	for (const sys of cfg.systems) {
		const a = get('chain', sys)
		if (!a?.idlePerNode) continue
		L.push(
			`| ${sys} | ${a.idleRun.length} | ${f1(percentile(a.idleRun, 50))} | ${f1(percentile(a.idleRun, 99))} | ${f2(percentile(a.idlePerNode, 50))} | ${f2(percentile(a.idlePerNode, 99))} |`,
		)
	}
	L.push('')

	if (ceilings) {
		L.push('## Ceilings of this machine (same invocation: measured at the start of each round, one after the other)')
		L.push('')
		const per = (k) => ceilings.perRound.map((c) => f0(c[k])).join(' / ')
		L.push(`| measure | rate /s (mean) | per round |`)
		L.push('|---|--:|--:|')
		const crow = (label, k) => L.push(`| ${label} | ${f0(ceilings[k])} | ${per(k)} |`)
		crow('PostgreSQL single-row upsert commits, 1 connection (Node `pg`)', 'pgCommit1')
		crow('PostgreSQL single-row upsert commits, 8 connections (Node `pg`)', 'pgCommit8')
		if (ceilings.pgbench1 !== null) crow('same upsert, `pgbench` (C client), 1 connection', 'pgbench1')
		if (ceilings.pgbench8 !== null) crow('same upsert, `pgbench` (C client), 8 connections', 'pgbench8')
		crow('PostgreSQL `SELECT 1` round trips, 1 connection', 'pgSelect1')
		crow('RabbitMQ persistent publishes, confirmed (window 256)', 'amqpConfirmedPublish')
		crow('RabbitMQ consume + ack of that backlog (prefetch 200)', 'amqpConsumeAck')
		crow('Redis round trips (`INCR`), 1 connection', 'redisRtt')
		L.push('')
		const rows = cfg.workflows.map((wf) => get(wf, 'ours')).filter(Boolean)
		if (rows.length) {
			L.push(
				'Our node jobs/s as a fraction of the 8-connection commit ceiling: ' +
					rows
						.map(
							(a) =>
								`${a.workflow} ${((a.jobsPerSec / ceilings.pgCommit8) * 100).toFixed(0)} %` +
								(ceilings.pgbench8 ? ` (${((a.jobsPerSec / ceilings.pgbench8) * 100).toFixed(0)} % of pgbench's)` : ''),
						)
						.join('; ') +
					'.',
			)
			L.push('')
		}
	}

	L.push('## Targets (issues 5 and 16)')
	L.push('')
	L.push('| target | measured | met |')
	L.push('|---|--:|:-:|')
	const d = get('diamond', 'ours')
	const yes = (b) => (b === null ? '–' : b ? 'yes' : 'no')
	const dd = get('diamond', 'peer-documented')
	const dt = get('diamond', 'peer-tuned')
	if (d && dd)
		L.push(
			`| diamond runs/s ≥ 30× documented peer | ${ratio(d.runsPerSec / dd.runsPerSec)} | ${yes(d.runsPerSec / dd.runsPerSec >= 30)} |`,
		)
	if (d && dt)
		L.push(
			`| diamond runs/s ≥ 5× tuned peer | ${ratio(d.runsPerSec / dt.runsPerSec)} | ${yes(d.runsPerSec / dt.runsPerSec >= 5)} |`,
		)
	if (ceilings) {
		for (const wf of cfg.workflows) {
			const a = get(wf, 'ours')
			if (a)
				L.push(
					`| ${wf}: node jobs/s ≥ 50 % of 8-connection commit ceiling | ${((a.jobsPerSec / ceilings.pgCommit8) * 100).toFixed(0)} % | ${yes(a.jobsPerSec / ceilings.pgCommit8 >= 0.5)} |`,
				)
		}
	}
	const c = get('chain', 'ours')
	if (c?.idlePerNode)
		L.push(
			`| idle added latency per node p50 ≤ 2 ms | ${f2(percentile(c.idlePerNode, 50))} ms | ${yes(percentile(c.idlePerNode, 50) <= 2)} |`,
		)
	const bd = get('diamond', 'bullmq-default')
	const bt = get('diamond', 'bullmq-tuned')
	if (d && bd)
		L.push(
			`| diamond runs/s vs the BullMQ adapter as shipped (issue 16: ahead of it) | ${ratio(d.runsPerSec / bd.runsPerSec)} | ${yes(d.runsPerSec / bd.runsPerSec >= 1)} |`,
		)
	if (d && bt)
		L.push(
			`| diamond runs/s ≥ 1.0× the BullMQ adapter at concurrency 64 (issue 16; goal 1.2×) | ${ratio(d.runsPerSec / bt.runsPerSec)} | ${yes(d.runsPerSec / bt.runsPerSec >= 1)} |`,
		)
	if (d && dt)
		L.push(
			`| diamond runs/s ≥ 10× tuned peer (issue 16) | ${ratio(d.runsPerSec / dt.runsPerSec)} | ${yes(d.runsPerSec / dt.runsPerSec >= 10)} |`,
		)
	const x2 = get('diamond', 'ours-x2')
	if (d && x2)
		L.push(
			`| two worker processes ≥ 1.6× one (diamond) | ${ratio(x2.runsPerSec / d.runsPerSec)} | ${yes(x2.runsPerSec / d.runsPerSec >= 1.6)} |`,
		)
	L.push('')
	return L.join('\n')
}

async function machineDescription(services) {
	const v = await services.versions()
	const pkg = (name) => {
		try {
			return require(`${name}/package.json`).version
		} catch {
			try {
				return JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'node_modules', name, 'package.json'), 'utf8'))
					.version
			} catch {
				return '?'
			}
		}
	}
	let commit = '?'
	try {
		commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: path.join(__dirname, '..') })
			.toString()
			.trim()
		const dirty = execFileSync('git', ['status', '--porcelain', '--', 'core', 'src', 'lib'], {
			cwd: path.join(__dirname, '..'),
		})
			.toString()
			.trim()
		if (dirty) commit += ' + uncommitted changes in core/src/lib'
	} catch {}
	return {
		cpu: `${os.cpus()[0]?.model || '?'}, nproc ${os.availableParallelism ? os.availableParallelism() : os.cpus().length}`,
		memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
		kernel: `${os.type()} ${os.release()}`,
		node: process.version,
		postgresql: v.pg,
		redis: v.redis,
		'redis durability': await services.redisDurability(),
		rabbitmq: v.rabbitmq,
		'npm clients': `amqplib ${pkg('amqplib')}, pg ${pkg('pg')}, ioredis ${pkg('ioredis')}, flowcraft ${pkg('flowcraft')}, bullmq ${pkg('bullmq')}`,
		'package commit': commit,
	}
}

// ───────────────────────────────────────────────────────────── main

async function main() {
	const t0 = performance.now()
	const startedAt = new Date().toISOString()
	const knobs = Object.entries(process.env)
		.filter(([k]) => k.startsWith('BENCH_') && k !== 'BENCH_OUT')
		.map(([k, v]) => `${k}=${v}`)
	const command = `${knobs.length ? `${knobs.join(' ')} ` : ''}npm run bench`
	const services = await new Services().connect()
	const results = []
	const failedPhases = []
	const ceilingRounds = []
	try {
		const machine = await machineDescription(services)
		for (let round = 1; round <= cfg.rounds; round++) {
			if (cfg.ceilingMs > 0) {
				log(`round ${round} ceilings (${cfg.ceilingMs} ms each)…`)
				const c = await measureCeilings({
					postgresUrl: POSTGRES_URL,
					redisUrl: REDIS_URL,
					rabbitmqUrl: RABBITMQ_URL,
					ms: cfg.ceilingMs,
				})
				ceilingRounds.push(c)
				log(
					`  ${Object.entries(c)
						.map(([k, v]) => `${k} ${v === null ? '–' : Math.round(v)}/s`)
						.join(', ')}`,
				)
			}
			for (const wf of cfg.workflows) {
				for (const key of cfg.systems) {
					const system = SYSTEMS[key]
					if (system.only && !system.only.includes(wf)) continue
					// the width series is ours alone (the peers' cost per node grows with the width)
					if (workflows[wf].width && DEFAULT_RUNS[system.key][wf] === undefined) continue
					try {
						results.push(await runPhase(services, system, wf, round))
					} catch (e) {
						// One phase lost to the shared machine must not cost the whole invocation.
						log(`round ${round} ${wf} ${key} FAILED: ${e?.message}`)
						failedPhases.push(`round ${round} ${wf} ${key}: ${String(e?.message).split('\n')[0].slice(0, 300)}`)
					}
				}
			}
		}
		const agg = aggregate(results)
		let ceilings = null
		if (ceilingRounds.length) {
			ceilings = { perRound: ceilingRounds }
			for (const k of Object.keys(ceilingRounds[0])) {
				const vals = ceilingRounds.map((c) => c[k]).filter((v) => v !== null && Number.isFinite(v))
				ceilings[k] = vals.length ? mean(vals) : null
			}
		}
		let report = buildReport({ agg, ceilings, machine, command, startedAt, elapsedS: (performance.now() - t0) / 1000 })
		if (failedPhases.length)
			report += `\n## Phases that failed (left out above)\n\n${failedPhases.map((f) => `- ${f}`).join('\n')}\n`
		fs.mkdirSync(path.dirname(cfg.out), { recursive: true })
		fs.writeFileSync(cfg.out, `${report}\n`)
		process.stdout.write(`${report}\n`)
		log(`written to ${cfg.out}`)
		if (failedPhases.length) process.exitCode = 1
	} finally {
		await services.close()
	}
}

function killChildren() {
	for (const c of liveChildren) c.kill('SIGKILL')
}
process.on('SIGINT', () => {
	killChildren()
	process.exit(130)
})
process.on('exit', killChildren)

main().catch((e) => {
	log(`FAILED: ${e?.stack ? e.stack : e}`)
	killChildren()
	process.exit(1)
})
