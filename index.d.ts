// Public types of @flowcraft/rabbitmq-adapter (hand-written; the generated native.d.ts is internal).
//
// The shapes below are structural on purpose: objects from `pg`, `ioredis` and
// `amqplib`, and registries, blueprints and middleware typed with `flowcraft`'s own
// types, are accepted without this package importing any of them.

// ───────────────────────────────────────────────────────────────── errors

/** Every stable `code` carried by errors of this package. */
export type ErrorCode =
  | 'ERR_INVALID_ARGUMENT'
  | 'ERR_INVALID_TABLE_NAME'
  | 'ERR_INVALID_BLUEPRINT'
  | 'ERR_NOT_SERIALIZABLE'
  | 'ERR_NOT_IMPLEMENTED'
  | 'ERR_AMQP_CREDENTIALS'
  | 'ERR_NATIVE_MISSING'
  | 'ERR_WORKER_STATE'
  | 'ERR_NODE_TIMEOUT'
  | 'ERR_NODE_CANCELLED'
  | 'ERR_PG_CONNECT'
  | 'ERR_PG'
  | 'ERR_REDIS_CONNECT'
  | 'ERR_REDIS'
  | 'ERR_AMQP_CONNECT'
  | 'ERR_AMQP'
  | 'ERR_INVALID_JSON'

/**
 * The error codes by name, e.g. `if (err.code === ErrorCodes.PG_CONNECT)`.
 * - `ERR_INVALID_ARGUMENT`: a wrong argument type or value (thrown as a `TypeError`).
 * - `ERR_INVALID_TABLE_NAME`: a table name that is not `name` or `schema.name` of word characters.
 * - `ERR_INVALID_BLUEPRINT`: a blueprint without `nodes` / `edges`, or one the core refuses.
 * - `ERR_NOT_SERIALIZABLE`: a value JSON cannot hold (BigInt, a cycle, a function).
 * - `ERR_NOT_IMPLEMENTED`: a documented-but-unsupported input (custom coordination store, Redis Cluster/Sentinel).
 * - `ERR_AMQP_CREDENTIALS`: an amqplib connection to a non-loopback host and no `amqpUrl` / `RABBITMQ_URL`.
 * - `ERR_NATIVE_MISSING`: the native addon is not built (`npm run build`).
 * - `ERR_WORKER_STATE`: e.g. `start()` after `stop()`.
 * - `ERR_NODE_TIMEOUT` / `ERR_NODE_CANCELLED`: a node attempt timed out / the worker stopped.
 * - `ERR_PG_CONNECT`, `ERR_PG`, `ERR_REDIS_CONNECT`, `ERR_REDIS`, `ERR_AMQP_CONNECT`, `ERR_AMQP`:
 *   a service refused the connection / a command failed.
 * - `ERR_INVALID_JSON`: stored data that is not valid JSON.
 */
export declare const ErrorCodes: {
  readonly INVALID_ARGUMENT: 'ERR_INVALID_ARGUMENT'
  readonly INVALID_TABLE_NAME: 'ERR_INVALID_TABLE_NAME'
  readonly INVALID_BLUEPRINT: 'ERR_INVALID_BLUEPRINT'
  readonly NOT_SERIALIZABLE: 'ERR_NOT_SERIALIZABLE'
  readonly NOT_IMPLEMENTED: 'ERR_NOT_IMPLEMENTED'
  readonly AMQP_CREDENTIALS: 'ERR_AMQP_CREDENTIALS'
  readonly NATIVE_MISSING: 'ERR_NATIVE_MISSING'
  readonly WORKER_STATE: 'ERR_WORKER_STATE'
  readonly NODE_TIMEOUT: 'ERR_NODE_TIMEOUT'
  readonly NODE_CANCELLED: 'ERR_NODE_CANCELLED'
  readonly PG_CONNECT: 'ERR_PG_CONNECT'
  readonly PG: 'ERR_PG'
  readonly REDIS_CONNECT: 'ERR_REDIS_CONNECT'
  readonly REDIS: 'ERR_REDIS'
  readonly AMQP_CONNECT: 'ERR_AMQP_CONNECT'
  readonly AMQP: 'ERR_AMQP'
  readonly INVALID_JSON: 'ERR_INVALID_JSON'
}

/** The shape of every error this package throws or rejects with. */
export interface AdapterError extends Error {
  code: ErrorCode
}

