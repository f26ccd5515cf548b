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
	| 'ERR_NATIVE'
	| 'ERR_WORKER_STATE'
	| 'ERR_NODE_TIMEOUT'
	| 'ERR_NODE_CANCELLED'
	| 'ERR_RUN_CANCELLED'
	| 'ERR_UNKNOWN_BLUEPRINT'
	| 'ERR_TIMEOUT'
	| 'ERR_RUN_NOT_FOUND'
	| 'ERR_TABLE_NOT_FOUND'
	| 'ERR_COLUMN_NOT_FOUND'
	| 'ERR_INDEX_NOT_FOUND'
	| 'ERR_PG_CONNECT'
	| 'ERR_PG'
	| 'ERR_REDIS_CONNECT'
	| 'ERR_REDIS'
	| 'ERR_AMQP_CONNECT'
	| 'ERR_AMQP'
	| 'ERR_INVALID_JSON'
	| 'ERR_UNSUPPORTED'
	| 'ERR_TLS'
	| 'ERR_QUEUE_NOT_FOUND'
	| 'ERR_QUEUE_MISMATCH'

/**
 * The error codes by name, e.g. `if (err.code === ErrorCodes.PG_CONNECT)`.
 * - `ERR_INVALID_ARGUMENT`: a wrong argument type or value (thrown as a `TypeError`).
 * - `ERR_INVALID_TABLE_NAME`: a table name that is not `name` or `schema.name` of word characters.
 * - `ERR_INVALID_BLUEPRINT`: a blueprint without `nodes` / `edges`, or one the core refuses.
 * - `ERR_NOT_SERIALIZABLE`: a value JSON cannot hold (BigInt, a cycle, a function).
 * - `ERR_NOT_IMPLEMENTED`: a documented-but-unsupported input (Redis Cluster/Sentinel).
 * - `ERR_AMQP_CREDENTIALS`: an amqplib connection to a non-loopback host and no `amqpUrl` / `RABBITMQ_URL`.
 * - `ERR_NATIVE_MISSING`: the native addon is not built (`npm run build`).
 * - `ERR_NATIVE`: a native call failed without a code of its own (a bug of this package: please report it).
 * - `ERR_WORKER_STATE`: e.g. `start()` after `stop()`, the run API after `stop()` / `close()`,
 *   `resumeWithAction()` on a run that is not awaiting.
 * - `ERR_NODE_TIMEOUT` / `ERR_NODE_CANCELLED`: a node attempt timed out / the worker stopped.
 * - `ERR_RUN_CANCELLED`: the `signal.reason` of a node whose run was cancelled with `cancelRun()`.
 * - `ERR_UNKNOWN_BLUEPRINT`: `startRun()` with a blueprint id that is not in `runtimeOptions.blueprints`.
 * - `ERR_TIMEOUT`: `waitForRun()` gave up after `timeoutMs` (the run goes on).
 * - `ERR_RUN_NOT_FOUND`: `waitForRun()` on a run id that does not exist (rejected at once).
 * - `ERR_TABLE_NOT_FOUND`: `createTables: false` and a table (or its schema) does not exist.
 * - `ERR_COLUMN_NOT_FOUND` / `ERR_INDEX_NOT_FOUND`: `createTables: false` and a table lacks a column /
 *   a unique index the worker needs; the message names them and `npx flowcraft-rabbitmq sql`, which prints the DDL.
 * - `ERR_PG_CONNECT`, `ERR_PG`, `ERR_REDIS_CONNECT`, `ERR_REDIS`, `ERR_AMQP_CONNECT`, `ERR_AMQP`:
 *   a service refused the connection / a command failed.
 * - `ERR_INVALID_JSON`: stored data that is not valid JSON.
 * - `ERR_UNSUPPORTED`: an operation the native core does not support.
 * - `ERR_TLS`: a TLS connection failed: the server's certificate does not verify, or the port does not speak TLS.
 * - `ERR_QUEUE_NOT_FOUND`: a queue that must exist (read-only tools never declare one) does not.
 * - `ERR_QUEUE_MISMATCH`: the job queue exists with another type or arguments than `queueType` / `queueArguments` ask.
 */
export declare const ErrorCodes: {
	readonly INVALID_ARGUMENT: 'ERR_INVALID_ARGUMENT'
	readonly INVALID_TABLE_NAME: 'ERR_INVALID_TABLE_NAME'
	readonly INVALID_BLUEPRINT: 'ERR_INVALID_BLUEPRINT'
	readonly NOT_SERIALIZABLE: 'ERR_NOT_SERIALIZABLE'
	readonly NOT_IMPLEMENTED: 'ERR_NOT_IMPLEMENTED'
	readonly AMQP_CREDENTIALS: 'ERR_AMQP_CREDENTIALS'
	readonly NATIVE_MISSING: 'ERR_NATIVE_MISSING'
	readonly NATIVE: 'ERR_NATIVE'
	readonly WORKER_STATE: 'ERR_WORKER_STATE'
	readonly NODE_TIMEOUT: 'ERR_NODE_TIMEOUT'
	readonly NODE_CANCELLED: 'ERR_NODE_CANCELLED'
	readonly RUN_CANCELLED: 'ERR_RUN_CANCELLED'
	readonly UNKNOWN_BLUEPRINT: 'ERR_UNKNOWN_BLUEPRINT'
	readonly TIMEOUT: 'ERR_TIMEOUT'
	readonly RUN_NOT_FOUND: 'ERR_RUN_NOT_FOUND'
	readonly TABLE_NOT_FOUND: 'ERR_TABLE_NOT_FOUND'
	readonly COLUMN_NOT_FOUND: 'ERR_COLUMN_NOT_FOUND'
	readonly INDEX_NOT_FOUND: 'ERR_INDEX_NOT_FOUND'
	readonly PG_CONNECT: 'ERR_PG_CONNECT'
	readonly PG: 'ERR_PG'
	readonly REDIS_CONNECT: 'ERR_REDIS_CONNECT'
	readonly REDIS: 'ERR_REDIS'
	readonly AMQP_CONNECT: 'ERR_AMQP_CONNECT'
	readonly AMQP: 'ERR_AMQP'
	readonly INVALID_JSON: 'ERR_INVALID_JSON'
	readonly UNSUPPORTED: 'ERR_UNSUPPORTED'
	readonly TLS: 'ERR_TLS'
	readonly QUEUE_NOT_FOUND: 'ERR_QUEUE_NOT_FOUND'
	readonly QUEUE_MISMATCH: 'ERR_QUEUE_MISMATCH'
}

