'use strict'

// Hostile messages and links that must not take a worker down or go unencrypted:
// - AMQP headers nested thousands of tables deep (lapin parses them recursively on
//   its I/O thread: with the default 2 MiB stack one such message killed every
//   worker that received it, forever, since the broker redelivers it);
// - `amqps://` against a plaintext listener (lapin without TLS used to connect in
//   plaintext, silently).

const { execFileSync } = require('node:child_process')
const S = require('./helpers/services')
const { runsEnv } = require('./helpers/runs-env')

const res = S.useResources()
const setup = runsEnv(res)

jest.setTimeout(90000)

// amqplib encodes tables recursively too: the publisher runs in a process of its
// own with a stack deep enough for it.
const PUBLISHER = `
const amqplib = require('amqplib')
const [url, queue, body, kind, depth] = process.argv.slice(1)
let evil = kind === 'table' ? { leaf: 1 } : [1]
for (let i = 1; i < Number(depth); i++) evil = kind === 'table' ? { d: evil } : [evil]
;(async () => {
	const conn = await amqplib.connect(url)
	const ch = await conn.createConfirmChannel()
	await ch.assertQueue(queue, { durable: true })
	ch.sendToQueue(queue, Buffer.from(body), { persistent: true, headers: { evil } })
	await ch.waitForConfirms()
	await conn.close()
})().catch((e) => { console.error(e); process.exit(1) })
`

/** Publishes `body` with one header nested `depth` tables or arrays deep. */
function publish(queue, body, kind, depth) {
	execFileSync(
		process.execPath,
		['--stack-size=60000', '-e', PUBLISHER, S.RABBITMQ_URL, queue, JSON.stringify(body), kind, String(depth)],
		{ cwd: __dirname, stdio: ['ignore', 'ignore', 'inherit'], timeout: 30000 },
	)
}

test('a job whose headers nest thousands of tables deep is dead-lettered, and the worker keeps serving', async () => {
	const env = setup('hostile')
	const worker = await env.spawnWorker()
	const runId = env.runId('deep')
	const job = { runId, blueprintId: 'quick', nodeId: 'a' }
	// 2,000 tables is what crashed every worker; arrays nest at 5 bytes a level, so
	// 8,000 is far past any stack a default thread has.
	publish(env.queue, job, 'table', 2000)
	publish(env.queue, job, 'array', 8000)

	const client = env.adapter()
	const { runId: okRun } = await client.startRun('quick', { testRunId: 'ok' }, { runId: env.runId('ok') })
	expect((await client.waitForRun(okRun, { timeoutMs: 30000 })).status).toBe('completed')

	let dead = []
	for (let i = 0; i < 60 && dead.length < 2; i++) {
		dead = await client.deadLetters()
		if (dead.length < 2) await new Promise((r) => setTimeout(r, 250))
	}
	expect(dead).toHaveLength(2)
	for (const d of dead) {
		expect(d.job).toEqual(job)
		expect(d.reason).toMatch(/headers nest \d+ tables deep \(at most 32\)/)
	}
	expect(worker.exitCode).toBeNull()
	expect(worker.signalCode).toBeNull()
	// The hostile run was never started by a node: nothing was written for it.
	expect(await client.getRun(runId)).toBeUndefined()
})

test('amqps:// to a plaintext listener is refused with ERR_TLS, never used unencrypted', async () => {
	const env = setup('plain_amqps')
	const url = S.RABBITMQ_URL.replace(/^amqp:/, 'amqps:')
	const adapter = env.adapter({ amqpConnection: url })
	const t0 = Date.now()
	await expect(adapter.start()).rejects.toMatchObject({
		code: 'ERR_TLS',
		message: expect.stringMatching(/does not speak TLS/),
	})
	expect(Date.now() - t0).toBeLessThan(15000)
	const client = env.adapter({ amqpConnection: url })
	await expect(client.startRun('quick', {}, { runId: env.runId('x') })).rejects.toMatchObject({ code: 'ERR_TLS' })
})

test('TLS settings for a plain amqp:// connection are refused, not ignored', () => {
	const env = setup('plain_tls')
	expect(() => env.adapter({ amqpTls: { ca: 'x' } })).toThrow(
		expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringMatching(/not amqps/) }),
	)
})
