'use strict'

// createRabbitMqReconciler: the TypeScript adapter's reconciler, on the adapter's own
// run API. It finds runs that are `running` but had no change for the threshold, and
// reconciles each (enqueues what it needs to move on).

const { safeLogger } = require('./logger')
const { reconcilerOptions } = require('./options')

/**
 * The adapter is used through this interface only (RabbitMqAdapter has it):
 * `reconcile(runId, { staleAfterMs })`, `_staleRuns(thresholdMs, limit)` (ids of the
 * `running` runs with no change for that long, oldest first), `statusTableName`, and
 * `_logger()` (its logger, used when `options.logger` is not given).
 *
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
	const { adapter, thresholdMs, logger, limit, onProgress } = reconcilerOptions(options)
	const log = logger ? safeLogger(logger) : (typeof adapter._logger === 'function' && adapter._logger()) || safeLogger()

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
