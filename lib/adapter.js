'use strict'

// RabbitMqAdapter: validates everything at construction (so a typo fails at startup,
// not on the first job; every check and default is in lib/options.js), then on
// start() hands one JSON config and three callbacks to the native worker, which does
// all queue, database and Redis I/O.
//
// The run API (startRun, waitForRun, getRun, reconcile, resumeWithAction, cancelRun,
// dead letters) goes through a second native object, NativeRuns, created on first use
// from the same config. It holds no JS callbacks, so a process that only starts and
// awaits runs (and never calls start()) exits by itself.

const crypto = require('node:crypto')
const { loadNative, constructNative, callNative } = require('./load-native')
const { activeTraceparent } = require('./trace')
const { createNodeRunner, isNodeClass } = require('./node-runner')
const { rawSnapshot } = require('./context-view')
const { canEmit, createNotify, createEvaluate, emitEvent } = require('./callbacks')
const { safeLogger } = require('./logger')
const { stopOnSignals } = require('./signals')
const { CODES, codedError } = require('./errors')
const {
	MAX_MS,
	CALL_DEFAULTS,
	adapterOptions,
	checkRunId,
	checkMs,
	checkLimit,
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
} = require('./options')
const { toJsonText } = require('./json')
const { webhookEndpoint, webhookNode, deliverWebhook } = require('./webhooks')

/** The Redis key start() reads to check that the coordination store answers (it is never written). */
const PROBE_KEY = 'flowcraft:probe'
/** How long start() waits for a user's coordination store to answer that read. */
const PROBE_TIMEOUT_MS = 10000
/** How long waitForRun() looks again for a run that is not there yet (one being started elsewhere). */
const RUN_APPEAR_GRACE_MS = 1000
/** How many run ids started here waitForRun() remembers as existing. */
const KNOWN_RUNS_MAX = 10000

/** What stats() reports before start(). */
const ZERO_STATS = Object.freeze({
	processed: 0,
	failed: 0,
	deadLettered: 0,
	retried: 0,
	continued: 0,
	inFlight: 0,
	p50Ms: 0,
	p99Ms: 0,
})

class RabbitMqAdapter {
	constructor(options) {
		// every check and default: lib/options.js
		const { warnings, ...o } = adapterOptions(options)
		const log = safeLogger(o.logger)
		for (const warning of warnings) log.warn(warning)
		// Internal state lives in one non-enumerable slot: console.log(adapter) must not
		// print passwords, and users should not come to depend on it.
		Object.defineProperty(this, '_s', {
			value: {
				...o,
				registry: withBuiltinNodes(o.registry, this),
				log,
				// A user's own ICoordinationStore: the core calls it through a callback.
				coordinate: o.redisTarget ? undefined : createCoordinate(o.coordinationStore),
				worker: undefined,
				// the last worker started, kept for stats() after stop()
				statsWorker: undefined,
				runner: undefined,
				startPromise: undefined,
				// what start() returns: settles like startPromise, and knows whether anyone handles it
				userStartPromise: undefined,
				// wakes a start() waiting between two attempts when stop() is called
				wakeStart: undefined,
				// run ids of startRun() calls in flight (waitForRun waits for them)
				starting: new Map(),
				// run id → settles once startRun has emitted the run's workflow:start / resume
				announcing: new Map(),
				// run ids startRun() of this adapter wrote (the latest KNOWN_RUNS_MAX): waitForRun need not look for them
				knownRuns: new Set(),
				stopPromise: undefined,
				// NativeRuns, created on first use of the run API
				runsPromise: undefined,
				closed: false,
				disposeSignals: undefined,
			},
		})
	}

	/** The durable queue this worker consumes (failed messages go to `<queueName>.dead`). */
	get queueName() {
		return this._s.queueName
	}

	/** The context table (one JSONB row per run). */
	get contextTableName() {
		return this._s.contextTableName
	}

	/** The status table (one row per run). */
	get statusTableName() {
		return this._s.statusTableName
	}

