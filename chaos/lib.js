'use strict'
/**
 * Shared helpers of the chaos suite (chaos/run.js, __test__/chaos.test.js) and the
 * blueprints of its worker (chaos/worker.js).
 *
 * A `Chaos` harness owns, for one run of the suite: a queue (and its `.dead` queue),
 * a context table and a status table (the README's DDL), three side tables and two
 * triggers, a set of worker processes (chaos/worker.js) that it can kill and restart,
 * and the Redis keys of its run ids. `cleanup()` removes all of it.
 *
 * Side tables (names carry the harness prefix):
 *   <p>_exec  one row per node execution, written by the node itself:
 *             (run_id, node_id, attempt, pid, exec_id, at)
 *   <p>_eff   one row per committed effect, written by a trigger on the context table:
 *             every time a key `_outputs.<node>` or `w.<node>` (the node's own context
 *             write) appears or changes value. Exactly one row per run and key means
 *             the node's effect was applied once.
 *   <p>_slog  one row per status change, written by a trigger on the status table
 *             (old status, new status); a run must have exactly one final write.
 *
 * Faults are aimed at this harness's worker processes only (other test suites share
 * the services): PostgreSQL backends, Redis clients and AMQP connections are selected
 * by the local TCP ports of the worker processes' sockets, read from /proc
 * (pg_terminate_backend, CLIENT KILL ID, rabbitmqctl close_connection). Only the
 * RabbitMQ restart is global; it is used by the full suite alone, and `start_app`
 * always runs again.
 *
 * Scenarios: fanoutPhase (runs under a chaos function, then verifyFanout),
 * redeliveryCases, inflightCommitCases (faults timed to land on a commit in flight, by
 * holding the run's row locked) and badInputCases. Each case is
 * { name, expected, observed, pass }.
 */
const { spawn, execFile } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const crypto = require('node:crypto')
// the run's context as the tests read it: the context row with its node rows merged
const { readContextRow } = require('../__test__/helpers/services')

const POSTGRES_URL = process.env.POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/test'
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379'
const RABBITMQ_URL = process.env.RABBITMQ_URL || 'amqp://guest:guest@127.0.0.1:5672'

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// ------------------------------------------------------------------ blueprints

const BRANCHES = 8
const FANOUT = 'chaos-fanout'
const VERSION = 'v1'
/** A registered `uses` key that is SQL: it must be just a key. */
const SQL_USES_KEY = `x'); DROP TABLE flowcraft_contexts; SELECT ('`
/** An unregistered `uses` key that is SQL: the run fails naming it, nothing else happens. */
const SQL_USES_MISSING = `y"; DELETE FROM pg_class; --`

/** start → b0..b7 (parallel) → join ('all') → end */
function fanoutBlueprint() {
	const nodes = [{ id: 'start', uses: 'chaos.start', params: { node: 'start' } }]
	const edges = []
	for (let i = 0; i < BRANCHES; i++) {
		nodes.push({ id: `b${i}`, uses: 'chaos.branch', params: { node: `b${i}`, index: i } })
		edges.push({ source: 'start', target: `b${i}` }, { source: `b${i}`, target: 'join' })
	}
	nodes.push({ id: 'join', uses: 'chaos.join', params: { node: 'join' }, config: { joinStrategy: 'all' } })
	nodes.push({ id: 'end', uses: 'chaos.end', params: { node: 'end' } })
	edges.push({ source: 'join', target: 'end' })
	return { id: FANOUT, metadata: { version: VERSION }, nodes, edges }
}
const FANOUT_NODES = ['start', ...Array.from({ length: BRANCHES }, (_, i) => `b${i}`), 'join', 'end']

function single(id, uses) {
	return { id, metadata: { version: VERSION }, nodes: [{ id: 'n', uses }], edges: [] }
}

const blueprints = {
	[FANOUT]: fanoutBlueprint(),
	'bad-bigint': single('bad-bigint', 'bad.bigint'),
	'bad-cycle': single('bad-cycle', 'bad.cycle'),
	'bad-fn-output': single('bad-fn-output', 'bad.fnOutput'),
	'bad-ctx-fn': single('bad-ctx-fn', 'bad.ctxFn'),
	'bad-ctx-bigint': single('bad-ctx-bigint', 'bad.ctxBigint'),
	'bad-number': single('bad-number', 'bad.number'),
	'bad-string': single('bad-string', 'bad.string'),
	'big-output': single('big-output', 'big.output'),
	'sql-uses': single('sql-uses', SQL_USES_KEY),
	'sql-uses-missing': single('sql-uses-missing', SQL_USES_MISSING),
}

function startNodesOf(bp) {
	const targets = new Set(bp.edges.map((e) => e.target))
	return bp.nodes.filter((n) => !targets.has(n.id)).map((n) => n.id)
}

// ------------------------------------------------------------------ /proc sockets

