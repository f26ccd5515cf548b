'use strict'

// A worker process for trace.test.js, set up as a traced service would be: a W3C
// propagator and a context manager registered with @opentelemetry/api (what an
// OpenTelemetry SDK registers). Its node reports the trace it runs in, and its pid.
// The adapter is given the services' URLs (helpers/boot-worker.js, connect: 'urls').
//   QUEUE, CTX_TABLE, STATUS_TABLE, POSTGRES_URL, REDIS_URL, RABBITMQ_URL
// Prints WORKER_READY once started.

const api = require('@opentelemetry/api')
const { W3CTraceContextPropagator } = require('@opentelemetry/core')
const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks')
const { bootWorker } = require('./boot-worker')
const { blueprints } = require('./trace-fixtures')

api.propagation.setGlobalPropagator(new W3CTraceContextPropagator())
api.context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())

bootWorker({
	log: (...args) => process.stderr.write(`[trace-worker ${process.pid}] ${args.join(' ')}\n`),
	connect: 'urls',
	signals: [],
	options: {
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
	},
})
