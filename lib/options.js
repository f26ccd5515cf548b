'use strict'

// Every option of the package, in one place: each default, each limit, each check.
// The adapter's constructor options (`adapterOptions`), its `timings`, the options of
// the run API's calls, the reconciler's and stopOnSignals'. A typo or a bad value
// throws at construction (or at the call), with a message naming the option.
//
// The native core trusts what this module hands it: the config JSON carries every
// option with its value (src/lib.rs keeps no second set of defaults). Where the core
// keeps a check of its own for what arrives from elsewhere (jobs on the wire, the
// tables' DDL, its own Timings defaults), the limits are the same numbers, and
// __test__/options.test.js reads them from the Rust source to keep it so.

const { CODES, codedError, invalidArgument, describe } = require('./errors')
const { findUnserializable } = require('./json')
const { createConsoleLogger, safeLogger } = require('./logger')
const { toPgTarget, toAmqpUrl, tlsSettings, tlsWarning } = require('./targets')

const isObject = (v) => v !== null && typeof v === 'object'

// ─────────────────────────────────────────────────────────── limits

/** The largest millisecond count the native calls take (u32). */
const MAX_MS = 2 ** 32 - 1

/**
 * Run ids: non-empty, no NUL (PostgreSQL text cannot hold one), at most this many
 * UTF-8 bytes, so the NOTIFY that announces a run's end (`<status table>\n<run id>`)
 * stays under PostgreSQL's 8000-byte payload limit. The core refuses the same on the
 * wire (core/src/queue.rs `MAX_RUN_ID_BYTES`).
 */
const MAX_RUN_ID_BYTES = 4096

/**
 * Queue names: at most this many bytes (AMQP's 255, less the `.dead` of the
 * dead-letter queue); core/src/queue.rs `MAX_QUEUE_NAME_BYTES` checks the same.
 */
const MAX_QUEUE_NAME_BYTES = 250

/**
 * Table names become SQL identifiers: only `name` or `schema.name` of word characters,
 * each part at most 63 bytes (PostgreSQL's identifier length; core/src/pg.rs
 * `quote_table` checks the same).
 */
const TABLE_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$/
const MAX_TABLE_NAME_PART_BYTES = 63

/** The node table is named after the context table (core/src/run_store.rs `nodes_table`). */
const NODE_TABLE_SUFFIX = '_nodes'

const LIMITS = Object.freeze({
	runIdBytes: MAX_RUN_ID_BYTES,
	queueNameBytes: MAX_QUEUE_NAME_BYTES,
	tableNamePartBytes: MAX_TABLE_NAME_PART_BYTES,
	ms: MAX_MS,
	concurrency: Object.freeze([1, 10000]),
	maxDeliveries: Object.freeze([1, 1000000]),
	/** `limit` of listRuns, deadLetters, requeueDeadLetters and the reconciler. */
	listLimit: Object.freeze([1, 100000]),
})

// ─────────────────────────────────────────────────────────── defaults

/** The adapter's options that have a default. */
const DEFAULTS = Object.freeze({
	queueName: 'flowcraft-jobs',
	contextTableName: 'flowcraft_contexts',
	statusTableName: 'flowcraft_statuses',
	concurrency: 64,
	maxDeliveries: 20,
	createTables: true,
	typescriptCompat: false,
	stopTimeoutMs: 30000,
	handleSignals: false,
	webhookBaseUrl: 'http://localhost/webhooks',
})

/** The defaults of the run API's call options. */
const CALL_DEFAULTS = Object.freeze({
	waitForRunTimeoutMs: 30000,
	reconcileStaleAfterMs: 30000,
	listRunsLimit: 20,
	deadLettersLimit: 100,
	requeueDeadLettersLimit: 100,
})

/** createRabbitMqReconciler's defaults. */
const RECONCILER_DEFAULTS = Object.freeze({ stalledThresholdSeconds: 300, limit: 100 })

/** The command line's defaults (bin/flowcraft-rabbitmq.js): the run API's, except a screenful of dead letters. */
const CLI_DEFAULTS = Object.freeze({
	runsLimit: CALL_DEFAULTS.listRunsLimit,
	deadLettersLimit: 20,
	requeueLimit: CALL_DEFAULTS.requeueDeadLettersLimit,
	stalledSeconds: RECONCILER_DEFAULTS.stalledThresholdSeconds,
	reconcileLimit: RECONCILER_DEFAULTS.limit,
})

