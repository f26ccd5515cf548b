'use strict'
/**
 * Differential tests: every scenario of diff/scenarios.js is run by flowcraft's in-memory
 * FlowRuntime (the reference, diff/reference.mjs, in a child process because flowcraft is
 * ESM-only) and by our RabbitMqAdapter with ONE and with THREE worker processes
 * (diff/worker-process.js) fed by the wire protocol (diff/client.js). The final status and
 * every `_outputs.*` key and value must agree, plus the context keys a scenario lists in
 * `compareContext`, except where a scenario declares a deliberate difference.
 *
 * Scenarios that bring adapter-wide runtimeOptions (a custom evaluator, middleware) form
 * their own worker group with its own queue; all other scenarios share the 'default' group.
 * Queues, tables, run ids and Redis keys carry a prefix unique to this test file and run.
 */
const { spawn, execFile } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const amqplib = require('amqplib')
const IORedis = require('ioredis')
const { Client: PgClient } = require('pg')
const { scenarios, byName, groups } = require('./diff/scenarios')
const { DiffClient, outputsOf } = require('./diff/client')

const POSTGRES_URL = process.env.POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/test'
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379'
const RABBITMQ_URL = process.env.RABBITMQ_URL || 'amqp://guest:guest@127.0.0.1:5672'

const SUFFIX = `${process.pid.toString(36)}${Date.now().toString(36)}`
const PREFIX = `difftest-${SUFFIX}`
const CTX_TABLE = `difftest_ctx_${SUFFIX}`
const STATUS_TABLE = `difftest_status_${SUFFIX}`
const queueOf = (group) => `${PREFIX}-${group}`
const RUNS_PER_SCENARIO = 4
// DIFF_ONLY=name,name runs only those scenarios (for a quick check while working on them)
const ONLY = (process.env.DIFF_ONLY || '').split(',').filter(Boolean)
const NAMES = scenarios.map((s) => s.name).filter((n) => !ONLY.length || ONLY.includes(n))
const GROUPS = Object.fromEntries(
	Object.entries(groups())
		.map(([group, names]) => [group, names.filter((n) => NAMES.includes(n))])
		.filter(([, names]) => names.length),
)
const ROOT = path.join(__dirname, '..')
const LOG_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'flowcraft-difftest-'))

let reference
let client
let anyFailure = false // worker logs are kept (and their directory printed) when a test failed

/** Wraps a test body so that a failure keeps the worker logs. */
const tracked =
	(fn) =>
	async (...args) => {
		try {
			return await fn(...args)
		} catch (e) {
			anyFailure = true
			throw e
		}
	}
const stubbornWorkers = [] // workers that needed SIGKILL after SIGTERM + 10 s

// ------------------------------------------------------------------------ helpers

function runReferenceChild(names) {
	return new Promise((resolve, reject) => {
		execFile(
			process.execPath,
			[path.join(__dirname, 'diff', 'reference.mjs'), '--json', ...names],
			{ cwd: ROOT, maxBuffer: 64 * 1024 * 1024, timeout: 60000 },
			(err, stdout, stderr) => {
				if (err) return reject(new Error(`reference.mjs failed: ${err.message}\n${stderr}`))
				const line = stdout.split('\n').find((l) => l.startsWith('__REFERENCE__'))
				if (!line) return reject(new Error(`reference.mjs printed no result:\n${stdout}\n${stderr}`))
				resolve(JSON.parse(line.slice('__REFERENCE__'.length)))
			},
		)
	})
}

function spawnWorker(group, index, mode) {
	const logFile = path.join(LOG_DIR, `worker-${mode}w-${group}-${index}.log`)
	const log = fs.createWriteStream(logFile)
	const child = spawn(process.execPath, [path.join(__dirname, 'diff', 'worker-process.js')], {
		cwd: ROOT,
		env: {
			...process.env,
			QUEUE: queueOf(group),
			CTX_TABLE,
			STATUS_TABLE,
			POSTGRES_URL,
			REDIS_URL,
			RABBITMQ_URL,
			SCENARIOS: GROUPS[group].join(','),
		},
		stdio: ['ignore', 'pipe', 'pipe'],
	})
	child.logFile = logFile
	child.group = group
	child.label = `${mode}w/${group}#${index} (pid ${child.pid})`
	child.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
	child.stderr.pipe(log, { end: false })
	const ready = new Promise((resolve, reject) => {
		let buf = ''
		const timer = setTimeout(() => reject(new Error(`${child.label} not ready after 30 s; log ${logFile}`)), 30000)
		child.stdout.on('data', (d) => {
			log.write(d)
			buf += d.toString()
			if (buf.includes('WORKER_READY')) {
				clearTimeout(timer)
				resolve()
			} else if (buf.includes('WORKER_FAILED')) {
				clearTimeout(timer)
				const line = buf.split('\n').find((l) => l.startsWith('WORKER_FAILED')) ?? ''
				reject(new Error(`${child.label} failed to start: ${line.slice(14)}\n${tail(logFile)}`))
			}
		})
		child.exited.then(({ code, signal }) => {
			clearTimeout(timer)
			reject(new Error(`${child.label} exited before ready (code ${code}, signal ${signal})\n${tail(logFile)}`))
		})
	})
	child.ready = ready
	return child
}

