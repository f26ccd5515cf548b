'use strict'

// A coordination store that is not ours (any object with Flowcraft's
// ICoordinationStore methods) works: the core reaches it through a callback for
// what it keeps outside PostgreSQL (delivery counters, reconcile's node locks).

const S = require('./helpers/services')
const { runsEnv } = require('./helpers/runs-env')

const res = S.useResources()
const setup = runsEnv(res)

jest.setTimeout(60000)

/** An in-memory ICoordinationStore that records every call. */
function memoryStore() {
	const data = new Map()
	const calls = []
	return {
		calls,
		async increment(key, ttl) {
			calls.push(['increment', key, ttl])
			const n = (data.get(key) || 0) + 1
			data.set(key, n)
			return n
		},
		async setIfNotExist(key, value, ttl) {
			calls.push(['setIfNotExist', key, value, ttl])
			if (data.has(key)) return false
			data.set(key, value)
			return true
		},
		async extendTTL(key) {
			return data.has(key)
		},
		async delete(key) {
			data.delete(key)
		},
		async get(key) {
			return data.get(key)
		},
	}
}

test('runs complete with a custom coordination store, and reconcile takes its node locks there', async () => {
	const env = setup('custom')
	const store = memoryStore()
	const adapter = env.adapter({ coordinationStore: store })
	await adapter.start()
	const { runId } = await adapter.startRun('diamond', {}, { runId: env.runId() })
	const result = await adapter.waitForRun(runId, { timeoutMs: 20000 })
	expect(result.status).toBe('completed')
	expect(Object.keys(result.payload.context).filter((k) => k.startsWith('_outputs.')).length).toBeGreaterThanOrEqual(4)

	// Lose the last node's effect and the run's end: reconcile must lock it in our store.
	const pool = S.pgAdmin()
	const lastNode = 'd'
	const ctx = (await pool.query(`SELECT context_data FROM ${S.quoteIdent(env.ctxTable)} WHERE run_id = $1`, [runId]))
		.rows[0].context_data
	expect(Object.keys(ctx)).toContain(`_outputs.${lastNode}`)
	await pool.query(
		`UPDATE ${S.quoteIdent(env.ctxTable)} SET context_data = context_data - $2::text - $3::text WHERE run_id = $1`,
		[runId, `_outputs.${lastNode}`, lastNode],
	)
	// a final status is kept by the status table's trigger: rewinding it on purpose means disabling it
	await pool.query(`ALTER TABLE ${S.quoteIdent(env.statusTable)} DISABLE TRIGGER flowcraft_status_keep_final`)
	await pool.query(
		`UPDATE ${S.quoteIdent(env.statusTable)} SET status = 'running', status_data = NULL, pending = 0 WHERE run_id = $1`,
		[runId],
	)
	await pool.query(
		`UPDATE ${S.quoteIdent(`${env.ctxTable}_nodes`)} SET state = 'idle', output = NULL, route = NULL WHERE run_id = $1 AND node_id = 'd'`,
		[runId],
	)
	await pool.query(`ALTER TABLE ${S.quoteIdent(env.statusTable)} ENABLE TRIGGER flowcraft_status_keep_final`)
	const enqueued = await adapter.reconcile(runId, { staleAfterMs: 60000 })
	expect([...enqueued]).toEqual([lastNode])
	expect(store.calls).toContainEqual(['setIfNotExist', `flowcraft:nodelock:${runId}:${lastNode}`, 'reconcile', 60])
	const again = await adapter.waitForRun(runId, { timeoutMs: 20000 })
	expect(again.status).toBe('completed')
})

test('an object that is not a coordination store is refused with a clear error', () => {
	const env = setup('custom_bad')
	expect(() => env.adapter({ coordinationStore: { increment() {} } })).toThrow(
		expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringMatching(/setIfNotExist/) }),
	)
})

test("the worker's own keys honour ioredis' keyPrefix, like the store's methods", async () => {
	const IORedis = require('ioredis')
	const env = setup('custom_prefix')
	const prefix = `${S.uniqueName('pfx')}:`
	const ioredis = new IORedis(S.REDIS_URL, { keyPrefix: prefix, lazyConnect: true })
	const { RedisCoordinationStore } = require('..')
	const adapter = env.adapter({ coordinationStore: new RedisCoordinationStore(ioredis) })
	await adapter.start()
	const { runId } = await adapter.startRun('diamond', {}, { runId: env.runId() })
	expect((await adapter.waitForRun(runId, { timeoutMs: 20000 })).status).toBe('completed')
	const pool = S.pgAdmin()
	await pool.query(
		`UPDATE ${S.quoteIdent(env.ctxTable)} SET context_data = context_data - 'd' - '_outputs.d' WHERE run_id = $1`,
		[runId],
	)
	// a final status is kept by the status table's trigger: rewinding it on purpose means disabling it
	await pool.query(`ALTER TABLE ${S.quoteIdent(env.statusTable)} DISABLE TRIGGER flowcraft_status_keep_final`)
	await pool.query(
		`UPDATE ${S.quoteIdent(env.statusTable)} SET status = 'running', status_data = NULL, pending = 0 WHERE run_id = $1`,
		[runId],
	)
	await pool.query(
		`UPDATE ${S.quoteIdent(`${env.ctxTable}_nodes`)} SET state = 'idle', output = NULL, route = NULL WHERE run_id = $1 AND node_id = 'd'`,
		[runId],
	)
	await pool.query(`ALTER TABLE ${S.quoteIdent(env.statusTable)} ENABLE TRIGGER flowcraft_status_keep_final`)
	expect([...(await adapter.reconcile(runId, { staleAfterMs: 60000 }))]).toEqual(['d'])
	const admin = S.redisAdmin()
	const lockKey = `flowcraft:nodelock:${runId}:d`
	try {
		expect(await admin.get(prefix + lockKey)).toBe('reconcile')
		expect(await admin.exists(lockKey)).toBe(0)
	} finally {
		await admin.del(prefix + lockKey)
		ioredis.disconnect()
	}
	expect((await adapter.waitForRun(runId, { timeoutMs: 20000 })).status).toBe('completed')
})