/** stopOnSignals' default signals. */
const DEFAULT_SIGNALS = Object.freeze(['SIGTERM', 'SIGINT'])
// Signals no listener can catch, or that Node uses itself.
const REFUSED_SIGNALS = new Set(['SIGKILL', 'SIGSTOP', 'SIGUSR1'])

/**
 * The `timings` option: every timeout, interval and backoff of the worker and the run
 * API, in milliseconds, as core/src/timings.rs `Timings::default()` has them (the core
 * keeps them for its own objects; __test__/options.test.js checks both agree). The
 * adapter hands the core the whole set, these with the user's settings over them.
 */
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

/** Settings that must be positive: zero would turn a timeout into "fail at once" or a loop into a spin. */
const POSITIVE_TIMINGS = new Set(
	Object.keys(TIMING_DEFAULTS).filter((k) => k !== 'stopGraceMs' && k !== 'startRetryMs'),
)

/** Settings that are counts, not durations: `[min, max]`. */
const COUNT_TIMINGS = { pgKeepaliveRetries: [1, 100], pgPoolSize: [1, 100] }

/** `[min, max]` pairs of the backoffs. */
const TIMING_PAIRS = [
	['jobRetryMinMs', 'jobRetryMaxMs'],
	['commitRetryMinMs', 'commitRetryMaxMs'],
	['reconnectMinMs', 'reconnectMaxMs'],
]

const QUEUE_TYPES = ['classic', 'quorum']

const COORDINATION_METHODS = ['increment', 'setIfNotExist', 'extendTTL', 'delete', 'get']

// ─────────────────────────────────────────────────────────── values

function checkTableName(name, what) {
	if (typeof name !== 'string' || !TABLE_NAME_RE.test(name)) {
		throw codedError(
			CODES.INVALID_TABLE_NAME,
			`${what} must be a table name like "flowcraft_contexts" or "schema.table" ` +
				`(letters, digits and underscores, not starting with a digit); got ${describe(name)}`,
			{ type: typeof name === 'string' ? undefined : 'TypeError' },
		)
	}
	const long = name.split('.').find((part) => part.length > MAX_TABLE_NAME_PART_BYTES)
	if (long !== undefined) {
		throw codedError(
			CODES.INVALID_TABLE_NAME,
			`${what} must be a table name whose name and schema are each at most ${MAX_TABLE_NAME_PART_BYTES} characters ` +
				`(PostgreSQL's identifier length); got ${long.length} characters in ${describe(name)}`,
		)
	}
	return name
}

/** A context table name whose node table (`<name>_nodes`) is a table name too. */
function checkContextTableName(name, what) {
	checkTableName(name, what)
	const last = name.slice(name.lastIndexOf('.') + 1)
	if (last.length + NODE_TABLE_SUFFIX.length > MAX_TABLE_NAME_PART_BYTES) {
		throw codedError(
			CODES.INVALID_TABLE_NAME,
			`${what} must be at most ${MAX_TABLE_NAME_PART_BYTES - NODE_TABLE_SUFFIX.length} characters long (without its schema), ` +
				`so that its node table "${last}${NODE_TABLE_SUFFIX}" is at most ${MAX_TABLE_NAME_PART_BYTES}; got ${last.length} characters`,
		)
	}
	return name
}

function checkRunId(runId, what) {
	if (typeof runId !== 'string' || runId === '')
		throw invalidArgument(`${what} must be a non-empty string; got ${describe(runId)}`)
	if (runId.includes('\u0000')) throw invalidArgument(`${what} must not contain a NUL character`)
	const bytes = Buffer.byteLength(runId)
	if (bytes > MAX_RUN_ID_BYTES)
		throw invalidArgument(`${what} must be at most ${MAX_RUN_ID_BYTES} bytes long; got ${bytes} bytes`)
	return runId
}

function checkQueueName(name, what) {
	if (typeof name !== 'string' || name === '' || Buffer.byteLength(name) > MAX_QUEUE_NAME_BYTES) {
		throw invalidArgument(
			`${what} must be a non-empty string of at most ${MAX_QUEUE_NAME_BYTES} bytes; got ${typeof name === 'string' ? `${Buffer.byteLength(name)} bytes` : describe(name)}`,
		)
	}
	if (name.startsWith('amq.'))
		throw invalidArgument(`${what} ${describe(name)} starts with 'amq.', which RabbitMQ reserves for its own queues`)
	return name
}