	/**
	 * Connects to RabbitMQ, PostgreSQL and Redis (the coordination store is read once,
	 * so a wrong Redis fails here, not at the first redelivery), creates the tables
	 * (unless `createTables: false`) and begins consuming jobs. Resolves once consuming.
	 * Calling it again returns the same promise.
	 *
	 * A failure that may heal (a service refusing or dropping connections, e.g. still
	 * starting) is retried with backoff for `startRetryMs`, each attempt logged; one that
	 * cannot (wrong credentials or vhost, missing database or tables, TLS, a bad option)
	 * fails at once. A failure is always logged. When nothing handles the returned
	 * promise (`adapter.start()` neither awaited nor given a `.catch`) and
	 * `exitOnStartFailure` is not `false`, the process then exits with status 1, so a
	 * worker that cannot start never lingers doing nothing (`exitOnStartFailure: true`
	 * exits even when the promise is handled).
	 */
	start() {
		const s = this._s
		if (s.stopPromise) {
			return Promise.reject(
				codedError(CODES.WORKER_STATE, 'RabbitMqAdapter: start() after stop(); create a new adapter to start again'),
			)
		}
		if (!s.startPromise) {
			if (s.handleSignals && !s.disposeSignals) s.disposeSignals = stopOnSignals(this, { logger: s.logger })
			const p = this._startWithRetries().catch((err) => {
				s.startPromise = undefined // a later start() may try again
				throw err
			})
			const user = new StartPromise()
			p.then(user.settle.resolve, (err) => {
				s.log.error(`Worker failed to start: ${err?.message}`, err?.code ? { code: err.code } : undefined)
				user.fail(err)
				// Handlers attached in the same tick as the failure count as handling it.
				setImmediate(() => onStartFailure(s, err, user))
			})
			s.startPromise = p
			s.userStartPromise = user
		}
		return s.userStartPromise
	}

	/** `_start()` again while it fails with what may heal, for `startRetryMs` in all. */
	async _startWithRetries() {
		const s = this._s
		const deadline = Date.now() + s.startRetryMs
		let delay = 500
		for (let attempt = 1; ; attempt++) {
			try {
				return await this._start()
			} catch (err) {
				const left = deadline - Date.now()
				if (s.stopPromise || !mayHeal(err)) throw err
				if (left <= 0) {
					if (attempt > 1)
						err.message = `${err.message} (gave up after ${attempt} attempts in ${Math.round(s.startRetryMs / 1000)} s; startRetryMs bounds the retries)`
					throw err
				}
				const wait = Math.min(delay, left)
				s.log.warn(
					`Worker could not start (attempt ${attempt}), retrying in ${wait} ms for up to ${Math.ceil(left / 1000)} s more: ${err?.message}`,
					err?.code ? { code: err.code } : undefined,
				)
				await new Promise((resolve) => {
					const timer = setTimeout(resolve, wait)
					s.wakeStart = () => {
						clearTimeout(timer)
						resolve()
					}
				})
				s.wakeStart = undefined
				delay = Math.min(delay * 2, 5000)
				if (s.stopPromise)
					throw codedError(CODES.WORKER_STATE, 'RabbitMqAdapter: stop() was called before the worker started')
			}
		}
	}

	async _start() {
		const s = this._s
		const native = loadNative()
		warnUnknownUses(s)
		const ro = s.runtimeOptions
		const config = await buildConfig(s)
		await probeCoordinationStore(s)
		const runner = createNodeRunner({
			registry: s.registry,
			dependencies: { ...(ro.dependencies || {}), adapter: this },
			logger: s.logger,
			middleware: ro.middleware,
			eventBus: s.nodeEventBus,
			// FlowRuntime's context:change, for event stores that replay a run (flowcraft inspect)
			contextEvents: true,
			blueprints: s.blueprints,
			// other nodes' keys, read on demand in wide runs (lib/context-view.js)
			readContext: async (runId, keys) => {
				if (!s.worker) throw codedError(CODES.WORKER_STATE, 'RabbitMqAdapter: the worker has stopped')
				// [key, value JSON, ...]: each value parsed when the node reads it (native.d.ts readContext)
				return rawSnapshot(await callNative(() => s.worker.readContext(runId, keys)))
			},
		})
		const evaluate = ro.evaluator ? createEvaluate(ro.evaluator, { logger: s.logger }) : undefined
		const notify = createNotify({
			logger: s.logger,
			eventBus: s.workerEventBus,
			holdFinish: (runId) => s.announcing.get(runId),
			onCancel: (runId) => {
				const n = runner.abortRun(runId)
				if (n > 0) s.log.info(`Run cancelled: aborted the signal of ${n} running node(s)`, { runId })
			},
		})
		const worker = constructNative(native.NativeWorker, config, runner, evaluate, notify, s.coordinate)
		s.worker = worker
		s.statsWorker = worker
		s.runner = runner
		try {
			await callNative(() => worker.start())
		} catch (nativeErr) {
			const err = missingTables(s, nativeErr)
			// Release the native callbacks: live ones would keep the process from exiting.
			s.worker = undefined
			try {
				await worker.stop(0)
			} catch {
				// already failed; the start error is the one worth reporting
			}
			throw err
		}
	}