/** The shape of every error this package throws or rejects with. */
export interface AdapterError extends Error {
	code: ErrorCode
	/**
	 * `true` when the failure may heal by itself (a service refusing, dropping or not yet
	 * answering connections, a server starting up): worth retrying. Absent for failures
	 * retrying cannot fix (a refused login, a missing database or vhost, TLS, bad input).
	 */
	transient?: true | undefined
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
	connectionString?: string | undefined
	host?: string | undefined
	port?: number | string | undefined
	user?: string | undefined
	/** A string, or pg's password function (called once before connecting). */
	password?: string | (() => string | Promise<string>) | undefined
	database?: string | undefined
	/** Truthy → TLS (`ssl: true`). */
	ssl?: boolean | object | undefined
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
	url?: string | undefined
	host?: string | undefined
	port?: number | undefined
	username?: string | null | undefined
	password?: string | null | undefined
	db?: number | undefined
	/** Truthy → TLS. */
	tls?: boolean | object | undefined
	/** A Unix socket path. */
	path?: string | undefined
	/** Prepended to every key, as ioredis does. */
	keyPrefix?: string | undefined
}

/** An `ioredis` instance: only its `options` are read. */
export interface IORedisLike {
	options: RedisOptionsLike
}

/** Where Redis is: an ioredis instance, a `redis://` / `rediss://` URL, or an options object. */
export type RedisInput = string | IORedisLike | RedisOptionsLike

/**
 * Flowcraft's coordination store in Redis, each method one atomic command; the
 * worker keeps its delivery counters and node locks here. Reads the
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
	maxRetries?: number | undefined
	/** Milliseconds between attempts. */
	retryDelay?: number | undefined
	/** Milliseconds per attempt; then the node's `signal` is aborted and the attempt fails. */
	timeout?: number | undefined
	/** What runs when the node still fails after its retries. */
	fallback?: string | undefined
	/** How a node with several predecessors starts: when all arrived (default) or on the first. */
	joinStrategy?: 'all' | 'any' | undefined
}

/** One step of a blueprint. */
export interface NodeDefinition {
	id: string
	/** The registry key of the implementation. */
	uses: string
	params?: Record<string, any> | undefined
	/** Maps context data to the node's `input`: a key, or an object of keys. */
	inputs?: string | Record<string, string> | undefined
	config?: NodeConfig | undefined
}

/** A connection between two nodes. */
export interface EdgeDefinition {
	source: string
	target: string
	/** Taken when the source returns this `action`. */
	action?: string | undefined
	/** Taken only when this expression is truthy over `{ ...context, result }`. */
	condition?: string | undefined
	/** The target's input: this expression over `{ input, context }`. */
	transform?: string | undefined
}

export interface WorkflowBlueprintMetadata {
	/** Stored with each run; a job whose run was started with another version is refused. */
	version?: string | undefined
	[key: string]: any
}

/** A serialisable workflow: nodes and edges. */
export interface WorkflowBlueprint {
	id: string
	nodes: NodeDefinition[]
	edges: EdgeDefinition[]
	metadata?: WorkflowBlueprintMetadata | undefined
}

/** Alias of {@link WorkflowBlueprint}. */
export type Blueprint = WorkflowBlueprint

/** What a node returns. `output` is stored as `_outputs.<nodeId>`; `action` selects edges. */
export interface NodeResult<TOutput = any, TAction extends string = string> {
	output?: TOutput | undefined
	action?: TAction | undefined
	/** Accepted for compatibility with Flowcraft's type; not used for routing. */
	error?: { message: string; [key: string]: any } | undefined
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

/** The run and blueprint every Flowcraft event names: `executionId` is the run id. */
interface RunIds {
	blueprintId: string
	executionId: string
}

/** A job event's ids: `executionId` is `runId`, so an event store files it under the run. */
interface JobIds {
	runId: string
	executionId: string
	blueprintId: string
	nodeId: string
}

/**
 * The events this adapter emits: Flowcraft's (`workflow:*`, `node:*`) with Flowcraft's
 * payload fields, and its own job events (`job:*`, shaped as Flowcraft's). See the
 * "Events" in docs/api.md for who emits each.
 */
export type FlowcraftEvent =
	| { type: 'workflow:start'; payload: RunIds }
	| { type: 'workflow:resume'; payload: RunIds }
	| {
			type: 'workflow:finish'
			payload: RunIds & {
				/** `completed`, `failed`, `cancelled`, or `awaiting` (stopped at a wait node). */
				status: string
				/** A failed or cancelled run: the reason. */
				errors?: Array<{ message: string; nodeId?: string | null; isFatal?: boolean }>
			}
	  }
	| { type: 'node:start'; payload: RunIds & { nodeId: string; input: any } }
	| { type: 'node:retry'; payload: RunIds & { nodeId: string; attempt: number } }
	| { type: 'node:finish'; payload: RunIds & { nodeId: string; result: NodeResult } }
	| { type: 'node:fallback'; payload: RunIds & { nodeId: string; fallback: string } }
	| {
			type: 'node:error'
			/** `error`: an Error with enumerable `name`, `message`, `nodeId`, `blueprintId`, `executionId`, `isFatal`. */
			payload: RunIds & { nodeId: string; error: any }
	  }
	| {
			type: 'context:change'
			/** What the core commits of a node: its writes, its output, its bound input. */
			payload: { sourceNode: string; key: string; op: 'set' | 'delete'; value?: any; executionId: string }
	  }
	| { type: 'job:enqueued'; payload: JobIds }
	| { type: 'job:processed'; payload: JobIds & { duration: number; success: boolean } }
	| { type: 'job:failed'; payload: JobIds & { error: { message: string } } }

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
	input?: TInput | undefined
	/** The node's static `params` from the blueprint. */
	params: Record<string, any>
	/** `runtimeOptions.dependencies`, plus the logger and the adapter. */
	dependencies: TDependencies & { logger: ILogger; adapter: RabbitMqAdapter }
	/**
	 * Aborted when an attempt times out (`reason.code` `ERR_NODE_TIMEOUT`), when the
	 * worker stops and its stop timeout has passed (`ERR_NODE_CANCELLED`), or when the
	 * run is cancelled with `cancelRun()` (`ERR_RUN_CANCELLED`).
	 */
	signal: AbortSignal
}