/** Local ports of the ESTABLISHED TCP connections of process `pid` to `remotePort`. */
function localPorts(pid, remotePort) {
	const inodes = new Set()
	let fds = []
	try {
		fds = fs.readdirSync(`/proc/${pid}/fd`)
	} catch {
		return []
	}
	for (const fd of fds) {
		try {
			const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`))
			if (m) inodes.add(m[1])
		} catch {
			/* fd closed meanwhile */
		}
	}
	const ports = []
	for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
		let text = ''
		try {
			text = fs.readFileSync(file, 'utf8')
		} catch {
			continue
		}
		for (const line of text.split('\n').slice(1)) {
			const parts = line.trim().split(/\s+/)
			if (parts.length < 10 || parts[3] !== '01') continue
			const lport = parseInt(parts[1].split(':').pop(), 16)
			const rport = parseInt(parts[2].split(':').pop(), 16)
			if (rport === remotePort && inodes.has(parts[9])) ports.push(lport)
		}
	}
	return ports
}

// ------------------------------------------------------------------ helpers

function quoteIdent(name) {
	if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`unsafe identifier ${name}`)
	return `"${name}"`
}

function headerText(v) {
	if (v === undefined || v === null) return undefined
	if (Buffer.isBuffer(v)) return v.toString('utf8')
	return String(v)
}

function rabbitmqctl(args, timeoutMs = 120000) {
	return new Promise((resolve, reject) => {
		execFile('rabbitmqctl', args, { timeout: timeoutMs }, (err, stdout, stderr) => {
			if (err) reject(new Error(`rabbitmqctl ${args.join(' ')} failed: ${err.message}\n${stderr}`))
			else resolve(stdout)
		})
	})
}

let rabbitStopped = false
/** True while this process has RabbitMQ's app stopped (for emergency handlers). */
function rabbitIsStoppedByUs() {
	return rabbitStopped
}
/** Starts RabbitMQ's app again if this process stopped it (safe to call any time). */
async function ensureRabbitStarted() {
	if (!rabbitStopped) return
	await rabbitmqctl(['start_app'])
	rabbitStopped = false
}

// ------------------------------------------------------------------ the harness

class Chaos {
	/**
	 * @param {object} o
	 * @param {string} [o.label]        part of every name (tables, queue, run ids)
	 * @param {number} [o.workers]      worker processes (3)
	 * @param {number} [o.concurrency]  adapter concurrency of each worker (64)
	 * @param {(line: string) => void} [o.log]
	 * @param {(slot: number) => object} [o.workerEnv]  extra environment of the worker in
	 *   a slot (e.g. ADAPTER_POSTGRES_URL through a fault proxy, TIMINGS)
	 * @param {string} [o.postgresUrl]  the PostgreSQL of the tables, the checker and the
	 *   workers (a private instance, chaos/private.js); default POSTGRES_URL
	 */
	constructor({
		label = 'chaos',
		workers = 3,
		concurrency = 64,
		log = (l) => console.log(l),
		maxDeliveries,
		workerEnv = () => ({}),
		postgresUrl = POSTGRES_URL,
	} = {}) {
		const tag = `${process.pid.toString(36)}${Date.now().toString(36).slice(-5)}${crypto.randomBytes(2).toString('hex')}`
		this.prefix = `chaos_${label}_${tag}`.toLowerCase().replace(/[^a-z0-9_]/g, '_')
		this.queue = this.prefix
		this.deadQueue = `${this.queue}.dead`
		this.t = {
			ctx: `${this.prefix}_ctx`,
			st: `${this.prefix}_st`,
			exec: `${this.prefix}_exec`,
			eff: `${this.prefix}_eff`,
			slog: `${this.prefix}_slog`,
		}
		this.workerCount = workers
		/** slots [0, active) are kept running (restarted when they die) */
		this.active = workers
		this.concurrency = concurrency
		this.maxDeliveries = maxDeliveries
		this.workerEnv = workerEnv
		this.postgresUrl = postgresUrl
		this.log = log
		this.logDir = fs.mkdtempSync(path.join(os.tmpdir(), `flowcraft-${this.prefix}-`))
		this.slots = []
		this.autoRestart = true
		this.closing = false
		/** pids that died without a clean stop (killed by us, or by themselves) */
		this.deadPids = new Set()
		this.stats = {
			kills: 0,
			selfKills: 0,
			workerRestarts: 0,
			rabbitRestarts: 0,
			pgTerminated: 0,
			redisKilled: 0,
			amqpClosed: 0,
			unexpectedExits: [],
			startFailures: [],
		}
		this.deadLetters = []
		this.runSeq = 0
	}

	// ---------------------------------------------------------------- setup

	async setup() {
		const { Pool } = require('pg')
		const IORedis = require('ioredis')
		this.pg = new Pool({ connectionString: this.postgresUrl, max: 4, application_name: 'flowcraft-chaos-checker' })
		this.pg.on('error', () => {})
		this.redis = new IORedis(REDIS_URL, { maxRetriesPerRequest: 5 })
		this.redis.on('error', () => {})
		const { ctx, st, exec, eff, slog } = Object.fromEntries(Object.entries(this.t).map(([k, v]) => [k, quoteIdent(v)]))
		const fn = (n) => quoteIdent(`${this.prefix}_${n}`)
		const nodes = quoteIdent(`${this.t.ctx}_nodes`)
		// the worker's own tables, as `npx flowcraft-rabbitmq sql` prints them (the triggers below watch them)
		await this.pg.query(require('../lib/load-native').loadNative().tablesSql(this.t.ctx, this.t.st))
		await this.pg.query(`
			CREATE TABLE ${exec} (id BIGSERIAL PRIMARY KEY, run_id TEXT NOT NULL, node_id TEXT NOT NULL, attempt INT NOT NULL,
				pid INT NOT NULL, exec_id TEXT NOT NULL, at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp());
			CREATE INDEX ON ${exec} (run_id, node_id);
			CREATE TABLE ${eff} (id BIGSERIAL PRIMARY KEY, run_id TEXT NOT NULL, key TEXT NOT NULL, value_exec TEXT,
				at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp());
			CREATE TABLE ${slog} (id BIGSERIAL PRIMARY KEY, run_id TEXT NOT NULL, old_status TEXT, new_status TEXT,
				at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp());
			CREATE FUNCTION ${fn('eff_fn')}() RETURNS trigger LANGUAGE plpgsql AS $f$
			BEGIN
				INSERT INTO ${eff} (run_id, key, value_exec)
				SELECT NEW.run_id, n.key, CASE WHEN jsonb_typeof(n.value) = 'object' THEN n.value->>'exec'
					WHEN jsonb_typeof(n.value) = 'string' THEN left(n.value #>> '{}', 200) END
				FROM jsonb_each(COALESCE(NEW.context_data, '{}'::jsonb)) n
				WHERE n.key LIKE 'w.%'
				  AND (TG_OP = 'INSERT' OR NOT (COALESCE(OLD.context_data, '{}'::jsonb) ? n.key)
				       OR OLD.context_data -> n.key IS DISTINCT FROM n.value);
				RETURN NULL;
			END $f$;
			CREATE TRIGGER ${fn('eff_tr')} AFTER INSERT OR UPDATE ON ${ctx} FOR EACH ROW EXECUTE FUNCTION ${fn('eff_fn')}();
			-- a node's output is committed to its node row (the context row gets it once, when the run ends)
			CREATE FUNCTION ${fn('effn_fn')}() RETURNS trigger LANGUAGE plpgsql AS $f$
			BEGIN
				IF NEW.state = 'done' AND (TG_OP = 'INSERT' OR OLD.state IS DISTINCT FROM 'done'
				    OR OLD.output IS DISTINCT FROM NEW.output) THEN
					INSERT INTO ${eff} (run_id, key, value_exec) VALUES (NEW.run_id, '_outputs.' || NEW.node_id,
						CASE WHEN jsonb_typeof(NEW.output) = 'object' THEN NEW.output->>'exec'
						WHEN jsonb_typeof(NEW.output) = 'string' THEN left(NEW.output #>> '{}', 200) END);
				END IF;
				RETURN NULL;
			END $f$;
			CREATE TRIGGER ${fn('effn_tr')} AFTER INSERT OR UPDATE ON ${nodes} FOR EACH ROW EXECUTE FUNCTION ${fn('effn_fn')}();
			CREATE FUNCTION ${fn('slog_fn')}() RETURNS trigger LANGUAGE plpgsql AS $f$
			BEGIN
				IF TG_OP = 'INSERT' THEN
					INSERT INTO ${slog} (run_id, old_status, new_status) VALUES (NEW.run_id, NULL, NEW.status);
				ELSIF NEW.status IS DISTINCT FROM OLD.status OR NEW.status_data IS DISTINCT FROM OLD.status_data THEN
					INSERT INTO ${slog} (run_id, old_status, new_status) VALUES (NEW.run_id, OLD.status, NEW.status);
				END IF;
				RETURN NULL;
			END $f$;
			CREATE TRIGGER ${fn('slog_tr')} AFTER INSERT OR UPDATE ON ${st} FOR EACH ROW EXECUTE FUNCTION ${fn('slog_fn')}();
		`)
		this.created = true
	}

	async cleanup({ keepLogs = false } = {}) {
		this.closing = true
		this.autoRestart = false
		await this.stopWorkers().catch(() => {})
		const errors = []
		const run = async (f) => {
			try {
				await f()
			} catch (e) {
				errors.push(e)
			}
		}
		await this.closeAmqp()
		if (this.pg && this.created) {
			for (const t of Object.values(this.t))
				await run(() => this.pg.query(`DROP TABLE IF EXISTS ${quoteIdent(t)}, ${quoteIdent(`${t}_nodes`)} CASCADE`))
			for (const f of ['eff_fn', 'effn_fn', 'slog_fn'])
				await run(() => this.pg.query(`DROP FUNCTION IF EXISTS ${quoteIdent(`${this.prefix}_${f}`)}()`))
		}
		await run(async () => {
			const amqplib = require('amqplib')
			const conn = await amqplib.connect(RABBITMQ_URL)
			conn.on('error', () => {})
			for (const q of [this.queue, this.deadQueue]) {
				const ch = await conn.createChannel()
				ch.on('error', () => {})
				await ch.deleteQueue(q).catch(() => {})
				await ch.close().catch(() => {})
			}
			await conn.close()
		})
		if (this.redis) {
			await run(async () => {
				let cursor = '0'
				do {
					const [next, keys] = await this.redis.scan(cursor, 'MATCH', `flowcraft:*${this.prefix}*`, 'COUNT', 1000)
					cursor = next
					if (keys.length) await this.redis.del(...keys)
				} while (cursor !== '0')
			})
			await this.redis.quit().catch(() => this.redis.disconnect())
		}
		if (this.pg) await this.pg.end().catch(() => {})
		if (!keepLogs) fs.rmSync(this.logDir, { recursive: true, force: true })
		if (errors.length) throw errors[0]
	}

	// ---------------------------------------------------------------- workers

	spawnWorker(slot) {
		const logFile = path.join(this.logDir, `worker-${slot}.log`)
		const logStream = fs.createWriteStream(logFile, { flags: 'a' })
		const env = {
			...process.env,
			QUEUE: this.queue,
			CTX_TABLE: this.t.ctx,
			STATUS_TABLE: this.t.st,
			EXEC_TABLE: this.t.exec,
			POSTGRES_URL: this.postgresUrl,
			REDIS_URL,
			RABBITMQ_URL,
			CONCURRENCY: String(this.concurrency),
			...this.workerEnv(slot),
		}
		if (this.maxDeliveries) env.MAX_DELIVERIES = String(this.maxDeliveries)
		const child = spawn(process.execPath, [path.join(__dirname, 'worker.js')], {
			env,
			stdio: ['ignore', 'pipe', 'pipe'],
		})
		const w = {
			slot,
			child,
			pid: child.pid,
			ready: false,
			selfKill: false,
			killedByUs: false,
			stopping: false,
			out: '',
		}
		this.slots[slot] = w
		child.stderr.pipe(logStream, { end: false })
		w.readyPromise = new Promise((resolve) => {
			child.stdout.on('data', (d) => {
				logStream.write(d)
				w.out += d.toString()
				if (!w.ready && w.out.includes('WORKER_READY')) {
					w.ready = true
					resolve(true)
				}
				if (w.out.includes('SELF_KILL')) w.selfKill = true
			})
			child.once('close', () => resolve(false))
		})
		w.closed = new Promise((resolve) => {
			child.once('close', (code, signal) => {
				logStream.end()
				if (w.out.includes('SELF_KILL')) w.selfKill = true
				if (!w.stopping) {
					this.deadPids.add(w.pid)
					if (w.selfKill) this.stats.selfKills++
					else if (!w.killedByUs && !w.ready && w.out.includes('WORKER_FAILED')) {
						// start() failed (e.g. PostgreSQL out of connection slots, shared with other
						// suites): the environment, not a lost guarantee; start it again.
						const line = w.out.split('\n').find((l) => l.startsWith('WORKER_FAILED')) || ''
						this.stats.startFailures.push({ pid: w.pid, line })
						this.log(`worker ${w.pid} failed to start (${line.slice(14, 200)}); starting another`)
					} else if (!w.killedByUs) {
						const tail = safeTail(logFile)
						this.stats.unexpectedExits.push({ pid: w.pid, code, signal, ready: w.ready, tail })
						this.log(`!! worker ${w.pid} exited unexpectedly (code ${code}, signal ${signal})\n${tail}`)
					}
				}
				if (this.slots[slot] === w && this.autoRestart && !this.closing && !w.stopping && slot < this.active) {
					this.stats.workerRestarts++
					setTimeout(
						() => {
							if (this.slots[slot] === w && this.autoRestart && !this.closing && slot < this.active)
								this.spawnWorker(slot)
						},
						w.ready ? 50 : 500,
					)
				}
				resolve({ code, signal })
			})
		})
		return w
	}

	async startWorkers() {
		for (let i = 0; i < this.workerCount; i++) this.spawnWorker(i)
		if (!(await this.waitForWorkersReady(60000)))
			throw new Error(`the workers did not start within 60 s; logs in ${this.logDir}`)
	}

	liveWorkers() {
		return this.slots.filter((w) => w && w.child.exitCode === null && w.child.signalCode === null)
	}

	/** kill -9 the worker process `pid` (restarted by the close handler). */
	killWorkerByPid(pid) {
		const w = this.liveWorkers().find((x) => x.pid === pid)
		if (!w) return false
		w.killedByUs = true
		this.deadPids.add(w.pid)
		w.child.kill('SIGKILL')
		this.stats.kills++
		return true
	}

	/**
	 * Holds the context row of `runId` locked (SELECT ... FOR UPDATE in an open
	 * transaction), so that a worker's commit for that run waits. Returns { release }.
	 */
	async lockRun(runId) {
		const c = await this.pg.connect()
		await c.query('BEGIN')
		// every commit of a run locks its status row first
		await c.query(`SELECT 1 FROM ${quoteIdent(this.t.st)} WHERE run_id = $1 FOR UPDATE`, [runId])
		let released = false
		return {
			release: async () => {
				if (released) return
				released = true
				try {
					await c.query('COMMIT')
				} finally {
					c.release()
				}
			},
		}
	}

	/** The adapter's PostgreSQL backends of worker `pid` that wait for a lock (a blocked statement). */
	async blockedBackends(pid, timeoutMs = 5000) {
		const deadline = Date.now() + timeoutMs
		while (Date.now() < deadline) {
			const ports = localPorts(pid, 5432)
			if (ports.length) {
				const r = await this.pg.query(
					`SELECT pid, left(query, 60) AS query FROM pg_stat_activity
					 WHERE application_name = 'flowcraft-rabbitmq-adapter' AND wait_event_type = 'Lock' AND client_port = ANY($1::int[])`,
					[ports],
				)
				if (r.rows.length) return r.rows
			}
			await sleep(20)
		}
		return []
	}

	async waitForExecutions(runId, nodeId, n, timeoutMs = 15000) {
		const deadline = Date.now() + timeoutMs
		while (Date.now() < deadline) {
			const rows = (await this.executions([runId])).filter((r) => r.node_id === nodeId)
			if (rows.length >= n) return rows
			await sleep(20)
		}
		return (await this.executions([runId])).filter((r) => r.node_id === nodeId)
	}

	/** kill -9 a random ready worker (it is restarted by the close handler). */
	killRandomWorker() {
		const ready = this.liveWorkers().filter((w) => w.ready && !w.killedByUs)
		if (!ready.length) return null
		const w = ready[Math.floor(Math.random() * ready.length)]
		w.killedByUs = true
		this.deadPids.add(w.pid)
		w.child.kill('SIGKILL')
		this.stats.kills++
		return w.pid
	}

	async waitForWorkersReady(timeoutMs = 30000) {
		const deadline = Date.now() + timeoutMs
		while (Date.now() < deadline) {
			const live = this.liveWorkers()
			if (live.length === this.active && live.every((w) => w.ready)) return true
			await sleep(100)
		}
		return false
	}

	/** Runs `n` workers: stops (gracefully) those above, starts those missing. */
	async scaleTo(n) {
		this.active = n
		const extra = this.slots.slice(n).filter((w) => w && w.child.exitCode === null && w.child.signalCode === null)
		for (const w of extra) {
			w.stopping = true
			w.child.kill('SIGTERM')
		}
		await Promise.all(extra.map((w) => w.closed))
		for (let i = 0; i < n; i++) {
			const w = this.slots[i]
			if (!w || w.child.exitCode !== null || w.child.signalCode !== null) this.spawnWorker(i)
		}
		return this.waitForWorkersReady(60000)
	}

	/** SIGTERM every worker (a graceful adapter.stop()), SIGKILL after 15 s. */
	async stopWorkers() {
		this.autoRestart = false
		const live = this.liveWorkers()
		for (const w of live) {
			w.stopping = true
			w.child.kill('SIGTERM')
		}
		await Promise.all(
			live.map(async (w) => {
				let timer
				const r = await Promise.race([
					w.closed,
					new Promise((resolve) => (timer = setTimeout(() => resolve(null), 15000))),
				])
				clearTimeout(timer)
				if (!r) {
					w.child.kill('SIGKILL')
					await w.closed
				}
			}),
		)
	}

	// ---------------------------------------------------------------- faults

	workerPorts(remotePort) {
		const ports = new Set()
		for (const w of this.liveWorkers()) for (const p of localPorts(w.pid, remotePort)) ports.add(p)
		return [...ports]
	}

	/** Terminates the PostgreSQL backends of this harness's workers (the adapter's own connections). */
	async terminatePgBackends() {
		const ports = this.workerPorts(5432)
		if (!ports.length) return 0
		const r = await this.pg.query(
			`SELECT pid, pg_terminate_backend(pid) AS ok FROM pg_stat_activity
			 WHERE application_name = 'flowcraft-rabbitmq-adapter' AND client_port = ANY($1::int[])`,
			[ports],
		)
		const n = r.rows.filter((x) => x.ok).length
		this.stats.pgTerminated += n
		return n
	}

	/** CLIENT KILL ID for every Redis client of this harness's workers (never our own). */
	async killRedisClients() {
		const ports = new Set(this.workerPorts(6379))
		if (!ports.size) return 0
		const list = await this.redis.client('LIST')
		let n = 0
		for (const line of String(list).split('\n')) {
			const id = /(?:^|\s)id=(\d+)/.exec(line)
			const addr = /(?:^|\s)addr=\S*:(\d+)(?:\s|$)/.exec(line)
			if (id && addr && ports.has(Number(addr[1]))) {
				n += Number(await this.redis.client('KILL', 'ID', id[1]))
			}
		}
		this.stats.redisKilled += n
		return n
	}

	/**
	 * Has RabbitMQ close the AMQP connections of this harness's workers
	 * (`rabbitmqctl close_connection`, selected by their local ports): the adapter's
	 * connection drops with jobs unacked and publishes unconfirmed. Not global.
	 */
	async closeAmqpConnections() {
		const ports = new Set(this.workerPorts(5672))
		if (!ports.size) return 0
		const out = await rabbitmqctl(['list_connections', 'pid', 'peer_port', '--silent'])
		const pids = out
			.split('\n')
			.map((l) => l.trim().split(/\s+/))
			.filter((p) => p.length >= 2 && p[0].startsWith('<') && ports.has(Number(p[1])))
			.map((p) => p[0])
		await Promise.all(
			pids.map((pid) => rabbitmqctl(['close_connection', pid, 'flowcraft chaos test: connection closed on purpose'])),
		)
		this.stats.amqpClosed += pids.length
		return pids.length
	}

	/** rabbitmqctl stop_app, wait, start_app (always, in a finally). Global: full suite only. */
	async restartRabbit(downMs = 3000) {
		await this.closeAmqp()
		rabbitStopped = true
		try {
			await rabbitmqctl(['stop_app'])
			await sleep(downMs)
		} finally {
			await rabbitmqctl(['start_app'])
			rabbitStopped = false
			this.stats.rabbitRestarts++
		}
		await rabbitmqctl(['await_startup'], 60000).catch(() => {})
	}

	// ---------------------------------------------------------------- AMQP client

	async channel() {
		if (this.ch) return this.ch
		const amqplib = require('amqplib')
		const conn = await amqplib.connect(RABBITMQ_URL)
		conn.on('error', () => {})
		conn.on('close', () => {
			if (this.conn === conn) {
				this.conn = null
				this.ch = null
			}
		})
		const ch = await conn.createConfirmChannel()
		ch.on('error', () => {})
		ch.on('close', () => {
			if (this.ch === ch) this.ch = null
		})
		// The workers declare the queues (maybe with arguments of their own): check them
		// on a side channel (a failed check closes it) and declare only what is missing.
		for (const q of [this.queue, this.deadQueue]) {
			const probe = await conn.createChannel()
			probe.on('error', () => {})
			const exists = await probe.checkQueue(q).then(
				() => true,
				() => false,
			)
			await probe.close().catch(() => {})
			if (!exists) await ch.assertQueue(q, { durable: true })
		}
		this.conn = conn
		this.ch = ch
		return ch
	}

	async closeAmqp() {
		const conn = this.conn
		this.conn = null
		this.ch = null
		if (conn) await conn.close().catch(() => {})
	}

	/** Publishes raw bodies (Buffer | string | object) persistently and waits for the confirms. */
	async publish(bodies, { queue = this.queue } = {}) {
		for (let attempt = 1; ; attempt++) {
			try {
				const ch = await this.channel()
				for (const b of bodies) {
					const body = Buffer.isBuffer(b) ? b : Buffer.from(typeof b === 'string' ? b : JSON.stringify(b))
					ch.sendToQueue(queue, body, { persistent: true, contentType: 'application/json' })
				}
				await ch.waitForConfirms()
				return
			} catch (e) {
				// A retry may publish some jobs twice (those confirmed before the failure):
				// harmless for the adapter, and logged so a duplicate execution can be traced.
				this.log(`publishing ${bodies.length} messages failed (${e.message}); attempt ${attempt + 1}`)
				if (attempt >= 5) throw e
				await this.closeAmqp()
				await sleep(500 * attempt)
			}
		}
	}

	/** Takes every message now in the dead-letter queue: [{ body, text, reason }]. */
	async drainDeadLetters() {
		const ch = await this.channel()
		const out = []
		for (;;) {
			const m = await ch.get(this.deadQueue, { noAck: true })
			if (!m) break
			const headers = m.properties.headers || {}
			out.push({ body: m.content, text: m.content.toString('utf8'), reason: headerText(headers['x-flowcraft-reason']) })
		}
		this.deadLetters.push(...out)
		return out
	}

	// ---------------------------------------------------------------- runs

	newRunId(phase) {
		return `${this.prefix}.${phase}.${++this.runSeq}`
	}

	/**
	 * Starts runs by the wire protocol: the context row, then one job per start node.
	 * run: { runId, blueprintId = FANOUT, seed, delays, crash, context, duplicateStart }
	 */
	async startRuns(runs) {
		if (!runs.length) return
		const ids = []
		const ctxs = []
		const jobs = []
		for (const r of runs) {
			const bp = blueprints[r.blueprintId || FANOUT]
			const context = {
				...(r.context || {}),
				blueprintId: bp.id,
				blueprintVersion: bp.metadata.version,
				chaosRunId: r.runId,
				chaosSeed: r.seed ?? 0,
			}
			if (r.delays) context.chaosDelays = r.delays
			if (r.crash) context.chaosCrash = r.crash
			ids.push(r.runId)
			ctxs.push(JSON.stringify(context))
			for (const nodeId of startNodesOf(bp)) {
				jobs.push({ runId: r.runId, blueprintId: bp.id, nodeId })
				if (r.duplicateStart) jobs.push({ runId: r.runId, blueprintId: bp.id, nodeId })
			}
		}
		await this.pg.query(
			`INSERT INTO ${quoteIdent(this.t.ctx)} (run_id, context_data) SELECT * FROM unnest($1::text[], $2::jsonb[])`,
			[ids, ctxs],
		)
		await this.publish(jobs)
	}

	/** Fan-out runs for a phase: { runId, seed }. */
	fanoutRuns(phase, n, extra = () => ({})) {
		return Array.from({ length: n }, (_, i) => ({ runId: this.newRunId(phase), seed: i + 1, ...extra(i) }))
	}

	async statuses(runIds) {
		const r = await this.pg.query(
			`SELECT run_id, status, status_data->>'reason' AS reason FROM ${quoteIdent(this.t.st)} WHERE run_id = ANY($1)`,
			[runIds],
		)
		return new Map(r.rows.map((x) => [x.run_id, x]))
	}

	/**
	 * Waits until every run has a final status, or nothing finished for `stallMs`, or
	 * `timeoutMs` passed. Returns the ids still not final.
	 */
	async waitForRuns(runIds, { timeoutMs = 600000, stallMs = 90000, onTick } = {}) {
		const start = Date.now()
		let lastDone = -1
		let lastProgress = Date.now()
		for (;;) {
			const r = await this.pg.query(
				`SELECT count(*)::int AS n FROM ${quoteIdent(this.t.st)} WHERE run_id = ANY($1) AND status IN ('completed', 'failed', 'cancelled')`,
				[runIds],
			)
			const done = r.rows[0].n
			if (onTick) onTick(done, runIds.length)
			if (done >= runIds.length) return []
			if (done !== lastDone) {
				lastDone = done
				lastProgress = Date.now()
			}
			if (Date.now() - lastProgress > stallMs || Date.now() - start > timeoutMs) {
				const st = await this.statuses(runIds)
				return runIds.filter((id) => !['completed', 'failed', 'cancelled'].includes(st.get(id)?.status))
			}
			await sleep(250)
		}
	}

	/** A run's context: its context row with its node rows' outputs and inputs (as getRun merges them). */
	async contextOf(runId) {
		return readContextRow(this.t.ctx, runId, this.pg)
	}

	async waitForKey(runId, key, timeoutMs = 30000) {
		const deadline = Date.now() + timeoutMs
		while (Date.now() < deadline) {
			const context = await this.contextOf(runId)
			if (context && Object.hasOwn(context, key)) return true
			await sleep(50)
		}
		return false
	}

	async executions(runIds) {
		const r = await this.pg.query(
			`SELECT run_id, node_id, attempt, pid, exec_id, at FROM ${quoteIdent(this.t.exec)} WHERE run_id = ANY($1) ORDER BY id`,
			[runIds],
		)
		return r.rows
	}

	/** Durable delivery counters of these runs (the status row's `deliveries`): Map runId -> Map nodeId -> count. */
	async deliveryCounters(runIds) {
		const out = new Map()
		const r = await this.pg.query(
			`SELECT run_id, deliveries FROM ${quoteIdent(this.t.st)} WHERE run_id = ANY($1) AND deliveries IS NOT NULL`,
			[runIds],
		)
		for (const row of r.rows)
			out.set(row.run_id, new Map(Object.entries(row.deliveries).map(([k, v]) => [k, Number(v)])))
		return out
	}

	/** A run's bookkeeping, for diagnostics: the nodes still queued and the join's arrivals (node rows). */
	async runRows(id) {
		const { rows } = await this.pg.query(
			`SELECT node_id, state, joined FROM ${quoteIdent(`${this.t.ctx}_nodes`)} WHERE run_id = $1`,
			[id],
		)
		return {
			queued: rows.filter((r) => r.state === 'queued').map((r) => r.node_id),
			// the nodes counted at the join: each row lists the joins it was counted at
			arrivals: rows.filter((r) => (r.joined || []).includes('join')).map((r) => r.node_id),
		}
	}

	async verifyFanout(runs, faults = {}) {
		const ids = runs.map((r) => r.runId)
		const seedOf = new Map(runs.map((r) => [r.runId, r.seed]))
		const q = (sql) => this.pg.query(sql, [ids]).then((r) => r.rows)
		const [st, ctx, eff, slog, execs, deliveries] = await Promise.all([
			q(`SELECT run_id, status, status_data->>'reason' AS reason,
				(status_data->'payload'->'context') = c.context_data AS payload_ok
				FROM ${quoteIdent(this.t.st)} s LEFT JOIN ${quoteIdent(this.t.ctx)} c USING (run_id) WHERE s.run_id = ANY($1)`),
			q(`SELECT run_id, context_data FROM ${quoteIdent(this.t.ctx)} WHERE run_id = ANY($1)`),
			q(`SELECT run_id, key, value_exec FROM ${quoteIdent(this.t.eff)} WHERE run_id = ANY($1) ORDER BY id`),
			q(`SELECT run_id, old_status, new_status FROM ${quoteIdent(this.t.slog)} WHERE run_id = ANY($1) ORDER BY id`),
			this.executions(ids),
			this.deliveryCounters(ids),
		])
		const group = (rows, key) => {
			const m = new Map()
			for (const r of rows) {
				const k = key(r)
				if (!m.has(k)) m.set(k, [])
				m.get(k).push(r)
			}
			return m
		}
		const stOf = new Map(st.map((r) => [r.run_id, r]))
		const ctxOf = new Map(ctx.map((r) => [r.run_id, r.context_data]))
		const effOf = group(eff, (r) => r.run_id)
		const slogOf = group(slog, (r) => r.run_id)
		const execOf = group(execs, (r) => r.run_id)
		const FINAL = ['completed', 'failed', 'cancelled']

		const res = {
			runs: ids.length,
			completed: 0,
			lost: [],
			duplicated: [],
			inconsistent: [],
			reRunsCrash: 0,
			reRunsConnection: 0,
			/** of which the process that committed had run the node before (retried in place) */
			reRunsConnectionSameProcess: 0,
			/** join executed again with no killed process involved (the brief: only a crash allows it) */
			joinRerunsWithoutCrash: [],
			reRunsDuplicateMessage: 0,
			joinExtraExecutions: { crash: 0, connection: 0, duplicateMessage: 0 },
			unexplained: [],
			redeliveredJobs: 0,
			executions: execs.length,
		}
		for (const id of ids) {
			const s = stOf.get(id)
			const c = ctxOf.get(id) || {}
			const runExecs = execOf.get(id) || []
			const problems = { lost: [], dup: [], inc: [] }
			if (s?.status !== 'completed') {
				problems.lost.push(`status ${s ? `${s.status}${s.reason ? ` (${s.reason})` : ''}` : 'missing'}`)
			} else {
				res.completed++
				if (s.payload_ok !== true) problems.inc.push('final status payload.context differs from the stored context')
			}
			// outputs present once, and the join saw every branch exactly once
			for (const n of FANOUT_NODES) {
				if (!(`_outputs.${n}` in c)) problems.lost.push(`_outputs.${n} missing`)
			}
			const seed = seedOf.get(id)
			const join = c['_outputs.join']
			if (join) {
				const expected = BRANCHES * seed * 10 + (BRANCHES * (BRANCHES - 1)) / 2
				const idx = [...(join.indexes || [])].sort((a, b) => a - b)
				const want = Array.from({ length: BRANCHES }, (_, i) => i)
				if (join.sum !== expected || JSON.stringify(idx) !== JSON.stringify(want)) {
					problems.dup.push(
						`join saw ${JSON.stringify(join.indexes)} sum ${join.sum}, expected every branch once (sum ${expected})`,
					)
				}
				if (c['_outputs.end'] && c['_outputs.end'].total !== join.sum)
					problems.inc.push(`end.total ${c['_outputs.end'].total} != join.sum ${join.sum}`)
			}
			// effects: one per key
			const effCount = new Map()
			for (const e of effOf.get(id) || []) effCount.set(e.key, (effCount.get(e.key) || 0) + 1)
			for (const [k, n] of effCount) if (n > 1) problems.dup.push(`${k} committed ${n} times`)
			// a node's context write committed with its own output (same execution)
			for (const n of FANOUT_NODES) {
				const out = c[`_outputs.${n}`]
				if (out && c[`w.${n}`] !== out.exec)
					problems.inc.push(`w.${n} = ${c[`w.${n}`]} but _outputs.${n}.exec = ${out.exec}`)
			}
			// one final status write, none after it
			const log = slogOf.get(id) || []
			const finals = log.filter((l) => FINAL.includes(l.new_status))
			const afterFinal = log.filter((l) => FINAL.includes(l.old_status))
			if (finals.length > 1)
				problems.dup.push(`${finals.length} final status writes (${finals.map((f) => f.new_status).join(', ')})`)
			if (afterFinal.length)
				problems.dup.push(
					`status changed after final: ${afterFinal.map((l) => `${l.old_status}->${l.new_status}`).join(', ')}`,
				)
			if (s && FINAL.includes(s.status) && finals.length === 0)
				problems.inc.push('final status without a final write in the status log')
			// executions per committed effect
			const runDeliveries = deliveries.get(id)
			if (runDeliveries) for (const v of runDeliveries.values()) res.redeliveredJobs += v
			const deadInRun = runExecs.some((r) => this.deadPids.has(r.pid))
			const byNode = group(runExecs, (r) => r.node_id)
			for (const n of FANOUT_NODES) {
				const rows = byNode.get(n) || []
				const committed = c[`_outputs.${n}`]?.exec
				if (committed && !rows.some((r) => r.exec_id === committed))
					problems.inc.push(`_outputs.${n} came from no recorded execution (${committed})`)
				const extras = rows.filter((r) => r.exec_id !== committed)
				const expectedExtras = committed ? extras.length : Math.max(0, rows.length - 1)
				for (const r of extras.slice(0, expectedExtras)) {
					let why
					if (this.deadPids.has(r.pid) || deadInRun || (runDeliveries && faults.kills)) why = 'crash'
					else if (faults.service) why = 'connection'
					else if (faults.duplicates) why = 'duplicateMessage'
					if (!why) {
						problems.dup.push(
							`node ${n} executed ${rows.length} times without a crash, lost connection or duplicate message (pids ${rows.map((x) => `${x.pid}#${x.attempt}`).join(', ')})`,
						)
						res.unexplained.push({ runId: id, node: n, rows })
						break
					}
					if (why === 'crash') res.reRunsCrash++
					else if (why === 'connection') {
						res.reRunsConnection++
						if (committed && r.pid === Number(String(committed).split('.')[0])) res.reRunsConnectionSameProcess++
					} else res.reRunsDuplicateMessage++
					if (n === 'join') res.joinExtraExecutions[why]++
					// The brief's rule for the join: more than one execution per committed effect
					// only when a killed process was involved.
					// A closed broker connection is a crash in the broker's eyes: it hands the
					// job to another worker while the first may still run it. Only a re-run
					// with the broker connection intact (a PostgreSQL or Redis fault) fails.
					if (n === 'join' && why === 'connection' && !faults.brokerConnection) {
						res.joinRerunsWithoutCrash.push({
							runId: id,
							executions: rows
								.map((x) => `pid ${x.pid} #${x.attempt}${x.exec_id === committed ? ' (committed)' : ''}`)
								.join(', '),
						})
					}
				}
			}
			if (problems.lost.length && res.lost.length < 20) {
				// Where did it stop? The run's bookkeeping, the join's arrivals in Redis, and
				// who executed the nodes that are still queued.
				const { queued, arrivals } = await this.runRows(id)
				const missing = Array.from({ length: BRANCHES }, (_, i) => `b${i}`).filter((b) => !arrivals.includes(b))
				problems.lost.push(`queued [${queued.join(',')}]`)
				if (c['_outputs.b0'] !== undefined) problems.lost.push(`join arrivals missing [${missing.join(',')}]`)
				const preds = (n) => blueprints[FANOUT].edges.filter((e) => e.target === n).map((e) => e.source)
				// the node that made each queued node ready: its only predecessor, or the join's last arrival
				const readiedBy = (q) =>
					preds(q).length === 1 ? preds(q) : q === 'join' && arrivals.length ? [arrivals[arrivals.length - 1]] : []
				const shown = new Set([...queued, ...missing, ...queued.flatMap(readiedBy)])
				for (const n of shown) {
					const rows = byNodeOf(runExecs, n)
					problems.lost.push(
						`${n} executed by ${rows.map((r) => `${r.pid}${this.deadPids.has(r.pid) ? '(killed)' : ''}`).join(', ') || 'nobody'}${c[`_outputs.${n}`] ? `, output committed by ${String(c[`_outputs.${n}`].exec).split('.')[0]}` : ''}`,
					)
				}
			}
			if (problems.lost.length) res.lost.push({ runId: id, problems: problems.lost })
			if (problems.dup.length) res.duplicated.push({ runId: id, problems: problems.dup })
			if (problems.inc.length) res.inconsistent.push({ runId: id, problems: problems.inc })
		}
		return res
	}
}

