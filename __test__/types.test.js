'use strict'

// The documented API, type-checked: the README's worker example (verbatim)
// must compile with `tsc --noEmit` against this package's index.d.ts, the two
// stores must be typed as documented (and fit flowcraft's own interfaces), the
// declaration files must be valid on their own, and wrong code must NOT
// compile (so these tests can fail).

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

const ROOT = path.resolve(__dirname, '..')
const PKG = '@flowcraft/rabbitmq-adapter'
const SEED_README = path.resolve(ROOT, '../shared/seed/README.md')

// The `worker.ts` example of the documented README (seed/README.md), verbatim.
const README_WORKER_EXAMPLE = `import { PostgresContext, RabbitMqAdapter, RedisCoordinationStore } from '@flowcraft/rabbitmq-adapter'
import * as amqplib from 'amqplib'
import IORedis from 'ioredis'
import { Client as PgClient } from 'pg'
// Assume agentNodeRegistry and blueprints are loaded from your application's shared files.
import { agentNodeRegistry, blueprints } from './shared'

async function main() {
	console.log('--- Starting Flowcraft Worker (RabbitMQ/Postgres) ---')

	// 1. Establish connections to your infrastructure.
	const amqpConnection = await amqplib.connect(process.env.RABBITMQ_URL)
	const pgClient = new PgClient({ connectionString: process.env.POSTGRES_URL })
	await pgClient.connect()
	const redisConnection = new IORedis(process.env.REDIS_URL)

	// 2. Create the coordination store.
	const coordinationStore = new RedisCoordinationStore(redisConnection)

	// 3. Instantiate the adapter.
	const adapter = new RabbitMqAdapter({
		amqpConnection,
		pgClient,
		coordinationStore,
		queueName: 'flowcraft-jobs',
		contextTableName: 'flowcraft_contexts', // You must create this table
		statusTableName: 'flowcraft_statuses', // You must create this table
		runtimeOptions: {
			registry: agentNodeRegistry,
			blueprints,
		},
	})

	// 4. Start the worker. It will create a channel and begin consuming jobs.
	adapter.start()

	console.log('Worker is running. Waiting for jobs...')
}

main().catch(console.error)
`

// The application's shared file, typed loosely as a user writes it without
// importing anything from flowcraft.
const SHARED_LOOSE = `export const agentNodeRegistry = {
	fetchUser: async (ctx: any) => {
		const id = ctx.input ?? (await ctx.context.get('userId'))
		return { output: { id, name: 'Ada' } }
	},
	classify: async (ctx: any) => ({ output: { ok: true }, action: ctx.input?.id ? 'known' : 'unknown' }),
	notify: async () => ({ output: 'sent' }),
}

export const blueprints: Record<string, any> = {
	'user-flow': {
		id: 'user-flow',
		nodes: [
			{ id: 'fetch', uses: 'fetchUser', params: { source: 'db' } },
			{ id: 'classify', uses: 'classify', config: { maxRetries: 3, retryDelay: 100, timeout: 5000 } },
			{ id: 'notify', uses: 'notify' },
		],
		edges: [
			{ source: 'fetch', target: 'classify' },
			{ source: 'classify', target: 'notify', action: 'known' },
		],
		metadata: { version: '1' },
	},
}
`

// The same shared file written with flowcraft's own types (flowcraft is a dev dependency).
const SHARED_FLOWCRAFT = `import type { NodeRegistry, WorkflowBlueprint } from 'flowcraft'

export const agentNodeRegistry: NodeRegistry = {
	fetchUser: async (ctx) => ({ output: { id: ctx.input, name: 'Ada' } }),
	notify: async () => ({ output: 'sent' }),
}

export const blueprints: Record<string, WorkflowBlueprint> = {
	'user-flow': {
		id: 'user-flow',
		nodes: [
			{ id: 'fetch', uses: 'fetchUser' },
			{ id: 'notify', uses: 'notify', config: { joinStrategy: 'any', maxRetries: 2 } },
		],
		edges: [{ source: 'fetch', target: 'notify' }],
	},
}
`