// ───────────────────────────────────────────────────────────────── context

/** One operation of `patch()`. The last operation on a key wins. */
export type PatchOperation = { op: 'set'; key: string; value: any } | { op: 'delete'; key: string }

/**
 * The asynchronous key/value view of a run's state (Flowcraft's `IAsyncContext`).
 * Keys are flat strings: a dot in a key is part of the key, not a path.
 * Values are anything JSON can hold.
 */
export interface IAsyncContext<TContext extends Record<string, any> = Record<string, any>> {
  readonly type: 'async'
  /** The value of `key`, or `undefined` when it is missing. */
  get<K extends keyof TContext>(key: K): Promise<TContext[K] | undefined>
  get(key: string): Promise<any | undefined>
  /** Stores a value; `undefined` is stored as `null`. */
  set<K extends keyof TContext>(key: K, value: TContext[K]): Promise<void>
  set(key: string, value: any): Promise<void>
  has<K extends keyof TContext>(key: K): Promise<boolean>
  has(key: string): Promise<boolean>
  /** Removes `key`; resolves to `true` only when it existed. */
  delete<K extends keyof TContext>(key: K): Promise<boolean>
  delete(key: string): Promise<boolean>
  /** The whole state as a plain object. */
  toJSON(): Promise<Record<string, any>>
  /** Applies the operations atomically, in order. */
  patch(operations: PatchOperation[]): Promise<void>
}

/** A PostgreSQL config object, as `pg` takes it. Missing fields fall back to PG* environment variables and pg's defaults. */
export interface PgConfigLike {
  connectionString?: string
  host?: string
  port?: number | string
  user?: string
  /** A string, or pg's password function (called once before connecting). */
  password?: string | (() => string | Promise<string>)
  database?: string
  /** Truthy → TLS (`ssl: true`). */
  ssl?: boolean | object
}

/** A `pg.Pool`: only its `options` are read. */
export interface PgPoolLike {
  options: PgConfigLike
}

/**
 * Where PostgreSQL is: a `pg.Client`, a `pg.Pool`, a `postgres://` connection string
 * or a pg config object. Only connection settings are read; the package opens its
 * own pooled connections (one pool per distinct target per process).
 */
export type PgClientInput = string | PgConfigLike | PgPoolLike

export interface PostgresContextOptions {
  /** A `pg.Client`, `pg.Pool`, `postgres://` URL or pg config object. */
  client: PgClientInput
  /** `name` or `schema.name` of a table `(run_id TEXT PRIMARY KEY, context_data JSONB)`. */
  tableName: string
}

/**
 * The state of one workflow run, stored as one row of a PostgreSQL table with a
 * JSONB column. Every method is one statement; concurrent writers lose nothing.
 *
 * @throws {AdapterError} `ERR_INVALID_ARGUMENT` for a non-string `runId` or missing
 * options, `ERR_INVALID_TABLE_NAME` for a bad `tableName` (at construction).
 */
export declare class PostgresContext<TContext extends Record<string, any> = Record<string, any>>
  implements IAsyncContext<TContext>
{
  constructor(runId: string, options: PostgresContextOptions)
  readonly type: 'async'
  readonly runId: string
  readonly tableName: string
  get<K extends keyof TContext>(key: K): Promise<TContext[K] | undefined>
  get(key: string): Promise<any | undefined>
  /** @throws {AdapterError} `ERR_NOT_SERIALIZABLE` (naming the key) for BigInt, cycles, functions. */
  set<K extends keyof TContext>(key: K, value: TContext[K]): Promise<void>
  set(key: string, value: any): Promise<void>
  has<K extends keyof TContext>(key: K): Promise<boolean>
  has(key: string): Promise<boolean>
  delete<K extends keyof TContext>(key: K): Promise<boolean>
  delete(key: string): Promise<boolean>
  /** `{}` when the run has no row yet. */
  toJSON(): Promise<Record<string, any>>
  /** Atomic: one statement. Works on a run with no row yet. */
  patch(operations: PatchOperation[]): Promise<void>
}

// ───────────────────────────────────────────────────────────────── coordination