function byNodeOf(rows, node) {
	return rows.filter((r) => r.node_id === node)
}

function safeTail(file, n = 30) {
	try {
		return fs.readFileSync(file, 'utf8').split('\n').slice(-n).join('\n')
	} catch {
		return ''
	}
}

// ------------------------------------------------------------------ scenarios

/**
 * A fan-out phase: start `runs` runs (paced over `startOverMs`), run `chaos(h, state)`
 * alongside (it returns when its faults are done), wait for every run, verify.
 */
async function fanoutPhase(h, { name, runs, startOverMs = 0, faults = {}, chaos, waitOptions, runExtra } = {}) {
	const t0 = Date.now()
	const list = h.fanoutRuns(name, runs, runExtra)
	const state = { done: false, started: false, runIds: list.map((r) => r.runId) }
	const statsBefore = { ...h.stats }
	const starting = (async () => {
		const batch = Math.max(1, Math.ceil(runs / Math.max(1, startOverMs / 100)))
		for (let i = 0; i < list.length; i += batch) {
			await h.startRuns(list.slice(i, i + batch))
			if (startOverMs) await sleep(100)
		}
		state.started = true
	})()
	const chaosTask = chaos ? chaos(h, state) : Promise.resolve()
	await starting
	const pending = await h.waitForRuns(state.runIds, waitOptions)
	state.done = true
	await chaosTask
	await h.waitForWorkersReady()
	const dead = await h.drainDeadLetters()
	const v = await h.verifyFanout(list, faults)
	const delta = (k) => h.stats[k] - statsBefore[k]
	return {
		name,
		seconds: (Date.now() - t0) / 1000,
		verify: v,
		pending,
		deadLetters: dead,
		kills: delta('kills'),
		selfKills: delta('selfKills'),
		workerRestarts: delta('workerRestarts'),
		rabbitRestarts: delta('rabbitRestarts'),
		pgTerminated: delta('pgTerminated'),
		redisKilled: delta('redisKilled'),
		amqpClosed: delta('amqpClosed'),
		unexpectedExits: h.stats.unexpectedExits.length - statsBefore.unexpectedExits.length,
	}
}

