'use strict'
/**
 * A worker process of the chaos suite, started as the README's worker.ts starts one
 * (amqplib, pg and ioredis objects handed to RabbitMqAdapter, then `adapter.start()`;
 * __test__/helpers/boot-worker.js).
 *
 * Environment:
 *   QUEUE, CTX_TABLE, STATUS_TABLE   queue and tables the adapter uses
 *   EXEC_TABLE                        side table: one row per node execution
 *   POSTGRES_URL, REDIS_URL, RABBITMQ_URL
 *   CONCURRENCY                       adapter concurrency (default 64)
 *   MAX_DELIVERIES                    passed as the adapter's `maxDeliveries` when set
 *   ADAPTER_POSTGRES_URL, ADAPTER_REDIS_URL, ADAPTER_RABBITMQ_URL
 *                                     where the adapter connects, when not the services
 *                                     above (a fault proxy, chaos/proxy.js); the side
 *                                     table is always written through POSTGRES_URL
 *   TIMINGS                           JSON, passed as the adapter's `timings` when set
 *
 * Every node of the chaos blueprints writes one row `(run_id, node_id, attempt, pid,
 * exec_id, at)` into EXEC_TABLE when it starts executing, where `attempt` is this
 * process's count of executions of that run/node, and `exec_id` (pid.attempt.random)
 * is also put into the node's output and into its context write `w.<nodeId>`, so the
 * checker can tell which execution's effect was committed.
 *
 * The run's context carries what a node needs to know about its run:
 *   chaosRunId   the run id (a NodeContext has no run id)
 *   chaosSeed    a number; branch i outputs value = seed * 10 + i
 *   chaosDelays  { nodeId: ms } a node sleeps that long before returning
 *   chaosCrash   { nodeId: 'once' | 'always' } the node SIGKILLs its own process after
 *                recording its execution ('once': only when no execution of that
 *                run/node was recorded before, by any process)
 *
 * Prints WORKER_READY once start() resolved, and SELF_KILL before a chaosCrash kill.
 */
const fs = require('node:fs')
const crypto = require('node:crypto')
const { Pool } = require('pg')
const { bootWorker } = require('../__test__/helpers/boot-worker')
const { blueprints, BRANCHES, SQL_USES_KEY } = require('./blueprints')

const env = process.env
const log = (...args) =>
	process.stderr.write(`[chaos-worker ${process.pid}] ${new Date().toISOString()} ${args.join(' ')}\n`)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// The side table is written on connections of its own (application_name differs from
// the adapter's, so the PostgreSQL fault phase does not hit them), with retries: a
// failure here would fail the node and blame the adapter for the harness.
const sidePool = new Pool({ connectionString: env.POSTGRES_URL, max: 3, application_name: 'flowcraft-chaos-node' })
sidePool.on('error', (e) => log('side pool error', e.message))
const EXEC_TABLE = `"${env.EXEC_TABLE}"`

async function sideQuery(sql, params) {
	let delay = 50
	for (let i = 0; ; i++) {
		try {
			return await sidePool.query(sql, params)
		} catch (e) {
			if (i >= 40) throw e
			await sleep(delay)
			delay = Math.min(delay * 2, 1000)
		}
	}
}

const counts = new Map()

/** Records one execution; returns its exec id. Crashes the process when asked to. */
async function record(ctx, nodeId) {
	const runId = String((await ctx.context.get('chaosRunId')) ?? '?')
	const key = `${runId}\u0000${nodeId}`
	const attempt = (counts.get(key) || 0) + 1
	counts.set(key, attempt)
	const execId = `${process.pid}.${attempt}.${crypto.randomBytes(4).toString('hex')}`
	const crash = (await ctx.context.get('chaosCrash'))?.[nodeId]
	let before = 0
	if (crash === 'once') {
		const r = await sideQuery(`SELECT count(*)::int AS n FROM ${EXEC_TABLE} WHERE run_id = $1 AND node_id = $2`, [
			runId,
			nodeId,
		])
		before = r.rows[0].n
	}
	await sideQuery(`INSERT INTO ${EXEC_TABLE} (run_id, node_id, attempt, pid, exec_id) VALUES ($1, $2, $3, $4, $5)`, [
		runId,
		nodeId,
		attempt,
		process.pid,
		execId,
	])
	if (crash === 'always' || (crash === 'once' && before === 0)) {
		fs.writeSync(1, `SELF_KILL ${runId} ${nodeId}\n`)
		process.kill(process.pid, 'SIGKILL')
		await sleep(10000) // never reached
	}
	const delays = (await ctx.context.get('chaosDelays')) || {}
	if (delays[nodeId]) await sleep(delays[nodeId])
	else await sleep(Math.floor(Math.random() * 4)) // a little jitter so kills land mid-node too
	return execId
}

