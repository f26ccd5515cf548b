'use strict'
/**
 * The upgrade tests' world (__test__/upgrade.test.js): the tables as the TypeScript adapter's
 * users have them, worker processes of both kinds, runs started as each kind's users start
 * them, FlowRuntime's reference, and the checks. Not a test file.
 *
 *   world(res, label)        queue, tables (+ `<ctx>_nodes`, `<queue>.dead`), Redis prefix, a log
 *                            of status changes (`<st>_slog`, filled by a trigger), all removed after
 *                            the test; `oldSchema` creates the tables as the TypeScript adapter's
 *                            README has them (+ the `status` column its code writes)
 *   spawnWorker(w, kind, label, env)  'old' = bench/peer.mjs (Flowcraft's BaseDistributedAdapter over
 *                            the TypeScript adapter's transport), 'ours' = upgrade/worker.js; `.ready`,
 *                            `.ran` (the RAN lines it printed), `.stop(signal)`
 *   startWireRun(w, tag)     a run started as the TypeScript adapter's users start one: a context row
 *                            and a start job (no status row)
 *   reference()              FlowRuntime's outputs and status for the workflow
 *   verify(w, runs, ...)     every run completed once with the reference's outputs
 */
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn } = require('node:child_process')
const amqplib = require('amqplib')
const S = require('../helpers/services')
const { place, spawnWorker: spawnProcess } = require('../helpers/run-place')
const { BLUEPRINT_ID, NODE_IDS } = require('./workflows')

const ROOT = path.join(__dirname, '..', '..')
const LOG_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'upgrade-'))
const q = S.quoteIdent
const FINAL = ['completed', 'failed', 'cancelled']

/** This test's queue, tables, Redis prefix and status-change log. */
async function world(res, label, { oldSchema = true } = {}) {
	const where = place(res, label)
	where.prefix = res.keyPrefix(label)
	where.slog = res.trackTable(`${where.st}_slog`)
	where.fn = `${where.st}_slog_fn`
	if (oldSchema) {
		// what the TypeScript adapter's README creates (its code also writes a `status` column)
		await S.pgQuery(`CREATE TABLE ${q(where.ctx)} (run_id TEXT PRIMARY KEY, context_data JSONB NOT NULL)`)
		await S.pgQuery(
			`CREATE TABLE ${q(where.st)} (run_id TEXT PRIMARY KEY, status TEXT, status_data JSONB NOT NULL, updated_at TIMESTAMPTZ DEFAULT NOW())`,
		)
		await statusLog(res, where)
	}
	return where
}

/**
 * Every write of a status row that changes it (`changed`), and every write that leaves a
 * final status (`final_write`, also when the status table's keep-final trigger undid it).
 */
async function statusLog(res, where) {
	await S.pgQuery(`CREATE TABLE ${q(where.slog)} (id BIGSERIAL PRIMARY KEY, run_id TEXT, old_status TEXT,
		new_status TEXT, changed BOOLEAN, status_data JSONB, at TIMESTAMPTZ DEFAULT clock_timestamp())`)
	await S.pgQuery(`CREATE FUNCTION ${q(where.fn)}() RETURNS trigger LANGUAGE plpgsql AS $f$
		BEGIN
			INSERT INTO ${q(where.slog)} (run_id, old_status, new_status, changed, status_data)
			VALUES (NEW.run_id, CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END, NEW.status,
				TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status OR NEW.status_data IS DISTINCT FROM OLD.status_data,
				NEW.status_data);
			RETURN NULL;
		END $f$`)
	await S.pgQuery(
		`CREATE TRIGGER slog AFTER INSERT OR UPDATE ON ${q(where.st)} FOR EACH ROW EXECUTE FUNCTION ${q(where.fn)}()`,
	)
	res.onCleanup(() => S.pgQuery(`DROP FUNCTION IF EXISTS ${q(where.fn)}() CASCADE`))
}

/** A worker process of `kind` ('old' | 'ours') on this world's queue and tables. */
function spawnWorker(res, where, kind, label, extraEnv = {}) {
	const ran = []
	const child = spawnProcess(res, {
		script: kind === 'old' ? path.join(ROOT, 'bench', 'peer.mjs') : path.join(__dirname, 'worker.js'),
		where,
		label,
		logDir: LOG_DIR,
		env: {
			REDIS_PREFIX: where.prefix,
			WORKFLOWS_MODULE: path.join(__dirname, 'workflows.js'),
			UPGRADE_TRACE: '1',
			UPGRADE_KIND: kind,
			...extraEnv,
		},
		onLine: (line) => {
			const m = /^RAN (\S+) (\S+) (\S+)$/.exec(line)
			if (m) ran.push({ kind: m[1], tag: m[2], node: m[3] })
		},
	})
	child.kind = kind
	child.ran = ran
	return child
}

