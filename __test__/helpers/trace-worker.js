'use strict'

// A worker process for trace.test.js, set up as a traced service would be: a W3C
// propagator and a context manager registered with @opentelemetry/api (what an
// OpenTelemetry SDK registers). Its node reports the trace it runs in, and its pid.
//   QUEUE, CTX_TABLE, STATUS_TABLE, POSTGRES_URL, REDIS_URL, RABBITMQ_URL
// Prints WORKER_READY once started.

const path = require('node:path')
const api = require('@opentelemetry/api')
const { W3CTraceContextPropagator } = require('@opentelemetry/core')
const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks')
const { RabbitMqAdapter, RedisCoordinationStore } = require(path.join(__dirname, '..', '..'))
const { blueprints } = require('./trace-fixtures')

api.propagation.setGlobalPropagator(new W3CTraceContextPropagator())
api.context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())

async function main() {
	const env = process.env
	const adapter = new RabbitMqAdapter({
		amqpConnection: env.RABBITMQ_URL,
		pgClient: env.POSTGRES_URL,
		coordinationStore: new RedisCoordinationStore(env.REDIS_URL),
		queueName: env.QUEUE,
		contextTableName: env.CTX_TABLE,
		statusTableName: env.STATUS_TABLE,
		runtimeOptions: {
			blueprints,
			registry: {
				traced: async () => {
					// a little work, so the branches spread over the workers
					await new Promise((r) => setTimeout(r, 20))
					const span = api.trace.getSpanContext(api.context.active())
					return { output: { traceId: span?.traceId ?? null, parent: span?.spanId ?? null, pid: process.pid } }
				},
			},
			logger: { debug() {}, info() {}, warn() {}, error() {} },
		},
	})
	await adapter.start()
	process.stdout.write('WORKER_READY\n')
}

main().catch((e) => {
	process.stderr.write(`worker failed: ${e?.stack}\n`)
	process.exit(1)
})
