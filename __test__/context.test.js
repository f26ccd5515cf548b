'use strict'

// PostgresContext against a real PostgreSQL: every method, hostile keys,
// table-name validation, atomic patch, concurrency, every way to pass the
// connection, connection sharing and connection errors.

const pg = require('pg')
const { PostgresContext } = require('..')
const svc = require('./helpers/services')

const res = svc.useResources()

let runSeq = 0
const newRunId = () => `run-${process.pid}-${Date.now()}-${++runSeq}`

/** A context on a fresh table of this test, built from POSTGRES_URL. */
async function freshContext(runId = newRunId()) {
	const table = await res.contextTable('ctx')
	const ctx = new PostgresContext(runId, { client: svc.POSTGRES_URL, tableName: table })
	return { ctx, table, runId }
}

// Keys that would break SQL or JSON paths built from strings. Each must be a
// flat top-level key of context_data, stored and read back exactly.
const HOSTILE_KEYS = [
	`a'b`,
	`x"); DROP TABLE t; --`,
	`'; DROP TABLE t; --`,
	'{}',
	'{a,b}',
	'a,b',
	'a.b.c',
	'_outputs.node-1',
	'ключ',
	'🔑',
	'$1',
	'$2::text',
	'?',
	'a\\b',
	'line\nbreak',
	'  spaced  ',
	'',
]

