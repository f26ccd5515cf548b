'use strict'
/**
 * Upgrading in place from the TypeScript adapter (issue 13, items 3, 4 and 6), as README
 * "Upgrading from the TypeScript adapter" tells it: runs in flight when the old workers stop
 * (SIGTERM or SIGKILL) are adopted and finished by ours; rollback; waitForRun on runs the old
 * workers finish; a mixed fleet. The old worker is bench/peer.mjs: Flowcraft's own
 * BaseDistributedAdapter over the TypeScript adapter's transport (amqplib queue, a pg context
 * row per run, ioredis INCR join counters, a status row upsert), in its own process; ours is
 * upgrade/worker.js. The workflow (upgrade/workflows.js) fans out to four slow-ish branches and
 * joins them ('all'); every output depends on what the node read, and is compared with
 * FlowRuntime's (upgrade/reference.mjs). A status-change log (a trigger, upgrade/fleet.js) shows
 * that each run got its final status once. Worker logs are in F.LOG_DIR.
 */
const { execFileSync } = require('node:child_process')
const path = require('node:path')
const IORedis = require('ioredis')
const S = require('./helpers/services')
const { until } = require('./helpers/run-place')
const F = require('./upgrade/fleet')

const ROOT = path.join(__dirname, '..')
const BIN = path.join(ROOT, 'bin', 'flowcraft-rabbitmq.js')
const WORKFLOWS = path.join(__dirname, 'upgrade', 'workflows.js')
const { RabbitMqAdapter, RedisCoordinationStore } = require(ROOT)
const { registry, blueprints, BLUEPRINT_ID } = require('./upgrade/workflows')

const res = S.useResources()
const RUNS = 8
const quiet = { debug() {}, info() {}, warn() {}, error() {} }

const ranCount = (workers) => workers.reduce((n, w) => n + w.ran.length, 0)
/** { tag: { node: n } } for every node of every run. */
const perNode = (runs, n) =>
	Object.fromEntries(runs.map((r) => [r.tag, Object.fromEntries(F.NODE_IDS.map((id) => [id, n]))]))
/** Execution counts capped at 1: whether each node of each run ran. */
const ranEach = (counts) =>
	Object.fromEntries(
		Object.entries(counts).map(([tag, c]) => [
			tag,
			Object.fromEntries(F.NODE_IDS.map((id) => [id, Math.min(c[id] ?? 0, 1)])),
		]),
	)
const correctCount = (state, runs, ref) =>
	state.filter((s, i) => JSON.stringify(s) === JSON.stringify(F.completedOnce(runs[i].tag, ref.outputs))).length

/** Our adapter as a client (never started): the run API. Its first call brings the tables up to date. */
function client(w) {
	const redis = new IORedis(S.REDIS_URL, { keyPrefix: w.prefix })
	const adapter = new RabbitMqAdapter({
		amqpConnection: S.RABBITMQ_URL,
		pgClient: S.POSTGRES_URL,
		coordinationStore: new RedisCoordinationStore(redis),
		queueName: w.queue,
		contextTableName: w.ctx,
		statusTableName: w.st,
		runtimeOptions: { registry, blueprints, logger: quiet },
	})
	res.onCleanup(async () => {
		await adapter.close()
		await redis.quit()
	})
	return adapter
}

async function startWireRuns(w, n, label) {
	const channel = await F.confirmChannel(res)
	const runs = []
	for (let i = 0; i < n; i++) runs.push(await F.startWireRun(w, `${label}${i}`, channel))
	return runs
}

/** The runs in flight: a context row without a final status (README: the operator's SELECT). */
async function runsInFlight(w) {
	const { rows } = await S.pgQuery(
		`SELECT c.run_id FROM ${S.quoteIdent(w.ctx)} c LEFT JOIN ${S.quoteIdent(w.st)} s USING (run_id)
		 WHERE s.status IS NULL OR s.status = 'running' ORDER BY c.run_id`,
	)
	return rows.map((r) => r.run_id)
}

