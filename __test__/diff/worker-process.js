'use strict'
/**
 * A worker process of the differential tests, written as the README's worker.ts
 * (helpers/boot-worker.js):
 *   QUEUE, CTX_TABLE, STATUS_TABLE       queue and table names
 *   POSTGRES_URL, REDIS_URL, RABBITMQ_URL
 *   SCENARIOS                            comma-separated scenario names (one group)
 * Prints `WORKER_READY` once start() returned. On SIGTERM: `await adapter.stop()`, then
 * closes its own connections and lets the process exit by itself.
 */
const path = require('node:path')
const { bootWorker } = require('../helpers/boot-worker')
const { byName, buildRuntimeOptions } = require('./scenarios')

const selected = (process.env.SCENARIOS || '').split(',').filter(Boolean)

bootWorker({
	log: (...args) => process.stderr.write(`[worker ${process.pid}] ${args.join(' ')}\n`),
	// DIFF_ADAPTER_MODULE only serves to check this harness against another implementation
	// of the same API; by default the package itself is under test.
	adapterModule: process.env.DIFF_ADAPTER_MODULE || path.join(__dirname, '..', '..'),
	startedNote: `with ${selected.join(',')}`,
	options: async () => {
		const scenarios = selected.map(byName)
		if (!scenarios.length) throw new Error('SCENARIOS is empty')
		// class nodes extend flowcraft's BaseNode: load flowcraft (ESM) before the registry
		const fc = await import('flowcraft')
		const { registry, blueprints, evaluator, middleware } = buildRuntimeOptions(scenarios, fc)
		const runtimeOptions = { registry, blueprints }
		if (evaluator) runtimeOptions.evaluator = evaluator
		if (middleware) runtimeOptions.middleware = middleware
		return { runtimeOptions }
	},
})