/** A run started as the TypeScript adapter's users start one: its context row, then its start job. */
async function startWireRun(where, tag, channel) {
	const runId = S.uniqueName(tag)
	const context = { blueprintId: BLUEPRINT_ID, blueprintVersion: null, tag }
	await S.pgQuery(`INSERT INTO ${q(where.ctx)} (run_id, context_data) VALUES ($1, $2)`, [runId, context])
	channel.sendToQueue(where.queue, Buffer.from(JSON.stringify({ runId, blueprintId: BLUEPRINT_ID, nodeId: 'start' })), {
		persistent: true,
	})
	await channel.waitForConfirms()
	return { runId, tag }
}

/** A confirm channel on the broker (closed after the test). */
async function confirmChannel(res) {
	const conn = await amqplib.connect(S.RABBITMQ_URL)
	res.onCleanup(() => conn.close().catch(() => {}))
	return conn.createConfirmChannel()
}

let referenceCache
/** FlowRuntime's `{ status, outputs }` for the workflow (run once per process). */
function reference() {
	referenceCache ??= new Promise((resolve, reject) => {
		const child = spawn(process.execPath, [path.join(__dirname, 'reference.mjs')], {
			cwd: ROOT,
			env: { ...process.env, UPGRADE_NODE_MS: '5', UPGRADE_TRACE: '0' },
			stdio: ['ignore', 'pipe', 'inherit'],
		})
		let out = ''
		child.stdout.on('data', (d) => {
			out += d
		})
		child.once('exit', (code) => {
			const status = /^STATUS (\S+)$/m.exec(out)?.[1]
			const outputs = /^OUTPUTS (.*)$/m.exec(out)?.[1]
			if (code !== 0 || !status || !outputs) reject(new Error(`reference.mjs failed (${code}): ${out}`))
			else resolve({ status, outputs: JSON.parse(outputs) })
		})
	})
	return referenceCache
}

const outputsOf = (context) =>
	Object.fromEntries(
		Object.keys(context ?? {})
			.filter((k) => k.startsWith('_outputs.'))
			.sort()
			.map((k) => [k, context[k]]),
	)

/** Each run's status row, the outputs of its final payload and of its context row, and its status changes. */
async function finalState(where, runs) {
	const ids = runs.map((r) => r.runId)
	const st = await S.pgQuery(`SELECT run_id, status, status_data FROM ${q(where.st)} WHERE run_id = ANY($1)`, [ids])
	const ctx = await S.pgQuery(`SELECT run_id, context_data FROM ${q(where.ctx)} WHERE run_id = ANY($1)`, [ids])
	const slog = await S.pgQuery(
		`SELECT run_id, old_status, new_status, changed, status_data FROM ${q(where.slog)} WHERE run_id = ANY($1) ORDER BY id`,
		[ids],
	)
	return runs.map(({ runId, tag }) => {
		const row = st.rows.find((r) => r.run_id === runId)
		const log = slog.rows.filter((r) => r.run_id === runId)
		const finals = log.filter((r) => r.changed && FINAL.includes(r.new_status))
		return {
			tag,
			status: row?.status,
			payloadOutputs: outputsOf(row?.status_data?.payload?.context),
			rowOutputs: outputsOf(ctx.rows.find((r) => r.run_id === runId)?.context_data),
			// changes into (or of) a final status: exactly one when the run completed once
			finalChanges: finals.length,
			// writes that would have ended the run again (each undone by the keep-final trigger)
			finalRewrites: log.filter((r) => !r.changed && FINAL.includes(r.old_status)).length,
		}
	})
}

/** Polls until every run's status is final (or `ms` passes); resolves with how many are. */
async function settle(where, runs, ms) {
	const ids = runs.map((r) => r.runId)
	const deadline = Date.now() + ms
	for (;;) {
		const { rows } = await S.pgQuery(
			`SELECT count(*)::int AS n FROM ${q(where.st)} WHERE run_id = ANY($1) AND status = ANY($2)`,
			[ids, FINAL],
		)
		if (rows[0].n === ids.length || Date.now() > deadline) return rows[0].n
		await new Promise((r) => setTimeout(r, 100))
	}
}

/** How many times each node of each run ran, over the given workers: { tag: { node: n } }. */
function executions(workers) {
	const out = {}
	for (const w of workers)
		for (const { tag, node } of w.ran) {
			out[tag] ??= {}
			out[tag][node] = (out[tag][node] ?? 0) + 1
		}
	return out
}

/** What a run completed once, with FlowRuntime's outputs, looks like in finalState. */
function completedOnce(tag, outputs) {
	return { tag, status: 'completed', payloadOutputs: outputs, rowOutputs: outputs, finalChanges: 1, finalRewrites: 0 }
}

module.exports = {
	LOG_DIR,
	NODE_IDS,
	world,
	statusLog,
	spawnWorker,
	startWireRun,
	confirmChannel,
	reference,
	finalState,
	settle,
	executions,
	completedOnce,
}
