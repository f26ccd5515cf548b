'use strict'

// Statuses written by any process (an older worker, a script): the status table's
// trigger announces them, so waitForRun wakes at once; without the trigger it polls.
// A final status, once written, is never replaced, whoever tries.

const { execFileSync } = require('node:child_process')
const path = require('node:path')
const S = require('./helpers/services')
const { runsEnv, eventually, queueDepth, recordingLogger, ROOT } = require('./helpers/runs-env')

const res = S.useResources()
const setup = runsEnv(res)

jest.setTimeout(60000)

const q = S.quoteIdent
const BIN = path.join(ROOT, 'bin', 'flowcraft-rabbitmq.js')

/** The DDL the CLI prints for this test's tables. */
function printedDdl(env) {
	return execFileSync(
		process.execPath,
		[BIN, 'sql', '--context-table', env.ctxTable, '--status-table', env.statusTable],
		{
			encoding: 'utf8',
		},
	)
}

/** A completed status as another writer (Flowcraft's TypeScript adapter) writes it. */
function completedBy(writer) {
	return { status: 'completed', payload: { status: 'completed', context: { writer } } }
}

/** A client adapter (no worker: the run's jobs wait in the queue) with a started run. */
async function startedRun(env, options = {}) {
	const client = env.adapter(options)
	const runId = env.runId('w')
	await client.startRun('quick', { testRunId: runId }, { runId })
	return { client, runId }
}

/** Writes a status with a raw UPDATE, as another process would; resolves with the time it committed. */
async function rawFinish(env, runId, data = completedBy('raw sql')) {
	await S.pgQuery(
		`UPDATE ${q(env.statusTable)} SET status = $2, status_data = $3, updated_at = now() WHERE run_id = $1`,
		[runId, data.status, data],
	)
	return Date.now()
}

async function statusRow(env, runId) {
	const { rows } = await S.pgQuery(`SELECT status, status_data, error FROM ${q(env.statusTable)} WHERE run_id = $1`, [
		runId,
	])
	return rows[0]
}

