'use strict'
/**
 * The harness of the chaos suite (chaos/run.js, __test__/chaos.test.js, chaos/faults.js).
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
 * (pg_terminate_backend, CLIENT KILL ID, rabbitmqctl close_connection). A fault that
 * hits a whole server (the RabbitMQ restart, a PostgreSQL restart) needs a harness on a
 * private instance (chaos/private.js, the `rabbit` / `postgresUrl` options): the shared
 * services are never stopped, restarted or reconfigured.
 *
 * Scenarios: fanoutPhase (runs under a chaos function, then verifyFanout),
 * redeliveryCases, inflightCommitCases (faults timed to land on a commit in flight, by
 * holding the run's row locked) and badInputCases. Each case is
 * { name, expected, observed, pass }.
 *
 * The methods are in modules by concern, mixed into Chaos here: chaos/workers.js (the
 * worker processes), chaos/fault-actions.js (the faults), chaos/runs.js (AMQP client,
 * runs and what the tables say of them), chaos/verify.js (verifyFanout and the side
 * tables). The scenarios are in chaos/phases.js and chaos/bad-inputs.js, the report
 * tables in chaos/report.js.
 */
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const crypto = require('node:crypto')
const { POSTGRES_URL, REDIS_URL, RABBITMQ_URL, quoteIdent } = require('./services')
const { SIDE_FUNCTIONS, sideTablesSql, ChaosVerify } = require('./verify')
const { ChaosWorkers } = require('./workers')
const { ChaosFaults } = require('./fault-actions')
const { ChaosRuns } = require('./runs')

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
	 * @param {object} [o.rabbit]  a private RabbitMQ node (chaos/private.js
	 *   startPrivateRabbit) for the queues, the checker and the workers, which
	 *   restartRabbit() stops and starts; default the shared broker (RABBITMQ_URL),
	 *   which restartRabbit() refuses to touch
	 */
	constructor({
		label = 'chaos',
		workers = 3,
		concurrency = 64,
		log = (l) => console.log(l),
		maxDeliveries,
		workerEnv = () => ({}),
		postgresUrl = POSTGRES_URL,
		rabbit = null,
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
		this.rabbit = rabbit
		this.rabbitmqUrl = rabbit ? rabbit.url : RABBITMQ_URL
		this.amqpPort = Number(new URL(this.rabbitmqUrl).port || 5672)
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
		// the worker's own tables, as `npx flowcraft-rabbitmq sql` prints them (the triggers of sideTablesSql watch them)
		await this.pg.query(require('../lib/load-native').loadNative().tablesSql(this.t.ctx, this.t.st))
		await this.pg.query(sideTablesSql(this.prefix, this.t))
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
			for (const f of SIDE_FUNCTIONS)
				await run(() => this.pg.query(`DROP FUNCTION IF EXISTS ${quoteIdent(`${this.prefix}_${f}`)}()`))
		}
		await run(async () => {
			const amqplib = require('amqplib')
			const conn = await amqplib.connect(this.rabbitmqUrl)
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
}

// the methods of each concern, as if written in the class body (non-enumerable)
for (const part of [ChaosWorkers, ChaosFaults, ChaosRuns, ChaosVerify]) {
	for (const name of Object.getOwnPropertyNames(part.prototype)) {
		if (name === 'constructor') continue
		if (Object.hasOwn(Chaos.prototype, name)) throw new Error(`Chaos.${name} defined twice`)
		Object.defineProperty(Chaos.prototype, name, Object.getOwnPropertyDescriptor(part.prototype, name))
	}
}

module.exports = { Chaos }
