'use strict'

const path = require('node:path')
const { CODES, codedError } = require('./errors')

// The addon is loaded on first use, not at require time, so that `require()` of the
// package (and its types, validation and node runner) works even before the Rust
// addon is built, and the failure names the fix.

let cached

/** The one platform the package ships an addon for (package.json's os / cpu / libc say the same). */
const ADDON = 'flowcraft-rabbitmq-adapter.linux-x64-gnu.node'

/** `linux-x64-gnu`, `linux-x64-musl`, `darwin-arm64`, … for messages. */
function platformName() {
	const glibc = process.platform === 'linux' && process.report?.getReport?.().header?.glibcVersionRuntime
	const libc = process.platform !== 'linux' ? '' : glibc ? '-gnu' : '-musl'
	return `${process.platform}-${process.arch}${libc}`
}

function loadNative() {
	if (cached) return cached
	const here = platformName()
	if (here !== 'linux-x64-gnu') {
		throw codedError(
			CODES.NATIVE_MISSING,
			`@flowcraft/rabbitmq-adapter ships its native core for Linux on x64 with glibc only; this is ${here}. ` +
				'Run the worker on such a machine or container (e.g. node:20-bookworm), not Alpine, macOS or ARM.',
		)
	}
	try {
		cached = require(path.join(__dirname, '..', ADDON))
	} catch (cause) {
		throw codedError(
			CODES.NATIVE_MISSING,
			`The native addon of @flowcraft/rabbitmq-adapter could not be loaded (${cause?.message}). ` +
				'In a checkout, run `npm run build`; in an installed package, reinstall it for this platform.',
			{ cause },
		)
	}
	return cached
}

// napi-rs gives errors of async native calls the generic status as `code` and puts
// our stable code in the message as "[ERR_PG] ..."; napi's own argument conversion
// failures carry statuses like "StringExpected". Rebuild them as errors of this
// realm (so `instanceof Error` holds in jest and vm contexts too) with the stable code,
// and with a stack that shows the JS call site rather than nothing.
const PREFIX_RE = /^\[(ERR_[A-Z0-9_]+)(,transient)?\]\s*/
const NAPI_ARGUMENT_STATUSES = new Set([
	'InvalidArg',
	'ObjectExpected',
	'StringExpected',
	'NameExpected',
	'FunctionExpected',
	'NumberExpected',
	'BooleanExpected',
	'ArrayExpected',
	'BigintExpected',
	'DateExpected',
	'ArrayBufferExpected',
])

function fromNative(err) {
	if (err === null || typeof err !== 'object') return err
	const text = String(err.message)
	const m = PREFIX_RE.exec(text)
	let code
	let message = text
	if (m) {
		code = m[1]
		message = text.slice(m[0].length)
	} else if (NAPI_ARGUMENT_STATUSES.has(err.code)) {
		code = CODES.INVALID_ARGUMENT
	} else {
		code = typeof err.code === 'string' ? err.code : CODES.NATIVE
	}
	const out = codedError(code, message, { cause: err, type: code === CODES.INVALID_ARGUMENT ? 'TypeError' : undefined })
	// The core says which failures may heal (a refused or dropped connection, a
	// server starting up); a refused login or a missing database never does.
	if (m?.[2]) Object.defineProperty(out, 'transient', { value: true, enumerable: true })
	return out
}

/** `new Ctor(...args)` with native errors translated. */
function constructNative(Ctor, ...args) {
	try {
		return new Ctor(...args)
	} catch (err) {
		throw fromNative(err)
	}
}

/** Runs and awaits a native call (`() => native.method(...)`) with its error translated, sync or async. */
async function callNative(fn) {
	try {
		return await fn()
	} catch (err) {
		throw fromNative(err)
	}
}

module.exports = { loadNative, fromNative, constructNative, callNative }
