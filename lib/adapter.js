'use strict'

// RabbitMqAdapter: validates everything at construction (so a typo fails at startup,
// not on the first job), then on start() hands one JSON config and three callbacks to
// the native worker, which does all queue, database and Redis I/O.

const { loadNative, constructNative, callNative } = require('./load-native')
const { toPgTarget, toAmqpUrl } = require('./targets')
const { createNodeRunner, isNodeClass } = require('./node-runner')
const { createNotify, createEvaluate } = require('./callbacks')
const { createConsoleLogger, safeLogger } = require('./logger')
const { CODES, codedError, invalidArgument, checkTableName, describe } = require('./errors')

const DEFAULTS = Object.freeze({
  queueName: 'flowcraft-queue',
  contextTableName: 'flowcraft_contexts',
  statusTableName: 'flowcraft_statuses',
  concurrency: 64,
  createTables: true,
  stopTimeoutMs: 30000,
})

const COORDINATION_METHODS = ['increment', 'setIfNotExist', 'extendTTL', 'delete', 'get']

const isObject = (v) => v !== null && typeof v === 'object'

class RabbitMqAdapter {
  constructor(options) {
    if (!isObject(options)) throw invalidArgument('RabbitMqAdapter: an options object is required')
    const o = { ...DEFAULTS, ...stripUndefined(options) }

    const ro = o.runtimeOptions
    if (!isObject(ro)) throw invalidArgument('RabbitMqAdapter: options.runtimeOptions { registry, blueprints } is required')
    const registry = checkRegistry(ro.registry)
    const blueprints = checkBlueprints(ro.blueprints)
    checkOptionalObject(ro.dependencies, 'runtimeOptions.dependencies')
    checkMethods(ro.logger, 'runtimeOptions.logger', [])
    checkMethods(ro.evaluator, 'runtimeOptions.evaluator', ['evaluate'])
    checkMethods(ro.eventBus, 'runtimeOptions.eventBus', ['emit'])
    checkMethods(o.eventBus, 'eventBus', ['emit'])
    if (ro.middleware !== undefined && ro.middleware !== null) {
      if (!Array.isArray(ro.middleware)) throw invalidArgument(`RabbitMqAdapter: runtimeOptions.middleware must be an array; got ${describe(ro.middleware)}`)
      ro.middleware.forEach((m, i) => {
        if (!isObject(m)) throw invalidArgument(`RabbitMqAdapter: runtimeOptions.middleware[${i}] must be an object with beforeNode / afterNode / aroundNode`)
      })
    }

    if (typeof o.queueName !== 'string' || o.queueName === '' || Buffer.byteLength(o.queueName) > 250) {
      // 255 bytes is AMQP's limit, and the dead-letter queue adds ".dead".
      throw invalidArgument(`RabbitMqAdapter: queueName must be a non-empty string of at most 250 bytes; got ${describe(o.queueName)}`)
    }
    checkTableName(o.contextTableName, 'RabbitMqAdapter: contextTableName')
    checkTableName(o.statusTableName, 'RabbitMqAdapter: statusTableName')
    if (!Number.isInteger(o.concurrency) || o.concurrency < 1 || o.concurrency > 65535) {
      throw invalidArgument(`RabbitMqAdapter: concurrency must be a whole number from 1 to 65535; got ${describe(o.concurrency)}`)
    }
    if (typeof o.createTables !== 'boolean') throw invalidArgument(`RabbitMqAdapter: createTables must be a boolean; got ${describe(o.createTables)}`)
    checkTimeout(o.stopTimeoutMs, 'RabbitMqAdapter: stopTimeoutMs')

    if (o.pgClient === undefined || o.pgClient === null) {
      throw invalidArgument('RabbitMqAdapter: pgClient is required (a pg.Client, pg.Pool, postgres:// URL or pg config)')
    }
    const pg = toPgTarget(o.pgClient)
    const redisTarget = coordinationTarget(o.coordinationStore)
    if (o.amqpConnection === undefined || o.amqpConnection === null) {
      throw invalidArgument('RabbitMqAdapter: amqpConnection is required (an amqplib connection or an amqp:// URL)')
    }
    const amqpUrl = toAmqpUrl(o.amqpConnection, { amqpUrl: o.amqpUrl })

    const logger = ro.logger || createConsoleLogger()
    // Internal state lives in one non-enumerable slot: console.log(adapter) must not
    // print passwords, and users should not come to depend on it.
    Object.defineProperty(this, '_s', {
      value: {
        registry,
        blueprints,
        runtimeOptions: ro,
        logger,
        log: safeLogger(logger),
        // Node events go to the runtime's bus, worker events to the adapter's (as in
        // Flowcraft's BaseDistributedAdapter); each falls back to the other.
        nodeEventBus: ro.eventBus || o.eventBus,
        workerEventBus: o.eventBus || ro.eventBus,
        pg,
        redisTarget,
        amqpUrl,
        queueName: o.queueName,
        contextTableName: o.contextTableName,
        statusTableName: o.statusTableName,
        concurrency: o.concurrency,
        createTables: o.createTables,
        stopTimeoutMs: o.stopTimeoutMs,
        worker: undefined,
        runner: undefined,
        startPromise: undefined,
        stopPromise: undefined,
      },
    })
  }