/** Flowcraft's coordination store interface (fan-in counters and locks). */
export interface ICoordinationStore {
  /** Atomically increments `key`, sets its TTL, and returns the new value. */
  increment(key: string, ttlSeconds: number): Promise<number>
  /** Sets `key` only if it does not exist; `true` when it was set. */
  setIfNotExist(key: string, value: string, ttlSeconds: number): Promise<boolean>
  /** Resets the TTL of an existing key; `false` when the key does not exist. */
  extendTTL(key: string, ttlSeconds: number): Promise<boolean>
  delete(key: string): Promise<void>
  /** The value, or `undefined` when the key does not exist. */
  get(key: string): Promise<string | undefined>
}

/** ioredis-style connection options (also what an ioredis instance keeps in `.options`). */
export interface RedisOptionsLike {
  /** `redis://` or `rediss://` URL; when set, the other fields are ignored. */
  url?: string
  host?: string
  port?: number
  username?: string | null
  password?: string | null
  db?: number
  /** Truthy → TLS. */
  tls?: boolean | object
  /** A Unix socket path. */
  path?: string
  /** Prepended to every key, as ioredis does. */
  keyPrefix?: string
}

/** An `ioredis` instance: only its `options` are read. */
export interface IORedisLike {
  options: RedisOptionsLike
}

/** Where Redis is: an ioredis instance, a `redis://` / `rediss://` URL, or an options object. */
export type RedisInput = string | IORedisLike | RedisOptionsLike

/**
 * Coordination (fan-in joins, locks) in Redis with atomic commands. Reads the
 * connection settings of the ioredis instance you pass; the package keeps its own
 * multiplexed connection per target, which reconnects by itself.
 */
export declare class RedisCoordinationStore implements ICoordinationStore {
  /** @throws {AdapterError} `ERR_INVALID_ARGUMENT`; `ERR_NOT_IMPLEMENTED` for Redis Cluster / Sentinel. */
  constructor(redis: RedisInput)
  private readonly _nativeTarget: unknown
  increment(key: string, ttlSeconds: number): Promise<number>
  /** A non-string `value` is stored as `String(value)` (primitives) or JSON (objects). */
  setIfNotExist(key: string, value: string | number | boolean | object, ttlSeconds: number): Promise<boolean>
  extendTTL(key: string, ttlSeconds: number): Promise<boolean>
  delete(key: string): Promise<void>
  get(key: string): Promise<string | undefined>
}

// ───────────────────────────────────────────────────────────────── workflows

/** Resiliency settings of a node. */
export interface NodeConfig {
  /** Attempts in all (default 1). */
  maxRetries?: number
  /** Milliseconds between attempts. */
  retryDelay?: number
  /** Milliseconds per attempt; then the node's `signal` is aborted and the attempt fails. */
  timeout?: number
  /** What runs when the node still fails after its retries. */
  fallback?: string
  /** How a node with several predecessors starts: when all arrived (default) or on the first. */
  joinStrategy?: 'all' | 'any'
}

/** One step of a blueprint. */
export interface NodeDefinition {
  id: string
  /** The registry key of the implementation. */
  uses: string
  params?: Record<string, any>
  /** Maps context data to the node's `input`: a key, or an object of keys. */
  inputs?: string | Record<string, string>
  config?: NodeConfig
}

/** A connection between two nodes. */
export interface EdgeDefinition {
  source: string
  target: string
  /** Taken when the source returns this `action`. */
  action?: string
  /** Taken only when this expression is truthy over `{ ...context, result }`. */
  condition?: string
  /** The target's input: this expression over `{ input, context }`. */
  transform?: string
}

export interface WorkflowBlueprintMetadata {
  /** Stored with each run; a job whose run was started with another version is refused. */
  version?: string
  [key: string]: any
}

/** A serialisable workflow: nodes and edges. */
export interface WorkflowBlueprint {
  id: string
  nodes: NodeDefinition[]
  edges: EdgeDefinition[]
  metadata?: WorkflowBlueprintMetadata
}

/** Alias of {@link WorkflowBlueprint}. */
export type Blueprint = WorkflowBlueprint

/** What a node returns. `output` is stored as `_outputs.<nodeId>`; `action` selects edges. */
export interface NodeResult<TOutput = any, TAction extends string = string> {
  output?: TOutput
  action?: TAction
  /** Accepted for compatibility with Flowcraft's type; not used for routing. */
  error?: { message: string; [key: string]: any }
}

