'use strict'

// The command-line tool (bin/flowcraft-rabbitmq.js), run as a user runs it, against
// a completed, a failed and a running run, and a dead-letter queue with a bad message.
// The output is compared cell by cell, with run ids and times made stable.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { execFile } = require('node:child_process')
const S = require('./helpers/services')
const { runsEnv, queueDepth, publishRaw, eventually, deferred, ROOT } = require('./helpers/runs-env')

const res = S.useResources()
const setup = runsEnv(res)

jest.setTimeout(60000)

const BIN = path.join(ROOT, 'bin', 'flowcraft-rabbitmq.js')
const FIXTURES = path.join(__dirname, 'helpers', 'runs-fixtures.js')

/** Runs the CLI with the test's queue and tables; resolves with { code, stdout, stderr }. */
function cli(env, args, { connection = true, cwd, extraEnv = {} } = {}) {
	const flags = connection
		? ['--queue', env.queue, '--context-table', env.ctxTable, '--status-table', env.statusTable]
		: []
	return new Promise((resolve) => {
		execFile(
			process.execPath,
			[BIN, ...args, ...flags],
			{
				env: {
					...process.env,
					POSTGRES_URL: S.POSTGRES_URL,
					REDIS_URL: S.REDIS_URL,
					RABBITMQ_URL: S.RABBITMQ_URL,
					...extraEnv,
				},
				timeout: 30000,
				cwd,
			},
			(error, stdout, stderr) =>
				resolve({ code: error ? error.code : 0, signal: error ? error.signal : null, stdout, stderr }),
		)
	})
}

/** Whether a queue exists, checked passively (creates nothing). */
async function queueExists(queue) {
	const amqplib = require('amqplib')
	const conn = await amqplib.connect(S.RABBITMQ_URL)
	try {
		const ch = await conn.createChannel()
		ch.on('error', () => {})
		try {
			await ch.checkQueue(queue)
			return true
		} catch {
			return false
		}
	} finally {
		await conn.close().catch(() => {})
	}
}

/** Lines of a table as arrays of cells (columns are two or more spaces apart). */
const cells = (text) =>
	text
		.trimEnd()
		.split('\n')
		.map((l) => l.trimEnd().split(/ {2,}/))

/** Output with run ids replaced by names and times made stable. */
function stable(text, names) {
	let out = text
	for (const [id, name] of Object.entries(names)) out = out.split(id).join(name)
	return out.replace(/\b\d+s ago\b/g, '<ago>').replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/g, '<time>')
}

