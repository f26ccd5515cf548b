'use strict'

// A worker process for the run API tests, written as the README's worker:
//   QUEUE, CTX_TABLE, STATUS_TABLE   queue and tables
//   SIDE_TABLE                       (optional) each node execution is inserted there: run_id, node_id, token, pid
//   HANDLE_SIGNALS=1                 handleSignals: true
//   POSTGRES_URL, REDIS_URL, RABBITMQ_URL
//   RABBITMQ_URLS                    (optional) a cluster's nodes, comma-separated: passed as a list of URLs
//   QUEUE_TYPE                       (optional) queueType
// Prints WORKER_READY once started.

const path = require('node:path')
const amqplib = require('amqplib')
const IORedis = require('ioredis')
const { Client: PgClient, Pool } = require('pg')
const { RabbitMqAdapter, RedisCoordinationStore } = require(path.join(__dirname, '..', '..'))
const { blueprints, createRegistry } = require('./runs-fixtures')

async function main() {
	const env = process.env
	const amqpConnection = env.RABBITMQ_URLS ? env.RABBITMQ_URLS.split(',') : await amqplib.connect(env.RABBITMQ_URL)
	// node-pg cannot parse several hosts: such a URL is passed as it is.
	const multiHost = env.POSTGRES_URL.includes(',')
	const pgClient = multiHost ? env.POSTGRES_URL : new PgClient({ connectionString: env.POSTGRES_URL })
	if (!multiHost) await pgClient.connect()
	const redisConnection = new IORedis(env.REDIS_URL)
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
	const adapter = new RabbitMqAdapter({
		amqpConnection,
		amqpUrl: env.RABBITMQ_URL,
		pgClient,
		coordinationStore: new RedisCoordinationStore(redisConnection),
		queueName: env.QUEUE,
		contextTableName: env.CTX_TABLE,
		statusTableName: env.STATUS_TABLE,
		handleSignals: env.HANDLE_SIGNALS === '1',
		queueType: env.QUEUE_TYPE || undefined,
		runtimeOptions: { registry: createRegistry(), blueprints, dependencies },
	})
	await adapter.start()
	process.stdout.write('WORKER_READY\n')
}

main().catch((e) => {
	process.stderr.write(`worker failed: ${e?.stack}\n`)
	process.exit(1)
})