/** Flowcraft's logger interface. */
export interface ILogger {
  debug(message: string, meta?: Record<string, any>): void
  info(message: string, meta?: Record<string, any>): void
  warn(message: string, meta?: Record<string, any>): void
  error(message: string, meta?: Record<string, any>): void
}
/** Alias of {@link ILogger}. */
export type Logger = ILogger

/**
 * An event: node events (`node:start`, `node:finish`, `node:error`, `node:retry`)
 * with Flowcraft's payloads, and worker events from the core (`job:*`, `workflow:*`).
 */
export interface FlowcraftEvent {
  type: string
  payload: Record<string, any>
}

/** Receives events; a rejection or throw is logged, never fails a job. */
export interface IEventBus {
  emit(event: FlowcraftEvent): void | Promise<void>
}
/** Alias of {@link IEventBus}. */
export type EventBus = IEventBus

/** Evaluates edge `condition` and `transform` expressions (replaces the built-in property-path evaluator). */
export interface IEvaluator {
  evaluate(expression: string, context: Record<string, any>): any
}
/** Alias of {@link IEvaluator}. */
export type Evaluator = IEvaluator

/** What every node receives. */
export interface NodeContext<
  TContext extends Record<string, any> = Record<string, any>,
  TDependencies extends Record<string, any> = Record<string, any>,
  TInput = any,
> {
  /** The run's state as read when the job started, plus this node's own writes. */
  context: IAsyncContext<TContext>
  /** The node's input (its `inputs` mapping, or what its predecessor passed). */
  input?: TInput
  /** The node's static `params` from the blueprint. */
  params: Record<string, any>
  /** `runtimeOptions.dependencies`, plus the logger and the adapter. */
  dependencies: TDependencies & { logger: ILogger; adapter: RabbitMqAdapter }
  /** Aborted when an attempt times out or the worker stops. */
  signal: AbortSignal
}

/** A node as a function. It may be sync or async. */
export type NodeFunction<
  TContext extends Record<string, any> = Record<string, any>,
  TDependencies extends Record<string, any> = Record<string, any>,
  TInput = any,
  TOutput = any,
  TAction extends string = string,
> = (context: NodeContext<TContext, TDependencies, TInput>) => Promise<NodeResult<TOutput, TAction>> | NodeResult<TOutput, TAction>

/**
 * A node class instance (e.g. a subclass of Flowcraft's `BaseNode`). Only `exec` is
 * required. Order: `prep` → `exec` (retried) → `fallback` (when `exec` is exhausted)
 * → `post`; `recover` runs last whenever any of them failed.
 */
export interface NodeInstance<
  TContext extends Record<string, any> = Record<string, any>,
  TDependencies extends Record<string, any> = Record<string, any>,
  TInput = any,
  TOutput = any,
  TAction extends string = string,
> {
  prep?(context: NodeContext<TContext, TDependencies, TInput>): any
  exec(prepResult: any, context: NodeContext<TContext, TDependencies, TInput>): Promise<Omit<NodeResult<TOutput, TAction>, 'error'>> | Omit<NodeResult<TOutput, TAction>, 'error'>
  post?(execResult: Omit<NodeResult<TOutput, TAction>, 'error'>, context: NodeContext<TContext, TDependencies, TInput>): Promise<NodeResult<TOutput, TAction>> | NodeResult<TOutput, TAction>
  fallback?(error: Error, context: NodeContext<TContext, TDependencies, TInput>): Promise<Omit<NodeResult<TOutput, TAction>, 'error'>> | Omit<NodeResult<TOutput, TAction>, 'error'>
  recover?(error: Error, context: NodeContext<TContext, TDependencies, TInput>): Promise<void> | void
}

/** A node class: constructed as `new Impl(params, nodeId)` for each execution. */
export type NodeClass<
  TContext extends Record<string, any> = Record<string, any>,
  TDependencies extends Record<string, any> = Record<string, any>,
  TInput = any,
  TOutput = any,
  TAction extends string = string,
> = new (params?: Record<string, any>, nodeId?: string) => NodeInstance<TContext, TDependencies, TInput, TOutput, TAction>

export type NodeImplementation = NodeFunction<any, any, any, any, any> | NodeClass<any, any, any, any, any>

/** `uses` key → implementation. */
export type NodeRegistry = Record<string, NodeImplementation>