/** A node as a function. It may be sync or async. */
export type NodeFunction<
	TContext extends Record<string, any> = Record<string, any>,
	TDependencies extends Record<string, any> = Record<string, any>,
	TInput = any,
	TOutput = any,
	TAction extends string = string,
> = (
	context: NodeContext<TContext, TDependencies, TInput>,
) => Promise<NodeResult<TOutput, TAction>> | NodeResult<TOutput, TAction>

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
	exec(
		prepResult: any,
		context: NodeContext<TContext, TDependencies, TInput>,
	): Promise<Omit<NodeResult<TOutput, TAction>, 'error'>> | Omit<NodeResult<TOutput, TAction>, 'error'>
	post?(
		execResult: Omit<NodeResult<TOutput, TAction>, 'error'>,
		context: NodeContext<TContext, TDependencies, TInput>,
	): Promise<NodeResult<TOutput, TAction>> | NodeResult<TOutput, TAction>
	fallback?(
		error: Error,
		context: NodeContext<TContext, TDependencies, TInput>,
	): Promise<Omit<NodeResult<TOutput, TAction>, 'error'>> | Omit<NodeResult<TOutput, TAction>, 'error'>
	recover?(error: Error, context: NodeContext<TContext, TDependencies, TInput>): Promise<void> | void
}

/** A node class: constructed as `new Impl(params, nodeId)` for each execution. */
export type NodeClass<
	TContext extends Record<string, any> = Record<string, any>,
	TDependencies extends Record<string, any> = Record<string, any>,
	TInput = any,
	TOutput = any,
	TAction extends string = string,
> = new (
	params?: Record<string, any>,
	nodeId?: string,
) => NodeInstance<TContext, TDependencies, TInput, TOutput, TAction>

export type NodeImplementation = NodeFunction<any, any, any, any, any> | NodeClass<any, any, any, any, any>

/** `uses` key → implementation. */
export type NodeRegistry = Record<string, NodeImplementation>

/** Hooks around every node execution, composed as Flowcraft composes them (the first middleware is outermost). */
export interface Middleware<TContext extends Record<string, any> = Record<string, any>> {
	beforeNode?(ctx: IAsyncContext<TContext>, nodeId: string): void | Promise<void>
	afterNode?(
		ctx: IAsyncContext<TContext>,
		nodeId: string,
		result: NodeResult | undefined,
		error: Error | undefined,
	): void | Promise<void>
	aroundNode?(ctx: IAsyncContext<TContext>, nodeId: string, next: () => Promise<NodeResult>): Promise<NodeResult>
}

/** The Flowcraft runtime options the worker uses. */
export interface RuntimeOptions<TDependencies extends Record<string, any> = Record<string, any>> {
	/** `uses` key → node function or class. */
	registry: NodeRegistry | Map<string, NodeImplementation>
	/** Blueprint id → blueprint. Jobs name their blueprint by this id. */
	blueprints: Record<string, WorkflowBlueprint>
	/** Passed to every node as `dependencies` (with `logger` and `adapter` added). */
	dependencies?: TDependencies | undefined
	/** Default: console, prefixed `[flowcraft-rabbitmq]`, debug silent. */
	logger?: ILogger | undefined
	/** Replaces the built-in property-path evaluator for conditions and transforms. */
	evaluator?: IEvaluator | undefined
	middleware?: Middleware[] | undefined
	/** Receives node events (and worker events when no adapter-level `eventBus` is given). */
	eventBus?: IEventBus | undefined
}

// ───────────────────────────────────────────────────────────────── adapter options