// Typed environment variables, as users declare them (the example passes
// process.env.X, string | undefined, to amqplib.connect and new IORedis,
// whose own types want a string under "strict").
const ENV_DTS = `declare global {
	namespace NodeJS {
		interface ProcessEnv {
			RABBITMQ_URL: string
			POSTGRES_URL: string
			REDIS_URL: string
		}
	}
}
export {}
`

// Every documented call of the two stores, with the documented result types.
const API_USAGE = `import { PostgresContext, RabbitMqAdapter, RedisCoordinationStore } from '${PKG}'
import { Redis as IORedis } from 'ioredis'
import { Client, Pool } from 'pg'

export async function contextApi(): Promise<void> {
	const contexts: PostgresContext[] = [
		new PostgresContext('run-1', { client: new Client(), tableName: 'flowcraft_contexts' }),
		new PostgresContext('run-1', { client: new Pool(), tableName: 'flowcraft_contexts' }),
		new PostgresContext('run-1', { client: 'postgres://postgres@127.0.0.1:5432/test', tableName: 'public.flowcraft_contexts' }),
		new PostgresContext('run-1', {
			client: { host: '127.0.0.1', port: 5432, user: 'postgres', password: 'secret', database: 'test' },
			tableName: 'flowcraft_contexts',
		}),
	]
	const ctx = contexts[0]!
	const kind: 'async' = ctx.type
	await ctx.set('answer', { deep: [1, 'two', null] })
	const value: unknown = await ctx.get('answer')
	const present: boolean = await ctx.has('answer')
	const existed: boolean = await ctx.delete('answer')
	const all: Record<string, any> = await ctx.toJSON()
	await ctx.patch([
		{ op: 'set', key: 'a', value: 1 },
		{ op: 'delete', key: 'b' },
	])
	void [kind, value, present, existed, all]
}

export async function storeApi(): Promise<void> {
	const stores: RedisCoordinationStore[] = [
		new RedisCoordinationStore(new IORedis()),
		new RedisCoordinationStore(new IORedis({ host: '127.0.0.1', port: 6379, db: 2, lazyConnect: true })),
		new RedisCoordinationStore('redis://127.0.0.1:6379'),
		new RedisCoordinationStore({ host: '127.0.0.1', port: 6379 }),
	]
	const store = stores[0]!
	const n: number = await store.increment('flowcraft:fanin:r:n', 3600)
	const won: boolean = await store.setIfNotExist('flowcraft:joinlock:r:n', 'locked', 3600)
	const extended: boolean = await store.extendTTL('flowcraft:nodelock:r:n', 3600)
	const v: string | undefined = await store.get('flowcraft:blueprint:r')
	const nothing: void = await store.delete('flowcraft:fanin:r:n')
	void [n, won, extended, v, nothing]
}

export function adapterType(a: RabbitMqAdapter): unknown {
	return a.start
}
`

// The classes are drop-in implementations of flowcraft's interfaces.
const FLOWCRAFT_COMPAT = `import type { IAsyncContext, ICoordinationStore } from 'flowcraft'
import { PostgresContext, RedisCoordinationStore } from '${PKG}'

export const context: IAsyncContext = new PostgresContext('run-1', { client: 'postgres://127.0.0.1/test', tableName: 'flowcraft_contexts' })
export const store: ICoordinationStore = new RedisCoordinationStore('redis://127.0.0.1:6379')
`

