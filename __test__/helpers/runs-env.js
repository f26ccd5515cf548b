'use strict'

// Shared setup of the run API tests (runs.test.js, cli.test.js): a queue and two
// tables per test (dropped after it), adapters on them (stopped after it), worker
// processes (killed after it), and the Redis keys of the test's runs (deleted).
// Not a test file.

const path = require('node:path')
const { spawn } = require('node:child_process')
const S = require('./services')
const { blueprints: fixtureBlueprints, createRegistry } = require('./runs-fixtures')

const ROOT = path.resolve(__dirname, '..', '..')
const { RabbitMqAdapter, RedisCoordinationStore } = require(ROOT)

const silent = { debug() {}, info() {}, warn() {}, error() {} }

function recordingLogger() {
	const lines = []
	const rec = (level) => (message, meta) => lines.push({ level, message: String(message), meta })
	return { lines, debug: rec('debug'), info: rec('info'), warn: rec('warn'), error: rec('error') }
}

/**
 * Call once per test file (after useResources()). Returns `setup(label, opts)`, which
 * names a queue and tables for the current test and registers their cleanup.
 */
function runsEnv(res) {
	function setup(label = 'runs', { postgresUrl = S.POSTGRES_URL } = {}) {
		const queue = res.queueName(label)
		res.onCleanup(() => S.deleteQueues([`${queue}.dead`]))
		const env = {
			queue,
			ctxTable: S.uniqueName(`${label}_c`),
			statusTable: S.uniqueName(`${label}_s`),
			postgresUrl,
			runIds: [],
		}
		if (postgresUrl === S.POSTGRES_URL) {
			res.trackTable(env.ctxTable)
			res.trackTable(env.statusTable)
		}
		res.onCleanup(() => deleteRunKeys(env.runIds))

		/** A unique run id, whose Redis keys are deleted after the test. */
		env.runId = (tag = 'r') => {
			const id = S.uniqueName(tag)
			env.runIds.push(id)
			return id
		}

		/** An adapter on this test's queue and tables; stopped after the test. */
		env.adapter = ({ hooks, dependencies, logger = silent, blueprints = fixtureBlueprints, ...options } = {}) => {
			const adapter = new RabbitMqAdapter({
				amqpConnection: S.RABBITMQ_URL,
				pgClient: postgresUrl,
				coordinationStore: new RedisCoordinationStore(S.REDIS_URL),
				queueName: queue,
				contextTableName: env.ctxTable,
				statusTableName: env.statusTable,
				stopTimeoutMs: 5000,
				...options,
				runtimeOptions: { registry: createRegistry(hooks), blueprints, logger, dependencies },
			})
			res.onCleanup(() => adapter.stop({ timeoutMs: 2000 }).catch(() => {}))
			return adapter
		}

		/** A worker process (helpers/runs-worker.js) on this test's queue and tables; resolves once it consumes. */
		env.spawnWorker = async (extraEnv = {}) => {
			const child = spawn(process.execPath, [path.join(__dirname, 'runs-worker.js')], {
				env: {
					...process.env,
					QUEUE: queue,
					CTX_TABLE: env.ctxTable,
					STATUS_TABLE: env.statusTable,
					POSTGRES_URL: postgresUrl,
					REDIS_URL: S.REDIS_URL,
					RABBITMQ_URL: S.RABBITMQ_URL,
					...extraEnv,
				},
				stdio: ['ignore', 'pipe', 'pipe'],
			})
			child.output = ''
			child.stdout.setEncoding('utf8')
			child.stderr.setEncoding('utf8')
			child.stdout.on('data', (d) => (child.output += d))
			child.stderr.on('data', (d) => (child.output += d))
			child.exited = new Promise((resolve) =>
				child.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
			)
			res.onCleanup(async () => {
				if (child.exitCode === null && child.signalCode === null) {
					child.kill('SIGKILL')
					await child.exited
				}
			})
			await S.withTimeout(
				new Promise((resolve, reject) => {
					const check = () => {
						if (child.output.includes('WORKER_READY')) resolve()
					}
					child.stdout.on('data', check)
					child.exited.then(({ code, signal }) =>
						reject(new Error(`worker exited (${signal || code}) before it was ready:\n${child.output}`)),
					)
					check()
				}),
				20000,
				'worker start',
			)
			return child
		}
		return env
	}
	return setup
}

/** Deletes the coordination keys (flowcraft:*) of these runs. */
async function deleteRunKeys(runIds) {
	if (!runIds.length) return
	const redis = S.redisAdmin()
	for (const id of runIds) {
		let cursor = '0'
		do {
			const [next, keys] = await redis.scan(cursor, 'MATCH', `flowcraft:*${id}*`, 'COUNT', 1000)
			cursor = next
			if (keys.length) await redis.del(...keys)
		} while (cursor !== '0')
	}
}

/** Ready messages of a queue (0 when it does not exist). */
async function queueDepth(queue) {
	const amqplib = require('amqplib')
	const conn = await amqplib.connect(S.RABBITMQ_URL)
	try {
		const ch = await conn.createChannel()
		ch.on('error', () => {})
		try {
			return (await ch.checkQueue(queue)).messageCount
		} catch {
			return 0
		}
	} finally {
		await conn.close().catch(() => {})
	}
}

async function purgeQueue(queue) {
	const amqplib = require('amqplib')
	const conn = await amqplib.connect(S.RABBITMQ_URL)
	try {
		const ch = await conn.createChannel()
		return (await ch.purgeQueue(queue)).messageCount
	} finally {
		await conn.close().catch(() => {})
	}
}

async function publishRaw(queue, body) {
	const amqplib = require('amqplib')
	const conn = await amqplib.connect(S.RABBITMQ_URL)
	try {
		const ch = await conn.createConfirmChannel()
		await ch.assertQueue(queue, { durable: true })
		ch.sendToQueue(queue, Buffer.from(body), { persistent: true })
		await ch.waitForConfirms()
	} finally {
		await conn.close().catch(() => {})
	}
}

/** Polls `fn` until it returns a truthy value (which it resolves with), or fails after `ms`. */
async function eventually(fn, ms = 10000, what = 'condition') {
	const deadline = Date.now() + ms
	let last
	for (;;) {
		last = await fn()
		if (last) return last
		if (Date.now() > deadline) throw new Error(`${what} not reached within ${ms} ms (last: ${JSON.stringify(last)})`)
		await new Promise((r) => setTimeout(r, 25))
	}
}

/** A promise with its resolve function. */
function deferred() {
	let resolve
	const promise = new Promise((r) => (resolve = r))
	return { promise, resolve }
}

module.exports = {
	runsEnv,
	silent,
	recordingLogger,
	queueDepth,
	purgeQueue,
	publishRaw,
	eventually,
	deferred,
	deleteRunKeys,
	ROOT,
}
