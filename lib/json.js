'use strict'

const { CODES, codedError } = require('./errors')

// Values cross to the native core as JSON text. JSON.stringify silently turns a
// top-level function or symbol into `undefined` and throws on BigInt and cycles;
// both would lose data without a word, so they become ERR_NOT_SERIALIZABLE here.

/**
 * JSON text of `value`; `undefined` becomes `null` (a stored key always has a value).
 * @param {unknown} value
 * @param {string} what  e.g. `value for key "k"`, used in the error message
 */
function toJsonText(value, what) {
	if (typeof value === 'function' || typeof value === 'symbol') {
		throw codedError(CODES.NOT_SERIALIZABLE, `${what} is a ${typeof value}, which cannot be stored as JSON`)
	}
	let text
	try {
		text = JSON.stringify(value)
	} catch (cause) {
		throw codedError(CODES.NOT_SERIALIZABLE, `${what} is not JSON-serialisable: ${cause.message}`, { cause })
	}
	return text === undefined ? 'null' : text
}

/** Parses JSON text from the core; null/undefined text means "missing" → undefined. */
function fromJsonText(text) {
	return text === null || text === undefined ? undefined : JSON.parse(text)
}

module.exports = { toJsonText, fromJsonText }