describe('PostgresContext basics', () => {
	test('type is "async"', async () => {
		const { ctx } = await freshContext()
		expect(ctx.type).toBe('async')
	})

	test('a run with no row: get -> undefined, has -> false, delete -> false, toJSON -> {}', async () => {
		const { ctx, table, runId } = await freshContext()
		await expect(ctx.get('missing')).resolves.toBeUndefined()
		await expect(ctx.has('missing')).resolves.toBe(false)
		await expect(ctx.delete('missing')).resolves.toBe(false)
		await expect(ctx.toJSON()).resolves.toEqual({})
		// reading must not create a row
		expect(await svc.readContextRow(table, runId)).toBeUndefined()
	})

	test('set then get/has; the row holds the key at the top level of context_data', async () => {
		const { ctx, table, runId } = await freshContext()
		await ctx.set('greeting', 'hello')
		await expect(ctx.get('greeting')).resolves.toBe('hello')
		await expect(ctx.has('greeting')).resolves.toBe(true)
		expect(await svc.readContextRow(table, runId)).toEqual({ greeting: 'hello' })
		// a missing key in an existing row
		await expect(ctx.get('other')).resolves.toBeUndefined()
		await expect(ctx.has('other')).resolves.toBe(false)
		await expect(ctx.delete('other')).resolves.toBe(false)
	})

	test('set overwrites; other keys are kept', async () => {
		const { ctx, table, runId } = await freshContext()
		await ctx.set('a', 1)
		await ctx.set('b', { x: 1 })
		await ctx.set('a', [1, 2])
		await ctx.set('b', 'replaced, not merged')
		expect(await svc.readContextRow(table, runId)).toEqual({ a: [1, 2], b: 'replaced, not merged' })
	})

	test('delete returns true only when the key existed, and removes only that key', async () => {
		const { ctx, table, runId } = await freshContext()
		await ctx.set('a', 1)
		await ctx.set('b', 2)
		await expect(ctx.delete('a')).resolves.toBe(true)
		await expect(ctx.delete('a')).resolves.toBe(false)
		await expect(ctx.has('a')).resolves.toBe(false)
		await expect(ctx.get('a')).resolves.toBeUndefined()
		expect(await svc.readContextRow(table, runId)).toEqual({ b: 2 })
	})

	test('null values are stored as null: get -> null (not undefined), has -> true, delete -> true', async () => {
		const { ctx, table, runId } = await freshContext()
		await ctx.set('nothing', null)
		await expect(ctx.get('nothing')).resolves.toBeNull()
		await expect(ctx.has('nothing')).resolves.toBe(true)
		expect(await ctx.toJSON()).toEqual({ nothing: null })
		const row = await svc.readContextRow(table, runId)
		expect(Object.hasOwn(row, 'nothing')).toBe(true)
		expect(row.nothing).toBeNull()
		await expect(ctx.delete('nothing')).resolves.toBe(true)
		await expect(ctx.has('nothing')).resolves.toBe(false)
	})

	test('nested values are stored whole and read back equal', async () => {
		const { ctx } = await freshContext()
		const nested = {
			user: { id: 7, profile: { name: 'Ada', tags: ['x', 'y'], address: { city: 'Z', geo: [1.5, -2.25] } } },
			list: [{ a: 1 }, [2, [3, [4]]], null, true],
			empty: { obj: {}, arr: [] },
		}
		await ctx.set('nested', nested)
		await expect(ctx.get('nested')).resolves.toEqual(nested)
		// a nested set does not touch sibling keys
		await ctx.set('sibling', 1)
		await expect(ctx.get('nested')).resolves.toEqual(nested)
	})

	test('values round-trip exactly (numbers, booleans, strings with quotes, arrays, deep objects)', async () => {
		const { ctx } = await freshContext()
		let deep = { leaf: 'bottom' }
		for (let i = 0; i < 50; i++) deep = { level: i, child: deep }
		const values = {
			zero: 0,
			negative: -42,
			fraction: 0.1,
			negFraction: -1234.5678,
			maxSafe: Number.MAX_SAFE_INTEGER,
			minSafe: Number.MIN_SAFE_INTEGER,
			tiny: 5e-324,
			huge: 1.7976931348623157e308,
			expo: 1e21,
			t: true,
			f: false,
			emptyString: '',
			quotes: `it's "quoted" \`back\``,
			sql: `'); DROP TABLE t; --`,
			backslash: 'C:\\path\\to\\file \\" \\n',
			controls: 'tab\tnewline\nreturn\r bell\u0007',
			unicode: 'ключ 🔑 日本語 \u00e9 \u2028\u2029',
			jsonish: '{"a":1}',
			numericString: '42',
			arr: [1, 'two', null, false, { three: 3 }, [4]],
			emptyArr: [],
			emptyObj: {},
			deep,
		}
		for (const [k, v] of Object.entries(values)) await ctx.set(k, v)
		for (const [k, v] of Object.entries(values)) {
			const got = await ctx.get(k)
			expect({ k, got }).toEqual({ k, got: v })
			expect(typeof got).toBe(typeof v)
		}
		// numeric strings stay strings, numbers stay numbers
		expect(await ctx.get('numericString')).toBe('42')
		expect(await ctx.get('maxSafe')).toBe(9007199254740991)
		expect(await ctx.toJSON()).toEqual(values)
	})

	test('toJSON of a populated run returns every key with its value, and only this run', async () => {
		const { ctx, table } = await freshContext()
		const other = new PostgresContext(newRunId(), { client: svc.POSTGRES_URL, tableName: table })
		await ctx.set('blueprintId', 'bp-1')
		await ctx.set('_outputs.a', { ok: true })
		await ctx.set('_inputs.b', [1, 2])
		await ctx.set('count', 3)
		await other.set('count', 999)
		const snapshot = await ctx.toJSON()
		expect(snapshot).toEqual({
			blueprintId: 'bp-1',
			'_outputs.a': { ok: true },
			'_inputs.b': [1, 2],
			count: 3,
		})
		// a plain object, detached from the store
		snapshot.count = 100
		await expect(ctx.get('count')).resolves.toBe(3)
		await expect(other.toJSON()).resolves.toEqual({ count: 999 })
	})

	test('keys named like Object.prototype members are not present until set', async () => {
		const { ctx } = await freshContext()
		await ctx.set('x', 1)
		for (const key of ['constructor', 'toString', 'hasOwnProperty', '__proto__', 'valueOf']) {
			await expect(ctx.has(key)).resolves.toBe(false)
			await expect(ctx.get(key)).resolves.toBeUndefined()
			await expect(ctx.delete(key)).resolves.toBe(false)
		}
		await ctx.set('constructor', 'mine')
		await expect(ctx.get('constructor')).resolves.toBe('mine')
		await expect(ctx.has('constructor')).resolves.toBe(true)
		const snapshot = await ctx.toJSON()
		expect(Object.keys(snapshot).sort()).toEqual(['constructor', 'x'])
		expect(snapshot.constructor).toBe('mine')
	})

	test('two runs in one table are independent', async () => {
		const { ctx: a, table } = await freshContext()
		const b = new PostgresContext(newRunId(), { client: svc.POSTGRES_URL, tableName: table })
		await a.set('k', 'A')
		await b.set('k', 'B')
		await expect(a.get('k')).resolves.toBe('A')
		await expect(b.get('k')).resolves.toBe('B')
		await expect(a.delete('k')).resolves.toBe(true)
		await expect(b.get('k')).resolves.toBe('B')
		expect(await svc.countRows(table)).toBe(2)
	})

	test('run ids with quotes, unicode and SQL are bound parameters, not SQL', async () => {
		const table = await res.contextTable('ctx')
		const runIds = [`run'1`, `r"); DROP TABLE ${table}; --`, 'рун-🔑', ' ', 'a.b']
		for (const runId of runIds) {
			const ctx = new PostgresContext(runId, { client: svc.POSTGRES_URL, tableName: table })
			await ctx.set('id', runId)
		}
		expect(await svc.tableExists(table)).toBe(true)
		const rows = await svc.pgQuery(`SELECT run_id, context_data FROM ${svc.quoteIdent(table)} ORDER BY run_id`)
		expect(rows.rows.map((r) => r.run_id).sort()).toEqual([...runIds].sort())
		for (const r of rows.rows) expect(r.context_data).toEqual({ id: r.run_id })
	})
})

