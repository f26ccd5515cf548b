'use strict'

// Failures that used to be slow, silent or misleading, against the real services:
// waitForRun on an unknown run, an unreachable Redis at start(), a worker that cannot
// start (and is not awaited) lingering forever, an amqplib connection whose
// credentials are assumed, createTables: false with missing tables, and a function
// nested in a node's output. Each test owns its queue, tables and run ids.

const path = require('node:path')
const { spawn } = require('node:child_process')
const amqplib = require('amqplib')
const S = require('./helpers/services')
const { runsEnv, silent, recordingLogger } = require('./helpers/runs-env')
const { RabbitMqAdapter, RedisCoordinationStore, ErrorCodes } = require('..')

const res = S.useResources()
const setup = runsEnv(res)

jest.setTimeout(60000)

describe('waitForRun', () => {
	test('a run that does not exist rejects at once with ERR_RUN_NOT_FOUND, not after the timeout', async () => {
		const env = setup('wait_nf')
		const client = env.adapter()
		await client.startRun('quick', {}, { runId: env.runId('exists') }) // the tables exist
		const t0 = Date.now()
		const err = await S.captureError(() => client.waitForRun(env.runId('missing'), { timeoutMs: 20000 }))
		expect(err.code).toBe('ERR_RUN_NOT_FOUND')
		expect(ErrorCodes.RUN_NOT_FOUND).toBe('ERR_RUN_NOT_FOUND')
		expect(err.message).toMatch(/there is no run "t_missing_/)
		expect(Date.now() - t0).toBeLessThan(5000)
	})

	test('a run whose startRun() is still in flight, or that another process starts a moment later, is waited for', async () => {
		const env = setup('wait_race')
		const worker = env.adapter()
		await worker.start()
		const client = env.adapter()
		// startRun() not awaited before waitForRun(): the same adapter waits for it
		const first = env.runId('first')
		const started = client.startRun('quick', {}, { runId: first })
		const waited = await client.waitForRun(first, { timeoutMs: 20000 })
		expect(waited.status).toBe('completed')
		expect((await started).created).toBe(true)
		// started by another adapter 300 ms after waitForRun() was called
		const second = env.runId('second')
		const other = env.adapter()
		await other.getRun('warm-up') // connect first, so the start comes soon after the timer
		const later = new Promise((resolve, reject) =>
			setTimeout(() => other.startRun('quick', {}, { runId: second }).then(resolve, reject), 300),
		)
		const result = await client.waitForRun(second, { timeoutMs: 20000 })
		expect(result.status).toBe('completed')
		await later
	})
})

describe('start() checks the coordination store', () => {
	test('an unreachable Redis fails start() with ERR_REDIS_CONNECT naming Redis, at once', async () => {
		const env = setup('redis_down')
		const adapter = env.adapter({
			coordinationStore: new RedisCoordinationStore(S.REFUSED_REDIS_URL),
			startRetryMs: 0,
		})
		const t0 = Date.now()
		const err = await S.captureError(() => adapter.start())
		expect(err.code).toBe('ERR_REDIS_CONNECT')
		expect(err.message).toMatch(/Redis \(the coordination store\) does not answer/)
		expect(err.message).toMatch(/127\.0\.0\.1:1/)
		expect(Date.now() - t0).toBeLessThan(10000)
	})

	test("a user's coordination store whose get() fails fails start() too; one that answers is read once, never written", async () => {
		const env = setup('custom_down')
		const calls = []
		const store = (fail) => ({
			increment: async () => calls.push('increment'),
			setIfNotExist: async () => calls.push('setIfNotExist'),
			extendTTL: async () => calls.push('extendTTL'),
			delete: async () => calls.push('delete'),
			get: async (key) => {
				calls.push(`get ${key}`)
				if (fail) throw new Error('ECONNREFUSED 127.0.0.1:1')
				return undefined
			},
		})
		const broken = env.adapter({ coordinationStore: store(true), startRetryMs: 0 })
		const err = await S.captureError(() => broken.start())
		expect(err.code).toBe('ERR_REDIS_CONNECT')
		expect(err.message).toMatch(/the coordination store \(your ICoordinationStore, usually Redis\) does not answer/)
		expect(err.message).toMatch(/ECONNREFUSED/)
		calls.length = 0
		const fine = env.adapter({ coordinationStore: store(false) })
		await fine.start()
		expect(calls).toEqual(['get flowcraft:probe'])
	})
})

/** Runs helpers/start-failure-worker.js; resolves with { code, output, ms } when it exits (or it is killed after killAfterMs). */
function runStartFailureWorker(env, extraEnv, killAfterMs = 20000) {
	const child = spawn(process.execPath, [path.join(__dirname, 'helpers', 'start-failure-worker.js')], {
		env: {
			...process.env,
			QUEUE: env.queue,
			CTX_TABLE: env.ctxTable,
			STATUS_TABLE: env.statusTable,
			POSTGRES_URL: S.POSTGRES_URL,
			REDIS_URL: S.REDIS_URL,
			...extraEnv,
		},
		stdio: ['ignore', 'pipe', 'pipe'],
	})
	let output = ''
	child.stdout.on('data', (d) => (output += d))
	child.stderr.on('data', (d) => (output += d))
	const t0 = Date.now()
	const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs)
	return new Promise((resolve) =>
		child.once('exit', (code, signal) => {
			clearTimeout(timer)
			resolve({ code, signal, output, ms: Date.now() - t0 })
		}),
	)
}

