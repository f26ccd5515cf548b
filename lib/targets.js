'use strict'

// Turns the user's `pg`, `ioredis` and `amqplib` objects (or URLs / config objects)
// into the plain connection targets the native core understands (`PgTargetJs`, `RedisTargetJs` in native.d.ts).
// Only properties are read: none of those packages is required at run time (node-pg's
// own connection-string parser, pg-connection-string, is a dependency), and the
// user's own connections are never used for I/O by this package.

const fs = require('node:fs')
const { unescape: percentDecode } = require('node:querystring')
const { parse: parsePg } = require('pg-connection-string')
const { CODES, codedError, invalidArgument, describe } = require('./errors')
const { resolveUserinfo, redactUrl } = require('./url-userinfo')

const isObject = (v) => v !== null && typeof v === 'object'
const nonEmpty = (v) => (v === undefined || v === null || v === '' ? undefined : v)

// ---------------------------------------------------------------- PostgreSQL

/**
 * @returns {{ target: object, passwordFn?: () => string | Promise<string> }}
 *   `passwordFn` is set when the pg config holds a password function (pg supports
 *   `password: () => Promise<string>`); the caller resolves it before connecting.
 */
function toPgTarget(client, env = process.env) {
	if (typeof client === 'string' && isMultiHost(client)) return { target: { connectionString: client } }
	if (typeof client === 'string') return fromPgParams(resolvePgConfig(parsePgConnectionString(client), env))
	if (!isObject(client)) {
		throw invalidArgument(
			`client must be a pg.Client, a pg.Pool, a postgres:// connection string or a pg config object; got ${describe(client)}`,
		)
	}
	// pg.Client: its ConnectionParameters already hold pg's resolved values (env and pg.defaults applied).
	if (isObject(client.connectionParameters)) return fromPgParams(client.connectionParameters)
	// pg.Pool: a Client built from the pool options resolves the same way, without connecting.
	if (isObject(client.options) && typeof client.Client === 'function') {
		let params
		try {
			params = new client.Client(client.options).connectionParameters
		} catch {
			params = undefined // an unusual Client class: fall back to our own resolution below
		}
		return fromPgParams(isObject(params) ? params : resolvePgConfig(client.options, env))
	}
	return fromPgParams(resolvePgConfig(client, env))
}

function fromPgParams(p) {
	const target = {}
	if (nonEmpty(p.host) !== undefined) target.host = String(p.host)
	const port = Number.parseInt(p.port, 10)
	if (Number.isFinite(port)) target.port = port
	if (nonEmpty(p.user) !== undefined) target.user = String(p.user)
	if (nonEmpty(p.database) !== undefined) target.database = String(p.database)
	const tls = tlsSettings(p.ssl, 'pg ssl')
	if (tls) target.tls = tls
	let passwordFn
	const password = p.password
	if (typeof password === 'function') passwordFn = password
	else if (nonEmpty(password) !== undefined) target.password = String(password)
	return passwordFn ? { target, passwordFn } : { target }
}

/** pg's own defaulting (lib/connection-parameters.js): a falsy field falls back to PG* env, then defaults. */
function resolvePgConfig(config, env) {
	let c = config || {}
	if (typeof c.connectionString === 'string' && c.connectionString) {
		c = Object.assign({}, c, parsePgConnectionString(c.connectionString))
	}
	const pick = (key, envVar) => nonEmpty(c[key]) ?? nonEmpty(env[envVar])
	const user = pick('user', 'PGUSER') ?? nonEmpty(env.USER)
	return {
		user,
		database: pick('database', 'PGDATABASE') ?? user,
		host: pick('host', 'PGHOST') ?? 'localhost',
		port: pick('port', 'PGPORT') ?? 5432,
		password: pick('password', 'PGPASSWORD'),
		ssl: withRootCert(c.ssl === undefined ? sslFromMode(env.PGSSLMODE) : c.ssl, env.PGSSLROOTCERT),
	}
}

/**
 * pg's `ssl` for an sslmode, as node-pg reads it: prefer, require, verify-ca and
 * verify-full all verify the certificate and its host name, and never fall back to
 * plaintext; no-verify encrypts without verifying. With `uselibpqcompat=true`
 * (node-pg's switch for libpq's meanings): prefer tries TLS and falls back, require
 * encrypts without verifying (verify-ca when a root certificate is given),
 * verify-ca checks the chain only, verify-full checks everything.
 */
