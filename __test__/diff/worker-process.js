'use strict'
/**
 * A worker process of the differential tests, written as the README's worker.ts:
 *   QUEUE, CTX_TABLE, STATUS_TABLE       queue and table names
 *   POSTGRES_URL, REDIS_URL, RABBITMQ_URL
 *   SCENARIOS                            comma-separated scenario names (one group)
 * Prints `WORKER_READY` once start() returned. On SIGTERM: `await adapter.stop()`, then
 * closes its own connections and lets the process exit by itself.
 */
const path = require('node:path')
const amqplib = require('amqplib')
const IORedis = require('ioredis')
const { Client: PgClient } = require('pg')
const { byName, buildRuntimeOptions } = require('./scenarios')

// DIFF_ADAPTER_MODULE only serves to check this harness against another implementation
// of the same API; by default the package itself is under test.
const { RabbitMqAdapter, RedisCoordinationStore } = require(
	process.env.DIFF_ADAPTER_MODULE || path.join(__dirname, '..', '..'),
)

function log(...args) {
	process.stderr.write(`[worker ${process.pid}] ${args.join(' ')}\n`)
}

async function main() {
	const env = process.env
	const selected = (env.SCENARIOS || '').split(',').filter(Boolean).map(byName)
	if (!selected.length) throw new Error('SCENARIOS is empty')
	// class nodes extend flowcraft's BaseNode: load flowcraft (ESM) before the registry
	const fc = await import('flowcraft')
	const { registry, blueprints, evaluator, middleware } = buildRuntimeOptions(selected, fc)

	const amqpConnection = await amqplib.connect(env.RABBITMQ_URL)
	amqpConnection.on('error', (e) => log('amqp connection error', e.message))
	const pgClient = new PgClient({ connectionString: env.POSTGRES_URL })
	await pgClient.connect()
	const redisConnection = new IORedis(env.REDIS_URL)
	const coordinationStore = new RedisCoordinationStore(redisConnection)

	const runtimeOptions = { registry, blueprints }
	if (evaluator) runtimeOptions.evaluator = evaluator
	if (middleware) runtimeOptions.middleware = middleware

	const adapter = new RabbitMqAdapter({
		amqpConnection,
		pgClient,
		coordinationStore,
		queueName: env.QUEUE,
		contextTableName: env.CTX_TABLE,
		statusTableName: env.STATUS_TABLE,
		runtimeOptions,
	})

	let stopping = false
	process.on('SIGTERM', async () => {
		if (stopping) return
		stopping = true
		log('SIGTERM: stopping')
		try {
			await adapter.stop()
		} catch (e) {
			log('adapter.stop() failed:', e?.stack ? e.stack : e)
		}
		for (const close of [() => amqpConnection.close(), () => pgClient.end(), () => redisConnection.quit()]) {
			try {
				await close()
			} catch (e) {
				log('close failed:', e.message)
			}
		}
		log('stopped; waiting for the event loop to drain')
	})

	// The README calls start() without awaiting it; await it when it returns a promise so a
	// failing start is reported instead of becoming an unhandled rejection.
	const started = adapter.start()
	if (started && typeof started.then === 'function') await started
	log(`started on ${env.QUEUE} with ${selected.map((s) => s.name).join(',')}`)
	process.stdout.write('WORKER_READY\n')
}

main().catch((e) => {
	log('FATAL', e?.stack ? e.stack : e, e?.code ? `code=${e.code}` : '')
	process.stdout.write(`WORKER_FAILED ${JSON.stringify({ message: String(e?.message), code: e?.code })}\n`)
	process.exit(1)
})