/** A millisecond count for the native side: a number >= 0, rounded up, at most 2^32 - 1. */
function checkMs(ms, what) {
	if (typeof ms !== 'number' || Number.isNaN(ms) || ms < 0) {
		throw invalidArgument(`${what} must be a number of milliseconds >= 0; got ${describe(ms)}`)
	}
	if (ms > MAX_MS) throw invalidArgument(`${what} must be at most ${MAX_MS} ms (about 49 days); got ${ms}`)
	return Math.ceil(ms)
}

/** A finite number of milliseconds >= 0 (stop timeouts: larger ones are capped, not refused). */
function checkTimeout(ms, what) {
	if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) {
		throw invalidArgument(`${what} must be a number of milliseconds >= 0; got ${describe(ms)}`)
	}
	return ms
}

function checkWholeNumber(n, [lo, hi], what) {
	if (!Number.isInteger(n) || n < lo || n > hi)
		throw invalidArgument(`${what} must be a whole number from ${lo} to ${hi}; got ${describe(n)}`)
	return n
}

function checkLimit(n, what) {
	return checkWholeNumber(n, LIMITS.listLimit, what)
}

function checkBoolean(v, what) {
	if (typeof v !== 'boolean') throw invalidArgument(`${what} must be a boolean; got ${describe(v)}`)
	return v
}

/** `options` as an object (undefined/null → {}); unknown keys are refused, so a typo is not ignored. */
function optionsObject(options, what, keys) {
	if (options === undefined || options === null) return {}
	if (!isObject(options) || Array.isArray(options))
		throw invalidArgument(`${what}: options must be an object { ${keys.join(', ')} }; got ${describe(options)}`)
	for (const k of Object.keys(options)) {
		if (!keys.includes(k))
			throw invalidArgument(`${what}: unknown option ${JSON.stringify(k)}; expected ${keys.join(', ')}`)
	}
	return options
}

function stripUndefined(obj) {
	const out = {}
	for (const [k, v] of Object.entries(obj)) if (v !== undefined) out[k] = v
	return out
}

// ─────────────────────────────────────────────────────────── the adapter's options

/**
 * Validates the options of `new RabbitMqAdapter(options)`, in the order the
 * constructor always checked them (the first problem is the one reported), and
 * returns them resolved: defaults applied, connection targets read, `timings` whole.
 * Connects to nothing. `warnings` are the lines the constructor logs.
 */