/** A phase passes when every run completed once, nothing was dead-lettered, no worker died by itself. */
function phaseProblems(p) {
	const out = []
	const v = p.verify
	if (v.lost.length) out.push(`${v.lost.length} runs lost, e.g. ${JSON.stringify(v.lost.slice(0, 3))}`)
	if (v.duplicated.length)
		out.push(`${v.duplicated.length} runs with a doubled effect, e.g. ${JSON.stringify(v.duplicated.slice(0, 3))}`)
	if (v.inconsistent.length)
		out.push(`${v.inconsistent.length} runs inconsistent, e.g. ${JSON.stringify(v.inconsistent.slice(0, 3))}`)
	if (p.deadLetters.length)
		out.push(
			`${p.deadLetters.length} dead letters, e.g. ${JSON.stringify(p.deadLetters.slice(0, 3).map((d) => ({ text: d.text.slice(0, 200), reason: d.reason })))}`,
		)
	if (p.unexpectedExits) out.push(`${p.unexpectedExits} worker processes exited by themselves`)
	if (v.joinRerunsWithoutCrash.length) {
		out.push(
			`${v.joinRerunsWithoutCrash.length} runs whose join node ran more than once with no killed process (after a lost connection; its effect was committed once), e.g. ${JSON.stringify(v.joinRerunsWithoutCrash.slice(0, 3))}`,
		)
	}
	return out
}