const registry = {
	'chaos.start': async (ctx) => {
		const node = ctx.params.node
		const exec = await record(ctx, node)
		await ctx.context.set(`w.${node}`, exec)
		return { output: { seed: Number(await ctx.context.get('chaosSeed')), exec } }
	},
	'chaos.branch': async (ctx) => {
		const { node, index } = ctx.params
		const exec = await record(ctx, node)
		await ctx.context.set(`w.${node}`, exec)
		return { output: { index, value: ctx.input.seed * 10 + index, exec } }
	},
	// The 'all' join: reads every branch output from the context and sums them. A join
	// that fired before all branches committed fails the run (and the checker sees it).
	'chaos.join': async (ctx) => {
		const node = ctx.params.node
		const exec = await record(ctx, node)
		let sum = 0
		const indexes = []
		const missing = []
		for (let i = 0; i < BRANCHES; i++) {
			const out = await ctx.context.get(`_outputs.b${i}`)
			if (!out) missing.push(`b${i}`)
			else {
				sum += out.value
				indexes.push(out.index)
			}
		}
		if (missing.length) throw new Error(`join fired before its predecessors completed: missing ${missing.join(', ')}`)
		await ctx.context.set(`w.${node}`, exec)
		return { output: { sum, indexes, count: indexes.length, exec } }
	},
	'chaos.end': async (ctx) => {
		const node = ctx.params.node
		const exec = await record(ctx, node)
		await ctx.context.set(`w.${node}`, exec)
		return { output: { total: ctx.input.sum, exec } }
	},

	// Bad outputs and writes (issue 4's list).
	'bad.bigint': async (ctx) => {
		await record(ctx, 'n')
		return { output: { n: 10n } }
	},
	'bad.cycle': async (ctx) => {
		await record(ctx, 'n')
		const a = { name: 'a' }
		a.self = a
		return { output: a }
	},
	'bad.fnOutput': async (ctx) => {
		await record(ctx, 'n')
		return { output: () => 42 }
	},
	'bad.ctxFn': async (ctx) => {
		await record(ctx, 'n')
		await ctx.context.set('callback', () => 42)
		return { output: 'ok' }
	},
	'bad.ctxBigint': async (ctx) => {
		await record(ctx, 'n')
		await ctx.context.set('amount', 12345678901234567890n)
		return { output: 'ok' }
	},
	'bad.number': async (ctx) => {
		await record(ctx, 'n')
		return 42
	},
	'bad.string': async (ctx) => {
		await record(ctx, 'n')
		return 'done'
	},
	'big.output': async (ctx) => {
		await record(ctx, 'n')
		const size = Number(await ctx.context.get('chaosBigSize')) || 10 * 1024 * 1024
		return { output: { blob: 'x'.repeat(size) } }
	},
	[SQL_USES_KEY]: async (ctx) => {
		await record(ctx, 'n')
		return { output: 'sql-key-ok' }
	},
}

process.on('uncaughtException', (e) => {
	log('UNCAUGHT', e?.stack ? e.stack : e)
	fs.writeSync(1, `WORKER_UNCAUGHT ${JSON.stringify(String(e?.message))}\n`)
	process.exit(70)
})
process.on('unhandledRejection', (e) => {
	log('UNHANDLED REJECTION', e?.stack ? e.stack : e)
	fs.writeSync(1, `WORKER_UNCAUGHT ${JSON.stringify(String(e?.message))}\n`)
	process.exit(71)
})

bootWorker({
	log,
	// where the adapter connects: a fault proxy, or the services themselves
	urls: {
		postgres: env.ADAPTER_POSTGRES_URL || env.POSTGRES_URL,
		redis: env.ADAPTER_REDIS_URL || env.REDIS_URL,
		rabbitmq: env.ADAPTER_RABBITMQ_URL || env.RABBITMQ_URL,
	},
	// The adapter reads these connections' settings only; the listeners keep a broker,
	// database or Redis fault from ever reaching this process as an unhandled 'error'
	// event (the faults are aimed at the adapter, not at the harness).
	watchConnections: true,
	signals: ['SIGTERM', 'SIGINT'],
	stopOptions: { timeoutMs: 10000 },
	close: [() => sidePool.end()],
	options: () => {
		const options = {
			concurrency: Number(env.CONCURRENCY) || 64,
			runtimeOptions: {
				registry,
				blueprints,
				logger: {
					debug() {},
					info: (m, meta) => log('INFO', m, meta ? JSON.stringify(meta) : ''),
					warn: (m, meta) => log('WARN', m, meta ? JSON.stringify(meta) : ''),
					error: (m, meta) => log('ERROR', m, meta ? JSON.stringify(meta) : ''),
				},
			},
		}
		if (env.MAX_DELIVERIES) options.maxDeliveries = Number(env.MAX_DELIVERIES)
		if (env.TIMINGS) options.timings = JSON.parse(env.TIMINGS)
		return options
	},
})
