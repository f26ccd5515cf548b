'use strict'
/**
 * Flowcraft's built-in nodes run by the core (issue 10): what the differential suite cannot
 * see. A sleep holds no worker and survives every worker's restart; getRun shows it; cancelRun
 * cancels it. A loop's job of an earlier iteration changes nothing; a runaway loop fails the run
 * with FlowRuntime's message.
 */
const amqplib = require('amqplib')
const S = require('./helpers/services')

const { loop } = require('./diff/builtins')
const { MiniEvaluator } = require('./diff/scenarios')
const { place: placeFor, adapterAt: adapterOn, until } = require('./helpers/run-place')

const res = S.useResources()

// queue and table names of one test; several adapters (workers, clients) may share them
const place = () => placeFor(res, 'bi')
const adapterAt = (where, runtimeOptions, timings = {}) =>
	adapterOn(res, where, runtimeOptions, { stopTimeoutMs: 5000, timings: { sleepSweepMs: 200, ...timings } })

const napping = (calls) => ({
	blueprints: {
		nap: {
			id: 'nap',
			nodes: [
				{ id: 'before', uses: 'bi.count' },
				{ id: 'zz', uses: 'sleep', params: { duration: '2s' } },
				{ id: 'after', uses: 'bi.count' },
			],
			edges: [
				{ source: 'before', target: 'zz' },
				{ source: 'zz', target: 'after' },
			],
		},
	},
	registry: {
		'bi.count': async (ctx) => {
			calls.push(ctx.nodeId ?? ctx.input)
			return { output: { ran: true, input: ctx.input ?? null } }
		},
	},
})

const nodeState = async (client, runId, id) => (await client.getRun(runId))?.nodes.find((n) => n.id === id)

test('a sleeping run holds no worker, shows its wake-up time, and wakes in a worker started after every worker stopped', async () => {
	const where = place()
	const calls = []
	const first = adapterAt(where, napping(calls))
	await first.start()
	const started = Date.now()
	const { runId } = await first.startRun('nap', {})
	const zz = await until(
		async () => {
			const n = await nodeState(first, runId, 'zz')
			return n?.state === 'sleeping' && n
		},
		10000,
		'sleeping',
	)
	const wakeUpAt = Date.parse(zz.wakeUpAt)
	expect(wakeUpAt).toBeGreaterThanOrEqual(started + 1500)
	expect(wakeUpAt).toBeLessThanOrEqual(Date.now() + 2500)
	expect((await first.getRun(runId)).status).toBe('running')
	// no job of the run is held while it sleeps
	expect((await first.stats()).inFlight).toBe(0)
	await first.stop()

	// every worker is gone over the wake-up time; a new one finishes the run
	await new Promise((r) => setTimeout(r, Math.max(0, wakeUpAt - Date.now()) + 300))
	const second = adapterAt(where, napping(calls))
	await second.start()
	const result = await second.waitForRun(runId, { timeoutMs: 15000 })
	expect(result.status).toBe('completed')
	const ctx = result.payload.context
	expect(ctx['_outputs.zz']).toEqual({ ran: true, input: null })
	expect(ctx['_outputs.after']).toEqual({ ran: true, input: { ran: true, input: null } })
	expect(calls).toHaveLength(2)
	expect((await nodeState(second, runId, 'zz')).state).toBe('done')
}, 60000)

test('cancelRun cancels a sleeping run: the node never wakes and nothing after it runs', async () => {
	const where = place()
	const calls = []
	const adapter = adapterAt(where, napping(calls))
	await adapter.start()
	const { runId } = await adapter.startRun('nap', {})
	await until(async () => (await nodeState(adapter, runId, 'zz'))?.state === 'sleeping', 10000, 'sleeping')
	expect(await adapter.cancelRun(runId, 'no longer needed')).toBe(true)
	await new Promise((r) => setTimeout(r, 3000)) // past the wake-up time, several sweeps
	const run = await adapter.getRun(runId)
	expect(run.status).toBe('cancelled')
	expect(calls).toHaveLength(1)
	const rows = await S.pgQuery(
		`SELECT state, wake_at FROM ${S.quoteIdent(`${where.ctx}_nodes`)} WHERE run_id = $1 AND node_id = 'zz'`,
		[runId],
	)
	expect(rows.rows).toEqual([{ state: 'idle', wake_at: null }])
}, 60000)

