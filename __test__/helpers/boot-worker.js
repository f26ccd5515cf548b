'use strict'
/**
 * The common part of the worker processes that the tests, the chaos suite and the bench
 * start (__test__/diff/worker-process.js, __test__/helpers/runs-worker.js,
 * __test__/helpers/trace-worker.js, chaos/worker.js, bench/worker-ours.js): a worker
 * started as the README's worker.ts starts one. Each script supplies only what differs.
 * Not a test file.
 *
 *   bootWorker({ log, options: { runtimeOptions, ... } })
 *
 * reads the queue and table names from the environment (QUEUE, CTX_TABLE,
 * STATUS_TABLE), builds an amqplib connection, a pg.Client and an ioredis instance on
 * the services' URLs (POSTGRES_URL, REDIS_URL, RABBITMQ_URL; `urls` overrides them),
 * hands them to RabbitMqAdapter with `options`, stops the adapter on `signals` and
 * closes the connections, awaits start() and prints WORKER_READY. When any of that
 * throws: logs FATAL, prints `WORKER_FAILED {message, code}` and exits with status 1.
 *
 * o.log             (...args) => void, the script's stderr log (default `[worker <pid>] ...`)
 * o.adapterModule   the module with RabbitMqAdapter (default this package)
 * o.urls            { postgres, redis, rabbitmq }: where the adapter connects
 * o.connect         'objects' (default) | 'urls': hand the adapter the URLs themselves
 * o.amqpConnection, o.pgClient   given values instead of the objects built here (closed by their owner)
 * o.redisOptions    ioredis options
 * o.watchConnections  log 'error' (and amqplib 'close') events of pg and ioredis too
 *                   (amqplib 'error' events are always logged)
 * o.options         more adapter options: an object, or a function (maybe async) that
 *                   returns them, called first (before any connection is made)
 * o.signals         signals that stop the adapter and close the connections (default
 *                   ['SIGTERM']; [] = none: the process keeps the default handling)
 * o.stopOptions     passed to adapter.stop()
 * o.close           more closers, run after the connections' (e.g. a side pool)
 * o.startedNote     appended to the `started on <queue>` log line
 *
 * Resolves with { adapter, amqpConnection, pgClient, redisConnection } once ready.
 */
const path = require('node:path')

const defaultLog = (...args) => process.stderr.write(`[worker ${process.pid}] ${args.join(' ')}\n`)

async function boot(o) {
	const env = process.env
	const log = o.log || defaultLog
	const urls = { postgres: env.POSTGRES_URL, redis: env.REDIS_URL, rabbitmq: env.RABBITMQ_URL, ...o.urls }
	const { RabbitMqAdapter, RedisCoordinationStore } = require(o.adapterModule || path.join(__dirname, '..', '..'))
	const extra = typeof o.options === 'function' ? await o.options() : o.options
	const closers = []
	let amqpConnection = o.amqpConnection
	let pgClient = o.pgClient
	let redisConnection
	let coordinationStore
	if (o.connect === 'urls') {
		amqpConnection ??= urls.rabbitmq
		pgClient ??= urls.postgres
		coordinationStore = new RedisCoordinationStore(urls.redis)
	} else {
		if (amqpConnection === undefined) {
			const amqplib = require('amqplib')
			const conn = await amqplib.connect(urls.rabbitmq)
			// The adapter reads this connection's settings only; the listener keeps a broker
			// fault from ever reaching this process as an unhandled 'error' event.
			conn.on('error', (e) => log('amqplib connection error (not used by the adapter):', e.message))
			if (o.watchConnections) conn.on('close', () => log('amqplib connection closed (not used by the adapter)'))
			closers.push(() => conn.close())
			amqpConnection = conn
		}
		if (pgClient === undefined) {
			const { Client } = require('pg')
			const client = new Client({ connectionString: urls.postgres })
			if (o.watchConnections) client.on('error', (e) => log('pg client error (not used by the adapter):', e.message))
			await client.connect()
			closers.push(() => client.end())
			pgClient = client
		}
		const IORedis = require('ioredis')
		redisConnection = new IORedis(urls.redis, o.redisOptions)
		if (o.watchConnections)
			redisConnection.on('error', (e) => log('ioredis error (not used by the adapter):', e.message))
		closers.push(() => redisConnection.quit())
		coordinationStore = new RedisCoordinationStore(redisConnection)
	}
	const adapter = new RabbitMqAdapter({
		amqpConnection,
		pgClient,
		coordinationStore,
		queueName: env.QUEUE,
		contextTableName: env.CTX_TABLE,
		statusTableName: env.STATUS_TABLE,
		...extra,
	})

	let stopping = false
	const stop = async (signal) => {
		if (stopping) return
		stopping = true
		log(`${signal}: stopping`)
		try {
			await adapter.stop(o.stopOptions)
		} catch (e) {
			log('adapter.stop() failed:', e?.stack ? e.stack : e)
		}
		for (const close of [...closers, ...(o.close || [])]) {
			try {
				await close()
			} catch (e) {
				log('close failed:', e.message)
			}
		}
		log('stopped; waiting for the event loop to drain')
	}
	for (const signal of o.signals || ['SIGTERM']) process.on(signal, () => stop(signal))

	await adapter.start()
	log(`started on ${env.QUEUE}${o.startedNote ? ` ${o.startedNote}` : ''}`)
	process.stdout.write('WORKER_READY\n')
	return { adapter, amqpConnection, pgClient, redisConnection }
}

/** Boots the worker (see the header); a failure is reported on stdout and ends the process. */
function bootWorker(o = {}) {
	return boot(o).catch((e) => {
		;(o.log || defaultLog)('FATAL', e?.stack ? e.stack : e, e?.code ? `code=${e.code}` : '')
		process.stdout.write(`WORKER_FAILED ${JSON.stringify({ message: String(e?.message), code: e?.code })}\n`)
		process.exit(1)
	})
}

module.exports = { bootWorker }
