'use strict'
/**
 * Our worker in the upgrade tests: the README's worker (helpers/boot-worker.js) serving
 * __test__/upgrade/workflows.js. Environment: QUEUE, CTX_TABLE, STATUS_TABLE, REDIS_PREFIX
 * (ioredis keyPrefix), POSTGRES_URL, REDIS_URL, RABBITMQ_URL; CONCURRENCY (optional); TYPESCRIPT_COMPAT=1
 * (optional: the adapter's `typescriptCompat`, for a fleet with the TypeScript adapter's workers);
 * UPGRADE_TRACE / UPGRADE_KIND as workflows.js reads them. Prints WORKER_READY; SIGTERM stops it (stop() drains).
 */
const { bootWorker } = require('../helpers/boot-worker')
const { registry, blueprints } = require('./workflows')

const quiet = { debug() {}, info() {}, warn: (m) => log('warn', m), error: (m) => log('error', m) }
const log = (...args) => process.stderr.write(`[ours ${process.pid}] ${args.join(' ')}\n`)

const options = { runtimeOptions: { registry, blueprints, logger: quiet } }
if (process.env.CONCURRENCY) options.concurrency = Number(process.env.CONCURRENCY)
if (process.env.TYPESCRIPT_COMPAT === '1') options.typescriptCompat = true

bootWorker({
	log,
	redisOptions: { keyPrefix: process.env.REDIS_PREFIX || undefined },
	options,
	stopOptions: { timeoutMs: 5000 },
})
