'use strict'
/**
 * Starts runs by the wire protocol and waits for their final status, as any producer
 * would (no adapter code involved):
 *   1. INSERT INTO <ctx> (run_id, context_data) VALUES ($1, $2): the initial context plus
 *      `blueprintId` and `blueprintVersion` (`blueprint.metadata?.version ?? null`);
 *   2. one persistent JSON job `{ runId, blueprintId, nodeId }` per start node (no incoming
 *      edge, not any node's `config.fallback`) on the durable queue;
 *   3. poll <status> every 50 ms until `status` is completed or failed (20 s timeout).
 * A scenario with `resumes` steps (scenarios.js): before 3., for each step, poll until the run
 * is `awaiting` at the step's wait node (`_awaitingNodeIds` of the context row), then hand the
 * step to the caller's `resume` (the test resumes through the adapter's API: a wait is resumed
 * by an API call, not by a message).
 */
const amqplib = require('amqplib')
const { Pool } = require('pg')
const { startNodeIds, outputKey } = require('./scenarios')

const FINAL = new Set(['completed', 'failed'])

function outputsOf(context) {
	const out = {}
	for (const key of Object.keys(context ?? {}).sort())
		if (key.startsWith('_outputs.')) out[outputKey(key)] = context[key]
	return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
}

function quoteIdent(name) {
	if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`unsafe table name ${name}`)
	return `"${name}"`
}

class DiffClient {
	constructor({ postgresUrl, rabbitmqUrl, contextTableName, statusTableName }) {
		this.postgresUrl = postgresUrl
		this.rabbitmqUrl = rabbitmqUrl
		this.ctx = quoteIdent(contextTableName)
		this.status = quoteIdent(statusTableName)
		this.declared = new Set()
	}

	async connect() {
		this.pool = new Pool({ connectionString: this.postgresUrl, max: 8 })
		this.amqp = await amqplib.connect(this.rabbitmqUrl)
		this.amqp.on('error', () => {})
		this.channel = await this.amqp.createConfirmChannel()
		this.channel.on('error', () => {})
		return this
	}

	/**
	 * Makes sure the queue exists. When the workers declared it already (possibly with
	 * dead-letter arguments), a plain re-declaration could fail with PRECONDITION_FAILED,
	 * so check first and declare (durable) only when it is missing.
	 */
	async ensureQueue(queue) {
		if (this.declared.has(queue)) return
		const probe = await this.amqp.createChannel()
		probe.on('error', () => {})
		let exists = true
		try {
			await probe.checkQueue(queue)
		} catch {
			exists = false
		}
		try {
			await probe.close()
		} catch {}
		if (!exists) await this.channel.assertQueue(queue, { durable: true })
		this.declared.add(queue)
	}

	async queueExists(queue) {
		const probe = await this.amqp.createChannel()
		probe.on('error', () => {})
		try {
			await probe.checkQueue(queue)
			return true
		} catch {
			return false
		} finally {
			try {
				await probe.close()
			} catch {}
		}
	}

	async startRun({ runId, blueprint, initialContext = {}, queue }) {
		await this.ensureQueue(queue)
		const context = {
			...initialContext,
			blueprintId: blueprint.id,
			blueprintVersion: blueprint.metadata?.version ?? null,
		}
		await this.pool.query(`INSERT INTO ${this.ctx} (run_id, context_data) VALUES ($1, $2)`, [
			runId,
			JSON.stringify(context),
		])
		const starts = startNodeIds(blueprint)
		for (const nodeId of starts) {
			const job = { runId, blueprintId: blueprint.id, nodeId }
			this.channel.sendToQueue(queue, Buffer.from(JSON.stringify(job)), {
				persistent: true,
				contentType: 'application/json',
			})
		}
		await this.channel.waitForConfirms()
		return starts
	}

	async waitForResult(runId, { timeoutMs = 20000, intervalMs = 50 } = {}) {
		const deadline = Date.now() + timeoutMs
		let last = null
		for (;;) {
			const { rows } = await this.pool.query(`SELECT status, status_data FROM ${this.status} WHERE run_id = $1`, [
				runId,
			])
			last = rows[0] ?? null
			const status = last ? (last.status ?? last.status_data?.status) : null
			if (status && FINAL.has(status)) {
				const ctx = await this.pool.query(`SELECT context_data FROM ${this.ctx} WHERE run_id = $1`, [runId])
				const context = ctx.rows[0]?.context_data ?? {}
				return {
					runId,
					status,
					outputs: outputsOf(context),
					reason: last.status_data?.reason ?? null,
					context,
					statusData: last.status_data ?? null,
				}
			}
			if (Date.now() > deadline) {
				const ctx = await this.pool.query(`SELECT context_data FROM ${this.ctx} WHERE run_id = $1`, [runId])
				const err = new Error(
					`run ${runId} did not finish within ${timeoutMs} ms; status row: ${JSON.stringify(last)}; ` +
						`context: ${JSON.stringify(ctx.rows[0]?.context_data ?? null)}`,
				)
				err.code = 'ETIMEOUT'
				throw err
			}
			await new Promise((resolve) => setTimeout(resolve, intervalMs))
		}
	}

	/** The run's context row (`{}` when there is none yet). */
	async context(runId) {
		const { rows } = await this.pool.query(`SELECT context_data FROM ${this.ctx} WHERE run_id = $1`, [runId])
		return rows[0]?.context_data ?? {}
	}

	/**
	 * Polls until the run is `awaiting` with `nodeId` among `_awaitingNodeIds` (→ true), or has a
	 * final status (→ false: it will never get there; the caller's comparison shows why).
	 */
	async waitForAwaiting(runId, nodeId, { timeoutMs = 20000, intervalMs = 50 } = {}) {
		const deadline = Date.now() + timeoutMs
		for (;;) {
			const { rows } = await this.pool.query(
				`SELECT s.status, c.context_data -> '_awaitingNodeIds' AS awaiting FROM ${this.status} s
				 LEFT JOIN ${this.ctx} c ON c.run_id = s.run_id WHERE s.run_id = $1`,
				[runId],
			)
			const status = rows[0]?.status
			if (status && FINAL.has(status)) return false
			if (status === 'awaiting' && (rows[0].awaiting ?? []).includes(nodeId)) return true
			if (Date.now() > deadline) {
				const err = new Error(
					`run ${runId} was not awaiting at ${nodeId} within ${timeoutMs} ms; status ${status}; context: ${JSON.stringify(await this.context(runId))}`,
				)
				err.code = 'ETIMEOUT'
				throw err
			}
			await new Promise((resolve) => setTimeout(resolve, intervalMs))
		}
	}

	/** Starts the run, performs its `resumes` steps through `resume(step)`, waits for its end. */
	async run(args, waitOptions, resume) {
		await this.startRun(args)
		for (const step of args.resumes ?? []) {
			if (!(await this.waitForAwaiting(args.runId, step.node, waitOptions))) break
			await resume(step)
		}
		return this.waitForResult(args.runId, waitOptions)
	}

	async close() {
		try {
			await this.channel?.close()
		} catch {}
		try {
			await this.amqp?.close()
		} catch {}
		await this.pool?.end()
	}
}

module.exports = { DiffClient, outputsOf, startNodeIds }