function tail(file, n = 40) {
	try {
		return fs.readFileSync(file, 'utf8').split('\n').slice(-n).join('\n')
	} catch {
		return ''
	}
}

async function killWorkers(children) {
	await Promise.all(
		children.map(async (child) => {
			if (child.exitCode !== null || child.signalCode !== null) return
			child.kill('SIGTERM')
			let timeout
			const timer = new Promise((resolve) => {
				timeout = setTimeout(() => resolve('timeout'), 10000)
			})
			const outcome = await Promise.race([child.exited, timer])
			clearTimeout(timeout)
			if (outcome === 'timeout') {
				stubbornWorkers.push(child.label)
				child.kill('SIGKILL')
				await child.exited
			}
		}),
	)
}

async function waitForQueue(queue, ms = 10000) {
	const deadline = Date.now() + ms
	while (Date.now() < deadline) {
		if (await client.queueExists(queue)) return true
		await new Promise((r) => setTimeout(r, 100))
	}
	return false
}

/** Fail fast (instead of a 20 s timeout per run) when every worker of a group died. */
function assertGroupAlive(workers, group) {
	const mine = workers.filter((w) => w.group === group)
	if (mine.length && mine.every((w) => w.exitCode !== null || w.signalCode !== null)) {
		throw new Error(`every worker of group ${group} exited; last log:\n${tail(mine[0].logFile)}`)
	}
}

function pick(obj, keys) {
	const out = {}
	for (const k of keys ?? []) if (obj && Object.hasOwn(obj, k)) out[k] = obj[k]
	return out
}

function without(obj, keys) {
	const out = { ...obj }
	for (const k of keys ?? []) delete out[k]
	return out
}

/** The assertion of every differential test. */
function expectSameAsReference(scenario, ref, actual) {
	const ignore = Object.keys(scenario.expect?.ignoreOutputs ?? {})
	// one object so that a failure shows the whole picture (run id, reason, all outputs)
	expect({
		runId: actual.runId,
		status: actual.status,
		outputs: without(actual.outputs, ignore),
		context: pick(actual.context, scenario.compareContext),
	}).toStrictEqual({
		runId: actual.runId,
		// a deliberate difference of status (README, "Differences from FlowRuntime")
		status: scenario.expect?.status ?? ref.status,
		outputs: without(ref.outputs, ignore),
		context: ref.context,
	})
	if (actual.status === 'failed' && scenario.expect?.reasonIncludes) {
		// one string, or several that must all appear
		for (const part of [].concat(scenario.expect.reasonIncludes)) {
			expect({ runId: actual.runId, reason: actual.reason }).toEqual({
				runId: actual.runId,
				reason: expect.stringContaining(part),
			})
		}
	}
	if (actual.status === 'completed') {
		// the completed status row carries the whole final context
		expect(outputsOf(actual.statusData?.payload?.context)).toStrictEqual(actual.outputs)
	}
}

function runAdapter(scenario, runId) {
	return client.run({
		runId,
		blueprint: scenario.blueprint,
		initialContext: { ...(scenario.initialContext ?? {}), runTag: runId },
		queue: queueOf(scenario.group),
	})
}

// ------------------------------------------------------------------ setup / teardown

beforeAll(async () => {
	const pg = new PgClient({ connectionString: POSTGRES_URL })
	await pg.connect()
	try {
		await pg.query(
			`CREATE TABLE IF NOT EXISTS ${CTX_TABLE} (run_id TEXT PRIMARY KEY, context_data JSONB NOT NULL DEFAULT '{}')`,
		)
		await pg.query(
			`CREATE TABLE IF NOT EXISTS ${STATUS_TABLE} (run_id TEXT PRIMARY KEY, status TEXT, status_data JSONB, updated_at TIMESTAMPTZ NOT NULL DEFAULT now())`,
		)
	} finally {
		await pg.end()
	}
	reference = await runReferenceChild(NAMES)
	client = await new DiffClient({
		postgresUrl: POSTGRES_URL,
		rabbitmqUrl: RABBITMQ_URL,
		contextTableName: CTX_TABLE,
		statusTableName: STATUS_TABLE,
	}).connect()
}, 90000)