/** The README's upgrade steps by the command line: apply the DDL, declare `<queue>.dead`, adopt every run in flight at once. */
async function adoptByCli(w) {
	const common = ['--context-table', w.ctx, '--status-table', w.st]
	await S.pgQuery(execFileSync(process.execPath, [BIN, 'sql', ...common], { encoding: 'utf8' }))
	// the CLI creates no queue, and old workers never declared `<queue>.dead`: the operator does
	// (durable, no arguments, as our worker would declare it)
	const channel = await F.confirmChannel(res)
	await channel.assertQueue(`${w.queue}.dead`, { durable: true })
	const env = { ...process.env, POSTGRES_URL: S.POSTGRES_URL, REDIS_URL: S.REDIS_URL, RABBITMQ_URL: S.RABBITMQ_URL }
	const ids = await runsInFlight(w)
	// (the CLI's node locks carry no key prefix)
	for (const runId of ids) res.onCleanup(() => S.deleteRedisKeysByPrefix(`flowcraft:nodelock:${runId}:`))
	const args = ['reconcile', '--stalled-seconds', '0', '--queue', w.queue, '--blueprints', WORKFLOWS, '--json']
	const report = JSON.parse(execFileSync(process.execPath, [BIN, ...args, ...common], { encoding: 'utf8', env }))
	// every run in flight, and only those: their context rows have no status row yet
	expect(report.runs.map((r) => r.runId).sort()).toEqual([...ids].sort())
	expect(report.failedRuns).toBe(0)
	return report.reconciledRuns
}

/** The same through the run API: reconcile(runId, { staleAfterMs: 0 }) (its first call migrates the tables). */
async function adoptByApi(w) {
	const c = client(w)
	const ids = await runsInFlight(w)
	for (const runId of ids) await c.reconcile(runId, { staleAfterMs: 0 })
	return ids.length
}

/**
 * Old workers advance RUNS wire-started runs and are stopped with `signal` mid-run; `adopt`
 * (or nothing) runs before any worker of ours starts; then only ours serve.
 */
async function upgradeMidRun(label, signal, adopt) {
	const w = await F.world(res, label)
	const ref = await F.reference()
	const old = [F.spawnWorker(res, w, 'old', `${label}-old-a`), F.spawnWorker(res, w, 'old', `${label}-old-b`)]
	await Promise.all(old.map((o) => o.ready))
	const runs = await startWireRuns(w, RUNS, label)
	// FIFO: every start, then the branches run by run: six runs wait for their join, one is half through its fan-out, one has only its start done
	await until(() => ranCount(old) >= RUNS * 4 + 2, 20000, 'old workers mid-run')
	await Promise.all(old.map((o) => o.stop(signal)))
	const finishedByOld = await F.settle(w, runs, 0)
	const adopted = adopt ? await adopt(w) : 0
	const ours = [F.spawnWorker(res, w, 'ours', `${label}-ours-a`), F.spawnWorker(res, w, 'ours', `${label}-ours-b`)]
	await Promise.all(ours.map((o) => o.ready))
	await F.settle(w, runs, 20000)
	await new Promise((r) => setTimeout(r, 300)) // a late duplicate job would have been handled by now
	const state = await F.finalState(w, runs)
	const counts = F.executions([...old, ...ours])
	expect(finishedByOld).toBeLessThan(RUNS) // the stop landed mid-run
	expect(adopted).toBe(adopt ? RUNS - finishedByOld : 0)
	expect(ranCount(ours)).toBeGreaterThan(0)
	expect(state).toEqual(runs.map((run) => F.completedOnce(run.tag, ref.outputs)))
	expect(ranEach(counts)).toEqual(perNode(runs, 1))
	return { counts, runs }
}

describe('upgrade: runs in flight when the old workers stop are finished by ours', () => {
	test('old workers stopped with SIGTERM, DDL applied and runs in flight adopted by the CLI, then ours: every run completes once with FlowRuntime outputs', async () => {
		await upgradeMidRun('upt', 'SIGTERM', adoptByCli)
	}, 60000)

	test('old workers SIGKILLed, runs in flight adopted by the run API, then ours: every run completes once with FlowRuntime outputs', async () => {
		await upgradeMidRun('upk', 'SIGKILL', adoptByApi)
	}, 60000)

	// Without the adoption step: the first job of a run our worker sees adopts it (core/src/job.rs,
	// first sight: nodes with outputs done, the nodes the old workers enqueued pending), and a job
	// an old worker published for an idle row counts as pending when it arrives.
	test('old workers stopped with SIGTERM, ours start at once (no adoption step): every run completes once', async () => {
		const { counts, runs } = await upgradeMidRun('upn', 'SIGTERM', null)
		expect(counts).toEqual(perNode(runs, 1)) // nothing was half-done at a graceful stop
	}, 60000)

	test('old workers SIGKILLed, ours start at once (no adoption step): every run completes once', async () => {
		await upgradeMidRun('upn2', 'SIGKILL', null)
	}, 60000)
})

