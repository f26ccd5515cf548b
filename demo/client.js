'use strict'

// A client: starts a few runs, awaits each, prints its status and final outputs.
// It never calls start(): it needs no worker of its own, and exits by itself.
const { RabbitMqAdapter, RedisCoordinationStore } = require('..')
const { agentNodeRegistry, blueprints, demoSettings } = require('./shared')

const RUNS = [
	{
		blueprintId: 'order-diamond',
		context: {
			order: {
				items: [
					{ sku: 'book', price: 12.5, quantity: 2 },
					{ sku: 'pen', price: 1.2, quantity: 10 },
				],
			},
		},
	},
	{
		blueprintId: 'order-diamond',
		context: {
			order: {
				items: [
					{ sku: 'lamp', price: 40, quantity: 1 },
					{ sku: 'bulb', price: 3, quantity: 4 },
					{ sku: 'cable', price: 8, quantity: 1 },
				],
			},
		},
	},
	{ blueprintId: 'expense-approval', context: { expense: { employee: 'ada', amount: 42, currency: 'EUR' } } },
	{ blueprintId: 'expense-approval', context: { expense: { employee: 'grace', amount: 1250, currency: 'EUR' } } },
]

async function main() {
	const settings = demoSettings()
	const adapter = new RabbitMqAdapter({
		// URLs work as well as amqplib / pg / ioredis objects.
		amqpConnection: settings.rabbitmqUrl,
		pgClient: settings.postgresUrl,
		coordinationStore: new RedisCoordinationStore(settings.redisUrl),
		queueName: settings.queueName,
		contextTableName: settings.contextTableName,
		statusTableName: settings.statusTableName,
		runtimeOptions: { registry: agentNodeRegistry, blueprints },
	})
	try {
		const started = []
		for (const run of RUNS) {
			const { runId } = await adapter.startRun(run.blueprintId, run.context)
			console.log(`started ${run.blueprintId} as ${runId}`)
			started.push({ ...run, runId })
		}
		let completed = 0
		for (const run of started) {
			const result = await adapter.waitForRun(run.runId, { timeoutMs: 30000 })
			console.log(`\n${run.blueprintId} ${run.runId}: ${result.status}${result.reason ? ` (${result.reason})` : ''}`)
			if (result.status === 'completed') {
				completed++
				const context = result.payload.context
				for (const node of blueprints[run.blueprintId].nodes) {
					const key = `_outputs.${node.id}`
					if (key in context) console.log(`  ${node.id.padEnd(9)} ${JSON.stringify(context[key])}`)
				}
			}
		}
		console.log(`\n${completed} of ${started.length} runs completed`)
		return completed === started.length
	} finally {
		await adapter.close()
	}
}

if (require.main === module) {
	main().then(
		(ok) => {
			process.exitCode = ok ? 0 : 1
		},
		(err) => {
			console.error(err)
			process.exitCode = 1
		},
	)
}

module.exports = { main }