// Code that must not compile. '// ERROR' marks the line the error must be reported on.
const MUST_FAIL = {
	'wrong_queue_name_type.ts': README_WORKER_EXAMPLE.replace("queueName: 'flowcraft-jobs',", 'queueName: 42, // ERROR'),
	'misspelled_option.ts': README_WORKER_EXAMPLE.replace(
		"queueName: 'flowcraft-jobs',",
		"queueNmae: 'flowcraft-jobs', // ERROR",
	),
	'context_without_table.ts': `import { PostgresContext } from '${PKG}'
export const ctx = new PostgresContext('run-1', { client: 'postgres://127.0.0.1/test' }) // ERROR
`,
	'increment_without_ttl.ts': `import { RedisCoordinationStore } from '${PKG}'
export async function f() {
	const store = new RedisCoordinationStore('redis://127.0.0.1:6379')
	return store.increment('k') // ERROR
}
`,
	'increment_is_a_number.ts': `import { RedisCoordinationStore } from '${PKG}'
export async function f() {
	const store = new RedisCoordinationStore('redis://127.0.0.1:6379')
	const s: string = await store.increment('k', 60) // ERROR
	return s
}
`,
	'patch_unknown_op.ts': `import { PostgresContext } from '${PKG}'
export async function f() {
	const ctx = new PostgresContext('run-1', { client: 'postgres://127.0.0.1/test', tableName: 't' })
	await ctx.patch([{ op: 'merge', key: 'k', value: 1 }]) // ERROR
}
`,
	'payload_needs_narrowing.ts': `import { RabbitMqAdapter } from '${PKG}'
export async function f(a: RabbitMqAdapter) {
	const r = await a.waitForRun('r1')
	return r.payload.context // ERROR
}
`,
	'start_run_options_typo.ts': `import { RabbitMqAdapter } from '${PKG}'
export async function f(a: RabbitMqAdapter) {
	return a.startRun('bp', {}, { runid: 'x' }) // ERROR
}
`,
	'reconcile_is_a_set.ts': `import { RabbitMqAdapter } from '${PKG}'
export async function f(a: RabbitMqAdapter) {
	const ids: string[] = await a.reconcile('r1') // ERROR
	return ids
}
`,
}

// The run API, the reconciler and stopOnSignals, with the documented result types.
const RUNS_API_USAGE = `import {
	RabbitMqAdapter, RedisCoordinationStore, createRabbitMqReconciler, stopOnSignals, ErrorCodes,
	type RunInfo, type RunResult, type RunSummary, type AdapterStats, type DeadLetter, type NodeState, type ReconciliationStats,
} from '${PKG}'

export async function f() {
	const a = new RabbitMqAdapter({
		amqpConnection: 'amqp://127.0.0.1', pgClient: 'postgres://127.0.0.1/test',
		coordinationStore: new RedisCoordinationStore('redis://127.0.0.1:6379'),
		handleSignals: true,
		exitOnStartFailure: false,
		startRetryMs: 5000,
		runtimeOptions: { registry: {}, blueprints: {} },
	})
	const started: { runId: string; created: boolean } = await a.startRun('bp', { k: 1 }, { runId: 'r1', idempotencyKey: 'k' })
	const r: RunResult<{ total: number }> = await a.waitForRun<{ total: number }>(started.runId, { timeoutMs: 1000 })
	if (r.status === 'completed') {
		const total: number = r.payload.context.total
		const text: string = r.payload.serializedContext
		void total, text
	} else if (r.status === 'failed' || r.status === 'cancelled') {
		const why: string = r.reason
		void why
	}
	const run: RunInfo | undefined = await a.getRun('r1')
	const state: NodeState | undefined = run?.nodes[0]?.state
	const when: Date | undefined = run?.updatedAt
	const list: RunSummary[] = await a.listRuns({ status: 'running', limit: 5 })
	const enqueued: Set<string> = await a.reconcile('r1', { staleAfterMs: 0 })
	const resumed: Set<string> = await a.resumeWithAction('r1', 'approve', { by: 'ada' })
	const cancelled: boolean = await a.cancelRun('r1')
	const cancelled2: boolean = await a.cancelRun('r1', 'why')
	const stats: AdapterStats = a.stats()
	const p99: number = stats.p99Ms
	const dead: DeadLetter[] = await a.deadLetters({ limit: 10 })
	const deadAt: Date | undefined = dead[0]?.deadAt
	const moved: number = await a.requeueDeadLetters({ limit: 10 })
	const table: string = a.statusTableName
	const reconciler = createRabbitMqReconciler({ adapter: a, stalledThresholdSeconds: 60, onProgress: (p) => void p.enqueued?.size })
	const counts: ReconciliationStats = await reconciler.run()
	const remove: () => void = stopOnSignals(a, { signals: ['SIGTERM'], timeoutMs: 1000 })
	const code: 'ERR_TIMEOUT' = ErrorCodes.TIMEOUT
	const notFound: 'ERR_RUN_NOT_FOUND' = ErrorCodes.RUN_NOT_FOUND
	const noTable: 'ERR_TABLE_NOT_FOUND' = ErrorCodes.TABLE_NOT_FOUND
	await a.close()
	void state, when, list, enqueued, resumed, cancelled, cancelled2, p99, deadAt, moved, table, counts, remove, code, notFound, noTable
}
`

