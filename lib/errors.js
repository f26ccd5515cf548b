'use strict'

// Every error this package raises carries a stable `code`, so callers can branch on
// `err.code` instead of parsing messages. Native errors arrive with their own code.
//
// CODES is the one list: index.d.ts (ErrorCode, ErrorCodes), the README's Errors
// table, the codes of core/src/error.rs and every ERR_ code written anywhere else in
// the sources and docs are checked against it (__test__/error-codes.test.js).

/** Every stable error code of the package, from the JS layer and the native core. */
const CODES = Object.freeze({
	INVALID_ARGUMENT: 'ERR_INVALID_ARGUMENT',
	INVALID_TABLE_NAME: 'ERR_INVALID_TABLE_NAME',
	INVALID_BLUEPRINT: 'ERR_INVALID_BLUEPRINT',
	NOT_SERIALIZABLE: 'ERR_NOT_SERIALIZABLE',
	NOT_IMPLEMENTED: 'ERR_NOT_IMPLEMENTED',
	AMQP_CREDENTIALS: 'ERR_AMQP_CREDENTIALS',
	NATIVE_MISSING: 'ERR_NATIVE_MISSING',
	// a native call failed without a code of its own (a bug of this package)
	NATIVE: 'ERR_NATIVE',
	WORKER_STATE: 'ERR_WORKER_STATE',
	NODE_TIMEOUT: 'ERR_NODE_TIMEOUT',
	NODE_CANCELLED: 'ERR_NODE_CANCELLED',
	RUN_CANCELLED: 'ERR_RUN_CANCELLED',
	UNKNOWN_BLUEPRINT: 'ERR_UNKNOWN_BLUEPRINT',
	TIMEOUT: 'ERR_TIMEOUT',
	RUN_NOT_FOUND: 'ERR_RUN_NOT_FOUND',
	TABLE_NOT_FOUND: 'ERR_TABLE_NOT_FOUND',
	// raised by the native core when createTables: false and the tables lack what the worker needs
	COLUMN_NOT_FOUND: 'ERR_COLUMN_NOT_FOUND',
	INDEX_NOT_FOUND: 'ERR_INDEX_NOT_FOUND',
	// raised by the native core
	PG_CONNECT: 'ERR_PG_CONNECT',
	PG: 'ERR_PG',
	REDIS_CONNECT: 'ERR_REDIS_CONNECT',
	REDIS: 'ERR_REDIS',
	AMQP_CONNECT: 'ERR_AMQP_CONNECT',
	AMQP: 'ERR_AMQP',
	INVALID_JSON: 'ERR_INVALID_JSON',
	UNSUPPORTED: 'ERR_UNSUPPORTED',
	TLS: 'ERR_TLS',
	QUEUE_NOT_FOUND: 'ERR_QUEUE_NOT_FOUND',
	QUEUE_MISMATCH: 'ERR_QUEUE_MISMATCH',
})

/**
 * The codes only the command line raises (bin/, lib/cli/), besides CODES: it reports
 * them and exits, so the API never rejects with one.
 */
const CLI_CODES = Object.freeze({
	AMQPLIB_MISSING: 'ERR_AMQPLIB_MISSING',
	BLUEPRINTS_TYPESCRIPT: 'ERR_BLUEPRINTS_TYPESCRIPT',
	BLUEPRINTS_LOAD: 'ERR_BLUEPRINTS_LOAD',
})

/** An Error (or TypeError, for wrong argument types) with a stable `code`. */
function codedError(code, message, { cause, type } = {}) {
	const Ctor = type === 'TypeError' ? TypeError : Error
	const err = cause === undefined ? new Ctor(message) : new Ctor(message, { cause })
	// Non-enumerable like the built-in fields, but still shown by util.inspect.
	Object.defineProperty(err, 'code', { value: code, enumerable: true, writable: true, configurable: true })
	return err
}

function invalidArgument(message) {
	return codedError(CODES.INVALID_ARGUMENT, message, { type: 'TypeError' })
}

/** A short, safe description of a value for error messages. */
function describe(value) {
	if (value === null) return 'null'
	if (value === undefined) return 'undefined'
	if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value)
	if (typeof value === 'function') return value.name ? `function ${value.name}` : 'a function'
	if (Array.isArray(value)) return 'an array'
	if (typeof value === 'object') return value.constructor?.name ? `a ${value.constructor.name}` : 'an object'
	return `${typeof value} ${String(value)}`
}

module.exports = {
	CODES,
	CLI_CODES,
	codedError,
	invalidArgument,
	describe,
}
