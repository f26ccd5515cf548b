/**
 * The JS peer of the benchmark: what a user would run instead of our adapter.
 *
 * Flowcraft's own `BaseDistributedAdapter` (all orchestration logic is flowcraft's)
 * with a small transport written here from the documented behaviour of the
 * TypeScript RabbitMQ adapter:
 *   - queue: an amqplib channel consuming the durable queue with `prefetch(1)`,
 *     persistent `sendToQueue` for successor jobs, `ack` after the handler;
 *   - context: `PeerPostgresContext`, one `pg` query per call
 *     (get / set / has / delete / toJSON / patch), on the single documented `pg.Client`;
 *   - coordination: `PeerRedisStore` on ioredis, `INCR` then `EXPIRE` for 'all' joins;
 *   - final result: an upsert of the status row (same shape as our adapter's:
 *     run_id, status, status_data, updated_at = now()).
 *
 * Two variants, chosen by PEER_VARIANT:
 *   documented   amqplib.connect(url)                       (as the README shows)
 *   tuned        amqplib.connect(url, { noDelay: true })    (Nagle off: no ~40 ms stall
 *                                                            between a publish and the ack)
 *
 * Run as a process (by bench/run.js), configured by the environment:
 *   QUEUE, CTX_TABLE, STATUS_TABLE, REDIS_PREFIX, POSTGRES_URL, REDIS_URL, RABBITMQ_URL,
 *   PEER_VARIANT, WORKFLOWS_MODULE (optional: a module with `{ registry, blueprints }`,
 *   `blueprints` an object or a function returning one; default ./workflows.js, the bench's)
 * It prints `WORKER_READY` once consuming; on SIGTERM it cancels the consumer, lets the
 * job in hand finish, closes its connections and exits.
 */
import { createRequire } from 'node:module'
import { BaseDistributedAdapter } from 'flowcraft'
import amqplib from 'amqplib'
import IORedis from 'ioredis'
import pg from 'pg'
import { peerLog, quietLogger, runIfMain, stopOnSigterm } from './peer-process.mjs'

const require = createRequire(import.meta.url)
const { registry, blueprints } = require(process.env.WORKFLOWS_MODULE || './workflows.js')

function quoteIdent(name) {
	if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`unsafe table name ${name}`)
	return `"${name}"`
}

/** JSON text for a jsonb parameter; `undefined` is stored as null (JSONB has no undefined). */
const toJsonb = (value) => JSON.stringify(value === undefined ? null : value)

/**
 * The run's state as one JSONB row; every method is exactly one query on the shared client.
 */
export class PeerPostgresContext {
	type = 'async'

	constructor(client, tableName, runId) {
		this.client = client
		this.table = quoteIdent(tableName)
		this.runId = runId
	}

	async get(key) {
		const { rows } = await this.client.query(
			`SELECT context_data ? $2 AS has, context_data -> $2 AS value FROM ${this.table} WHERE run_id = $1`,
			[this.runId, key],
		)
		return rows.length && rows[0].has ? rows[0].value : undefined
	}

	async set(key, value) {
		await this.client.query(
			`INSERT INTO ${this.table} AS t (run_id, context_data) VALUES ($1, jsonb_build_object($2::text, $3::jsonb))
			 ON CONFLICT (run_id) DO UPDATE SET context_data = COALESCE(t.context_data, '{}'::jsonb) || EXCLUDED.context_data`,
			[this.runId, key, toJsonb(value)],
		)
	}

	async has(key) {
		const { rows } = await this.client.query(`SELECT context_data ? $2 AS has FROM ${this.table} WHERE run_id = $1`, [
			this.runId,
			key,
		])
		return rows.length > 0 && rows[0].has === true
	}

	async delete(key) {
		const res = await this.client.query(
			`UPDATE ${this.table} SET context_data = context_data - $2::text WHERE run_id = $1 AND context_data ? $2`,
			[this.runId, key],
		)
		return res.rowCount > 0
	}

	async toJSON() {
		const { rows } = await this.client.query(`SELECT context_data FROM ${this.table} WHERE run_id = $1`, [this.runId])
		return rows[0]?.context_data ?? {}
	}

	/** Last operation on a key wins; applied as (row - deleted keys) || set keys, one statement. */
	async patch(operations) {
		const last = new Map()
		for (const op of operations) last.set(op.key, op)
		const sets = {}
		const deletes = []
		for (const [key, op] of last) {
			if (op.op === 'set') sets[key] = op.value === undefined ? null : op.value
			else if (op.op === 'delete') deletes.push(key)
		}
		await this.client.query(
			`INSERT INTO ${this.table} AS t (run_id, context_data) VALUES ($1, $2::jsonb)
			 ON CONFLICT (run_id) DO UPDATE SET context_data = (COALESCE(t.context_data, '{}'::jsonb) - $3::text[]) || EXCLUDED.context_data`,
			[this.runId, JSON.stringify(sets), deletes],
		)
	}
}

/** Flowcraft's ICoordinationStore on ioredis: one command per call, INCR + EXPIRE for joins. */
export class PeerRedisStore {
	constructor(redis) {
		this.redis = redis
	}