describe('PostgresContext keys that would break string-built SQL', () => {
	test.each(HOSTILE_KEYS.map((k) => [JSON.stringify(k), k]))(
		'key %s: set/get/has/toJSON/delete',
		async (_label, key) => {
			const { ctx, table, runId } = await freshContext()
			const victim = await res.contextTable('victim')
			const tablesBefore = await svc.listStableTables()
			const value = { key, n: 1, s: `it's` }

			await ctx.set('plain', 'kept')
			await ctx.set(key, value)
			await expect(ctx.get(key)).resolves.toEqual(value)
			await expect(ctx.has(key)).resolves.toBe(true)
			expect(await ctx.toJSON()).toEqual({ plain: 'kept', [key]: value })

			// stored as one flat top-level key, not a path
			const row = await svc.readContextRow(table, runId)
			expect(Object.keys(row).sort()).toEqual(['plain', key].sort())
			expect(row[key]).toEqual(value)

			await expect(ctx.delete(key)).resolves.toBe(true)
			await expect(ctx.has(key)).resolves.toBe(false)
			await expect(ctx.get(key)).resolves.toBeUndefined()
			await expect(ctx.delete(key)).resolves.toBe(false)
			expect(await svc.readContextRow(table, runId)).toEqual({ plain: 'kept' })

			expect(await svc.tableExists(victim)).toBe(true)
			expect(await svc.listStableTables()).toEqual(expect.arrayContaining(tablesBefore))
		},
	)

	test('hostile keys aimed at a real table, through set, delete and patch', async () => {
		const { ctx, table, runId } = await freshContext()
		const victim = await res.contextTable('victim')
		const keys = [
			`x"); DROP TABLE ${victim}; --`,
			`'; DROP TABLE ${victim}; --`,
			`}', '"); DROP TABLE ${victim}; --`,
			`{${victim}}`,
		]
		for (const k of keys) await ctx.set(k, k)
		await ctx.patch(keys.map((k) => ({ op: 'set', key: k, value: { again: k } })))
		await ctx.patch([{ op: 'delete', key: keys[0] }])
		expect(await svc.tableExists(victim)).toBe(true)
		const expected = {}
		for (const k of keys.slice(1)) expected[k] = { again: k }
		expect(await svc.readContextRow(table, runId)).toEqual(expected)
	})

	test('dotted keys are flat: "a.b" and "a" are unrelated keys', async () => {
		const { ctx, table, runId } = await freshContext()
		await ctx.set('a', { b: 'inner' })
		await ctx.set('a.b', 'flat')
		await expect(ctx.get('a.b')).resolves.toBe('flat')
		await expect(ctx.get('a')).resolves.toEqual({ b: 'inner' })
		await expect(ctx.delete('a.b')).resolves.toBe(true)
		await expect(ctx.get('a')).resolves.toEqual({ b: 'inner' })
		await expect(ctx.has('a.b')).resolves.toBe(false)
		expect(await svc.readContextRow(table, runId)).toEqual({ a: { b: 'inner' } })
	})
})