/** TLS options as Node's `tls.connect` takes them (PEM as strings or Buffers). */
export interface TlsOptions {
	/** CA certificates to trust, beside the system's and `NODE_EXTRA_CA_CERTS`. */
	ca?: string | Buffer | Array<string | Buffer> | undefined
	/** Client certificate chain, for servers that ask for one. */
	cert?: string | Buffer | Array<string | Buffer> | undefined
	/** The client certificate's private key. */
	key?: string | Buffer | undefined
	/** The name to verify (and send as SNI) when it is not the host connected to. */
	servername?: string | undefined
	/** `false` turns certificate verification off (a warning is logged). Default `true`. */
	rejectUnauthorized?: boolean | undefined
}

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
	amqpConnection: AmqpConnectionLike | string | readonly string[]
	/**
	 * Credentials (and vhost) for an amqplib `amqpConnection`. A list of URLs as
	 * `amqpConnection` names a cluster's nodes: the worker connects to any and, on losing
	 * it, reconnects to another.
	 */
	amqpUrl?: string | undefined
	/**
	 * TLS for an `amqps://` broker, in Node's `tls` option forms: the CA to trust (beside
	 * the system's and `NODE_EXTRA_CA_CERTS`), a client certificate and key, the name to
	 * verify. Needed when `amqpConnection` is an amqplib connection, which keeps none of
	 * its socket options; an `amqps://` URL may instead carry RabbitMQ's `cacertfile`,
	 * `certfile`, `keyfile`, `verify` and `server_name_indication` parameters.
	 */
	amqpTls?: TlsOptions | undefined
	/** A `pg.Client`, `pg.Pool`, `postgres://` URL or pg config object. */
	pgClient: PgClientInput
	/**
	 * A `RedisCoordinationStore` of this package (used natively), or any object
	 * implementing Flowcraft's `ICoordinationStore` (called back from the core). It
	 * holds the worker's delivery counters and reconcile's node locks; fan-in joins
	 * live in the run's status row, committed with each predecessor's output.
	 */
	coordinationStore: RedisCoordinationStore | ICoordinationStore
	/**
	 * Durable queue to consume. Default `flowcraft-jobs` (the CLI's default too); refused
	 * messages go to `<queueName>.dead`. At most 250 bytes, not starting with `amq.`
	 * (ERR_INVALID_ARGUMENT from the constructor).
	 */
	queueName?: string | undefined
	/**
	 * Unset (default): the job queue and `<queueName>.dead` are used as they exist (an
	 * operator's quorum queue too); missing ones are declared durable and classic, as the
	 * TypeScript adapter does. Set: missing queues are declared of this type, and an
	 * existing queue of another type is `ERR_QUEUE_MISMATCH`.
	 */
	queueType?: 'classic' | 'quorum' | undefined
	/** Extra arguments for both queues when they are declared (`{ 'x-max-length': 100000 }`), with `queueType`'s rule. */
	queueArguments?: Record<string, string | number | boolean> | undefined
	/** Default `flowcraft_contexts`. */
	contextTableName?: string | undefined
	/** Default `flowcraft_statuses`. */
	statusTableName?: string | undefined
	/** Jobs run at once by this worker. Default 64. */
	concurrency?: number | undefined
	/**
	 * How many times a job may be started and lose its worker (killed, or its
	 * connection lost) before it is dead-lettered as poison and its run fails.
	 * Counted in the run's status row (PostgreSQL). Redelivered jobs run at full
	 * concurrency; one whose node already started on an earlier redelivery runs
	 * alone, so only the culprit is counted further. Default 20.
	 */
	maxDeliveries?: number | undefined
	/** Timeouts, intervals and backoffs, in milliseconds; see {@link Timings}. */
	timings?: Timings | undefined
	/**
	 * Create what is missing of the tables, their columns, unique indexes and the status
	 * table's triggers at `start()` (and at the run API's first call). Default true. With
	 * `false` nothing is created or altered: a missing table fails with
	 * `ERR_TABLE_NOT_FOUND`, a missing column with `ERR_COLUMN_NOT_FOUND`, a missing unique
	 * index with `ERR_INDEX_NOT_FOUND` (`npx flowcraft-rabbitmq sql` prints the DDL).
	 */
	createTables?: boolean | undefined
	/**
	 * Work beside workers of the TypeScript adapter (1.4.x, Flowcraft's
	 * `BaseDistributedAdapter`) on the same queue and tables: during a rolling upgrade,
	 * and so that they can finish runs this worker advanced after a rollback. Each
	 * commit also writes the node's `_outputs.<id>` / `<id>` and the inputs its edges
	 * wrote (`_inputs.<id>`) into the context row, and join arrivals are counted in
	 * their coordination-store keys (`flowcraft:fanin:<runId>:<nodeId>`,
	 * `flowcraft:joinlock:<runId>:<nodeId>`), which then decide when a join fires.
	 * Costs a context-row write per job and a store call per join arrival. Turn it
	 * on for every worker of ours before mixing, and off once no old worker runs and
	 * no run started before remains running (README, "Upgrading from the TypeScript
	 * adapter"). Default false.
	 */
	typescriptCompat?: boolean | undefined
	/** Default time `stop()` waits for jobs in flight. Default 30000 ms. */
	stopTimeoutMs?: number | undefined
	/**
	 * How long `start()` keeps retrying a failure that may heal (a service refusing,
	 * dropping or not yet answering connections, e.g. still starting up), with backoff
	 * (0.5 s doubling to 5 s) and a warning per attempt, before it fails. What cannot
	 * heal (wrong credentials or vhost, a missing database, role or table, TLS, a bad
	 * option) fails at once. Default 30000 ms; 0 retries nothing. The same setting as
	 * `timings.startRetryMs` (give one, or the same value in both).
	 */
	startRetryMs?: number | undefined
	/**
	 * The public URL where {@link createWebhookHandler} is mounted: a `webhook` node's URL is
	 * `<webhookBaseUrl>/<run id>/<node id>`. Default `'http://localhost/webhooks'`.
	 */
	webhookBaseUrl?: string | undefined
	/**
	 * What happens to the process when `start()` fails for good (the failure is always
	 * logged):
	 * - left out (default): the process exits with status 1 if nothing handles the
	 *   promise `start()` returned (`adapter.start()` neither awaited nor given a
	 *   `.then` / `.catch` by the time it fails), so a worker that cannot start never
	 *   lingers while your own connections keep Node alive; a handled promise just rejects;
	 * - `true`: the process exits with status 1 even when the promise is handled;
	 * - `false`: never exits; an unhandled failure is only logged (never an unhandled rejection).
	 * A `stop()` called before the failure never exits the process.
	 */
	exitOnStartFailure?: boolean | undefined
	/**
	 * Default false. When true, `start()` installs SIGTERM and SIGINT listeners: the
	 * first signal calls `stop()` (jobs in flight drain), then the listeners are removed
	 * and the signal is raised again, so the process ends as it would have without them
	 * (unless another listener of that signal remains). A second signal while draining
	 * ends the process at once. `stop()` removes the listeners. See {@link stopOnSignals}.
	 */
	handleSignals?: boolean | undefined
	/** Receives worker events (`job:*`, ...); node events go to `runtimeOptions.eventBus` when set. */
	eventBus?: IEventBus | undefined
	runtimeOptions: RuntimeOptions<TDependencies>
}

