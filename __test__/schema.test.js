'use strict'

// A schema to hand to a DBA: `flowcraft-rabbitmq sql` prints every statement the worker
// needs; with createTables: false the worker alters nothing and names what is missing.

const { execFile } = require('node:child_process')
const path = require('node:path')
const S = require('./helpers/services')
const { runsEnv, ROOT, eventually } = require('./helpers/runs-env')

const res = S.useResources()
const setup = runsEnv(res)

jest.setTimeout(60000)

const q = S.quoteIdent
const BIN = path.join(ROOT, 'bin', 'flowcraft-rabbitmq.js')

function cli(args, extraEnv = {}) {
	return new Promise((resolve) => {
		execFile(
			process.execPath,
			[BIN, ...args],
			{ env: { ...process.env, ...extraEnv }, timeout: 30000 },
			(error, stdout, stderr) => resolve({ code: error ? error.code : 0, stdout, stderr }),
		)
	})
}

async function printedDdl(env) {
	const out = await cli(['sql', '--context-table', env.ctxTable, '--status-table', env.statusTable])
	expect(out.code).toBe(0)
	return out.stdout
}

/** Columns, indexes and triggers of a table, to compare before and after. */
async function shape(table) {
	const { rows } = await S.pgQuery(
		`SELECT
		   ARRAY(SELECT attname::text FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum) AS columns,
		   ARRAY(SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = $1::regclass ORDER BY 1) AS indexes,
		   ARRAY(SELECT tgname::text FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal ORDER BY 1) AS triggers`,
		[q(table)],
	)
	return rows[0]
}

async function runOne(adapter, env) {
	const runId = env.runId('ddl')
	await adapter.startRun('quick', { testRunId: runId }, { runId })
	return adapter.waitForRun(runId, { timeoutMs: 20000 })
}

describe('flowcraft-rabbitmq sql', () => {
	test('prints every statement, idempotent: applied twice, then createTables: false works and alters nothing', async () => {
		const env = setup('ddl')
		const ddl = await printedDdl(env)
		expect(ddl).toMatch(/^BEGIN;$/m)
		expect(ddl).toMatch(/^COMMIT;$/m)
		expect(ddl).toContain(`CREATE TABLE IF NOT EXISTS ${q(env.ctxTable)}`)
		expect(ddl).toContain(`CREATE TABLE IF NOT EXISTS ${q(env.statusTable)}`)
		expect(ddl).toContain('ADD COLUMN IF NOT EXISTS pending INTEGER')
		expect(ddl).toContain(`CREATE TABLE IF NOT EXISTS ${q(`${env.ctxTable}_nodes`)}`)
		expect(ddl).toContain('CREATE UNIQUE INDEX IF NOT EXISTS')
		expect(ddl).toContain('CREATE OR REPLACE FUNCTION flowcraft_status_notify()')
		expect(ddl).toContain(`EXECUTE FUNCTION flowcraft_status_notify('${env.statusTable}')`)
		expect(ddl).toContain('CREATE TRIGGER flowcraft_status_keep_final BEFORE UPDATE')
		expect(ddl).not.toContain('created_at')
		await S.pgQuery(ddl)
		const first = await shape(env.statusTable)
		await S.pgQuery(ddl) // again: nothing fails, nothing changes
		expect(await shape(env.statusTable)).toEqual(first)
		expect(first.triggers).toEqual([
			'flowcraft_status_keep_final',
			'flowcraft_status_notify_insert',
			'flowcraft_status_notify_update',
		])

		const worker = env.adapter({ createTables: false })
		await worker.start()
		expect((await runOne(worker, env)).status).toBe('completed')
		expect(await shape(env.statusTable)).toEqual(first)
	})

	test('the DDL applied over the README table of an older version adds the bookkeeping; the JSON form carries it too', async () => {
		const env = setup('ddl_up')
		await S.createContextTable(env.ctxTable)
		await S.createStatusTable(env.statusTable)
		const json = JSON.parse(
			(await cli(['sql', '--json'], { FLOWCRAFT_CONTEXT_TABLE: env.ctxTable, FLOWCRAFT_STATUS_TABLE: env.statusTable }))
				.stdout,
		)
		expect(json).toMatchObject({ contextTable: env.ctxTable, statusTable: env.statusTable })
		expect(json.sql).toBe(await printedDdl(env))
		await S.pgQuery(json.sql)
		const worker = env.adapter({ createTables: false })
		await worker.start()
		expect((await runOne(worker, env)).status).toBe('completed')
	})

	test('tables in a schema: the functions live in that schema, and createTables: false then finds everything', async () => {
		const env = setup('ddl_sch')
		const schema = await res.schema('ddl')
		const names = { contextTableName: `${schema}.ctx`, statusTableName: `${schema}.st` }
		const out = await cli(['sql', '--context-table', names.contextTableName, '--status-table', names.statusTableName])
		expect(out.stdout).toContain(`CREATE OR REPLACE FUNCTION ${q(schema)}.flowcraft_status_notify()`)
		await S.pgQuery(out.stdout)
		const worker = env.adapter({ ...names, createTables: false })
		await worker.start()
		const runId = env.runId('sch')
		await worker.startRun('quick', { testRunId: runId }, { runId })
		expect((await worker.waitForRun(runId, { timeoutMs: 20000 })).status).toBe('completed')
		const { rows } = await S.pgQuery(
			`SELECT p.proname::text AS name FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1 ORDER BY 1`,
			[schema],
		)
		expect(rows.map((r) => r.name)).toEqual(['flowcraft_status_keep_final', 'flowcraft_status_notify'])
	})

	test('a bad table name is a usage error', async () => {
		const out = await cli(['sql', '--status-table', 'no such'])
		expect(out.code).toBe(2)
		expect(out.stderr).toMatch(/--status-table must be a table name.*\[ERR_INVALID_TABLE_NAME\]/)
	})
})

