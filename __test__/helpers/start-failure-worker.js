'use strict'

// The seed README's worker, in CommonJS, for fail-fast.test.js: the user's own pg
// client stays open (it keeps Node alive), and `adapter.start()` is not awaited unless
// AWAIT_START is set. Settings come from the environment:
//   AMQP_URL_UNDER_TEST  the broker URL the worker is given (a wrong password, a refused port)
//   START_RETRY_MS       startRetryMs, when set
//   EXIT_ON_START_FAILURE  'true' / 'false' for exitOnStartFailure, when set
//   AWAIT_START          await start() in a try/catch and print `HANDLED <code>`
//   LINGER_MS            end the process by itself (status 0) after this long
// Not a test file.

const path = require('node:path')
const { Client } = require('pg')
const { RabbitMqAdapter, RedisCoordinationStore } = require(path.resolve(__dirname, '..', '..'))

async function main() {
	const pgClient = new Client({ connectionString: process.env.POSTGRES_URL })
	await pgClient.connect()
	const options = {
		amqpConnection: process.env.AMQP_URL_UNDER_TEST,
		pgClient,
		coordinationStore: new RedisCoordinationStore(process.env.REDIS_URL),
		queueName: process.env.QUEUE,
		contextTableName: process.env.CTX_TABLE,
		statusTableName: process.env.STATUS_TABLE,
		runtimeOptions: { registry: {}, blueprints: {} },
	}
	if (process.env.START_RETRY_MS) options.startRetryMs = Number(process.env.START_RETRY_MS)
	if (process.env.EXIT_ON_START_FAILURE) options.exitOnStartFailure = process.env.EXIT_ON_START_FAILURE === 'true'
	const adapter = new RabbitMqAdapter(options)
	if (process.env.LINGER_MS) setTimeout(() => process.exit(0), Number(process.env.LINGER_MS))
	if (process.env.AWAIT_START) {
		try {
			await adapter.start()
		} catch (err) {
			console.log(`HANDLED ${err.code}`)
			await adapter.stop()
			await pgClient.end()
			return
		}
	} else {
		adapter.start()
	}
	console.log('Worker is running. Waiting for jobs...')
}

main().catch(console.error)
