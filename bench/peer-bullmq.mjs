/**
 * The Flowcraft-on-BullMQ peer of the benchmark: what a user would run with Flowcraft's own
 * BullMQ adapter (`@flowcraft/bullmq-adapter` 1.7.1, everything in Redis).
 *
 * Written here from that adapter's documented behaviour (its README, the docs guide and a
 * reading of its sources; no code copied). Flowcraft's own `BaseDistributedAdapter` does all
 * the orchestration; the transport does what the adapter does:
 *   - queue: one BullMQ `Queue` for enqueueing (`add('executeNode', job, { jobId: '<runId>_<nodeId>' })`,
 *     default job options `removeOnComplete: { age: 7 days }`, `removeOnFail: { age: 15 days }`)
 *     and one BullMQ `Worker` on the same queue, both on the one shared ioredis connection
 *     (`maxRetriesPerRequest: null`, as the docs guide creates it; BullMQ duplicates it for
 *     the worker's blocking connection). The processor hands `{ ...job.data, isLastAttempt,
 *     attempt }` to flowcraft's handler; a throw fails the BullMQ job. Retries in-process
 *     (the adapter's default `retryMode`), so no BullMQ attempts/backoff are set;
 *   - context: `BullRedisContext`, the run's state as one Redis hash `workflow:state:<runId>`,
 *     values JSON-encoded per field: HGET / HSET / HEXISTS / HDEL / HGETALL, `patch` as one
 *     MULTI of HSET/HDEL (one command per call otherwise);
 *   - coordination: `BullRedisStore`, Flowcraft's ICoordinationStore on the same connection,
 *     `increment` as a pipeline of INCR + EXPIRE (one round trip), SET NX EX for locks;
 *   - final result: `SET workflow:status:<runId> <json> EX 86400`, then `EXPIRE` of the state
 *     hash to 86400 s (the adapter's default `stateTtlSeconds`).
 *
 * Two variants, chosen by PEER_VARIANT:
 *   default   Worker concurrency 5   (what the adapter hard-codes)
 *   tuned     Worker concurrency 64  (what an expert would set, matching the in-flight runs)
 *
 * Deviations, needed by the harness (bench/run.js), and nothing else:
 *   - every key starts with REDIS_PREFIX (the phase's own prefix, so a phase is isolated and
 *     cleaned up by a SCAN): `<prefix>workflow:state:…`, `<prefix>workflow:status:…`,
 *     coordination keys `<prefix><key>`, and BullMQ's own keys under BullMQ's `prefix` option
 *     `<prefix>bull` (BullMQ refuses an ioredis `keyPrefix`). The adapter uses the fixed names
 *     and BullMQ's default prefix `bull`; the commands are the same.
 *   - completion: after storing the final result as above, one `PUBLISH DONE_CHANNEL
 *     '<runId> <status> <epoch ms>'`, so the bench learns that a run finished and when, as it
 *     does from the PostgreSQL status row's NOTIFY for the other systems. (Writing a
 *     PostgreSQL status row instead would add a PostgreSQL commit per run to this peer's
 *     whole-stack CPU and latency, which the real adapter does not have.) The bench's
 *     safety-net poll reads the `workflow:status:` keys themselves.
 *
 * Run as a process (by bench/run.js), configured by the environment:
 *   QUEUE, REDIS_PREFIX, DONE_CHANNEL, REDIS_URL, PEER_VARIANT
 * It prints `WORKER_READY` once the BullMQ worker is connected; on SIGTERM it closes the
 * worker (which waits for the jobs in hand), the queue and its connection, and exits.
 */
import { createRequire } from 'node:module'
import { Queue, Worker } from 'bullmq'
import { BaseDistributedAdapter } from 'flowcraft'
import IORedis from 'ioredis'
import { peerLog, quietLogger, runIfMain, stopOnSigterm } from './peer-process.mjs'

const require = createRequire(import.meta.url)
const { registry, blueprints } = require('./workflows.js')

/** The adapter's default TTL of a run's state and status keys (24 h). */
export const STATE_TTL_SECONDS = 86400
export const CONCURRENCY = { default: 5, tuned: 64 }

/** A field's value as stored: JSON text (`undefined` has no JSON; stored as null). */
const encode = (value) => JSON.stringify(value === undefined ? null : value)
/** Whatever is stored comes back parsed; a missing (or empty) field reads as undefined. */
const decode = (text) => (text ? JSON.parse(text) : undefined)

/** The run's context as one Redis hash; one command per call, `patch` one MULTI. */
export class BullRedisContext {
	type = 'async'

	constructor(redis, keyPrefix, runId) {
		this.redis = redis
		this.key = `${keyPrefix}workflow:state:${runId}`
	}

	async get(key) {
		return decode(await this.redis.hget(this.key, key))
	}

	async set(key, value) {
		await this.redis.hset(this.key, key, encode(value))
	}

	async has(key) {
		return (await this.redis.hexists(this.key, key)) === 1
	}

	async delete(key) {
		return (await this.redis.hdel(this.key, key)) > 0
	}

	async toJSON() {
		const fields = await this.redis.hgetall(this.key)
		const out = {}
		for (const name of Object.keys(fields)) out[name] = JSON.parse(fields[name])
		return out
	}

	/** Every operation in order, in one MULTI … EXEC. */
	async patch(operations) {
		if (!operations.length) return
		const tx = this.redis.multi()
		for (const { op, key, value } of operations) {
			if (op === 'set') tx.hset(this.key, key, encode(value))
			else if (op === 'delete') tx.hdel(this.key, key)
		}
		await tx.exec()
	}
}

