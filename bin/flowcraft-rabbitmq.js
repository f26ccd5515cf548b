#!/usr/bin/env node
'use strict'

// flowcraft-rabbitmq: look at and repair the runs of @flowcraft/rabbitmq-adapter.
// Every command goes through the adapter's run API (no worker is started).
// Exit codes: 0 done, 1 the operation failed (or found a problem), 2 a usage error.

const { parseArgs } = require('node:util')
const { loadBlueprints, UsageError } = require('../lib/cli/blueprints')
const { assertQueuesExist } = require('../lib/cli/queues')
const { toAmqpUrl } = require('../lib/targets')
const { DEFAULTS, CLI_DEFAULTS } = require('../lib/options')

const EXIT_OK = 0
const EXIT_FAILED = 1
const EXIT_USAGE = 2

const COMMON_HELP = `Connection (flags win over environment variables):
  --postgres-url <url>     PostgreSQL      (env POSTGRES_URL; default: pg's PG* variables, then localhost:5432)
  --redis-url <url>        Redis           (env REDIS_URL; default redis://127.0.0.1:6379)
  --amqp-url <url>         RabbitMQ        (env RABBITMQ_URL or AMQP_URL; default amqp://guest:guest@127.0.0.1:5672)
  --queue <name>           job queue       (env FLOWCRAFT_QUEUE; default flowcraft-jobs, the README's);
                           never created: a queue that does not exist is an error
  --context-table <name>   context table   (env FLOWCRAFT_CONTEXT_TABLE; default flowcraft_contexts)
  --status-table <name>    status table    (env FLOWCRAFT_STATUS_TABLE; default flowcraft_statuses)
  --blueprints <module>    a module exporting \`blueprints\` (env FLOWCRAFT_BLUEPRINTS): CommonJS,
                           ES module or TypeScript (.ts/.mts/.cts); needed by reconcile, for
                           the node states and graph of show, and for the total in \`runs\`.
                           Node 20 cannot load TypeScript by itself: a .ts module is loaded
                           through tsx when your project has it (npm install --save-dev tsx);
                           otherwise compile it (tsc) and pass the .js
  --json                   print JSON instead of text
  -h, --help               this help
  -v, --version            print the version of @flowcraft/rabbitmq-adapter`