describe('a worker that cannot start does not linger', () => {
	const wrongPassword = () => S.RABBITMQ_URL.replace(/\/\/([^:@/]+)(:[^@/]*)?@/, '//$1:wrong-password@')

	test('adapter.start() not awaited, a wrong RabbitMQ password: logged, and the process exits with status 1 at once', async () => {
		const env = setup('exit_auth')
		const r = await runStartFailureWorker(env, { AMQP_URL_UNDER_TEST: wrongPassword() })
		expect({ code: r.code, signal: r.signal }).toEqual({ code: 1, signal: null })
		expect(r.output).toMatch(/Worker failed to start: cannot connect to RabbitMQ.*ACCESS_REFUSED/)
		expect(r.output).toMatch(/nothing handles adapter\.start\(\)'s promise: exiting with status 1/)
		expect(r.output).not.toMatch(/retrying/) // a refused login cannot heal
		expect(r.ms).toBeLessThan(10000)
	})

	test('a refused connection is retried with logging for startRetryMs, then the process exits with status 1', async () => {
		const env = setup('exit_refused')
		const r = await runStartFailureWorker(env, {
			AMQP_URL_UNDER_TEST: 'amqp://guest:guest@127.0.0.1:1',
			START_RETRY_MS: '1500',
		})
		expect({ code: r.code, signal: r.signal }).toEqual({ code: 1, signal: null })
		expect(r.output).toMatch(/Worker could not start \(attempt 1\), retrying in \d+ ms/)
		expect(r.output).toMatch(/Connection refused.*gave up after \d+ attempts/)
		expect(r.ms).toBeGreaterThanOrEqual(1400)
		expect(r.ms).toBeLessThan(10000)
	})

	test('an awaited start() that fails rejects to its handler, and the process is left alone', async () => {
		const env = setup('exit_handled')
		const r = await runStartFailureWorker(env, { AMQP_URL_UNDER_TEST: wrongPassword(), AWAIT_START: '1' })
		expect(r.output).toMatch(/HANDLED ERR_AMQP_CONNECT/)
		expect(r.output).not.toMatch(/exiting with status 1/)
		expect({ code: r.code, signal: r.signal }).toEqual({ code: 0, signal: null })
	})

	test('exitOnStartFailure: false keeps the process alive (the failure is only logged)', async () => {
		const env = setup('exit_false')
		const r = await runStartFailureWorker(env, {
			AMQP_URL_UNDER_TEST: wrongPassword(),
			EXIT_ON_START_FAILURE: 'false',
			LINGER_MS: '2500',
		})
		expect(r.output).toMatch(/Worker failed to start/)
		expect(r.output).not.toMatch(/exiting with status 1/)
		expect({ code: r.code, signal: r.signal }).toEqual({ code: 0, signal: null })
		expect(r.ms).toBeGreaterThanOrEqual(2400)
	})

	test('exitOnStartFailure is validated', () => {
		const env = setup('exit_bad')
		expect(() => env.adapter({ exitOnStartFailure: 'yes' })).toThrow(
			expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringMatching(/exitOnStartFailure/) }),
		)
	})
})

