'use strict'

const { CODES, codedError } = require('./errors')

// Values cross to the native core as JSON text. JSON.stringify silently drops a
// function or symbol (at the top, or nested in an object: `{ f: () => 1 }` becomes
// `{}`; in an array it becomes null) and throws on BigInt and cycles; both would lose
// data or fail without a word, so they become ERR_NOT_SERIALIZABLE here, naming the
// key path of the culprit. This is the one JSON guard of the package: the run API,
// PostgresContext and the node runner (outputs, context writes) all use it.

const IDENT_RE = /^[A-Za-z_$][\w$]*$/

/** `base` followed by one step of a key path: `.name`, `["odd key"]` or `[3]`. */
function step(base, key, isIndex) {
	if (isIndex) return `${base}[${key}]`
	return IDENT_RE.test(key) ? `${base}.${key}` : `${base}[${JSON.stringify(key)}]`
}

/**
 * The key path (relative to `root`) and type of the first function or symbol that
 * JSON.stringify would drop in `value`, or undefined. Follows what JSON.stringify
 * serialises: own enumerable string keys, array items, the result of `toJSON()`.
 * Cycles are left to JSON.stringify (which names them).
 */
function findUnserializable(value, root = '') {
	const seen = new Set()
	const walk = (v, path, key) => {
		if (v !== null && typeof v === 'object' && typeof v.toJSON === 'function') {
			try {
				v = v.toJSON(key)
			} catch {
				return undefined // JSON.stringify will report it
			}
		}
		const t = typeof v
		if (t === 'function' || t === 'symbol') return { path, type: t }
		if (v === null || t !== 'object' || seen.has(v)) return undefined
		seen.add(v)
		try {
			if (Array.isArray(v)) {
				for (let i = 0; i < v.length; i++) {
					const hit = walk(v[i], step(path, String(i), true), String(i))
					if (hit) return hit
				}
			} else {
				for (const k of Object.keys(v)) {
					const hit = walk(v[k], step(path, k, false), k)
					if (hit) return hit
				}
			}
		} finally {
			seen.delete(v)
		}
		return undefined
	}
	return walk(value, root, '')
}

/**
 * Throws ERR_NOT_SERIALIZABLE when `value` holds a function or symbol, at any depth.
 * @param {unknown} value
 * @param {string} what  e.g. `Node 'n' returned an output`, used in the message
 * @param {string} [root]  the name of `value` in the key path, e.g. `output`
 */
function assertNoFunctions(value, what, root = '') {
	const hit = findUnserializable(value, root)
	if (!hit) return
	const path = hit.path.replace(/^\./, '')
	const where = path === '' || path === root ? ' is' : ` holds a ${hit.type} at key path ${path}, which`
	const tail = path === '' || path === root ? ` a ${hit.type}, which` : ''
	throw codedError(
		CODES.NOT_SERIALIZABLE,
		`${what}${where}${tail} cannot be stored as JSON (JSON would drop it silently); store plain data`,
	)
}

/**
 * JSON text of `value`; `undefined` becomes `null` (a stored key always has a value).
 * Functions and symbols, at any depth, BigInts and cycles are refused with
 * ERR_NOT_SERIALIZABLE.
 * @param {unknown} value
 * @param {string} what  e.g. `value for key "k"`, used in the error message
 */
function toJsonText(value, what) {
	assertNoFunctions(value, what)
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

module.exports = { toJsonText, fromJsonText, assertNoFunctions, findUnserializable }
