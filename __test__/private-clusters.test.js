'use strict'

// The private clusters of helpers/private-clusters.js, checked with the real
// client libraries: a 3-node RabbitMQ cluster whose quorum queue keeps its
// messages when its leader node is SIGKILLed (and the node rejoins on restart),
// and a PostgreSQL primary/standby pair that replicates, keeps the standby
// read-only and fails over to it. Nothing is left after stop(). The shared
// services on 5432 / 6379 / 5672 are not involved.

const fs = require('node:fs')
const { execFileSync } = require('node:child_process')
const amqplib = require('amqplib')
const { Client } = require('pg')
const P = require('./helpers/private-services')
const C = require('./helpers/private-clusters')

jest.setTimeout(120000)

let rabbit
let pgPair
const started = []
const closers = []

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const settle = (promise, what, ms = 60000) => P.withTimeout(promise, ms, what)

async function amqpConnect(url) {
	const conn = await settle(amqplib.connect(url, { timeout: 15000 }), `amqp connect ${url}`, 30000)
	conn.on('error', () => {})
	closers.push(() => conn.close())
	return conn
}

async function pgConnect(port) {
	const client = new Client({
		host: '127.0.0.1',
		port,
		user: 'postgres',
		database: 'test',
		connectionTimeoutMillis: 15000,
	})
	client.on('error', () => {})
	await client.connect()
	closers.push(() => client.end())
	return client
}

async function closeAll() {
	for (const close of closers.splice(0)) {
		try {
			await close()
		} catch {
			/* already closed */
		}
	}
}

/** Retry `fn` until it resolves, for at most `ms`. */
async function eventually(fn, what, ms = 60000) {
	const deadline = Date.now() + ms
	let lastError
	while (Date.now() < deadline) {
		try {
			return await fn()
		} catch (e) {
			lastError = e
			await sleep(500)
		}
	}
	throw new Error(`${what}: ${lastError?.message}`)
}

/** Processes whose command line contains `needle` (from /proc). */
function processesMentioning(needle) {
	const found = []
	for (const pid of fs.readdirSync('/proc')) {
		if (!/^\d+$/.test(pid)) continue
		try {
			const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8')
			if (cmd.includes(needle)) found.push(`${pid}: ${cmd.replace(/\0/g, ' ').slice(0, 200)}`)
		} catch {
			/* gone */
		}
	}
	return found
}

beforeAll(async () => {
	const results = await Promise.allSettled([C.startRabbitCluster({ nodes: 3 }), C.startPgPair()])
	for (const r of results) if (r.status === 'fulfilled') started.push(r.value)
	const failed = results.find((r) => r.status === 'rejected')
	if (failed) throw failed.reason
	;[rabbit, pgPair] = results.map((r) => r.value)
}, 200000)

afterAll(async () => {
	await closeAll()
	await Promise.allSettled(started.map((s) => s.stop()))
}, 120000)

describe('private RabbitMQ cluster', () => {
	test('three nodes on their own ports, all running in cluster_status', async () => {
		expect(rabbit.nodes).toHaveLength(3)
		const names = rabbit.nodes.map((n) => n.name)
		expect(new Set(names).size).toBe(3)
		for (const n of rabbit.nodes) {
			expect(n.name).toMatch(/^fc_c[0-9a-f]+_\d@localhost$/)
			expect(n.url).toBe(`amqp://guest:guest@127.0.0.1:${n.port}`)
			expect(n.port).not.toBe(5672)
			expect(n.isRunning()).toBe(true)
		}
		expect(rabbit.urls).toEqual(rabbit.nodes.map((n) => n.url))
		for (let i = 0; i < 3; i++) {
			const status = await rabbit.clusterStatus(i)
			expect([...status.running_nodes].sort()).toEqual([...names].sort())
		}
		// the text form, as an operator would read it
		const text = await rabbit.ctl(1, ['cluster_status'])
		for (const name of names) expect(text).toContain(name)
	})

	test('a quorum queue keeps its messages when its leader is SIGKILLed; the node rejoins on restart', async () => {
		const q = `fc-quorum-${Date.now()}`
		const total = 20
		const conn = await amqpConnect(rabbit.nodes[0].url)
		const ch = await conn.createConfirmChannel()
		await ch.assertQueue(q, { durable: true, arguments: { 'x-queue-type': 'quorum' } })
		for (let i = 0; i < total; i++) ch.sendToQueue(q, Buffer.from(`m${i}`), { persistent: true })
		await settle(ch.waitForConfirms(), 'publisher confirms')
		await conn.close()

		const leader = await eventually(async () => {
			const index = await rabbit.queueLeader(q)
			if (index < 0) throw new Error('no leader yet')
			return index
		}, 'quorum queue leader')
		expect(leader).toBeGreaterThanOrEqual(0)
		expect(leader).toBeLessThan(3)

		const victim = rabbit.nodes[leader]
		const oldPid = victim.pid
		await settle(victim.kill9(), 'kill9 of the leader')
		expect(victim.isRunning()).toBe(false)
		expect(P.isAlive(oldPid)).toBe(false)

		// consume everything from another node (a new leader is elected meanwhile)
		const other = rabbit.nodes[(leader + 1) % 3]
		const received = new Set()
		await eventually(
			async () => {
				const c = await amqpConnect(other.url)
				try {
					const cch = await c.createChannel()
					cch.on('error', () => {})
					await cch.prefetch(total)
					await settle(
						new Promise((resolve, reject) => {
							cch.on('close', () => reject(new Error('channel closed')))
							cch
								.consume(q, (msg) => {
									if (!msg) return reject(new Error('consumer cancelled'))
									received.add(msg.content.toString())
									cch.ack(msg)
									if (received.size === total) resolve()
								})
								.catch(reject)
						}),
						'consuming after the leader died',
						20000,
					)
				} finally {
					await c.close().catch(() => {})
				}
			},
			'consuming the quorum queue from a surviving node',
			90000,
		)
		expect([...received].sort()).toEqual(Array.from({ length: total }, (_, i) => `m${i}`).sort())

		const newLeader = await eventually(async () => {
			const index = await rabbit.queueLeader(q)
			if (index < 0 || index === leader) throw new Error(`leader is ${index}`)
			return index
		}, 'new quorum queue leader')
		expect(newLeader).not.toBe(leader)

		await settle(victim.restart(), 'restart of the killed node', 110000)
		expect(victim.isRunning()).toBe(true)
		expect(victim.pid).not.toBe(oldPid)
		const names = rabbit.nodes.map((n) => n.name).sort()
		for (let i = 0; i < 3; i++) {
			const status = await rabbit.clusterStatus(i)
			expect([...status.running_nodes].sort()).toEqual(names)
		}
	}, 240000)
})