function adapterOptions(options) {
	if (!isObject(options)) throw invalidArgument('RabbitMqAdapter: an options object is required')
	const o = { ...DEFAULTS, ...stripUndefined(options) }

	const ro = o.runtimeOptions
	if (!isObject(ro))
		throw invalidArgument('RabbitMqAdapter: options.runtimeOptions { registry, blueprints } is required')
	const registry = checkRegistry(ro.registry)
	if (typeof o.webhookBaseUrl !== 'string' || !/^https?:\/\/[^/]/i.test(o.webhookBaseUrl))
		throw invalidArgument(
			`RabbitMqAdapter: webhookBaseUrl must be an http(s) URL (where createWebhookHandler is mounted); got ${describe(o.webhookBaseUrl)}`,
		)
	const blueprints = checkBlueprints(ro.blueprints)
	checkOptionalObject(ro.dependencies, 'runtimeOptions.dependencies')
	checkMethods(ro.logger, 'runtimeOptions.logger', [])
	checkMethods(ro.evaluator, 'runtimeOptions.evaluator', ['evaluate'])
	checkMethods(ro.eventBus, 'runtimeOptions.eventBus', ['emit'])
	checkMethods(o.eventBus, 'eventBus', ['emit'])
	checkMiddleware(ro.middleware)

	checkQueueName(o.queueName, 'RabbitMqAdapter: queueName')
	const timings = checkTimings(o.timings, 'RabbitMqAdapter: timings')
	checkContextTableName(o.contextTableName, 'RabbitMqAdapter: contextTableName')
	checkTableName(o.statusTableName, 'RabbitMqAdapter: statusTableName')
	checkWholeNumber(o.concurrency, LIMITS.concurrency, 'RabbitMqAdapter: concurrency')
	checkWholeNumber(o.maxDeliveries, LIMITS.maxDeliveries, 'RabbitMqAdapter: maxDeliveries')
	checkBoolean(o.createTables, 'RabbitMqAdapter: createTables')
	checkBoolean(o.typescriptCompat, 'RabbitMqAdapter: typescriptCompat')
	checkTimeout(o.stopTimeoutMs, 'RabbitMqAdapter: stopTimeoutMs')
	checkBoolean(o.handleSignals, 'RabbitMqAdapter: handleSignals')
	// `startRetryMs` is a timing (timings.startRetryMs); the top-level option is kept as its alias
	if (o.startRetryMs !== undefined) {
		checkTimeout(o.startRetryMs, 'RabbitMqAdapter: startRetryMs')
		if (timings.startRetryMs !== undefined && timings.startRetryMs !== Math.min(o.startRetryMs, MAX_MS))
			throw invalidArgument(
				`RabbitMqAdapter: startRetryMs (${o.startRetryMs}) and timings.startRetryMs (${timings.startRetryMs}) disagree; give one`,
			)
		timings.startRetryMs = Math.min(o.startRetryMs, MAX_MS)
	}
	if (o.exitOnStartFailure !== undefined && typeof o.exitOnStartFailure !== 'boolean') {
		throw invalidArgument(
			`RabbitMqAdapter: exitOnStartFailure must be a boolean (or left out); got ${describe(o.exitOnStartFailure)}`,
		)
	}

	if (o.pgClient === undefined || o.pgClient === null) {
		throw invalidArgument('RabbitMqAdapter: pgClient is required (a pg.Client, pg.Pool, postgres:// URL or pg config)')
	}
	const pg = toPgTarget(o.pgClient)
	const redisTarget = coordinationTarget(o.coordinationStore)
	if (o.amqpConnection === undefined || o.amqpConnection === null) {
		throw invalidArgument('RabbitMqAdapter: amqpConnection is required (an amqplib connection or an amqp:// URL)')
	}
	const { amqpUrl, amqpAlternateUrls } = brokerUrls(o.amqpConnection, o.amqpUrl)
	const { queueType, queueArguments } = queueDeclaration(o.queueType, o.queueArguments)
	const amqpTls = tlsSettings(o.amqpTls, 'RabbitMqAdapter: amqpTls')
	if (amqpTls && !/^amqps:/i.test(amqpUrl)) {
		throw invalidArgument(
			'RabbitMqAdapter: amqpTls was given but the broker connection is not amqps://: connect with amqps:// (or an amqplib TLS connection) so the link is encrypted',
		)
	}

	const warnings = []
	const assumed = assumedAmqpCredentials(o.amqpConnection, o.amqpUrl)
	if (assumed) warnings.push(assumed)
	const amqpVerify = /^amqps:/i.test(amqpUrl) && new URL(amqpUrl).searchParams.get('verify') === 'verify_none'
	for (const warning of [
		tlsWarning('RabbitMQ', amqpVerify ? { verify: 'none' } : amqpTls),
		tlsWarning('PostgreSQL', pg.target.tls),
		tlsWarning('Redis', redisTarget?.tls),
	]) {
		if (warning) warnings.push(warning)
	}

	return {
		registry,
		blueprints,
		runtimeOptions: ro,
		logger: ro.logger || createConsoleLogger(),
		// Node events go to the runtime's bus, worker events to the adapter's (as in
		// Flowcraft's BaseDistributedAdapter); each falls back to the other.
		nodeEventBus: ro.eventBus || o.eventBus,
		workerEventBus: o.eventBus || ro.eventBus,
		pg,
		redisTarget,
		coordinationStore: o.coordinationStore,
		amqpUrl,
		amqpTls,
		amqpAlternateUrls,
		queueType,
		queueArguments,
		queueName: o.queueName,
		contextTableName: o.contextTableName,
		statusTableName: o.statusTableName,
		concurrency: o.concurrency,
		maxDeliveries: o.maxDeliveries,
		createTables: o.createTables,
		typescriptCompat: o.typescriptCompat,
		stopTimeoutMs: o.stopTimeoutMs,
		webhookBaseUrl: o.webhookBaseUrl,
		handleSignals: o.handleSignals,
		startRetryMs: timings.startRetryMs ?? TIMING_DEFAULTS.startRetryMs,
		exitOnStartFailure: o.exitOnStartFailure,
		// every setting, so the core uses these values and no defaults of its own
		timings: { ...TIMING_DEFAULTS, ...timings },
		warnings,
	}
}

