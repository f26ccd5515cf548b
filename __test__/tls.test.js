'use strict'

// Full runs over verified TLS to each service, in the forms users of amqplib, pg and
// ioredis already write, against private TLS-only servers (helpers/private-services.js:
// a throwaway CA, TLS-only RabbitMQ, PostgreSQL with `hostnossl … reject`, Redis with
// `--port 0`). Every downgrade and every certificate that does not verify is refused
// with ERR_TLS within seconds.

const fs = require('node:fs')
const path = require('node:path')
const { spawn } = require('node:child_process')
const amqplib = require('amqplib')
const { Client } = require('pg')
const IORedis = require('ioredis')
const P = require('./helpers/private-services')
const S = require('./helpers/services')
const { blueprints, createRegistry } = require('./helpers/runs-fixtures')

const ROOT = path.resolve(__dirname, '..')
const { RabbitMqAdapter, RedisCoordinationStore } = require(ROOT)

jest.setTimeout(120000)

let certs
let rabbit
let redis
let pg
const cleanups = []

beforeAll(async () => {
	certs = P.makeCerts()
	;[rabbit, redis, pg] = await Promise.all([P.startTlsRabbit(certs), P.startTlsRedis(certs), P.startTlsPostgres(certs)])
}, 120000)

afterEach(async () => {
	while (cleanups.length) await cleanups.pop()()
})

afterAll(async () => {
	await Promise.all([rabbit?.stop(), redis?.stop(), pg?.stop()].filter(Boolean))
	certs?.cleanup()
})

const ca = () => fs.readFileSync(certs.ca, 'utf8')
const silent = { debug() {}, info() {}, warn() {}, error() {} }

function recorder() {
	const lines = []
	const rec = (level) => (message) => lines.push(`${level} ${message}`)
	return { lines, debug() {}, info: rec('info'), warn: rec('warn'), error: rec('error') }
}

function adapter({ amqpConnection, pgClient, redis: redisInput, logger = silent, ...options }) {
	const [queue, ctxTable, statusTable] = [S.uniqueName('tls'), S.uniqueName('tls_c'), S.uniqueName('tls_s')]
	const a = new RabbitMqAdapter({
		amqpConnection,
		pgClient,
		coordinationStore: new RedisCoordinationStore(redisInput),
		queueName: queue,
		contextTableName: ctxTable,
		statusTableName: statusTable,
		stopTimeoutMs: 3000,
		...options,
		runtimeOptions: { registry: createRegistry(), blueprints, logger },
	})
	// Queues and tables on the shared services (the private servers go with their data).
	cleanups.push(async () => {
		await S.deleteQueues([queue, `${queue}.dead`])
		await S.dropTable(ctxTable)
		await S.dropTable(statusTable)
	})
	cleanups.push(() => a.stop({ timeoutMs: 2000 }).catch(() => {}))
	return a
}

async function completesOneRun(a) {
	await a.start()
	const { runId } = await a.startRun('diamond', { testRunId: 'tls' }, { runId: S.uniqueName('tls_run') })
	const result = await a.waitForRun(runId, { timeoutMs: 30000 })
	expect(result.status).toBe('completed')
	return runId
}

/** Expects `promise` to reject with ERR_TLS naming `service`, within 15 s. */
async function refusedWithTls(promise, service) {
	const t0 = Date.now()
	const err = await promise.then(
		() => null,
		(e) => e,
	)
	expect(err).toMatchObject({ code: 'ERR_TLS', message: expect.stringContaining(`TLS to ${service}`) })
	expect(Date.now() - t0).toBeLessThan(15000)
}

const amqpsUrl = (query = `cacertfile=${encodeURIComponent(certs.ca)}`) => `${rabbit.url}?${query}`
const pgUrl = (query = `sslmode=verify-full&sslrootcert=${encodeURIComponent(certs.ca)}`) => `${pg.url}?${query}`

test('URLs: amqps:// with cacertfile, postgresql:// with sslmode=verify-full and sslrootcert, rediss:// with ioredis tls.ca', async () => {
	const ioredis = new IORedis(redis.url, { tls: { ca: ca() }, lazyConnect: true })
	const a = adapter({ amqpConnection: amqpsUrl(), pgClient: pgUrl(), redis: ioredis })
	await completesOneRun(a)
	// The reconcile path needs Redis (node locks): it works over TLS too.
	const { runId } = await a.startRun('quick', { testRunId: 'tls2' }, { runId: S.uniqueName('tls_run') })
	expect((await a.waitForRun(runId, { timeoutMs: 30000 })).status).toBe('completed')
	expect([...(await a.reconcile(runId, { staleAfterMs: 60000 }))]).toEqual([])
})