function sslFromMode(mode, { libpq = false, rootCert = false } = {}) {
	if (mode === undefined || mode === null || mode === '' || mode === 'disable' || mode === 'allow') return false
	if (mode === 'no-verify') return { rejectUnauthorized: false }
	if (!['prefer', 'require', 'verify-ca', 'verify-full'].includes(mode)) {
		throw invalidArgument(
			`sslmode ${JSON.stringify(mode)} is not one of disable, prefer, require, verify-ca, verify-full, no-verify`,
		)
	}
	if (!libpq || mode === 'verify-full') return {}
	if (mode === 'prefer') return { rejectUnauthorized: false, optional: true }
	if (mode === 'verify-ca' || rootCert) return { verify: 'chain' }
	return { rejectUnauthorized: false }
}

/** libpq's PGSSLROOTCERT: the CA file to trust when TLS is on and no CA was given. */
function withRootCert(ssl, path) {
	if (!ssl || !path || path === 'system') return ssl
	const o = ssl === true ? {} : ssl
	return o.ca === undefined ? { ...o, ca: readPem(path, 'PGSSLROOTCERT') } : ssl
}

function readPem(path, what) {
	try {
		return fs.readFileSync(path, 'utf8')
	} catch (e) {
		throw invalidArgument(`cannot read ${what} ${JSON.stringify(path)}: ${e.message}`)
	}
}

/** PEM text from a string, a Buffer or an array of them (the forms Node's tls takes). */
function pemText(v, what) {
	if (v === undefined || v === null) return undefined
	if (Array.isArray(v)) return v.map((x) => pemText(x, what)).join('\n')
	if (typeof v === 'string') return v
	if (Buffer.isBuffer(v) || v instanceof Uint8Array) return Buffer.from(v).toString('utf8')
	throw invalidArgument(`${what} must be PEM text (a string or Buffer, or an array of them); got ${describe(v)}`)
}

/** A warning for TLS settings that verify less than everything, or undefined. */
function tlsWarning(service, tls) {
	if (tls?.verify === 'none') {
		return `TLS to ${service}: the server's certificate is NOT verified (verification was turned off); the connection is encrypted but open to a man in the middle`
	}
	if (tls?.verify === 'chain')
		return `TLS to ${service}: the server's host name is not verified (only its certificate chain)`
	return undefined
}

/**
 * The core's TLS settings from Node-style TLS options (pg's `ssl`, ioredis' `tls`,
 * our `amqpTls`): `true` or `{}` verify fully; `rejectUnauthorized: false` turns
 * verification off (the core logs a warning); a `checkServerIdentity` that accepts
 * every name (node-pg's libpq verify-ca) checks the chain only.
 */
function tlsSettings(ssl, what) {
	if (!ssl) return undefined
	if (ssl === true) return {}
	if (!isObject(ssl)) throw invalidArgument(`${what} must be true, false or a TLS options object; got ${describe(ssl)}`)
	const out = {}
	const ca = pemText(ssl.ca, `${what}.ca`)
	if (ca !== undefined) out.ca = ca
	const cert = pemText(ssl.cert, `${what}.cert`)
	if (cert !== undefined) out.cert = cert
	const key = pemText(ssl.key, `${what}.key`)
	if (key !== undefined) out.key = key
	if (typeof ssl.servername === 'string' && ssl.servername) out.serverName = ssl.servername
	if (ssl.verify === 'chain' || typeof ssl.checkServerIdentity === 'function') out.verify = 'chain'
	if (ssl.rejectUnauthorized === false) out.verify = 'none'
	if (ssl.optional === true) out.optional = true
	return out
}

/**
 * A connection string naming several hosts (`postgresql://a:5432,b:5432/db?target_session_attrs=read-write`,
 * or libpq's `host=a,b port=5432,5433 …` form), which node-pg cannot parse: the core
 * reads it as libpq does, tries the hosts in turn and, with `target_session_attrs=read-write`,
 * connects only to the one that takes writes, so a promoted standby is found after a failover.
 */
