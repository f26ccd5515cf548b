'use strict'

// createRabbitMqReconciler: the TypeScript adapter's reconciler, on the adapter's own
// run API. It finds runs that are `running` but had no change for the threshold, and
// reconciles each (enqueues what it needs to move on).

const { safeLogger } = require('./logger')
const { invalidArgument, describe } = require('./errors')

/**
 * @param {object} options
 * @param {import('./adapter').RabbitMqAdapter} options.adapter
 * @param {unknown} [options.pgClient]  accepted for compatibility; the adapter's own connection is used
 * @param {string} [options.statusTableName]  must be the adapter's (checked)
 * @param {number} [options.stalledThresholdSeconds=300]
 * @param {object} [options.logger]  default: the adapter's logger
 * @param {number} [options.limit=100]  stalled runs looked at per run()
 * @param {(p: object) => void} [options.onProgress]  called after each run is reconciled
 */
function createRabbitMqReconciler(options) {
	if (options === null || typeof options !== 'object') {
		throw invalidArgument(
			'createRabbitMqReconciler(): an options object { adapter, stalledThresholdSeconds? } is required',
		)
	}
	const { adapter, statusTableName, stalledThresholdSeconds = 300, logger, limit = 100, onProgress } = options
	if (
		adapter === null ||
		typeof adapter !== 'object' ||
		typeof adapter.reconcile !== 'function' ||
		typeof adapter._staleRuns !== 'function'
	) {
		throw invalidArgument(
			`createRabbitMqReconciler(): adapter must be a RabbitMqAdapter of this package; got ${describe(adapter)}`,
		)
	}
	if (statusTableName !== undefined && statusTableName !== null && statusTableName !== adapter.statusTableName) {
		throw invalidArgument(
			`createRabbitMqReconciler(): statusTableName ${describe(statusTableName)} is not the adapter's status table ` +
				`(${JSON.stringify(adapter.statusTableName)}); the reconciler reads the adapter's table, so leave it out or make them match`,
		)
	}
	if (
		typeof stalledThresholdSeconds !== 'number' ||
		!Number.isFinite(stalledThresholdSeconds) ||
		stalledThresholdSeconds < 0 ||
		stalledThresholdSeconds * 1000 > 2 ** 32 - 1
	) {
		throw invalidArgument(
			`createRabbitMqReconciler(): stalledThresholdSeconds must be a number of seconds from 0 to 4294967; got ${describe(stalledThresholdSeconds)}`,
		)
	}
	if (!Number.isInteger(limit) || limit < 1 || limit > 100000) {
		throw invalidArgument(
			`createRabbitMqReconciler(): limit must be a whole number from 1 to 100000; got ${describe(limit)}`,
		)
	}
	if (onProgress !== undefined && typeof onProgress !== 'function') {
		throw invalidArgument(`createRabbitMqReconciler(): onProgress must be a function; got ${describe(onProgress)}`)
	}
	const log = logger ? safeLogger(logger) : adapter._s?.log || safeLogger()
	const thresholdMs = Math.ceil(stalledThresholdSeconds * 1000)

	return {
		/**
		 * One pass: `stalledRuns` found, `reconciledRuns` that had something enqueued,
		 * `failedRuns` whose reconciliation threw (each logged).
		 */
		async run() {
			const stats = { stalledRuns: 0, reconciledRuns: 0, failedRuns: 0 }
			const runIds = await adapter._staleRuns(thresholdMs, limit)
			const total = runIds.length
			for (let i = 0; i < total; i++) {
				const runId = runIds[i]
				stats.stalledRuns++
				let enqueued
				let error
				try {
					enqueued = await adapter.reconcile(runId, { staleAfterMs: thresholdMs })
					if (enqueued.size > 0) {
						stats.reconciledRuns++
						log.info(`[Reconciler] Resumed run ${runId}, enqueued nodes: ${[...enqueued].join(', ')}`, {
							runId,
							enqueued: [...enqueued],
						})
					} else {
						log.debug(`[Reconciler] Run ${runId} needed nothing enqueued`, { runId })
					}
				} catch (err) {
					error = err
					stats.failedRuns++
					log.error(`[Reconciler] Failed to reconcile run ${runId}: ${err?.message ? err.message : String(err)}`, {
						runId,
						code: err?.code,
					})
				}
				if (onProgress) {
					try {
						onProgress({ runId, index: i + 1, total, enqueued, error })
					} catch {
						// a progress callback must not stop the pass
					}
				}
			}
			return stats
		},
	}
}

module.exports = { createRabbitMqReconciler }