	/**
	 * Stops taking jobs, lets the jobs in flight finish for up to `timeoutMs`
	 * (default: the `stopTimeoutMs` option), aborts the `signal` of nodes still running
	 * then, and releases everything so that Node can exit: the worker, the run API's
	 * connection, and the signal listeners of `handleSignals`. Idempotent. The run API
	 * (startRun, getRun, ...) rejects with ERR_WORKER_STATE afterwards.
	 */
	stop(options) {
		const s = this._s
		if (s.stopPromise) return s.stopPromise
		if (s.wakeStart) queueMicrotask(s.wakeStart) // a start() waiting to retry gives up
		let timeoutMs
		try {
			timeoutMs = stopOptions(options, s.stopTimeoutMs)
		} catch (err) {
			return Promise.reject(err)
		}
		s.stopPromise = (async () => {
			try {
				await stopWorker(s, timeoutMs)
			} finally {
				// Only now: nodes draining above may still use the run API.
				s.closed = true
				await closeRuns(s)
				if (s.disposeSignals) {
					s.disposeSignals()
					s.disposeSignals = undefined
				}
			}
		})()
		return s.stopPromise
	}

	/**
	 * Releases everything: the same as `stop()` (which also stops a started worker).
	 * Meant for processes that only use the run API.
	 */
	close() {
		return this.stop()
	}

	// ─────────────────────────────────────────────────────────── run API

	/** NativeRuns, created on first use from the worker's config. */
	_runs() {
		const s = this._s
		if (s.closed) {
			return Promise.reject(
				codedError(
					CODES.WORKER_STATE,
					'RabbitMqAdapter: the adapter was stopped or closed; create a new adapter to use the run API',
				),
			)
		}
		if (!s.runsPromise) {
			const p = (async () => constructNative(loadNative().NativeRuns, await buildConfig(s), s.coordinate))()
			p.catch(() => {
				if (s.runsPromise === p) s.runsPromise = undefined // a later call may try again
			})
			s.runsPromise = p
		}
		return s.runsPromise
	}

	/** Runs a native method of NativeRuns with its errors translated. */
	async _call(method, ...args) {
		const runs = await this._runs()
		try {
			return await callNative(() => runs[method](...args))
		} catch (err) {
			throw missingTables(this._s, err)
		}
	}