/** Flowcraft's ICoordinationStore on ioredis: INCR and EXPIRE pipelined for joins. */
export class BullRedisStore {
	constructor(redis, keyPrefix = '') {
		this.redis = redis
		this.prefix = keyPrefix
	}

	async increment(key, ttlSeconds) {
		const replies = await this.redis
			.pipeline()
			.incr(this.prefix + key)
			.expire(this.prefix + key, ttlSeconds)
			.exec()
		if (!replies) return 0
		const [err, n] = replies[0]
		if (err) throw err
		return n
	}

	async setIfNotExist(key, value, ttlSeconds) {
		return (await this.redis.set(this.prefix + key, value, 'EX', ttlSeconds, 'NX')) === 'OK'
	}

	async extendTTL(key, ttlSeconds) {
		return (await this.redis.expire(this.prefix + key, ttlSeconds)) === 1
	}

	async delete(key) {
		await this.redis.del(this.prefix + key)
	}

	async get(key) {
		return (await this.redis.get(this.prefix + key)) ?? undefined
	}
}

/** BaseDistributedAdapter + the BullMQ / Redis transport above. */
export class BullPeerAdapter extends BaseDistributedAdapter {
	constructor({ redis, keyPrefix = '', queueName, concurrency, doneChannel, runtimeOptions }) {
		super({ runtimeOptions, coordinationStore: new BullRedisStore(redis, keyPrefix) })
		this.redis = redis
		this.keyPrefix = keyPrefix
		this.queueName = queueName
		this.concurrency = concurrency
		this.doneChannel = doneChannel || null
		this.bullPrefix = `${keyPrefix}bull`
		this.queue = new Queue(queueName, {
			connection: redis,
			prefix: this.bullPrefix,
			defaultJobOptions: {
				removeOnComplete: { age: 7 * 24 * 3600 },
				removeOnFail: { age: 15 * 24 * 3600 },
			},
		})
		this.worker = null
	}

	createContext(runId) {
		return new BullRedisContext(this.redis, this.keyPrefix, runId)
	}

	/** Retries run inside the worker (the adapter's default retryMode 'in-process'). */
	shouldRetryInProcess() {
		return true
	}

	getQueueRetryOptions() {
		return undefined
	}

	processJobs(handler) {
		this.worker = new Worker(
			this.queueName,
			async (job) => {
				this.logger.info(`[BullPeer] job ${job.id} (${job.name})`)
				// in-process retries: every delivery is the node's last queue attempt
				await handler({ ...job.data, isLastAttempt: true, attempt: (job.attemptsMade || 0) + 1 })
			},
			{ connection: this.redis, prefix: this.bullPrefix, concurrency: this.concurrency },
		)
		this.worker.on('error', (e) => this.logger.error(`[BullPeer] worker error: ${e?.message}`))
		this.worker.on('failed', (job, e) =>
			this.logger.error(`[BullPeer] job ${job?.data?.runId}/${job?.data?.nodeId} failed: ${e?.message}`),
		)
	}

	async enqueueJob(job) {
		// as the adapter: look the node up for queue retry options (none in 'in-process' mode)
		const node = this.runtime.options.blueprints?.[job.blueprintId]?.nodes.find((n) => n.id === job.nodeId)
		const retry = node ? this.getQueueRetryOptions(node) : undefined
		await this.queue.add('executeNode', job, { jobId: `${job.runId}_${job.nodeId}`, ...retry })
	}

	async publishFinalResult(runId, result) {
		await this.redis.set(`${this.keyPrefix}workflow:status:${runId}`, JSON.stringify(result), 'EX', STATE_TTL_SECONDS)
		await this.redis.expire(`${this.keyPrefix}workflow:state:${runId}`, STATE_TTL_SECONDS)
		// harness only (see the header): tell the bench this run is final, and when
		if (this.doneChannel) {
			const at = performance.timeOrigin + performance.now()
			await this.redis.publish(this.doneChannel, `${runId} ${result.status} ${at}`)
		}
	}

	async registerWebhookEndpoint() {
		throw new Error('webhooks are not part of the benchmark peer')
	}

	/** Resolves once the worker's connections are up. */
	async ready() {
		await this.queue.waitUntilReady()
		await this.worker.waitUntilReady()
	}

	/** Closes the worker (waiting for the jobs in hand), then the queue. */
	async close() {
		try {
			await this.worker?.close()
		} catch {}
		try {
			await this.queue.close()
		} catch {}
	}
}

const log = peerLog('peer-bullmq')

async function main() {
	const env = process.env
	const variant = env.PEER_VARIANT || 'default'
	if (!(variant in CONCURRENCY)) throw new Error(`PEER_VARIANT must be default or tuned; got ${variant}`)
	// one connection for everything, as the docs guide shows
	const redis = new IORedis(env.REDIS_URL, { maxRetriesPerRequest: null })
	redis.on('error', (e) => log('redis error', e.message))

	const adapter = new BullPeerAdapter({
		redis,
		keyPrefix: env.REDIS_PREFIX || '',
		queueName: env.QUEUE,
		concurrency: CONCURRENCY[variant],
		doneChannel: env.DONE_CHANNEL,
		runtimeOptions: { registry, blueprints: blueprints(), logger: quietLogger(log) },
	})

	stopOnSigterm(() => adapter.close(), [() => redis.quit()])

	adapter.start()
	await adapter.ready()
	process.stdout.write('WORKER_READY\n')
}

runIfMain(import.meta.url, main, log)