describe('PostgresContext table names', () => {
	const INVALID = [
		'bad name',
		't; drop table x',
		'a.b.c',
		'',
		'x"y',
		"x'y",
		'x-y',
		'1;2',
		'a..b',
		'.a',
		'a.',
		'tab\tle',
	]

	test.each(INVALID.map((n) => [JSON.stringify(n), n]))(
		'invalid table name %s is rejected with ERR_INVALID_TABLE_NAME and nothing runs',
		async (_label, tableName) => {
			const tablesBefore = await svc.listStableTables()
			const err = await svc.captureError(async () => {
				const ctx = new PostgresContext(newRunId(), { client: svc.POSTGRES_URL, tableName })
				await ctx.set('k', 1)
			})
			expect(err).toBeInstanceOf(Error)
			expect(err.code).toBe('ERR_INVALID_TABLE_NAME')
			expect(typeof err.message).toBe('string')
			expect(err.message.length).toBeGreaterThan(10)
			// other test files run in parallel: only our view of the tables that existed matters
			expect(await svc.listStableTables()).toEqual(expect.arrayContaining(tablesBefore))
		},
	)

	test('an injected DROP in the table name never reaches PostgreSQL', async () => {
		const victim = await res.contextTable('victim')
		const names = [
			`${victim}; DROP TABLE ${victim}`,
			`${victim}; DROP TABLE ${victim}; --`,
			`${victim}" ; DROP TABLE "${victim}`,
			`public.${victim}; DROP TABLE ${victim}`,
		]
		for (const tableName of names) {
			const err = await svc.captureError(async () => {
				const ctx = new PostgresContext(newRunId(), { client: svc.POSTGRES_URL, tableName })
				await ctx.set('k', 1)
				await ctx.get('k')
				await ctx.patch([{ op: 'set', key: 'a', value: 1 }])
				await ctx.delete('k')
				await ctx.toJSON()
			})
			expect(err.code).toBe('ERR_INVALID_TABLE_NAME')
		}
		expect(await svc.tableExists(victim)).toBe(true)
		expect(await svc.countRows(victim)).toBe(0)
	})

	test('a bad table name is rejected before any connection is attempted', async () => {
		// the target refuses connections: getting ERR_INVALID_TABLE_NAME (not
		// ERR_PG_CONNECT) shows the name was checked before anything was sent
		const err = await svc.captureError(async () => {
			const ctx = new PostgresContext(newRunId(), { client: svc.REFUSED_POSTGRES_URL, tableName: 'bad name' })
			await ctx.get('k')
		})
		expect(err.code).toBe('ERR_INVALID_TABLE_NAME')
	})

	test('schema-qualified "schema.name" is accepted and writes to that schema', async () => {
		const schema = await res.schema('sch')
		const table = svc.uniqueName('ctx')
		await svc.createContextTable(`${schema}.${table}`)
		const runId = newRunId()
		const ctx = new PostgresContext(runId, { client: svc.POSTGRES_URL, tableName: `${schema}.${table}` })
		await ctx.set('where', 'schema')
		await expect(ctx.get('where')).resolves.toBe('schema')
		expect(await svc.readContextRow(`${schema}.${table}`, runId)).toEqual({ where: 'schema' })
		// nothing went to a same-named table in public (there is none)
		expect(await svc.tableExists(table)).toBe(false)
	})
})

