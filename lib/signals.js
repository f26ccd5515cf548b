'use strict'

// Graceful shutdown on signals: the first SIGTERM / SIGINT stops the worker (drains
// the jobs in flight), then the process ends by the same signal, as it would have
// without a listener; a second signal while draining ends it at once.

const { safeLogger } = require('./logger')
const { DEFAULT_SIGNALS, signalOptions } = require('./options')

/**
 * On the first of `signals`: `await adapter.stop({ timeoutMs })`, remove the
 * listeners, then re-raise the signal so the process ends as it would have without
 * them (exit status 128 + signal number), unless some other listener of that signal
 * remains (then what happens next is up to that listener). A second signal while
 * stopping ends the process at once. Returns a function that removes the listeners.
 *
 * @param {{ stop(options?: { timeoutMs?: number }): Promise<void>, _logger?(): object }} adapter
 *   a RabbitMqAdapter, or anything with `stop`; `_logger()` (the adapter's logger) is
 *   used when `options.logger` is not given
 * @param {{ signals?: string[], timeoutMs?: number, logger?: object }} [options]
 * @returns {() => void}
 */
function stopOnSignals(adapter, options) {
	const { signals, timeoutMs, logger } = signalOptions(adapter, options)
	// the adapter's own logger (RabbitMqAdapter#_logger) when none is given
	const log = logger || (typeof adapter._logger === 'function' && adapter._logger()) || safeLogger()

	let stopping = false
	let disposed = false
	const handler = (signal) => {
		if (stopping) {
			log.warn(
				`Received ${signal} again: exiting without waiting for the jobs in flight (they will be delivered again)`,
			)
			dispose()
			reraise(signal)
			return
		}
		stopping = true
		log.info(
			`Received ${signal}: stopping the worker; jobs in flight may finish${timeoutMs === undefined ? '' : ` within ${timeoutMs} ms`} (send it again to exit at once)`,
		)
		Promise.resolve()
			.then(() => adapter.stop(timeoutMs === undefined ? undefined : { timeoutMs }))
			.then(
				() => log.info(`Worker stopped; exiting on ${signal}`),
				(err) => log.error(`Worker stop failed; exiting on ${signal}: ${err?.message ? err.message : String(err)}`),
			)
			.finally(() => {
				dispose()
				reraise(signal)
			})
	}
	function dispose() {
		if (disposed) return
		disposed = true
		for (const sig of signals) process.removeListener(sig, handler)
	}
	for (const sig of signals) process.on(sig, handler)
	return dispose
}

function reraise(signal) {
	if (process.listenerCount(signal) > 0) return
	process.kill(process.pid, signal)
}

module.exports = { stopOnSignals, DEFAULT_SIGNALS }