test("a loop's job of an earlier iteration changes nothing: each iteration runs once", async () => {
	const where = place()
	const runs = []
	const counter = loop('again', { startNodeId: 'inc', endNodeId: 'inc', condition: 'count < 6' }, ['done'])
	const options = {
		blueprints: {
			looping: {
				id: 'looping',
				nodes: [
					{ id: 'init', uses: 'lp.init' },
					{ id: 'inc', uses: 'lp.inc' },
					counter.node,
					{ id: 'done', uses: 'lp.done' },
				],
				edges: [{ source: 'init', target: 'again' }, ...counter.edges],
			},
		},
		registry: {
			'lp.init': async (ctx) => {
				await ctx.context.set('count', 0)
				return { output: 'ok' }
			},
			'lp.inc': async (ctx) => {
				await new Promise((r) => setTimeout(r, 150))
				const count = (await ctx.context.get('count')) + 1
				runs.push(count)
				await ctx.context.set('count', count)
				return { output: { count } }
			},
			'lp.done': async (ctx) => ({ output: { count: await ctx.context.get('count') } }),
		},
		evaluator: new MiniEvaluator(),
	}
	const adapter = adapterAt(where, options)
	await adapter.start()
	const { runId } = await adapter.startRun('looping', {})
	await until(async () => (await adapter.getRun(runId)).context.count >= 3, 15000, 'third iteration')
	// stale copies of the body's jobs: of iteration 1, of 2, and one without an iteration
	const conn = await amqplib.connect(S.RABBITMQ_URL)
	res.onCleanup(() => conn.close())
	const channel = await conn.createConfirmChannel()
	for (const extra of [{ iteration: 1 }, { iteration: 2 }, {}]) {
		const job = { runId, blueprintId: 'looping', nodeId: 'inc', ...extra }
		channel.sendToQueue(where.queue, Buffer.from(JSON.stringify(job)), { persistent: true })
	}
	await channel.waitForConfirms()
	const result = await adapter.waitForRun(runId, { timeoutMs: 20000 })
	expect(result.status).toBe('completed')
	expect(runs).toEqual([1, 2, 3, 4, 5, 6])
	expect(result.payload.context['_outputs.done']).toEqual({ count: 6 })
	expect(result.payload.context['_outputs.inc']).toEqual({ count: 6 })
}, 60000)

test("a runaway loop fails its run with FlowRuntime's message", async () => {
	const where = place()
	let runs = 0
	// a body of 49 nodes: FlowRuntime's 10,000 traversal steps allow 200 times round
	const ids = Array.from({ length: 49 }, (_, i) => `b${i}`)
	const forever = loop('spin', { startNodeId: 'b0', endNodeId: 'b48', condition: 'forever' })
	const options = {
		blueprints: {
			runaway: {
				id: 'runaway',
				nodes: [{ id: 'go', uses: 'rw.leaf' }, ...ids.map((id) => ({ id, uses: 'rw.leaf' })), forever.node],
				edges: [
					{ source: 'go', target: 'spin' },
					...ids.slice(1).map((id, i) => ({ source: ids[i], target: id })),
					...forever.edges,
				],
			},
		},
		registry: {
			'rw.leaf': async () => {
				runs += 1
				return { output: runs }
			},
		},
		evaluator: new MiniEvaluator(),
	}
	const adapter = adapterAt(where, options)
	await adapter.start()
	const { runId } = await adapter.startRun('runaway', { forever: true })
	const result = await adapter.waitForRun(runId, { timeoutMs: 100000 })
	expect(result.status).toBe('failed')
	expect(result.reason).toContain('Traversal exceeded maximum iterations, possible infinite loop')
	expect(runs).toBe(1 + 200 * 49)
}, 120000)

