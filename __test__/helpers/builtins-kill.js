'use strict'
/**
 * Built-in nodes under kill -9 (issue 10), shared by __test__/builtins-kill.test.js (the short
 * version, in `npm test`) and the chaos suite (chaos/builtins-kill.js, more runs, rows in
 * chaos/last-run.md). Not a test file, and free of jest: each case returns what it saw, and
 * its caller asserts (jest) or reports (chaos).
 *
 *   const r = await killCases.loop(res, { logDir, runs })
 *
 * `res` is a resource tracker (helpers/services.js `useResources()` in jest,
 * `resourceTracker()` in the chaos suite): the case's queue, tables and worker processes are
 * its, removed by its cleanup. Workers are diff/worker-process.js (the README's worker) running
 * one scenario of diff/builtins.js; a client adapter (never started) starts the runs and waits
 * for them. Each case SIGKILLs workers while the runs are in the middle of the built-in, then
 * starts a fresh worker, and checks every run against the scenario's `intended` (FlowRuntime's
 * result, checked by differential.test.js):
 *   loop   loop-slow-body: killed at iteration 2 and 4; each iteration appends its number to
 *          `trail` once: an iteration applied twice shows as a repeated number, a lost one as
 *          a missing number
 *   sleep  sleep-then-join: every worker killed while every run sleeps; wake-up times pass with
 *          no worker alive; nothing lost
 *   batch  batch-wide (60 items): killed while items are in flight; every run has 60 item rows
 *          (none lost, none added twice) and gathers every item once, in order
 *
 * → { name, scenario, runs, completed, kills, restarts, lost: [text], doubled: [text],
 *     problems: [text] (lost, doubled and every other mismatch), deadLetters, redeliveries,
 *     seconds }
 */
const path = require('node:path')
const { isDeepStrictEqual } = require('node:util')
const S = require('./services')
const { byName } = require('../diff/scenarios')
const { outputsOf } = require('../diff/client')
const { place, adapterAt, spawnWorker: spawnProcess, until } = require('./run-place')

const WORKER = path.join(__dirname, '..', 'diff', 'worker-process.js')
const show = (v) => JSON.stringify(v) ?? 'undefined'

/** The state of one case: its place, workers, client and the tallies of its result. */
function caseState(res, scenario, { logDir, label }) {
	const where = place(res, label)
	const { blueprint } = byName(scenario)
	const t0 = Date.now()
	const state = {
		where,
		scenario,
		kills: 0,
		restarts: 0,
		lost: [],
		doubled: [],
		problems: [],
		spawn: (name) =>
			spawnProcess(res, { script: WORKER, where, env: { SCENARIOS: scenario }, label: `${label}-${name}`, logDir }),
		client: adapterAt(res, where, { blueprints: { [blueprint.id]: blueprint }, registry: {} }),
		async kill9(child) {
			child.kill('SIGKILL')
			await child.exited
			state.kills += 1
		},
		/** A fresh worker in place of the killed ones. */
		async restart(name) {
			const fresh = state.spawn(name)
			await fresh.ready
			state.restarts += 1
			return fresh
		},
		nodeRows: S.quoteIdent(`${where.ctx}_nodes`),
		seconds: () => (Date.now() - t0) / 1000,
	}
	return state
}

/** Waits for every run and compares it with the scenario's intended result; fills the tallies. */
async function finishAll(state, runIds, extraCheck = () => {}) {
	const { intended, compareContext = [] } = byName(state.scenario)
	let completed = 0
	// all at once: one deadline for every run (a lost run costs 60 s, not 60 s each)
	const results = await Promise.all(
		runIds.map((runId) => state.client.waitForRun(runId, { timeoutMs: 60000 }).catch((e) => ({ error: e }))),
	)
	for (const [i, runId] of runIds.entries()) {
		const result = results[i]
		if (result.error) {
			state.lost.push(`run ${runId} did not finish within 60 s (${result.error.code ?? result.error.message})`)
			continue
		}
		if (result.status !== intended.status) {
			state.lost.push(`run ${runId} ended ${result.status}, not ${intended.status}: ${result.reason ?? ''}`)
			continue
		}
		completed += 1
		const context = result.payload.context
		const outputs = outputsOf(context)
		for (const key of Object.keys(intended.outputs))
			if (!Object.hasOwn(outputs, key)) state.lost.push(`run ${runId}: no ${key}`)
		if (!isDeepStrictEqual(outputs, intended.outputs))
			state.problems.push(`run ${runId}: outputs ${show(outputs)}, FlowRuntime's ${show(intended.outputs)}`)
		for (const key of compareContext)
			if (!isDeepStrictEqual(context[key], intended.context[key]))
				state.problems.push(
					`run ${runId}: context ${key} = ${show(context[key])}, FlowRuntime's ${show(intended.context[key])}`,
				)
		extraCheck(runId, context)
	}
	return completed
}

/** Dead letters in the case's `<queue>.dead` (none expected) and redeliveries its status rows counted. */
async function afterwards(state, runIds) {
	const amqplib = require('amqplib')
	const conn = await amqplib.connect(S.RABBITMQ_URL)
	let deadLetters = 0
	try {
		const ch = await conn.createChannel()
		ch.on('error', () => {})
		deadLetters = (await ch.checkQueue(`${state.where.queue}.dead`)).messageCount
		await ch.close()
	} catch {
		/* no dead-letter queue: nothing was dead-lettered */
	} finally {
		await conn.close().catch(() => {})
	}
	const r = await S.pgQuery(
		`SELECT COALESCE(sum(d.value::bigint), 0)::int AS n FROM ${S.quoteIdent(state.where.st)} s,
		 jsonb_each_text(COALESCE(s.deliveries, '{}'::jsonb)) d WHERE s.run_id = ANY($1)`,
		[runIds],
	)
	return { deadLetters, redeliveries: r.rows[0].n }
}