const HELP = {
	main: `Usage: flowcraft-rabbitmq <command> [options]

Look at and repair the workflow runs of @flowcraft/rabbitmq-adapter.

Commands:
  runs [--status <s>] [--limit <n>]          recent runs: status, last change, progress
  show <runId> [--mermaid]                   a run's status, its nodes and its blueprint as a Mermaid graph
  reconcile [runId] [--stalled-seconds <n>]  re-enqueue what a run (or every stalled run) needs to move on
  dead-letters [--limit <n>]                 list the dead-letter queue
  dead-letters requeue [--limit <n>]         move dead letters back to the job queue
  sql [--context-table <t>] [--status-table <t>]
                                             print the DDL the worker needs (for createTables: false)
  help [command]                             help on a command

${COMMON_HELP}

Read-only commands (runs, show, dead-letters) change nothing; no command creates a
queue or a table (sql only prints the statements).

Exit status: 0 done, 1 the operation failed, 2 wrong usage.`,
	runs: `Usage: flowcraft-rabbitmq runs [--status <status>] [--limit <n>]

The most recently updated runs, newest first: id, status, blueprint, time since the
run last changed, progress (nodes done / nodes in the blueprint; "?" without
--blueprints) and, for a failed or cancelled run, why.

  --status <status>   only runs with this status: running, awaiting, completed, failed, cancelled
  --limit <n>         at most n runs (default ${CLI_DEFAULTS.runsLimit})

${COMMON_HELP}`,
	show: `Usage: flowcraft-rabbitmq show <runId> [--mermaid]

A run's status, blueprint, reason (when it failed or was cancelled), last change and
the nodes done. With --blueprints, also its nodes with their state (done, running,
waiting, awaiting, failed, not_reached) and its blueprint as a Mermaid \`graph TD\`
in a \`\`\`mermaid fenced block (paste it into Markdown) in which each node has its state
as a class; --json gives the graph unfenced in \`mermaid\`.

  --mermaid   print only the fenced Mermaid graph (needs --blueprints)

${COMMON_HELP}`,
	reconcile: `Usage: flowcraft-rabbitmq reconcile [runId] [--stalled-seconds <n>]

With a run id: enqueue what that run needs to move on (nodes ready but never queued,
and queued nodes with no change to the run for --stalled-seconds).
Without: the same for every running run with no change for --stalled-seconds,
oldest first, one line per run. Needs --blueprints. With --stalled-seconds 0 it
also adopts the runs that have a context row and no status row yet (runs the
TypeScript adapter's workers advanced: they write no status before a run ends),
so one call takes over every run in flight at an upgrade.

  --stalled-seconds <n>   default ${CLI_DEFAULTS.stalledSeconds}
  --limit <n>             at most n stalled runs per pass (default ${CLI_DEFAULTS.reconcileLimit})

The job queue and <queue>.dead must exist (reconciling publishes to the queue the
workers consume; a --queue that does not exist is ERR_QUEUE_NOT_FOUND, nothing is
created). Exit status 1 when a run could not be reconciled.

${COMMON_HELP}`,
	'dead-letters': `Usage: flowcraft-rabbitmq dead-letters [--limit <n>]
       flowcraft-rabbitmq dead-letters requeue [--limit <n>]

List the messages of the dead-letter queue (<queue>.dead), oldest first, with the
reason each was refused (they stay in the queue); or move them back to the job queue.
Both queues must exist (a worker declares them): a --queue that does not exist is an
error (ERR_QUEUE_NOT_FOUND), and nothing is created. Needs amqplib installed for that check.

  --limit <n>   at most n messages (default ${CLI_DEFAULTS.deadLettersLimit} to list, ${CLI_DEFAULTS.requeueLimit} to requeue)

${COMMON_HELP}`,
	sql: `Usage: flowcraft-rabbitmq sql [--context-table <name>] [--status-table <name>]

Print every statement the worker needs on its tables, to hand to a DBA when the
workers run with createTables: false: CREATE TABLE IF NOT EXISTS for both tables,
ALTER TABLE ... ADD COLUMN IF NOT EXISTS for the status table's bookkeeping columns,
its unique index on idempotency_key, and its triggers (CREATE OR REPLACE FUNCTION,
then each trigger dropped if it exists and created): one that NOTIFYs a status
written by any process (waitForRun wakes at once; without it waitForRun reads the
status every second), and one that keeps a final status (completed, failed,
cancelled) from being overwritten. One transaction; idempotent: apply it again after
an upgrade. Connects to nothing.

  --context-table <name>   (env FLOWCRAFT_CONTEXT_TABLE; default flowcraft_contexts)
  --status-table <name>    (env FLOWCRAFT_STATUS_TABLE; default flowcraft_statuses)
  --json                   print { contextTable, statusTable, sql }

Apply it with e.g.  flowcraft-rabbitmq sql | psql "$POSTGRES_URL" -v ON_ERROR_STOP=1`,
}

const OPTIONS = {
	'postgres-url': { type: 'string' },
	'redis-url': { type: 'string' },
	'amqp-url': { type: 'string' },
	queue: { type: 'string' },
	'context-table': { type: 'string' },
	'status-table': { type: 'string' },
	blueprints: { type: 'string' },
	json: { type: 'boolean' },
	help: { type: 'boolean', short: 'h' },
	version: { type: 'boolean', short: 'v' },
	status: { type: 'string' },
	limit: { type: 'string' },
	'stalled-seconds': { type: 'string' },
	mermaid: { type: 'boolean' },
}

// Which command-specific options each command takes (the connection options go everywhere).
const COMMAND_OPTIONS = {
	runs: ['status', 'limit'],
	show: ['mermaid'],
	reconcile: ['stalled-seconds', 'limit'],
	'dead-letters': ['limit'],
	sql: [],
}

const STATUSES = ['running', 'awaiting', 'completed', 'failed', 'cancelled']