test('a batch of 10,000 items completes, each item once, gathered in item order', async () => {
	const where = place()
	const { batch } = require('./diff/builtins')
	const big = batch('big', { inputKey: 'items', outputKey: 'squares', uses: 'bb.square' })
	let calls = 0
	const options = {
		blueprints: {
			big: {
				id: 'big',
				nodes: [...big.nodes, { id: 'sum', uses: 'bb.sum' }],
				edges: [...big.edges, { source: big.gatherId, target: 'sum' }],
			},
		},
		registry: {
			'bb.square': async (ctx) => {
				calls += 1
				return { output: ctx.input * ctx.input }
			},
			'bb.sum': async (ctx) => ({ output: { n: ctx.input.length, total: ctx.input.reduce((a, b) => a + b, 0) } }),
		},
	}
	const adapter = adapterAt(where, options)
	await adapter.start()
	const items = Array.from({ length: 10000 }, (_, i) => i)
	const { runId } = await adapter.startRun('big', { items })
	const result = await adapter.waitForRun(runId, { timeoutMs: 170000 })
	expect(result.status).toBe('completed')
	const squares = result.payload.context.squares
	expect(squares).toHaveLength(10000)
	expect(squares.every((v, i) => v === i * i)).toBe(true)
	expect(result.payload.context['_outputs.sum']).toEqual({ n: 10000, total: items.reduce((a, i) => a + i * i, 0) })
	expect(calls).toBe(10000)
}, 180000)

test('a subflow runs as a child run of its own, shown by getRun and listRuns; cancelling the parent cancels it', async () => {
	const where = place()
	let release
	const hold = new Promise((r) => {
		release = r
	})
	const options = {
		blueprints: {
			parent: {
				id: 'parent',
				nodes: [
					{ id: 'sub', uses: 'subflow', params: { blueprintId: 'child' } },
					{ id: 'after', uses: 'sc.leaf' },
				],
				edges: [{ source: 'sub', target: 'after' }],
			},
			child: {
				id: 'child',
				nodes: [
					{ id: 'slow', uses: 'sc.slow' },
					{ id: 'next', uses: 'sc.leaf' },
				],
				edges: [{ source: 'slow', target: 'next' }],
			},
		},
		registry: {
			'sc.slow': async ({ signal }) => {
				await Promise.race([hold, new Promise((r) => signal?.addEventListener('abort', r))])
				return { output: 'slow done' }
			},
			'sc.leaf': async () => ({ output: 'leaf' }),
		},
	}
	const adapter = adapterAt(where, options)
	await adapter.start()
	const { runId } = await adapter.startRun('parent', {})
	const childId = `${runId}/sub`
	await until(
		async () => (await adapter.getRun(childId))?.nodes.find((n) => n.id === 'slow')?.state === 'running',
		10000,
		'child running',
	)
	// the parent node waits once its job has started the child (and marked its row)
	const sub = await until(
		async () => {
			const node = (await adapter.getRun(runId)).nodes.find((n) => n.id === 'sub')
			return node.childRunId && node
		},
		10000,
		'parent waiting',
	)
	expect(sub).toEqual(expect.objectContaining({ state: 'running', childRunId: childId }))
	const listed = await adapter.listRuns({ status: 'running', limit: 100 })
	expect(listed.map((r) => r.runId)).toEqual(expect.arrayContaining([runId, childId]))
	expect(await adapter.cancelRun(runId, 'stop it all')).toBe(true)
	expect(await adapter.waitForRun(childId, { timeoutMs: 10000 })).toEqual({
		status: 'cancelled',
		reason: 'stop it all',
	})
	release()
	await new Promise((r) => setTimeout(r, 1500))
	expect((await adapter.getRun(runId)).status).toBe('cancelled')
	expect((await adapter.getRun(childId)).nodes.find((n) => n.id === 'next').state).toBe('not_reached')
}, 60000)

