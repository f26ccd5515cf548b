'use strict'

// The run API against the real services: startRun (idempotent), waitForRun (woken by
// NOTIFY, not polling), getRun, reconcile after a killed worker, resumeWithAction,
// cancelRun, the reconciler, stats(), and graceful shutdown on SIGTERM.
// Each test has its own queue, tables and run ids, removed after it.

const S = require('./helpers/services')
const {
	runsEnv,
	silent,
	recordingLogger,
	queueDepth,
	purgeQueue,
	publishRaw,
	eventually,
	deferred,
} = require('./helpers/runs-env')
const { blueprints } = require('./helpers/runs-fixtures')
const { RabbitMqAdapter, RedisCoordinationStore, createRabbitMqReconciler, stopOnSignals, ErrorCodes } = require('..')

const res = S.useResources()
const setup = runsEnv(res)

jest.setTimeout(60000)

const q = S.quoteIdent

/**
 * A side table each node execution is recorded in (helpers/runs-fixtures.js): its name
 * (a worker process's SIDE_TABLE), a run's executions in order, and the `record`
 * dependency an in-process worker records with.
 */
async function sideTable() {
	const side = S.uniqueName('side')
	res.trackTable(side)
	await S.pgQuery(
		`CREATE TABLE ${q(side)} (run_id TEXT, node_id TEXT, token TEXT, pid INT, at TIMESTAMPTZ DEFAULT clock_timestamp())`,
	)
	const executions = async (runId) =>
		(await S.pgQuery(`SELECT node_id, token, pid FROM ${q(side)} WHERE run_id = $1 ORDER BY at`, [runId])).rows
	const record = (run, node, token) =>
		S.pgQuery(`INSERT INTO ${q(side)} (run_id, node_id, token, pid) VALUES ($1, $2, $3, $4)`, [
			run,
			node,
			token,
			process.pid,
		])
	return { side, executions, record }
}

