'use strict'

// Graceful shutdown on signals: the first SIGTERM / SIGINT stops the worker (drains
// the jobs in flight), then the process ends by the same signal, as it would have
// without a listener; a second signal while draining ends it at once.

const { safeLogger } = require('./logger')
const { invalidArgument, describe } = require('./errors')

const DEFAULT_SIGNALS = Object.freeze(['SIGTERM', 'SIGINT'])
// Signals no listener can catch, or that Node uses itself.
const REFUSED = new Set(['SIGKILL', 'SIGSTOP', 'SIGUSR1'])

/**
 * On the first of `signals`: `await adapter.stop({ timeoutMs })`, remove the
 * listeners, then re-raise the signal so the process ends as it would have without
 * them (exit status 128 + signal number), unless some other listener of that signal
 * remains (then what happens next is up to that listener). A second signal while
 * stopping ends the process at once. Returns a function that removes the listeners.
 *
 * @param {{ stop(options?: { timeoutMs?: number }): Promise<void> }} adapter
 * @param {{ signals?: string[], timeoutMs?: number, logger?: object }} [options]
 * @returns {() => void}
 */
function stopOnSignals(adapter, options) {
	if (adapter === null || typeof adapter !== 'object' || typeof adapter.stop !== 'function') {
		throw invalidArgument(`stopOnSignals(): adapter must be a RabbitMqAdapter; got ${describe(adapter)}`)
	}
	const o = options === undefined || options === null ? {} : options
	if (typeof o !== 'object')
		throw invalidArgument(`stopOnSignals(): options must be { signals, timeoutMs }; got ${describe(o)}`)
	const signals = o.signals === undefined ? DEFAULT_SIGNALS : o.signals
	if (!Array.isArray(signals) || signals.length === 0) {
		throw invalidArgument(
			`stopOnSignals(): signals must be a non-empty array such as ['SIGTERM', 'SIGINT']; got ${describe(signals)}`,
		)
	}
	for (const sig of signals) {
		if (typeof sig !== 'string' || !/^SIG[A-Z0-9]+$/.test(sig) || REFUSED.has(sig)) {
			throw invalidArgument(
				`stopOnSignals(): ${describe(sig)} is not a signal that can be handled (e.g. 'SIGTERM', 'SIGINT', 'SIGHUP')`,
			)
		}
	}
	const timeoutMs = o.timeoutMs
	if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs < 0)) {
		throw invalidArgument(
			`stopOnSignals(): timeoutMs must be a number of milliseconds >= 0; got ${describe(timeoutMs)}`,
		)
	}
	const internal = adapter._s?.log
	const log = o.logger ? safeLogger(o.logger) : internal || safeLogger()

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
