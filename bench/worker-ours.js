'use strict'
/**
 * Our adapter as a benchmark worker, in its own process, started exactly as the
 * README's worker.ts starts it (amqplib connection, pg.Client, ioredis instance,
 * RedisCoordinationStore, default settings):
 *
 *   QUEUE, CTX_TABLE, STATUS_TABLE     queue and tables of this system
 *   REDIS_PREFIX                       ioredis keyPrefix (every coordination key of this system)
 *   POSTGRES_URL, REDIS_URL, RABBITMQ_URL
 *   CONCURRENCY                        optional; unset = the adapter's default
 *
 * Prints `WORKER_READY` once start() resolved; on SIGTERM stops, closes its own
 * connections and lets the process exit.
 */
const path = require('node:path')
const amqplib = require('amqplib')
const IORedis = require('ioredis')
const { Client: PgClient } = require('pg')
const { RabbitMqAdapter, RedisCoordinationStore } = require(path.join(__dirname, '..'))
const { registry, blueprints } = require('./workflows')

function log(...args) {
	process.stderr.write(`[ours ${process.pid}] ${args.join(' ')}\n`)
}

async function main() {
	const env = process.env
	const amqpConnection = await amqplib.connect(env.RABBITMQ_URL)
	amqpConnection.on('error', (e) => log('amqp connection error', e.message))
	const pgClient = new PgClient({ connectionString: env.POSTGRES_URL })
	await pgClient.connect()
	const redisConnection = new IORedis(env.REDIS_URL, { keyPrefix: env.REDIS_PREFIX || undefined })
	const coordinationStore = new RedisCoordinationStore(redisConnection)

	const options = {
		amqpConnection,
		pgClient,
		coordinationStore,
		queueName: env.QUEUE,
		contextTableName: env.CTX_TABLE,
		statusTableName: env.STATUS_TABLE,
		runtimeOptions: { registry, blueprints: blueprints() },
	}
	if (env.CONCURRENCY) options.concurrency = Number(env.CONCURRENCY)
	const adapter = new RabbitMqAdapter(options)

	let stopping = false
	process.on('SIGTERM', async () => {
		if (stopping) return
		stopping = true
		try {
			await adapter.stop({ timeoutMs: 5000 })
		} catch (e) {
			log('adapter.stop() failed:', e?.stack ? e.stack : e)
		}
		for (const close of [() => amqpConnection.close(), () => pgClient.end(), () => redisConnection.quit()]) {
			try {
				await close()
			} catch {}
		}
	})

	await adapter.start()
	process.stdout.write('WORKER_READY\n')
}

main().catch((e) => {
	log('FATAL', e?.stack ? e.stack : e)
	process.stdout.write('WORKER_FAILED\n')
	process.exit(1)
})