describe('flowcraft-rabbitmq', () => {
	let env
	let names
	let ids
	let held
	let worker

	// One set of runs for the read-only commands: completed, failed, running.
	beforeEach(async () => {
		env = setup('cli')
		held = deferred()
		const cStarted = deferred()
		worker = env.adapter({ hooks: { hold: () => held.promise, onStart: (n) => n === 'c' && cStarted.resolve() } })
		await worker.start()
		const client = env.adapter()
		ids = { done: env.runId('done'), failed: env.runId('failed'), running: env.runId('running') }
		names = { [ids.done]: '<done>', [ids.failed]: '<failed>', [ids.running]: '<running>' }
		await client.startRun('quick', { testRunId: ids.done }, { runId: ids.done })
		await client.waitForRun(ids.done)
		await client.startRun('fails', { testRunId: ids.failed }, { runId: ids.failed })
		await client.waitForRun(ids.failed)
		await client.startRun('diamond', { testRunId: ids.running }, { runId: ids.running })
		await cStarted.promise
		await eventually(async () => (await client.getRun(ids.running)).nodes[1].state === 'done', 10000, 'b done')
		res.onCleanup(() => held.resolve()) // let the held node end before the worker stops
	})

	test('runs: a table of the runs, newest first, with status, last change, progress and reason', async () => {
		const r = await cli(env, ['runs', '--blueprints', FIXTURES])
		expect(r.stderr).toBe('')
		expect(r.code).toBe(0)
		expect(cells(stable(r.stdout, names))).toEqual([
			['RUN ID', 'STATUS', 'BLUEPRINT', 'UPDATED', 'PROGRESS', 'REASON'],
			['<running>', 'running', 'diamond', '<ago>', '2/4'],
			['<failed>', 'failed', 'fails', '<ago>', '1/3', "Node 'b' failed: boom"],
			['<done>', 'completed', 'quick', '<ago>', '1/1'],
		])

		// without blueprints the totals are unknown; --status filters; --limit limits
		const noBp = await cli(env, ['runs', '--limit', '2'])
		expect(cells(stable(noBp.stdout, names)).map((row) => row[4])).toEqual(['PROGRESS', '2/?', '1/?'])
		const failedOnly = await cli(env, ['runs', '--status', 'failed'])
		expect(cells(stable(failedOnly.stdout, names)).map((row) => row[0])).toEqual(['RUN ID', '<failed>'])
		const none = await cli(env, ['runs', '--status', 'cancelled'])
		expect(none.stdout).toBe('No cancelled runs.\n')
		const json = await cli(env, ['runs', '--json', '--blueprints', FIXTURES])
		expect(JSON.parse(json.stdout).map((x) => [x.runId, x.status, x.doneNodes, x.totalNodes])).toEqual([
			[ids.running, 'running', 2, 4],
			[ids.failed, 'failed', 1, 3],
			[ids.done, 'completed', 1, 1],
		])
	})

	test('show: a running run, its nodes with their state, and its blueprint as a Mermaid graph with the states as classes', async () => {
		const r = await cli(env, ['show', ids.running, '--blueprints', FIXTURES])
		expect(r.stderr).toBe('')
		expect(r.code).toBe(0)
		expect(stable(r.stdout, names)).toBe(
			[
				'Run        <running>',
				'Blueprint  diamond (version 2)',
				'Status     running',
				'Updated    <time> (<ago>)',
				'Progress   2/4 nodes done',
				'',
				'NODE  USES  STATE',
				'a     step  done',
				'b     step  done',
				'c     hold  running',
				'd     step  waiting',
				'',
				'```mermaid',
				'graph TD',
				'    n0["a<br/>step"]',
				'    n1["b<br/>step"]',
				'    n2["c<br/>hold"]',
				'    n3["d<br/>step"]',
				'    n0 --> n1',
				'    n0 --> n2',
				'    n1 --> n3',
				'    n2 --> n3',
				'    classDef done fill:#d4edda,stroke:#28a745,color:#155724',
				'    classDef running fill:#cce5ff,stroke:#007bff,color:#004085',
				'    classDef waiting fill:#fff3cd,stroke:#ffc107,color:#856404',
				'    class n0,n1 done',
				'    class n2 running',
				'    class n3 waiting',
				'```',
				'',
			].join('\n'),
		)
	})

	test('show: a failed and a completed run', async () => {
		const f = await cli(env, ['show', ids.failed, '--blueprints', FIXTURES])
		expect(f.code).toBe(0)
		const failed = stable(f.stdout, names)
		expect(failed.split('\n').slice(0, 6)).toEqual([
			'Run        <failed>',
			'Blueprint  fails',
			'Status     failed',
			"Reason     Node 'b' failed: boom",
			'Updated    <time> (<ago>)',
			'Progress   1/3 nodes done',
		])
		expect(cells(failed.split('\n\n')[1])).toEqual([
			['NODE', 'USES', 'STATE'],
			['a', 'step', 'done'],
			['b', 'boom', 'failed'],
			['c', 'step', 'not_reached'],
		])
		expect(failed).toMatch(/class n0 done\n {4}class n1 failed\n {4}class n2 not_reached\n```\n$/)

		const d = await cli(env, ['show', ids.done, '--blueprints', FIXTURES, '--mermaid'])
		expect(d.code).toBe(0)
		expect(d.stdout).toBe(
			'```mermaid\ngraph TD\n    n0["a<br/>step"]\n    classDef done fill:#d4edda,stroke:#28a745,color:#155724\n    class n0 done\n```\n',
		)
		const json = JSON.parse((await cli(env, ['show', ids.done, '--blueprints', FIXTURES, '--json'])).stdout)
		expect(json).toMatchObject({
			runId: ids.done,
			status: 'completed',
			nodes: [{ id: 'a', uses: 'step', state: 'done' }],
		})
		expect(json.mermaid).toMatch(/^graph TD\n/)
	})

	test('show without --blueprints: status, reason, last change and the nodes done, no graph', async () => {
		const r = await cli(env, ['show', ids.running])
		expect(r.stderr).toBe('')
		expect(r.code).toBe(0)
		expect(stable(r.stdout, names)).toBe(
			[
				'Run        <running>',
				'Blueprint  diamond (version 2)',
				'Status     running',
				'Updated    <time> (<ago>)',
				'Progress   2/? nodes done (a, b)',
				'',
				'Pass --blueprints <module> for the state of each node and the graph.',
				'',
			].join('\n'),
		)
		const f = await cli(env, ['show', ids.failed])
		expect(f.code).toBe(0)
		expect(stable(f.stdout, names).split('\n').slice(2, 4)).toEqual([
			'Status     failed',
			"Reason     Node 'b' failed: boom",
		])
		const json = await cli(env, ['show', ids.done, '--json'])
		expect(json.code).toBe(0)
		expect(JSON.parse(json.stdout)).toMatchObject({ runId: ids.done, status: 'completed', nodes: [] })
		const mermaid = await cli(env, ['show', ids.done, '--mermaid'])
		expect(mermaid.code).toBe(2)
		expect(mermaid.stderr).toMatch(/show --mermaid needs the blueprints: pass --blueprints <module>/)
	})

	test('reconcile: one run, and all stalled runs, with progress lines', async () => {
		const one = await cli(env, ['reconcile', ids.running, '--blueprints', FIXTURES])
		expect(one.code).toBe(0)
		expect(stable(one.stdout, names)).toBe(
			'Run <running>: nothing to enqueue (it is running and changed within the last 300 seconds; --stalled-seconds sets how long)\n',
		)
		const finished = await cli(env, ['reconcile', ids.done, '--blueprints', FIXTURES])
		expect(stable(finished.stdout, names)).toBe('Run <done>: nothing to enqueue (it is completed)\n')
		const all = await cli(env, ['reconcile', '--blueprints', FIXTURES, '--stalled-seconds', '3600'])
		expect(all.code).toBe(0)
		expect(all.stdout).toBe(
			'Looking for running runs with no change for 3600s...\nStalled: 0, reconciled: 0, failed: 0\n',
		)

		// two stalled runs, oldest first: one of a blueprint the CLI does not know (it fails), and the running one
		const ghost = env.runId('ghost')
		await S.pgQuery(
			`INSERT INTO ${S.quoteIdent(env.ctxTable)} (run_id, context_data) VALUES ($1, '{"blueprintId":"ghost"}')`,
			[ghost],
		)
		await S.pgQuery(
			`INSERT INTO ${S.quoteIdent(env.statusTable)} (run_id, status, status_data, updated_at, blueprint_id, pending)
       VALUES ($1, 'running', '{"status":"running"}', now() - interval '2 hours', 'ghost', 1)`,
			[ghost],
		)
		await S.pgQuery(
			`UPDATE ${S.quoteIdent(env.statusTable)} SET updated_at = now() - interval '1 hour' WHERE run_id = $1`,
			[ids.running],
		)
		const stalled = await cli(env, ['reconcile', '--blueprints', FIXTURES, '--stalled-seconds', '600'])
		expect(stalled.code).toBe(1)
		expect(stable(stalled.stdout, { ...names, [ghost]: '<ghost>' })).toBe(
			[
				'Looking for running runs with no change for 600s...',
				`[1/2] <ghost>: failed: invalid argument: unknown blueprint 'ghost': add it to runtimeOptions.blueprints`,
				'[2/2] <running>: enqueued c',
				'Stalled: 2, reconciled: 1, failed: 1',
				'',
			].join('\n'),
		)
	})

	test('errors: clear messages and exit codes', async () => {
		const missing = await cli(env, ['show', 'no-such-run', '--blueprints', FIXTURES])
		expect(missing.code).toBe(1)
		expect(missing.stderr).toMatch(/run "no-such-run" not found/)
		const noBp = await cli(env, ['reconcile', ids.done])
		expect(noBp.code).toBe(2)
		expect(noBp.stderr).toMatch(/reconcile needs the blueprints: pass --blueprints <module>/)
		const badTable = await cli(env, ['runs', '--status-table', 'no_such_table_here'], { connection: false })
		expect(badTable.code).toBe(1)
		expect(badTable.stderr).toMatch(
			/no_such_table_here.*does not exist[\s\S]*check --postgres-url, --context-table and --status-table/,
		)
		const unknown = await cli(env, ['frobnicate'])
		expect(unknown.code).toBe(2)
		expect(unknown.stderr).toMatch(/unknown command "frobnicate"/)
		const badFlag = await cli(env, ['runs', '--limit', 'many'])
		expect(badFlag.code).toBe(2)
		expect(badFlag.stderr).toMatch(/--limit must be a whole number/)
		const wrongFlag = await cli(env, ['runs', '--stalled-seconds', '5'])
		expect(wrongFlag.code).toBe(2)
		expect(wrongFlag.stderr).toMatch(/runs does not take --stalled-seconds/)
		const badModule = await cli(env, ['show', ids.done, '--blueprints', './nope.js'])
		expect(badModule.code).toBe(2)
		expect(badModule.stderr).toMatch(/--blueprints: cannot find the module/)
		const refused = await cli(env, ['runs', '--postgres-url', 'postgres://postgres@127.0.0.1:1/test'])
		expect(refused.code).toBe(1)
		expect(refused.stderr).toMatch(/ERR_PG_CONNECT/)
		const help = await cli(env, ['--help'], { connection: false })
		expect(help.code).toBe(0)
		expect(help.stdout).toMatch(/^Usage: flowcraft-rabbitmq <command>/)
		for (const c of ['runs', 'show', 'reconcile', 'dead-letters']) expect(help.stdout).toContain(`  ${c}`)
		const cmdHelp = await cli(env, ['reconcile', '--help'], { connection: false })
		expect(cmdHelp.stdout).toMatch(/^Usage: flowcraft-rabbitmq reconcile \[runId\]/)
		const nothing = await cli(env, [], { connection: false })
		expect(nothing.code).toBe(2)
	})

	test("--version prints the package version; the default queue is the README's flowcraft-jobs", async () => {
		const { version } = require('../package.json')
		for (const args of [['--version'], ['-v'], ['runs', '--version']]) {
			const r = await cli(env, args, { connection: false })
			expect(r).toMatchObject({ code: 0, stdout: `${version}\n`, stderr: '' })
		}
		const help = await cli(env, ['--help'], { connection: false })
		expect(help.stdout).toMatch(/--queue <name> .*default flowcraft-jobs/)
		expect(help.stdout).toMatch(/-v, --version/)
		// without --queue the CLI uses FLOWCRAFT_QUEUE, else flowcraft-jobs
		const tables = ['--context-table', env.ctxTable, '--status-table', env.statusTable]
		const typo = S.uniqueName('envq')
		const fromEnv = await cli(env, ['dead-letters', ...tables], {
			connection: false,
			extraEnv: { FLOWCRAFT_QUEUE: typo },
		})
		expect(fromEnv.code).toBe(1)
		expect(fromEnv.stderr).toContain(`"${typo}" and "${typo}.dead" do not exist`)
		const dflt = await cli(env, ['dead-letters', ...tables], { connection: false, extraEnv: { FLOWCRAFT_QUEUE: '' } })
		// flowcraft-jobs may or may not exist on this broker; either way it is the one looked at
		if (dflt.code === 0) expect(dflt.stdout).toMatch(/flowcraft-jobs\.dead/)
		else expect(dflt.stderr).toMatch(/"flowcraft-jobs"( and "flowcraft-jobs\.dead")? do(es)? not exist/)
		expect(`${dflt.stdout}${dflt.stderr}`).not.toMatch(/flowcraft-queue/)
	})

	test('--amqp-url with a password that is not percent-encoded: the broker refuses the login, the password is not shown', async () => {
		const u = new URL(S.RABBITMQ_URL)
		const r = await cli(env, ['dead-letters', '--amqp-url', `amqp://guest:p@ss#w/rd@${u.host}`])
		expect(r.code).toBe(1)
		// amqplib's own reading of the raw URL would look up the host "ss"
		expect(r.stderr).toMatch(/cannot connect to RabbitMQ at amqp:\/\/guest:\*\*\*@/)
		expect(r.stderr).toMatch(/ACCESS_REFUSED|403/)
		expect(r.stderr).not.toMatch(/ss#w|w\/rd|ENOTFOUND/)
	})

	test('a --queue that does not exist: an error, and no queue is created', async () => {
		const typo = S.uniqueName('typo')
		const flags = ['--queue', typo, '--context-table', env.ctxTable, '--status-table', env.statusTable]
		for (const args of [
			['dead-letters'],
			['dead-letters', 'requeue'],
			['reconcile', ids.running, '--blueprints', FIXTURES],
			['reconcile', '--blueprints', FIXTURES],
		]) {
			const r = await cli(env, [...args, ...flags], { connection: false })
			expect(r.code).toBe(1)
			expect(r.stdout).toBe('')
			expect(r.stderr).toContain(`the queues "${typo}" and "${typo}.dead" do not exist`)
			expect(r.stderr).toMatch(/nothing was created\. Check --queue .*\[ERR_QUEUE_NOT_FOUND\]\n$/)
		}
		expect(await queueExists(typo)).toBe(false)
		expect(await queueExists(`${typo}.dead`)).toBe(false)
		// the job queue alone is not enough: its dead-letter queue would be created
		await S.deleteQueues([`${env.queue}.dead`])
		const half = await cli(env, ['dead-letters'])
		expect(half.code).toBe(1)
		expect(half.stderr).toMatch(new RegExp(`the queue "${env.queue}\\.dead" does not exist`))
		expect(await queueExists(`${env.queue}.dead`)).toBe(false)
		// read-only commands that do not reach RabbitMQ work with any queue name
		expect((await cli(env, ['runs', ...flags], { connection: false })).code).toBe(0)
		expect((await cli(env, ['show', ids.done, ...flags], { connection: false })).code).toBe(0)
		expect(await queueExists(typo)).toBe(false)
	})

	test('--blueprints with a TypeScript module: without tsx, a clear error saying how', async () => {
		const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowcraft-cli-ts-'))
		res.onCleanup(() => fs.rmSync(dir, { recursive: true, force: true }))
		fs.writeFileSync(
			path.join(dir, 'shared.ts'),
			"export const blueprints: Record<string, { id: string }> = { quick: { id: 'quick' } }\n",
		)
		// run from a folder without tsx, on the module there
		const r = await cli(env, ['show', ids.done, '--blueprints', './shared.ts'], { cwd: dir })
		expect(r.code).toBe(2)
		expect(r.stdout).toBe('')
		expect(r.stderr).toContain(`--blueprints: ${path.join(dir, 'shared.ts')} is TypeScript`)
		expect(r.stderr).toMatch(/Install tsx in your project \(npm install --save-dev tsx\).*or compile/)
		expect(r.stderr).toMatch(/\[ERR_BLUEPRINTS_TYPESCRIPT\]/)
		const missing = await cli(env, ['show', ids.done, '--blueprints', './nope.ts'], { cwd: dir })
		expect(missing.code).toBe(2)
		expect(missing.stderr).toMatch(/--blueprints: cannot find the module/)
	})

	test('dead-letters: lists a bad message with its reason, and requeue moves it back', async () => {
		await publishRaw(env.queue, '{"runId": 42}')
		const client = env.adapter()
		await eventually(async () => (await client.deadLetters()).length === 1, 10000, 'the bad message dead-lettered')
		const [dead] = await client.deadLetters()

		const list = await cli(env, ['dead-letters'])
		expect(list.stderr).toBe('')
		expect(list.code).toBe(0)
		const text = stable(list.stdout, names)
		expect(text.split('\n')[0]).toBe(`1 dead letter(s) in ${env.queue}.dead:`)
		expect(cells(text.split('\n').slice(1).join('\n'))).toEqual([
			['#', 'DEAD AT', 'REASON', 'BODY'],
			['1', '<time>', dead.reason.length > 80 ? expect.stringMatching(/…$/) : dead.reason, '{"runId": 42}'],
		])
		const json = JSON.parse((await cli(env, ['dead-letters', '--json'])).stdout)
		expect(json).toEqual([
			{ body: '{"runId": 42}', job: { runId: 42 }, reason: dead.reason, deadAt: dead.deadAt.toISOString() },
		])

		// stop the worker first, or it would refuse the message again
		held.resolve()
		expect((await client.waitForRun(ids.running)).status).toBe('completed')
		await worker.stop()
		const dlq = `${env.queue}.dead`
		expect(await queueDepth(dlq)).toBe(1)
		const r = await cli(env, ['dead-letters', 'requeue', '--limit', '5'])
		expect(r.stderr).toBe('')
		expect(r.code).toBe(0)
		expect(r.stdout).toBe(`Moving up to 5 dead letter(s) from ${dlq} to ${env.queue}...\nRequeued 1 dead letter(s).\n`)
		expect(await queueDepth(dlq)).toBe(0)
		expect(await queueDepth(env.queue)).toBe(1)
		expect((await cli(env, ['dead-letters'])).stdout).toBe(`No dead letters in ${dlq}.\n`)
	})
})