async function report(state, name, runIds, completed) {
	const { deadLetters, redeliveries } = await afterwards(state, runIds)
	if (deadLetters) state.lost.push(`${deadLetters} jobs dead-lettered`)
	return {
		name,
		scenario: state.scenario,
		runs: runIds.length,
		completed,
		kills: state.kills,
		restarts: state.restarts,
		lost: state.lost,
		doubled: state.doubled,
		problems: [...state.lost, ...state.doubled, ...state.problems],
		deadLetters,
		redeliveries,
		seconds: state.seconds(),
	}
}

/** Workers killed mid-loop (at iteration 2, and 4): each iteration applied once. */
async function loopCase(res, { logDir, runs = 6 }) {
	const state = caseState(res, 'loop-slow-body', { logDir, label: 'bkloop' })
	const { blueprint } = byName(state.scenario)
	const workers = [state.spawn('a'), state.spawn('b')]
	await Promise.all(workers.map((w) => w.ready))
	const runIds = []
	for (let i = 0; i < runs; i++) runIds.push((await state.client.startRun(blueprint.id, {})).runId)
	const iteration = async (runId) => (await state.client.getRun(runId)).context.i ?? 0
	await until(async () => (await iteration(runIds[0])) >= 2, 20000, 'second iteration')
	await state.kill9(workers[0])
	await until(async () => (await iteration(runIds[runIds.length - 1])) >= 4, 30000, 'fourth iteration')
	await state.kill9(workers[1])
	await state.restart('c')
	const iterations = byName(state.scenario).intended.context.trail
	const completed = await finishAll(state, runIds, (runId, context) => {
		const trail = context.trail ?? []
		const twice = [...new Set(trail.filter((n, i) => trail.indexOf(n) !== i))]
		if (twice.length) state.doubled.push(`run ${runId}: iterations ${twice.join(', ')} applied twice`)
		const missing = iterations.filter((n) => !trail.includes(n))
		if (missing.length) state.lost.push(`run ${runId}: iterations ${missing.join(', ')} lost`)
	})
	return report(state, 'kill -9 mid-loop', runIds, completed)
}

/** Every worker killed while every run sleeps; wake-up times pass with no worker alive. */
async function sleepCase(res, { logDir, runs = 6 }) {
	const state = caseState(res, 'sleep-then-join', { logDir, label: 'bksleep' })
	const { blueprint } = byName(state.scenario)
	const workers = [state.spawn('a'), state.spawn('b')]
	await Promise.all(workers.map((w) => w.ready))
	const runIds = []
	for (let i = 0; i < runs; i++) runIds.push((await state.client.startRun(blueprint.id, {})).runId)
	const sleeping = async (runId) =>
		(await state.client.getRun(runId)).nodes.find((n) => n.id === 'napLong').state === 'sleeping'
	await until(async () => (await Promise.all(runIds.map(sleeping))).every(Boolean), 20000, 'all asleep')
	await Promise.all(workers.map((w) => state.kill9(w)))
	await new Promise((r) => setTimeout(r, 2500)) // every wake-up time passes with no worker alive
	await state.restart('c')
	const completed = await finishAll(state, runIds)
	return report(state, 'kill -9 while runs sleep', runIds, completed)
}

/** Workers killed while batch items are in flight: no item lost or run twice to a second result. */
async function batchCase(res, { logDir, runs = 8 }) {
	const state = caseState(res, 'batch-wide', { logDir, label: 'bkbatch' })
	const { blueprint, initialContext } = byName(state.scenario)
	const items = initialContext.rows.length
	const workers = [state.spawn('a'), state.spawn('b')]
	await Promise.all(workers.map((w) => w.ready))
	const runIds = []
	for (let i = 0; i < runs; i++) runIds.push((await state.client.startRun(blueprint.id, initialContext)).runId)
	const itemsDone = async () => {
		const r = await S.pgQuery(
			`SELECT count(*)::int AS n FROM ${state.nodeRows} WHERE spec IS NOT NULL AND state = 'done'`,
		)
		return r.rows[0].n
	}
	// kill both workers while items are in flight (some runs' items done, others not)
	await until(async () => (await itemsDone()) >= Math.ceil((runs * items) / 8), 20000, 'first items done')
	await state.kill9(workers[0])
	await until(async () => (await itemsDone()) >= Math.ceil((runs * items) / 2.4), 20000, 'more items done')
	await state.kill9(workers[1])
	const doneAtKill = await itemsDone()
	if (doneAtKill >= runs * items)
		state.problems.push(`the kills came too late: all ${doneAtKill} items were done before the second one`)
	await state.restart('c')
	const completed = await finishAll(state, runIds)
	// no item lost, none added twice: `items` item rows per run
	const rows = await S.pgQuery(
		`SELECT run_id, count(*)::int AS n FROM ${state.nodeRows} WHERE spec IS NOT NULL AND run_id = ANY($1) GROUP BY run_id`,
		[runIds],
	)
	const counts = new Map(rows.rows.map((r) => [r.run_id, r.n]))
	for (const runId of runIds) {
		const n = counts.get(runId) ?? 0
		if (n < items) state.lost.push(`run ${runId}: ${n} item rows, not ${items}`)
		if (n > items) state.doubled.push(`run ${runId}: ${n} item rows, not ${items}`)
	}
	return report(state, 'kill -9 mid-batch', runIds, completed)
}

const killCases = { loop: loopCase, sleep: sleepCase, batch: batchCase }

module.exports = { killCases }
