'use strict'
/**
 * A run of ours in Flowcraft's history store (issue 9, item 9): with the contract that
 * store relies on (__test__/history/store.js), every event of the run is filed under
 * the run id, and what `flowcraft inspect <run id>` derives of it (run id, blueprint,
 * status, node table, replayed final context, errors) is what it derives of the same
 * workflow run by FlowRuntime.
 */
const S = require('./helpers/services')
const { createHistoryBus, summarize } = require('./history/store')

const { RabbitMqAdapter, RedisCoordinationStore } = require('..')

const res = S.useResources()
const quiet = { debug() {}, info() {}, warn() {}, error() {} }

// a diamond: c fails (after a retry) into its fallback node f; d joins b and c
const diamond = {
	id: 'hist-diamond',
	nodes: [
		{ id: 'a', uses: 'ok' },
		{ id: 'b', uses: 'ok' },
		{ id: 'c', uses: 'fail', config: { maxRetries: 2, fallback: 'f' } },
		{ id: 'f', uses: 'ok' },
		{ id: 'd', uses: 'ok', config: { joinStrategy: 'all' } },
	],
	edges: [
		{ source: 'a', target: 'b' },
		{ source: 'a', target: 'c' },
		{ source: 'b', target: 'd' },
		{ source: 'c', target: 'd' },
	],
}
// a → b (fails, no fallback): the run fails
const failing = {
	id: 'hist-failing',
	nodes: [
		{ id: 'a', uses: 'ok' },
		{ id: 'b', uses: 'fail' },
	],
	edges: [{ source: 'a', target: 'b' }],
}
const registry = {
	ok: async ({ input, context }) => {
		if (input === undefined) await context.set('seen', 'a')
		return { output: input ?? 'start' }
	},
	fail: async () => {
		throw new Error('always fails')
	},
}

async function runWithHistory(blueprint, jobs) {
	const bus = createHistoryBus()
	const queue = res.queueName('hist')
	res.onCleanup(() => S.deleteQueues([`${queue}.dead`]))
	const contextTable = res.trackTable(S.uniqueName('hist_c'))
	const adapter = new RabbitMqAdapter({
		amqpConnection: S.RABBITMQ_URL,
		pgClient: S.POSTGRES_URL,
		coordinationStore: new RedisCoordinationStore(S.REDIS_URL),
		queueName: queue,
		contextTableName: contextTable,
		statusTableName: res.trackTable(S.uniqueName('hist_s')),
		stopTimeoutMs: 5000,
		runtimeOptions: { registry, blueprints: { [blueprint.id]: blueprint }, logger: quiet, eventBus: bus },
	})
	res.onCleanup(() => adapter.stop({ timeoutMs: 2000 }).catch(() => {}))
	await adapter.start()
	const { runId } = await adapter.startRun(blueprint.id, { tag: S.uniqueName('tag') })
	const result = await adapter.waitForRun(runId, { timeoutMs: 20000 })
	// the last job events follow the run's end: wait until every job is reported
	const deadline = Date.now() + 10000
	const reported = () =>
		[...bus.runs.values()].flat().filter((r) => r.type === 'job:processed' || r.type === 'job:failed').length
	while (reported() < jobs && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
	await new Promise((r) => setTimeout(r, 300))
	return { bus, runId, result, contextTable }
}

test('every event of a run is filed under its run id; inspect derives what it derives of FlowRuntime', async () => {
	const { bus, runId, result, contextTable } = await runWithHistory(diamond, 4)
	expect(result.status).toBe('completed') // a fallback ran, and it succeeded
	expect([...bus.runs.keys()]).toEqual([runId]) // nothing under 'unknown'
	const records = bus.runs.get(runId)
	expect(records.filter((r) => r.type.startsWith('job:')).length).toBeGreaterThan(0)

	const s = summarize(runId, records)
	expect(s).toMatchObject({
		runId,
		blueprintId: 'hist-diamond',
		status: 'completed',
		nodesStarted: 5,
		nodesCompleted: 4,
		nodesFailed: 1,
		nodes: { a: 'Completed', b: 'Completed', c: 'Failed', f: 'Completed', d: 'Completed' },
	})
	expect(s.startedAt).toBeLessThanOrEqual(s.finishedAt)
	// the replayed context: FlowRuntime's keys and values for this workflow (the failed
	// node holds its fallback's output), plus the node's own write
	expect(s.context).toEqual({
		seen: 'a',
		'_outputs.a': 'start',
		a: 'start',
		'_inputs.b': 'start',
		'_inputs.c': 'start',
		'_outputs.b': 'start',
		b: 'start',
		'_outputs.c': 'start',
		c: 'start',
		'_outputs.f': 'start',
		f: 'start',
		'_inputs.d': 'start',
		'_outputs.d': 'start',
		d: 'start',
	})
	// and the run's stored context, key by key, but the failed node's own keys
	const row = await S.readContextRow(contextTable, runId)
	for (const [k, v] of Object.entries(s.context))
		if (k !== 'c' && k !== '_outputs.c') expect([k, row[k]]).toEqual([k, v])
	expect(row.c).toBeNull()
	// the error survives JSON, as FlowcraftError's fields do
	expect(s.errors).toEqual([
		expect.objectContaining({ message: 'always fails', nodeId: 'c', executionId: runId, isFatal: false }),
	])
}, 60000)

test('a failed run: filed under its id, status failed with its error', async () => {
	const { bus, runId, result } = await runWithHistory(failing, 2)
	expect(result.status).toBe('failed')
	expect([...bus.runs.keys()]).toEqual([runId])
	const s = summarize(runId, bus.runs.get(runId))
	expect(s).toMatchObject({
		runId,
		blueprintId: 'hist-failing',
		status: 'failed',
		runErrors: 1,
		nodes: { a: 'Completed', b: 'Failed' },
		errors: [expect.objectContaining({ message: 'always fails', nodeId: 'b' })],
	})
	expect(bus.runs.get(runId).some((r) => r.type === 'job:failed')).toBe(true)
}, 60000)
