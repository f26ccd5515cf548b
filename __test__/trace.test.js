'use strict'
/**
 * One trace per run (issue 9, item 10): the W3C trace context active where startRun is
 * called travels in every job message, so every node of the run, in whichever worker
 * process, runs inside the run's trace. The workers register a propagator and a context
 * manager as an OpenTelemetry SDK does (helpers/trace-worker.js); the client starts the
 * run inside a span context of its own.
 */
const path = require('node:path')
const { spawn } = require('node:child_process')
const api = require('@opentelemetry/api')
const { W3CTraceContextPropagator } = require('@opentelemetry/core')
const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks')
const S = require('./helpers/services')
const { blueprints } = require('./helpers/trace-fixtures')

const ROOT = path.join(__dirname, '..')
const { RabbitMqAdapter, RedisCoordinationStore } = require(ROOT)
const res = S.useResources()

function spawnWorker(env) {
	const child = spawn(process.execPath, [path.join(__dirname, 'helpers', 'trace-worker.js')], {
		env: { ...process.env, ...env },
		stdio: ['ignore', 'pipe', 'pipe'],
	})
	let out = ''
	child.stdout.on('data', (d) => (out += d))
	child.stderr.on('data', (d) => (out += d))
	res.onCleanup(async () => {
		if (child.exitCode === null && child.signalCode === null) {
			child.kill('SIGKILL')
			await new Promise((r) => child.once('exit', r))
		}
	})
	return S.withTimeout(
		new Promise((resolve, reject) => {
			child.stdout.on('data', () => out.includes('WORKER_READY') && resolve(child))
			child.once('exit', (code) => reject(new Error(`trace worker exited ${code}: ${out}`)))
		}),
		30000,
		'trace worker start',
	)
}

test('a run started in a trace is one trace: every node, in three worker processes, runs in it', async () => {
	const env = {
		QUEUE: res.queueName('trace'),
		CTX_TABLE: res.trackTable(S.uniqueName('tr_c')),
		STATUS_TABLE: res.trackTable(S.uniqueName('tr_s')),
		POSTGRES_URL: S.POSTGRES_URL,
		REDIS_URL: S.REDIS_URL,
		RABBITMQ_URL: S.RABBITMQ_URL,
	}
	res.onCleanup(() => S.deleteQueues([`${env.QUEUE}.dead`]))
	const client = new RabbitMqAdapter({
		amqpConnection: S.RABBITMQ_URL,
		pgClient: S.POSTGRES_URL,
		coordinationStore: new RedisCoordinationStore(S.REDIS_URL),
		queueName: env.QUEUE,
		contextTableName: env.CTX_TABLE,
		statusTableName: env.STATUS_TABLE,
		runtimeOptions: { blueprints, registry: {} },
	})
	res.onCleanup(() => client.close().catch(() => {}))
	// untraced first: no propagator registered, so nothing is carried and nodes see no trace
	await Promise.all([spawnWorker(env), spawnWorker(env), spawnWorker(env)])
	const plain = await client.startRun('traced', {})
	const plainResult = await client.waitForRun(plain.runId, { timeoutMs: 30000 })
	expect(plainResult.status).toBe('completed')
	for (const [key, v] of Object.entries(plainResult.payload.context))
		if (key.startsWith('_outputs.')) expect(v.traceId).toBeNull()

	api.propagation.setGlobalPropagator(new W3CTraceContextPropagator())
	api.context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
	try {
		const traceId = require('node:crypto').randomBytes(16).toString('hex')
		const spanId = require('node:crypto').randomBytes(8).toString('hex')
		const root = api.trace.setSpanContext(api.context.active(), { traceId, spanId, traceFlags: 1 })
		const { runId } = await api.context.with(root, () => client.startRun('traced', {}))
		const result = await client.waitForRun(runId, { timeoutMs: 30000 })
		expect(result.status).toBe('completed')
		const outputs = Object.entries(result.payload.context).filter(([k]) => k.startsWith('_outputs.'))
		expect(outputs).toHaveLength(blueprints.traced.nodes.length)
		for (const [, v] of outputs) {
			expect(v.traceId).toBe(traceId) // the run's trace, in every node
			expect(v.parent).toBe(spanId) // under the span that started the run
		}
		const pids = new Set(outputs.map(([, v]) => v.pid))
		expect(pids.size).toBeGreaterThan(1) // the run spread over processes, and stayed one trace
	} finally {
		api.propagation.disable()
		api.context.disable()
	}
}, 90000)