// ───────────────────────────────────────────────────────────────── runs

/** A run's status: `running` until it ends `completed`, `failed` or `cancelled`; `awaiting` while stopped at a `wait` node. */
export type RunStatus = 'running' | 'completed' | 'failed' | 'cancelled' | 'awaiting'

/**
 * A node's state in {@link RunInfo.nodes}:
 * - `done`: its output is stored;
 * - `running`: its job is queued or running;
 * - `waiting`: a predecessor chose it, it waits for the others (an `'all'` join);
 * - `sleeping`: a `sleep` node until {@link RunNode.wakeUpAt};
 * - `awaiting`: a `wait` node holding the run until `resumeWithAction()`;
 * - `failed`: the node whose failure failed the run;
 * - `not_reached`: nothing led to it (yet).
 */
export type NodeState = 'done' | 'running' | 'waiting' | 'sleeping' | 'awaiting' | 'failed' | 'not_reached'

/** The payload of a completed run: its whole final context. */
export interface CompletedPayload<TContext extends Record<string, any> = Record<string, any>> {
	status: 'completed'
	context: TContext
	/** `context` as JSON text. */
	serializedContext: string
}

/** The status row's `status_data`, as `waitForRun()` resolves with it. */
export type RunResult<TContext extends Record<string, any> = Record<string, any>> =
	| { status: 'completed'; payload: CompletedPayload<TContext>; reason?: undefined }
	/** `reason`: the failed node and its own error, e.g. `Node 'x' failed: boom`. */
	| { status: 'failed'; reason: string; payload?: undefined }
	/** `reason`: what `cancelRun()` was given. */
	| { status: 'cancelled'; reason: string; payload?: undefined }
	| { status: 'awaiting'; payload?: undefined; reason?: undefined }

/** Also what a running run's status row holds. */
export type RunStatusData<TContext extends Record<string, any> = Record<string, any>> =
	| RunResult<TContext>
	| { status: 'running'; payload?: undefined; reason?: undefined }

export interface StartRunOptions {
	/** The new run's id. Default: `crypto.randomUUID()`. Starting an existing id starts nothing. */
	runId?: string | undefined
	/** Starting twice with one key starts one run; the second call gets the first run's id. */
	idempotencyKey?: string | undefined
}

export interface StartRunResult {
	/** The run's id (the existing run's, when `created` is false). */
	runId: string
	/** False when the run id or idempotency key was already used: no new run was started. */
	created: boolean
}

export interface WaitForRunOptions {
	/** Milliseconds to wait before rejecting with `ERR_TIMEOUT`. Default 30000. */
	timeoutMs?: number | undefined
}

/** One node of {@link RunInfo}. */
export interface RunNode {
	id: string
	uses: string
	state: NodeState
	/** A `sleeping` node's wake-up time (ISO 8601, UTC); absent otherwise. */
	wakeUpAt?: string | undefined
	/** The child run (`<run id>/<node id>`) a `running` subflow node waits for; absent otherwise. */
	childRunId?: string | undefined
}

/** What `getRun()` reports about a run. */
export interface RunInfo<TContext extends Record<string, any> = Record<string, any>> {
	runId: string
	/** `null` for a run that has a context row but no status row yet (started by hand, not picked up yet). */
	status: RunStatus | null
	blueprintId?: string | undefined
	/** When the status row last changed. */
	updatedAt?: Date | undefined
	/** The status row's `status_data`. */
	statusData?: RunStatusData<TContext> | undefined
	/** `statusData.reason` of a failed or cancelled run. */
	reason?: string | undefined
	/** The run's context now (`{}` when it has no context row). */
	context: TContext
	/** Every node of the blueprint with its state; empty when the adapter does not know the blueprint. */
	nodes: RunNode[]
}

/** One line of `listRuns()`. */
export interface RunSummary {
	runId: string
	status: RunStatus | null
	blueprintId?: string | undefined
	/** Seconds since the status row last changed. */
	idleSeconds?: number | undefined
	/** Nodes with a stored output. */
	doneNodes: number
	/** Why a failed or cancelled run ended. */
	reason?: string | undefined
}

export interface ListRunsOptions {
	/** Only runs with this status. */
	status?: RunStatus | undefined
	/** At most this many (1 to 100000). Default 20. */
	limit?: number | undefined
}

export interface ReconcileOptions {
	/**
	 * A node queued longer than this with no change to the run is enqueued again (its
	 * message may be lost). Default 30000 ms. Nodes ready but never queued are enqueued
	 * whatever it is.
	 */
	staleAfterMs?: number | undefined
}

