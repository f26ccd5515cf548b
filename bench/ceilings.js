'use strict'
/**
 * The machine's ceilings, measured in the same invocation as the benchmark, on the
 * same services (loopback):
 *   - PostgreSQL single-row upsert commits/s (autocommit) on 1 and on 8 connections
 *     (each connection upserts its own row, so only the WAL flush is shared: group commit);
 *   - PostgreSQL `SELECT 1` round trips/s on one connection;
 *   - RabbitMQ persistent publishes/s on a confirm channel (window of 256 unconfirmed),
 *     then consume + ack of that backlog with prefetch 200;
 *   - Redis round trips/s on one connection (`INCR`, one at a time);
 *   - the same upsert with `pgbench` (C client) on 1 and 8 connections, when pgbench is
 *     installed: the server's limit without Node's client overhead.
 * The other clients are Node clients (pg, amqplib with noDelay, ioredis), as the workers'
 * are: those numbers include client overhead, like everything else in the benchmark.
 */
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const crypto = require('node:crypto')
const { execFile } = require('node:child_process')
const { Client } = require('pg')
const amqplib = require('amqplib')
const IORedis = require('ioredis')

const now = () => performance.now()

async function pgCommitRate(postgresUrl, connections, ms) {
	const table = `t_bench_ceiling_${process.pid}_${crypto.randomBytes(4).toString('hex')}`
	const admin = new Client({ connectionString: postgresUrl })
	await admin.connect()
	await admin.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v bigint NOT NULL)`)
	const clients = []
	try {
		for (let i = 0; i < connections; i++) {
			const c = new Client({ connectionString: postgresUrl })
			await c.connect()
			clients.push(c)
		}
		const sql = `INSERT INTO ${table} AS t (id, v) VALUES ($1, 1) ON CONFLICT (id) DO UPDATE SET v = t.v + 1`
		// warm up: create each row, prepare nothing (pg sends parse/bind each time, as the peer does)
		await Promise.all(clients.map((c, i) => c.query(sql, [i])))
		let count = 0
		const start = now()
		const deadline = start + ms
		await Promise.all(
			clients.map(async (c, i) => {
				while (now() < deadline) {
					await c.query(sql, [i])
					count++
				}
			}),
		)
		return count / ((now() - start) / 1000)
	} finally {
		for (const c of clients) await c.end().catch(() => {})
		await admin.query(`DROP TABLE IF EXISTS ${table}`).catch(() => {})
		await admin.end().catch(() => {})
	}
}

async function pgSelectRate(postgresUrl, ms) {
	const c = new Client({ connectionString: postgresUrl })
	await c.connect()
	try {
		for (let i = 0; i < 50; i++) await c.query('SELECT 1')
		let count = 0
		const start = now()
		const deadline = start + ms
		while (now() < deadline) {
			await c.query('SELECT 1')
			count++
		}
		return count / ((now() - start) / 1000)
	} finally {
		await c.end().catch(() => {})
	}
}

async function rabbitRates(rabbitmqUrl, ms) {
	const conn = await amqplib.connect(rabbitmqUrl, { noDelay: true })
	conn.on('error', () => {})
	const queue = `t_bench_ceiling_${process.pid}_${crypto.randomBytes(4).toString('hex')}`
	const ch = await conn.createConfirmChannel()
	try {
		await ch.assertQueue(queue, { durable: true })
		const body = Buffer.from(
			JSON.stringify({ runId: 'r-00000000-0000', blueprintId: 'bench-diamond', nodeId: 'start' }),
		)
		const WINDOW = 256
		let outstanding = 0
		let confirmed = 0
		let published = 0
		let wake = null
		const onConfirm = (err) => {
			outstanding--
			if (!err) confirmed++
			if (wake) {
				const w = wake
				wake = null
				w()
			}
		}
		const start = now()
		const deadline = start + ms
		while (now() < deadline) {
			if (outstanding >= WINDOW) {
				await new Promise((resolve) => (wake = resolve))
				continue
			}
			outstanding++
			published++
			const ok = ch.sendToQueue(queue, body, { persistent: true }, onConfirm)
			if (!ok) await new Promise((resolve) => ch.once('drain', resolve))
			// let the socket and the confirms through now and then
			if (published % 64 === 0) await new Promise((resolve) => setImmediate(resolve))
		}
		await ch.waitForConfirms()
		const publishRate = confirmed / ((now() - start) / 1000)

		// consume + ack the backlog just published
		const cch = await conn.createChannel()
		await cch.prefetch(200)
		const total = confirmed
		let got = 0
		const cstart = now()
		await new Promise((resolve) => {
			cch.consume(queue, (msg) => {
				if (!msg) return
				cch.ack(msg)
				if (++got >= total) resolve()
			})
		})
		const consumeRate = got / ((now() - cstart) / 1000)
		await cch.close().catch(() => {})
		return { publishRate, consumeRate }
	} finally {
		await ch.deleteQueue(queue).catch(() => {})
		await ch.close().catch(() => {})
		await conn.close().catch(() => {})
	}
}

async function redisRoundTrips(redisUrl, ms) {
	const r = new IORedis(redisUrl)
	const key = `t_bench_ceiling_${process.pid}_${crypto.randomBytes(4).toString('hex')}`
	try {
		for (let i = 0; i < 50; i++) await r.incr(key)
		let count = 0
		const start = now()
		const deadline = start + ms
		while (now() < deadline) {
			await r.incr(key)
			count++
		}
		return count / ((now() - start) / 1000)
	} finally {
		await r.del(key).catch(() => {})
		await r.quit().catch(() => {})
	}
}

/** pgbench's tps for the single-row upsert on `clients` connections, or null without pgbench. */
async function pgbenchCommitRate(postgresUrl, clients, ms) {
	const u = new URL(postgresUrl)
	const tag = `${process.pid}_${crypto.randomBytes(4).toString('hex')}`
	const table = `t_bench_pgbench_${tag}`
	const script = path.join(os.tmpdir(), `bench_ceiling_${tag}.sql`)
	fs.writeFileSync(
		script,
		`INSERT INTO ${table} AS t (id, v) VALUES (:client_id, 1) ON CONFLICT (id) DO UPDATE SET v = t.v + 1;\n`,
	)
	const admin = new Client({ connectionString: postgresUrl })
	await admin.connect()
	await admin.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v bigint NOT NULL)`)
	try {
		const args = [
			'-h',
			decodeURIComponent(u.hostname),
			'-p',
			u.port || '5432',
			'-U',
			decodeURIComponent(u.username || 'postgres'),
			'-n',
			'-c',
			String(clients),
			'-j',
			String(Math.min(clients, 2)),
			'-T',
			String(Math.max(1, Math.round(ms / 1000))),
			'-f',
			script,
			decodeURIComponent(u.pathname.replace(/^\//, '') || 'postgres'),
		]
		const envs = { ...process.env }
		if (u.password) envs.PGPASSWORD = decodeURIComponent(u.password)
		const out = await new Promise((resolve) => {
			execFile('pgbench', args, { env: envs, timeout: ms + 30000 }, (err, stdout) => resolve(err ? null : stdout))
		})
		const m = out && /tps = ([\d.]+)/.exec(out)
		return m ? Number(m[1]) : null
	} finally {
		fs.rmSync(script, { force: true })
		await admin.query(`DROP TABLE IF EXISTS ${table}`).catch(() => {})
		await admin.end().catch(() => {})
	}
}

/** All ceilings, one after the other (never concurrently with the benchmark phases). */
async function measureCeilings({ postgresUrl, redisUrl, rabbitmqUrl, ms = 2000 }) {
	const pgCommit1 = await pgCommitRate(postgresUrl, 1, ms)
	const pgCommit8 = await pgCommitRate(postgresUrl, 8, ms)
	const pgSelect1 = await pgSelectRate(postgresUrl, ms)
	const { publishRate, consumeRate } = await rabbitRates(rabbitmqUrl, ms)
	const redisRtt = await redisRoundTrips(redisUrl, ms)
	const pgbench1 = await pgbenchCommitRate(postgresUrl, 1, ms)
	const pgbench8 = await pgbenchCommitRate(postgresUrl, 8, ms)
	return {
		pgCommit1,
		pgCommit8,
		pgSelect1,
		amqpConfirmedPublish: publishRate,
		amqpConsumeAck: consumeRate,
		redisRtt,
		pgbench1,
		pgbench8,
	}
}

module.exports = { measureCeilings, pgCommitRate, pgSelectRate, rabbitRates, redisRoundTrips, pgbenchCommitRate }

if (require.main === module) {
	const ms = Number(process.env.BENCH_CEILING_MS || 2000)
	measureCeilings({
		postgresUrl: process.env.POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/test',
		redisUrl: process.env.REDIS_URL || 'redis://127.0.0.1:6379',
		rabbitmqUrl: process.env.RABBITMQ_URL || 'amqp://guest:guest@127.0.0.1:5672',
		ms,
	}).then(
		(c) => console.log(c),
		(e) => {
			console.error(e)
			process.exit(1)
		},
	)
}
