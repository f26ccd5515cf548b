'use strict'

// The credentials part of a service URL (amqp://, postgres://, redis://) as users
// write it, often with the password not percent-encoded.
//
// The client libraries (amqplib, node-pg's pg-connection-string, ioredis) and the
// core (Rust's url crate) all read URLs the WHATWG way: the authority ends at the
// first '/', '?' or '#', and the credentials at the last '@' inside it. So an
// unencoded '@' or ':' in a password already works, but a '/', '?' or '#' cuts the
// URL short ("invalid port number", or a host taken from the password). Here such a
// URL is also read with the credentials running to the last '@' of the URL, and
// when only one of the two readings is a valid URL of that kind, it is used, with
// its credentials percent-encoded so that every parser downstream agrees. When both
// are, the URL is refused: guessing could send the password to the wrong host.

const { unescape: percentDecode } = require('node:querystring')
const { invalidArgument } = require('./errors')

const SCHEME = /^([a-z][a-z0-9+.-]*:)\/\//i
// What may follow the credentials: host (or [IPv6]), port, path, query; no fragment.
const AFTER_AT = /^(\[[0-9a-f:.]+\]|[^\s:/?#@[\]\\]*)(:\d*)?(\/[^?#]*)?(\?[^#]*)?$/i

/**
 * @param {string} str the URL as given
 * @param {{ pathOk?: (path: string) => boolean, emptyHost?: boolean }} [kind] `pathOk`:
 *   whether a path is valid for this kind of URL (e.g. a Redis database number);
 *   `emptyHost`: a URL may have credentials and no host (PostgreSQL's socket forms)
 * @returns {{ url: string, at: number, user?: string, password?: string }
 *   | { ambiguous: true, at: number } | { invalid: true, at: number }}
 *   `url`: to hand to the parsers (unchanged when it was already read the standard
 *   way); `at`: the index of the '@' ending the credentials, -1 when there are none;
 *   `user` and `password` are decoded.
 */
function readUserinfo(str, { pathOk = () => true, emptyHost = false } = {}) {
	const m = SCHEME.exec(str)
	const lastAt = str.lastIndexOf('@')
	if (!m) return { invalid: true, at: lastAt }
	const start = m[0].length
	const standard = standardReading(str, start, pathOk, emptyHost)
	const other = unencodedReading(str, start, lastAt, standard, pathOk, emptyHost)
	if (standard.valid && other) {
		// Both read: with credentials, the standard reading (the one the libraries make)
		// keeps an '@' in the path or query; without, the '@' more likely ends a password.
		if (standard.at < 0) return { ambiguous: true, at: lastAt }
		return standard.result
	}
	if (standard.valid) return standard.result
	if (other) return other
	// A fragment or an unusual path, no better reading: as the libraries read it.
	if (standard.parses) return standard.result
	return { invalid: true, at: lastAt }
}

function standardReading(str, start, pathOk, emptyHost) {
	const end = str.slice(start).search(/[/?#]/)
	const authority = end < 0 ? str.slice(start) : str.slice(start, start + end)
	const inAuthority = authority.lastIndexOf('@')
	let u
	try {
		// pg-connection-string reads `postgres://user@/db?host=/socket` with a stand-in host.
		const host = emptyHost && inAuthority === authority.length - 1 ? 'host' : ''
		u = new URL(host ? `${str.slice(0, start + authority.length)}${host}${str.slice(start + authority.length)}` : str)
	} catch {
		return { parses: false, valid: false, at: -1 }
	}
	const at = inAuthority < 0 ? -1 : start + inAuthority
	const result = { url: str, at }
	if (at >= 0) Object.assign(result, credentials(str.slice(start, at)))
	return { parses: true, valid: u.hash === '' && !str.includes('#') && pathOk(u.pathname), at, result }
}

/** The reading with the credentials up to the last '@', when it differs from the standard one and is valid. */
function unencodedReading(str, start, lastAt, standard, pathOk, emptyHost) {
	if (lastAt <= start || lastAt === standard.at) return undefined
	const userinfo = str.slice(start, lastAt)
	const rest = str.slice(lastAt + 1)
	const m = AFTER_AT.exec(rest)
	if (!m || (!m[1] && !emptyHost) || !pathOk(m[3] ?? '')) return undefined
	// Only the password may hold an unencoded '/', '?' or '#': `host/a@b` is a path, not a user.
	const colon = userinfo.indexOf(':')
	const userPart = colon < 0 ? userinfo : userinfo.slice(0, colon)
	if (colon < 0 || /[/?#]/.test(userPart)) return undefined
	const { user, password } = credentials(userinfo)
	const url = `${str.slice(0, start)}${encodeURIComponent(user)}:${encodeURIComponent(password)}@${rest}`
	return { url, at: lastAt, user, password }
}

/** user and password, decoded as the libraries decode them (a stray '%' stays as it is). */
function credentials(userinfo) {
	const colon = userinfo.indexOf(':')
	if (colon < 0) return { user: percentDecode(userinfo) }
	return { user: percentDecode(userinfo.slice(0, colon)), password: percentDecode(userinfo.slice(colon + 1)) }
}

/**
 * `readUserinfo`, throwing ERR_INVALID_ARGUMENT for a URL that is ambiguous or not a
 * URL at all; the message names `what`, never the password, and says how to fix it.
 */
function resolveUserinfo(str, what, kind) {
	const r = readUserinfo(str, kind)
	if (r.ambiguous) {
		throw invalidArgument(
			`${what} ${redactAt(str, r.at)} can be read two ways: with a user and password up to its last '@', or ` +
				"without credentials and with that '@' in the path. If the password holds '/', '?', '#' or '@', " +
				'percent-encode it (encodeURIComponent(password), e.g. p/ss -> p%2Fss); if the path holds an @, write it %40',
		)
	}
	if (r.invalid) {
		const hint =
			r.at >= 0 ? '; if the password holds special characters, percent-encode it (encodeURIComponent(password))' : ''
		throw invalidArgument(`${what} is not a valid URL: ${redactAt(str, r.at)}${hint}`)
	}
	return r
}

/** The URL with everything between '//' and the '@' at `at` after the user hidden. */
function redactAt(str, at) {
	const m = SCHEME.exec(str)
	if (!m || at < m[0].length) return str
	const userinfo = str.slice(m[0].length, at)
	const colon = userinfo.indexOf(':')
	// A user name with a '/' in it is already the start of a password.
	const user = colon < 0 || /[/?#]/.test(userinfo.slice(0, colon)) ? '' : userinfo.slice(0, colon)
	return `${m[0]}${user}:***${str.slice(at)}`
}

/** The URL with its password hidden, for messages and logs; when unsure where it ends, up to the last '@'. */
function redactUrl(url) {
	const str = String(url)
	const r = readUserinfo(str)
	if (r.ambiguous || r.invalid || r.at < 0) return redactAt(str, str.lastIndexOf('@'))
	if (r.password === undefined) return str
	return redactAt(str, r.at)
}

module.exports = { readUserinfo, resolveUserinfo, redactUrl }