// ---- redelivery cases

/**
 * Redelivery: the same job twice, a job published again after its commit (what a
 * nack-requeue after the commit amounts to), and a real broker redelivery after the
 * worker holding the job died (the node kills its own process once).
 * Returns [{ name, expected, observed, pass }].
 */
async function redeliveryCases(h, { poison = false } = {}) {
	const cases = []
	const add = (name, expected, observed, pass) => cases.push({ name, expected, observed, pass: !!pass })
	const execCount = (rows, node) => rows.filter((r) => r.node_id === node).length
	const effCount = async (runId, key) =>
		(
			await h.pg.query(`SELECT count(*)::int AS n FROM ${quoteIdent(h.t.eff)} WHERE run_id = $1 AND key = $2`, [
				runId,
				key,
			])
		).rows[0].n
	const finalWrites = async (runId) =>
		(
			await h.pg.query(
				`SELECT count(*)::int AS n FROM ${quoteIdent(h.t.slog)} WHERE run_id = $1 AND new_status IN ('completed','failed','cancelled')`,
				[runId],
			)
		).rows[0].n

	// 1. The same start job published twice, at once.
	const dup = h.fanoutRuns('dupstart', 4, () => ({ duplicateStart: true }))
	await h.startRuns(dup)
	// 2. A branch job published again after the branch committed, while the join still
	//    waits for a slow branch (b7 sleeps 2.5 s): b3 must not run again, the join must
	//    count it once and fire once.
	const br = h.fanoutRuns('republish-branch', 1, () => ({ delays: { b7: 2500 } }))
	// 3. The join job published again after the join committed, while `end` is slow:
	//    the join must not run again, `end` is committed once.
	const jn = h.fanoutRuns('republish-join', 1, () => ({ delays: { end: 2500 } }))
	await h.startRuns([...br, ...jn])

	const brId = br[0].runId
	const okB3 = await h.waitForKey(brId, '_outputs.b3')
	const joinEarly = (await h.contextOf(brId))?.['_outputs.join'] !== undefined
	if (okB3) await h.publish([{ runId: brId, blueprintId: FANOUT, nodeId: 'b3' }])
	const jnId = jn[0].runId
	const okJoin = await h.waitForKey(jnId, '_outputs.join')
	const endEarly = (await h.contextOf(jnId))?.['_outputs.end'] !== undefined
	if (okJoin) await h.publish([{ runId: jnId, blueprintId: FANOUT, nodeId: 'join' }])

	const all = [...dup, ...br, ...jn]
	const pending = await h.waitForRuns(
		all.map((r) => r.runId),
		{ stallMs: 15000, timeoutMs: 120000 },
	)
	await h.waitForWorkersReady()

	// 1b. After completion: publish the start job of a completed run again.
	const doneId = dup[0].runId
	const before = (await h.executions([doneId])).length
	await h.publish([{ runId: doneId, blueprintId: FANOUT, nodeId: 'start' }])
	await sleep(1500)

	const v = await h.verifyFanout(all, { duplicates: true, kills: true })
	const bad = (id) => [...v.lost, ...v.duplicated, ...v.inconsistent].filter((x) => x.runId === id)

	const dupExecs = await h.executions(dup.map((r) => r.runId))
	const dupBad = dup.flatMap((r) => bad(r.runId))
	add(
		'same start job published twice (4 runs)',
		'each run completed, every node committed once, one final status; the start node may run twice, its effect once',
		`${dup.length - dup.filter((r) => bad(r.runId).length).length}/${dup.length} runs clean; start executed ${execCount(dupExecs, 'start')} times in all for ${dup.length} runs${dupBad.length ? `; problems ${JSON.stringify(dupBad)}` : ''}`,
		dupBad.length === 0 && !pending.some((id) => dup.some((r) => r.runId === id)),
	)
	const after = (await h.executions([doneId])).length
	add(
		'start job of a completed run published again',
		'acknowledged and skipped: no execution, no effect, no status write',
		`${after - before} new executions, ${await finalWrites(doneId)} final status writes`,
		after === before && (await finalWrites(doneId)) === 1,
	)
	const brExecs = await h.executions([brId])
	add(
		'branch b3 job published again after its commit (join still waiting)',
		'b3 not run again; join counts b3 once and fires once; one effect per node',
		okB3
			? `b3 executed ${execCount(brExecs, 'b3')}x, join executed ${execCount(brExecs, 'join')}x, _outputs.b3 committed ${await effCount(brId, '_outputs.b3')}x, _outputs.join committed ${await effCount(brId, '_outputs.join')}x${joinEarly ? ' (join already done when republished)' : ''}${bad(brId).length ? `; ${JSON.stringify(bad(brId))}` : ''}`
			: 'b3 never committed',
		okB3 && execCount(brExecs, 'b3') === 1 && execCount(brExecs, 'join') === 1 && bad(brId).length === 0,
	)
	const jnExecs = await h.executions([jnId])
	add(
		'join job published again after its commit (end still running)',
		'join not run again; end committed once (its job is re-published, so end may run twice, its effect once)',
		okJoin
			? `join executed ${execCount(jnExecs, 'join')}x, end executed ${execCount(jnExecs, 'end')}x, _outputs.join committed ${await effCount(jnId, '_outputs.join')}x, _outputs.end committed ${await effCount(jnId, '_outputs.end')}x${endEarly ? ' (end already done when republished)' : ''}${bad(jnId).length ? `; ${JSON.stringify(bad(jnId))}` : ''}`
			: 'join never committed',
		okJoin && execCount(jnExecs, 'join') === 1 && bad(jnId).length === 0,
	)

	// 4. A real redelivery: b2 kills its own worker process on its first execution,
	//    while 12 other runs are in flight on the same workers (their jobs die with it).
	await h.waitForWorkersReady()
	const crash = h.fanoutRuns('crash-once', 1, () => ({ crash: { b2: 'once' }, delays: { b0: 200, b1: 200 } }))
	const beside = h.fanoutRuns('beside-crash', 12, () => ({ delays: { b3: 150, b4: 150, join: 50, end: 50 } }))
	await h.startRuns([...beside.slice(0, 6), ...crash, ...beside.slice(6)])
	const crashPending = await h.waitForRuns(
		[...crash, ...beside].map((r) => r.runId),
		{ stallMs: 15000, timeoutMs: 120000 },
	)
	await h.waitForWorkersReady()
	const cv = await h.verifyFanout([...crash, ...beside], { kills: true })
	const cbad = (id) => [...cv.lost, ...cv.duplicated, ...cv.inconsistent].filter((x) => x.runId === id)
	const crId = crash[0].runId
	const crExecs = await h.executions([crId])
	const crDel = (await h.deliveryCounters([crId])).get(crId)
	const b2 = crExecs.filter((r) => r.node_id === 'b2')
	add(
		'worker killed inside node b2 (real broker redelivery)',
		'b2 re-run by another worker (user code re-ran after crash), committed once, redelivery counted in PostgreSQL, run completed',
		`${crashPending.includes(crId) ? 'run never finished; ' : ''}b2 executed ${b2.length}x (first by pid ${b2[0]?.pid}, ${h.deadPids.has(b2[0]?.pid) ? 'dead' : 'alive'}), _outputs.b2 committed ${await effCount(crId, '_outputs.b2')}x, delivery counter b2=${crDel?.get('b2') ?? 0}${cbad(crId).length ? `; ${JSON.stringify(cbad(crId))}` : ''}`,
		b2.length === 2 &&
			h.deadPids.has(b2[0].pid) &&
			(await effCount(crId, '_outputs.b2')) === 1 &&
			(crDel?.get('b2') ?? 0) >= 1 &&
			cbad(crId).length === 0,
	)
	const besideBad = beside.flatMap((r) => cbad(r.runId))
	add(
		`${beside.length} runs in flight on the worker that died`,
		'all completed, every effect once, the join fired once per run with every branch (their user code may re-run)',
		`${beside.length - beside.filter((r) => crashPending.includes(r.runId)).length}/${beside.length} finished; ${cv.reRunsCrash} user-code re-runs after the crash${besideBad.length ? `; problems ${JSON.stringify(besideBad)}` : ''}`,
		besideBad.length === 0,
	)

	if (poison) {
		// A job that kills every worker that takes it, with ONE worker process, and an
		// innocent run whose node b1 takes 2 s: each crash also kills b1's delivery, so both
		// are redelivered together every time. The poison job must end in the dead-letter
		// queue; the innocent run must not pay for it.
		const stray0 = await h.drainDeadLetters()
		if (stray0.length)
			add(
				'no dead letters from the redelivery cases',
				'none',
				`${stray0.length}: ${JSON.stringify(stray0.map((d) => d.reason))}`,
				false,
			)
		await h.scaleTo(1)
		const poisonRun = h.fanoutRuns('poison', 1, () => ({ crash: { b5: 'always' } }))
		const innocent = h.fanoutRuns('beside-poison', 1, () => ({ delays: { b1: 2000 } }))
		await h.startRuns([...innocent, ...poisonRun])
		const pId = poisonRun[0].runId
		const iId = innocent[0].runId
		const left = await h.waitForRuns([pId, iId], { stallMs: 60000, timeoutMs: 300000 })
		await h.waitForWorkersReady()
		await sleep(1000)
		const st = await h.statuses([pId, iId])
		const dls = await h.drainDeadLetters()
		const pDls = dls.filter((d) => d.text.includes(pId))
		const iDls = dls.filter((d) => d.text.includes(iId))
		const nodeOf = (d) => {
			try {
				return JSON.parse(d.text).nodeId
			} catch {
				return '?'
			}
		}
		const pExecs = (await h.executions([pId])).filter((r) => r.node_id === 'b5')
		const max = h.maxDeliveries || 20
		const ps = st.get(pId)
		add(
			`poison job: b5 kills every worker that runs it (one worker process, maxDeliveries ${max})`,
			`b5 dead-lettered (every copy of its job) after about ${max} deliveries, with a reason; the run fails with that reason`,
			`${left.includes(pId) ? 'run never finished; ' : ''}status ${ps?.status}, reason ${JSON.stringify(ps?.reason)}; b5 executed ${pExecs.length}x; dead letters of the run: ${pDls.map((d) => `${nodeOf(d)} (${(d.reason || '').slice(0, 60)}…)`).join(', ') || 'none'}`,
			ps?.status === 'failed' &&
				/poison/.test(ps?.reason || '') &&
				pDls.length >= 1 &&
				pDls.every((d) => nodeOf(d) === 'b5' && /poison/.test(d.reason || '')),
		)
		const iv = await h.verifyFanout(innocent, { kills: true })
		const iBad = [...iv.lost, ...iv.duplicated, ...iv.inconsistent]
		add(
			'innocent run (b1 takes 2 s) on the worker the poison job keeps killing',
			'completed, every check passes, none of its jobs dead-lettered (its user code re-runs after each crash)',
			`status ${st.get(iId)?.status}${st.get(iId)?.reason ? ` (${st.get(iId).reason})` : ''}; ${iDls.length} of its jobs dead-lettered${iDls.length ? ` (${iDls.map((d) => `${nodeOf(d)}: ${(d.reason || '').slice(0, 110)}`).join('; ')})` : ''}; b1 executed ${(await h.executions([iId])).filter((r) => r.node_id === 'b1').length}x`,
			iBad.length === 0 && iDls.length === 0,
		)
		const others = dls.filter((d) => !pDls.includes(d) && !iDls.includes(d))
		if (others.length)
			add('no other dead letters beside the poison job', 'none', JSON.stringify(others.map((d) => d.reason)), false)
		await h.scaleTo(h.workerCount)
	}
	const stray = await h.drainDeadLetters()
	if (stray.length)
		add(
			'no dead letters from the redelivery cases',
			'none',
			`${stray.length}: ${JSON.stringify(stray.map((d) => d.reason))}`,
			false,
		)
	return cases
}