/**
 * Validates a user's `timings` (undefined or null: all defaults). Returns an object of
 * the keys given; unknown keys and bad values throw ERR_INVALID_ARGUMENT.
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
		if (Object.hasOwn(COUNT_TIMINGS, key)) {
			const [lo, hi] = COUNT_TIMINGS[key]
			if (!Number.isInteger(value) || value < lo || value > hi)
				throw invalidArgument(`${what}.${key} must be a whole number from ${lo} to ${hi}; got ${describe(value)}`)
		} else if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > MAX_MS) {
			throw invalidArgument(
				`${what}.${key} must be a number of milliseconds from 0 to ${MAX_MS}; got ${describe(value)}`,
			)
		} else if (POSITIVE_TIMINGS.has(key) && value === 0) {
			throw invalidArgument(`${what}.${key} must be more than 0 ms`)
		}
		out[key] = value
	}
	for (const [min, max] of TIMING_PAIRS) {
		const lo = out[min] ?? TIMING_DEFAULTS[min]
		const hi = out[max] ?? TIMING_DEFAULTS[max]
		if (lo > hi) throw invalidArgument(`${what}: ${min} (${lo}) must not exceed ${max} (${hi})`)
	}
	return out
}

function checkOptionalObject(v, what) {
	if (v !== undefined && v !== null && !isObject(v))
		throw invalidArgument(`RabbitMqAdapter: ${what} must be an object; got ${describe(v)}`)
}

function checkMethods(v, what, methods) {
	if (v === undefined || v === null) return
	if (!isObject(v) && typeof v !== 'function')
		throw invalidArgument(`RabbitMqAdapter: ${what} must be an object; got ${describe(v)}`)
	for (const m of methods) {
		if (typeof v[m] !== 'function') throw invalidArgument(`RabbitMqAdapter: ${what} must have a ${m}() method`)
	}
}

function checkMiddleware(middleware) {
	if (middleware === undefined || middleware === null) return
	if (!Array.isArray(middleware))
		throw invalidArgument(`RabbitMqAdapter: runtimeOptions.middleware must be an array; got ${describe(middleware)}`)
	middleware.forEach((m, i) => {
		if (!isObject(m))
			throw invalidArgument(
				`RabbitMqAdapter: runtimeOptions.middleware[${i}] must be an object with beforeNode / afterNode / aroundNode`,
			)
	})
}

/** `runtimeOptions.registry` as a Map of `uses` key → node function or class. */
function checkRegistry(registry) {
	if (!isObject(registry)) {
		throw invalidArgument(
			'RabbitMqAdapter: runtimeOptions.registry is required: an object mapping each `uses` key to a node function or class',
		)
	}
	const map = registry instanceof Map ? registry : new Map(Object.entries(registry))
	for (const [key, impl] of map) {
		if (typeof impl !== 'function') {
			throw invalidArgument(
				`RabbitMqAdapter: runtimeOptions.registry[${JSON.stringify(key)}] must be a node function or class; got ${describe(impl)}`,
			)
		}
	}
	return map
}

/**
 * `runtimeOptions.blueprints` as an object of blueprint id → blueprint. A blueprint
 * crosses to the core as JSON, so one JSON would not hold whole (a BigInt, a cycle, a
 * function or symbol at any depth, which JSON.stringify would drop) is refused.
 */
function checkBlueprints(blueprints) {
	if (!isObject(blueprints)) {
		throw invalidArgument(
			'RabbitMqAdapter: runtimeOptions.blueprints is required: an object mapping each blueprint id to its blueprint',
		)
	}
	const entries = blueprints instanceof Map ? [...blueprints] : Object.entries(blueprints)
	const out = {}
	const bad = (id, why) =>
		codedError(CODES.INVALID_BLUEPRINT, `RabbitMqAdapter: blueprint ${JSON.stringify(id)} ${why}`)
	for (const [id, bp] of entries) {
		if (!isObject(bp)) throw bad(id, `must be an object; got ${describe(bp)}`)
		if (!Array.isArray(bp.nodes)) throw bad(id, 'must have a nodes array')
		if (!Array.isArray(bp.edges)) throw bad(id, 'must have an edges array (use [] for none)')
		bp.nodes.forEach((n, i) => {
			if (!isObject(n) || typeof n.id !== 'string' || typeof n.uses !== 'string') {
				throw bad(id, `node ${i} must have string id and uses`)
			}
		})
		bp.edges.forEach((e, i) => {
			if (!isObject(e) || typeof e.source !== 'string' || typeof e.target !== 'string') {
				throw bad(id, `edge ${i} must have string source and target`)
			}
		})
		try {
			JSON.stringify(bp)
		} catch (e) {
			throw bad(id, `is not JSON-serialisable: ${e.message}`)
		}
		const hit = findUnserializable(bp)
		if (hit) {
			throw bad(
				id,
				`holds a ${hit.type} at key path ${hit.path.replace(/^\./, '')}, which JSON would drop silently: blueprints are plain data (put code in the registry)`,
			)
		}
		out[id] = bp
	}
	return out
}

