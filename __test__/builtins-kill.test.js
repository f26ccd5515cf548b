'use strict'
/**
 * Built-in nodes under kill -9 (issue 10): worker processes are SIGKILLed mid-loop and while
 * runs sleep; fresh workers finish every run with FlowRuntime's outputs, no iteration applied
 * twice or skipped (each iteration appends to the context once), no sleep lost.
 * Workers are diff/worker-process.js (the README's worker) on this test's queue and tables.
 */
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const S = require('./helpers/services')
const { byName } = require('./diff/scenarios')
const { outputsOf } = require('./diff/client')
const { place: placeFor, adapterAt, spawnWorker: spawnProcess, until } = require('./helpers/run-place')

const res = S.useResources()
const LOG_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'builtins-kill-'))

const place = () => placeFor(res, 'bk')
const WORKER = path.join(__dirname, 'diff', 'worker-process.js')
const spawnWorker = (where, scenario, label) =>
	spawnProcess(res, { script: WORKER, where, env: { SCENARIOS: scenario }, label, logDir: LOG_DIR })

/** A client (never started) on the same queue and tables, for startRun / getRun / waitForRun. */
function clientFor(where, scenario) {
	const { blueprint } = byName(scenario)
	return adapterAt(res, where, { blueprints: { [blueprint.id]: blueprint }, registry: {} })
}

async function kill9(child) {
	child.kill('SIGKILL')
	await child.exited
}

async function finishAll(client, runIds, scenario) {
	const { intended, compareContext = [] } = byName(scenario)
	for (const runId of runIds) {
		const result = await client.waitForRun(runId, { timeoutMs: 60000 })
		expect({ runId, status: result.status }).toEqual({ runId, status: intended.status })
		const context = result.payload.context
		expect(outputsOf(context)).toEqual(intended.outputs)
		for (const key of compareContext)
			expect({ runId, [key]: context[key] }).toEqual({ runId, [key]: intended.context[key] })
	}
}

test('workers killed mid-loop: every run ends as FlowRuntime ends it, each iteration applied once', async () => {
	const scenario = 'loop-slow-body'
	const where = place()
	const workers = [spawnWorker(where, scenario, 'loop-a'), spawnWorker(where, scenario, 'loop-b')]
	await Promise.all(workers.map((w) => w.ready))
	const client = clientFor(where, scenario)
	const runIds = []
	for (let i = 0; i < 6; i++) runIds.push((await client.startRun(byName(scenario).blueprint.id, {})).runId)
	// in the middle of the loops: kill one worker, later the other, then bring a fresh one
	await until(async () => ((await client.getRun(runIds[0])).context.i ?? 0) >= 2, 20000, 'second iteration')
	await kill9(workers[0])
	await until(async () => ((await client.getRun(runIds[5])).context.i ?? 0) >= 4, 30000, 'fourth iteration')
	await kill9(workers[1])
	const fresh = spawnWorker(where, scenario, 'loop-c')
	await fresh.ready
	await finishAll(client, runIds, scenario)
}, 120000)

test('every worker killed while runs sleep: fresh workers wake them and finish them', async () => {
	const scenario = 'sleep-then-join'
	const where = place()
	const workers = [spawnWorker(where, scenario, 'sleep-a'), spawnWorker(where, scenario, 'sleep-b')]
	await Promise.all(workers.map((w) => w.ready))
	const client = clientFor(where, scenario)
	const runIds = []
	for (let i = 0; i < 6; i++) runIds.push((await client.startRun(byName(scenario).blueprint.id, {})).runId)
	const sleeping = async (runId) =>
		(await client.getRun(runId)).nodes.find((n) => n.id === 'napLong').state === 'sleeping'
	await until(async () => (await Promise.all(runIds.map(sleeping))).every(Boolean), 20000, 'all asleep')
	await Promise.all(workers.map(kill9))
	await new Promise((r) => setTimeout(r, 2500)) // every wake-up time passes with no worker alive
	const fresh = spawnWorker(where, scenario, 'sleep-c')
	await fresh.ready
	await finishAll(client, runIds, scenario)
}, 120000)

test('workers killed mid-batch: every item runs to one committed result, every run gathers them all', async () => {
	const scenario = 'batch-wide'
	const where = place()
	const workers = [spawnWorker(where, scenario, 'batch-a'), spawnWorker(where, scenario, 'batch-b')]
	await Promise.all(workers.map((w) => w.ready))
	const client = clientFor(where, scenario)
	const runIds = []
	const { blueprint, initialContext } = byName(scenario)
	for (let i = 0; i < 8; i++) runIds.push((await client.startRun(blueprint.id, initialContext)).runId)
	// kill both workers while items are in flight (some runs' items done, others not)
	const itemsDone = async () => {
		const r = await S.pgQuery(
			`SELECT count(*)::int AS n FROM ${S.quoteIdent(`${where.ctx}_nodes`)} WHERE spec IS NOT NULL AND state = 'done'`,
		)
		return r.rows[0].n
	}
	await until(async () => (await itemsDone()) >= 60, 20000, 'first items done')
	await kill9(workers[0])
	await until(async () => (await itemsDone()) >= 200, 20000, 'more items done')
	await kill9(workers[1])
	expect(await itemsDone()).toBeLessThan(8 * 60)
	const fresh = spawnWorker(where, scenario, 'batch-c')
	await fresh.ready
	await finishAll(client, runIds, scenario)
	// no item lost, none added twice: 60 item rows per run
	const rows = await S.pgQuery(
		`SELECT run_id, count(*)::int AS n FROM ${S.quoteIdent(`${where.ctx}_nodes`)} WHERE spec IS NOT NULL GROUP BY run_id`,
	)
	expect(rows.rows.map((r) => r.n)).toEqual(runIds.map(() => 60))
}, 120000)
