'use strict'

// The package as a user gets it: `npm pack`, then `npm install <tarball> amqplib pg
// ioredis tsx` in a fresh folder (the latest versions from the registry, not our dev
// dependencies), then the README's worker and client, in CommonJS, run from there
// against the services and complete a run; the installed CLI prints its version and
// shows that run through the README's TypeScript shared.ts. Everything lives in a
// temporary folder: nothing is left in the repository.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { execFile, spawn } = require('node:child_process')
const S = require('./helpers/services')

const res = S.useResources()
const ROOT = path.resolve(__dirname, '..')
const { version } = require('../package.json')

jest.setTimeout(300000)

// npm run test sets npm_* variables (prefix, package, lifecycle) that must not leak
// into the npm and node processes of the "user's" folder.
const userEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)))

/** Runs a command; resolves with { code, signal, stdout, stderr } (never rejects). */
function run(file, args, { cwd, env = {}, timeout = 120000 } = {}) {
	return new Promise((resolve) => {
		execFile(
			file,
			args,
			{ cwd, env: { ...userEnv, ...env }, timeout, maxBuffer: 32 * 1024 * 1024 },
			(error, stdout, stderr) =>
				resolve({ code: error ? (error.code ?? 1) : 0, signal: error?.signal, stdout, stderr }),
		)
	})
}

const tarballsInRepo = () => fs.readdirSync(ROOT).filter((f) => f.endsWith('.tgz'))

const SHARED_JS = `'use strict'
const agentNodeRegistry = {
	fetchUser: async ({ input }) => ({ output: { id: input, name: 'Ada' } }),
	greet: async ({ input, params }) => ({ output: \`\${params.greeting}, \${input.name}!\` }),
}
const blueprints = {
	greeting: {
		id: 'greeting',
		metadata: { version: '1' },
		nodes: [
			{ id: 'user', uses: 'fetchUser' },
			{ id: 'hello', uses: 'greet', params: { greeting: 'Hello' } },
		],
		edges: [{ source: 'user', target: 'hello' }],
	},
}
module.exports = { agentNodeRegistry, blueprints }
`

// The README's shared.ts, as it is there.
const SHARED_TS = `import type { NodeRegistry, WorkflowBlueprint } from '@flowcraft/rabbitmq-adapter'

export const agentNodeRegistry: NodeRegistry = {
	fetchUser: async ({ input }) => ({ output: { id: input, name: 'Ada' } }),
	greet: async ({ input, params }) => ({ output: \`\${params.greeting}, \${input.name}!\` }),
}

export const blueprints: Record<string, WorkflowBlueprint> = {
	greeting: {
		id: 'greeting',
		metadata: { version: '1' },
		nodes: [
			{ id: 'user', uses: 'fetchUser' },
			{ id: 'hello', uses: 'greet', params: { greeting: 'Hello' } },
		],
		edges: [{ source: 'user', target: 'hello' }],
	},
}
`

// The README's worker.ts in CommonJS (ioredis's class is its named export \`Redis\`,
// which every major since 5 has), with handleSignals so that SIGTERM ends it.
const WORKER_JS = `'use strict'
const { RabbitMqAdapter, RedisCoordinationStore } = require('@flowcraft/rabbitmq-adapter')
const amqplib = require('amqplib')
const { Redis } = require('ioredis')
const { Client: PgClient } = require('pg')
const { agentNodeRegistry, blueprints } = require('./shared')

async function main() {
	const amqpConnection = await amqplib.connect(process.env.RABBITMQ_URL)
	const pgClient = new PgClient({ connectionString: process.env.POSTGRES_URL })
	await pgClient.connect()
	const redisConnection = new Redis(process.env.REDIS_URL)
	const coordinationStore = new RedisCoordinationStore(redisConnection)
	const adapter = new RabbitMqAdapter({
		amqpConnection,
		pgClient,
		coordinationStore,
		queueName: process.env.FLOWCRAFT_QUEUE,
		contextTableName: process.env.FLOWCRAFT_CONTEXT_TABLE,
		statusTableName: process.env.FLOWCRAFT_STATUS_TABLE,
		handleSignals: true,
		runtimeOptions: { registry: agentNodeRegistry, blueprints },
	})
	await adapter.start()
	console.log('Worker is running. Waiting for jobs...')
}

main().catch((err) => {
	console.error(err)
	process.exit(1)
})
`