/** The core's Redis target of our RedisCoordinationStore, or null for a user's own store (called back). */
function coordinationTarget(store) {
	if (store === undefined || store === null) {
		throw invalidArgument('RabbitMqAdapter: coordinationStore is required (new RedisCoordinationStore(redis))')
	}
	if (isObject(store) && isObject(store._nativeTarget)) return store._nativeTarget
	if (isObject(store) && COORDINATION_METHODS.every((m) => typeof store[m] === 'function')) return null
	throw invalidArgument(
		`RabbitMqAdapter: coordinationStore must be a RedisCoordinationStore or an object with ${COORDINATION_METHODS.join(', ')}(); got ${describe(store)}`,
	)
}

/**
 * `amqpConnection` may be an amqplib connection, a URL, or several URLs (a cluster's
 * nodes: the worker connects to any, and moves on to another when one is lost).
 * @returns {{ amqpUrl: string, amqpAlternateUrls: string[] }}
 */
function brokerUrls(amqpConnection, amqpUrl) {
	if (!Array.isArray(amqpConnection)) return { amqpUrl: toAmqpUrl(amqpConnection, { amqpUrl }), amqpAlternateUrls: [] }
	if (amqpConnection.length === 0 || !amqpConnection.every((u) => typeof u === 'string')) {
		throw invalidArgument(
			`RabbitMqAdapter: amqpConnection as a list must hold one or more amqp:// URLs (a cluster's nodes); got ${describe(amqpConnection)}`,
		)
	}
	const urls = amqpConnection.map((u) => toAmqpUrl(u))
	return { amqpUrl: urls[0], amqpAlternateUrls: urls.slice(1) }
}

/** `queueType` ('classic' | 'quorum') and `queueArguments` ({ 'x-max-length': 1e6, … }). */
function queueDeclaration(queueType, queueArguments) {
	if (queueType !== undefined && !QUEUE_TYPES.includes(queueType)) {
		throw invalidArgument(`RabbitMqAdapter: queueType must be 'classic' or 'quorum'; got ${describe(queueType)}`)
	}
	if (queueArguments === undefined) return { queueType }
	if (queueArguments === null || typeof queueArguments !== 'object' || Array.isArray(queueArguments)) {
		throw invalidArgument(
			`RabbitMqAdapter: queueArguments must be an object of queue arguments ({ 'x-max-length': 100000 }); got ${describe(queueArguments)}`,
		)
	}
	for (const [key, value] of Object.entries(queueArguments)) {
		const ok = typeof value === 'string' || typeof value === 'boolean' || Number.isFinite(value)
		if (!ok) {
			throw invalidArgument(
				`RabbitMqAdapter: queueArguments[${JSON.stringify(key)}] must be a string, number or boolean; got ${describe(value)}`,
			)
		}
		if (key === 'x-queue-type' && queueType !== undefined) {
			throw invalidArgument(
				"RabbitMqAdapter: give the queue type once, as queueType or as queueArguments['x-queue-type']",
			)
		}
	}
	return { queueType, queueArguments: { ...queueArguments } }
}

/**
 * The warning for an amqplib connection whose credentials are assumed: amqplib keeps
 * neither the user nor the vhost of a connection (its Connection has only the socket
 * and serverProperties), so without amqpUrl / RABBITMQ_URL / AMQP_URL the worker uses
 * guest:guest on '/', whatever the connection was opened with.
 */
function assumedAmqpCredentials(amqpConnection, amqpUrl, env = process.env) {
	if (!isObject(amqpConnection) || Array.isArray(amqpConnection)) return undefined // URLs carry their credentials
	if ([amqpUrl, env.RABBITMQ_URL, env.AMQP_URL].some((v) => typeof v === 'string' && v !== '')) return undefined
	return (
		'amqpConnection is an amqplib connection, which keeps neither its user nor its vhost, and neither amqpUrl ' +
		"nor RABBITMQ_URL / AMQP_URL is set: the worker connects as guest:guest to the vhost '/' of that broker. " +
		'If your connection uses another user or vhost, pass its URL as amqpUrl (e.g. amqpUrl: process.env.RABBITMQ_URL)'
	)
}