describe('private PostgreSQL primary + standby', () => {
	test('replicates, keeps the standby read-only, and fails over to it', async () => {
		const { primary, standby } = pgPair
		expect(primary.port).not.toBe(5432)
		expect(standby.port).not.toBe(5432)
		expect(primary.url).toBe(`postgresql://postgres@127.0.0.1:${primary.port}/test`)
		expect(standby.url).toBe(`postgresql://postgres@127.0.0.1:${standby.port}/test`)
		expect(pgPair.multiHostUrl).toBe(
			`postgresql://postgres@127.0.0.1:${primary.port},127.0.0.1:${standby.port}/test?target_session_attrs=read-write`,
		)

		const pri = await pgConnect(primary.port)
		expect((await pri.query('SELECT pg_is_in_recovery() AS r')).rows).toEqual([{ r: false }])
		await pri.query('CREATE TABLE t (id int PRIMARY KEY, v text)')
		await pri.query(`INSERT INTO t VALUES (1, 'before failover')`)

		const sby = await pgConnect(standby.port)
		expect((await sby.query('SELECT pg_is_in_recovery() AS r')).rows).toEqual([{ r: true }])
		const row = await eventually(async () => {
			const res = await sby.query('SELECT v FROM t WHERE id = 1')
			if (res.rows.length !== 1) throw new Error('not replicated yet')
			return res.rows[0]
		}, 'replication to the standby')
		expect(row).toEqual({ v: 'before failover' })

		const refused = await sby.query(`INSERT INTO t VALUES (2, 'too early')`).then(
			() => null,
			(e) => e,
		)
		expect(refused).not.toBeNull()
		expect(refused.code).toBe('25006') // read_only_sql_transaction
		await sby.end().catch(() => {})

		await settle(pgPair.failover(), 'failover', 90000)

		const promoted = await pgConnect(standby.port)
		expect((await promoted.query('SELECT pg_is_in_recovery() AS r')).rows).toEqual([{ r: false }])
		await promoted.query(`INSERT INTO t VALUES (2, 'after failover')`)
		const all = await promoted.query('SELECT id, v FROM t ORDER BY id')
		expect(all.rows).toEqual([
			{ id: 1, v: 'before failover' },
			{ id: 2, v: 'after failover' },
		])

		// the old primary is down
		const down = await pgConnect(primary.port).then(
			() => null,
			(e) => e,
		)
		expect(down).not.toBeNull()
	})
})

describe('stop()', () => {
	test('leaves no node, cluster or directory behind', async () => {
		await closeAll()
		const pids = rabbit.nodes.map((n) => n.pid)
		await settle(Promise.all(started.map((s) => s.stop())), 'stopping the clusters', 90000)
		await settle(Promise.all(started.map((s) => s.stop())), 'stop() again (idempotent)', 10000)

		for (const n of rabbit.nodes) expect(n.isRunning()).toBe(false)
		for (const pid of pids) expect(P.isAlive(pid)).toBe(false)
		expect(processesMentioning(`fc_c${rabbit.id}_`)).toEqual([])
		expect(processesMentioning(rabbit.baseDir)).toEqual([])
		const epmd = execFileSync('epmd', ['-names']).toString()
		for (const n of rabbit.nodes) expect(epmd).not.toContain(`name ${n.name.split('@')[0]} `)
		expect(fs.existsSync(rabbit.baseDir)).toBe(false)

		const clusters = (await P.listPgClusters()).map((c) => c.name)
		for (const c of [pgPair.primary, pgPair.standby]) {
			expect(clusters).not.toContain(c.name)
			expect(fs.existsSync(c.confDir)).toBe(false)
			expect(fs.existsSync(c.dataDir)).toBe(false)
			expect(processesMentioning(c.dataDir)).toEqual([])
		}
		expect(clusters).toContain('main') // the shared cluster is untouched
	}, 120000)
})