// ---- a connection lost while a commit is in flight (deterministic)

/**
 * Two races made deterministic by holding the run's status row locked so that a
 * worker's commit statement is in flight (blocked) at the moment of the fault:
 *  1. the worker is killed while its commit waits; the broker redelivers the job, which
 *     loads the run (no output yet) and runs the node again; then the lock is released
 *     and the dead worker's commit lands first (PostgreSQL finishes a statement it has
 *     received even when its client is gone). The redelivered job's commit finds the
 *     output committed: it must still do what follows a commit (join arrival,
 *     successors), because the delivery that committed is dead.
 *  2. the worker's PostgreSQL backend is terminated while its commit waits: the commit
 *     is rolled back and must be retried (a lost connection), not dead-lettered.
 */
async function inflightCommitCases(h) {
	const cases = []
	const add = (name, expected, observed, pass) => cases.push({ name, expected, observed, pass: !!pass })
	const others = Array.from({ length: 8 }, (_, i) => `b${i}`).filter((n) => n !== 'b3')
	const waitOthers = async (runId) => {
		for (const n of ['start', ...others]) if (!(await h.waitForKey(runId, `_outputs.${n}`, 20000))) return false
		return true
	}
	for (const kind of ['kill', 'terminate']) {
		await h.waitForWorkersReady()
		const [run] = h.fanoutRuns(`inflight-${kind}`, 1, () => ({ delays: { b3: 1500 } }))
		const id = run.runId
		await h.startRuns([run])
		const steps = []
		let lock
		try {
			const first = await h.waitForExecutions(id, 'b3', 1)
			if (!first.length || !(await waitOthers(id)))
				throw new Error('b3 never started or the other branches never committed')
			const pid = first[0].pid
			lock = await h.lockRun(id)
			const blocked = await h.blockedBackends(pid, 5000)
			if (!blocked.length) throw new Error(`the commit of b3 (worker ${pid}) never waited on the lock`)
			steps.push(`b3's commit in flight on worker ${pid} (${blocked[0].query.replace(/\s+/g, ' ').trim()}…)`)
			if (kind === 'kill') {
				h.killWorkerByPid(pid)
				const again = await h.waitForExecutions(id, 'b3', 2, 15000)
				steps.push(
					again.length >= 2
						? `killed it; b3 redelivered and running again on ${again[1].pid}`
						: 'killed it; b3 was not run again within 15 s',
				)
			} else {
				const r = await h.pg.query('SELECT pg_terminate_backend(pid) AS ok FROM unnest($1::int[]) AS pid', [
					blocked.map((b) => b.pid),
				])
				steps.push(`terminated its backend (${r.rows.filter((x) => x.ok).length})`)
				await sleep(300)
			}
		} catch (e) {
			steps.push(`setup failed: ${e.message}`)
		} finally {
			if (lock) await lock.release()
		}
		const pending = await h.waitForRuns([id], { stallMs: 10000, timeoutMs: 40000 })
		await h.waitForWorkersReady()
		const v = await h.verifyFanout([run], { kills: kind === 'kill', service: kind === 'terminate' })
		const probs = [...v.lost, ...v.duplicated, ...v.inconsistent].flatMap((x) => x.problems)
		const dls = (await h.drainDeadLetters()).filter((d) => d.text.includes(id))
		const { queued: queuedNodes, arrivals: fanin } = await h.runRows(id)
		add(
			kind === 'kill'
				? 'worker killed while its commit is in flight; the commit lands after the redelivered job loaded the run'
				: 'PostgreSQL backend terminated while a commit is in flight',
			kind === 'kill'
				? 'run completed: b3 committed once, the join counts b3 and fires once (b3 may run twice)'
				: 'the commit is retried on a new connection; run completed, nothing dead-lettered',
			`${steps.join('; ')}. ${pending.length ? 'Run never finished' : 'Run finished'}${probs.length ? `: ${probs.join('; ')}` : ''}${dls.length ? `; dead-lettered: ${dls.map((d) => d.reason).join(' | ')}` : ''}${pending.length ? `; node rows: queued=${JSON.stringify(queuedNodes)}, join arrivals=${[...fanin].sort().join(',')}` : ''}`,
			!steps.some((x) => x.startsWith('setup failed')) && !pending.length && !probs.length && !dls.length,
		)
	}
	return cases
}