describe('PostgresContext.patch', () => {
	test('patch on a run with no row yet creates the row', async () => {
		const { ctx, table, runId } = await freshContext()
		await ctx.patch([
			{ op: 'set', key: 'a', value: 1 },
			{ op: 'set', key: 'b.c', value: { deep: [1, { x: null }] } },
			{ op: 'delete', key: 'never-there' },
		])
		expect(await svc.readContextRow(table, runId)).toEqual({ a: 1, 'b.c': { deep: [1, { x: null }] } })
		await expect(ctx.get('b.c')).resolves.toEqual({ deep: [1, { x: null }] })
	})

	test('patch with only deletes on a run with no row leaves the run empty', async () => {
		const { ctx } = await freshContext()
		await ctx.patch([{ op: 'delete', key: 'x' }])
		await expect(ctx.toJSON()).resolves.toEqual({})
	})

	test('patch sets and deletes together', async () => {
		const { ctx, table, runId } = await freshContext()
		await ctx.set('a', 1)
		await ctx.set('b', 2)
		await ctx.set('c', 3)
		await ctx.patch([
			{ op: 'set', key: 'a', value: 10 },
			{ op: 'delete', key: 'b' },
			{ op: 'set', key: 'd', value: { x: 1 } },
			{ op: 'set', key: 'n', value: null },
		])
		expect(await svc.readContextRow(table, runId)).toEqual({ a: 10, c: 3, d: { x: 1 }, n: null })
	})

	test('operations apply in order (set then delete, delete then set, set twice)', async () => {
		const { ctx, table, runId } = await freshContext()
		await ctx.set('keep', 0)
		await ctx.set('back', 'old')
		await ctx.patch([
			{ op: 'set', key: 'gone', value: 1 },
			{ op: 'delete', key: 'gone' },
			{ op: 'delete', key: 'back' },
			{ op: 'set', key: 'back', value: 'new' },
			{ op: 'set', key: 'twice', value: 1 },
			{ op: 'set', key: 'twice', value: 2 },
		])
		expect(await svc.readContextRow(table, runId)).toEqual({ keep: 0, back: 'new', twice: 2 })
	})

	test('an empty patch changes nothing', async () => {
		const { ctx, table, runId } = await freshContext()
		await ctx.patch([])
		expect(await svc.readContextRow(table, runId)).toBeUndefined()
		await ctx.set('a', 1)
		await ctx.patch([])
		expect(await svc.readContextRow(table, runId)).toEqual({ a: 1 })
	})

	test('patch is atomic: when one operation is refused by PostgreSQL, none is applied', async () => {
		const { ctx, table, runId } = await freshContext()
		await ctx.set('a', 1)
		await ctx.set('b', 2)
		const before = await svc.readContextRow(table, runId)
		// PostgreSQL's jsonb refuses \u0000 in text: the last operation fails on the server
		const outcome = await ctx
			.patch([
				{ op: 'set', key: 'a', value: 100 },
				{ op: 'delete', key: 'b' },
				{ op: 'set', key: 'c', value: 3 },
				{ op: 'set', key: 'bad', value: 'nul \u0000 char' },
			])
			.then(
				() => 'applied',
				(e) => e,
			)
		const after = await svc.readContextRow(table, runId)
		if (outcome === 'applied') {
			// the implementation found a way to store it: then everything is applied
			expect(after).toEqual({ a: 100, c: 3, bad: 'nul \u0000 char' })
		} else {
			expect(outcome).toBeInstanceOf(Error)
			expect(typeof outcome.code).toBe('string')
			expect(after).toEqual(before)
		}
	})

	test('patch with hostile keys', async () => {
		const { ctx, table, runId } = await freshContext()
		const ops = HOSTILE_KEYS.map((k, i) => ({ op: 'set', key: k, value: i }))
		await ctx.patch(ops)
		const expected = Object.fromEntries(HOSTILE_KEYS.map((k, i) => [k, i]))
		expect(await svc.readContextRow(table, runId)).toEqual(expected)
		await ctx.patch(HOSTILE_KEYS.filter((_, i) => i % 2 === 0).map((k) => ({ op: 'delete', key: k })))
		const remaining = Object.fromEntries(HOSTILE_KEYS.map((k, i) => [k, i]).filter((_, i) => i % 2 === 1))
		expect(await svc.readContextRow(table, runId)).toEqual(remaining)
	})
})