  /** The durable queue this worker consumes (failed messages go to `<queueName>.dead`). */
  get queueName() {
    return this._s.queueName
  }

  /**
   * Connects to RabbitMQ, PostgreSQL and Redis, creates the tables (unless
   * `createTables: false`) and begins consuming jobs. Resolves once consuming.
   * Calling it again returns the same promise. A failure is also logged through the
   * logger, so an un-awaited `adapter.start()` never becomes an unhandled rejection.
   */
  start() {
    const s = this._s
    if (s.stopPromise) {
      return Promise.reject(codedError(CODES.WORKER_STATE, 'RabbitMqAdapter: start() after stop(); create a new adapter to start again'))
    }
    if (!s.startPromise) {
      const p = this._start().catch((err) => {
        s.startPromise = undefined // a later start() may try again
        throw err
      })
      p.catch((err) => s.log.error(`Worker failed to start: ${err && err.message}`, err && err.code ? { code: err.code } : undefined))
      s.startPromise = p
    }
    return s.startPromise
  }

  async _start() {
    const s = this._s
    const native = loadNative()
    warnUnknownUses(s)
    const pg = { ...s.pg.target }
    if (s.pg.passwordFn) pg.password = String(await s.pg.passwordFn())
    const kinds = {}
    for (const [key, impl] of s.registry) kinds[key] = isNodeClass(impl) ? 'class' : 'function'
    const ro = s.runtimeOptions
    const config = JSON.stringify({
      amqpUrl: s.amqpUrl,
      pg,
      redis: s.redisTarget,
      queueName: s.queueName,
      contextTableName: s.contextTableName,
      statusTableName: s.statusTableName,
      concurrency: s.concurrency,
      createTables: s.createTables,
      blueprints: s.blueprints,
      registry: kinds,
      customEvaluator: !!ro.evaluator,
    })
    const runner = createNodeRunner({
      registry: s.registry,
      dependencies: { ...(ro.dependencies || {}), adapter: this },
      logger: s.logger,
      middleware: ro.middleware,
      eventBus: s.nodeEventBus,
    })
    const evaluate = ro.evaluator ? createEvaluate(ro.evaluator, { logger: s.logger }) : undefined
    const notify = createNotify({ logger: s.logger, eventBus: s.workerEventBus })
    const worker = constructNative(native.NativeWorker, config, runner, evaluate, notify)
    s.worker = worker
    s.runner = runner
    try {
      await callNative(() => worker.start())
    } catch (err) {
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
   * then, and releases everything so that Node can exit. Idempotent.
   */
  stop(options) {
    const s = this._s
    if (s.stopPromise) return s.stopPromise
    let timeoutMs = s.stopTimeoutMs
    if (options !== undefined && options !== null) {
      if (!isObject(options)) return Promise.reject(invalidArgument(`stop(): options must be { timeoutMs }; got ${describe(options)}`))
      if (options.timeoutMs !== undefined) {
        try {
          checkTimeout(options.timeoutMs, 'stop(): timeoutMs')
        } catch (err) {
          return Promise.reject(err)
        }
        timeoutMs = options.timeoutMs
      }
    }
    s.stopPromise = (async () => {
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
        s.runner.abortAll(codedError(CODES.NODE_CANCELLED, `the worker is stopping and its ${timeoutMs} ms stop timeout has passed`))
      }, timeoutMs)
      timer.unref()
      try {
        await callNative(() => worker.stop(timeoutMs))
      } finally {
        clearTimeout(timer)
        s.worker = undefined
      }
    })()
    return s.stopPromise
  }
}