/** Our workers (concurrency 2, so the stop lands mid-run) advance runs started by startRun, are stopped with `signal`, then old workers serve. */
async function rollbackMidRun(label, signal) {
	const w = await F.world(res, label)
	const ref = await F.reference()
	const ours = [1, 2].map((i) =>
		F.spawnWorker(res, w, 'ours', `${label}-ours-${i}`, { CONCURRENCY: '2', TYPESCRIPT_COMPAT: '1' }),
	)
	await Promise.all(ours.map((o) => o.ready))
	const c = client(w)
	const runs = []
	for (let i = 0; i < RUNS; i++) {
		const tag = `${label}${i}`
		runs.push({ tag, runId: (await c.startRun(BLUEPRINT_ID, { tag })).runId })
	}
	await until(() => ranCount(ours) >= RUNS * 4, 20000, 'our workers mid-run')
	await Promise.all(ours.map((o) => o.stop(signal)))
	expect(await F.settle(w, runs, 0)).toBeLessThan(RUNS)
	const old = [F.spawnWorker(res, w, 'old', `${label}-old-a`), F.spawnWorker(res, w, 'old', `${label}-old-b`)]
	await Promise.all(old.map((o) => o.ready))
	await F.settle(w, runs, 15000)
	expect(await F.finalState(w, runs)).toEqual(runs.map((run) => F.completedOnce(run.tag, ref.outputs)))
}

describe('rollback', () => {
	// DEFECT (not in our JS; the storage of core/sql/commit.sql and the joins of core/src/job.rs):
	// the old worker reads everything from the context row, and while a run runs ours keeps each
	// node's output (`_outputs.<id>`, `<id>`) and bound input (`_inputs.<id>`) in `<ctx>_nodes`
	// (output, input), folding them into the context row only when the run ends. So the old worker
	// (1) resolves a node's input from `_outputs.<pred>` / `_inputs.<id>` that are absent (our
	// fixture's outputs become null), (2) finds the join's `context.get('_outputs.w<k>')` absent,
	// (3) ends the run at its terminal node with a payload (`context.toJSON()`) lacking every output
	// ours committed; and (4) it counts join arrivals in Redis `flowcraft:fanin:<runId>:<join>`,
	// ours in the status row's `arrivals`: a join whose branches ran on both kinds never fires.
	// Measured: SIGTERM 8/8 runs `completed` with wrong outputs; SIGKILL 5/8 `completed` wrong and
	// 3/8 `running` forever (status `arrivals` {join: 1|2}, Redis fanin 3|2). Fix needed (item 3):
	// keep ours readable while a compatibility setting is on (commit.sql also writes the node's
	// `_outputs.<id>`/`<id>` and its successors' `_inputs.<id>` into the context row; job.rs INCRs
	// the old fan-in key with each arrival, and reads it at first sight).
	test('ours stopped with SIGTERM mid-run, then old workers: every run completes once', async () => {
		await rollbackMidRun('rbt', 'SIGTERM')
	}, 60000)
	test('ours SIGKILLed mid-run, then old workers: every run completes once', async () => {
		await rollbackMidRun('rbk', 'SIGKILL')
	}, 60000)

	test('after our workers drained: old workers serve new runs on the tables ours migrated, and read what ours finished', async () => {
		const w = await F.world(res, 'rbd')
		const ref = await F.reference()
		const ours = F.spawnWorker(res, w, 'ours', 'rbd-ours') // migrates the TypeScript adapter's tables
		await ours.ready
		const before = await startWireRuns(w, 3, 'rbdours')
		expect(await F.settle(w, before, 15000)).toBe(3)
		await ours.stop('SIGTERM')
		const old = F.spawnWorker(res, w, 'old', 'rbd-old')
		await old.ready
		const after = await startWireRuns(w, 3, 'rbdold')
		expect(await F.settle(w, after, 15000)).toBe(3)
		// runs ours finished hold their whole context in the context row, as the old adapter's do
		const all = [...before, ...after]
		expect(await F.finalState(w, all)).toEqual(all.map((run) => F.completedOnce(run.tag, ref.outputs)))
		expect(F.executions([ours])).toEqual(perNode(before, 1))
		expect(F.executions([old])).toEqual(perNode(after, 1))
	}, 60000)
})