	/**
	 * Starts a run: writes its context row (the initial context plus `blueprintId` and
	 * `blueprintVersion`), marks it `running` and publishes its start jobs, all or
	 * nothing. Starting twice with one `runId` or one `idempotencyKey` starts one run:
	 * the second call resolves with the first run's id and `created: false`.
	 * Needs no started worker.
	 */
	async startRun(blueprintId, initialContext, options) {
		const s = this._s
		checkStartBlueprint(s.blueprints, blueprintId)
		const contextJson = toJsonText(checkInitialContext(initialContext), 'startRun(): initialContext')
		const o = startRunOptions(options)
		const runId = o.runId ?? crypto.randomUUID()
		const key = o.idempotencyKey
		// waitForRun(runId) called meanwhile waits for this call instead of finding no run.
		// the caller's trace, carried by every job of the run (lib/trace.js)
		const call = this._call('startRun', blueprintId, contextJson, runId, key, activeTraceparent() ?? null)
		const starting = s.starting
		starting.set(runId, call)
		// A run can end on this process's worker before this call emits its start: the
		// worker's workflow:finish for it waits for that (lib/callbacks.js holdFinish).
		let announced
		const announcing = new Promise((resolve) => {
			announced = resolve
		})
		s.announcing.set(runId, announcing)
		let out
		try {
			out = await call
			rememberRun(s, out.runId)
			if (out.created === true) {
				// Flowcraft's run start, from the process that started it (FlowRuntime emits both)
				const ids = { blueprintId, executionId: out.runId }
				await emitEvent(s.workerEventBus, s.log, 'workflow:start', ids)
				await emitEvent(s.workerEventBus, s.log, 'workflow:resume', ids)
			}
		} finally {
			if (starting.get(runId) === call) starting.delete(runId)
			if (s.announcing.get(runId) === announcing) s.announcing.delete(runId)
			announced()
		}
		return { runId: out.runId, created: out.created === true }
	}

	/**
	 * Resolves with the run's status data `{ status, payload?, reason? }` as soon as the
	 * run is completed, failed, cancelled or awaiting, whoever wrote that status (woken by
	 * PostgreSQL NOTIFY: the worker's own, and the status table's trigger's for any other
	 * writer; without that trigger it reads the status again every second); at once when
	 * it already is. Rejects with ERR_TIMEOUT after
	 * `timeoutMs` (default 30000); the run goes on.
	 *
	 * A run that does not exist rejects with ERR_RUN_NOT_FOUND at once, not after the
	 * timeout: after a `startRun()` of this adapter for that id still in flight, and
	 * after looking again for up to 1 s (a run being started by another process at that
	 * moment). A run started over the wire protocol exists once its context row does.
	 */
	async waitForRun(runId, options) {
		checkRunId(runId, 'waitForRun(): runId')
		const { timeoutMs } = waitForRunOptions(options)
		const started = Date.now()
		const pending = this._s.starting.get(runId)
		if (pending) await pending.catch(() => {}) // its own caller gets its error
		for (let look = 0; !this._s.knownRuns.has(runId); look++) {
			if ((await this._call('getRun', runId)) !== null) break
			const elapsed = Date.now() - started
			if (elapsed >= Math.min(RUN_APPEAR_GRACE_MS, timeoutMs)) {
				throw codedError(
					CODES.RUN_NOT_FOUND,
					`waitForRun(): there is no run ${JSON.stringify(runId)} in ${this._s.statusTableName} / ${this._s.contextTableName}; check the run id (startRun() returns it) and that this adapter uses the tables of the process that started it`,
				)
			}
			await new Promise((r) => setTimeout(r, Math.min(50 * 2 ** look, 250)))
		}
		const left = Math.ceil(Math.max(0, timeoutMs - (Date.now() - started)))
		try {
			return JSON.parse((await this._call('waitForRun', runId, left)).statusDataJson)
		} catch (err) {
			// the message names the time the caller gave, not what was left of it
			if (err?.code === CODES.TIMEOUT) err.message = err.message.replace(`within ${left} ms`, `within ${timeoutMs} ms`)
			throw err
		}
	}

	/**
	 * What is stored about a run: its status, context, and the state of each node of
	 * its blueprint. `undefined` when there is no such run.
	 */
	async getRun(runId) {
		checkRunId(runId, 'getRun(): runId')
		const r = await this._call('getRun', runId)
		if (r === null || r === undefined) return undefined
		const data = JSON.parse(r.statusDataJson)
		const statusData = data === null || typeof data !== 'object' ? undefined : data
		const context = JSON.parse(r.contextJson)
		const out = {
			runId: r.runId,
			status: r.status ?? null,
			blueprintId: r.blueprintId ?? undefined,
			updatedAt: r.updatedAt ? new Date(r.updatedAt) : undefined,
			statusData,
			context: context && typeof context === 'object' ? context : {},
			nodes: r.nodes,
		}
		if (statusData && typeof statusData.reason === 'string') out.reason = statusData.reason
		return out
	}