afterAll(async () => {
	await client?.close()
	// queues (and their dead-letter queues)
	try {
		const conn = await amqplib.connect(RABBITMQ_URL)
		conn.on('error', () => {})
		for (const group of Object.keys(GROUPS)) {
			for (const q of [queueOf(group), `${queueOf(group)}.dead`]) {
				const ch = await conn.createChannel()
				ch.on('error', () => {})
				try {
					await ch.deleteQueue(q)
					await ch.close()
				} catch {}
			}
		}
		await conn.close()
	} catch (e) {
		console.warn(`queue cleanup failed: ${e.message}`)
	}
	// tables
	const pg = new PgClient({ connectionString: POSTGRES_URL })
	await pg.connect()
	try {
		await pg.query(`DROP TABLE IF EXISTS ${CTX_TABLE}, ${CTX_TABLE}_nodes`)
		await pg.query(`DROP TABLE IF EXISTS ${STATUS_TABLE}`)
	} finally {
		await pg.end()
	}
	// coordination keys of our runs: flowcraft:*:<runId>*
	const redis = new IORedis(REDIS_URL)
	try {
		let cursor = '0'
		do {
			const [next, keys] = await redis.scan(cursor, 'MATCH', `flowcraft:*:${PREFIX}*`, 'COUNT', 1000)
			cursor = next
			if (keys.length) await redis.del(...keys)
		} while (cursor !== '0')
	} finally {
		redis.disconnect()
	}
	if (stubbornWorkers.length) {
		console.warn(
			`worker processes that did not exit within 10 s of SIGTERM (SIGKILLed): ${stubbornWorkers.join(', ')}; logs in ${LOG_DIR}`,
		)
	}
	if (anyFailure || stubbornWorkers.length || process.env.KEEP_DIFF_LOGS) console.warn(`worker logs kept in ${LOG_DIR}`)
	else fs.rmSync(LOG_DIR, { recursive: true, force: true })
}, 60000)

// ------------------------------------------------------------------------------ tests

describe('reference: FlowRuntime gives the results each scenario intends', () => {
	test.each(NAMES)('%s', (name) => {
		const s = byName(name)
		// (keys a scenario leaves out of the comparison may hold values FlowRuntime makes random)
		const ignore = Object.keys(s.expect?.ignoreOutputs ?? {})
		expect({
			status: reference[name].status,
			outputs: without(reference[name].outputs, ignore),
			context: reference[name].context,
		}).toStrictEqual({
			status: s.intended.status,
			outputs: without(s.intended.outputs, ignore),
			context: s.intended.context ?? {},
		})
	})
})

describe.each([
	['one worker process', 1],
	['three worker processes', 3],
])('adapter with %s', (_label, workerCount) => {
	const workers = []

	beforeAll(
		tracked(async () => {
			for (const group of Object.keys(GROUPS)) {
				for (let i = 0; i < workerCount; i++) workers.push(spawnWorker(group, i, workerCount))
			}
			await Promise.all(workers.map((w) => w.ready))
			// the workers declare their queues; let them, so the client never declares a queue
			// with arguments different from the adapter's
			for (const group of Object.keys(GROUPS)) await waitForQueue(queueOf(group))
		}),
		90000,
	)

	afterAll(async () => {
		await killWorkers(workers)
	}, 30000)

	test.each(NAMES)(
		`%s (${RUNS_PER_SCENARIO} concurrent runs)`,
		tracked(async (name) => {
			const scenario = byName(name)
			const ref = reference[name]
			assertGroupAlive(workers, scenario.group)
			const results = await Promise.all(
				Array.from({ length: RUNS_PER_SCENARIO }, (_, i) =>
					runAdapter(scenario, `${PREFIX}-${workerCount}w-${name}-${i}`),
				),
			)
			for (const actual of results) expectSameAsReference(scenario, ref, actual)
		}),
		60000,
	)

	test(
		'every scenario at once (3 runs each, all concurrent)',
		tracked(async () => {
			const jobs = []
			for (const scenario of scenarios.filter((x) => NAMES.includes(x.name))) {
				for (let i = 0; i < 3; i++) {
					const runId = `${PREFIX}-${workerCount}w-all-${scenario.name}-${i}`
					jobs.push(runAdapter(scenario, runId).then((actual) => ({ scenario, actual })))
				}
			}
			const results = await Promise.all(jobs)
			for (const { scenario, actual } of results) expectSameAsReference(scenario, reference[scenario.name], actual)
		}),
		60000,
	)
})
