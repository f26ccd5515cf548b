'use strict'

// The TLS-only private services of helpers/private-services.js, checked with the
// real client libraries: each accepts a client that trusts the throwaway CA,
// refuses plain TCP and a client that trusts another CA, and is gone after stop().
// The shared services on 5432 / 6379 / 5672 are not involved.

const fs = require('node:fs')
const { X509Certificate } = require('node:crypto')
const { execFileSync } = require('node:child_process')
const amqplib = require('amqplib')
const { Client } = require('pg')
const Redis = require('ioredis')
const P = require('./helpers/private-services')

jest.setTimeout(60000)

let certs
let rabbit
let redis
let redisMtls
let pg
let pgMtls
const started = []
const clients = []

const read = (file) => fs.readFileSync(file)

/** `err` is what a failed connect rejected with (errors from node:tls come from another realm than jest's Error). */
function expectFailure(err) {
	expect(err).not.toBeNull()
	expect(typeof err.message).toBe('string')
}

/** Settles within `ms` (a hang shows as a clear failure instead of a jest timeout). */
const settle = (promise, what, ms = 30000) => P.withTimeout(promise, ms, what)

/** An ioredis client that never retries, closed after the test file. */
function redisClient(url, options) {
	const client = new Redis(url, {
		lazyConnect: true,
		retryStrategy: () => null,
		maxRetriesPerRequest: 0,
		connectTimeout: 10000,
		...options,
	})
	client.on('error', () => {})
	clients.push(() => client.disconnect())
	return client
}

async function pgConnect(config) {
	const client = new Client({ connectionTimeoutMillis: 15000, ...config })
	client.on('error', () => {})
	await client.connect()
	clients.push(() => client.end())
	return client
}

async function closeClients() {
	for (const close of clients.splice(0)) {
		try {
			await close()
		} catch {
			/* already closed */
		}
	}
}

beforeAll(async () => {
	certs = P.makeCerts()
	const starts = {
		rabbit: P.startTlsRabbit(certs),
		redis: P.startTlsRedis(certs),
		redisMtls: P.startTlsRedis(certs, { requireClientCert: true }),
		pg: P.startTlsPostgres(certs),
		pgMtls: P.startTlsPostgres(certs, { requireClientCert: true }),
	}
	const results = await Promise.allSettled(Object.values(starts))
	for (const r of results) if (r.status === 'fulfilled') started.push(r.value)
	const failed = results.find((r) => r.status === 'rejected')
	if (failed) throw failed.reason
	;[rabbit, redis, redisMtls, pg, pgMtls] = results.map((r) => r.value)
}, 120000)

afterAll(async () => {
	await closeClients()
	await Promise.allSettled(started.map((s) => s.stop()))
	certs?.cleanup()
}, 120000)

describe('makeCerts', () => {
	test('writes a CA, leaf certificates and keys as absolute paths', () => {
		for (const key of [
			'ca',
			'caKey',
			'serverCert',
			'serverKey',
			'clientCert',
			'clientKey',
			'wrongCa',
			'wrongServerCert',
			'wrongServerKey',
			'otherNameCert',
			'otherNameKey',
		]) {
			expect(certs[key].startsWith('/')).toBe(true)
			expect(fs.existsSync(certs[key])).toBe(true)
		}
		const verify = (ca, cert) => {
			try {
				execFileSync('openssl', ['verify', '-CAfile', ca, cert], { stdio: 'pipe' })
				return true
			} catch {
				return false
			}
		}
		expect(verify(certs.ca, certs.serverCert)).toBe(true)
		expect(verify(certs.ca, certs.clientCert)).toBe(true)
		expect(verify(certs.ca, certs.otherNameCert)).toBe(true)
		expect(verify(certs.wrongCa, certs.wrongServerCert)).toBe(true)
		expect(verify(certs.ca, certs.wrongServerCert)).toBe(false)

		const server = new X509Certificate(read(certs.serverCert))
		expect(server.subjectAltName).toBe('DNS:localhost, IP Address:127.0.0.1')
		expect(server.ca).toBe(false)
		const other = new X509Certificate(read(certs.otherNameCert))
		expect(other.subjectAltName).toBe('DNS:other.invalid')
		expect(new X509Certificate(read(certs.ca)).ca).toBe(true)
	})
})

describe('private RabbitMQ (TLS only)', () => {
	test('amqps:// with the CA connects and works', async () => {
		expect(rabbit.url).toBe(`amqps://guest:guest@localhost:${rabbit.port}`)
		expect(rabbit.port).not.toBe(5672)
		const conn = await settle(amqplib.connect(rabbit.url, { ca: [read(certs.ca)] }), 'amqps connect')
		try {
			const ch = await conn.createChannel()
			const q = await ch.assertQueue('', { exclusive: true })
			ch.sendToQueue(q.queue, Buffer.from('hello'))
			const msg = await P.withTimeout(
				(async () => {
					for (;;) {
						const m = await ch.get(q.queue, { noAck: true })
						if (m) return m
						await new Promise((r) => setTimeout(r, 50))
					}
				})(),
				20000,
				'message round trip',
			)
			expect(msg.content.toString()).toBe('hello')
		} finally {
			await conn.close()
		}
	})

	test('rabbitmqctl reaches the node with its own cookie', async () => {
		await rabbit.ctl(['list_queues'])
		const out = await rabbit.ctl(['listeners'], { tool: 'rabbitmq-diagnostics' })
		expect(out).toContain(String(rabbit.port))
		expect(out).not.toMatch(/protocol: amqp,/)
		expect(out).toMatch(/amqp\/ssl/)
	})

	test('plain amqp:// to the TLS port fails', async () => {
		const err = await settle(
			amqplib.connect(`amqp://guest:guest@localhost:${rabbit.port}`, { timeout: 10000 }).then(
				async (conn) => {
					await conn.close()
					return null
				},
				(e) => e,
			),
			'plain amqp connect',
		)
		expectFailure(err)
	})

	test('amqps:// trusting another CA fails certificate verification', async () => {
		const err = await settle(
			amqplib.connect(rabbit.url, { ca: [read(certs.wrongCa)] }).then(
				async (conn) => {
					await conn.close()
					return null
				},
				(e) => e,
			),
			'amqps connect with the wrong CA',
		)
		expectFailure(err)
		expect(`${err.code} ${err.message}`).toMatch(/certificate|CERT|SIGNATURE|verify/i)
	})
})