async function main(argv, { env = process.env, out = process.stdout, err = process.stderr } = {}) {
	const print = (s = '') => out.write(`${s}\n`)
	let parsed
	try {
		parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true })
	} catch (e) {
		err.write(`flowcraft-rabbitmq: ${e.message}\nRun flowcraft-rabbitmq --help for the usage.\n`)
		return EXIT_USAGE
	}
	const { values, positionals } = parsed
	const [command, ...rest] = positionals
	if (values.version) {
		print(require('../package.json').version)
		return EXIT_OK
	}
	if (command === 'help') {
		const topic = rest[0] && HELP[rest[0]] ? rest[0] : 'main'
		print(HELP[topic])
		return EXIT_OK
	}
	if (!command || values.help) {
		print(HELP[command && HELP[command] ? command : 'main'])
		return command || values.help ? EXIT_OK : EXIT_USAGE
	}
	if (!COMMAND_OPTIONS[command]) {
		err.write(`flowcraft-rabbitmq: unknown command ${JSON.stringify(command)}\n\n${HELP.main}\n`)
		return EXIT_USAGE
	}

	let adapter
	try {
		for (const name of Object.keys(values)) {
			const common = [
				'postgres-url',
				'redis-url',
				'amqp-url',
				'queue',
				'context-table',
				'status-table',
				'blueprints',
				'json',
				'help',
				'version',
			]
			if (!common.includes(name) && !COMMAND_OPTIONS[command].includes(name)) {
				throw new UsageError(`${command} does not take --${name}`)
			}
		}
		if (command === 'sql') {
			if (rest.length) throw new UsageError(`sql takes no argument; got ${JSON.stringify(rest[0])}`)
			return cmdSql(values, env, print)
		}
		const blueprints = await loadBlueprints(values.blueprints ?? env.FLOWCRAFT_BLUEPRINTS)
		adapter = createAdapter(values, env, blueprints)
		const ctx = {
			adapter,
			blueprints,
			values,
			print,
			err,
			json: !!values.json,
			// as the adapter reads it (an unencoded password percent-encoded), for amqplib's own checks
			amqpUrl: toAmqpUrl(amqpUrlOf(values, env)),
		}
		switch (command) {
			case 'runs':
				if (rest.length) throw new UsageError(`runs takes no argument; got ${JSON.stringify(rest[0])}`)
				return await cmdRuns(ctx)
			case 'show':
				if (rest.length !== 1) throw new UsageError('show takes one run id: flowcraft-rabbitmq show <runId>')
				return await cmdShow(ctx, rest[0])
			case 'reconcile':
				if (rest.length > 1) throw new UsageError('reconcile takes at most one run id')
				return await cmdReconcile(ctx, rest[0])
			case 'dead-letters':
				if (rest.length === 0) return await cmdDeadLetters(ctx)
				if (rest.length === 1 && rest[0] === 'requeue') return await cmdRequeue(ctx)
				throw new UsageError(`dead-letters takes no argument or "requeue"; got ${JSON.stringify(rest.join(' '))}`)
		}
		return EXIT_USAGE
	} catch (e) {
		if (e instanceof UsageError) {
			const code = e.code ? ` [${e.code}]` : ''
			err.write(`flowcraft-rabbitmq: ${e.message}${code}\nRun flowcraft-rabbitmq ${command} --help for the usage.\n`)
			return EXIT_USAGE
		}
		err.write(`flowcraft-rabbitmq: ${explain(e, values, env)}\n`)
		return EXIT_FAILED
	} finally {
		if (adapter) await adapter.close().catch(() => {})
	}
}

// ─────────────────────────────────────────────────────────────── setup

/** The job queue when neither --queue nor FLOWCRAFT_QUEUE is given: the README's and the demo's. */
const DEFAULT_QUEUE = DEFAULTS.queueName

function amqpUrlOf(values, env) {
	return values['amqp-url'] ?? env.RABBITMQ_URL ?? env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672'
}

function createAdapter(values, env, blueprints) {
	const { RabbitMqAdapter, RedisCoordinationStore } = require('..')
	const pg = values['postgres-url'] ?? env.POSTGRES_URL
	const redis = values['redis-url'] ?? env.REDIS_URL ?? 'redis://127.0.0.1:6379'
	const amqp = amqpUrlOf(values, env)
	const quiet = {
		debug() {},
		info() {},
		warn: (m) => process.stderr.write(`warning: ${m}\n`),
		error: (m) => process.stderr.write(`error: ${m}\n`),
	}
	return new RabbitMqAdapter({
		amqpConnection: amqp,
		pgClient: pg || {},
		coordinationStore: new RedisCoordinationStore(redis),
		queueName: values.queue ?? (env.FLOWCRAFT_QUEUE || DEFAULT_QUEUE),
		contextTableName: values['context-table'] ?? env.FLOWCRAFT_CONTEXT_TABLE ?? undefined,
		statusTableName: values['status-table'] ?? env.FLOWCRAFT_STATUS_TABLE ?? undefined,
		// An operations tool does not create tables: a typo in a table name is an error.
		createTables: false,
		runtimeOptions: { registry: {}, blueprints: blueprints || {}, logger: quiet },
	})
}

