'use strict'
/**
 * Differential tests: every scenario of diff/scenarios.js is run by flowcraft's in-memory
 * FlowRuntime (the reference, diff/reference.mjs, in a child process because flowcraft is
 * ESM-only) and by our RabbitMqAdapter with ONE and with THREE worker processes
 * (diff/worker-process.js) fed by the wire protocol (diff/client.js). The final status and
 * every `_outputs.*` key and value must agree, plus the context keys a scenario lists in
 * `compareContext`, except where a scenario declares a deliberate difference.
 *
 * A scenario with `resumes` steps (a `wait` node, a webhook call) is resumed where it awaits:
 * the reference by FlowRuntime's resume(), ours through the run API of an adapter in this
 * process that never starts (resumeWithAction, deliverWebhook, or an HTTP POST to
 * createWebhookHandler mounted on a server of this process).
 *
 * Scenarios that bring adapter-wide runtimeOptions (a custom evaluator, middleware) form
 * their own worker group with its own queue; all other scenarios share the 'default' group.
 * Queues, tables, run ids and Redis keys carry a prefix unique to this test file and run.
 */
const { spawn, execFile } = require('node:child_process')
const fs = require('node:fs')
const http = require('node:http')
const os = require('node:os')
const path = require('node:path')
const amqplib = require('amqplib')
const IORedis = require('ioredis')
const { Client: PgClient } = require('pg')
const { scenarios, byName, groups, withoutRunId } = require('./diff/scenarios')
const { DiffClient, outputsOf } = require('./diff/client')
const { RabbitMqAdapter, RedisCoordinationStore, createWebhookHandler } = require('..')

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
const resumers = new Map() // group → { adapter, server, origin }: see resumerFor

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

/** `outputs` without the fields `ignoreFields` names (`{ '_outputs.x': { field: reason } }`). */
function withoutFields(outputs, ignoreFields = {}) {
	const out = { ...outputs }
	for (const [key, fields] of Object.entries(ignoreFields))
		if (out[key] && typeof out[key] === 'object') out[key] = without(out[key], Object.keys(fields))
	return out
}

/** The assertion of every differential test. */
function expectSameAsReference(scenario, ref, actual) {
	const ignore = Object.keys(scenario.expect?.ignoreOutputs ?? {})
	const fields = scenario.expect?.ignoreFields
	// the run id inside outputs (a webhook's url and event): the reference replaced its own
	const norm = (v) => (scenario.runIdInOutputs ? withoutRunId(v, actual.runId) : v)
	// one object so that a failure shows the whole picture (run id, reason, all outputs)
	expect({
		runId: actual.runId,
		status: actual.status,
		outputs: withoutFields(without(norm(actual.outputs), ignore), fields),
		context: norm(pick(actual.context, scenario.compareContext)),
	}).toStrictEqual({
		runId: actual.runId,
		// a deliberate difference of status (README, "Differences from FlowRuntime")
		status: scenario.expect?.status ?? ref.status,
		// outputs only ours has (a difference the scenario states, `expect.notes`), asserted exactly
		outputs: withoutFields(without({ ...ref.outputs, ...(scenario.expect?.addedOutputs ?? {}) }, ignore), fields),
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

/**
 * The group's resumer: an adapter on the group's queue and tables that is never started (its
 * run API resumes runs; deliverWebhook finds webhook nodes in its blueprints), and an HTTP
 * server on a free loopback port with createWebhookHandler mounted at '/webhooks' (the path of
 * the workers' default webhookBaseUrl). Made on first use, once the workers made the tables.
 */
async function resumerFor(group) {
	if (!resumers.has(group)) {
		resumers.set(
			group,
			(async () => {
				const blueprints = {}
				for (const name of GROUPS[group])
					for (const bp of [byName(name).blueprint, ...(byName(name).children ?? [])]) blueprints[bp.id] = bp
				const adapter = new RabbitMqAdapter({
					amqpConnection: RABBITMQ_URL,
					pgClient: POSTGRES_URL,
					coordinationStore: new RedisCoordinationStore(REDIS_URL),
					queueName: queueOf(group),
					contextTableName: CTX_TABLE,
					statusTableName: STATUS_TABLE,
					createTables: false,
					runtimeOptions: { blueprints, registry: {}, logger: { debug() {}, info() {}, warn() {}, error() {} } },
				})
				const server = http.createServer(createWebhookHandler(adapter, { path: '/webhooks' }))
				await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
				return { adapter, server, origin: `http://127.0.0.1:${server.address().port}` }
			})(),
		)
	}
	return resumers.get(group)
}

/** POSTs `body` (text) with exactly `headers` to `url`; → { status, body (parsed JSON) }. */
function post(url, headers, body) {
	return new Promise((resolve, reject) => {
		const req = http.request(url, { method: 'POST', headers, agent: false }, (res) => {
			let text = ''
			res.setEncoding('utf8')
			res.on('data', (d) => {
				text += d
			})
			res.on('end', () => resolve({ status: res.statusCode, body: JSON.parse(text) }))
		})
		req.on('error', reject)
		req.end(body)
	})
}

/** Performs one `resumes` step of a run of ours (scenarios.js header); asserts what the API answered. */
async function resumeOurs(scenario, runId, step) {
	const { adapter, origin } = await resumerFor(scenario.group)
	if (!step.webhook) {
		await adapter.resumeWithAction(runId, step.action, step.output)
		return
	}
	let deliver
	if (step.via === 'http') {
		// the URL the run's webhook node gave, on this process's server (only the origin differs:
		// the workers' webhookBaseUrl is the default, http://localhost/webhooks)
		const { pathname } = new URL((await adapter.getRun(runId)).context[`_outputs.${step.webhook}`].url)
		const headers = { ...step.request.headers, ...(step.secretHeaders ?? {}) }
		deliver = async () => (await post(`${origin}${pathname}`, headers, JSON.stringify(step.request.body))).body
	} else {
		deliver = () => adapter.deliverWebhook(runId, step.webhook, step.request)
	}
	// the sender retries at once: one call is delivered, the others are duplicates
	const answers = await Promise.all(Array.from({ length: step.repeat ?? 1 }, deliver))
	const order = (a) => (a.duplicate ? 1 : 0)
	expect({ runId, answers: [...answers].sort((a, b) => order(a) - order(b)) }).toEqual({
		runId,
		answers: [
			{ status: 202, delivered: true },
			...answers.slice(1).map(() => ({ status: 200, delivered: true, duplicate: true })),
		],
	})
}

function runAdapter(scenario, runId) {
	return client.run(
		{
			runId,
			blueprint: scenario.blueprint,
			initialContext: { ...(scenario.initialContext ?? {}), runTag: runId },
			queue: queueOf(scenario.group),
			resumes: scenario.resumes,
		},
		undefined,
		(step) => resumeOurs(scenario, runId, step),
	)
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
	for (const pending of resumers.values()) {
		try {
			const { adapter, server } = await pending
			await new Promise((resolve) => server.close(resolve))
			await adapter.close()
		} catch (e) {
			console.warn(`resumer cleanup failed: ${e.message}`)
		}
	}
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