	/**
	 * The most recently updated runs, newest first: `[{ runId, status, blueprintId,
	 * idleSeconds, doneNodes, reason? }]`.
	 */
	async listRuns(options) {
		const { limit, status } = listRunsOptions(options)
		const rows = await this._call('listRuns', limit, status)
		return rows.map((r) => {
			const row = {
				runId: r.runId,
				status: r.status ?? null,
				blueprintId: r.blueprintId,
				idleSeconds: r.idleSeconds,
				doneNodes: r.doneNodes,
			}
			if (typeof r.reason === 'string') row.reason = r.reason
			return row
		})
	}

	// ─────────────── what this package's helpers use (createRabbitMqReconciler, stopOnSignals); not public API

	/** The logger the adapter logs through (`runtimeOptions.logger`, made never to throw). */
	_logger() {
		return this._s.log
	}

	/** Ids of `running` runs with no change for `thresholdMs` (oldest first). Used by the reconciler. */
	async _staleRuns(thresholdMs, limit) {
		return this._call('staleRuns', checkMs(thresholdMs, 'thresholdMs'), checkLimit(limit, 'limit'))
	}

	/**
	 * Enqueues what a running run needs to move on: nodes queued but idle for longer
	 * than `staleAfterMs` (default 30000; their message may be lost), and nodes whose
	 * predecessors are done but that were never queued. A node lock keeps two
	 * reconcilers from both enqueueing it. Resolves with the ids enqueued (Flowcraft's
	 * `reconcile` contract); empty for a healthy, finished or awaiting run.
	 */
	async reconcile(runId, options) {
		checkRunId(runId, 'reconcile(): runId')
		const { staleAfterMs } = reconcileOptions(options)
		return new Set(await this._call('reconcile', runId, staleAfterMs))
	}

	/**
	 * Resumes a run stopped at a `wait` node (status `awaiting`): writes
	 * `_resume.action` / `_resume.output`, completes the awaiting nodes with `output`,
	 * follows the edges for `action`, and enqueues what follows. Resolves with the ids
	 * enqueued. Rejects with ERR_WORKER_STATE when the run is not awaiting.
	 */
	async resumeWithAction(runId, action, output) {
		checkRunId(runId, 'resumeWithAction(): runId')
		checkAction(action)
		const outputJson = output === undefined ? null : toJsonText(output, 'resumeWithAction(): output')
		return new Set(await this._call('resumeWithAction', runId, action, outputJson))
	}

	/**
	 * Flowcraft's adapter hook for its `webhook` node: the endpoint of a run's webhook node,
	 * `{ url: '<webhookBaseUrl>/<run id>/<node id>', event: 'webhook:<run id>:<node id>' }`.
	 */
	async registerWebhookEndpoint(runId, nodeId) {
		return webhookEndpoint(this._s.webhookBaseUrl, String(runId), String(nodeId))
	}

	/**
	 * Delivers a call to a run's webhook node (`createWebhookHandler` calls it): resumes the
	 * run awaiting after it with action 'webhook' and `{ ...request, webhook, event }` as
	 * output, once. → `{ status, delivered, duplicate?, reason? }` (202, 200, 404, 409).
	 */
	async deliverWebhook(runId, nodeId, request) {
		return deliverWebhook(this, this._s.blueprints, runId, nodeId, request)
	}

	/**
	 * Cancels a run: it ends `cancelled` with `reason`, no new node of it starts, and
	 * the `signal` of its nodes running in any worker is aborted. `true` when this call
	 * cancelled it, `false` when it had already ended (or does not exist).
	 */
	async cancelRun(runId, reason = 'cancelled by user') {
		checkRunId(runId, 'cancelRun(): runId')
		checkCancelReason(reason)
		const cancelled = await this._call('cancelRun', runId, reason)
		// Workers learn of it by NOTIFY; this process's own nodes need not wait for that.
		if (cancelled && this._s.runner) this._s.runner.abortRun(runId)
		// the blueprint id for the event costs a read of the run: only when someone listens
		if (cancelled && this._s.workerEventBus) {
			const report = await this._call('getRun', runId).catch(() => null)
			const blueprintId = report?.blueprintId
			await emitEvent(this._s.workerEventBus, this._s.log, 'workflow:finish', {
				blueprintId: typeof blueprintId === 'string' ? blueprintId : '',
				executionId: runId,
				status: 'cancelled',
				errors: [{ message: reason, isFatal: false }],
			})
		}
		return cancelled
	}

