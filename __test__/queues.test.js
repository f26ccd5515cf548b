'use strict'

// Queues that operators declare (quorum queues, extra arguments) are used as they
// are; queueType / queueArguments declare missing ones and refuse a mismatch; a
// list of broker URLs (a cluster's nodes) is tried in turn.

const amqplib = require('amqplib')
const S = require('./helpers/services')
const { runsEnv } = require('./helpers/runs-env')

const res = S.useResources()
const setup = runsEnv(res)

jest.setTimeout(60000)

async function withChannel(fn) {
	const conn = await amqplib.connect(S.RABBITMQ_URL)
	try {
		const ch = await conn.createChannel()
		ch.on('error', () => {})
		return await fn(ch)
	} finally {
		await conn.close().catch(() => {})
	}
}

/** Whether `queue` exists with these arguments (a redeclare with others is refused with 406). */
async function declaredAs(queue, args) {
	return withChannel(async (ch) => {
		try {
			await ch.assertQueue(queue, { durable: true, arguments: args })
			return true
		} catch (e) {
			if (/PRECONDITION_FAILED/.test(e.message)) return false
			throw e
		}
	})
}

async function runsToCompletion(adapter) {
	await adapter.start()
	const { runId } = await adapter.startRun('quick', { testRunId: 'q' }, { runId: S.uniqueName('q_run') })
	expect((await adapter.waitForRun(runId, { timeoutMs: 30000 })).status).toBe('completed')
}

test('a job queue an operator pre-declared as a quorum queue is used as it is', async () => {
	const env = setup('quorum_pre')
	res.onCleanup(() => S.deleteQueues([env.queue]))
	await withChannel((ch) => ch.assertQueue(env.queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } }))
	await runsToCompletion(env.adapter())
	expect(await declaredAs(env.queue, { 'x-queue-type': 'quorum' })).toBe(true)
})

test("queueType: 'quorum' and queueArguments declare both queues so", async () => {
	const env = setup('quorum_new')
	res.onCleanup(() => S.deleteQueues([env.queue]))
	const args = { 'x-queue-type': 'quorum', 'x-max-length': 100000 }
	await runsToCompletion(env.adapter({ queueType: 'quorum', queueArguments: { 'x-max-length': 100000 } }))
	expect(await declaredAs(env.queue, args)).toBe(true)
	expect(await declaredAs(`${env.queue}.dead`, args)).toBe(true)
	expect(await declaredAs(env.queue, { 'x-queue-type': 'classic' })).toBe(false)
})

test('a queue that exists as another type than queueType asks is a clear error', async () => {
	const env = setup('quorum_mismatch')
	res.onCleanup(() => S.deleteQueues([env.queue]))
	await withChannel((ch) => ch.assertQueue(env.queue, { durable: true }))
	await expect(env.adapter({ queueType: 'quorum' }).start()).rejects.toMatchObject({
		code: 'ERR_QUEUE_MISMATCH',
		message: expect.stringContaining(env.queue),
	})
})

test('bad queue options are refused at construction', () => {
	const env = setup('quorum_bad')
	expect(() => env.adapter({ queueType: 'stream' })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }))
	expect(() => env.adapter({ queueArguments: { 'x-max-length': {} } })).toThrow(
		expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringMatching(/x-max-length/) }),
	)
	expect(() => env.adapter({ queueType: 'quorum', queueArguments: { 'x-queue-type': 'quorum' } })).toThrow(
		expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }),
	)
})

test('several broker URLs: a node that does not answer is skipped, in the worker and the run API', async () => {
	const env = setup('cluster_urls')
	const down = 'amqp://guest:guest@127.0.0.1:1'
	const adapter = env.adapter({ amqpConnection: [down, S.RABBITMQ_URL, down] })
	// Whichever node the rotation starts at, start() and startRun() reach the live one.
	for (let i = 0; i < 3; i++) {
		const client = env.adapter({ amqpConnection: [down, S.RABBITMQ_URL] })
		const { runId } = await client.startRun('quick', { testRunId: 'u' }, { runId: env.runId('u') })
		if (i === 0) await adapter.start()
		expect((await adapter.waitForRun(runId, { timeoutMs: 30000 })).status).toBe('completed')
	}
	expect(() => env.adapter({ amqpConnection: [] })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }))
})