/** Hooks around every node execution, composed as Flowcraft composes them (the first middleware is outermost). */
export interface Middleware<TContext extends Record<string, any> = Record<string, any>> {
  beforeNode?(ctx: IAsyncContext<TContext>, nodeId: string): void | Promise<void>
  afterNode?(ctx: IAsyncContext<TContext>, nodeId: string, result: NodeResult | undefined, error: Error | undefined): void | Promise<void>
  aroundNode?(ctx: IAsyncContext<TContext>, nodeId: string, next: () => Promise<NodeResult>): Promise<NodeResult>
}

/** The Flowcraft runtime options the worker uses. */
export interface RuntimeOptions<TDependencies extends Record<string, any> = Record<string, any>> {
  /** `uses` key → node function or class. */
  registry: NodeRegistry | Map<string, NodeImplementation>
  /** Blueprint id → blueprint. Jobs name their blueprint by this id. */
  blueprints: Record<string, WorkflowBlueprint>
  /** Passed to every node as `dependencies` (with `logger` and `adapter` added). */
  dependencies?: TDependencies
  /** Default: console, prefixed `[flowcraft-rabbitmq]`, debug silent. */
  logger?: ILogger
  /** Replaces the built-in property-path evaluator for conditions and transforms. */
  evaluator?: IEvaluator
  middleware?: Middleware[]
  /** Receives node events (and worker events when no adapter-level `eventBus` is given). */
  eventBus?: IEventBus
}

// ───────────────────────────────────────────────────────────────── adapter

/** An amqplib connection (`await amqplib.connect(url)`): host and port are read from its socket. */
export interface AmqpConnectionLike {
  connection: object
}

export interface RabbitMqAdapterOptions<TDependencies extends Record<string, any> = Record<string, any>> {
  /**
   * An amqplib connection, or an `amqp://` / `amqps://` URL. amqplib does not keep
   * credentials or the vhost, so for a connection they come from `amqpUrl`, else the
   * `RABBITMQ_URL` / `AMQP_URL` environment variable, else `guest:guest` and `/` on a
   * loopback host (otherwise the constructor throws `ERR_AMQP_CREDENTIALS`).
   */
  amqpConnection: AmqpConnectionLike | string
  /** Credentials (and vhost) for an amqplib `amqpConnection`. */
  amqpUrl?: string
  /** A `pg.Client`, `pg.Pool`, `postgres://` URL or pg config object. */
  pgClient: PgClientInput
  /** A `RedisCoordinationStore` of this package. */
  coordinationStore: RedisCoordinationStore
  /** Durable queue to consume. Default `flowcraft-queue`; refused messages go to `<queueName>.dead`. */
  queueName?: string
  /** Default `flowcraft_contexts`. */
  contextTableName?: string
  /** Default `flowcraft_statuses`. */
  statusTableName?: string
  /** Jobs run at once by this worker. Default 64. */
  concurrency?: number
  /** Create missing tables and columns at `start()`. Default true. */
  createTables?: boolean
  /** Default time `stop()` waits for jobs in flight. Default 30000 ms. */
  stopTimeoutMs?: number
  /** Receives worker events (`job:*`, ...); node events go to `runtimeOptions.eventBus` when set. */
  eventBus?: IEventBus
  runtimeOptions: RuntimeOptions<TDependencies>
}

/**
 * A distributed Flowcraft worker: consumes jobs from a durable RabbitMQ queue, keeps
 * each run's state in PostgreSQL and coordinates joins in Redis. Any number of
 * workers, in any number of processes, may consume the same queue.
 *
 * The constructor validates everything (options, table names, blueprints, AMQP
 * credentials) and throws an {@link AdapterError}; it connects to nothing.
 */
export declare class RabbitMqAdapter<TDependencies extends Record<string, any> = Record<string, any>> {
  constructor(options: RabbitMqAdapterOptions<TDependencies>)
  /** The queue this worker consumes. */
  readonly queueName: string
  /**
   * Connects, creates the tables (unless `createTables: false`) and starts consuming.
   * Resolves once consuming. A failure is also logged through the logger, so a call
   * that is not awaited never becomes an unhandled rejection.
   */
  start(): Promise<void>
  /**
   * Stops consuming, waits up to `timeoutMs` (default `stopTimeoutMs`) for jobs in
   * flight, then aborts the `signal` of nodes still running, closes everything and
   * lets the process exit. Idempotent.
   */
  stop(options?: { timeoutMs?: number }): Promise<void>
}