	/**
	 * Counters of this process's worker since start(): jobs processed, failed,
	 * dead-lettered, retried (redelivered), run as a successor under their predecessor's
	 * delivery (continued), in flight, and p50 / p99 job time in ms.
	 * All zero before start().
	 */
	stats() {
		const w = this._s.statsWorker
		if (!w) return { ...ZERO_STATS }
		let c
		try {
			c = w.counters()
		} catch {
			return { ...ZERO_STATS }
		}
		const out = {}
		for (const k of Object.keys(ZERO_STATS)) out[k] = c[k]
		return out
	}

	/**
	 * Messages in the dead-letter queue `<queueName>.dead`, oldest first, left in place:
	 * `[{ body, job?, reason, deadAt? }]` (`job` is the parsed body when it is JSON).
	 */
	async deadLetters(options) {
		const { limit } = limitOptions(options, 'deadLetters', CALL_DEFAULTS.deadLettersLimit)
		const list = await this._call('deadLetters', limit)
		return list.map((d) => {
			const out = { body: d.body, reason: d.reason }
			try {
				const job = JSON.parse(out.body)
				if (job !== null && typeof job === 'object') out.job = job
			} catch {
				// not JSON: body says it all
			}
			if (d.deadAt > 0) out.deadAt = new Date(d.deadAt)
			return out
		})
	}

	/** Moves up to `limit` (default 100) dead letters back to the job queue, oldest first; resolves with how many moved. */
	async requeueDeadLetters(options) {
		const { limit } = limitOptions(options, 'requeueDeadLetters', CALL_DEFAULTS.requeueDeadLettersLimit)
		return this._call('requeueDeadLetters', limit)
	}
}

/** The NativeConfig both native objects are built from (native.d.ts; resolves pg's password function). */
async function buildConfig(s) {
	const pg = { ...s.pg.target }
	if (s.pg.passwordFn) pg.password = String(await s.pg.passwordFn())
	const kinds = {}
	for (const [key, impl] of s.registry) kinds[key] = isNodeClass(impl) ? 'class' : 'function'
	return withoutNulls({
		amqpUrl: s.amqpUrl,
		amqpTls: s.amqpTls,
		amqpAlternateUrls: s.amqpAlternateUrls,
		queueType: s.queueType,
		queueArguments: s.queueArguments,
		pg,
		redis: s.redisTarget,
		queueName: s.queueName,
		contextTableName: s.contextTableName,
		statusTableName: s.statusTableName,
		concurrency: s.concurrency,
		maxDeliveries: s.maxDeliveries,
		createTables: s.createTables,
		typescriptCompat: s.typescriptCompat,
		blueprintsJson: JSON.stringify(s.blueprints),
		registry: kinds,
		customEvaluator: !!s.runtimeOptions.evaluator,
		// without an event bus, the core keeps its events to itself (lib/callbacks.js would drop them)
		emitEvents: canEmit(s.workerEventBus),
		timings: s.timings,
	})
}

/** napi's optional fields take undefined, not null (JSON text had no such difference). */
function withoutNulls(obj) {
	const out = {}
	for (const [k, v] of Object.entries(obj)) {
		if (v === null) continue
		out[k] = v !== null && typeof v === 'object' && !Array.isArray(v) ? withoutNulls(v) : v
	}
	return out
}

async function stopWorker(s, timeoutMs) {
	if (s.startPromise) {
		try {
			await s.startPromise
		} catch {
			return // a failed start has already released the worker
		}
	}
	const worker = s.worker
	if (!worker) return
	const timer = setTimeout(() => {
		s.runner.abortAll(
			codedError(CODES.NODE_CANCELLED, `the worker is stopping and its ${timeoutMs} ms stop timeout has passed`),
		)
	}, timeoutMs)
	timer.unref()
	try {
		await callNative(() => worker.stop(Math.min(Math.ceil(timeoutMs), MAX_MS)))
	} finally {
		clearTimeout(timer)
		s.worker = undefined
	}
}