test('a wait inside a nested child run makes its parents awaiting; resumeWithAction on the top run reaches it', async () => {
	const where = place()
	const seen = []
	const options = {
		blueprints: {
			top: {
				id: 'top',
				nodes: [
					{ id: 'mid', uses: 'subflow', params: { blueprintId: 'middle' } },
					{ id: 'end', uses: 'sw.record' },
				],
				edges: [{ source: 'mid', target: 'end' }],
			},
			middle: {
				id: 'middle',
				nodes: [{ id: 'inner', uses: 'subflow', params: { blueprintId: 'approval' } }],
				edges: [],
			},
			approval: {
				id: 'approval',
				nodes: [
					{ id: 'ask', uses: 'wait' },
					{ id: 'yes', uses: 'sw.record' },
					{ id: 'no', uses: 'sw.record' },
				],
				edges: [
					{ source: 'ask', target: 'yes', action: 'approve' },
					{ source: 'ask', target: 'no', action: 'reject' },
				],
			},
		},
		registry: {
			'sw.record': async (ctx) => {
				seen.push(ctx.input === undefined ? 'undefined' : ctx.input)
				return { output: { from: 'record', input: ctx.input ?? null } }
			},
		},
	}
	const adapter = adapterAt(where, options)
	await adapter.start()
	const { runId } = await adapter.startRun('top', {})
	const middle = `${runId}/mid`
	const inner = `${middle}/inner`
	// the innermost run stops at its wait node; the sweep carries `awaiting` up to the top run
	expect(await adapter.waitForRun(inner, { timeoutMs: 15000 })).toEqual({ status: 'awaiting' })
	await until(async () => (await adapter.getRun(runId))?.status === 'awaiting', 15000, 'top run awaiting')
	expect((await adapter.getRun(middle)).status).toBe('awaiting')
	expect(await adapter.waitForRun(runId, { timeoutMs: 1000 })).toEqual({ status: 'awaiting' })
	expect(seen).toEqual([])
	// the resume is the innermost run's: its 'approve' edge runs, then each parent completes
	await adapter.resumeWithAction(runId, 'approve', { ok: 1 })
	const done = await adapter.waitForRun(runId, { timeoutMs: 20000 })
	expect(done.status).toBe('completed')
	expect((await adapter.getRun(inner)).status).toBe('completed')
	expect((await adapter.getRun(middle)).status).toBe('completed')
	// (the approval run has two terminal nodes: its result maps them, FlowRuntime's rule; the
	// untaken 'no' is undefined, so left out)
	const approved = { yes: { from: 'record', input: { ok: 1 } } }
	expect(seen).toEqual([{ ok: 1 }, approved])
	const context = done.payload.context
	expect(context['_outputs.mid']).toEqual(approved)
	expect(context._awaitingNodeIds ?? []).toEqual([])
	// a finished run is not awaiting any more: a second resume is refused
	await expect(adapter.resumeWithAction(runId, 'approve')).rejects.toMatchObject({ code: 'ERR_WORKER_STATE' })
}, 60000)

test("a subflow's maxRetries runs a failed child again (a child run per attempt); the last attempt's failure fails the node", async () => {
	const where = place()
	let calls = 0
	const options = (failures) => ({
		blueprints: {
			retrying: {
				id: 'retrying',
				nodes: [
					{ id: 'sub', uses: 'subflow', params: { blueprintId: 'shaky' }, config: { maxRetries: 3 } },
					{ id: 'after', uses: 'sr.echo' },
				],
				edges: [{ source: 'sub', target: 'after' }],
			},
			shaky: { id: 'shaky', nodes: [{ id: 'try', uses: 'sr.try' }], edges: [] },
		},
		registry: {
			'sr.try': async () => {
				calls += 1
				if (calls <= failures) throw new Error(`attempt ${calls} failed`)
				return { output: `ok on call ${calls}` }
			},
			'sr.echo': async ({ input }) => ({ output: { got: input } }),
		},
	})
	const adapter = adapterAt(where, options(2))
	await adapter.start()
	const { runId } = await adapter.startRun('retrying', {})
	const done = await adapter.waitForRun(runId, { timeoutMs: 20000 })
	expect(done.status).toBe('completed')
	expect(done.payload.context['_outputs.sub']).toBe('ok on call 3')
	expect(done.payload.context['_outputs.after']).toEqual({ got: 'ok on call 3' })
	const statuses = await Promise.all(
		[`${runId}/sub`, `${runId}/sub~2`, `${runId}/sub~3`, `${runId}/sub~4`].map(
			async (id) => (await adapter.getRun(id))?.status,
		),
	)
	expect(statuses).toEqual(['failed', 'failed', 'completed', undefined])
	await adapter.stop()

	// three failures: the third attempt's reason fails the node, and the run
	calls = 0
	const again = adapterAt(place(), options(3))
	await again.start()
	const failed = await again.startRun('retrying', {})
	const result = await again.waitForRun(failed.runId, { timeoutMs: 20000 })
	expect(result.status).toBe('failed')
	expect(result.reason).toMatch(
		/Sub-workflow 'shaky' did not complete successfully\. Status: failed\. Error: .*attempt 3 failed/,
	)
	expect(calls).toBe(3)
}, 60000)