describe('createTables: false alters nothing', () => {
	test('tables without the bookkeeping columns fail start() and the run API with ERR_COLUMN_NOT_FOUND naming them and the command', async () => {
		const env = setup('nocol')
		await S.createContextTable(env.ctxTable)
		await S.createStatusTable(env.statusTable) // the four columns of the README's / Flowcraft's table
		// the node rows' table is in place, so the status table's columns are what is missing
		await S.pgQuery(
			`CREATE TABLE ${q(`${env.ctxTable}_nodes`)} (run_id TEXT NOT NULL, node_id TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'idle', ` +
				`output JSONB, route TEXT[], bound BOOLEAN NOT NULL DEFAULT false, input JSONB, ` +
				"joined TEXT[] NOT NULL DEFAULT '{}', joined_now TEXT[], fired_by TEXT, PRIMARY KEY (run_id, node_id))",
		)
		const before = await shape(env.statusTable)
		const command = `npx flowcraft-rabbitmq sql --context-table ${env.ctxTable} --status-table ${env.statusTable}`
		const err = await S.captureError(() => env.adapter({ createTables: false }).start())
		expect(err.code).toBe('ERR_COLUMN_NOT_FOUND')
		for (const c of ['blueprint_id', 'error', 'idempotency_key', 'deliveries', 'pending'])
			expect(err.message).toContain(`${env.statusTable}.${c}`)
		expect(err.message).not.toContain(`${env.statusTable}.status,`)
		expect(err.message).toContain(command)
		const runErr = await S.captureError(() => env.adapter({ createTables: false }).getRun('r1'))
		expect(runErr.code).toBe('ERR_COLUMN_NOT_FOUND')
		expect(await shape(env.statusTable)).toEqual(before) // no ALTER ran
	})

	test('one dropped column names just that column; a dropped unique index is ERR_INDEX_NOT_FOUND', async () => {
		const env = setup('onecol')
		await S.pgQuery(await printedDdl(env))
		await S.pgQuery(`ALTER TABLE ${q(env.statusTable)} DROP COLUMN pending`)
		const err = await S.captureError(() => env.adapter({ createTables: false }).start())
		expect(err.code).toBe('ERR_COLUMN_NOT_FOUND')
		expect(err.message).toMatch(
			new RegExp(`missing column\\(s\\) ${env.statusTable}\\.pending, and with createTables: false`),
		)
		expect(err.message).toContain('npx flowcraft-rabbitmq sql')
		expect((await shape(env.statusTable)).columns).not.toContain('pending')

		await S.pgQuery(`ALTER TABLE ${q(env.statusTable)} ADD COLUMN pending INTEGER`)
		await S.pgQuery(`DROP INDEX ${q(`${env.statusTable}_idempotency_key`)}`)
		const idx = await S.captureError(() => env.adapter({ createTables: false }).start())
		expect(idx.code).toBe('ERR_INDEX_NOT_FOUND')
		expect(idx.message).toContain(`${env.statusTable} (idempotency_key)`)

		// createTables: true repairs it all
		const worker = env.adapter()
		await worker.start()
		expect((await runOne(worker, env)).status).toBe('completed')
		expect((await shape(env.statusTable)).columns).toContain('pending')
	})
})

describe("the node table's index of rows that wait", () => {
	test('an index over state (older versions) is named missing, then replaced; running subflows get their wake_at; node rows are then updated in place (HOT)', async () => {
		const env = setup('waiting')
		const nodes = `${env.ctxTable}_nodes`
		await S.pgQuery(await printedDdl(env))
		// the node table as an older version left it
		await S.pgQuery(`DROP INDEX ${q(`${nodes}_waiting`)}`)
		await S.pgQuery(
			`CREATE INDEX ${q(`${nodes}_waits`)} ON ${q(nodes)} (wake_at) WHERE state IN ('sleeping', 'woken', 'subflow')`,
		)
		await S.pgQuery(`INSERT INTO ${q(nodes)} (run_id, node_id, state) VALUES ('old-run', 'sub', 'subflow')`)

		const err = await S.captureError(() => env.adapter({ createTables: false }).start())
		expect(err.code).toBe('ERR_INDEX_NOT_FOUND')
		expect(err.message).toContain(`${nodes} (wake_at) WHERE wake_at IS NOT NULL`)
		expect(err.message).toContain('npx flowcraft-rabbitmq sql')

		const worker = env.adapter()
		await worker.start()
		expect((await shape(nodes)).indexes).toEqual(
			[q(`${nodes}_pkey`), q(`${nodes}_waiting`)].map((n) => n.replace(/"/g, '')),
		)
		const sub = await S.pgQuery(`SELECT wake_at = 'infinity' AS waits FROM ${q(nodes)} WHERE run_id = 'old-run'`)
		expect(sub.rows[0].waits).toBe(true)

		const runId = env.runId('hot')
		await worker.startRun('walk', { testRunId: runId }, { runId })
		expect((await worker.waitForRun(runId, { timeoutMs: 20000 })).status).toBe('completed')
		// every commit changes its rows' state: with an index over state none of it would be HOT
		let stats
		await eventually(
			async () => {
				;({
					rows: [stats],
				} = await S.pgQuery(
					'SELECT n_tup_upd::int AS updates, n_tup_hot_upd::int AS hot FROM pg_stat_user_tables WHERE relid = $1::regclass',
					[q(nodes)],
				))
				return stats.updates >= 6
			},
			20000,
			"the node table's update counts reported",
		)
		expect(stats.hot).toBeGreaterThanOrEqual(stats.updates / 2)
	})
})