// ---- bad inputs

/**
 * Issue 4's bad inputs, each with its expected outcome, while `normalRuns` fan-out runs
 * go on beside them. `big` adds the 10 MB cases. Returns [{ name, expected, observed, pass }].
 */
async function badInputCases(h, { big = true, normalRuns = 20 } = {}) {
	const cases = []
	const add = (name, expected, observed, pass) => cases.push({ name, expected, observed, pass: !!pass })
	const marker = (s) => `${h.prefix}.bad.${s}`
	const exitsBefore = h.stats.unexpectedExits.length

	const normal = h.fanoutRuns('beside-bad', normalRuns)
	await h.startRuns(normal)

	// Messages that are not jobs: dead-lettered with a reason.
	const raw = [
		{ name: 'malformed JSON', body: `{"runId": "${marker('malformed')}", "blueprintId": `, reason: /not JSON/ },
		{ name: 'JSON that is not an object', body: JSON.stringify([marker('array')]), reason: /not an object/ },
		{
			name: 'invalid UTF-8',
			body: Buffer.concat([Buffer.from([0xff, 0xfe, 0xfd]), Buffer.from(marker('utf8'))]),
			reason: /UTF-8/,
		},
		{
			name: 'runId of the wrong type (number)',
			body: JSON.stringify({ runId: 12345, blueprintId: FANOUT, nodeId: 'start', m: marker('type1') }),
			reason: /runId.*must be a string/,
		},
		{
			name: 'nodeId of the wrong type (object)',
			body: JSON.stringify({ runId: marker('type2'), blueprintId: FANOUT, nodeId: { id: 'start' } }),
			reason: /nodeId.*must be a string/,
		},
		{
			name: 'attempt of the wrong type (string)',
			body: JSON.stringify({ runId: marker('type3'), blueprintId: FANOUT, nodeId: 'start', attempt: 'two' }),
			reason: /wrong type/,
		},
		{
			name: 'missing nodeId',
			body: JSON.stringify({ runId: marker('missing'), blueprintId: FANOUT }),
			reason: /nodeId/,
		},
	]
	if (big)
		raw.push({
			name: '10 MB body that is not JSON',
			body: `${marker('bigjunk')} ${'x'.repeat(10 * 1024 * 1024)}`,
			reason: /not JSON/,
		})
	await h.publish(raw.map((r) => r.body))

	// Jobs naming an unknown blueprint / node: dead-lettered, and the run fails naming it.
	const unknownBp = { runId: marker('unknown-bp'), blueprintId: 'no-such-blueprint', nodeId: 'a' }
	const unknownNode = { runId: marker('unknown-node'), blueprintId: FANOUT, nodeId: 'no-such-node' }
	await h.pg.query(`INSERT INTO ${quoteIdent(h.t.ctx)} (run_id, context_data) VALUES ($1, $2), ($3, $4)`, [
		unknownBp.runId,
		JSON.stringify({ blueprintId: 'no-such-blueprint', blueprintVersion: null }),
		unknownNode.runId,
		JSON.stringify({ blueprintId: FANOUT, blueprintVersion: VERSION }),
	])
	// A run stored with another blueprint version: refused, dead-lettered, run untouched.
	const versionRun = { runId: marker('version'), blueprintId: FANOUT, nodeId: 'start' }
	await h.pg.query(`INSERT INTO ${quoteIdent(h.t.ctx)} (run_id, context_data) VALUES ($1, $2)`, [
		versionRun.runId,
		JSON.stringify({ blueprintId: FANOUT, blueprintVersion: 'v0', chaosRunId: versionRun.runId }),
	])
	await h.publish([unknownBp, unknownNode, versionRun])

	// Runs whose node output / writes / result are bad: the run fails with a clear reason.
	const failing = [
		{ bp: 'bad-bigint', name: 'node output with a BigInt', reason: /BigInt/ },
		{ bp: 'bad-cycle', name: 'node output with a cycle', reason: /circular|cycl/i },
		{ bp: 'bad-fn-output', name: 'node output that is a function', reason: /function|JSON/i },
		{ bp: 'bad-ctx-fn', name: 'context value that is a function', reason: /callback.*function|function.*callback/ },
		{ bp: 'bad-ctx-bigint', name: 'context value that is a BigInt', reason: /amount[\s\S]*BigInt|BigInt[\s\S]*amount/ },
		{ bp: 'bad-number', name: 'node returning 42 (not an object)', reason: /returned.*42.*must return an object/ },
		{ bp: 'bad-string', name: "node returning 'done' (not an object)", reason: /must return an object/ },
		{
			bp: 'sql-uses-missing',
			name: '`uses` key with SQL in it, not registered',
			reason: new RegExp(
				`No implementation registered for '${SQL_USES_MISSING.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}'`,
			),
		},
	].map((c) => ({ ...c, runId: marker(c.bp) }))
	const completing = [
		{
			bp: 'sql-uses',
			name: '`uses` key with SQL in it, registered',
			check: (ctx) => ctx['_outputs.n'] === 'sql-key-ok',
		},
		{
			bp: FANOUT,
			name: 'run id with quotes and SQL',
			runId: `${marker('quote')}.O'Brien"; DROP TABLE ${h.t.ctx}; --\\`,
			fanout: true,
		},
	]
	if (big) {
		completing.push({
			bp: 'big-output',
			name: 'node output of 10 MB',
			check: (ctx) => typeof ctx['_outputs.n']?.blob === 'string' && ctx['_outputs.n'].blob.length === 10 * 1024 * 1024,
		})
		completing.push({
			bp: FANOUT,
			name: '10 MB job (valid job plus a 10 MB unknown field)',
			runId: marker('bigjob'),
			fanout: true,
			bigJob: true,
		})
	}
	for (const c of completing) c.runId = c.runId || marker(c.bp)
	const startList = [...failing, ...completing.filter((c) => !c.bigJob)].map((c) => ({
		runId: c.runId,
		blueprintId: c.bp,
		seed: 7,
	}))
	await h.startRuns(startList)
	for (const c of completing.filter((x) => x.bigJob)) {
		await h.pg.query(`INSERT INTO ${quoteIdent(h.t.ctx)} (run_id, context_data) VALUES ($1, $2)`, [
			c.runId,
			JSON.stringify({ blueprintId: FANOUT, blueprintVersion: VERSION, chaosRunId: c.runId, chaosSeed: 7 }),
		])
		await h.publish([{ runId: c.runId, blueprintId: FANOUT, nodeId: 'start', padding: 'p'.repeat(10 * 1024 * 1024) }])
	}

	const watched = [
		...normal.map((r) => r.runId),
		...failing.map((c) => c.runId),
		...completing.map((c) => c.runId),
		unknownBp.runId,
		unknownNode.runId,
	]
	const pending = await h.waitForRuns(watched, { stallMs: 45000, timeoutMs: 120000 })
	await sleep(1000) // dead letters of messages without a run
	const dls = await h.drainDeadLetters()
	const st = await h.statuses([...watched, versionRun.runId, marker('type3')])

	for (const r of raw) {
		const key = Buffer.isBuffer(r.body) ? r.body.toString('utf8') : r.body
		const m = key.match(new RegExp(`${h.prefix}\\.bad\\.[a-z0-9]+`))[0]
		const found = dls.filter((d) => d.text.includes(m))
		add(
			`message: ${r.name}`,
			`dead-lettered with a reason matching ${r.reason}`,
			found.length
				? `${found.length} dead letter(s), reason ${JSON.stringify((found[0].reason || '').slice(0, 200))}`
				: 'not dead-lettered',
			found.length === 1 && r.reason.test(found[0].reason || ''),
		)
	}
	const type3 = st.get(marker('type3'))
	add(
		'message with a bad field type leaves its run untouched',
		'no status row for that run id',
		type3 ? `status row ${type3.status}` : 'no status row',
		!type3,
	)
	for (const [job, what, re] of [
		[unknownBp, 'unknown blueprint', /no-such-blueprint/],
		[unknownNode, 'unknown node', /no-such-node/],
	]) {
		const found = dls.filter((d) => d.text.includes(job.runId))
		const s = st.get(job.runId)
		add(
			`job naming an ${what}`,
			`dead-lettered and the run failed, both with a reason naming it (${re})`,
			`${found.length} dead letter(s)${found[0] ? ` reason ${JSON.stringify(found[0].reason)}` : ''}; run ${s?.status} ${JSON.stringify(s?.reason)}`,
			found.length === 1 && re.test(found[0].reason || '') && s?.status === 'failed' && re.test(s?.reason || ''),
		)
	}
	{
		const found = dls.filter((d) => d.text.includes(versionRun.runId))
		const s = st.get(versionRun.runId)
		const ctx = await h.contextOf(versionRun.runId)
		add(
			'job of a run stored with another blueprint version',
			'dead-lettered with a version-mismatch reason; the run untouched (no status, context unchanged)',
			`${found.length} dead letter(s)${found[0] ? ` reason ${JSON.stringify(found[0].reason.slice(0, 160))}` : ''}; status ${s ? s.status : 'none'}; context keys ${Object.keys(ctx || {}).join(',')}`,
			found.length === 1 && /version/i.test(found[0].reason || '') && !s && Object.keys(ctx || {}).length === 3,
		)
	}
	for (const c of failing) {
		const s = st.get(c.runId)
		add(
			c.name,
			`run failed with a reason matching ${c.reason}`,
			`run ${s ? s.status : 'not finished'}${s?.reason ? `: ${JSON.stringify(s.reason.slice(0, 240))}` : ''}`,
			s?.status === 'failed' && c.reason.test(s.reason || ''),
		)
	}
	for (const c of completing) {
		const s = st.get(c.runId)
		let ok = s?.status === 'completed'
		let detail = ''
		if (ok && c.check) {
			ok = c.check(await h.contextOf(c.runId))
			detail = ok ? '' : ', output wrong'
		}
		if (ok && c.fanout) {
			const v = await h.verifyFanout([{ runId: c.runId, seed: 7 }])
			const probs = [...v.lost, ...v.duplicated, ...v.inconsistent]
			ok = probs.length === 0
			detail = ok ? ', all checks pass' : `, ${JSON.stringify(probs)}`
		}
		add(
			c.name,
			'run completed with its output intact',
			`run ${s ? s.status : 'not finished'}${s?.reason ? ` (${s.reason.slice(0, 200)})` : ''}${detail}`,
			ok,
		)
	}
	// The tables survived the SQL in keys and ids.
	const tables = await h.pg.query(`SELECT count(*)::int AS n FROM pg_tables WHERE tablename = ANY($1)`, [
		[h.t.ctx, h.t.st],
	])
	add(
		'tables intact after SQL in keys and run ids',
		'context and status tables exist',
		`${tables.rows[0].n}/2 exist`,
		tables.rows[0].n === 2,
	)
	// Table names with quotes are refused before anything runs.
	{
		const { RabbitMqAdapter, RedisCoordinationStore } = require(path.join(__dirname, '..'))
		let err
		try {
			new RabbitMqAdapter({
				amqpConnection: RABBITMQ_URL,
				pgClient: POSTGRES_URL,
				coordinationStore: new RedisCoordinationStore(REDIS_URL),
				queueName: h.queue,
				contextTableName: `ctx"; DROP TABLE ${h.t.st}; --`,
				statusTableName: h.t.st,
				runtimeOptions: { registry: {}, blueprints: {} },
			})
		} catch (e) {
			err = e
		}
		add(
			'table name with quotes',
			'the constructor throws ERR_INVALID_TABLE_NAME',
			err ? `${err.code}: ${err.message.slice(0, 160)}` : 'no error',
			err && err.code === 'ERR_INVALID_TABLE_NAME',
		)
	}
	// The worker kept serving: the runs beside the bad inputs all completed correctly.
	const v = await h.verifyFanout(normal)
	const probs = [...v.lost, ...v.duplicated, ...v.inconsistent]
	add(
		`${normal.length} normal runs beside the bad inputs`,
		'all completed, every check passes, no worker process crashed',
		`${v.completed}/${normal.length} completed, ${probs.length} with problems, ${h.stats.unexpectedExits.length - exitsBefore} worker crashes${pending.length ? `, pending ${pending.slice(0, 5).join(' ')}` : ''}`,
		probs.length === 0 && h.stats.unexpectedExits.length === exitsBefore,
	)
	const expectedDl = raw.length + 3
	add(
		'dead letters are logged',
		`the workers logged each of the ${expectedDl} dead letters`,
		`${countLogLines(h, 'Message dead-lettered')} 'Message dead-lettered' log lines in all (this harness so far)`,
		countLogLines(h, 'Message dead-lettered') >= expectedDl,
	)
	const extra = dls.filter(
		(d) =>
			!raw.some((r) => d.text.includes(r.body.toString().match(new RegExp(`${h.prefix}\\.bad\\.[a-z0-9]+`))[0])) &&
			![unknownBp, unknownNode, versionRun].some((j) => d.text.includes(j.runId)),
	)
	add(
		'no other dead letters',
		'none',
		extra.length ? JSON.stringify(extra.map((d) => ({ text: d.text.slice(0, 120), reason: d.reason }))) : 'none',
		extra.length === 0,
	)
	return { cases, deadLettered: dls.length }
}

