'use strict'
/**
 * Our adapter as a benchmark worker, in its own process, started exactly as the
 * README's worker.ts starts it (amqplib connection, pg.Client, ioredis instance,
 * RedisCoordinationStore, default settings; __test__/helpers/boot-worker.js):
 *
 *   QUEUE, CTX_TABLE, STATUS_TABLE     queue and tables of this system
 *   REDIS_PREFIX                       ioredis keyPrefix (every coordination key of this system)
 *   POSTGRES_URL, REDIS_URL, RABBITMQ_URL
 *   CONCURRENCY                        optional; unset = the adapter's default
 *   ADAPTER_MODULE                     optional: the package folder to load (bench's ours-baseline)
 *
 * Prints `WORKER_READY` once start() resolved; on SIGTERM stops, closes its own
 * connections and lets the process exit.
 */
const { bootWorker } = require('../__test__/helpers/boot-worker')
const { registry, blueprints } = require('./workflows')

const env = process.env
const options = { runtimeOptions: { registry, blueprints: blueprints() } }
if (env.CONCURRENCY) options.concurrency = Number(env.CONCURRENCY)

bootWorker({
	log: (...args) => process.stderr.write(`[ours ${process.pid}] ${args.join(' ')}\n`),
	adapterModule: env.ADAPTER_MODULE || undefined,
	redisOptions: { keyPrefix: env.REDIS_PREFIX || undefined },
	options,
	stopOptions: { timeoutMs: 5000 },
})