async function closeRuns(s) {
	const p = s.runsPromise
	s.runsPromise = undefined
	if (!p) return
	try {
		const runs = await p
		await callNative(() => runs.close())
	} catch (err) {
		s.log.debug(`Closing the run API's connections failed: ${err?.message}`)
	}
}

/** Remembers a run id startRun() wrote, forgetting the oldest beyond KNOWN_RUNS_MAX. */
function rememberRun(s, runId) {
	s.knownRuns.delete(runId)
	s.knownRuns.add(runId)
	if (s.knownRuns.size > KNOWN_RUNS_MAX) s.knownRuns.delete(s.knownRuns.values().next().value)
}

/** The `coordinate` callback through which the core uses a user's own store. */
function createCoordinate(store) {
	return async (requestJson) => {
		const req = JSON.parse(requestJson)
		let value
		if (req.op === 'increment') value = await store.increment(req.key, req.ttlSeconds)
		else if (req.op === 'setIfNotExist') value = await store.setIfNotExist(req.key, req.value, req.ttlSeconds)
		else throw new Error(`unknown coordination operation ${req.op}`)
		return JSON.stringify({ value: value === undefined ? null : value })
	}
}

/** The registry with the built-ins that run in JS (`webhook`) where it has none of that name. */
function withBuiltinNodes(registry, adapter) {
	const out = new Map(registry)
	if (!out.has('webhook')) out.set('webhook', webhookNode(adapter))
	return out
}

/** Flowcraft's built-in nodes the core runs when the registry has none of that name. */
const CORE_BUILTINS = new Set(['wait', 'sleep', 'loop-controller', 'batch-scatter', 'batch-gather', 'subflow'])

// Not an error (a run that reaches such a node fails with a reason naming it), but
// worth a line at startup: it is usually a typo or a registry that is not loaded.
function warnUnknownUses(s) {
	const missing = new Set()
	for (const [id, bp] of Object.entries(s.blueprints)) {
		for (const n of bp.nodes) {
			// Flowcraft's built-ins the core runs (docs/api.md, Built-in nodes)
			if (!s.registry.has(n.uses) && !CORE_BUILTINS.has(n.uses)) missing.add(`${id}/${n.id} uses '${n.uses}'`)
			const fb = n.config?.fallback
			if (typeof fb === 'string' && !s.registry.has(fb) && !bp.nodes.some((m) => m.id === fb)) {
				missing.add(`${id}/${n.id} falls back to '${fb}'`)
			}
		}
	}
	if (missing.size > 0) {
		s.log.warn(
			`Some blueprint nodes have no implementation in the registry; runs that reach them will fail: ${[...missing].join('; ')}`,
		)
	}
}

// ─────────────────────────────────────────────────────────── failing fast at start

/**
 * What start() returns. It settles as the start does, and records whether anyone
 * handles it (`await`, `.then`, `.catch`, `.finally` all call `then` on a subclass),
 * so that an un-awaited `adapter.start()` that fails can end the process instead of
 * lingering. Its rejection is delivered only once someone handles it: an unhandled
 * failure is logged (and may exit, see onStartFailure), never an unhandled rejection.
 */
class StartPromise extends Promise {
	static get [Symbol.species]() {
		return Promise
	}

	#settle
	#failed = false
	#error
	#rejected = false
	handled = false

	constructor(executor) {
		let settle
		super((resolve, reject) => {
			settle = { resolve, reject }
		})
		this.#settle = settle
		if (typeof executor === 'function') executor(settle.resolve, settle.reject)
	}

	get settle() {
		return this.#settle
	}

	fail(err) {
		this.#failed = true
		this.#error = err
		if (this.handled) this.#reject()
	}

	#reject() {
		if (this.#rejected) return
		this.#rejected = true
		this.#settle.reject(this.#error)
	}