const tmpDirs = []

afterAll(() => {
	for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true })
})

function tscPath() {
	return require.resolve('typescript/bin/tsc', { paths: [ROOT] })
}

/** The module settings users compile with (`tsc --init` gives nodenext). */
const MODULE_SETTINGS = ['commonjs', 'nodenext', 'bundler']

/**
 * A node_modules folder for the throw-away projects: every package of the
 * repository's, plus this package itself under its name (so it resolves through
 * its own package.json and exports map, as it does once installed).
 */
let linkedModules
function nodeModulesDir() {
	if (linkedModules) return linkedModules
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowcraft-types-modules-'))
	tmpDirs.push(dir)
	const nm = path.join(dir, 'node_modules')
	fs.mkdirSync(path.join(nm, '@flowcraft'), { recursive: true })
	for (const entry of fs.readdirSync(path.join(ROOT, 'node_modules'))) {
		if (entry.startsWith('.')) continue
		fs.symlinkSync(path.join(ROOT, 'node_modules', entry), path.join(nm, entry), 'dir')
	}
	fs.symlinkSync(ROOT, path.join(nm, PKG), 'dir')
	linkedModules = nm
	return nm
}

/**
 * Write a throw-away TypeScript project: `files` (name -> source), node_modules
 * holding the repository's packages and this one. Compiles under `strict` and
 * `exactOptionalPropertyTypes` (what a fresh `tsc --init` turns on) with one of
 * the module settings: `commonjs` (node10 resolution), `nodenext` (an ES module
 * project, "type": "module") or `bundler`. Runs `tsc --noEmit -p` and returns
 * { status, output, diagnostics }.
 */
function compile(files, { skipLibCheck = true, strict = true, module = 'commonjs' } = {}) {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowcraft-types-'))
	tmpDirs.push(dir)
	fs.symlinkSync(nodeModulesDir(), path.join(dir, 'node_modules'), 'dir')
	for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text)
	const moduleOptions = {
		commonjs: { module: 'commonjs', moduleResolution: 'node10', esModuleInterop: true },
		nodenext: { module: 'nodenext', moduleResolution: 'nodenext' },
		bundler: { module: 'esnext', moduleResolution: 'bundler' },
	}[module]
	if (!moduleOptions) throw new Error(`unknown module setting ${module}`)
	if (module === 'nodenext') fs.writeFileSync(path.join(dir, 'package.json'), '{ "type": "module" }\n')
	const tsconfig = {
		compilerOptions: {
			strict,
			exactOptionalPropertyTypes: strict,
			noUncheckedIndexedAccess: strict,
			noEmit: true,
			target: 'es2022',
			lib: ['es2022'],
			...moduleOptions,
			skipLibCheck,
			types: ['node'],
			// node10 resolution ignores "exports": flowcraft publishes ESM with an exports map only
			...(module === 'commonjs'
				? { paths: { flowcraft: [path.join(ROOT, 'node_modules/flowcraft/dist/index.d.mts')] } }
				: {}),
		},
		files: Object.keys(files),
	}
	fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2))
	const r = spawnSync(process.execPath, [tscPath(), '--noEmit', '--pretty', 'false', '-p', dir], {
		cwd: dir,
		encoding: 'utf8',
		timeout: 120000,
	})
	if (r.error) throw r.error
	const output = `${r.stdout || ''}${r.stderr || ''}`.trim()
	const diagnostics = []
	for (const line of output.split('\n')) {
		const m = /^(.+?)\((\d+),(\d+)\): error (TS\d+): (.*)$/.exec(line)
		if (m)
			diagnostics.push({ file: path.resolve(dir, m[1]), name: m[1], line: Number(m[2]), code: m[4], message: m[5] })
	}
	return { dir, status: r.status, output, diagnostics }
}