// ─────────────────────────────────────────────────────────── the run API's calls

/** startRun()'s blueprint id, which must be one of `blueprints`. */
function checkStartBlueprint(blueprints, blueprintId) {
	if (typeof blueprintId !== 'string' || blueprintId === '') {
		throw invalidArgument(`startRun(): blueprintId must be a non-empty string; got ${describe(blueprintId)}`)
	}
	if (!Object.hasOwn(blueprints, blueprintId)) {
		const known = Object.keys(blueprints)
		const list =
			known.length === 0
				? 'none'
				: known
						.slice(0, 10)
						.map((k) => JSON.stringify(k))
						.join(', ') + (known.length > 10 ? ', ...' : '')
		throw codedError(
			CODES.UNKNOWN_BLUEPRINT,
			`startRun(): unknown blueprint ${JSON.stringify(blueprintId)}; the adapter's runtimeOptions.blueprints has ${list}`,
		)
	}
	return blueprintId
}

/** startRun()'s initial context: a plain object (undefined/null: none). */
function checkInitialContext(initialContext) {
	if (initialContext === undefined || initialContext === null) return {}
	const proto = isObject(initialContext) ? Object.getPrototypeOf(initialContext) : undefined
	if (!isObject(initialContext) || (proto !== Object.prototype && proto !== null)) {
		throw invalidArgument(
			`startRun(): initialContext must be a plain object of context keys; got ${describe(initialContext)}`,
		)
	}
	return initialContext
}

/** startRun()'s `{ runId?, idempotencyKey? }` → `{ runId (undefined: make one), idempotencyKey (or null) }`. */
function startRunOptions(options) {
	const o = optionsObject(options, 'startRun()', ['runId', 'idempotencyKey'])
	let runId = o.runId
	if (runId === null) runId = undefined
	if (runId !== undefined) checkRunId(runId, 'startRun(): options.runId')
	let key = o.idempotencyKey
	if (key === undefined) key = null
	if (key !== null && (typeof key !== 'string' || key === '')) {
		throw invalidArgument(`startRun(): options.idempotencyKey must be a non-empty string; got ${describe(key)}`)
	}
	return { runId, idempotencyKey: key }
}

/** stop()'s `{ timeoutMs? }` → the timeout to use (`defaultMs` when not given). */
function stopOptions(options, defaultMs) {
	if (options === undefined || options === null) return defaultMs
	if (!isObject(options)) throw invalidArgument(`stop(): options must be { timeoutMs }; got ${describe(options)}`)
	if (options.timeoutMs === undefined) return defaultMs
	return checkTimeout(options.timeoutMs, 'stop(): timeoutMs')
}

function waitForRunOptions(options) {
	const o = optionsObject(options, 'waitForRun()', ['timeoutMs'])
	return {
		timeoutMs:
			o.timeoutMs === undefined
				? CALL_DEFAULTS.waitForRunTimeoutMs
				: checkMs(o.timeoutMs, 'waitForRun(): options.timeoutMs'),
	}
}

function listRunsOptions(options) {
	const o = optionsObject(options, 'listRuns()', ['status', 'limit'])
	const limit = o.limit === undefined ? CALL_DEFAULTS.listRunsLimit : checkLimit(o.limit, 'listRuns(): options.limit')
	if (o.status !== undefined && o.status !== null && (typeof o.status !== 'string' || o.status === '')) {
		throw invalidArgument(`listRuns(): options.status must be a status such as 'running'; got ${describe(o.status)}`)
	}
	return { limit, status: o.status ?? null }
}

function reconcileOptions(options) {
	const o = optionsObject(options, 'reconcile()', ['staleAfterMs'])
	return {
		staleAfterMs:
			o.staleAfterMs === undefined
				? CALL_DEFAULTS.reconcileStaleAfterMs
				: checkMs(o.staleAfterMs, 'reconcile(): options.staleAfterMs'),
	}
}

/** `{ limit? }` of deadLetters() / requeueDeadLetters(); `method` names the call. */
function limitOptions(options, method, defaultLimit) {
	const o = optionsObject(options, `${method}()`, ['limit'])
	return { limit: o.limit === undefined ? defaultLimit : checkLimit(o.limit, `${method}(): options.limit`) }
}

