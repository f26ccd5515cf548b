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

// After an adopt-all, a node's job can be in the queue twice (the old worker's and the
// reconciler's). The copy that finds the node committed re-publishes its successors only
// when it may itself have committed (redelivered): a fresh duplicate lost to a live delivery,
// which publishes before it acks; publishing again would run every successor twice.
describe('a second job for a node already committed', () => {
	const flow = {
		id: 'dup-chain',
		nodes: [
			{ id: 's', uses: 'dup.s' },
			{ id: 'm', uses: 'dup.m' },
			{ id: 'w', uses: 'wait' },
		],
		edges: [
			{ source: 's', target: 'm' },
			{ source: 'm', target: 'w' },
		],
	}

	/**
	 * s committed and its delivery back in the queue (its worker stopped while m ran under it),
	 * then s's job in the queue again (`redelivered` or not), all served by a new worker: the
	 * jobs it took (m, run under the delivery that walks to it, counts as one).
	 */
	async function duplicateOfStart(redelivered) {
		const where = place(res, 'dup')
		const ran = []
		let stopping = true
		const options = {
			blueprints: { [flow.id]: flow },
			registry: {
				'dup.s': async () => (ran.push('s'), { output: 's' }),
				'dup.m': async (ctx) => {
					if (stopping) {
						await new Promise((r) => ctx.signal?.addEventListener('abort', r))
						throw Object.assign(new Error('stopped'), { name: 'AbortError' })
					}
					// slow enough that s's copy finds m still pending
					await new Promise((r) => setTimeout(r, 500))
					ran.push('m')
					return { output: 'm' }
				},
			},
		}
		const first = adapterAt(res, where, options)
		await first.start()
		const { runId } = await first.startRun(flow.id, {})
		for (let i = 0; (await first.getRun(runId)).nodes.find((n) => n.id === 'm')?.state !== 'running'; i++) {
			if (i > 200) throw new Error('m never started')
			await new Promise((r) => setTimeout(r, 50))
		}
		await first.stop({ timeoutMs: 300 })
		stopping = false
		const conn = await amqplib.connect(S.RABBITMQ_URL)
		res.onCleanup(() => conn.close().catch(() => {}))
		const channel = await conn.createConfirmChannel()
		expect((await channel.checkQueue(where.queue)).messageCount).toBe(1) // s's, given back with m
		const job = { runId, blueprintId: flow.id, nodeId: 's' }
		channel.sendToQueue(where.queue, Buffer.from(JSON.stringify(job)), { persistent: true })
		await channel.waitForConfirms()
		if (redelivered) {
			// both taken and given back unacked: the broker marks them redelivered
			const taker = await conn.createChannel()
			expect(await taker.get(where.queue, { noAck: false })).toBeTruthy()
			expect(await taker.get(where.queue, { noAck: false })).toBeTruthy()
			await taker.close()
		}
		const second = adapterAt(res, where, options)
		await second.start()
		expect(await second.waitForRun(runId, { timeoutMs: 20000 })).toEqual({ status: 'awaiting' })
		// every job published is processed: the queue is empty and nothing is in flight
		for (let stable = 0; stable < 10; ) {
			await new Promise((r) => setTimeout(r, 100))
			const { messageCount } = await channel.checkQueue(where.queue)
			stable = messageCount === 0 && second.stats().inFlight === 0 ? stable + 1 : 0
		}
		expect(ran).toEqual(['s', 'm'])
		return second.stats().processed
	}

	test('a fresh duplicate is acked and publishes nothing', async () => {
		// s's delivery walking to m (2), s's copy and w's job: without the rule, s's copy publishes
		// m's job again (5 or more)
		expect(await duplicateOfStart(false)).toBe(4)
	}, 60000)

	test('a redelivered one re-publishes what its commit enqueued (its worker may have died first)', async () => {
		// s's copy walks to m again (m pending, or done by the first walk): one more than above
		expect(await duplicateOfStart(true)).toBeGreaterThanOrEqual(5)
	}, 60000)
})