function markedLine(text) {
	const idx = text.split('\n').findIndex((l) => l.includes('// ERROR'))
	if (idx < 0) throw new Error('no // ERROR marker')
	return idx + 1
}

describe('type declarations (tsc --noEmit)', () => {
	test('the package declares its types and the type dependencies are installed', () => {
		expect(fs.existsSync(path.join(ROOT, 'index.d.ts'))).toBe(true)
		const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'))
		expect(pkg.types || pkg.typings).toBe('index.d.ts')
		const missing = ['typescript', '@types/node', '@types/pg', 'amqplib', 'pg', 'ioredis'].filter((name) => {
			try {
				fs.accessSync(path.join(ROOT, 'node_modules', name, 'package.json'))
				return false
			} catch {
				return true
			}
		})
		// pg ships no types (@types/pg); amqplib 2 and ioredis ship their own, so @types/amqplib is not needed
		expect({ missingDevDependencies: missing }).toEqual({ missingDevDependencies: [] })
		const own = (name) => JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', name, 'package.json'), 'utf8'))
		expect({ amqplib: !!own('amqplib').types, ioredis: !!own('ioredis').types }).toEqual({
			amqplib: true,
			ioredis: true,
		})
	})

	test("the seed README's worker example compiles verbatim (strict, with the environment variables typed)", () => {
		const r = compile({ 'env.d.ts': ENV_DTS, 'shared.ts': SHARED_LOOSE, 'worker.ts': README_WORKER_EXAMPLE })
		expect(r.output).toBe('')
		expect(r.status).toBe(0)
	})

	test("the seed README's worker example compiles with a registry and blueprints typed with flowcraft types", () => {
		const r = compile({ 'env.d.ts': ENV_DTS, 'shared.ts': SHARED_FLOWCRAFT, 'worker.ts': README_WORKER_EXAMPLE })
		expect(r.output).toBe('')
		expect(r.status).toBe(0)
	})

	test.each(MODULE_SETTINGS)(
		'every method of PostgresContext and RedisCoordinationStore is typed as documented (module %s)',
		(module) => {
			const r = compile({ 'api.ts': API_USAGE }, { module })
			expect(r.output).toBe('')
			expect(r.status).toBe(0)
		},
	)

	test.each(MODULE_SETTINGS)(
		'the run API, the reconciler and stopOnSignals are typed as documented (module %s)',
		(module) => {
			const r = compile({ 'runs.ts': RUNS_API_USAGE }, { module })
			expect(r.output).toBe('')
			expect(r.status).toBe(0)
		},
	)

	test.each(MODULE_SETTINGS)(
		"the classes implement flowcraft's IAsyncContext and ICoordinationStore (module %s)",
		(module) => {
			const r = compile({ 'compat.ts': FLOWCRAFT_COMPAT }, { module })
			expect(r.output).toBe('')
			expect(r.status).toBe(0)
		},
	)

	test("the package's own declaration files have no errors (skipLibCheck off)", () => {
		const r = compile(
			{ 'env.d.ts': ENV_DTS, 'shared.ts': SHARED_LOOSE, 'worker.ts': README_WORKER_EXAMPLE, 'api.ts': API_USAGE },
			{ skipLibCheck: false },
		)
		// third-party declaration files are not ours to fix: keep the package's own files and the project's
		const ownFile = (f) => !f.split(path.sep).includes('node_modules')
		const own = r.diagnostics
			.filter((d) => ownFile(d.file))
			.map((d) => `${path.relative(ROOT, d.file)}(${d.line}): ${d.code} ${d.message}`)
		expect(own).toEqual([])
		expect(r.diagnostics.length === 0 || r.status !== 0).toBe(true)
	})

	test('wrong code does not compile: each error is reported on its own line', () => {
		const files = { 'env.d.ts': ENV_DTS, 'shared.ts': SHARED_LOOSE, 'worker.ts': README_WORKER_EXAMPLE, ...MUST_FAIL }
		for (const [name, text] of Object.entries(MUST_FAIL)) {
			expect({ name, marked: text.includes('// ERROR') }).toEqual({ name, marked: true })
		}
		const r = compile(files)
		expect(r.status).not.toBe(0)
		for (const [name, text] of Object.entries(MUST_FAIL)) {
			const line = markedLine(text)
			const hits = r.diagnostics.filter((d) => d.name === name && d.line === line)
			expect({ name, line, reported: hits.length > 0, output: hits.length ? '' : r.output }).toEqual({
				name,
				line,
				reported: true,
				output: '',
			})
		}
		// and nothing else fails: the correct files beside them stay clean
		const unexpected = r.diagnostics.filter((d) => !(d.name in MUST_FAIL))
		expect(unexpected).toEqual([])
	})

	const seedExists = fs.existsSync(SEED_README)
	;(seedExists ? test : test.skip)('the example above is still the seed README example, verbatim', () => {
		const md = fs.readFileSync(SEED_README, 'utf8')
		const m = /#### `worker\.ts`\s*\n```typescript\n([\s\S]*?)```/.exec(md)
		expect(m).not.toBeNull()
		expect(m[1]).toBe(README_WORKER_EXAMPLE)
	})

	// The TypeScript examples of the package's own README and of the docs it links to
	// (docs/*.md), as a user copies them into a fresh project: worker.ts, client.ts and
	// shared.ts under their names (they import each other), every other block that
	// imports the package as a file of its own; no typed environment variables;
	// strict + exactOptionalPropertyTypes, in each module setting.
	const docsDir = path.join(ROOT, 'docs')
	const readmePaths = [
		path.join(ROOT, 'README.md'),
		...fs
			.readdirSync(docsDir)
			.filter((f) => f.endsWith('.md'))
			.sort()
			.map((f) => path.join(docsDir, f)),
	]
	const readmeFiles = () => {
		const md = readmePaths.map((p) => fs.readFileSync(p, 'utf8')).join('\n')
		const files = {}
		let i = 0
		for (const m of md.matchAll(/(?:#### `([\w.]+\.ts)`\s*\n)?```(?:ts|typescript)\n([\s\S]*?)```/g)) {
			const src = m[2]
			const named = m[1] || (src.includes('export const agentNodeRegistry') ? 'shared.ts' : undefined)
			if (named) files[named] = src
			else if (src.includes(`from '${PKG}'`) || src.includes(`from "${PKG}"`))
				files[`readme_${i++}.ts`] = `${src}\nexport {}\n`
		}
		return files
	}
	test('the package README names its worker.ts, client.ts and shared.ts examples', () => {
		expect(
			Object.keys(readmeFiles())
				.filter((n) => !n.startsWith('readme_'))
				.sort(),
		).toEqual(['client.ts', 'shared.ts', 'worker.ts'])
	})
	test.each(MODULE_SETTINGS)("the package README's TypeScript examples compile (module %s)", (module) => {
		const r = compile(readmeFiles(), { module })
		expect(r.output).toBe('')
		expect(r.status).toBe(0)
	})
})
