'use strict'

// Shared helpers for the jest suite. Every test talks to the real services
// (PostgreSQL, Redis, RabbitMQ) and owns its own tables, keys and queues:
// names come from uniqueName(), and useResources() drops what a test created
// after it, whether the test passed or not.
//
// This file is not a test (no `.test.` in its name), so jest does not collect it.

const crypto = require('node:crypto')

const POSTGRES_URL = process.env.POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/test'
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379'
const RABBITMQ_URL = process.env.RABBITMQ_URL || 'amqp://guest:guest@127.0.0.1:5672'

/** A PostgreSQL URL nothing listens on (port 1). */
const REFUSED_POSTGRES_URL = 'postgres://postgres@127.0.0.1:1/test'
/** A Redis URL nothing listens on (port 1). */
const REFUSED_REDIS_URL = 'redis://127.0.0.1:1'

/**
 * A name unique to this process and call, usable unquoted as a PostgreSQL
 * identifier (lower case, word characters, < 63 bytes), a Redis key prefix and
 * a queue name: uniqueName('ctx') -> 't_ctx_12345_9f3a1c2b'.
 */
function uniqueName(label = 'x') {
	const clean = String(label)
		.toLowerCase()
		.replace(/[^a-z0-9_]/g, '_')
		.slice(0, 20)
	return `t_${clean}_${process.pid}_${crypto.randomBytes(4).toString('hex')}`
}