function checkAction(action) {
	if (typeof action !== 'string' || action === '') {
		throw invalidArgument(`resumeWithAction(): action must be a non-empty string; got ${describe(action)}`)
	}
	return action
}

function checkCancelReason(reason) {
	if (typeof reason !== 'string') throw invalidArgument(`cancelRun(): reason must be a string; got ${describe(reason)}`)
	return reason
}

// ─────────────────────────────────────────────────────────── reconciler and signals

/**
 * createRabbitMqReconciler()'s options. `adapter` must offer the interface the
 * reconciler uses (RabbitMqAdapter's `reconcile`, `_staleRuns`, `statusTableName`).
 */
function reconcilerOptions(options) {
	if (options === null || typeof options !== 'object') {
		throw invalidArgument(
			'createRabbitMqReconciler(): an options object { adapter, stalledThresholdSeconds? } is required',
		)
	}
	const {
		adapter,
		statusTableName,
		stalledThresholdSeconds = RECONCILER_DEFAULTS.stalledThresholdSeconds,
		logger,
		limit = RECONCILER_DEFAULTS.limit,
		onProgress,
	} = options
	if (
		adapter === null ||
		typeof adapter !== 'object' ||
		typeof adapter.reconcile !== 'function' ||
		typeof adapter._staleRuns !== 'function'
	) {
		throw invalidArgument(
			`createRabbitMqReconciler(): adapter must be a RabbitMqAdapter of this package; got ${describe(adapter)}`,
		)
	}
	if (statusTableName !== undefined && statusTableName !== null && statusTableName !== adapter.statusTableName) {
		throw invalidArgument(
			`createRabbitMqReconciler(): statusTableName ${describe(statusTableName)} is not the adapter's status table ` +
				`(${JSON.stringify(adapter.statusTableName)}); the reconciler reads the adapter's table, so leave it out or make them match`,
		)
	}
	if (
		typeof stalledThresholdSeconds !== 'number' ||
		!Number.isFinite(stalledThresholdSeconds) ||
		stalledThresholdSeconds < 0 ||
		stalledThresholdSeconds * 1000 > MAX_MS
	) {
		throw invalidArgument(
			`createRabbitMqReconciler(): stalledThresholdSeconds must be a number of seconds from 0 to 4294967; got ${describe(stalledThresholdSeconds)}`,
		)
	}
	checkLimit(limit, 'createRabbitMqReconciler(): limit')
	if (onProgress !== undefined && typeof onProgress !== 'function') {
		throw invalidArgument(`createRabbitMqReconciler(): onProgress must be a function; got ${describe(onProgress)}`)
	}
	return { adapter, thresholdMs: Math.ceil(stalledThresholdSeconds * 1000), logger, limit, onProgress }
}

/** stopOnSignals(adapter, options): `{ signals, timeoutMs, logger }`. */
function signalOptions(adapter, options) {
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
		if (typeof sig !== 'string' || !/^SIG[A-Z0-9]+$/.test(sig) || REFUSED_SIGNALS.has(sig)) {
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
	return { signals, timeoutMs, logger: o.logger ? safeLogger(o.logger) : undefined }
}

module.exports = {
	// limits and defaults
	LIMITS,
	MAX_MS,
	MAX_RUN_ID_BYTES,
	MAX_QUEUE_NAME_BYTES,
	MAX_TABLE_NAME_PART_BYTES,
	NODE_TABLE_SUFFIX,
	TABLE_NAME_RE,
	DEFAULTS,
	CALL_DEFAULTS,
	RECONCILER_DEFAULTS,
	CLI_DEFAULTS,
	DEFAULT_SIGNALS,
	TIMING_DEFAULTS,
	// values
	checkTableName,
	checkContextTableName,
	checkRunId,
	checkQueueName,
	checkMs,
	checkTimeout,
	checkLimit,
	optionsObject,
	// the adapter
	adapterOptions,
	checkTimings,
	checkRegistry,
	checkBlueprints,
	brokerUrls,
	queueDeclaration,
	assumedAmqpCredentials,
	// the run API's calls
	checkStartBlueprint,
	checkInitialContext,
	startRunOptions,
	stopOptions,
	waitForRunOptions,
	listRunsOptions,
	reconcileOptions,
	limitOptions,
	checkAction,
	checkCancelReason,
	// reconciler and signals
	reconcilerOptions,
	signalOptions,
}
