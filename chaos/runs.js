'use strict'
/**
 * A Chaos harness's runs: its AMQP client (publish jobs, drain the dead-letter queue),
 * runs started by the wire protocol (a context row, then the start nodes' jobs), and
 * what the tables say of them (statuses, contexts, executions, delivery counters).
 * Methods of Chaos (chaos/harness.js mixes them in).
 */
// the run's context as the tests read it: the context row with its node rows merged
const { readContextRow } = require('../__test__/helpers/services')
const { sleep, quoteIdent, headerText } = require('./services')
const { FANOUT, blueprints, startNodesOf } = require('./blueprints')

/** The AMQP and run methods of Chaos. */
class ChaosRuns {
	// ---------------------------------------------------------------- AMQP client

	async channel() {
		if (this.ch) return this.ch
		const amqplib = require('amqplib')
		const conn = await amqplib.connect(this.rabbitmqUrl)
		conn.on('error', () => {})
		conn.on('close', () => {
			if (this.conn === conn) {
				this.conn = null
				this.ch = null
			}
		})
		const ch = await conn.createConfirmChannel()
		ch.on('error', () => {})
		ch.on('close', () => {
			if (this.ch === ch) this.ch = null
		})
		// The workers declare the queues (maybe with arguments of their own): check them
		// on a side channel (a failed check closes it) and declare only what is missing.
		for (const q of [this.queue, this.deadQueue]) {
			const probe = await conn.createChannel()
			probe.on('error', () => {})
			const exists = await probe.checkQueue(q).then(
				() => true,
				() => false,
			)
			await probe.close().catch(() => {})
			if (!exists) await ch.assertQueue(q, { durable: true })
		}
		this.conn = conn
		this.ch = ch
		return ch
	}

	async closeAmqp() {
		const conn = this.conn
		this.conn = null
		this.ch = null
		if (conn) await conn.close().catch(() => {})
	}

	/** Publishes raw bodies (Buffer | string | object) persistently and waits for the confirms. */
	async publish(bodies, { queue = this.queue } = {}) {
		for (let attempt = 1; ; attempt++) {
			try {
				const ch = await this.channel()
				for (const b of bodies) {
					const body = Buffer.isBuffer(b) ? b : Buffer.from(typeof b === 'string' ? b : JSON.stringify(b))
					ch.sendToQueue(queue, body, { persistent: true, contentType: 'application/json' })
				}
				await ch.waitForConfirms()
				return
			} catch (e) {
				// A retry may publish some jobs twice (those confirmed before the failure):
				// harmless for the adapter, and logged so a duplicate execution can be traced.
				this.log(`publishing ${bodies.length} messages failed (${e.message}); attempt ${attempt + 1}`)
				if (attempt >= 5) throw e
				await this.closeAmqp()
				await sleep(500 * attempt)
			}
		}
	}

	/** Takes every message now in the dead-letter queue: [{ body, text, reason }]. */
	async drainDeadLetters() {
		const ch = await this.channel()
		const out = []
		for (;;) {
			const m = await ch.get(this.deadQueue, { noAck: true })
			if (!m) break
			const headers = m.properties.headers || {}
			out.push({ body: m.content, text: m.content.toString('utf8'), reason: headerText(headers['x-flowcraft-reason']) })
		}
		this.deadLetters.push(...out)
		return out
	}

	// ---------------------------------------------------------------- runs

	newRunId(phase) {
		return `${this.prefix}.${phase}.${++this.runSeq}`
	}

	/**
	 * Starts runs by the wire protocol: the context row, then one job per start node.
	 * run: { runId, blueprintId = FANOUT, seed, delays, crash, context, duplicateStart }
	 */
	async startRuns(runs) {
		if (!runs.length) return
		const ids = []
		const ctxs = []
		const jobs = []
		for (const r of runs) {
			const bp = blueprints[r.blueprintId || FANOUT]
			const context = {
				...(r.context || {}),
				blueprintId: bp.id,
				blueprintVersion: bp.metadata.version,
				chaosRunId: r.runId,
				chaosSeed: r.seed ?? 0,
			}
			if (r.delays) context.chaosDelays = r.delays
			if (r.crash) context.chaosCrash = r.crash
			ids.push(r.runId)
			ctxs.push(JSON.stringify(context))
			for (const nodeId of startNodesOf(bp)) {
				jobs.push({ runId: r.runId, blueprintId: bp.id, nodeId })
				if (r.duplicateStart) jobs.push({ runId: r.runId, blueprintId: bp.id, nodeId })
			}
		}
		await this.pg.query(
			`INSERT INTO ${quoteIdent(this.t.ctx)} (run_id, context_data) SELECT * FROM unnest($1::text[], $2::jsonb[])`,
			[ids, ctxs],
		)
		await this.publish(jobs)
	}