test("client objects: an amqplib TLS connection with amqpTls, a pg Client with ssl: { ca }, ioredis' tls option", async () => {
	const amqp = await amqplib.connect(rabbit.url, { ca: [ca()] })
	cleanups.push(() => amqp.close().catch(() => {}))
	const client = new Client({ connectionString: pg.url, ssl: { ca: ca() } })
	const ioredis = new IORedis({
		host: 'localhost',
		port: redis.port,
		tls: { ca: Buffer.from(ca()) },
		lazyConnect: true,
	})
	const a = adapter({ amqpConnection: amqp, amqpTls: { ca: ca() }, pgClient: client, redis: ioredis })
	await completesOneRun(a)
})

test('NODE_EXTRA_CA_CERTS is trusted by all three connections, as by the user’s own clients', async () => {
	const script = `
const { RabbitMqAdapter, RedisCoordinationStore } = require(${JSON.stringify(ROOT)})
const { blueprints, createRegistry } = require(${JSON.stringify(path.join(__dirname, 'helpers', 'runs-fixtures'))})
const [amqpUrl, pgUrl, redisUrl, q] = process.argv.slice(1)
;(async () => {
	const a = new RabbitMqAdapter({
		amqpConnection: amqpUrl, pgClient: pgUrl, coordinationStore: new RedisCoordinationStore(redisUrl),
		queueName: q, contextTableName: q + '_c', statusTableName: q + '_s',
		runtimeOptions: { registry: createRegistry(), blueprints, logger: { debug() {}, info() {}, warn() {}, error() {} } },
	})
	await a.start()
	const { runId } = await a.startRun('quick', { testRunId: 'x' }, { runId: q + '_run' })
	const r = await a.waitForRun(runId, { timeoutMs: 30000 })
	await a.reconcile(runId, { staleAfterMs: 60000 })
	console.log('STATUS ' + r.status)
	await a.stop({ timeoutMs: 2000 })
	process.exit(0)
})().catch((e) => { console.log('FAILED ' + e.code + ' ' + e.message); process.exit(1) })
`
	const q = S.uniqueName('tls_env')
	const child = spawn(process.execPath, ['-e', script, rabbit.url, `${pg.url}?sslmode=require`, redis.url, q], {
		env: { ...process.env, NODE_EXTRA_CA_CERTS: certs.ca },
		stdio: ['ignore', 'pipe', 'inherit'],
	})
	let out = ''
	child.stdout.on('data', (d) => (out += d))
	const code = await new Promise((resolve) => child.on('exit', resolve))
	expect(out).toContain('STATUS completed')
	expect(code).toBe(0)
})

describe('refused with ERR_TLS, within seconds', () => {
	test('RabbitMQ: a CA that did not sign the server certificate', async () => {
		const a = adapter({
			amqpConnection: amqpsUrl(`cacertfile=${encodeURIComponent(certs.wrongCa)}`),
			pgClient: S.POSTGRES_URL,
			redis: S.REDIS_URL,
		})
		await refusedWithTls(a.start(), 'RabbitMQ')
	})

	test('RabbitMQ: a server name the certificate is not for', async () => {
		const a = adapter({
			amqpConnection: amqpsUrl(`cacertfile=${encodeURIComponent(certs.ca)}&server_name_indication=other.example`),
			pgClient: S.POSTGRES_URL,
			redis: S.REDIS_URL,
		})
		await refusedWithTls(a.start(), 'RabbitMQ')
	})

	test('PostgreSQL: sslmode=verify-full without the CA; sslmode=require (node-pg: verifies) likewise', async () => {
		for (const query of ['sslmode=verify-full', 'sslmode=require']) {
			const a = adapter({ amqpConnection: S.RABBITMQ_URL, pgClient: pgUrl(query), redis: S.REDIS_URL })
			await refusedWithTls(a.start(), 'PostgreSQL')
		}
	})

	test('PostgreSQL: a server without TLS when TLS is required', async () => {
		// The shared server on 5432 may have ssl on with a self-signed certificate: either
		// way the connection must not go ahead unverified or in plaintext.
		const a = adapter({
			amqpConnection: S.RABBITMQ_URL,
			pgClient: `${S.POSTGRES_URL}?sslmode=require`,
			redis: S.REDIS_URL,
		})
		await refusedWithTls(a.start(), 'PostgreSQL')
	})

	test('Redis: rediss:// to a plaintext server, and a CA that did not sign the certificate', async () => {
		const key = S.uniqueName('tls_key')
		const plain = new RedisCoordinationStore(S.REDIS_URL.replace(/^redis:/, 'rediss:'))
		await refusedWithTls(plain.increment(key, 10), 'Redis')
		const wrong = new IORedis(redis.url, { tls: { ca: fs.readFileSync(certs.wrongCa) }, lazyConnect: true })
		await refusedWithTls(new RedisCoordinationStore(wrong).increment(key, 10), 'Redis')
		// The same store with the right CA works (the refusals above were about TLS only).
		const right = new RedisCoordinationStore(new IORedis(redis.url, { tls: { ca: ca() }, lazyConnect: true }))
		expect(await right.increment(key, 10)).toBe(1)
	})
})