function stripUndefined(obj) {
  const out = {}
  for (const [k, v] of Object.entries(obj)) if (v !== undefined) out[k] = v
  return out
}

function checkTimeout(ms, what) {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) {
    throw invalidArgument(`${what} must be a number of milliseconds >= 0; got ${describe(ms)}`)
  }
}

function checkOptionalObject(v, what) {
  if (v !== undefined && v !== null && !isObject(v)) throw invalidArgument(`RabbitMqAdapter: ${what} must be an object; got ${describe(v)}`)
}

function checkMethods(v, what, methods) {
  if (v === undefined || v === null) return
  if (!isObject(v) && typeof v !== 'function') throw invalidArgument(`RabbitMqAdapter: ${what} must be an object; got ${describe(v)}`)
  for (const m of methods) {
    if (typeof v[m] !== 'function') throw invalidArgument(`RabbitMqAdapter: ${what} must have a ${m}() method`)
  }
}

function checkRegistry(registry) {
  if (!isObject(registry)) {
    throw invalidArgument('RabbitMqAdapter: runtimeOptions.registry is required: an object mapping each `uses` key to a node function or class')
  }
  const map = registry instanceof Map ? registry : new Map(Object.entries(registry))
  for (const [key, impl] of map) {
    if (typeof impl !== 'function') {
      throw invalidArgument(`RabbitMqAdapter: runtimeOptions.registry[${JSON.stringify(key)}] must be a node function or class; got ${describe(impl)}`)
    }
  }
  return map
}

function checkBlueprints(blueprints) {
  if (!isObject(blueprints)) {
    throw invalidArgument('RabbitMqAdapter: runtimeOptions.blueprints is required: an object mapping each blueprint id to its blueprint')
  }
  const entries = blueprints instanceof Map ? [...blueprints] : Object.entries(blueprints)
  const out = {}
  const bad = (id, why) => codedError(CODES.INVALID_BLUEPRINT, `RabbitMqAdapter: blueprint ${JSON.stringify(id)} ${why}`)
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
    out[id] = bp
  }
  return out
}

function coordinationTarget(store) {
  if (store === undefined || store === null) {
    throw invalidArgument('RabbitMqAdapter: coordinationStore is required (new RedisCoordinationStore(redis))')
  }
  if (isObject(store) && isObject(store._nativeTarget)) return store._nativeTarget
  if (isObject(store) && COORDINATION_METHODS.every((m) => typeof store[m] === 'function')) {
    throw codedError(
      CODES.NOT_IMPLEMENTED,
      'RabbitMqAdapter: a custom coordinationStore is not supported yet: the worker coordinates in Redis from native code. ' +
        'Pass new RedisCoordinationStore(redis) from this package',
    )
  }
  throw invalidArgument(`RabbitMqAdapter: coordinationStore must be a RedisCoordinationStore; got ${describe(store)}`)
}

// Not an error (a run that reaches such a node fails with a reason naming it), but
// worth a line at startup: it is usually a typo or a registry that is not loaded.
function warnUnknownUses(s) {
  const missing = new Set()
  for (const [id, bp] of Object.entries(s.blueprints)) {
    for (const n of bp.nodes) {
      if (!s.registry.has(n.uses)) missing.add(`${id}/${n.id} uses '${n.uses}'`)
      const fb = n.config && n.config.fallback
      if (typeof fb === 'string' && !s.registry.has(fb) && !bp.nodes.some((m) => m.id === fb)) {
        missing.add(`${id}/${n.id} falls back to '${fb}'`)
      }
    }
  }
  if (missing.size > 0) {
    s.log.warn(`Some blueprint nodes have no implementation in the registry; runs that reach them will fail: ${[...missing].join('; ')}`)
  }
}

module.exports = { RabbitMqAdapter, DEFAULTS }