describe('startRun', () => {
	test('two concurrent startRuns with one idempotency key start one run: one status row, one set of start jobs', async () => {
		const env = setup('idem')
		const client = env.adapter() // never started: no consumer, the jobs stay in the queue
		const key = S.uniqueName('key')
		const ids = [env.runId(), env.runId()]
		const results = await Promise.all(
			ids.map((runId) => client.startRun('two-starts', { testRunId: runId }, { runId, idempotencyKey: key })),
		)
		expect(results[0].runId).toBe(results[1].runId)
		expect(ids).toContain(results[0].runId)
		expect(results.map((r) => r.created).sort()).toEqual([false, true])

		const rows = await S.pgQuery(`SELECT run_id, status FROM ${q(env.statusTable)}`)
		expect(rows.rows).toEqual([{ run_id: results[0].runId, status: 'running' }])
		expect(await S.countRows(env.ctxTable)).toBe(1)
		// two start nodes (s1, s2): two jobs, not four
		expect(await queueDepth(env.queue)).toBe(2)

		// the same run id again: nothing new either
		const again = await client.startRun('two-starts', {}, { runId: results[0].runId })
		expect(again).toEqual({ runId: results[0].runId, created: false })
		expect(await queueDepth(env.queue)).toBe(2)

		const ctx = await S.readContextRow(env.ctxTable, results[0].runId)
		expect(ctx).toMatchObject({ blueprintId: 'two-starts', blueprintVersion: null, testRunId: results[0].runId })
	})

	test('refuses an unknown blueprint, a context JSON cannot hold, and bad options, before touching anything', async () => {
		const env = setup('bad')
		const client = env.adapter()
		const e1 = await S.captureError(() => client.startRun('nope'))
		expect(e1.code).toBe(ErrorCodes.UNKNOWN_BLUEPRINT)
		expect(e1.message).toMatch(/unknown blueprint "nope".*"quick"/)
		const cyclic = {}
		cyclic.self = cyclic
		expect((await S.captureError(() => client.startRun('quick', cyclic))).code).toBe('ERR_NOT_SERIALIZABLE')
		expect((await S.captureError(() => client.startRun('quick', { big: 1n }))).code).toBe('ERR_NOT_SERIALIZABLE')
		const fnErr = await S.captureError(() => client.startRun('quick', { f: () => 1 }))
		expect(fnErr.code).toBe('ERR_NOT_SERIALIZABLE')
		expect(fnErr.message).toMatch(/key path f\b/)
		expect((await S.captureError(() => client.startRun('quick', [1, 2]))).code).toBe('ERR_INVALID_ARGUMENT')
		expect((await S.captureError(() => client.startRun('quick', {}, { runId: '' }))).code).toBe('ERR_INVALID_ARGUMENT')
		expect((await S.captureError(() => client.startRun('quick', {}, { runid: 'x' }))).message).toMatch(
			/unknown option "runid"/,
		)
		expect((await S.captureError(() => client.startRun('quick', {}, { idempotencyKey: 5 }))).code).toBe(
			'ERR_INVALID_ARGUMENT',
		)
		expect(await S.tableExists(env.statusTable)).toBe(false)
	})

	test('the default run id is a UUID; getRun of an unknown run is undefined; the run API after close() is refused', async () => {
		const env = setup('uuid')
		const client = env.adapter()
		const { runId, created } = await client.startRun('quick')
		env.runIds.push(runId)
		expect(created).toBe(true)
		expect(runId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
		expect(await client.getRun('no-such-run')).toBeUndefined()
		expect(await client.cancelRun('no-such-run')).toBe(false)
		await client.close()
		expect((await S.captureError(() => client.getRun(runId))).code).toBe(ErrorCodes.WORKER_STATE)
	})
})

describe('a client that never calls start()', () => {
	test('exits by itself after startRun / waitForRun / getRun, without close()', async () => {
		const env = setup('exit')
		const worker = env.adapter()
		await worker.start()
		const runId = env.runId()
		const script = `
      const { RabbitMqAdapter, RedisCoordinationStore } = require(${JSON.stringify(require('node:path').resolve(__dirname, '..'))})
      const { blueprints, createRegistry } = require(${JSON.stringify(require.resolve('./helpers/runs-fixtures'))})
      const client = new RabbitMqAdapter({
        amqpConnection: ${JSON.stringify(S.RABBITMQ_URL)}, pgClient: ${JSON.stringify(S.POSTGRES_URL)},
        coordinationStore: new RedisCoordinationStore(${JSON.stringify(S.REDIS_URL)}),
        queueName: ${JSON.stringify(env.queue)}, contextTableName: ${JSON.stringify(env.ctxTable)}, statusTableName: ${JSON.stringify(env.statusTable)},
        runtimeOptions: { registry: createRegistry(), blueprints },
      })
      ;(async () => {
        await client.startRun('quick', { testRunId: ${JSON.stringify(runId)} }, { runId: ${JSON.stringify(runId)} })
        const r = await client.waitForRun(${JSON.stringify(runId)})
        const run = await client.getRun(${JSON.stringify(runId)})
        console.log(r.status, run.nodes[0].state)
      })()`
		const { execFile } = require('node:child_process')
		const t0 = Date.now()
		const out = await new Promise((resolve) =>
			execFile(process.execPath, ['-e', script], { timeout: 20000 }, (error, stdout, stderr) =>
				resolve({ error, stdout, stderr }),
			),
		)
		expect({
			error: out.error && (out.error.signal || out.error.code),
			stdout: out.stdout,
			stderr: out.stderr,
		}).toEqual({
			error: null,
			stdout: 'completed done\n',
			stderr: '',
		})
		expect(Date.now() - t0).toBeLessThan(10000)
	})
})

describe('waitForRun', () => {
	test('wakes within 100 ms of the final status write, issues no query while it waits, and resolves only after a long node ends', async () => {
		// A database of its own: every backend in it belongs to this test's worker and
		// client, so pg_stat_activity shows each query they start.
		const db = await res.database('wait')
		const env = setup('wait', { postgresUrl: S.pgUrlForDatabase(db) })
		const napStarted = deferred()
		const bps = {
			...blueprints,
			nap300: { id: 'nap300', nodes: [{ id: 'n', uses: 'slow', params: { name: 'n', ms: 300 } }], edges: [] },
		}
		const worker = env.adapter({
			blueprints: bps,
			hooks: { onStart: (node) => node === 'nap' && napStarted.resolve() },
		})
		await worker.start()
		const client = env.adapter({ blueprints: bps })
		const dbPool = new (require('pg').Pool)({ connectionString: env.postgresUrl, max: 2 })
		res.onCleanup(() => dbPool.end())
		const updatedAtMs = async (runId) =>
			(
				await dbPool.query(
					`SELECT extract(epoch FROM updated_at) * 1000 AS ms FROM ${q(env.statusTable)} WHERE run_id = $1`,
					[runId],
				)
			).rows[0].ms

		// 1. Wake latency over several runs, each awaited while its node still runs.
		const runIds = Array.from({ length: 6 }, () => env.runId())
		await Promise.all(runIds.map((runId) => client.startRun('nap300', { testRunId: runId }, { runId })))
		const woken = await Promise.all(
			runIds.map((runId) => client.waitForRun(runId, { timeoutMs: 20000 }).then((r) => ({ runId, r, at: Date.now() }))),
		)
		const latencies = []
		for (const { runId, r, at } of woken) {
			expect(r.status).toBe('completed')
			latencies.push(at - Number(await updatedAtMs(runId)))
		}
		for (const l of latencies) {
			expect(l).toBeGreaterThanOrEqual(-5) // the same clock: never before the write (a few ms of rounding)
			expect(l).toBeLessThan(100)
		}

		// 2. A long node: sample pg_stat_activity while waitForRun waits.
		const runId = env.runId()
		await client.startRun('sleepy', { testRunId: runId }, { runId })
		const waiting = client.waitForRun(runId, { timeoutMs: 20000 }).then((r) => ({ r, at: Date.now() }))
		await napStarted.promise
		await new Promise((r) => setTimeout(r, 100)) // let waitForRun reach its wait
		const seen = new Map()
		const sample = async () => {
			const { rows } = await S.pgQuery(
				`SELECT pid, query_start::text AS qs, state, left(query, 80) AS query FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
				[db],
			)
			return rows
		}
		for (const row of await sample()) seen.set(`${row.pid}@${row.qs}`, row)
		const baseline = seen.size
		const started = []
		const until = Date.now() + 1000
		while (Date.now() < until) {
			for (const row of await sample()) {
				const k = `${row.pid}@${row.qs}`
				if (!seen.has(k)) {
					seen.set(k, row)
					started.push(row)
				}
			}
			await new Promise((r) => setTimeout(r, 20))
		}
		// While the node sleeps neither the worker nor the waiting client queries the database
		// (a polling waitForRun would show up here about every poll interval).
		expect({ baseline: baseline > 0, queriesStarted: started }).toEqual({ baseline: true, queriesStarted: [] })

		const { r, at } = await waiting
		expect(r.status).toBe('completed')
		const napEnded = r.payload.context['_outputs.nap'].endedAt
		expect(at).toBeGreaterThanOrEqual(napEnded)
		expect(r.payload.context['_outputs.after']).toMatchObject({ node: 'after' })
	})

	test('rejects with ERR_TIMEOUT when the run does not end in time, and resolves at once for a finished run', async () => {
		const env = setup('wtime')
		const client = env.adapter()
		const runId = env.runId()
		await client.startRun('quick', { testRunId: runId }, { runId }) // no worker: it never ends
		const t0 = Date.now()
		const err = await S.captureError(() => client.waitForRun(runId, { timeoutMs: 300 }))
		expect(err.code).toBe(ErrorCodes.TIMEOUT)
		expect(err.message).toMatch(/did not finish within 300 ms/)
		expect(Date.now() - t0).toBeGreaterThanOrEqual(290)
		expect((await S.captureError(() => client.waitForRun(runId, { timeoutMs: -1 }))).code).toBe('ERR_INVALID_ARGUMENT')

		const worker = env.adapter()
		await worker.start()
		expect((await client.waitForRun(runId)).status).toBe('completed')
		const t1 = Date.now()
		expect((await client.waitForRun(runId, { timeoutMs: 5000 })).status).toBe('completed')
		expect(Date.now() - t1).toBeLessThan(1000)
	})
})

describe('getRun', () => {
	test('reports a completed, a failed and a running run with the state of each node', async () => {
		const env = setup('get')
		const held = deferred()
		const cStarted = deferred()
		const worker = env.adapter({
			hooks: {
				hold: () => held.promise,
				onStart: (node) => node === 'c' && cStarted.resolve(),
			},
		})
		await worker.start()
		const client = env.adapter()

		const done = env.runId('done')
		await client.startRun('quick', { testRunId: done }, { runId: done })
		expect((await client.waitForRun(done)).status).toBe('completed')
		const d = await client.getRun(done)
		expect(d).toMatchObject({
			runId: done,
			status: 'completed',
			blueprintId: 'quick',
			statusData: { status: 'completed' },
		})
		expect(d.updatedAt).toBeInstanceOf(Date)
		expect(Math.abs(Date.now() - d.updatedAt.getTime())).toBeLessThan(60000)
		expect(d.nodes).toEqual([{ id: 'a', uses: 'step', state: 'done' }])
		expect(d.context['_outputs.a']).toMatchObject({ node: 'a' })
		expect(d.reason).toBeUndefined()

		const failed = env.runId('failed')
		await client.startRun('fails', { testRunId: failed }, { runId: failed })
		expect(await client.waitForRun(failed)).toEqual({ status: 'failed', reason: "Node 'b' failed: boom" })
		const f = await client.getRun(failed)
		expect(f).toMatchObject({ status: 'failed', reason: "Node 'b' failed: boom" })
		expect(f.nodes).toEqual([
			{ id: 'a', uses: 'step', state: 'done' },
			{ id: 'b', uses: 'boom', state: 'failed' },
			{ id: 'c', uses: 'step', state: 'not_reached' },
		])

		const running = env.runId('running')
		await client.startRun('diamond', { testRunId: running }, { runId: running })
		await cStarted.promise
		const r = await eventually(
			async () => {
				const run = await client.getRun(running)
				return run.nodes.find((n) => n.id === 'b').state === 'done' && run
			},
			10000,
			'node b done',
		)
		expect(r.status).toBe('running')
		expect(r.blueprintId).toBe('diamond')
		expect(r.context.blueprintVersion).toBe('2')
		expect(r.nodes).toEqual([
			{ id: 'a', uses: 'step', state: 'done' },
			{ id: 'b', uses: 'step', state: 'done' },
			{ id: 'c', uses: 'hold', state: 'running' },
			{ id: 'd', uses: 'step', state: 'waiting' },
		])
		held.resolve()
		expect((await client.waitForRun(running)).status).toBe('completed')
		expect((await client.getRun(running)).nodes.map((n) => n.state)).toEqual(['done', 'done', 'done', 'done'])
	})
})

describe('reconcile', () => {
	test('a worker killed mid-run, its job lost: reconcile re-enqueues it once, the run completes, no node output is committed twice', async () => {
		const env = setup('kill')
		const { side, executions, record } = await sideTable()

		const child = await env.spawnWorker({ SIDE_TABLE: side })
		const client = env.adapter()
		const runId = env.runId()
		await client.startRun('chain', { testRunId: runId }, { runId })
		await eventually(async () => (await executions(runId)).some((e) => e.node_id === 'b'), 15000, 'node b started')
		child.kill('SIGKILL')
		await child.exited

		// b's unacknowledged job goes back to the queue; lose it, as a broker that lost
		// its queue would.
		await eventually(async () => (await queueDepth(env.queue)) === 1, 10000, "b's job back in the queue")
		expect(await purgeQueue(env.queue)).toBe(1)
		const stuck = await client.getRun(runId)
		expect(stuck.nodes.map((n) => `${n.id}:${n.state}`)).toEqual(['a:done', 'b:running', 'c:not_reached'])

		// A run that changed recently is left alone (its job may be on its way)...
		expect(await client.reconcile(runId)).toEqual(new Set())
		// ...one idle for longer than staleAfterMs gets its lost node again, once.
		expect(await client.reconcile(runId, { staleAfterMs: 0 })).toEqual(new Set(['b']))
		expect(await client.reconcile(runId, { staleAfterMs: 0 })).toEqual(new Set())
		expect(await queueDepth(env.queue)).toBe(1)

		const worker = env.adapter({ dependencies: { record } })
		await worker.start()
		const result = await client.waitForRun(runId, { timeoutMs: 20000 })
		expect(result.status).toBe('completed')

		const ex = await executions(runId)
		const by = (node) => ex.filter((e) => e.node_id === node)
		// a finished before the kill: never run again. b: the killed execution and the new one. c: once.
		expect(by('a')).toHaveLength(1)
		expect(by('b').map((e) => e.pid)).toEqual([child.pid, process.pid])
		expect(by('c')).toHaveLength(1)
		// each node's committed output is one execution's: b's is the second one's
		const ctx = result.payload.context
		expect(ctx['_outputs.a'].token).toBe(by('a')[0].token)
		expect(ctx['_outputs.b'].token).toBe(by('b')[1].token)
		expect(ctx['_outputs.c'].token).toBe(by('c')[0].token)
		expect(await client.reconcile(runId, { staleAfterMs: 0 })).toEqual(new Set())
	})

	test('reconcile refuses a run that does not exist', async () => {
		const env = setup('recnone')
		const client = env.adapter()
		const err = await S.captureError(() => client.reconcile('no-such-run'))
		expect(err.code).toBe('ERR_INVALID_ARGUMENT')
		expect(err.message).toMatch(/no-such-run/)
	})
})

describe('resumeWithAction', () => {
	test('a run stopped at a wait node is awaiting, then resumed with an action that picks its route, then completed', async () => {
		const env = setup('resume')
		const started = []
		const worker = env.adapter({ hooks: { onStart: (node) => started.push(node) } })
		await worker.start()
		const client = env.adapter()
		const runId = env.runId()
		await client.startRun('approval', { testRunId: runId }, { runId })
		expect(await client.waitForRun(runId)).toEqual({ status: 'awaiting' })
		const waiting = await client.getRun(runId)
		expect(waiting.status).toBe('awaiting')
		expect(waiting.nodes.map((n) => `${n.id}:${n.state}`)).toEqual([
			'ask:done',
			'gate:awaiting',
			'yes:not_reached',
			'no:not_reached',
		])
		expect(waiting.context._awaitingNodeIds).toEqual(['gate'])
		// awaiting a human is not stalled
		expect(await client.reconcile(runId, { staleAfterMs: 0 })).toEqual(new Set())

		expect(await client.resumeWithAction(runId, 'approve', { by: 'ada' })).toEqual(new Set(['yes']))
		const done = await client.waitForRun(runId)
		expect(done.status).toBe('completed')
		const ctx = done.payload.context
		expect(ctx['_resume.action']).toBe('approve')
		expect(ctx['_resume.output']).toEqual({ by: 'ada' })
		expect(ctx['_outputs.gate']).toEqual({ by: 'ada' })
		expect(ctx['_outputs.yes']).toMatchObject({ node: 'yes' })
		expect(ctx).not.toHaveProperty(['_outputs.no'])
		expect(ctx).not.toHaveProperty('_awaitingNodeIds')
		expect(started.sort()).toEqual(['ask', 'yes'])

		const again = await S.captureError(() => client.resumeWithAction(runId, 'approve'))
		expect(again.code).toBe(ErrorCodes.WORKER_STATE)
		expect(again.message).toMatch(/not awaiting \(status: completed\)/)
		expect((await S.captureError(() => client.resumeWithAction(runId, ''))).code).toBe('ERR_INVALID_ARGUMENT')
	})
})

describe('cancelRun', () => {
	test('a node running when its run is cancelled sees its signal aborted; the run ends cancelled with the reason; its successors never run', async () => {
		const env = setup('cancel')
		const longStarted = deferred()
		const aborted = deferred()
		const started = []
		const worker = env.adapter({
			hooks: {
				onStart: (node) => {
					started.push(node)
					if (node === 'long') longStarted.resolve()
				},
				onAborted: (info) => aborted.resolve(info),
			},
		})
		await worker.start()
		// Cancelled from another adapter: the worker learns it by NOTIFY.
		const client = env.adapter()
		const runId = env.runId()
		await client.startRun('cancellable', { testRunId: runId }, { runId })
		await longStarted.promise
		expect(await client.cancelRun(runId, 'stop it')).toBe(true)
		expect(await client.waitForRun(runId)).toEqual({ status: 'cancelled', reason: 'stop it' })
		const info = await S.withTimeout(aborted.promise, 5000, "the node's abort")
		expect(info.runId).toBe(runId)
		expect(info.aborted).toBe(true)
		expect(info.reason).toBeInstanceOf(Error)
		expect(info.reason.code).toBe(ErrorCodes.RUN_CANCELLED)

		await new Promise((r) => setTimeout(r, 500))
		expect(started).toEqual(['long'])
		const run = await client.getRun(runId)
		expect(run.status).toBe('cancelled')
		expect(run.reason).toBe('stop it')
		expect(run.context).not.toHaveProperty(['_outputs.long'])
		expect(run.context).not.toHaveProperty(['_outputs.after'])
		expect(await client.cancelRun(runId)).toBe(false)
		expect(await queueDepth(env.queue)).toBe(0)
	})
})

describe('createRabbitMqReconciler', () => {
	test('run() counts stalled runs, those it reconciled and those it failed on; awaiting, finished and fresh runs are not stalled', async () => {
		const env = setup('recon')
		const worker = env.adapter()
		await worker.start()
		const client = env.adapter()
		const start = async (bp, tag) => {
			const runId = env.runId(tag)
			await client.startRun(bp, { testRunId: runId }, { runId })
			return runId
		}
		const awaiting = await start('approval', 'aw')
		const finished = await start('quick', 'done')
		expect((await client.waitForRun(awaiting)).status).toBe('awaiting')
		expect((await client.waitForRun(finished)).status).toBe('completed')
		await worker.stop()

		const lost = await start('quick', 'lost')
		const fresh = await start('quick', 'fresh')
		await purgeQueue(env.queue) // both start jobs lost
		const ghost = env.runId('ghost') // a run of a blueprint this adapter does not know
		await S.pgQuery(`INSERT INTO ${q(env.ctxTable)} (run_id, context_data) VALUES ($1, '{"blueprintId":"ghost"}')`, [
			ghost,
		])
		await S.pgQuery(
			`INSERT INTO ${q(env.statusTable)} (run_id, status, status_data, updated_at, blueprint_id, pending)
       VALUES ($1, 'running', '{"status":"running"}', now(), 'ghost', 1)`,
			[ghost],
		)
		const age = (ids) =>
			S.pgQuery(`UPDATE ${q(env.statusTable)} SET updated_at = now() - interval '10 minutes' WHERE run_id = ANY($1)`, [
				ids,
			])
		await age([awaiting, finished, lost, ghost])

		const logger = recordingLogger()
		const progress = []
		const reconciler = createRabbitMqReconciler({
			adapter: client,
			pgClient: S.POSTGRES_URL,
			statusTableName: env.statusTable,
			stalledThresholdSeconds: 300,
			logger,
			onProgress: (p) => progress.push(p),
		})
		expect(await reconciler.run()).toEqual({ stalledRuns: 2, reconciledRuns: 1, failedRuns: 1 })
		expect(await queueDepth(env.queue)).toBe(1) // lost's start job, once
		expect(
			progress.map((p) => [p.runId, p.index, p.total, p.enqueued ? [...p.enqueued] : p.error.code]).sort(),
		).toEqual(
			[
				[ghost, expect.any(Number), 2, 'ERR_INVALID_ARGUMENT'],
				[lost, expect.any(Number), 2, ['a']],
			].sort(),
		)
		expect(logger.lines.filter((l) => l.level === 'error').map((l) => l.meta.runId)).toEqual([ghost])
		expect(logger.lines.find((l) => l.level === 'info' && l.meta && l.meta.runId === lost).message).toMatch(
			/enqueued nodes: a/,
		)

		// Still stalled a pass later: nothing is enqueued twice.
		await age([lost])
		expect(await reconciler.run()).toEqual({ stalledRuns: 2, reconciledRuns: 0, failedRuns: 1 })
		expect(await queueDepth(env.queue)).toBe(1)

		const worker2 = env.adapter()
		await worker2.start()
		expect((await client.waitForRun(lost)).status).toBe('completed')
		expect((await client.getRun(fresh)).status).toBe('running') // never stalled, never touched

		expect(() => createRabbitMqReconciler({ adapter: client, statusTableName: 'other_table' })).toThrow(
			/not the adapter's status table/,
		)
		expect(() => createRabbitMqReconciler({ adapter: {} })).toThrow(/must be a RabbitMqAdapter/)
		expect(() => createRabbitMqReconciler({ adapter: client, stalledThresholdSeconds: -1 })).toThrow(
			/stalledThresholdSeconds/,
		)
	})
})

describe('stats', () => {
	test('counts jobs processed and dead-lettered, and job times; zeros before start()', async () => {
		const env = setup('stats')
		const worker = env.adapter()
		expect(worker.stats()).toEqual({
			processed: 0,
			failed: 0,
			deadLettered: 0,
			retried: 0,
			continued: 0,
			inFlight: 0,
			p50Ms: 0,
			p99Ms: 0,
		})
		await worker.start()
		const client = env.adapter()
		const runs = [['quick'], ['quick'], ['fails']]
		for (const [bp] of runs) {
			const runId = env.runId()
			await client.startRun(bp, { testRunId: runId }, { runId })
			await client.waitForRun(runId)
		}
		await publishRaw(env.queue, 'not a job')
		await eventually(() => worker.stats().deadLettered === 1, 10000, 'the bad message dead-lettered')
		const s = worker.stats()
		// quick: 1 job each; fails: a and b (c is never reached); plus the refused message.
		// b ran under a's delivery, without a message of its own.
		expect(s).toMatchObject({ processed: 4, failed: 1, deadLettered: 1, retried: 0, continued: 1, inFlight: 0 })
		expect(s.p50Ms).toBeGreaterThan(0)
		expect(s.p99Ms).toBeGreaterThanOrEqual(s.p50Ms)
		const dead = await client.deadLetters()
		expect(dead).toHaveLength(1)
		expect(dead[0].body).toBe('not a job')
		expect(dead[0].job).toBeUndefined()
		expect(dead[0].reason).not.toBe('')
		expect(dead[0].deadAt).toBeInstanceOf(Date)
		await worker.stop()
		expect(worker.stats()).toEqual(s) // still readable after stop()
		expect(await client.requeueDeadLetters({ limit: 10 })).toBe(1)
		expect(await client.deadLetters()).toEqual([])
		expect(await queueDepth(env.queue)).toBe(1)
	})
})

describe("successors run under their predecessor's delivery", () => {
	test('a chain of 70 nodes: 64 jobs run under the first delivery, the 65th gets a message of its own (INLINE_CHAIN_MAX), and each job counts once', async () => {
		const env = setup('long')
		const ids = Array.from({ length: 70 }, (_, i) => `n${i}`)
		const long = {
			id: 'long',
			nodes: ids.map((id) => ({ id, uses: 'step', params: { name: id } })),
			edges: ids.slice(1).map((id, i) => ({ source: ids[i], target: id })),
		}
		const worker = env.adapter({ blueprints: { long } })
		await worker.start()
		const runId = env.runId()
		await worker.startRun('long', { testRunId: runId }, { runId })
		const result = await worker.waitForRun(runId, { timeoutMs: 30000 })
		expect(result.status).toBe('completed')
		expect(ids.filter((id) => result.payload.context[`_outputs.${id}`]?.node !== id)).toEqual([])
		// two deliveries: n0 going on with n1..n63, then n64 (published by n63's) with n65..n69
		expect(worker.stats()).toMatchObject({ processed: 70, continued: 63 + 5, failed: 0, inFlight: 0 })
		await eventually(async () => (await queueDepth(env.queue)) === 0, 10000, 'the queue empty')
	})

	test('a delivery older than 10 s hands its successor a message of its own (INLINE_WINDOW)', async () => {
		const env = setup('old')
		const ids = ['s0', 's1', 's2']
		const slow = {
			id: 'slow-chain',
			nodes: ids.map((id) => ({ id, uses: 'slow', params: { name: id, ms: 5500 } })),
			edges: ids.slice(1).map((id, i) => ({ source: ids[i], target: id })),
		}
		const worker = env.adapter({ blueprints: { 'slow-chain': slow } })
		await worker.start()
		const runId = env.runId()
		await worker.startRun('slow-chain', { testRunId: runId }, { runId })
		const result = await worker.waitForRun(runId, { timeoutMs: 40000 })
		expect(result.status).toBe('completed')
		expect(ids.map((id) => result.payload.context[`_outputs.${id}`]?.node)).toEqual(ids)
		// s1 goes on under s0's delivery (5.5 s old); s2 follows a delivery 11 s old: its own message
		expect(worker.stats()).toMatchObject({ processed: 3, continued: 1, failed: 0, inFlight: 0 })
	}, 60000)

	test('a worker killed in the third node of a chain it ran under one delivery: the redelivery walks the chain, and only that node runs again', async () => {
		const env = setup('walk')
		const { side, executions, record } = await sideTable()

		const child = await env.spawnWorker({ SIDE_TABLE: side, DIE_IN_NODE: 'c' })
		const client = env.adapter()
		const runId = env.runId()
		await client.startRun('walk', { testRunId: runId }, { runId })
		const { signal } = await S.withTimeout(child.exited, 20000, 'the worker dying in node c')
		expect(signal).toBe('SIGKILL')
		// a and b are committed; c has no message of its own: the one back in the queue is a's
		const stuck = await client.getRun(runId)
		expect(stuck.nodes.map((n) => `${n.id}:${n.state}`)).toEqual(['a:done', 'b:done', 'c:running', 'd:not_reached'])
		await eventually(async () => (await queueDepth(env.queue)) === 1, 10000, "a's delivery back in the queue")

		const worker = env.adapter({ dependencies: { record } })
		await worker.start()
		const result = await client.waitForRun(runId, { timeoutMs: 20000 })
		expect(result.status).toBe('completed')
		const by = (node) => (ex) => ex.filter((e) => e.node_id === node)
		const ex = await executions(runId)
		expect(by('a')(ex).map((e) => e.pid)).toEqual([child.pid])
		expect(by('b')(ex).map((e) => e.pid)).toEqual([child.pid])
		expect(by('c')(ex).map((e) => e.pid)).toEqual([child.pid, process.pid])
		expect(by('d')(ex).map((e) => e.pid)).toEqual([process.pid])
		expect(result.payload.context['_outputs.c'].token).toBe(by('c')(ex)[1].token)
		// the redelivered job (a's) and the three it went on with (b, c, d): no message of their own
		expect(worker.stats()).toMatchObject({ processed: 4, continued: 3, deadLettered: 0 })
		// toward poison counts the node its last holder died in, not those past it
		const { rows } = await S.pgQuery(`SELECT deliveries FROM ${q(env.statusTable)} WHERE run_id = $1`, [runId])
		expect(rows[0].deliveries).toEqual({ c: 1 })
		expect(await client.deadLetters()).toEqual([])
		await eventually(async () => (await queueDepth(env.queue)) === 0, 10000, 'the queue empty')
	})

	test("a successor run under its predecessor's delivery and dead-lettered is dead-lettered as its own job; the delivery is acked", async () => {
		const env = setup('refused')
		const worker = env.adapter()
		await worker.start()
		// PostgreSQL refuses b's commit, every time (not a service error): its job is dead-lettered
		const nodes = `${env.ctxTable}_nodes`
		const refuse = S.uniqueName('refuse')
		res.onCleanup(() => S.pgQuery(`DROP FUNCTION IF EXISTS ${q(refuse)}() CASCADE`))
		await S.pgQuery(
			`CREATE FUNCTION ${q(refuse)}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN ` +
				`RAISE EXCEPTION 'b is refused' USING ERRCODE = 'check_violation'; END $$`,
		)
		await S.pgQuery(
			`CREATE TRIGGER ${q(refuse)} BEFORE UPDATE ON ${q(nodes)} FOR EACH ROW ` +
				`WHEN (NEW.node_id = 'b' AND NEW.state = 'done') EXECUTE FUNCTION ${q(refuse)}()`,
		)
		const runId = env.runId()
		await worker.startRun('walk', { testRunId: runId }, { runId })
		const result = await worker.waitForRun(runId, { timeoutMs: 20000 })
		expect(result.status).toBe('failed')
		expect(result.reason).toMatch(/b is refused/)
		await eventually(() => worker.stats().deadLettered === 1, 10000, "b's job dead-lettered")
		const dead = await worker.deadLetters()
		expect(dead).toHaveLength(1)
		expect(dead[0].job).toMatchObject({ runId, blueprintId: 'walk', nodeId: 'b' })
		expect(dead[0].reason).toMatch(/b is refused/)
		expect(worker.stats()).toMatchObject({ continued: 1, failed: 1, deadLettered: 1 })
		await eventually(async () => (await queueDepth(env.queue)) === 0, 10000, "the queue empty (a's delivery acked)")
	})
})

describe('graceful shutdown', () => {
	test('handleSignals: on SIGTERM the worker finishes the job in flight, then the process ends by SIGTERM', async () => {
		const env = setup('sig')
		const { side } = await sideTable()
		const child = await env.spawnWorker({ SIDE_TABLE: side, HANDLE_SIGNALS: '1' })
		const client = env.adapter()
		const runId = env.runId()
		await client.startRun('sleepy', { testRunId: runId }, { runId })
		await eventually(
			async () => (await S.pgQuery(`SELECT 1 FROM ${q(side)} WHERE run_id = $1`, [runId])).rows.length === 1,
			15000,
			'nap started',
		)
		const sentAt = Date.now()
		child.kill('SIGTERM')
		const { signal, at } = await S.withTimeout(child.exited, 20000, 'worker exit after SIGTERM')
		expect(signal).toBe('SIGTERM')
		expect(child.output).toMatch(/Received SIGTERM: stopping the worker/)
		expect(child.output).toMatch(/Worker stopped; exiting on SIGTERM/)
		// it waited for the node: its output is committed, and it ended before the exit
		const ctx = await S.readContextRow(env.ctxTable, runId)
		expect(ctx['_outputs.nap']).toMatchObject({ node: 'nap' })
		expect(at).toBeGreaterThanOrEqual(ctx['_outputs.nap'].endedAt)
		expect(at - sentAt).toBeGreaterThan(500) // 1.5 s node, signalled right after it started
		expect(await queueDepth(env.queue)).toBe(1) // the successor's job, for the next worker
		const worker = env.adapter()
		await worker.start()
		expect((await client.waitForRun(runId)).status).toBe('completed')
	})

	test('stopOnSignals: stops the adapter on the signal and removes its listeners; refuses bad arguments', async () => {
		const calls = []
		const fake = { stop: async (o) => void calls.push(o) }
		const keep = () => {} // another listener: the signal is not raised again
		process.on('SIGUSR2', keep)
		try {
			const before = process.listenerCount('SIGUSR2')
			const dispose = stopOnSignals(fake, { signals: ['SIGUSR2'], timeoutMs: 1234, logger: silent })
			expect(process.listenerCount('SIGUSR2')).toBe(before + 1)
			process.emit('SIGUSR2', 'SIGUSR2')
			await eventually(() => process.listenerCount('SIGUSR2') === before, 2000, 'listeners removed')
			expect(calls).toEqual([{ timeoutMs: 1234 }])
			dispose() // idempotent
			const dispose2 = stopOnSignals(fake, { signals: ['SIGUSR2'], logger: silent })
			dispose2()
			expect(process.listenerCount('SIGUSR2')).toBe(before)
		} finally {
			process.removeListener('SIGUSR2', keep)
		}
		expect(() => stopOnSignals({})).toThrow(/must be a RabbitMqAdapter/)
		expect(() => stopOnSignals(fake, { signals: ['SIGKILL'] })).toThrow(/cannot be handled|not a signal/)
		expect(() => stopOnSignals(fake, { signals: [] })).toThrow(/non-empty array/)
		expect(() => stopOnSignals(fake, { timeoutMs: -5 })).toThrow(/timeoutMs/)
	})

	test('handleSignals must be a boolean', () => {
		expect(
			() =>
				new RabbitMqAdapter({
					amqpConnection: S.RABBITMQ_URL,
					pgClient: S.POSTGRES_URL,
					coordinationStore: new RedisCoordinationStore(S.REDIS_URL),
					handleSignals: 'yes',
					runtimeOptions: { registry: {}, blueprints: {} },
				}),
		).toThrow(/handleSignals must be a boolean/)
	})
})