function needBlueprints(ctx, command) {
	if (!ctx.blueprints)
		throw new UsageError(`${command} needs the blueprints: pass --blueprints <module> (or set FLOWCRAFT_BLUEPRINTS)`)
}

/**
 * Before a command reaches RabbitMQ: the job queue and its dead-letter queue must
 * exist, since the native core declares both when it connects (lib/cli/queues.js).
 */
function needQueues(ctx) {
	const q = ctx.adapter.queueName
	return assertQueuesExist(ctx.amqpUrl, [q, `${q}.dead`])
}

function positiveInt(value, name, fallback) {
	if (value === undefined) return fallback
	if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 100000) {
		throw new UsageError(`--${name} must be a whole number from 1 to 100000; got ${JSON.stringify(value)}`)
	}
	return Number(value)
}

function seconds(value, name, fallback) {
	if (value === undefined) return fallback
	const n = Number(value)
	if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n > 4294967) {
		throw new UsageError(`--${name} must be a number of seconds from 0 to 4294967; got ${JSON.stringify(value)}`)
	}
	return n
}

/** A failure in words, with a hint for the usual causes. */
function explain(e, values, env) {
	const message = e?.message ? e.message : String(e)
	const code = e?.code ? ` [${e.code}]` : ''
	// ERR_TABLE_NOT_FOUND: the adapter's word for a missing table with createTables: false (the CLI's case)
	if ((/does not exist/.test(message) && e.code === 'ERR_PG') || e?.code === 'ERR_TABLE_NOT_FOUND') {
		const ctx = values['context-table'] ?? env.FLOWCRAFT_CONTEXT_TABLE ?? DEFAULTS.contextTableName
		const st = values['status-table'] ?? env.FLOWCRAFT_STATUS_TABLE ?? DEFAULTS.statusTableName
		return `${message}${code}\nThe tables ${ctx} / ${st} are not in this database: check --postgres-url, --context-table and --status-table (a worker creates them when it starts; \`flowcraft-rabbitmq sql\` prints their DDL).`
	}
	return `${message}${code}`
}

/**
 * `sql`: the DDL of the tables, printed by the native core (the statements `createTables: true`
 * applies). Connects to nothing.
 */
function cmdSql(values, env, print) {
	const { checkContextTableName, checkTableName } = require('../lib/options')
	const { loadNative } = require('../lib/load-native')
	const names = {}
	for (const [key, flag, variable, fallback, check] of [
		['contextTable', 'context-table', 'FLOWCRAFT_CONTEXT_TABLE', DEFAULTS.contextTableName, checkContextTableName],
		['statusTable', 'status-table', 'FLOWCRAFT_STATUS_TABLE', DEFAULTS.statusTableName, checkTableName],
	]) {
		const name = values[flag] ?? (env[variable] || fallback)
		try {
			names[key] = check(name, `--${flag}`)
		} catch (e) {
			throw new UsageError(e.message, e.code)
		}
	}
	const sql = loadNative().tablesSql(names.contextTable, names.statusTable)
	if (values.json) print(JSON.stringify({ ...names, sql }, null, 2))
	else out(print, sql)
	return EXIT_OK
}

/** Prints text that already ends with a newline without adding another. */
function out(print, text) {
	print(text.endsWith('\n') ? text.slice(0, -1) : text)
}

// ─────────────────────────────────────────────────────────────── formatting

