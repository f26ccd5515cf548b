'use strict'

// The README's worker.ts, in JavaScript: real amqplib, pg and ioredis objects.
// In your application the first line is require('@flowcraft/rabbitmq-adapter').
const { RabbitMqAdapter, RedisCoordinationStore } = require('..')
const amqplib = require('amqplib')
const IORedis = require('ioredis')
const { Client: PgClient } = require('pg')
const { agentNodeRegistry, blueprints, demoSettings } = require('./shared')

async function main() {
	console.log('--- Starting Flowcraft Worker (RabbitMQ/Postgres) ---')
	const settings = demoSettings()

	// 1. Establish connections to your infrastructure.
	const amqpConnection = await amqplib.connect(settings.rabbitmqUrl)
	const pgClient = new PgClient({ connectionString: settings.postgresUrl })
	await pgClient.connect()
	const redisConnection = new IORedis(settings.redisUrl)

	// 2. Create the coordination store.
	const coordinationStore = new RedisCoordinationStore(redisConnection)

	// 3. Instantiate the adapter.
	const adapter = new RabbitMqAdapter({
		amqpConnection,
		amqpUrl: settings.rabbitmqUrl, // amqplib keeps no credentials: say where they are
		pgClient,
		coordinationStore,
		queueName: settings.queueName,
		contextTableName: settings.contextTableName, // created at start() when missing
		statusTableName: settings.statusTableName,
		// On SIGTERM / SIGINT: stop taking jobs, let those in flight finish, then exit.
		handleSignals: true,
		runtimeOptions: {
			registry: agentNodeRegistry,
			blueprints,
		},
	})

	// 4. Start the worker. It connects and begins consuming jobs. (The README does not
	//    await it; the demo does, so that demo/run.js knows when the worker is ready.)
	await adapter.start()

	console.log('Worker is running. Waiting for jobs...')
}

main().catch((err) => {
	console.error(err)
	process.exit(1)
})
