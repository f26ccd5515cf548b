'use strict'

const PREFIX = '[flowcraft-rabbitmq]'
const LEVELS = ['debug', 'info', 'warn', 'error']

/** The default logger: console with a prefix; debug is silent (set a logger to see it). */
function createConsoleLogger() {
	const write = (fn) => (message, meta) => {
		if (meta !== undefined && meta !== null && Object.keys(meta).length > 0) fn(`${PREFIX} ${message}`, meta)
		else fn(`${PREFIX} ${message}`)
	}
	return {
		debug() {},
		info: write(console.info),
		warn: write(console.warn),
		error: write(console.error),
	}
}

/**
 * A logger whose four methods always exist and never throw: a broken user logger
 * must not turn a log line into a failed job or a crash in a native callback.
 */
function safeLogger(logger) {
	const base = logger || createConsoleLogger()
	const out = {}
	for (const level of LEVELS) {
		out[level] = (message, meta) => {
			const fn = typeof base[level] === 'function' ? base[level] : level === 'debug' ? null : base.info
			if (typeof fn !== 'function') return
			try {
				fn.call(base, message, meta)
			} catch {
				// nothing sensible to do: the logger itself is what failed
			}
		}
	}
	return out
}

module.exports = { createConsoleLogger, safeLogger, LEVELS }