describe('assumed AMQP credentials', () => {
	test('an amqplib connection with no amqpUrl, RABBITMQ_URL or AMQP_URL warns that guest on / is used', async () => {
		const env = setup('amqp_assumed')
		const conn = await amqplib.connect(S.RABBITMQ_URL)
		res.onCleanup(() => conn.close().catch(() => {}))
		const saved = { RABBITMQ_URL: process.env.RABBITMQ_URL, AMQP_URL: process.env.AMQP_URL }
		delete process.env.RABBITMQ_URL
		delete process.env.AMQP_URL
		try {
			const assumed = recordingLogger()
			env.adapter({ amqpConnection: conn, logger: assumed })
			const warnings = assumed.lines.filter((l) => l.level === 'warn').map((l) => l.message)
			expect(warnings).toEqual([
				expect.stringMatching(/connects as guest:guest to the vhost '\/'.*pass its URL as amqpUrl/),
			])
			const given = recordingLogger()
			env.adapter({ amqpConnection: conn, amqpUrl: S.RABBITMQ_URL, logger: given })
			expect(given.lines.filter((l) => l.level === 'warn')).toEqual([])
		} finally {
			for (const [k, v] of Object.entries(saved)) if (v !== undefined) process.env[k] = v
		}
	})
})

describe('createTables: false', () => {
	test('missing tables fail start() and the run API with ERR_TABLE_NOT_FOUND naming the option and the fix', async () => {
		const env = setup('no_tables')
		const adapter = env.adapter({ createTables: false })
		const err = await S.captureError(() => adapter.start())
		expect(err.code).toBe('ERR_TABLE_NOT_FOUND')
		expect(err.message).toMatch(/does not exist, and with createTables: false the adapter creates no table/)
		expect(err.message).toContain(`"${env.ctxTable}" and "${env.statusTable}"`)
		expect(err.message).toMatch(/createTables: true.*CREATE TABLE/)
		const client = env.adapter({ createTables: false })
		const runErr = await S.captureError(() => client.getRun('r1'))
		expect(runErr.code).toBe('ERR_TABLE_NOT_FOUND')
		expect(await S.tableExists(env.statusTable)).toBe(false)
	})
})

describe('node outputs', () => {
	test('a function nested in an output fails the run with its key path instead of being dropped', async () => {
		const env = setup('nested_fn')
		const adapter = new RabbitMqAdapter({
			amqpConnection: S.RABBITMQ_URL,
			pgClient: S.POSTGRES_URL,
			coordinationStore: new RedisCoordinationStore(S.REDIS_URL),
			queueName: env.queue,
			contextTableName: env.ctxTable,
			statusTableName: env.statusTable,
			runtimeOptions: {
				registry: { withFn: async () => ({ output: { ok: 1, nested: { f: () => 1 } } }) },
				blueprints: { fn: { id: 'fn', nodes: [{ id: 'a', uses: 'withFn' }], edges: [] } },
				logger: silent,
			},
		})
		res.onCleanup(() => adapter.stop({ timeoutMs: 2000 }))
		await adapter.start()
		const { runId } = await adapter.startRun('fn', {}, { runId: env.runId('fn') })
		const result = await adapter.waitForRun(runId, { timeoutMs: 20000 })
		expect(result.status).toBe('failed')
		expect(result.reason).toMatch(/Node 'a' .*holds a function at key path output\.nested\.f/)
	})
})

describe('error.transient', () => {
	test('the core marks what may heal: a refused connection is transient, a refused login or a missing vhost is not', async () => {
		const env = setup('transient')
		const opts = { startRetryMs: 0, exitOnStartFailure: false }
		const refused = await S.captureError(() =>
			env.adapter({ ...opts, amqpConnection: 'amqp://guest:guest@127.0.0.1:1' }).start(),
		)
		expect(refused).toMatchObject({ code: 'ERR_AMQP_CONNECT', transient: true })
		const login = S.RABBITMQ_URL.replace(/\/\/([^:@/]+)(:[^@]*)?@/, '//$1:not-the-password@')
		const badLogin = await S.captureError(() => env.adapter({ ...opts, amqpConnection: login }).start())
		expect(badLogin.code).toBe('ERR_AMQP_CONNECT')
		expect(badLogin.transient).toBeUndefined()
		const noVhost = await S.captureError(() =>
			env.adapter({ ...opts, amqpConnection: `${S.RABBITMQ_URL.replace(/\/+$/, '')}/no-such-vhost` }).start(),
		)
		expect(noVhost.transient).toBeUndefined()
		const noDb = await S.captureError(() =>
			env.adapter({ ...opts, pgClient: S.pgUrlForDatabase('no_such_db') }).start(),
		)
		expect(noDb.code).toBe('ERR_PG_CONNECT')
		expect(noDb.transient).toBeUndefined()
	})
})
