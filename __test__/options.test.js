'use strict'

// One home for the options (lib/options.js): each default, limit and check is there,
// and the native core either trusts what it is handed or checks the same numbers. The
// core keeps some checks of its own (jobs on the wire, the tables' DDL, its own
// Timings for the objects JS gives no timings): those are read here from the Rust
// source and must equal the JS ones. No service is needed.

const fs = require('node:fs')
const path = require('node:path')
const options = require('../lib/options')
const { RabbitMqAdapter } = require('..')

const ROOT = path.resolve(__dirname, '..')
const read = (file) => fs.readFileSync(path.join(ROOT, file), 'utf8')

/** `pub const NAME: usize = 123;` of a Rust file. */
function rustConst(file, name) {
	const m = new RegExp(`pub const ${name}: \\w+ = ([\\d_]+);`).exec(read(file))
	if (!m) throw new Error(`${name} is not in ${file}`)
	return Number(m[1].replace(/_/g, ''))
}

/** Timings::default() of core/src/timings.rs, under the JSON names of its serde renames. */
function rustTimingDefaults() {
	const src = read('core/src/timings.rs')
	const struct = src.slice(src.indexOf('pub struct Timings {'), src.indexOf('impl Default for Timings'))
	const names = {}
	for (const m of struct.matchAll(/#\[serde\(rename = "(\w+)"[^\]]*\)\]\s*pub (\w+):/g)) names[m[2]] = m[1]
	const body = src.slice(src.indexOf('impl Default for Timings'), src.indexOf('fn ms<'))
	const out = {}
	for (const m of body.matchAll(/^\s*(\w+): (s|ms)?\(?(\d+)\)?,$/gm)) {
		const [, field, unit, n] = m
		expect(names[field]).toBeDefined()
		out[names[field]] = unit === 's' ? Number(n) * 1000 : Number(n)
	}
	return out
}

const minimal = (extra = {}) => ({
	amqpConnection: 'amqp://guest:guest@127.0.0.1:5672',
	pgClient: 'postgres://postgres@127.0.0.1:5432/test',
	coordinationStore: { increment() {}, setIfNotExist() {}, extendTTL() {}, delete() {}, get() {} },
	runtimeOptions: { registry: {}, blueprints: {}, logger: { info() {}, warn() {}, error() {}, debug() {} } },
	...extra,
})
const thrown = (fn) => {
	try {
		fn()
	} catch (e) {
		return e
	}
	throw new Error('did not throw')
}

describe('the limits the core checks too are the same numbers', () => {
	test('run ids and queue names (core/src/queue.rs)', () => {
		expect(rustConst('core/src/queue.rs', 'MAX_RUN_ID_BYTES')).toBe(options.MAX_RUN_ID_BYTES)
		expect(rustConst('core/src/queue.rs', 'MAX_QUEUE_NAME_BYTES')).toBe(options.MAX_QUEUE_NAME_BYTES)
		expect(options.LIMITS.runIdBytes).toBe(4096)
		expect(options.LIMITS.queueNameBytes).toBe(250)
	})

	test('table names (core/src/pg.rs quote_table) and the node table suffix (core/src/run_store.rs nodes_table)', () => {
		const pg = read('core/src/pg.rs')
		const quote = pg.slice(pg.indexOf('pub fn quote_table'), pg.indexOf('pub struct PgConn'))
		expect(Number(/p\.len\(\) <= (\d+)/.exec(quote)[1])).toBe(options.MAX_TABLE_NAME_PART_BYTES)
		expect(quote).toMatch(/parts\.len\(\) > 2/) // name or schema.name
		expect(quote).toMatch(/is_ascii_alphanumeric\(\) \|\| c == '_'/)
		expect(quote).toMatch(/starts_with\(\|c: char\| c\.is_ascii_digit\(\)\)/)
		const runStore = read('core/src/run_store.rs')
		expect(runStore).toContain(`format!("{context_table}${options.NODE_TABLE_SUFFIX}")`)
	})

	test("timings: TIMING_DEFAULTS is core/src/timings.rs' Timings::default(), key for key", () => {
		expect(rustTimingDefaults()).toEqual({ ...options.TIMING_DEFAULTS })
	})

	test('the binding keeps no default of its own for the options JS always sends', () => {
		const types = read('src/types.rs')
		const config = types.slice(
			types.indexOf('pub struct NativeConfig'),
			types.indexOf('\n}\n', types.indexOf('pub struct NativeConfig')),
		)
		for (const field of [
			'queue_name',
			'context_table_name',
			'status_table_name',
			'concurrency',
			'create_tables',
			'max_deliveries',
		]) {
			const line = new RegExp(`\\n\\s*pub ${field}: ([^,]+),`).exec(config)
			// a required field: JS sends it, nothing in Rust fills it in
			expect({ field, type: line?.[1] }).toEqual({ field, type: expect.not.stringMatching(/^Option</) })
		}
		const lib = read('src/lib.rs')
		expect(lib).not.toMatch(/fn default_(concurrency|max_deliveries)|DEFAULT_(CONCURRENCY|MAX_DELIVERIES)/)
		expect(lib).not.toMatch(/unwrap_or\(DEFAULT_/)
	})

	test('the adapter hands the core every setting, defaults applied in JS', () => {
		const a = new RabbitMqAdapter(minimal({ timings: { pgPoolSize: 3 } }))
		const s = a._s
		expect(s.timings).toEqual({ ...options.TIMING_DEFAULTS, pgPoolSize: 3 })
		expect([s.concurrency, s.maxDeliveries, s.createTables]).toEqual([64, 20, true])
		expect([a.queueName, a.contextTableName, a.statusTableName]).toEqual([
			options.DEFAULTS.queueName,
			options.DEFAULTS.contextTableName,
			options.DEFAULTS.statusTableName,
		])
	})
})

describe('table names', () => {
	test('each part at most 63 characters, as PostgreSQL and the core allow', () => {
		const n63 = 'a'.repeat(63)
		expect(options.checkTableName(n63, 't')).toBe(n63)
		expect(options.checkTableName(`${n63}.${n63}`, 't')).toBe(`${n63}.${n63}`)
		for (const name of ['a'.repeat(64), `s.${'a'.repeat(64)}`, `${'a'.repeat(64)}.t`]) {
			const e = thrown(() => options.checkTableName(name, 't'))
			expect(e.code).toBe('ERR_INVALID_TABLE_NAME')
			expect(e.message).toMatch(/at most 63 characters/)
		}
	})

	test('a context table whose node table name would be too long is refused by the constructor, not at start()', () => {
		const ok = 'c'.repeat(57)
		expect(new RabbitMqAdapter(minimal({ contextTableName: `app.${ok}` })).contextTableName).toBe(`app.${ok}`)
		const e = thrown(() => new RabbitMqAdapter(minimal({ contextTableName: 'c'.repeat(58) })))
		expect(e.code).toBe('ERR_INVALID_TABLE_NAME')
		expect(e.message).toMatch(/contextTableName must be at most 57 characters .*_nodes/)
		// a 63-character status table is fine: it has no node table
		expect(new RabbitMqAdapter(minimal({ statusTableName: 's'.repeat(63) })).statusTableName).toBe('s'.repeat(63))
	})
})

describe('one JSON guard', () => {
	test('a function nested in a blueprint is refused, naming its key path (JSON.stringify would drop it)', () => {
		const blueprints = {
			b: { id: 'b', nodes: [{ id: 'n', uses: 'x', params: { deep: [1, { f: () => 1 }] } }], edges: [] },
		}
		const e = thrown(() => new RabbitMqAdapter(minimal({ runtimeOptions: { registry: {}, blueprints } })))
		expect(e.code).toBe('ERR_INVALID_BLUEPRINT')
		expect(e.message).toContain('blueprint "b" holds a function at key path nodes[0].params.deep[1].f')
	})

	test('the JSON of a blueprint that is plain data is unchanged', () => {
		const bp = {
			id: 'b',
			nodes: [{ id: 'n', uses: 'x', config: { maxRetries: 2 } }],
			edges: [],
			metadata: { version: '1' },
		}
		const a = new RabbitMqAdapter(minimal({ runtimeOptions: { registry: { x: () => ({}) }, blueprints: { b: bp } } }))
		expect(a._s.blueprints.b).toBe(bp)
	})
})

describe('no module reaches into the adapter', () => {
	test("only lib/adapter.js reads the adapter's internal state", () => {
		for (const f of fs.readdirSync(path.join(ROOT, 'lib')).filter((f) => f.endsWith('.js') && f !== 'adapter.js')) {
			expect({ file: f, reads: /\._s\b/.test(read(`lib/${f}`)) }).toEqual({ file: f, reads: false })
		}
		expect(/\._s\b/.test(read('bin/flowcraft-rabbitmq.js'))).toBe(false)
	})

	test("the reconciler and stopOnSignals log through the adapter's logger when given none", async () => {
		const lines = []
		const logger = { debug() {}, info: (m) => lines.push(m), warn: (m) => lines.push(m), error: (m) => lines.push(m) }
		const a = new RabbitMqAdapter(minimal({ runtimeOptions: { registry: {}, blueprints: {}, logger } }))
		const { createRabbitMqReconciler, stopOnSignals } = require('..')
		a._staleRuns = async () => ['r1']
		a.reconcile = async () => new Set(['n'])
		expect(await createRabbitMqReconciler({ adapter: a }).run()).toEqual({
			stalledRuns: 1,
			reconciledRuns: 1,
			failedRuns: 0,
		})
		expect(lines).toEqual(['[Reconciler] Resumed run r1, enqueued nodes: n'])
		a.stop = async () => {}
		// another listener of the signal stays, so stopOnSignals leaves the exit to it (it does not re-raise)
		const keep = () => {}
		process.on('SIGUSR2', keep)
		try {
			const dispose = stopOnSignals(a, { signals: ['SIGUSR2'] })
			process.emit('SIGUSR2', 'SIGUSR2')
			for (let i = 0; i < 100 && lines.length < 3; i++) await new Promise((r) => setTimeout(r, 10))
			dispose()
		} finally {
			process.removeListener('SIGUSR2', keep)
		}
		expect(lines.slice(1)).toEqual([
			expect.stringMatching(/^Received SIGUSR2: stopping the worker/),
			'Worker stopped; exiting on SIGUSR2',
		])
	})
})