describe('private PostgreSQL (TLS only)', () => {
	test('ssl with the CA connects over TLS', async () => {
		expect(pg.url).toBe(`postgresql://postgres@localhost:${pg.port}/test`)
		const client = await settle(pgConnect({ connectionString: pg.url, ssl: { ca: read(certs.ca) } }), 'pg connect')
		const res = await client.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')
		expect(res.rows).toEqual([{ ssl: true }])
	})

	test('ssl: false is refused by pg_hba.conf', async () => {
		const err = await settle(
			pgConnect({ connectionString: pg.url, ssl: false }).then(
				() => null,
				(e) => e,
			),
			'pg connect without TLS',
		)
		expectFailure(err)
		expect(err.message).toMatch(/pg_hba\.conf rejects connection/)
	})

	test('ssl trusting another CA fails certificate verification', async () => {
		const err = await settle(
			pgConnect({ connectionString: pg.url, ssl: { ca: read(certs.wrongCa) } }).then(
				() => null,
				(e) => e,
			),
			'pg connect with the wrong CA',
		)
		expectFailure(err)
		expect(`${err.code} ${err.message}`).toMatch(/certificate|CERT|SIGNATURE|verify/i)
	})

	test('requireClientCert: `cert` auth wants the client certificate', async () => {
		const client = await settle(
			pgConnect({
				connectionString: pgMtls.url,
				ssl: { ca: read(certs.ca), cert: read(certs.clientCert), key: read(certs.clientKey) },
			}),
			'pg connect with a client certificate',
		)
		const res = await client.query('SELECT ssl, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()')
		expect(res.rows[0].ssl).toBe(true)
		expect(res.rows[0].client_dn).toContain('CN=postgres')

		const err = await settle(
			pgConnect({ connectionString: pgMtls.url, ssl: { ca: read(certs.ca) } }).then(
				() => null,
				(e) => e,
			),
			'pg connect without a client certificate',
		)
		expectFailure(err)
	})
})

describe('private Redis (TLS only)', () => {
	test('rediss:// with the CA PINGs', async () => {
		expect(redis.url).toBe(`rediss://localhost:${redis.port}`)
		const client = redisClient(redis.url, { tls: { ca: read(certs.ca) } })
		await settle(client.connect(), 'redis connect')
		expect(await settle(client.ping(), 'redis ping')).toBe('PONG')
		client.disconnect()
	})

	test('plain redis:// to the TLS port fails', async () => {
		const client = redisClient(`redis://localhost:${redis.port}`)
		const err = await settle(
			(async () => {
				await client.connect()
				await client.ping()
			})().then(
				() => null,
				(e) => e,
			),
			'plain redis connect',
		)
		expectFailure(err)
		client.disconnect()
	})

	test('rediss:// trusting another CA fails', async () => {
		const client = redisClient(redis.url, { tls: { ca: read(certs.wrongCa) } })
		const err = await settle(
			client.connect().then(
				() => null,
				(e) => e,
			),
			'redis connect with the wrong CA',
		)
		expectFailure(err)
		client.disconnect()
	})

	test('requireClientCert: the client certificate is needed', async () => {
		const withCert = redisClient(redisMtls.url, {
			tls: { ca: read(certs.ca), cert: read(certs.clientCert), key: read(certs.clientKey) },
		})
		await settle(withCert.connect(), 'redis connect with a client certificate')
		expect(await settle(withCert.ping(), 'redis ping')).toBe('PONG')
		withCert.disconnect()

		const without = redisClient(redisMtls.url, { tls: { ca: read(certs.ca) } })
		const err = await settle(
			(async () => {
				await without.connect()
				await without.ping()
			})().then(
				() => null,
				(e) => e,
			),
			'redis connect without a client certificate',
		)
		expectFailure(err)
		without.disconnect()
	})
})

describe('stop()', () => {
	test('removes every private instance', async () => {
		await closeClients()
		await settle(Promise.all(started.map((s) => s.stop())), 'stopping the private services', 50000)

		const shortName = rabbit.nodeName.split('@')[0]
		const epmd = execFileSync('epmd', ['-names']).toString()
		expect(epmd).not.toContain(`name ${shortName} `)
		expect(P.isAlive(rabbit.pid)).toBe(false)
		expect(fs.existsSync(rabbit.baseDir)).toBe(false)

		expect(P.isAlive(redis.pid)).toBe(false)
		expect(P.isAlive(redisMtls.pid)).toBe(false)
		expect(fs.existsSync(redis.dir)).toBe(false)

		const clusters = (await P.listPgClusters()).map((c) => c.name)
		expect(clusters).not.toContain(pg.name)
		expect(clusters).not.toContain(pgMtls.name)
		expect(clusters).toContain('main') // the shared cluster is untouched
		expect(fs.existsSync(pg.confDir)).toBe(false)
	})
})
