'use strict'
/**
 * Run ids, queue names and timings are checked once, at the API edge, with coded
 * errors and the limits the README states: a run id is non-empty, has no NUL and at
 * most 4096 bytes (the NOTIFY announcing its end must fit in 8000 bytes); a queue name
 * has at most 250 bytes everywhere and does not start with the reserved `amq.`.
 */
const S = require('./helpers/services')
const { runsEnv } = require('./helpers/runs-env')
const { blueprints } = require('./helpers/runs-fixtures')
const { RabbitMqAdapter, RedisCoordinationStore, PostgresContext } = require('..')

const res = S.useResources()
const setup = runsEnv(res)

jest.setTimeout(60000)

const base = () => ({
	amqpConnection: S.RABBITMQ_URL,
	pgClient: S.POSTGRES_URL,
	coordinationStore: new RedisCoordinationStore(S.REDIS_URL),
	runtimeOptions: { registry: {}, blueprints },
})

const codeOf = async (p) => {
	try {
		await p
		return 'resolved'
	} catch (e) {
		return e.code
	}
}

describe('queue names', () => {
	test("a name starting with 'amq.' is refused by the constructor, not at start()", () => {
		expect(() => new RabbitMqAdapter({ ...base(), queueName: 'amq.jobs' })).toThrow(
			expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringContaining("'amq.'") }),
		)
	})

	test('over 250 bytes is refused by the constructor', () => {
		expect(() => new RabbitMqAdapter({ ...base(), queueName: 'é'.repeat(126) })).toThrow(
			expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringContaining('250 bytes') }),
		)
	})

	test('a 250-byte name accepted by the constructor also starts (one limit everywhere)', async () => {
		const env = setup('qlen')
		const queueName = `${env.queue}_${'q'.repeat(250 - env.queue.length - 1)}`
		expect(Buffer.byteLength(queueName)).toBe(250)
		res.onCleanup(() => S.deleteQueues([queueName, `${queueName}.dead`]))
		const adapter = env.adapter({ queueName })
		await expect(adapter.start()).resolves.toBeUndefined()
	})
})

describe('run ids', () => {
	test('too long (over 4096 bytes) or with a NUL: ERR_INVALID_ARGUMENT from every run call, nothing stored', async () => {
		const env = setup('rid')
		const client = env.adapter()
		const long = 'r'.repeat(4097)
		const nul = `a\u0000b`
		for (const runId of [long, nul]) {
			expect(await codeOf(client.startRun('two-starts', {}, { runId }))).toBe('ERR_INVALID_ARGUMENT')
			expect(await codeOf(client.waitForRun(runId, { timeoutMs: 10 }))).toBe('ERR_INVALID_ARGUMENT')
			expect(await codeOf(client.getRun(runId))).toBe('ERR_INVALID_ARGUMENT')
			expect(await codeOf(client.cancelRun(runId))).toBe('ERR_INVALID_ARGUMENT')
			expect(() => new PostgresContext(runId, { client: S.POSTGRES_URL, tableName: env.ctxTable })).toThrow(
				expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }),
			)
		}
		expect(await S.tableExists(env.statusTable)).toBe(false)
	})

	test('4096 bytes is accepted, and the run completes', async () => {
		const env = setup('ridmax')
		const worker = env.adapter()
		await worker.start()
		const runId = `${env.runId('m')}${'x'.repeat(4096)}`.slice(0, 4096)
		env.runIds.push(runId)
		await worker.startRun('two-starts', {}, { runId })
		const out = await worker.waitForRun(runId, { timeoutMs: 30000 })
		expect(out.status).toBe('completed')
	})
})

describe('timings', () => {
	test('unknown settings, bad values and inverted backoffs are refused at construction', () => {
		for (const timings of [
			{ pgQueryTimeout: 5000 },
			{ pgQueryTimeoutMs: -1 },
			{ pgQueryTimeoutMs: 0 },
			{ amqpHeartbeatMs: '10s' },
			{ pgKeepaliveRetries: 1.5 },
			{ reconnectMinMs: 5000, reconnectMaxMs: 1000 },
			{ pgPoolSize: 0 },
			{ pgPoolSize: 2.5 },
			{ pgPoolSize: 101 },
			{ startRetryMs: -1 },
			[],
		]) {
			expect(() => new RabbitMqAdapter({ ...base(), timings })).toThrow(
				expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }),
			)
		}
		expect(() => new RabbitMqAdapter({ ...base(), timings: { pgQueryTimeoutMs: 5000, stopGraceMs: 0 } })).not.toThrow()
		expect(() => new RabbitMqAdapter({ ...base(), timings: { pgPoolSize: 2, startRetryMs: 0 } })).not.toThrow()
	})

	test('startRetryMs: the top-level option and timings.startRetryMs are one setting', () => {
		expect(() => new RabbitMqAdapter({ ...base(), startRetryMs: 0, timings: { startRetryMs: 0 } })).not.toThrow()
		expect(() => new RabbitMqAdapter({ ...base(), startRetryMs: 0, timings: { startRetryMs: 5 } })).toThrow(
			expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }),
		)
	})
})