function isMultiHost(str) {
	if (/^postgres(ql)?:\/\/[^/?#]*,/i.test(str)) return true
	return !/^[a-z]+:\/\//i.test(str) && /(^|\s)host\s*=\s*[^\s]*,/.test(str)
}

/**
 * A connection string as node-pg reads it (pg-connection-string, the parser pg itself
 * uses: URLs, `/socket/dir db`, `socket:` URLs, every query parameter, the
 * sslrootcert/sslcert/sslkey files), with a password that is not percent-encoded
 * accepted too (lib/url-userinfo.js). Its `sslmode` is mapped by sslFromMode, which
 * also checks the mode and keeps libpq's prefer (try TLS, fall back).
 */
function parsePgConnectionString(str) {
	if (str.charAt(0) !== '/' && !/^(postgres(ql)?|socket):/i.test(str)) {
		throw invalidArgument(
			`a PostgreSQL connection string must start with postgres:// or postgresql://; got ${redactUrl(str)}`,
		)
	}
	const { url } =
		str.charAt(0) === '/' ? { url: str } : resolveUserinfo(str, 'the PostgreSQL connection string', { emptyHost: true })
	// libpq's sslrootcert=system (the system's CAs) is not a file: node-pg would try to read it.
	const systemCa = /[?&]sslrootcert=system(&|$)/.test(url)
	const input = systemCa ? url.replace(/([?&])sslrootcert=system(&|$)/, (_, a, b) => (b ? a : '')) : url
	let c
	try {
		c = parsePg(input)
	} catch (e) {
		// pg-connection-string's messages never hold the input (it redacts it).
		throw invalidArgument(`cannot read the PostgreSQL connection string ${redactUrl(str)}: ${e.message}`)
	}
	const config = {}
	for (const key of ['host', 'port', 'user', 'password', 'database']) {
		if (nonEmpty(c[key]) !== undefined) config[key] = c[key]
	}
	let ssl = c.ssl
	if (c.sslmode !== undefined) {
		const libpq = c.uselibpqcompat === 'true'
		ssl = sslFromMode(c.sslmode, { libpq, rootCert: systemCa || !!c.sslrootcert })
	}
	if (ssl) {
		ssl = ssl === true ? {} : { ...ssl }
		for (const key of ['ca', 'cert', 'key']) if (c.ssl?.[key] !== undefined) ssl[key] = c.ssl[key]
	}
	if (ssl !== undefined) config.ssl = ssl
	return config
}

// ---------------------------------------------------------------- Redis

/**
 * @returns {{ target: object, keyPrefix: string }} keyPrefix mirrors ioredis' `keyPrefix`
 *   option, which ioredis prepends to every key.
 */
function toRedisTarget(redis) {
	if (typeof redis === 'string') return { target: { url: redisUrl(redis) }, keyPrefix: '' }
	if (!isObject(redis)) {
		throw invalidArgument(
			`redis must be an ioredis instance, a redis:// URL or an options object; got ${describe(redis)}`,
		)
	}
	if (redis.isCluster === true) {
		throw codedError(
			CODES.NOT_IMPLEMENTED,
			'Redis Cluster (IORedis.Cluster) is not supported yet; pass a standalone Redis connection or URL',
		)
	}
	// An ioredis instance keeps its resolved options (URL already parsed) in `.options`.
	const o =
		isObject(redis.options) && typeof redis.options !== 'function' && typeof redis.sendCommand === 'function'
			? redis.options
			: redis
	if (Array.isArray(o.sentinels) && o.sentinels.length > 0) {
		throw codedError(CODES.NOT_IMPLEMENTED, "Redis Sentinel is not supported yet; pass the master's address or URL")
	}
	const keyPrefix = typeof o.keyPrefix === 'string' ? o.keyPrefix : ''
	if (typeof o.url === 'string') {
		const url = redisUrl(o.url)
		const tls = tlsSettings(o.tls, 'redis tls')
		return { target: tls ? { url, tls } : { url }, keyPrefix }
	}
	const db = o.db === undefined || o.db === null ? 0 : Number(o.db)
	if (!Number.isInteger(db) || db < 0)
		throw invalidArgument(`redis db must be a non-negative integer; got ${describe(o.db)}`)
	if (typeof o.path === 'string' && o.path) {
		// A Unix socket: the redis crate's URL form for it.
		const q = new URLSearchParams({ db: String(db) })
		if (nonEmpty(o.username) !== undefined) q.set('user', String(o.username))
		if (nonEmpty(o.password) !== undefined) q.set('pass', String(o.password))
		return { target: { url: `redis+unix://${o.path}?${q}` }, keyPrefix }
	}
	const target = { host: nonEmpty(o.host) !== undefined ? String(o.host) : 'localhost', port: 6379, db }
	if (nonEmpty(o.port) !== undefined) {
		const port = Number.parseInt(o.port, 10)
		if (!Number.isInteger(port) || port <= 0 || port > 65535)
			throw invalidArgument(`redis port must be a TCP port; got ${describe(o.port)}`)
		target.port = port
	}
	if (nonEmpty(o.username) !== undefined) target.username = String(o.username)
	if (nonEmpty(o.password) !== undefined) target.password = String(o.password)
	const tls = tlsSettings(o.tls, 'redis tls')
	if (tls) target.tls = tls
	return { target, keyPrefix }
}

/** The URL for the core, with an unencoded password percent-encoded (lib/url-userinfo.js). */
function redisUrl(url) {
	if (/^(redis\+unix|unix):\/\//i.test(url)) return url
	if (!/^rediss?:\/\//i.test(url)) {
		throw invalidArgument(`a Redis URL must start with redis:// or rediss://; got ${redactUrl(url)}`)
	}
	// The path is the database number, as ioredis reads it.
	return resolveUserinfo(url, 'the Redis URL', { pathOk: (p) => /^(\/\d*)?$/.test(p) }).url
}

// ---------------------------------------------------------------- RabbitMQ

/**
 * The AMQP URL the core connects with.
 * - a string: used as given (amqplib's rule: no credentials means guest:guest);
 * - an amqplib connection: host and port from its socket (amqplib keeps neither the
 *   credentials nor the vhost), credentials and vhost from `amqpUrl`, else the
 *   RABBITMQ_URL / AMQP_URL environment variable, else guest:guest on a loopback host.
 */
function toAmqpUrl(amqpConnection, { amqpUrl, env = process.env } = {}) {
	if (amqpUrl !== undefined && amqpUrl !== null) readAmqpUrl(amqpUrl, 'amqpUrl')
	if (typeof amqpConnection === 'string') return readAmqpUrl(amqpConnection, 'amqpConnection').url
	if (!isObject(amqpConnection)) {
		throw invalidArgument(
			`amqpConnection must be an amqplib connection (from amqplib.connect()) or an amqp:// URL; got ${describe(amqpConnection)}`,
		)
	}
	// ChannelModel / CallbackModel keep the Connection in `.connection`; a Connection keeps the socket in `.stream`.
	const conn = isObject(amqpConnection.connection) ? amqpConnection.connection : amqpConnection
	const sock = conn.stream
	if (!isObject(sock)) {
		throw invalidArgument(
			'amqpConnection must be an amqplib connection (from amqplib.connect()) or an amqp:// URL; it has no socket',
		)
	}
	const remote = typeof sock.remoteAddress === 'string' ? sock.remoteAddress : undefined
	// `_host` is the name the user connected to: needed for TLS certificate checks.
	const host =
		(typeof sock.servername === 'string' && sock.servername) || (typeof sock._host === 'string' && sock._host) || remote
	const port = sock.remotePort
	if (!host || !Number.isInteger(port)) {
		throw invalidArgument(
			'amqpConnection is not connected (its socket has no remote address); pass an open connection or an amqp:// URL',
		)
	}
	const tls = sock.encrypted === true

	const source = nonEmpty(amqpUrl) ?? nonEmpty(env.RABBITMQ_URL) ?? nonEmpty(env.AMQP_URL)
	let user = 'guest'
	let pass = 'guest'
	let vhost = '/'
	let heartbeat
	if (source !== undefined) {
		const r = readAmqpUrl(source, amqpUrl ? 'amqpUrl' : 'RABBITMQ_URL/AMQP_URL')
		if (r.user || r.password) {
			user = r.user ?? ''
			pass = r.password ?? ''
		}
		const u = new URL(r.url)
		const path = u.pathname.replace(/^\//, '')
		if (path) vhost = percentDecode(path)
		heartbeat = u.searchParams.get('heartbeat') ?? undefined
	} else if (!isLoopback(remote) && !isLoopback(host)) {
		throw codedError(
			CODES.AMQP_CREDENTIALS,
			`amqplib does not keep the credentials of a connection, and ${host} is not a loopback host where guest/guest ` +
				'would work: pass the broker URL as the `amqpUrl` option (e.g. amqpUrl: process.env.RABBITMQ_URL), ' +
				'set RABBITMQ_URL, or pass an amqp:// URL as `amqpConnection`',
		)
	}
	const hostPart = host.includes(':') ? `[${host}]` : host
	let url = `${tls ? 'amqps' : 'amqp'}://${encodeURIComponent(user)}:${encodeURIComponent(pass)}@${hostPart}:${port}`
	if (vhost !== '/') url += `/${encodeURIComponent(vhost)}`
	// No path means vhost '/' (a bare '/' would be the empty vhost to the core's URL parser).
	if (heartbeat !== undefined) url += `?heartbeat=${encodeURIComponent(heartbeat)}`
	return url
}

/**
 * An amqp:// URL read as amqplib reads it, and also with an unencoded '/', '?' or '#'
 * in the password (lib/url-userinfo.js); `url` has the credentials percent-encoded.
 */
function readAmqpUrl(url, what) {
	if (typeof url !== 'string' || !/^amqps?:\/\//i.test(url)) {
		throw invalidArgument(
			`${what} must be an amqp:// or amqps:// URL; got ${typeof url === 'string' ? redactUrl(url) : describe(url)}`,
		)
	}
	// The AMQP URI spec's vhost is one path segment (a '/' in it is written %2F).
	return resolveUserinfo(url, what, { pathOk: (p) => !p.slice(1).includes('/') })
}

function isLoopback(host) {
	if (typeof host !== 'string') return false
	const h = host.toLowerCase()
	return h === 'localhost' || h === '::1' || h.startsWith('127.') || h.startsWith('::ffff:127.')
}

module.exports = {
	toPgTarget,
	toRedisTarget,
	toAmqpUrl,
	tlsSettings,
	tlsWarning,
	parsePgConnectionString,
	redactUrl,
	isLoopback,
}