test('typescriptCompat off (the default): outputs stay in the node rows while a run runs, no TypeScript-adapter keys in Redis', async () => {
	const w = await F.world(res, 'cof')
	const ref = await F.reference()
	const ours = F.spawnWorker(res, w, 'ours', 'cof-ours')
	await ours.ready
	const c = client(w)
	const runs = [{ tag: 'cof0', runId: (await c.startRun(BLUEPRINT_ID, { tag: 'cof0' })).runId }]
	await until(() => ours.ran.some((r) => r.node.startsWith('w')), 10000, 'a branch running')
	const { rows } = await S.pgQuery(`SELECT context_data FROM ${S.quoteIdent(w.ctx)} WHERE run_id = $1`, [runs[0].runId])
	expect(Object.keys(rows[0].context_data).filter((k) => k.startsWith('_'))).toEqual([]) // `start` is done: in its row only
	expect(await F.settle(w, runs, 15000)).toBe(1)
	const redis = new IORedis(S.REDIS_URL)
	const keys = await redis.keys(`${w.prefix}flowcraft:*`)
	await redis.quit()
	expect(keys).toEqual([])
	expect(await F.finalState(w, runs)).toEqual(runs.map((run) => F.completedOnce(run.tag, ref.outputs)))
}, 60000)

test('waitForRun resolves within a second for runs the old workers finish (trigger installed by our createTables)', async () => {
	const w = await F.world(res, 'wfr')
	const old = F.spawnWorker(res, w, 'old', 'wfr-old')
	await old.ready
	const c = client(w)
	await c.listRuns({ limit: 1 }) // the run API's first call brings the old tables up to date (columns, triggers)
	const runs = await startWireRuns(w, 4, 'wfr')
	const woke = await Promise.all(
		runs.map((run) => c.waitForRun(run.runId, { timeoutMs: 20000 }).then((data) => ({ data, at: Date.now() }))),
	)
	const { rows } = await S.pgQuery(
		`SELECT run_id, extract(epoch FROM updated_at) * 1000 AS written FROM ${S.quoteIdent(w.st)} WHERE run_id = ANY($1)`,
		[runs.map((r) => r.runId)],
	)
	const ref = await F.reference()
	expect(F.executions([old])).toEqual(perNode(runs, 1)) // the old worker ran them all
	for (const [i, run] of runs.entries()) {
		expect(woke[i].data.status).toBe('completed')
		// (the safety poll is 10 s away: only the trigger's NOTIFY wakes a waiter this soon)
		expect(woke[i].at - Number(rows.find((r) => r.run_id === run.runId).written)).toBeLessThan(1000)
	}
	expect(await F.finalState(w, runs)).toEqual(runs.map((run) => F.completedOnce(run.tag, ref.outputs)))
}, 60000)

// Issue 13 item 2 (in progress elsewhere). Measured: 16–17 of 20 runs right; 2 `running` forever
// (start ran on ours, one branch on the old worker: it read `_outputs.start` from the context row,
// where ours does not keep it, output null, and counted its arrival in Redis `flowcraft:fanin`
// (1) while ours counted the other three in the status row's `arrivals` (3 of 4)); 1 `completed`
// with only `start` and `w0` (start on the old worker, then the job.rs first-sight defect above);
// 1 `completed` by the old worker with `_outputs.end: null` only (it ran `end` reading
// `_outputs.join` from the context row, and published a payload without ours' outputs).
test('mixed fleet: one old and one new worker on one queue complete every run with joins', async () => {
	const w = await F.world(res, 'mix')
	const ref = await F.reference()
	const workers = [
		F.spawnWorker(res, w, 'old', 'mix-old'),
		F.spawnWorker(res, w, 'ours', 'mix-ours', { TYPESCRIPT_COMPAT: '1' }),
	]
	await Promise.all(workers.map((x) => x.ready))
	const runs = await startWireRuns(w, 20, 'mix')
	await F.settle(w, runs, 20000)
	const state = await F.finalState(w, runs)
	expect({ correct: correctCount(state, runs, ref) }).toEqual({ correct: runs.length })
	expect(state).toEqual(runs.map((run) => F.completedOnce(run.tag, ref.outputs)))
}, 60000)