// The README's client.ts in CommonJS.
const CLIENT_JS = `'use strict'
const { RabbitMqAdapter, RedisCoordinationStore } = require('@flowcraft/rabbitmq-adapter')
const { agentNodeRegistry, blueprints } = require('./shared')

async function main() {
	const client = new RabbitMqAdapter({
		amqpConnection: process.env.RABBITMQ_URL,
		pgClient: process.env.POSTGRES_URL,
		coordinationStore: new RedisCoordinationStore(process.env.REDIS_URL),
		queueName: process.env.FLOWCRAFT_QUEUE,
		contextTableName: process.env.FLOWCRAFT_CONTEXT_TABLE,
		statusTableName: process.env.FLOWCRAFT_STATUS_TABLE,
		runtimeOptions: { registry: agentNodeRegistry, blueprints },
	})
	const { runId } = await client.startRun('greeting', { '_inputs.user': 42 }, { runId: process.env.RUN_ID })
	const result = await client.waitForRun(runId, { timeoutMs: 60000 })
	if (result.status === 'completed') console.log(result.payload.context['_outputs.hello'])
	else console.log(result.status, result.reason)
	await client.close()
}

main().catch((err) => {
	console.error(err)
	process.exit(1)
})
`

describe('the packed package, installed in a fresh folder with the latest clients', () => {
	let tmp
	let app
	let packed
	let install

	beforeAll(async () => {
		expect(tarballsInRepo()).toEqual([])
		tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flowcraft-package-'))
		const packDir = path.join(tmp, 'pack')
		app = path.join(tmp, 'app')
		fs.mkdirSync(packDir)
		fs.mkdirSync(app)
		const pack = await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', packDir], { cwd: ROOT })
		if (pack.code !== 0) throw new Error(`npm pack failed:\n${pack.stderr}`)
		packed = JSON.parse(pack.stdout)[0]
		fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true }, null, 2))
		install = await run(
			'npm',
			[
				'install',
				'--no-audit',
				'--no-fund',
				'--loglevel=error',
				path.join(packDir, packed.filename),
				'amqplib@latest',
				'pg@latest',
				'ioredis@latest',
				'tsx@latest',
			],
			{ cwd: app, timeout: 240000 },
		)
		for (const [name, text] of [
			['shared.js', SHARED_JS],
			['shared.ts', SHARED_TS],
			['worker.js', WORKER_JS],
			['client.js', CLIENT_JS],
		])
			fs.writeFileSync(path.join(app, name), text)
	})

	afterAll(() => {
		if (tmp) fs.rmSync(tmp, { recursive: true, force: true })
		expect(tarballsInRepo()).toEqual([])
	})

	test('the tarball holds the package and its LICENSE, and installs', () => {
		const files = packed.files.map((f) => f.path)
		for (const f of ['LICENSE', 'README.md', 'package.json', 'index.js', 'index.d.ts', 'bin/flowcraft-rabbitmq.js'])
			expect(files).toContain(f)
		expect(files.some((f) => f.endsWith('.node'))).toBe(true)
		expect(files.filter((f) => /^(__test__|core|src|target|bench|chaos|demo)\//.test(f))).toEqual([])
		expect(install.stderr).not.toMatch(/ERR!/)
		expect(install.code).toBe(0)
		const pkg = JSON.parse(fs.readFileSync(path.join(app, 'node_modules/@flowcraft/rabbitmq-adapter/package.json')))
		expect(pkg.version).toBe(version)
	})

	test('the exports map: require, import and package.json; internal files are not part of the API', async () => {
		const script = [
			"const a = require('@flowcraft/rabbitmq-adapter')",
			"if (typeof a.RabbitMqAdapter !== 'function') throw new Error('no RabbitMqAdapter')",
			"console.log(require('@flowcraft/rabbitmq-adapter/package.json').version)",
			"try { require('@flowcraft/rabbitmq-adapter/lib/adapter.js'); console.log('deep') } catch (e) { console.log(e.code) }",
			"import('@flowcraft/rabbitmq-adapter').then((m) => console.log(typeof m.RabbitMqAdapter, typeof m.default.RedisCoordinationStore))",
		].join('\n')
		const r = await run(process.execPath, ['-e', script], { cwd: app })
		expect(r.stderr).toBe('')
		expect(r.stdout).toBe(`${version}\nERR_PACKAGE_PATH_NOT_EXPORTED\nfunction function\n`)
	})

	test("the README's worker and client complete a run; the installed CLI shows it, through shared.ts", async () => {
		const queue = res.queueName('pkg')
		res.onCleanup(() => S.deleteQueues([`${queue}.dead`]))
		const ctxTable = res.trackTable(S.uniqueName('pkg_c'))
		const statusTable = res.trackTable(S.uniqueName('pkg_s'))
		const runId = S.uniqueName('pkgrun')
		res.onCleanup(() => deleteRunKeys(runId))
		const env = {
			RABBITMQ_URL: S.RABBITMQ_URL,
			POSTGRES_URL: S.POSTGRES_URL,
			REDIS_URL: S.REDIS_URL,
			FLOWCRAFT_QUEUE: queue,
			FLOWCRAFT_CONTEXT_TABLE: ctxTable,
			FLOWCRAFT_STATUS_TABLE: statusTable,
			RUN_ID: runId,
		}

		const worker = spawn(process.execPath, ['worker.js'], { cwd: app, env: { ...userEnv, ...env } })
		let output = ''
		worker.stdout.on('data', (d) => {
			output += d
		})
		worker.stderr.on('data', (d) => {
			output += d
		})
		const exited = new Promise((resolve) => worker.on('exit', (code, signal) => resolve({ code, signal })))
		res.onCleanup(() => worker.exitCode === null && worker.signalCode === null && worker.kill('SIGKILL'))
		await S.withTimeout(
			new Promise((resolve, reject) => {
				const check = () => output.includes('Waiting for jobs') && resolve()
				worker.stdout.on('data', check)
				exited.then(() => reject(new Error(`the worker exited before it started:\n${output}`)))
			}),
			60000,
			`the worker's start (output so far: ${output})`,
		)

		const client = await run(process.execPath, ['client.js'], { cwd: app, env })
		expect(client.stderr).toBe('')
		expect(client.stdout).toBe('Hello, Ada!\n')
		expect(client.code).toBe(0)

		const bin = path.join(app, 'node_modules', '.bin', 'flowcraft-rabbitmq')
		const v = await run(bin, ['--version'], { cwd: app })
		expect(v).toMatchObject({ code: 0, stdout: `${version}\n`, stderr: '' })
		const show = await run(bin, ['show', runId, '--blueprints', './shared.ts'], { cwd: app, env })
		expect(show.stderr).toBe('')
		expect(show.code).toBe(0)
		expect(show.stdout).toContain('Blueprint  greeting (version 1)\nStatus     completed\n')
		expect(show.stdout).toContain('\nNODE   USES       STATE\nuser   fetchUser  done\nhello  greet      done\n')
		expect(show.stdout).toMatch(/\n```mermaid\ngraph TD\n[\s\S]*\n```\n$/)
		const dead = await run(bin, ['dead-letters'], { cwd: app, env })
		expect(dead).toMatchObject({ code: 0, stdout: `No dead letters in ${queue}.dead.\n`, stderr: '' })

		worker.kill('SIGTERM')
		const end = await S.withTimeout(exited, 30000, 'the worker ending on SIGTERM')
		expect(end.signal === 'SIGTERM' || end.code === 0).toBe(true)
	})
})

/** Deletes the Redis keys of one run (the adapter's keys start with `flowcraft:` and hold the run id). */
async function deleteRunKeys(runId) {
	const redis = S.redisAdmin()
	let cursor = '0'
	do {
		const [next, keys] = await redis.scan(cursor, 'MATCH', `flowcraft:*${runId}*`, 'COUNT', 1000)
		cursor = next
		if (keys.length) await redis.del(...keys)
	} while (cursor !== '0')
}