describe('statuses from any writer', () => {
	test('waitForRun wakes within a second for a final status written by raw SQL', async () => {
		const env = setup('anyw')
		const { client, runId } = await startedRun(env)
		const waiting = client.waitForRun(runId, { timeoutMs: 20000 }).then((data) => ({ data, at: Date.now() }))
		await new Promise((r) => setTimeout(r, 300)) // waitForRun is listening and has read 'running'
		const written = await rawFinish(env, runId)
		const { data, at } = await waiting
		expect(data).toEqual(completedBy('raw sql'))
		// the safety poll is 10 s away: only the trigger's NOTIFY can wake it this soon
		expect(at - written).toBeLessThan(1000)
	})

	test('a run failed or cancelled by a raw INSERT ... ON CONFLICT (an upsert) wakes waitForRun too', async () => {
		const env = setup('anyw_up')
		const { client, runId } = await startedRun(env)
		const waiting = client.waitForRun(runId, { timeoutMs: 20000 }).then((data) => ({ data, at: Date.now() }))
		await new Promise((r) => setTimeout(r, 300))
		await S.pgQuery(
			`INSERT INTO ${q(env.statusTable)} (run_id, status, status_data, updated_at) VALUES ($1, 'cancelled', $2, now())
			 ON CONFLICT (run_id) DO UPDATE SET status = EXCLUDED.status, status_data = EXCLUDED.status_data, updated_at = now()`,
			[runId, { status: 'cancelled', reason: 'by hand' }],
		)
		const written = Date.now()
		const { data, at } = await waiting
		expect(data).toEqual({ status: 'cancelled', reason: 'by hand' })
		expect(at - written).toBeLessThan(1000)
	})

	test('our own completion is announced once, though both our statement and the trigger notify', async () => {
		const env = setup('anyw_once')
		const worker = env.adapter()
		await worker.start()
		const { Client } = require('pg')
		const listener = new Client({ connectionString: S.POSTGRES_URL })
		await listener.connect()
		res.onCleanup(() => listener.end())
		const seen = []
		listener.on('notification', (n) => seen.push(n.payload))
		await listener.query('LISTEN flowcraft_run_finished')
		const runId = env.runId('once')
		await worker.startRun('quick', { testRunId: runId }, { runId })
		expect((await worker.waitForRun(runId, { timeoutMs: 20000 })).status).toBe('completed')
		await new Promise((r) => setTimeout(r, 300)) // any second notification would be here by now
		expect(seen.filter((p) => p === `${env.statusTable}\n${runId}`)).toHaveLength(1)
	})

	test('without the trigger (tables made by hand), waitForRun still sees another writer within a poll', async () => {
		const env = setup('anyw_poll')
		await S.pgQuery(printedDdl(env))
		for (const t of ['flowcraft_status_notify_insert', 'flowcraft_status_notify_update'])
			await S.pgQuery(`DROP TRIGGER ${t} ON ${q(env.statusTable)}`)
		const { client, runId } = await startedRun(env, { createTables: false })
		const waiting = client.waitForRun(runId, { timeoutMs: 20000 }).then((data) => ({ data, at: Date.now() }))
		await new Promise((r) => setTimeout(r, 300))
		const written = await rawFinish(env, runId)
		const { data, at } = await waiting
		expect(data).toEqual(completedBy('raw sql'))
		expect(at - written).toBeLessThan(2000) // one poll (1 s) and a read
		// nothing was re-created behind the DBA's back
		const { rows } = await S.pgQuery(
			`SELECT tgname FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname LIKE 'flowcraft_status_notify%'`,
			[q(env.statusTable)],
		)
		expect(rows).toEqual([])
		// and a worker on such tables says so once, at start
		const logger = recordingLogger()
		await env.adapter({ createTables: false, logger }).start()
		const warnings = logger.lines.filter((l) => l.level === 'warn').map((l) => l.message)
		expect(warnings).toEqual([expect.stringMatching(/lacks the adapter's triggers.*npx flowcraft-rabbitmq sql/)])
	})
})

describe('a final status is never replaced', () => {
	test('a raw UPDATE or upsert changing a completed run keeps its status and status_data; other columns still change', async () => {
		const env = setup('final')
		const worker = env.adapter()
		await worker.start()
		const runId = env.runId('fin')
		await worker.startRun('quick', { testRunId: runId }, { runId })
		const done = await worker.waitForRun(runId, { timeoutMs: 20000 })
		expect(done.status).toBe('completed')
		const before = await statusRow(env, runId)

		await rawFinish(env, runId, { status: 'failed', reason: 'a late writer' })
		await S.pgQuery(
			`INSERT INTO ${q(env.statusTable)} (run_id, status, status_data) VALUES ($1, 'completed', $2)
			 ON CONFLICT (run_id) DO UPDATE SET status = EXCLUDED.status, status_data = EXCLUDED.status_data`,
			[runId, completedBy('a redelivered terminal job')],
		)
		await S.pgQuery(`UPDATE ${q(env.statusTable)} SET error = 'noted' WHERE run_id = $1`, [runId])
		const after = await statusRow(env, runId)
		expect(after.status).toBe('completed')
		expect(after.status_data).toEqual(before.status_data)
		expect(after.error).toBe('noted')
		expect(await worker.waitForRun(runId, { timeoutMs: 1000 })).toEqual(done)
		// and by us: cancelling a completed run changes nothing
		expect(await worker.cancelRun(runId, 'too late')).toBe(false)
		expect((await statusRow(env, runId)).status_data).toEqual(before.status_data)
	})

	test('a run finished by another writer takes no further commit of ours', async () => {
		const env = setup('final_ours')
		const { runId } = await startedRun(env)
		await rawFinish(env, runId, { status: 'cancelled', reason: 'by the other worker' })
		const worker = env.adapter()
		await worker.start() // now consumes the run's start job
		await eventually(async () => (await queueDepth(env.queue)) === 0, 10000, 'the start job consumed')
		await new Promise((r) => setTimeout(r, 500))
		const row = await statusRow(env, runId)
		expect(row.status).toBe('cancelled')
		expect(row.status_data).toEqual({ status: 'cancelled', reason: 'by the other worker' })
		const ctx = await S.readContextRow(env.ctxTable, runId)
		expect(ctx['_outputs.a']).toBeUndefined()
	})
})