/** The URL's settings as a `pg` config object ({ host, port, user, password, database }). */
function pgConfigFromUrl(url = POSTGRES_URL) {
	const u = new URL(url)
	const cfg = {
		host: decodeURIComponent(u.hostname),
		port: u.port ? Number(u.port) : 5432,
		user: decodeURIComponent(u.username || 'postgres'),
		database: decodeURIComponent(u.pathname.replace(/^\//, '') || 'postgres'),
	}
	if (u.password) cfg.password = decodeURIComponent(u.password)
	return cfg
}

/** POSTGRES_URL with another database name. */
function pgUrlForDatabase(database, url = POSTGRES_URL) {
	const u = new URL(url)
	u.pathname = `/${database}`
	return u.toString()
}

/** The URL's settings as ioredis options ({ host, port, username?, password?, db? }). */
function redisOptionsFromUrl(url = REDIS_URL) {
	const u = new URL(url)
	const opts = { host: u.hostname, port: u.port ? Number(u.port) : 6379 }
	if (u.username) opts.username = decodeURIComponent(u.username)
	if (u.password) opts.password = decodeURIComponent(u.password)
	const db = u.pathname.replace(/^\//, '')
	if (db) opts.db = Number(db)
	return opts
}

/** Quote an identifier, or a dotted `schema.name`, for SQL written by the tests. */
function quoteIdent(name) {
	return String(name)
		.split('.')
		.map((part) => `"${part.replace(/"/g, '""')}"`)
		.join('.')
}

// ---------------------------------------------------------------- PostgreSQL

let adminPool = null

/** A small `pg.Pool` on POSTGRES_URL for the tests' own setup and checks. */
function pgAdmin() {
	if (!adminPool) {
		const { Pool } = require('pg')
		adminPool = new Pool({ connectionString: POSTGRES_URL, max: 4, idleTimeoutMillis: 1000 })
		adminPool.on('error', () => {}) // a backend killed by a test must not crash the worker
	}
	return adminPool
}

function pgQuery(sql, params) {
	return pgAdmin().query(sql, params)
}

/** CREATE TABLE name (run_id TEXT PRIMARY KEY, context_data JSONB), the documented DDL. */
async function createContextTable(name, pool = pgAdmin()) {
	await pool.query(`CREATE TABLE ${quoteIdent(name)} (run_id TEXT PRIMARY KEY, context_data JSONB)`)
	return name
}

/** CREATE TABLE name (run_id TEXT PRIMARY KEY, status TEXT, status_data JSONB, updated_at TIMESTAMPTZ). */
async function createStatusTable(name, pool = pgAdmin()) {
	await pool.query(
		`CREATE TABLE ${quoteIdent(name)} (run_id TEXT PRIMARY KEY, status TEXT, status_data JSONB, updated_at TIMESTAMPTZ)`,
	)
	return name
}

/** DROP TABLE IF EXISTS; waits at most 15 s for a lock (a leaked transaction shows as an error, not a hang). */
async function dropTable(name, pool = pgAdmin()) {
	const client = await pool.connect()
	try {
		await client.query(`SET lock_timeout = '15s'`)
		// a context table's node rows live in `<name>_nodes`
		await client.query(`DROP TABLE IF EXISTS ${quoteIdent(name)}, ${quoteIdent(`${name}_nodes`)}`)
	} finally {
		client.release()
	}
}

async function dropSchema(name, pool = pgAdmin()) {
	const client = await pool.connect()
	try {
		await client.query(`SET lock_timeout = '15s'`)
		await client.query(`DROP SCHEMA IF EXISTS ${quoteIdent(name)} CASCADE`)
	} finally {
		client.release()
	}
}

async function createDatabase(name) {
	await pgQuery(`CREATE DATABASE ${quoteIdent(name)}`)
	return name
}

/** DROP DATABASE ... WITH (FORCE): also ends the connections a test left open to it. */
async function dropDatabase(name) {
	await pgQuery(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`)
}

/** Every user table of the database, as sorted 'schema.table' strings. */
async function listTables(pool = pgAdmin()) {
	const res = await pool.query(
		`SELECT schemaname || '.' || tablename AS t FROM pg_tables
		 WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`,
	)
	return res.rows.map((r) => r.t)
}

const TEST_NAME_RE = /^t_[a-z0-9_]*?_(\d+)_[0-9a-f]{8}$/

/**
 * listTables() without the tables of test files running in other jest workers
 * (named by uniqueName() with another pid), which come and go at any moment.
 */
async function listStableTables(pool = pgAdmin()) {
	const all = await listTables(pool)
	return all.filter((qualified) => {
		const parts = qualified.split('.')
		const names = parts.map((p) => TEST_NAME_RE.exec(p)).filter(Boolean)
		return names.every((m) => Number(m[1]) === process.pid)
	})
}

async function tableExists(name, pool = pgAdmin()) {
	const res = await pool.query(`SELECT to_regclass($1) IS NOT NULL AS ok`, [quoteIdent(name)])
	return res.rows[0].ok
}

/** The stored context_data of one run (undefined when the run has no row). */
async function readContextRow(table, runId, pool = pgAdmin()) {
	const res = await pool.query(`SELECT context_data FROM ${quoteIdent(table)} WHERE run_id = $1`, [runId])
	if (!res.rows.length) return undefined
	// While a run runs, node outputs and bound inputs live in its node rows (`<table>_nodes`); the
	// run's context is the row with them merged, as getRun shows it (and as the row holds once it ended).
	const nodes = await pool
		.query(
			`SELECT node_id, state, output, output IS NOT NULL AS has, input, input IS NOT NULL AS has_input
			 FROM ${quoteIdent(`${table}_nodes`)} WHERE run_id = $1`,
			[runId],
		)
		.catch((e) => (e.code === '42P01' ? { rows: [] } : Promise.reject(e)))
	const context = res.rows[0].context_data
	for (const n of nodes.rows) {
		if (n.state === 'done' && n.has) {
			context[`_outputs.${n.node_id}`] = n.output
			context[n.node_id] = n.output
		}
		if (n.has_input) context[`_inputs.${n.node_id}`] = n.input
	}
	return context
}

/** The number of rows of a table. */
async function countRows(table, pool = pgAdmin()) {
	const res = await pool.query(`SELECT count(*)::int AS n FROM ${quoteIdent(table)}`)
	return res.rows[0].n
}

/** Server connections to one database (pg_stat_activity rows), as seen from the admin pool. */
async function countConnections(database) {
	const res = await pgQuery(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1`, [database])
	return res.rows[0].n
}

// --------------------------------------------------------------------- Redis

let adminRedis = null

/** An ioredis client on REDIS_URL for the tests' own checks. */
function redisAdmin() {
	if (!adminRedis) {
		const IORedis = require('ioredis')
		adminRedis = new IORedis(REDIS_URL, { maxRetriesPerRequest: 2, lazyConnect: false })
		adminRedis.on('error', () => {})
	}
	return adminRedis
}

function escapeGlob(s) {
	return String(s).replace(/[\\*?[\]^-]/g, (c) => `\\${c}`)
}

/** Delete every key that starts with `prefix` (SCAN + DEL); returns how many were deleted. */
async function deleteRedisKeysByPrefix(prefix, redis = redisAdmin()) {
	let cursor = '0'
	let deleted = 0
	do {
		const [next, keys] = await redis.scan(cursor, 'MATCH', `${escapeGlob(prefix)}*`, 'COUNT', 1000)
		cursor = next
		if (keys.length) deleted += await redis.del(...keys)
	} while (cursor !== '0')
	return deleted
}

/** Every key that starts with `prefix`, sorted. */
async function listRedisKeys(prefix, redis = redisAdmin()) {
	const out = []
	let cursor = '0'
	do {
		const [next, keys] = await redis.scan(cursor, 'MATCH', `${escapeGlob(prefix)}*`, 'COUNT', 1000)
		cursor = next
		out.push(...keys)
	} while (cursor !== '0')
	return out.sort()
}

// ------------------------------------------------------------------ RabbitMQ

/** Delete queues by name (missing queues are fine); returns the number of messages they held. */
async function deleteQueues(names) {
	const list = [].concat(names).filter(Boolean)
	if (!list.length) return 0
	const amqplib = require('amqplib')
	const conn = await amqplib.connect(RABBITMQ_URL)
	let dropped = 0
	try {
		for (const q of list) {
			// a channel error (e.g. 404) closes the channel, so use one per queue
			const ch = await conn.createChannel()
			ch.on('error', () => {})
			try {
				const res = await ch.deleteQueue(q)
				dropped += res?.messageCount || 0
				await ch.close()
			} catch {
				/* already gone */
			}
		}
	} finally {
		await conn.close().catch(() => {})
	}
	return dropped
}

// ------------------------------------------------------------ per-test resources

/**
 * Call once at the top of a test file. Returns a tracker whose create* methods
 * name and create resources for the current test; afterEach drops them all,
 * afterAll closes the helpers' own connections.
 */
function useResources() {
	const res = resourceTracker()
	afterEach(() => res.cleanup())
	afterAll(closeServices)
	return res
}

/**
 * The tracker of useResources without jest's hooks (the chaos suite uses it): the same
 * methods, and `cleanup()`, which runs the closers and drops everything tracked so far
 * (throws the first error after trying all of it). `closeServices()` stays the caller's.
 */
function resourceTracker() {
	let tables = []
	let schemas = []
	let databases = []
	let prefixes = []
	let queues = []
	let closers = []

	const res = {
		/** Create a context table with a unique name; dropped after the test. */
		async contextTable(label = 'ctx') {
			const name = uniqueName(label)
			tables.push(name)
			await createContextTable(name)
			return name
		},
		async statusTable(label = 'st') {
			const name = uniqueName(label)
			tables.push(name)
			await createStatusTable(name)
			return name
		},
		/** Remember a table name (created elsewhere, or maybe by a bug) to drop after the test. */
		trackTable(name) {
			tables.push(name)
			return name
		},
		async schema(label = 'sch') {
			const name = uniqueName(label)
			schemas.push(name)
			await pgQuery(`CREATE SCHEMA ${quoteIdent(name)}`)
			return name
		},
		async database(label = 'db') {
			const name = uniqueName(label)
			databases.push(name)
			await createDatabase(name)
			return name
		},
		/** A unique Redis key prefix ('t_label_pid_rand:'); its keys are deleted after the test. */
		keyPrefix(label = 'k') {
			const p = `${uniqueName(label)}:`
			prefixes.push(p)
			return p
		},
		/** A unique queue name; the queue is deleted after the test. */
		queueName(label = 'q') {
			const q = uniqueName(label)
			queues.push(q)
			return q
		},
		/** Run fn after the test (e.g. close a client the test opened). */
		onCleanup(fn) {
			closers.push(fn)
		},
		cleanup,
	}

	async function cleanup() {
		const errors = []
		const run = async (fn) => {
			try {
				await fn()
			} catch (e) {
				errors.push(e)
			}
		}
		for (const fn of closers.reverse()) await run(fn)
		for (const t of tables) await run(() => dropTable(t))
		for (const s of schemas) await run(() => dropSchema(s))
		for (const d of databases) await run(() => dropDatabase(d))
		for (const p of prefixes) await run(() => deleteRedisKeysByPrefix(p))
		if (queues.length) await run(() => deleteQueues(queues))
		tables = []
		schemas = []
		databases = []
		prefixes = []
		queues = []
		closers = []
		if (errors.length) throw errors[0]
	}

	return res
}

/** Close the helpers' own connections (called by useResources' afterAll). */
async function closeServices() {
	const pool = adminPool
	const redis = adminRedis
	adminPool = null
	adminRedis = null
	if (pool) await pool.end().catch(() => {})
	if (redis) await redis.quit().catch(() => redis.disconnect())
}

// ------------------------------------------------------------------ assertions

/**
 * Resolve with the promise's value, or reject with a clear error after `ms`.
 * The timer is cleared either way, so it never keeps jest alive.
 */
function withTimeout(promise, ms, what = 'operation') {
	let timer
	const timeout = new Promise((_, reject) => {
		timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms)
	})
	return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/**
 * Run fn (sync or async) and return what it threw or rejected with; fails
 * the test when it succeeds. Lets a test accept an error raised either at
 * construction or at the first call.
 */
async function captureError(fn) {
	let value
	try {
		value = await fn()
	} catch (err) {
		return err
	}
	throw new Error(`expected an error, but it succeeded with ${safeStringify(value)}`)
}

function safeStringify(v) {
	try {
		return JSON.stringify(v)
	} catch {
		return String(v)
	}
}

module.exports = {
	resourceTracker,
	POSTGRES_URL,
	REDIS_URL,
	RABBITMQ_URL,
	REFUSED_POSTGRES_URL,
	REFUSED_REDIS_URL,
	uniqueName,
	pgConfigFromUrl,
	pgUrlForDatabase,
	redisOptionsFromUrl,
	quoteIdent,
	pgAdmin,
	pgQuery,
	createContextTable,
	createStatusTable,
	dropTable,
	dropSchema,
	createDatabase,
	dropDatabase,
	listTables,
	listStableTables,
	tableExists,
	readContextRow,
	countRows,
	countConnections,
	redisAdmin,
	deleteRedisKeysByPrefix,
	listRedisKeys,
	deleteQueues,
	useResources,
	closeServices,
	withTimeout,
	captureError,
}