	// biome-ignore lint/suspicious/noThenProperty: a Promise subclass overriding then is the point
	then(onFulfilled, onRejected) {
		this.handled = true
		if (this.#failed) this.#reject()
		return super.then(onFulfilled, onRejected)
	}
}

/**
 * After start() failed for good: end the process with status 1 when nothing handles
 * start()'s promise (or `exitOnStartFailure: true`), unless `exitOnStartFailure: false`
 * or stop() was called. A worker that cannot start must not look healthy to a process
 * manager while the user's own connections keep Node alive.
 */
function onStartFailure(s, err, user) {
	if (s.stopPromise || err?.code === CODES.WORKER_STATE) return
	const exit = s.exitOnStartFailure === true || (s.exitOnStartFailure === undefined && !user.handled)
	if (!exit) return
	s.log.error(
		s.exitOnStartFailure === true
			? 'The worker cannot start: exiting with status 1 (exitOnStartFailure: true)'
			: "The worker cannot start and nothing handles adapter.start()'s promise: exiting with status 1 " +
					'(await it or add a .catch() to handle the failure yourself, or pass exitOnStartFailure: false)',
	)
	process.exit(1)
}

// A failure start() retries: what the core marks transient (a service refusing,
// dropping or not yet answering connections, or still starting up). Wrong
// credentials, a missing vhost, database, role or table, TLS and bad options fail
// at once: retrying cannot fix them.
function mayHeal(err) {
	return err?.transient === true
}

/**
 * Reads one key of the coordination store (never written), so that a wrong or
 * unreachable Redis fails start() instead of the first redelivery or reconcile.
 * Our RedisCoordinationStore answers through its native store; a user's store is
 * given PROBE_TIMEOUT_MS.
 */
async function probeCoordinationStore(s) {
	const store = s.coordinationStore
	let timer
	try {
		await Promise.race([
			Promise.resolve().then(() => store.get(PROBE_KEY)),
			new Promise((_, reject) => {
				timer = setTimeout(
					() => reject(new Error(`its get() did not answer (timed out after ${PROBE_TIMEOUT_MS / 1000} s)`)),
					PROBE_TIMEOUT_MS,
				)
			}),
		])
	} catch (cause) {
		const ours = !!s.redisTarget
		const code = cause?.code === CODES.REDIS ? CODES.REDIS : CODES.REDIS_CONNECT
		throw codedError(
			code,
			`start(): ${ours ? 'Redis (the coordination store)' : 'the coordination store (your ICoordinationStore, usually Redis)'} does not answer (${cause?.message}). ` +
				'The worker keeps its delivery counters and node locks there: check the URL or connection given to the coordination store (e.g. REDIS_URL)',
			{ cause },
		)
	} finally {
		clearTimeout(timer)
	}
}

const MISSING_RELATION_RE = /(relation|schema|table) "([^"]+)" does not exist/

/**
 * A missing table with `createTables: false` as ERR_TABLE_NOT_FOUND naming the option and the fix (the core's own
 * ERR_TABLE_NOT_FOUND, or PostgreSQL's "relation ... does not exist"); other errors as they are.
 */
function missingTables(s, err) {
	if (s.createTables || (err?.code !== CODES.PG && err?.code !== CODES.TABLE_NOT_FOUND)) return err
	const m = MISSING_RELATION_RE.exec(String(err.message))
	if (!m) return err
	return codedError(
		CODES.TABLE_NOT_FOUND,
		`The ${m[1] === 'schema' ? 'schema' : 'table'} "${m[2]}" does not exist, and with createTables: false the adapter creates no table. ` +
			`Create the tables "${s.contextTableName}" and "${s.statusTableName}": start one worker with createTables: true (the default: it creates the missing tables, columns, index and triggers), ` +
			`or apply the CREATE TABLE, ALTER TABLE, index and trigger statements printed by \`npx flowcraft-rabbitmq sql --context-table ${s.contextTableName} --status-table ${s.statusTableName}\`; ` +
			'or check the contextTableName / statusTableName options',
		{ cause: err },
	)
}

module.exports = { RabbitMqAdapter }