function countLogLines(h, needle) {
	let n = 0
	for (const f of fs.readdirSync(h.logDir)) {
		const text = fs.readFileSync(path.join(h.logDir, f), 'utf8')
		n += text.split(needle).length - 1
	}
	return n
}

// ------------------------------------------------------------------ reporting

function table(headers, rows) {
	const line = (cells) => `| ${cells.join(' | ')} |`
	return [
		line(headers),
		line(headers.map(() => '---')),
		...rows.map((r) => line(r.map((c) => String(c).replace(/\|/g, '\\|').replace(/\n/g, ' ')))),
	].join('\n')
}

function phaseRow(p) {
	const v = p.verify
	return [
		p.name,
		v.runs,
		v.completed,
		p.kills,
		p.workerRestarts,
		p.rabbitRestarts,
		p.amqpClosed,
		p.pgTerminated,
		p.redisKilled,
		v.lost.length,
		v.duplicated.length,
		p.deadLetters.length,
		v.reRunsCrash,
		v.reRunsConnection,
		v.joinExtraExecutions.crash,
		v.joinExtraExecutions.connection,
		v.redeliveredJobs,
		p.seconds.toFixed(1),
	]
}

const PHASE_HEADERS = [
	'phase',
	'runs',
	'completed',
	'kills (-9)',
	'worker restarts',
	'RabbitMQ restarts',
	'AMQP connections closed',
	'PG backends killed',
	'Redis clients killed',
	'lost',
	'duplicated',
	'dead-lettered',
	'user code re-ran after crash',
	'user code re-ran after lost connection',
	'join re-ran after crash',
	'join re-ran without crash',
	'redeliveries counted',
	'seconds',
]

module.exports = {
	POSTGRES_URL,
	REDIS_URL,
	RABBITMQ_URL,
	BRANCHES,
	FANOUT,
	FANOUT_NODES,
	VERSION,
	SQL_USES_KEY,
	SQL_USES_MISSING,
	blueprints,
	Chaos,
	fanoutPhase,
	phaseProblems,
	redeliveryCases,
	inflightCommitCases,
	badInputCases,
	table,
	phaseRow,
	PHASE_HEADERS,
	sleep,
	rabbitIsStoppedByUs,
	ensureRabbitStarted,
	localPorts,
}