/** Counters of this process's worker since `start()` (all zero before). */
export interface AdapterStats {
	/** Jobs acknowledged, including those whose node failed (which fails the run). */
	processed: number
	/** Messages that could not be processed (not a job, unknown blueprint or node, version mismatch, poison). */
	failed: number
	/** Of those, the messages moved to the dead-letter queue `<queueName>.dead`. */
	deadLettered: number
	/** Jobs retried in place after a service (PostgreSQL, Redis, RabbitMQ) error. */
	retried: number
	/**
	 * Jobs that ran without a message of their own: a successor the worker went on with
	 * right after its predecessor's commit, under that job's delivery (see docs/architecture.md).
	 */
	continued: number
	/** Jobs running now. */
	inFlight: number
	/** Median job time of recent jobs, in ms. */
	p50Ms: number
	/** 99th percentile job time of recent jobs, in ms. */
	p99Ms: number
}

/**
 * Every timeout, interval and backoff of the worker and the run API, in milliseconds
 * (pgKeepaliveRetries is a count). Each is optional; the defaults make a dead link to
 * any service noticed and replaced within 30 s. See docs/operations.md.
 */
export interface Timings {
	/** AMQP heartbeat (whole seconds; a `?heartbeat=` in the URL wins). Default 10000. */
	amqpHeartbeatMs?: number | undefined
	/** RabbitMQ connect, handshake and queue declarations. Default 10000. */
	amqpConnectTimeoutMs?: number | undefined
	/** Broker confirms of published jobs and dead letters. Default 15000. */
	publishConfirmTimeoutMs?: number | undefined
	/** How long startRun / reconcile retry a publish through a broker moment (a lost cluster node, a quorum leader election). Default 30000. */
	publishPatienceMs?: number | undefined
	/** The whole PostgreSQL connect (TCP, TLS, startup, auth). Default 10000. */
	pgConnectTimeoutMs?: number | undefined
	/** One PostgreSQL statement; past it the connection is closed and replaced. Default 20000. */
	pgQueryTimeoutMs?: number | undefined
	/** TCP keepalive idle time on PostgreSQL sockets. Default 5000. */
	pgKeepaliveIdleMs?: number | undefined
	/** Between keepalive probes. Default 2000. */
	pgKeepaliveIntervalMs?: number | undefined
	/** Unanswered probes before the connection is dropped. Default 3. */
	pgKeepaliveRetries?: number | undefined
	/** TCP_USER_TIMEOUT on PostgreSQL sockets. Default 15000. */
	pgTcpUserTimeoutMs?: number | undefined
	/** Ping of the LISTEN connection (waitForRun, cancellations). Default 10000. */
	pgListenPingMs?: number | undefined
	/** Redis connect. Default 5000. */
	redisConnectTimeoutMs?: number | undefined
	/** One Redis command. Default 10000. */
	redisResponseTimeoutMs?: number | undefined
	/** In-place retry of a job after a service error: first delay. Default 200. */
	jobRetryMinMs?: number | undefined
	/** ... and the cap of its doubling. Default 5000. */
	jobRetryMaxMs?: number | undefined
	/** Retry of a commit once the node ran (for as long as the job's broker connection lives): first delay. Default 100. */
	commitRetryMinMs?: number | undefined
	/** ... and its cap. Default 2000. */
	commitRetryMaxMs?: number | undefined
	/** Reconnects to RabbitMQ and of the LISTEN connection: first delay. Default 200. */
	reconnectMinMs?: number | undefined
	/** ... and its cap. Default 10000. */
	reconnectMaxMs?: number | undefined
	/** After stop()'s timeout, time for aborted nodes to hand their jobs back. Default 2000. */
	stopGraceMs?: number | undefined
	/** A service call stuck this long with jobs in flight is logged, naming the service. Default 10000. */
	stallWarningMs?: number | undefined
	/** How often the runs with nodes running here are marked alive. Default 10000. */
	runHeartbeatMs?: number | undefined
	/** Delay before requeueing a message the dead-letter queue refused. Default 1000. */
	deadLetterRetryMs?: number | undefined
	/** How often each worker enqueues the `sleep` nodes whose wake-up time has come (a sleep ends up to this late). Default 1000. */
	sleepSweepMs?: number | undefined
	/** A woken `sleep` node whose job has not completed it after this long is enqueued again. Default 60000. */
	sleepLeaseMs?: number | undefined
	/** How long `start()` retries a failure that may heal (0.5 s doubling to 5 s between attempts); 0 retries nothing. Same as the top-level `startRetryMs`. Default 30000. */
	startRetryMs?: number | undefined
	/** Most PostgreSQL connections one process opens to a server (besides its LISTEN connection); a whole number from 1 to 100. Default 8. */
	pgPoolSize?: number | undefined
}

/** A message of the dead-letter queue `<queueName>.dead`. */
export interface DeadLetter {
	/** The message body as text. */
	body: string
	/** The body parsed, when it is a JSON object (a job: `{ runId, blueprintId, nodeId }`). */
	job?: Record<string, any> | undefined
	/** Why it was dead-lettered. */
	reason: string
	/** When it was dead-lettered. */
	deadAt?: Date | undefined
}

export interface DeadLetterOptions {
	/** At most this many (1 to 100000). Default 100. */
	limit?: number | undefined
}

// ───────────────────────────────────────────────────────────────── adapter

/**
 * A distributed Flowcraft worker: consumes jobs from a durable RabbitMQ queue, keeps
 * each run's state and joins in PostgreSQL, and its delivery counters and node
 * locks in the coordination store. Any number of
 * workers, in any number of processes, may consume the same queue.
 *
 * The constructor validates everything (options, table names, blueprints, AMQP
 * credentials) and throws an {@link AdapterError}; it connects to nothing.
 *
 * The run API (`startRun`, `waitForRun`, `getRun`, ...) works without `start()`: a
 * process that only starts and awaits runs needs no worker, and exits by itself.
 */
