'use strict'
/**
 * The event stream (issue 9, item 8): a recording event bus on our adapter gets
 * Flowcraft's events, each once, with Flowcraft's payload fields (`executionId` = the
 * run id), in FlowRuntime's order. FlowRuntime's own stream for the same workflows is
 * recorded by events/reference.mjs (a child process: flowcraft is ESM-only).
 *
 * One difference is inherent and asserted as such: `workflow:start` / `workflow:resume`
 * come from the process that called startRun, once the run exists, so a worker may
 * report its first `node:start` before them.
 */
const path = require('node:path')
const { execFile } = require('node:child_process')
const S = require('./helpers/services')
const { scenarios, summary } = require('./events/scenarios')

const ROOT = path.join(__dirname, '..')
const { RabbitMqAdapter, RedisCoordinationStore } = require(ROOT)

const res = S.useResources()
const quiet = { debug() {}, info() {}, warn() {}, error() {} }

// Our node runner knows Flowcraft's fatal error by its name and flag, without the package.
class FlowcraftError extends Error {
	constructor(message, options = {}) {
		super(message)
		this.name = 'FlowcraftError'
		this.isFatal = options.isFatal === true
	}
}
const fcLike = { FlowcraftError }

let reference
beforeAll(async () => {
	const out = await new Promise((resolve, reject) =>
		execFile(process.execPath, [path.join(__dirname, 'events', 'reference.mjs')], (err, stdout, stderr) =>
			err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
		),
	)
	reference = JSON.parse(out.split('__EVENTS__')[1])
}, 60000)

/** Our adapter (worker and client in one), with a recording bus, on this test's queue and tables. */
function adapterFor(scenario, events) {
	const queue = res.queueName('ev')
	res.onCleanup(() => S.deleteQueues([`${queue}.dead`])) // the worker declares its dead-letter queue too
	const adapter = new RabbitMqAdapter({
		amqpConnection: S.RABBITMQ_URL,
		pgClient: S.POSTGRES_URL,
		coordinationStore: new RedisCoordinationStore(S.REDIS_URL),
		queueName: queue,
		contextTableName: res.trackTable(S.uniqueName('ev_c')),
		statusTableName: res.trackTable(S.uniqueName('ev_s')),
		stopTimeoutMs: 5000,
		runtimeOptions: {
			registry: scenario.registry(fcLike),
			blueprints: { [scenario.blueprint.id]: scenario.blueprint },
			logger: quiet,
			eventBus: { emit: async (e) => events.push(e) },
		},
	})
	res.onCleanup(() => adapter.stop({ timeoutMs: 2000 }).catch(() => {}))
	return adapter
}

async function waitFor(check, ms) {
	const deadline = Date.now() + ms
	while (!check()) {
		if (Date.now() > deadline) throw new Error(`not within ${ms} ms`)
		await new Promise((r) => setTimeout(r, 20))
	}
}

const flowcraftEvents = (events) => events.filter((e) => /^(node|workflow):/.test(e.type))
const withoutStart = (list) => list.filter((e) => e.type !== 'workflow:start' && e.type !== 'workflow:resume')

describe.each(scenarios.map((s) => [s.name, s]))('%s', (name, scenario) => {
	test("our events are FlowRuntime's: the same types, nodes and order, each once, executionId = run id", async () => {
		const events = []
		const adapter = adapterFor(scenario, events)
		await adapter.start()
		const { runId } = await adapter.startRun(scenario.blueprint.id, { tag: S.uniqueName('tag') })
		const result = await adapter.waitForRun(runId, { timeoutMs: 20000 })
		// the worker announces the end right after its commit: wait for it, then a moment for strays
		await waitFor(() => events.some((e) => e.type === 'workflow:finish'), 10000)
		await new Promise((r) => setTimeout(r, 300))
		const ref = reference[name]
		expect(result.status).toBe(ref.status)

		const ours = flowcraftEvents(events)
		expect(withoutStart(ours).map(summary)).toEqual(withoutStart(ref.events))
		// the run's start, once each, in FlowRuntime's order, before its end
		const types = ours.map((e) => e.type)
		expect(types.filter((t) => t === 'workflow:start')).toHaveLength(1)
		expect(types.filter((t) => t === 'workflow:resume')).toHaveLength(1)
		expect(types.indexOf('workflow:start')).toBeLessThan(types.indexOf('workflow:resume'))
		expect(types.indexOf('workflow:resume')).toBeLessThan(types.indexOf('workflow:finish'))
		expect(types[types.length - 1]).toBe('workflow:finish')
		// Flowcraft's payload fields: the run id is the executionId, the blueprint is named
		for (const e of ours) {
			expect(e.payload.executionId).toBe(runId)
			expect(e.payload.blueprintId).toBe(scenario.blueprint.id)
			expect(e.payload).not.toHaveProperty('runId')
		}
		const finish = ours.find((e) => e.type === 'workflow:finish')
		if (ref.status === 'failed') {
			expect(finish.payload.errors).toEqual([expect.objectContaining({ message: expect.any(String) })])
		}
		// the adapter's own job events are separate, typed as Flowcraft's job:* events
		const processed = events.filter((e) => e.type === 'job:processed')
		const succeeded = ref.events.filter((e) => e.type === 'node:finish').length
		expect(processed.length).toBe(succeeded)
		for (const e of processed) {
			expect(e.payload).toMatchObject({ runId, blueprintId: scenario.blueprint.id, success: true })
			expect(typeof e.payload.duration).toBe('number')
		}
	}, 60000)
})
