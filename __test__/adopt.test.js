'use strict'
/**
 * Runs advanced by workers without our bookkeeping (issue 13, item 1): the TypeScript adapter
 * writes outputs into the context row and a bare `running` status, publishes the successors,
 * and counts join arrivals in Redis. Our worker, handed such a run mid-way, adopts it from
 * its context: nodes with outputs are done (not queued again), their arrivals at joins count.
 * The old worker is played over its documented wire protocol (rows + a job message).
 */
const amqplib = require('amqplib')
const S = require('./helpers/services')
const { place, adapterAt } = require('./helpers/run-place')

const res = S.useResources()

const diamond = {
	id: 'adopt-diamond',
	nodes: [
		{ id: 'a', uses: 'ad.a' },
		{ id: 'b', uses: 'ad.b' },
		{ id: 'c', uses: 'ad.c' },
		{ id: 'd', uses: 'ad.d' },
		{ id: 'e', uses: 'ad.e' },
	],
	edges: [
		{ source: 'a', target: 'b' },
		{ source: 'a', target: 'c' },
		{ source: 'b', target: 'd' },
		{ source: 'c', target: 'd' },
		{ source: 'd', target: 'e' },
	],
}

test('a run whose start node and one branch an old worker completed finishes under ours, each node once', async () => {
	const where = place(res, 'ad')
	const { queue, ctx, st } = where
	const ran = []
	const adapter = adapterAt(res, where, {
		blueprints: { [diamond.id]: diamond },
		registry: Object.fromEntries(
			diamond.nodes.map((n) => [
				n.uses,
				async () => {
					ran.push(n.id)
					return { output: `${n.id} by ours` }
				},
			]),
		),
	})
	await adapter.start() // creates the tables

	// the old worker ran a and c, recorded them as Flowcraft's context does, and published b
	const runId = S.uniqueName('adopted')
	const context = {
		blueprintId: diamond.id,
		'_outputs.a': 'a by old',
		a: 'a by old',
		'_outputs.c': 'c by old',
		c: 'c by old',
	}
	await S.pgQuery(`INSERT INTO ${S.quoteIdent(ctx)} (run_id, context_data) VALUES ($1, $2)`, [runId, context])
	await S.pgQuery(
		`INSERT INTO ${S.quoteIdent(st)} (run_id, status, status_data, updated_at) VALUES ($1, 'running', '{"status":"running"}', now())`,
		[runId],
	)
	const conn = await amqplib.connect(S.RABBITMQ_URL)
	res.onCleanup(() => conn.close())
	const channel = await conn.createConfirmChannel()
	channel.sendToQueue(queue, Buffer.from(JSON.stringify({ runId, blueprintId: diamond.id, nodeId: 'b' })), {
		persistent: true,
	})
	await channel.waitForConfirms()

	const result = await adapter.waitForRun(runId, { timeoutMs: 20000 })
	expect(result.status).toBe('completed')
	expect(ran.sort()).toEqual(['b', 'd', 'e'])
	const final = result.payload.context
	expect(final['_outputs.a']).toBe('a by old')
	expect(final['_outputs.c']).toBe('c by old')
	expect(final['_outputs.e']).toBe('e by ours')
	const run = await adapter.getRun(runId)
	expect(run.nodes.map((n) => [n.id, n.state])).toEqual(diamond.nodes.map((n) => [n.id, 'done']))
}, 60000)