describe('PostgresContext concurrency', () => {
	test('150 concurrent sets of distinct keys on one run are all present', async () => {
		const { ctx, table, runId } = await freshContext()
		const N = 150
		await Promise.all(Array.from({ length: N }, (_, i) => ctx.set(`k${i}`, { i, s: `v${i}` })))
		const row = await svc.readContextRow(table, runId)
		expect(Object.keys(row)).toHaveLength(N)
		for (let i = 0; i < N; i++) expect(row[`k${i}`]).toEqual({ i, s: `v${i}` })
		expect(await svc.countRows(table)).toBe(1)
	})

	test('150 concurrent sets from 150 context objects on one run (first write races the insert)', async () => {
		const table = await res.contextTable('ctx')
		const runId = newRunId()
		const N = 150
		await Promise.all(
			Array.from({ length: N }, (_, i) =>
				new PostgresContext(runId, { client: svc.POSTGRES_URL, tableName: table }).set(`k${i}`, i),
			),
		)
		const row = await svc.readContextRow(table, runId)
		expect(Object.keys(row)).toHaveLength(N)
		for (let i = 0; i < N; i++) expect(row[`k${i}`]).toBe(i)
	})

	test('concurrent sets, patches and deletes on one run lose nothing', async () => {
		const { ctx, table, runId } = await freshContext()
		for (let i = 0; i < 40; i++) await ctx.set(`del${i}`, i)
		const work = []
		for (let i = 0; i < 60; i++) work.push(ctx.set(`set${i}`, i))
		for (let i = 0; i < 40; i++)
			work.push(
				ctx.patch([
					{ op: 'set', key: `patch${i}`, value: i },
					{ op: 'delete', key: `del${i}` },
				]),
			)
		await Promise.all(work)
		const row = await svc.readContextRow(table, runId)
		const expected = {}
		for (let i = 0; i < 60; i++) expected[`set${i}`] = i
		for (let i = 0; i < 40; i++) expected[`patch${i}`] = i
		expect(row).toEqual(expected)
	})
})

describe('PostgresContext connection forms', () => {
	async function roundTrip(client) {
		const table = await res.contextTable('ctx')
		const runId = newRunId()
		const ctx = new PostgresContext(runId, { client, tableName: table })
		await ctx.set('via', 'this client')
		await expect(ctx.get('via')).resolves.toBe('this client')
		expect(await svc.readContextRow(table, runId)).toEqual({ via: 'this client' })
	}

	test('from a connected pg.Client (as in the README)', async () => {
		const client = new pg.Client({ connectionString: svc.POSTGRES_URL })
		await client.connect()
		res.onCleanup(() => client.end())
		await roundTrip(client)
		// the user's client still works afterwards
		const r = await client.query('SELECT 1 AS one')
		expect(r.rows[0].one).toBe(1)
	})

	test('from a pg.Client that was never connected', async () => {
		const client = new pg.Client(svc.POSTGRES_URL)
		await roundTrip(client)
	})

	test('from a pg.Client built from a config object', async () => {
		const client = new pg.Client(svc.pgConfigFromUrl())
		await roundTrip(client)
	})

	test('from a pg.Pool', async () => {
		const pool = new pg.Pool({ connectionString: svc.POSTGRES_URL, max: 2 })
		pool.on('error', () => {})
		res.onCleanup(() => pool.end())
		await roundTrip(pool)
	})

	test('from a pg.Pool built from a config object', async () => {
		const pool = new pg.Pool({ ...svc.pgConfigFromUrl(), max: 2 })
		pool.on('error', () => {})
		res.onCleanup(() => pool.end())
		await roundTrip(pool)
	})

	test('from a URL string', async () => {
		await roundTrip(svc.POSTGRES_URL)
	})

	test('from a config object', async () => {
		await roundTrip(svc.pgConfigFromUrl())
	})

	test('from a { connectionString } object', async () => {
		await roundTrip({ connectionString: svc.POSTGRES_URL })
	})

	test('the target is read from the object: a client for another database writes there', async () => {
		const dbName = await res.database('db')
		// a pg.Client, not a pg.Pool: client.end() waits until the connection is closed,
		// so the database can be dropped after the test without an error event
		const dbClient = new pg.Client(svc.pgUrlForDatabase(dbName))
		await dbClient.connect()
		res.onCleanup(() => dbClient.end())
		const table = svc.uniqueName('ctx')
		await svc.createContextTable(table, dbClient)
		const runId = newRunId()
		const client = new pg.Client({ ...svc.pgConfigFromUrl(), database: dbName })
		const ctx = new PostgresContext(runId, { client, tableName: table })
		await ctx.set('db', dbName)
		expect(await svc.readContextRow(table, runId, dbClient)).toEqual({ db: dbName })
		// and not in the default database, where the table does not exist
		expect(await svc.tableExists(table)).toBe(false)
	})

	test('1000 contexts on one target share a small pool (pg_stat_activity)', async () => {
		const dbName = await res.database('conn')
		const dbUrl = svc.pgUrlForDatabase(dbName)
		const setup = new pg.Client(dbUrl)
		await setup.connect()
		const table = svc.uniqueName('ctx')
		await svc.createContextTable(table, setup)
		await setup.end()

		const before = await svc.countConnections(dbName)
		const N = 1000
		const contexts = Array.from(
			{ length: N },
			(_, i) => new PostgresContext(`run-${i}`, { client: dbUrl, tableName: table }),
		)
		await Promise.all(contexts.map((c, i) => c.set('i', i)))
		const values = await Promise.all(contexts.map((c) => c.get('i')))
		expect(values).toEqual(Array.from({ length: N }, (_, i) => i))
		const after = await svc.countConnections(dbName)
		// eslint-disable-next-line no-console
		console.log(`pg connections to ${dbName}: before=${before} after=${after} (1000 contexts)`)
		expect(after - before).toBeGreaterThan(0)
		expect(after - before).toBeLessThanOrEqual(20)

		const check = new pg.Client(dbUrl)
		await check.connect()
		try {
			const r = await check.query(`SELECT count(*)::int AS n FROM ${svc.quoteIdent(table)}`)
			expect(r.rows[0].n).toBe(N)
		} finally {
			await check.end()
		}
	})
})