function ago(secondsAgo) {
	if (typeof secondsAgo !== 'number' || !Number.isFinite(secondsAgo)) return '-'
	const s = Math.max(0, Math.floor(secondsAgo))
	if (s < 60) return `${s}s ago`
	if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s ago`
	if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m ago`
	return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h ago`
}

function truncate(s, n) {
	const t = String(s).replace(/\s+/g, ' ')
	return t.length > n ? `${t.slice(0, n - 1)}…` : t
}

/** Rows of strings as aligned columns under a header; the last column is not padded. */
function table(header, rows) {
	const all = [header, ...rows]
	const widths = header.map((_, i) => Math.max(...all.map((r) => String(r[i]).length)))
	return all
		.map((r) =>
			r
				.map((c, i) => (i === r.length - 1 ? String(c) : String(c).padEnd(widths[i])))
				.join('  ')
				.trimEnd(),
		)
		.join('\n')
}

function totalNodes(blueprints, blueprintId) {
	const bp = blueprints && blueprintId ? blueprints[blueprintId] : undefined
	return bp && Array.isArray(bp.nodes) ? bp.nodes.length : undefined
}

// ─────────────────────────────────────────────────────────────── commands

async function cmdRuns(ctx) {
	const { adapter, values, print } = ctx
	const status = values.status
	if (status !== undefined && !STATUSES.includes(status)) {
		throw new UsageError(`--status must be one of ${STATUSES.join(', ')}; got ${JSON.stringify(status)}`)
	}
	const limit = positiveInt(values.limit, 'limit', CLI_DEFAULTS.runsLimit)
	const runs = await adapter.listRuns({ status, limit })
	const rows = runs.map((r) => ({ ...r, totalNodes: totalNodes(ctx.blueprints, r.blueprintId) }))
	if (ctx.json) {
		print(JSON.stringify(rows, null, 2))
		return EXIT_OK
	}
	if (rows.length === 0) {
		print(status ? `No ${status} runs.` : 'No runs.')
		return EXIT_OK
	}
	print(
		table(
			['RUN ID', 'STATUS', 'BLUEPRINT', 'UPDATED', 'PROGRESS', 'REASON'],
			rows.map((r) => [
				r.runId,
				r.status ?? '-',
				r.blueprintId ?? '-',
				ago(r.idleSeconds),
				`${r.doneNodes}/${r.totalNodes ?? '?'}`,
				r.reason ? truncate(r.reason, 60) : '',
			]),
		),
	)
	return EXIT_OK
}

/** Ids of the nodes whose output the run's context holds (what the core counts as done). */
function doneNodeIds(run) {
	return Object.keys(run.context || {})
		.filter((k) => k.startsWith('_outputs.'))
		.map((k) => k.slice('_outputs.'.length))
}

/** The Mermaid graph in a fenced block, ready to paste into Markdown. */
const fenced = (mermaid) => `\`\`\`mermaid\n${mermaid}\n\`\`\``

async function cmdShow(ctx, runId) {
	const { adapter, print } = ctx
	if (ctx.values.mermaid) needBlueprints(ctx, 'show --mermaid')
	const run = await adapter.getRun(runId)
	if (!run) {
		ctx.err.write(
			`flowcraft-rabbitmq: run ${JSON.stringify(runId)} not found in ${adapter.statusTableName} / ${adapter.contextTableName}\n`,
		)
		return EXIT_FAILED
	}
	// Without --blueprints the status is still known; with them, a run whose blueprint
	// is not among them is an error (the wrong module, or an old blueprint).
	const bp = ctx.blueprints && run.blueprintId ? ctx.blueprints[run.blueprintId] : undefined
	const missingBp = ctx.blueprints !== undefined && !bp
	const mermaid = bp ? toMermaid(bp, run.nodes) : undefined
	if (ctx.json) {
		print(JSON.stringify({ ...run, mermaid }, null, 2))
		return missingBp ? EXIT_FAILED : EXIT_OK
	}
	if (ctx.values.mermaid) {
		if (!mermaid)
			throw new Error(`the blueprint ${JSON.stringify(run.blueprintId)} of run ${runId} is not in --blueprints`)
		print(fenced(mermaid))
		return EXIT_OK
	}
	const doneIds = bp ? run.nodes.filter((n) => n.state === 'done').map((n) => n.id) : doneNodeIds(run)
	const runVersion = run.context.blueprintVersion
	const bpVersion = bp?.metadata?.version
	const v = runVersion !== undefined && runVersion !== null ? runVersion : bpVersion
	const version = v !== undefined && v !== null ? ` (version ${v})` : ''
	const lines = [
		['Run', run.runId],
		['Blueprint', `${run.blueprintId ?? '-'}${version}`],
		['Status', run.status ?? '-'],
	]
	if (run.reason) lines.push(['Reason', run.reason])
	if (run.updatedAt)
		lines.push(['Updated', `${run.updatedAt.toISOString()} (${ago((Date.now() - run.updatedAt.getTime()) / 1000)})`])
	lines.push([
		'Progress',
		bp
			? `${doneIds.length}/${bp.nodes.length} nodes done`
			: `${doneIds.length}/? nodes done${doneIds.length ? ` (${doneIds.join(', ')})` : ''}`,
	])
	const w = Math.max(...lines.map((l) => l[0].length))
	for (const [k, val] of lines) print(`${k.padEnd(w)}  ${val}`)
	if (missingBp) {
		ctx.err.write(
			`flowcraft-rabbitmq: the blueprint ${JSON.stringify(run.blueprintId)} of this run is not in --blueprints; its nodes are unknown\n`,
		)
		return EXIT_FAILED
	}
	if (!bp) {
		print()
		print('Pass --blueprints <module> for the state of each node and the graph.')
		return EXIT_OK
	}
	print()
	print(
		table(
			['NODE', 'USES', 'STATE'],
			run.nodes.map((n) => [n.id, n.uses, n.state]),
		),
	)
	print()
	print(fenced(mermaid))
	return EXIT_OK
}

const STATE_STYLES = {
	done: 'fill:#d4edda,stroke:#28a745,color:#155724',
	running: 'fill:#cce5ff,stroke:#007bff,color:#004085',
	waiting: 'fill:#fff3cd,stroke:#ffc107,color:#856404',
	awaiting: 'fill:#e2d9f3,stroke:#6f42c1,color:#3d2a6b',
	failed: 'fill:#f8d7da,stroke:#dc3545,color:#721c24',
	not_reached: 'fill:#f8f9fa,stroke:#adb5bd,color:#6c757d',
}

/** Text safe inside a quoted Mermaid label. */
function mermaidText(s) {
	return String(s).replace(
		/[#"<>&]/g,
		(c) => ({ '#': '#35;', '"': '#quot;', '<': '#lt;', '>': '#gt;', '&': '#amp;' })[c],
	)
}

/**
 * The blueprint as a Mermaid `graph TD`: one box per node (id and `uses`), one arrow
 * per edge (labelled with its action and condition), and each node's state as a class.
 * Mermaid ids are n0, n1, ... so that any node id is safe.
 */
function toMermaid(bp, nodes) {
	const stateOf = new Map(nodes.map((n) => [n.id, n.state]))
	const ids = new Map(bp.nodes.map((n, i) => [n.id, `n${i}`]))
	const lines = ['graph TD']
	for (const n of bp.nodes) lines.push(`    ${ids.get(n.id)}["${mermaidText(n.id)}<br/>${mermaidText(n.uses)}"]`)
	for (const e of bp.edges) {
		const from = ids.get(e.source)
		const to = ids.get(e.target)
		if (!from || !to) continue
		const label = [e.action, e.condition ? `if ${e.condition}` : undefined].filter(Boolean).join(' ')
		lines.push(label ? `    ${from} -->|"${mermaidText(label)}"| ${to}` : `    ${from} --> ${to}`)
	}
	const byState = new Map()
	for (const n of bp.nodes) {
		const state = stateOf.get(n.id) || 'not_reached'
		if (!byState.has(state)) byState.set(state, [])
		byState.get(state).push(ids.get(n.id))
	}
	for (const [state, style] of Object.entries(STATE_STYLES)) {
		if (byState.has(state)) lines.push(`    classDef ${state} ${style}`)
	}
	for (const [state, list] of byState) lines.push(`    class ${list.join(',')} ${state}`)
	return lines.join('\n')
}

async function cmdReconcile(ctx, runId) {
	const { adapter, values, print } = ctx
	needBlueprints(ctx, 'reconcile')
	const stalledSeconds = seconds(values['stalled-seconds'], 'stalled-seconds', CLI_DEFAULTS.stalledSeconds)
	const limit = runId === undefined ? positiveInt(values.limit, 'limit', CLI_DEFAULTS.reconcileLimit) : undefined
	if (runId !== undefined && values.limit !== undefined)
		throw new UsageError('--limit applies to reconciling all stalled runs, not one run')
	// reconciling publishes jobs: to the queue the workers consume, never to a new one
	await needQueues(ctx)
	if (runId !== undefined) {
		const enqueued = [...(await adapter.reconcile(runId, { staleAfterMs: Math.ceil(stalledSeconds * 1000) }))]
		if (ctx.json) print(JSON.stringify({ runId, enqueued }))
		else if (enqueued.length) print(`Run ${runId}: enqueued ${enqueued.join(', ')}`)
		else {
			const run = await adapter.getRun(runId)
			const why = !run
				? 'no such run'
				: run.status === 'running'
					? `it is running and changed within the last ${stalledSeconds} seconds; --stalled-seconds sets how long`
					: `it is ${run.status}`
			print(`Run ${runId}: nothing to enqueue (${why})`)
		}
		return EXIT_OK
	}
	const { createRabbitMqReconciler } = require('..')
	const silent = { debug() {}, info() {}, warn() {}, error() {} }
	const results = []
	const reconciler = createRabbitMqReconciler({
		adapter,
		stalledThresholdSeconds: stalledSeconds,
		limit,
		logger: silent,
		onProgress: ({ runId: id, index, total, enqueued, error }) => {
			results.push({
				runId: id,
				enqueued: enqueued ? [...enqueued] : undefined,
				error: error ? error.message : undefined,
			})
			if (ctx.json) return
			const what = error
				? `failed: ${error.message}`
				: enqueued.size
					? `enqueued ${[...enqueued].join(', ')}`
					: 'nothing to enqueue'
			print(`[${index}/${total}] ${id}: ${what}`)
		},
	})
	if (!ctx.json) print(`Looking for running runs with no change for ${stalledSeconds}s...`)
	const stats = await reconciler.run()
	if (ctx.json) print(JSON.stringify({ ...stats, runs: results }, null, 2))
	else print(`Stalled: ${stats.stalledRuns}, reconciled: ${stats.reconciledRuns}, failed: ${stats.failedRuns}`)
	return stats.failedRuns > 0 ? EXIT_FAILED : EXIT_OK
}

async function cmdDeadLetters(ctx) {
	const { adapter, values, print } = ctx
	const limit = positiveInt(values.limit, 'limit', CLI_DEFAULTS.deadLettersLimit)
	await needQueues(ctx)
	const list = await adapter.deadLetters({ limit })
	if (ctx.json) {
		print(JSON.stringify(list, null, 2))
		return EXIT_OK
	}
	if (list.length === 0) {
		print(`No dead letters in ${adapter.queueName}.dead.`)
		return EXIT_OK
	}
	print(
		`${list.length} dead letter(s) in ${adapter.queueName}.dead${list.length === limit ? ` (the first ${limit}; --limit for more)` : ''}:`,
	)
	print(
		table(
			['#', 'DEAD AT', 'REASON', 'BODY'],
			list.map((d, i) => [
				String(i + 1),
				d.deadAt ? d.deadAt.toISOString() : '-',
				truncate(d.reason || '-', 80),
				truncate(d.body, 80),
			]),
		),
	)
	return EXIT_OK
}

async function cmdRequeue(ctx) {
	const { adapter, values, print } = ctx
	const limit = positiveInt(values.limit, 'limit', CLI_DEFAULTS.requeueLimit)
	await needQueues(ctx)
	if (!ctx.json) print(`Moving up to ${limit} dead letter(s) from ${adapter.queueName}.dead to ${adapter.queueName}...`)
	const moved = await adapter.requeueDeadLetters({ limit })
	if (ctx.json) print(JSON.stringify({ requeued: moved }))
	else print(`Requeued ${moved} dead letter(s).`)
	return EXIT_OK
}

module.exports = { main, toMermaid }

if (require.main === module) {
	main(process.argv.slice(2)).then(
		(code) => {
			process.exitCode = code
		},
		(e) => {
			process.stderr.write(`flowcraft-rabbitmq: ${e?.stack ? e.stack : e}\n`)
			process.exitCode = EXIT_FAILED
		},
	)
}
