'use strict'
/**
 * Link faults and long outages (the short set; `npm run test:chaos` runs them too and
 * writes their measured times to chaos/last-run.md). The workers reach the service
 * through a fault proxy of their own (chaos/proxy.js): the shared services are never
 * stopped, and only this file's connections are hit. Times are asserted only as
 * generous upper bounds on detection.
 */
const S = require('./helpers/services')
const { runsEnv } = require('./helpers/runs-env')
const { RedisCoordinationStore } = require('..')
const { FaultProxy } = require('../chaos/proxy')
const {
	pgBlackholeCase,
	pgOutageCase,
	amqpBlackholeCase,
	redeliveryConcurrencyCase,
	poisonRedisFlushCase,
	pgRestartCase,
	viaProxy,
} = require('../chaos/faults')

const res = S.useResources()
const setup = runsEnv(res)

const lines = []
const log = (l) => lines.push(`${new Date().toISOString().slice(11, 23)} ${l}`)

function expectPass(c) {
	if (!c.pass)
		throw new Error(`${c.name}\nexpected: ${c.expected}\nobserved: ${c.observed}\n\nlog:\n${lines.join('\n')}`)
}

test('a black-holed PostgreSQL link is noticed, logged and replaced within 30 s; no node runs twice', async () => {
	const c = await pgBlackholeCase({ log })
	log(c.observed)
	expectPass(c)
}, 150000)

test('a 35 s PostgreSQL outage while nodes run: commits wait in place, no node runs twice', async () => {
	const c = await pgOutageCase({ log, outageMs: 35000 })
	log(c.observed)
	expectPass(c)
}, 180000)

test('a black-holed RabbitMQ link is replaced within 30 s (heartbeat) and the runs complete', async () => {
	const c = await amqpBlackholeCase({ log })
	log(c.observed)
	expectPass(c)
}, 150000)

test('jobs redelivered after a worker died run concurrently on the survivor', async () => {
	const c = await redeliveryConcurrencyCase({ log })
	log(c.observed)
	expectPass(c)
}, 150000)

test('the poison count survives a Redis FLUSHALL after every crash (it is in PostgreSQL)', async () => {
	const c = await poisonRedisFlushCase({ log })
	log(c.observed)
	expectPass(c)
}, 150000)

test('a PostgreSQL restart while runs are in flight: every run completes, no waitForRun rejects', async () => {
	const c = await pgRestartCase({ log })
	log(c.observed)
	expectPass(c)
}, 150000)

test('waitForRun waits out a PostgreSQL outage (connections reset, then refused) and resolves', async () => {
	const proxy = await FaultProxy.start({ port: new URL(S.POSTGRES_URL).port || 5432 })
	try {
		const env = setup('wfr', { postgresUrl: viaProxy(S.POSTGRES_URL, proxy.port) })
		res.trackTable(env.ctxTable)
		res.trackTable(env.statusTable)
		const client = env.adapter() // never started: nothing consumes the start job
		const runId = env.runId()
		await client.startRun('two-starts', {}, { runId })
		const waiting = client.waitForRun(runId, { timeoutMs: 30000 }).then(
			(v) => ({ ok: v }),
			(e) => ({ error: e }),
		)
		await new Promise((r) => setTimeout(r, 500))
		proxy.refuse(true)
		proxy.reset()
		await new Promise((r) => setTimeout(r, 3000))
		proxy.refuse(false)
		await S.pgQuery(
			`UPDATE ${S.quoteIdent(env.statusTable)} SET status = 'completed', status_data = '{"status":"completed"}' WHERE run_id = $1`,
			[runId],
		)
		await S.pgQuery(`SELECT pg_notify('flowcraft_run_finished', $1)`, [`${env.statusTable}\n${runId}`])
		const out = await waiting
		expect(out.error).toBeUndefined()
		expect(out.ok.status).toBe('completed')
	} finally {
		await proxy.close()
	}
}, 60000)

test('a black-holed Redis link: the call in flight fails on the response timeout, the next one uses a new connection', async () => {
	const proxy = await FaultProxy.start({ port: new URL(S.REDIS_URL).port || 6379 })
	const store = new RedisCoordinationStore(viaProxy(S.REDIS_URL, proxy.port))
	const key = S.uniqueName('faults_redis')
	try {
		expect(await store.increment(key, 60)).toBe(1)
		proxy.blackhole()
		let t = Date.now()
		const err = await store.increment(key, 60).catch((e) => e)
		expect(err.code).toBe('ERR_REDIS')
		expect(Date.now() - t).toBeLessThan(30000)
		t = Date.now()
		expect(await store.increment(key, 60)).toBe(2)
		expect(Date.now() - t).toBeLessThan(30000)
	} finally {
		await store.delete(key).catch(() => {})
		await proxy.close()
	}
}, 60000)