	async increment(key, ttlSeconds) {
		const n = await this.redis.incr(key)
		await this.redis.expire(key, ttlSeconds)
		return n
	}

	async setIfNotExist(key, value, ttlSeconds) {
		return (await this.redis.set(key, value, 'EX', ttlSeconds, 'NX')) === 'OK'
	}

	async extendTTL(key, ttlSeconds) {
		return (await this.redis.expire(key, ttlSeconds)) === 1
	}

	async delete(key) {
		await this.redis.del(key)
	}

	async get(key) {
		return (await this.redis.get(key)) ?? undefined
	}
}

/** BaseDistributedAdapter + the amqplib / pg / ioredis transport above. */
export class PeerAdapter extends BaseDistributedAdapter {
	constructor({
		amqpConnection,
		pgClient,
		coordinationStore,
		queueName,
		contextTableName,
		statusTableName,
		runtimeOptions,
	}) {
		super({ runtimeOptions, coordinationStore })
		this.amqpConnection = amqpConnection
		this.pgClient = pgClient
		this.queueName = queueName
		this.contextTableName = contextTableName
		this.statusTable = quoteIdent(statusTableName)
		this.channel = null
		this.consumerTag = null
		this.inFlight = null
		/** Resolves once consuming (start() itself returns nothing, as flowcraft's does). */
		this.ready = new Promise((resolve, reject) => {
			this.readyResolve = resolve
			this.readyReject = reject
		})
	}

	createContext(runId) {
		return new PeerPostgresContext(this.pgClient, this.contextTableName, runId)
	}

	processJobs(handler) {
		const setup = async () => {
			const channel = await this.amqpConnection.createChannel()
			this.channel = channel
			await channel.assertQueue(this.queueName, { durable: true })
			await channel.prefetch(1)
			const { consumerTag } = await channel.consume(this.queueName, (msg) => {
				if (!msg) return
				this.inFlight = (async () => {
					let job
					try {
						job = JSON.parse(msg.content.toString('utf8'))
					} catch (e) {
						this.logger.error(`[Peer] invalid job: ${e.message}`)
						channel.nack(msg, false, false)
						return
					}
					try {
						await handler(job)
						channel.ack(msg)
					} catch (e) {
						this.logger.error(`[Peer] job ${job.runId}/${job.nodeId} failed: ${e?.message}`)
						channel.nack(msg, false, false)
					}
				})()
			})
			this.consumerTag = consumerTag
		}
		setup().then(this.readyResolve, this.readyReject)
	}

	async enqueueJob(job) {
		this.channel.sendToQueue(this.queueName, Buffer.from(JSON.stringify(job)), { persistent: true })
	}

	async publishFinalResult(runId, result) {
		await this.pgClient.query(
			`INSERT INTO ${this.statusTable} AS s (run_id, status, status_data, updated_at) VALUES ($1, $2, $3::jsonb, now())
			 ON CONFLICT (run_id) DO UPDATE SET status = EXCLUDED.status, status_data = EXCLUDED.status_data, updated_at = now()`,
			[runId, result.status, JSON.stringify(result)],
		)
	}

	async registerWebhookEndpoint() {
		throw new Error('webhooks are not part of the benchmark peer')
	}

	/** Stops consuming and waits for the job in hand. */
	async stop() {
		if (this.channel && this.consumerTag) {
			try {
				await this.channel.cancel(this.consumerTag)
			} catch {}
		}
		if (this.inFlight) {
			try {
				await this.inFlight
			} catch {}
		}
		try {
			await this.channel?.close()
		} catch {}
	}
}

const log = peerLog('peer')

async function main() {
	const env = process.env
	const variant = env.PEER_VARIANT || 'documented'
	if (variant !== 'documented' && variant !== 'tuned')
		throw new Error(`PEER_VARIANT must be documented or tuned; got ${variant}`)
	const amqpConnection =
		variant === 'tuned'
			? await amqplib.connect(env.RABBITMQ_URL, { noDelay: true })
			: await amqplib.connect(env.RABBITMQ_URL)
	amqpConnection.on('error', (e) => log('amqp connection error', e.message))
	const pgClient = new pg.Client({ connectionString: env.POSTGRES_URL })
	await pgClient.connect()
	const redis = new IORedis(env.REDIS_URL, { keyPrefix: env.REDIS_PREFIX || undefined })

	const adapter = new PeerAdapter({
		amqpConnection,
		pgClient,
		coordinationStore: new PeerRedisStore(redis),
		queueName: env.QUEUE,
		contextTableName: env.CTX_TABLE,
		statusTableName: env.STATUS_TABLE,
		runtimeOptions: {
			registry,
			blueprints: typeof blueprints === 'function' ? blueprints() : blueprints,
			logger: quietLogger(log),
		},
	})

	stopOnSigterm(() => adapter.stop(), [() => amqpConnection.close(), () => pgClient.end(), () => redis.quit()])

	adapter.start()
	await adapter.ready
	process.stdout.write('WORKER_READY\n')
}

runIfMain(import.meta.url, main, log)
