'use strict'

// The `timings` option: every timeout, interval and backoff of the worker and the run
// API, in milliseconds. The native core (core/src/timings.rs) owns the values and their
// defaults; this module mirrors the defaults (for documentation and validation) and
// checks what the user gives, so a typo fails at construction.

const { invalidArgument, describe } = require('./errors')

/** The defaults, as core/src/timings.rs `Timings::default()` has them. */
const TIMING_DEFAULTS = Object.freeze({
	amqpHeartbeatMs: 10000,
	amqpConnectTimeoutMs: 10000,
	publishConfirmTimeoutMs: 15000,
	publishPatienceMs: 30000,
	pgConnectTimeoutMs: 10000,
	pgQueryTimeoutMs: 20000,
	pgKeepaliveIdleMs: 5000,
	pgKeepaliveIntervalMs: 2000,
	pgKeepaliveRetries: 3,
	pgTcpUserTimeoutMs: 15000,
	pgListenPingMs: 10000,
	redisConnectTimeoutMs: 5000,
	redisResponseTimeoutMs: 10000,
	jobRetryMinMs: 200,
	jobRetryMaxMs: 5000,
	commitRetryMinMs: 100,
	commitRetryMaxMs: 2000,
	reconnectMinMs: 200,
	reconnectMaxMs: 10000,
	stopGraceMs: 2000,
	stallWarningMs: 10000,
	runHeartbeatMs: 10000,
	deadLetterRetryMs: 1000,
	sleepSweepMs: 1000,
	sleepLeaseMs: 60000,
	startRetryMs: 30000,
	pgPoolSize: 8,
})

/** The largest millisecond count the core takes (u32). */
const MAX_MS = 2 ** 32 - 1

/** Settings that must be positive: zero would turn a timeout into "fail at once" or a loop into a spin. */
const POSITIVE = new Set(Object.keys(TIMING_DEFAULTS).filter((k) => k !== 'stopGraceMs' && k !== 'startRetryMs'))

/** Settings that are counts, not durations: `[min, max]`. */
const COUNTS = { pgKeepaliveRetries: [1, 100], pgPoolSize: [1, 100] }

/** `[min, max]` pairs of the backoffs. */
const PAIRS = [
	['jobRetryMinMs', 'jobRetryMaxMs'],
	['commitRetryMinMs', 'commitRetryMaxMs'],
	['reconnectMinMs', 'reconnectMaxMs'],
]

/**
 * Validates a user's `timings` (undefined or null: all defaults). Returns an object of
 * the keys given, for the core; unknown keys and bad values throw ERR_INVALID_ARGUMENT.
 */
function checkTimings(timings, what) {
	if (timings === undefined || timings === null) return {}
	if (typeof timings !== 'object' || Array.isArray(timings))
		throw invalidArgument(`${what} must be an object of millisecond settings; got ${describe(timings)}`)
	const out = {}
	for (const [key, value] of Object.entries(timings)) {
		if (value === undefined) continue
		if (!Object.hasOwn(TIMING_DEFAULTS, key)) {
			throw invalidArgument(
				`${what}: unknown setting ${JSON.stringify(key)}; known: ${Object.keys(TIMING_DEFAULTS).join(', ')}`,
			)
		}
		if (Object.hasOwn(COUNTS, key)) {
			const [lo, hi] = COUNTS[key]
			if (!Number.isInteger(value) || value < lo || value > hi)
				throw invalidArgument(`${what}.${key} must be a whole number from ${lo} to ${hi}; got ${describe(value)}`)
		} else if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > MAX_MS) {
			throw invalidArgument(
				`${what}.${key} must be a number of milliseconds from 0 to ${MAX_MS}; got ${describe(value)}`,
			)
		} else if (POSITIVE.has(key) && value === 0) {
			throw invalidArgument(`${what}.${key} must be more than 0 ms`)
		}
		out[key] = value
	}
	for (const [min, max] of PAIRS) {
		const lo = out[min] ?? TIMING_DEFAULTS[min]
		const hi = out[max] ?? TIMING_DEFAULTS[max]
		if (lo > hi) throw invalidArgument(`${what}: ${min} (${lo}) must not exceed ${max} (${hi})`)
	}
	return out
}

module.exports = { TIMING_DEFAULTS, checkTimings }