	/** Fan-out runs for a phase: { runId, seed }. */
	fanoutRuns(phase, n, extra = () => ({})) {
		return Array.from({ length: n }, (_, i) => ({ runId: this.newRunId(phase), seed: i + 1, ...extra(i) }))
	}

	async statuses(runIds) {
		const r = await this.pg.query(
			`SELECT run_id, status, status_data->>'reason' AS reason FROM ${quoteIdent(this.t.st)} WHERE run_id = ANY($1)`,
			[runIds],
		)
		return new Map(r.rows.map((x) => [x.run_id, x]))
	}

	/**
	 * Waits until every run has a final status, or nothing finished for `stallMs`, or
	 * `timeoutMs` passed. Returns the ids still not final.
	 */
	async waitForRuns(runIds, { timeoutMs = 600000, stallMs = 90000, onTick } = {}) {
		const start = Date.now()
		let lastDone = -1
		let lastProgress = Date.now()
		for (;;) {
			const r = await this.pg.query(
				`SELECT count(*)::int AS n FROM ${quoteIdent(this.t.st)} WHERE run_id = ANY($1) AND status IN ('completed', 'failed', 'cancelled')`,
				[runIds],
			)
			const done = r.rows[0].n
			if (onTick) onTick(done, runIds.length)
			if (done >= runIds.length) return []
			if (done !== lastDone) {
				lastDone = done
				lastProgress = Date.now()
			}
			if (Date.now() - lastProgress > stallMs || Date.now() - start > timeoutMs) {
				const st = await this.statuses(runIds)
				return runIds.filter((id) => !['completed', 'failed', 'cancelled'].includes(st.get(id)?.status))
			}
			await sleep(250)
		}
	}

	/** A run's context: its context row with its node rows' outputs and inputs (as getRun merges them). */
	async contextOf(runId) {
		return readContextRow(this.t.ctx, runId, this.pg)
	}

	async waitForKey(runId, key, timeoutMs = 30000) {
		const deadline = Date.now() + timeoutMs
		while (Date.now() < deadline) {
			const context = await this.contextOf(runId)
			if (context && Object.hasOwn(context, key)) return true
			await sleep(50)
		}
		return false
	}

	async executions(runIds) {
		const r = await this.pg.query(
			`SELECT run_id, node_id, attempt, pid, exec_id, at FROM ${quoteIdent(this.t.exec)} WHERE run_id = ANY($1) ORDER BY id`,
			[runIds],
		)
		return r.rows
	}

	/** Durable delivery counters of these runs (the status row's `deliveries`): Map runId -> Map nodeId -> count. */
	async deliveryCounters(runIds) {
		const out = new Map()
		const r = await this.pg.query(
			`SELECT run_id, deliveries FROM ${quoteIdent(this.t.st)} WHERE run_id = ANY($1) AND deliveries IS NOT NULL`,
			[runIds],
		)
		for (const row of r.rows)
			out.set(row.run_id, new Map(Object.entries(row.deliveries).map(([k, v]) => [k, Number(v)])))
		return out
	}

	/** A run's bookkeeping, for diagnostics: the nodes still queued and the join's arrivals (node rows). */
	async runRows(id) {
		const { rows } = await this.pg.query(
			`SELECT node_id, state, joined FROM ${quoteIdent(`${this.t.ctx}_nodes`)} WHERE run_id = $1`,
			[id],
		)
		return {
			queued: rows.filter((r) => r.state === 'queued').map((r) => r.node_id),
			// the nodes counted at the join: each row lists the joins it was counted at
			arrivals: rows.filter((r) => (r.joined || []).includes('join')).map((r) => r.node_id),
		}
	}

	async waitForExecutions(runId, nodeId, n, timeoutMs = 15000) {
		const deadline = Date.now() + timeoutMs
		while (Date.now() < deadline) {
			const rows = (await this.executions([runId])).filter((r) => r.node_id === nodeId)
			if (rows.length >= n) return rows
			await sleep(20)
		}
		return (await this.executions([runId])).filter((r) => r.node_id === nodeId)
	}
}

module.exports = { ChaosRuns }