describe('PostgresContext errors', () => {
	test('a refused connection rejects with ERR_PG_CONNECT naming host and port', async () => {
		const started = Date.now()
		const err = await svc.withTimeout(
			svc.captureError(async () => {
				const ctx = new PostgresContext(newRunId(), {
					client: svc.REFUSED_POSTGRES_URL,
					tableName: 'flowcraft_contexts',
				})
				await ctx.get('k')
			}),
			30000,
			'get() on a refused PostgreSQL connection',
		)
		expect(err).toBeInstanceOf(Error)
		expect(err.code).toBe('ERR_PG_CONNECT')
		expect(err.message).toMatch(/127\.0\.0\.1/)
		expect(err.message).toMatch(/127\.0\.0\.1(:|\D+)1\b/)
		expect(Date.now() - started).toBeLessThan(30000)
	})

	test('a refused connection from a pg.Client and from a config object also gives ERR_PG_CONNECT', async () => {
		for (const client of [
			new pg.Client(svc.REFUSED_POSTGRES_URL),
			{ host: '127.0.0.1', port: 1, user: 'postgres', database: 'test' },
		]) {
			const err = await svc.withTimeout(
				svc.captureError(async () => {
					const ctx = new PostgresContext(newRunId(), { client, tableName: 'flowcraft_contexts' })
					await ctx.set('k', 1)
				}),
				30000,
				'set() on a refused PostgreSQL connection',
			)
			expect(err.code).toBe('ERR_PG_CONNECT')
		}
	})

	test('a missing table rejects with ERR_PG and a message naming the table', async () => {
		const table = res.trackTable(svc.uniqueName('nosuch'))
		const ctx = new PostgresContext(newRunId(), { client: svc.POSTGRES_URL, tableName: table })
		const err = await svc.captureError(() => ctx.set('k', 1))
		expect(err.code).toBe('ERR_PG')
		expect(err.message).toContain(table)
	})

	test('wrong argument types give a TypeError-like error, not a crash', async () => {
		const table = await res.contextTable('ctx')
		for (const options of [
			undefined,
			null,
			42,
			{ client: 42, tableName: table },
			{ client: svc.POSTGRES_URL },
			{ client: svc.POSTGRES_URL, tableName: 42 },
		]) {
			const err = await svc.captureError(async () => {
				const ctx = new PostgresContext(newRunId(), options)
				await ctx.set('k', 1)
			})
			expect(err).toBeInstanceOf(Error)
			expect(err instanceof TypeError || ['ERR_INVALID_ARGUMENT', 'ERR_INVALID_TABLE_NAME'].includes(err.code)).toBe(
				true,
			)
		}
		expect(await svc.countRows(table)).toBe(0)
	})

	test('a value JSON cannot encode (BigInt) rejects; the process survives', async () => {
		const { ctx, table, runId } = await freshContext()
		const err = await svc.captureError(() => ctx.set('big', 10n))
		expect(err).toBeInstanceOf(Error)
		expect(await svc.readContextRow(table, runId)).toBeUndefined()
		await ctx.set('after', 1)
		await expect(ctx.get('after')).resolves.toBe(1)
	})
})