test('verification turned off explicitly works against an untrusted certificate, with a warning', async () => {
	const logger = recorder()
	const ioredis = new IORedis(redis.url, { tls: { rejectUnauthorized: false }, lazyConnect: true })
	const a = adapter({
		amqpConnection: amqpsUrl('verify=verify_none'),
		pgClient: new Client({ connectionString: pg.url, ssl: { rejectUnauthorized: false } }),
		redis: ioredis,
		logger,
	})
	await completesOneRun(a)
	for (const service of ['RabbitMQ', 'PostgreSQL', 'Redis']) {
		expect(logger.lines).toContainEqual(expect.stringMatching(new RegExp(`^warn TLS to ${service}: .*NOT verified`)))
	}
})

test("libpq's meanings with uselibpqcompat=true: verify-ca checks the chain, not the host name", async () => {
	const other = await P.startTlsPostgres(certs, { serverIdentity: 'otherName' })
	cleanups.push(() => other.stop())
	const rootCert = encodeURIComponent(certs.ca)
	const chainOnly = adapter({
		amqpConnection: S.RABBITMQ_URL,
		pgClient: `${other.url}?sslmode=verify-ca&uselibpqcompat=true&sslrootcert=${rootCert}`,
		redis: S.REDIS_URL,
	})
	await completesOneRun(chainOnly)
	const full = adapter({
		amqpConnection: S.RABBITMQ_URL,
		pgClient: `${other.url}?sslmode=verify-full&sslrootcert=${rootCert}`,
		redis: S.REDIS_URL,
	})
	await refusedWithTls(full.start(), 'PostgreSQL')
})

test('client certificates: sslcert/sslkey in a PostgreSQL URL, cert/key in ioredis tls, for servers that require them', async () => {
	const [pgCert, redisCert] = await Promise.all([
		P.startTlsPostgres(certs, { requireClientCert: true }),
		P.startTlsRedis(certs, { requireClientCert: true }),
	])
	cleanups.push(() => Promise.all([pgCert.stop(), redisCert.stop()]))
	const files = `sslrootcert=${encodeURIComponent(certs.ca)}&sslcert=${encodeURIComponent(certs.clientCert)}&sslkey=${encodeURIComponent(certs.clientKey)}`
	const tls = { ca: ca(), cert: fs.readFileSync(certs.clientCert), key: fs.readFileSync(certs.clientKey) }
	const a = adapter({
		amqpConnection: amqpsUrl(),
		pgClient: `${pgCert.url}?sslmode=verify-full&${files}`,
		redis: new IORedis(redisCert.url, { tls, lazyConnect: true }),
	})
	await completesOneRun(a)
	const key = S.uniqueName('tls_key')
	expect(
		await new RedisCoordinationStore(new IORedis(redisCert.url, { tls, lazyConnect: true })).increment(key, 10),
	).toBe(1)
	// Without the client certificate both servers refuse.
	const noCert = adapter({
		amqpConnection: amqpsUrl(),
		pgClient: `${pgCert.url}?sslmode=verify-full&sslrootcert=${encodeURIComponent(certs.ca)}`,
		redis: S.REDIS_URL,
	})
	await expect(noCert.start()).rejects.toMatchObject({ code: expect.stringMatching(/^ERR_(TLS|PG_CONNECT)$/) })
	const store = new RedisCoordinationStore(new IORedis(redisCert.url, { tls: { ca: ca() }, lazyConnect: true }))
	await expect(store.increment(key, 10)).rejects.toMatchObject({
		code: expect.stringMatching(/^ERR_(TLS|REDIS_CONNECT)$/),
	})
})