export declare class RabbitMqAdapter<TDependencies extends Record<string, any> = Record<string, any>> {
	constructor(options: RabbitMqAdapterOptions<TDependencies>)
	/** The queue this worker consumes. */
	readonly queueName: string
	/** The context table. */
	readonly contextTableName: string
	/** The status table. */
	readonly statusTableName: string
	/**
	 * Connects, checks the coordination store (one read, so a wrong Redis fails here),
	 * creates the tables (unless `createTables: false`) and starts consuming. Resolves
	 * once consuming. A failure that may heal is retried for `startRetryMs`; a failure is
	 * always logged through the logger. When nothing handles the returned promise, a
	 * failure ends the process with status 1 (see `exitOnStartFailure`); it never
	 * becomes an unhandled rejection.
	 *
	 * @throws {AdapterError} `ERR_AMQP_CONNECT`, `ERR_PG_CONNECT`, `ERR_REDIS_CONNECT`
	 * (naming Redis, the coordination store), `ERR_TLS`, `ERR_TABLE_NOT_FOUND`, ...
	 */
	start(): Promise<void>
	/**
	 * Stops consuming, waits up to `timeoutMs` (default `stopTimeoutMs`) for jobs in
	 * flight, then aborts the `signal` of nodes still running, closes everything (the
	 * worker, the run API's connection, the `handleSignals` listeners) and lets the
	 * process exit. Idempotent. The run API rejects with `ERR_WORKER_STATE` afterwards.
	 */
	stop(options?: { timeoutMs?: number | undefined }): Promise<void>
	/** The same as `stop()`; meant for processes that only use the run API. */
	close(): Promise<void>

	/**
	 * Starts a run of `blueprintId`: writes its context row (`initialContext` plus
	 * `blueprintId` and `blueprintVersion`), marks it `running` and publishes the jobs
	 * of its start nodes, all or nothing. A start node's input is the context key
	 * `_inputs.<nodeId>` (or its `inputs` mapping).
	 *
	 * @throws {AdapterError} `ERR_UNKNOWN_BLUEPRINT` for a blueprint not in
	 * `runtimeOptions.blueprints`; `ERR_NOT_SERIALIZABLE` for an `initialContext` that
	 * JSON cannot hold; `ERR_INVALID_ARGUMENT`; connection errors.
	 */
	startRun<TContext extends Record<string, any> = Record<string, any>>(
		blueprintId: string,
		initialContext?: TContext,
		options?: StartRunOptions,
	): Promise<StartRunResult>
	/**
	 * Resolves with the run's `status_data` once it is `completed`, `failed`,
	 * `cancelled` or `awaiting` (at once if it already is), whoever wrote that status:
	 * woken by PostgreSQL `LISTEN/NOTIFY` (the worker's own statements, and the status
	 * table's trigger for any other writer); without that trigger (`createTables: false`
	 * on tables made otherwise) it reads the status again every second.
	 *
	 * A run id that does not exist rejects at once with `ERR_RUN_NOT_FOUND`, not after
	 * `timeoutMs`: a `startRun()` of this adapter for that id still in flight is waited
	 * for first, and the run is looked for again for up to 1 s (a run another process is
	 * starting at that moment). A run started over the wire protocol exists once its
	 * context row does.
	 *
	 * @throws {AdapterError} `ERR_TIMEOUT` after `timeoutMs` (the run goes on);
	 * `ERR_RUN_NOT_FOUND` for a run that does not exist.
	 */
	waitForRun<TContext extends Record<string, any> = Record<string, any>>(
		runId: string,
		options?: WaitForRunOptions,
	): Promise<RunResult<TContext>>
	/** The run's status, context and the state of each node; `undefined` when there is no such run. */
	getRun<TContext extends Record<string, any> = Record<string, any>>(
		runId: string,
	): Promise<RunInfo<TContext> | undefined>
	/** The most recently updated runs, newest first. */
	listRuns(options?: ListRunsOptions): Promise<RunSummary[]>
	/**
	 * Enqueues what a running run needs to move on (nodes whose message may be lost,
	 * nodes ready but never queued); a node lock keeps concurrent reconcilers from
	 * enqueueing a node twice. Resolves with the node ids enqueued: empty for a healthy,
	 * finished or awaiting run.
	 *
	 * @throws {AdapterError} `ERR_INVALID_ARGUMENT` for a run that does not exist or whose blueprint the adapter does not know.
	 */
	reconcile(runId: string, options?: ReconcileOptions): Promise<Set<string>>
	/**
	 * Resumes a run stopped at a `wait` node: writes `_resume.action` and
	 * `_resume.output`, completes the awaiting nodes with `output`, follows the edges
	 * for `action` (or those without an action) and enqueues what follows. Resolves
	 * with the node ids enqueued.
	 *
	 * @throws {AdapterError} `ERR_WORKER_STATE` when the run is not `awaiting`.
	 */
	resumeWithAction(runId: string, action: string, output?: unknown): Promise<Set<string>>
	/**
	 * Cancels a run: it ends `cancelled` with `reason` (default `'cancelled by user'`),
	 * no new node of it starts anywhere, and the `signal` of its nodes running in any
	 * worker is aborted (`reason.code` `ERR_RUN_CANCELLED`); nothing they return is
	 * committed. `true` when this call cancelled it; `false` when it had already ended
	 * or does not exist.
	 */
	cancelRun(runId: string, reason?: string): Promise<boolean>
	/**
	 * Flowcraft's adapter hook for its `webhook` node (the built-in calls it):
	 * `{ url: '<webhookBaseUrl>/<run id>/<node id>', event: 'webhook:<run id>:<node id>' }`.
	 */
	registerWebhookEndpoint(runId: string, nodeId: string): Promise<WebhookEndpoint>
	/**
	 * Delivers a call to a run's `webhook` node: the run, awaiting at the `wait` node after
	 * it, resumes with action `'webhook'` and `{ ...request, webhook: nodeId, event }` as that
	 * node's output. Once: a second delivery changes nothing (`duplicate`). 404: no such run or
	 * webhook node; 409: the run is not awaiting a call (yet: the sender should retry).
	 */
	deliverWebhook(runId: string, nodeId: string, request?: WebhookRequest): Promise<WebhookDelivery>
	/** Counters of this process's worker (zeros before `start()`). */
	stats(): AdapterStats
	/** Messages of the dead-letter queue `<queueName>.dead`, oldest first; they stay there. */
	deadLetters(options?: DeadLetterOptions): Promise<DeadLetter[]>
	/** Moves dead letters back to the job queue, oldest first; resolves with how many moved. */
	requeueDeadLetters(options?: DeadLetterOptions): Promise<number>
}