test("a loop controller's job redelivered after its commit publishes the body's next iteration again (its worker died before publishing it)", async () => {
	const where = place()
	const runs = []
	let hold = true
	const counter = loop('again', { startNodeId: 'inc', endNodeId: 'inc', condition: 'count < 4' }, ['done'])
	const options = {
		blueprints: {
			looping: {
				id: 'looping',
				nodes: [
					{ id: 'init', uses: 'rl.init' },
					{ id: 'inc', uses: 'rl.inc' },
					counter.node,
					{ id: 'done', uses: 'rl.done' },
				],
				edges: [{ source: 'init', target: 'again' }, ...counter.edges],
			},
		},
		registry: {
			'rl.init': async (ctx) => {
				await ctx.context.set('count', 0)
				return { output: 'ok' }
			},
			'rl.inc': async (ctx) => {
				const count = (await ctx.context.get('count')) + 1
				if (count === 2 && hold) {
					// the second iteration's job: held until the worker stops (then requeued)
					await new Promise((r) => ctx.signal?.addEventListener('abort', r))
					throw Object.assign(new Error('stopped'), { name: 'AbortError' })
				}
				runs.push(count)
				await ctx.context.set('count', count)
				return { output: { count } }
			},
			'rl.done': async (ctx) => ({ output: { count: await ctx.context.get('count') } }),
		},
		evaluator: new MiniEvaluator(),
	}
	const first = adapterAt(where, options)
	await first.start()
	const { runId } = await first.startRun('looping', {})
	// the controller's commit sent the body round again: its job of iteration 1 is running (held)
	await until(
		async () => runs.length === 1 && (await nodeState(first, runId, 'inc'))?.state === 'running',
		15000,
		'held',
	)
	await first.stop({ timeoutMs: 300 })
	// that job is lost (as if the controller's worker had died before publishing it), and the
	// controller's own job comes back redelivered, as the broker returns an unacked delivery
	const conn = await amqplib.connect(S.RABBITMQ_URL)
	res.onCleanup(() => conn.close().catch(() => {}))
	const channel = await conn.createConfirmChannel()
	await channel.purgeQueue(where.queue)
	// (the controller's first arrival, from init, is iteration 0; the one after inc's first pass, 1)
	const controllerJob = { runId, blueprintId: 'looping', nodeId: 'again', iteration: 1 }
	channel.sendToQueue(where.queue, Buffer.from(JSON.stringify(controllerJob)), { persistent: true })
	await channel.waitForConfirms()
	const taken = await channel.get(where.queue, { noAck: false })
	expect(taken && JSON.parse(taken.content.toString()).nodeId).toBe('again')
	await channel.close() // unacked: back in the queue, marked redelivered
	hold = false
	const second = adapterAt(where, options)
	await second.start()
	const result = await second.waitForRun(runId, { timeoutMs: 20000 })
	expect(result.status).toBe('completed')
	expect(runs).toEqual([1, 2, 3, 4])
	expect(result.payload.context['_outputs.done']).toEqual({ count: 4 })
}, 60000)
