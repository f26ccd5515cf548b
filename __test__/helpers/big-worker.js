'use strict'

// The worker process of big-payload.test.js (helpers/boot-worker.js): QUEUE, CTX_TABLE,
// STATUS_TABLE, POSTGRES_URL, REDIS_URL, RABBITMQ_URL. Prints WORKER_READY once started.

const { bootWorker } = require('./boot-worker')
const { blueprints, createRegistry } = require('./big-fixtures')

bootWorker({
	log: (...args) => process.stderr.write(`[big-worker ${process.pid}] ${args.join(' ')}\n`),
	options: {
		amqpUrl: process.env.RABBITMQ_URL,
		concurrency: 4,
		runtimeOptions: { registry: createRegistry(), blueprints },
	},
})