// ───────────────────────────────────────────────────────────────── operations

export interface RabbitMqReconcilerOptions {
	/** The adapter whose queue and tables are reconciled (it need not be started). */
	adapter: RabbitMqAdapter<any>
	/** Accepted for compatibility with the TypeScript adapter; the adapter's own connection is used. */
	pgClient?: unknown | undefined
	/** Accepted for compatibility; when given it must be the adapter's `statusTableName`. */
	statusTableName?: string | undefined
	/** A `running` run with no change for this long is stalled. Default 300. */
	stalledThresholdSeconds?: number | undefined
	/** Default: the adapter's logger. */
	logger?: ILogger | undefined
	/** Stalled runs handled per `run()`, oldest first. Default 100. */
	limit?: number | undefined
	/** Called after each stalled run: what was enqueued, or the error. */
	onProgress?(progress: ReconcileProgress): void
}

export interface ReconcileProgress {
	runId: string
	/** 1-based position of this run in the pass. */
	index: number
	total: number
	/** What was enqueued (absent when reconciling failed). */
	enqueued?: Set<string> | undefined
	error?: AdapterError | undefined
}

export interface ReconciliationStats {
	/** Stalled runs found. */
	stalledRuns: number
	/** Stalled runs that had something enqueued. */
	reconciledRuns: number
	/** Stalled runs whose reconciliation failed (each logged). */
	failedRuns: number
}

export interface RabbitMqReconciler {
	/** One pass over the stalled runs. Call it periodically (cron, `setInterval`). */
	run(): Promise<ReconciliationStats>
}

/**
 * Finds runs that are `running` but had no change for `stalledThresholdSeconds`
 * (a run `awaiting` a human is never stalled) and reconciles each with that threshold.
 *
 * @throws {AdapterError} `ERR_INVALID_ARGUMENT` for bad options, or a `statusTableName` that is not the adapter's.
 */
export declare function createRabbitMqReconciler(options: RabbitMqReconcilerOptions): RabbitMqReconciler

export interface StopOnSignalsOptions {
	/** Default `['SIGTERM', 'SIGINT']`. */
	signals?: readonly string[] | undefined
	/** Passed to `adapter.stop({ timeoutMs })`; default the adapter's `stopTimeoutMs`. */
	timeoutMs?: number | undefined
	/** Default: the adapter's logger. */
	logger?: ILogger | undefined
}

/** A `webhook` node's endpoint, its output. */
export interface WebhookEndpoint {
	url: string
	event: string
}

/** A call delivered to a `webhook` node (the request handler passes these). */
export interface WebhookRequest {
	/** The parsed JSON body, or the body as text. */
	body?: unknown
	/** Request headers (the handler leaves out `authorization` and `cookie`). */
	headers?: Record<string, string | string[] | undefined>
	method?: string
	[key: string]: unknown
}

/** What {@link RabbitMqAdapter.deliverWebhook} did; `status` is the HTTP status the handler answers. */
export interface WebhookDelivery {
	status: 200 | 202 | 404 | 409
	delivered: boolean
	duplicate?: true
	reason?: string
}

/** Options of {@link createWebhookHandler}. */
export interface WebhookHandlerOptions {
	/** Where the handler is mounted (the path of `webhookBaseUrl`). Default `'/webhooks'`. */
	path?: string | undefined
	/** Larger bodies are refused with 413. Default 1 MiB. */
	maxBodyBytes?: number | undefined
}

/**
 * A request handler for Node's `http` (or Express middleware): `POST <path>/<run id>/<node id>`
 * delivers the call to that webhook node ({@link RabbitMqAdapter.deliverWebhook}) and answers
 * with its status (202 delivered, 200 duplicate, 404, 409, 405 not POST, 413 too large, 400 bad
 * JSON) and a JSON body; other URLs go to `next()` when given, else 404.
 */
export declare function createWebhookHandler(
	adapter: RabbitMqAdapter,
	options?: WebhookHandlerOptions,
): (
	req: import('node:http').IncomingMessage,
	res: import('node:http').ServerResponse,
	next?: () => void,
) => Promise<void>

/**
 * Graceful shutdown: on the first of `signals`, `await adapter.stop({ timeoutMs })`
 * (jobs in flight drain), remove the listeners, then raise the signal again so the
 * process ends as it would have without them, unless another listener of that signal
 * remains. A second signal while stopping ends the process at once. Returns a
 * function that removes the listeners. (`handleSignals: true` does this at `start()`.)
 */
export declare function stopOnSignals(
	adapter: { stop(options?: { timeoutMs?: number | undefined }): Promise<void> },
	options?: StopOnSignalsOptions,
): () => void
