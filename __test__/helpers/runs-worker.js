'use strict'

// A worker process for the run API tests, written as the README's worker (helpers/boot-worker.js):
//   QUEUE, CTX_TABLE, STATUS_TABLE   queue and tables
//   SIDE_TABLE                       (optional) each node execution is inserted there: run_id, node_id, token, pid
//   HANDLE_SIGNALS=1                 handleSignals: true
//   POSTGRES_URL, REDIS_URL, RABBITMQ_URL
//   RABBITMQ_URLS                    (optional) a cluster's nodes, comma-separated: passed as a list of URLs
//   QUEUE_TYPE                       (optional) queueType
// Prints WORKER_READY once started.

const { Pool } = require('pg')
const { bootWorker } = require('./boot-worker')
const { blueprints, createRegistry } = require('./runs-fixtures')

const env = process.env
const side = env.SIDE_TABLE ? new Pool({ connectionString: env.POSTGRES_URL, max: 4 }) : undefined
const dependencies = {}
if (side) {
	dependencies.record = (runId, nodeId, token) =>
		side.query(`INSERT INTO ${env.SIDE_TABLE} (run_id, node_id, token, pid) VALUES ($1, $2, $3, $4)`, [
			runId,
			nodeId,
			token,
			process.pid,
		])
}

bootWorker({
	log: (...args) => process.stderr.write(`[runs-worker ${process.pid}] ${args.join(' ')}\n`),
	amqpConnection: env.RABBITMQ_URLS ? env.RABBITMQ_URLS.split(',') : undefined,
	// node-pg cannot parse several hosts: such a URL is passed as it is.
	pgClient: env.POSTGRES_URL.includes(',') ? env.POSTGRES_URL : undefined,
	// the adapter handles the signals itself when HANDLE_SIGNALS=1; otherwise the default handling
	signals: [],
	options: {
		amqpUrl: env.RABBITMQ_URL,
		handleSignals: env.HANDLE_SIGNALS === '1',
		queueType: env.QUEUE_TYPE || undefined,
		runtimeOptions: { registry: createRegistry(), blueprints, dependencies },
	},
})
