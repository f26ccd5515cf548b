'use strict'

// RedisCoordinationStore against a real Redis: every method, TTLs checked
// with ioredis, atomic concurrent increments, every way to pass the
// connection, and a refused connection that must fail fast.

const IORedis = require('ioredis')
const { RedisCoordinationStore } = require('..')
const svc = require('./helpers/services')

const res = svc.useResources()

/** An ioredis client the test owns (closed after the test). */
function userRedis(...args) {
	const r = new IORedis(...(args.length ? args : [svc.REDIS_URL]))
	r.on('error', () => {})
	res.onCleanup(() => r.quit().catch(() => r.disconnect()))
	return r
}

/** A store built from REDIS_URL and this test's key prefix. */
function fresh(label = 'coord') {
	return { store: new RedisCoordinationStore(svc.REDIS_URL), prefix: res.keyPrefix(label), redis: svc.redisAdmin() }
}

describe('RedisCoordinationStore.increment', () => {
	test('returns 1, 2, 3 … and stores the counter', async () => {
		const { store, prefix, redis } = fresh()
		const key = `${prefix}counter`
		const got = []
		for (let i = 0; i < 5; i++) got.push(await store.increment(key, 60))
		expect(got).toEqual([1, 2, 3, 4, 5])
		expect(typeof got[0]).toBe('number')
		expect(await redis.get(key)).toBe('5')
	})

	test('sets the TTL on the key', async () => {
		const { store, prefix, redis } = fresh()
		const key = `${prefix}fanin`
		await store.increment(key, 120)
		const ttl = await redis.ttl(key)
		expect(ttl).toBeGreaterThan(100)
		expect(ttl).toBeLessThanOrEqual(120)
	})

	test('sets a TTL on a counter that existed without one', async () => {
		const { store, prefix, redis } = fresh()
		const key = `${prefix}persisted`
		await redis.set(key, '41')
		expect(await redis.ttl(key)).toBe(-1)
		await expect(store.increment(key, 300)).resolves.toBe(42)
		const ttl = await redis.ttl(key)
		expect(ttl).toBeGreaterThan(250)
		expect(ttl).toBeLessThanOrEqual(300)
	})

	test('the default TTL of the protocol (3600 s) is kept', async () => {
		const { store, prefix, redis } = fresh()
		const key = `${prefix}flowcraft:fanin:run-1:join`
		await store.increment(key, 3600)
		const ttl = await redis.ttl(key)
		expect(ttl).toBeGreaterThan(3500)
		expect(ttl).toBeLessThanOrEqual(3600)
	})

	test('150 concurrent increments of one key give 150 distinct results 1..150', async () => {
		const { store, prefix, redis } = fresh()
		const key = `${prefix}concurrent`
		const N = 150
		const results = await Promise.all(Array.from({ length: N }, () => store.increment(key, 60)))
		expect([...results].sort((a, b) => a - b)).toEqual(Array.from({ length: N }, (_, i) => i + 1))
		expect(new Set(results).size).toBe(N)
		expect(await redis.get(key)).toBe(String(N))
		expect(await redis.ttl(key)).toBeGreaterThan(0)
	})

	test('150 concurrent increments from 150 store objects on one key are distinct too', async () => {
		const prefix = res.keyPrefix('coord')
		const key = `${prefix}many-stores`
		const N = 150
		const results = await Promise.all(
			Array.from({ length: N }, () => new RedisCoordinationStore(svc.REDIS_URL).increment(key, 60)),
		)
		expect([...results].sort((a, b) => a - b)).toEqual(Array.from({ length: N }, (_, i) => i + 1))
	})

	test('keys are independent, and any characters are allowed in a key', async () => {
		const { store, prefix, redis } = fresh()
		const keys = ['a', 'b', 'with space', 'ключ:🔑', `quote'"`, '*?[glob]', 'flowcraft:fanin:r:n']
		for (const k of keys) {
			await expect(store.increment(prefix + k, 60)).resolves.toBe(1)
		}
		await expect(store.increment(prefix + keys[0], 60)).resolves.toBe(2)
		for (const k of keys.slice(1)) expect(await redis.get(prefix + k)).toBe('1')
		expect(await svc.listRedisKeys(prefix)).toEqual(keys.map((k) => prefix + k).sort())
	})
})

describe('RedisCoordinationStore.setIfNotExist', () => {
	test('true the first time, false afterwards; the first value is kept', async () => {
		const { store, prefix, redis } = fresh()
		const key = `${prefix}lock`
		await expect(store.setIfNotExist(key, 'worker-1', 60)).resolves.toBe(true)
		await expect(store.setIfNotExist(key, 'worker-2', 60)).resolves.toBe(false)
		expect(await redis.get(key)).toBe('worker-1')
		await expect(store.get(key)).resolves.toBe('worker-1')
	})

	test('sets the TTL', async () => {
		const { store, prefix, redis } = fresh()
		const key = `${prefix}joinlock`
		await store.setIfNotExist(key, 'locked', 90)
		const ttl = await redis.ttl(key)
		expect(ttl).toBeGreaterThan(60)
		expect(ttl).toBeLessThanOrEqual(90)
	})

	test('a refused setIfNotExist does not touch the existing TTL or value', async () => {
		const { store, prefix, redis } = fresh()
		const key = `${prefix}held`
		await redis.set(key, 'owner', 'EX', 30)
		await expect(store.setIfNotExist(key, 'intruder', 5000)).resolves.toBe(false)
		expect(await redis.get(key)).toBe('owner')
		expect(await redis.ttl(key)).toBeLessThanOrEqual(30)
	})

	test('of 100 concurrent callers exactly one wins', async () => {
		const { store, prefix, redis } = fresh()
		const key = `${prefix}race`
		const results = await Promise.all(Array.from({ length: 100 }, (_, i) => store.setIfNotExist(key, `w${i}`, 60)))
		expect(results.filter((r) => r === true)).toHaveLength(1)
		expect(results.filter((r) => r === false)).toHaveLength(99)
		const winner = results.indexOf(true)
		expect(await redis.get(key)).toBe(`w${winner}`)
	})

	test('values with any characters are stored exactly', async () => {
		const { store, prefix } = fresh()
		const values = ['', 'plain', 'ключ 🔑', '{"json":true}', 'line\nbreak', `quote'"\\`]
		for (const [i, v] of values.entries()) {
			await expect(store.setIfNotExist(`${prefix}v${i}`, v, 60)).resolves.toBe(true)
			await expect(store.get(`${prefix}v${i}`)).resolves.toBe(v)
		}
	})
})

describe('RedisCoordinationStore.delete / get / extendTTL', () => {
	test('delete removes the key; deleting a missing key resolves', async () => {
		const { store, prefix, redis } = fresh()
		const key = `${prefix}gone`
		await store.increment(key, 60)
		await store.setIfNotExist(`${prefix}kept`, 'x', 60)
		expect(await redis.exists(key)).toBe(1)
		await expect(store.delete(key)).resolves.toBeUndefined()
		expect(await redis.exists(key)).toBe(0)
		await expect(store.get(key)).resolves.toBeUndefined()
		await expect(store.delete(key)).resolves.toBeUndefined()
		expect(await redis.get(`${prefix}kept`)).toBe('x')
		// a deleted counter starts again at 1, a deleted lock can be taken again
		await expect(store.increment(key, 60)).resolves.toBe(1)
		await store.delete(`${prefix}kept`)
		await expect(store.setIfNotExist(`${prefix}kept`, 'y', 60)).resolves.toBe(true)
	})

	test('get returns the string value, undefined (not null) when missing', async () => {
		const { store, prefix, redis } = fresh()
		await expect(store.get(`${prefix}missing`)).resolves.toBeUndefined()
		await store.increment(`${prefix}n`, 60)
		await expect(store.get(`${prefix}n`)).resolves.toBe('1')
		await redis.set(`${prefix}s`, 'value')
		await expect(store.get(`${prefix}s`)).resolves.toBe('value')
	})

	test('extendTTL on an existing key returns true and raises the TTL', async () => {
		const { store, prefix, redis } = fresh()
		const key = `${prefix}heartbeat`
		await store.setIfNotExist(key, 'alive', 10)
		expect(await redis.ttl(key)).toBeLessThanOrEqual(10)
		await expect(store.extendTTL(key, 1000)).resolves.toBe(true)
		const ttl = await redis.ttl(key)
		expect(ttl).toBeGreaterThan(900)
		expect(ttl).toBeLessThanOrEqual(1000)
		expect(await redis.get(key)).toBe('alive')
	})

	test('extendTTL on a key without a TTL gives it one', async () => {
		const { store, prefix, redis } = fresh()
		const key = `${prefix}no-ttl`
		await redis.set(key, 'v')
		await expect(store.extendTTL(key, 500)).resolves.toBe(true)
		const ttl = await redis.ttl(key)
		expect(ttl).toBeGreaterThan(400)
		expect(ttl).toBeLessThanOrEqual(500)
	})

	test('extendTTL on a missing key returns false and does not create it', async () => {
		const { store, prefix, redis } = fresh()
		const key = `${prefix}never`
		await expect(store.extendTTL(key, 100)).resolves.toBe(false)
		expect(await redis.exists(key)).toBe(0)
	})
})

describe('RedisCoordinationStore connection forms', () => {
	async function exercise(store, prefix, redis) {
		const key = `${prefix}form`
		await expect(store.increment(key, 60)).resolves.toBe(1)
		await expect(store.increment(key, 60)).resolves.toBe(2)
		expect(await redis.get(key)).toBe('2')
		expect(await redis.ttl(key)).toBeGreaterThan(0)
		await expect(store.setIfNotExist(`${prefix}lock`, 'a', 60)).resolves.toBe(true)
		await expect(store.get(`${prefix}lock`)).resolves.toBe('a')
		await expect(store.extendTTL(`${prefix}lock`, 120)).resolves.toBe(true)
		await store.delete(`${prefix}lock`)
		expect(await redis.exists(`${prefix}lock`)).toBe(0)
	}

	test('from an ioredis instance (as in the README)', async () => {
		const prefix = res.keyPrefix('coord')
		const redis = userRedis(svc.REDIS_URL)
		const store = new RedisCoordinationStore(redis)
		await exercise(store, prefix, svc.redisAdmin())
		// the user's connection is untouched and still usable
		expect(await redis.ping()).toBe('PONG')
	})

	test('from an ioredis instance built from options, not yet connected (lazyConnect)', async () => {
		const prefix = res.keyPrefix('coord')
		const redis = userRedis({ ...svc.redisOptionsFromUrl(), lazyConnect: true })
		const store = new RedisCoordinationStore(redis)
		await exercise(store, prefix, svc.redisAdmin())
	})

	test('from a redis:// URL', async () => {
		const prefix = res.keyPrefix('coord')
		await exercise(new RedisCoordinationStore(svc.REDIS_URL), prefix, svc.redisAdmin())
	})

	test('from an options object', async () => {
		const prefix = res.keyPrefix('coord')
		await exercise(new RedisCoordinationStore(svc.redisOptionsFromUrl()), prefix, svc.redisAdmin())
	})

	test('the db is read from the ioredis options (db 3 gets the keys, db 0 does not)', async () => {
		const prefix = res.keyPrefix('coord')
		const db3 = userRedis({ ...svc.redisOptionsFromUrl(), db: 3 })
		res.onCleanup(() => svc.deleteRedisKeysByPrefix(prefix, db3))
		const store = new RedisCoordinationStore(db3)
		await expect(store.increment(`${prefix}in-db3`, 60)).resolves.toBe(1)
		expect(await db3.get(`${prefix}in-db3`)).toBe('1')
		expect(await svc.redisAdmin().exists(`${prefix}in-db3`)).toBe(0)
	})

	test("an ioredis instance's keyPrefix is applied, as ioredis itself would", async () => {
		const prefix = res.keyPrefix('coord')
		const redis = userRedis({ ...svc.redisOptionsFromUrl(), keyPrefix: `${prefix}app:` })
		const store = new RedisCoordinationStore(redis)
		await expect(store.increment('counter', 60)).resolves.toBe(1)
		await expect(store.setIfNotExist('lock', 'x', 60)).resolves.toBe(true)
		// the user's own client (same keyPrefix) sees the same keys
		expect(await redis.get('counter')).toBe('1')
		await expect(store.get('lock')).resolves.toBe('x')
		expect(await svc.listRedisKeys(prefix)).toEqual([`${prefix}app:counter`, `${prefix}app:lock`])
	})

	test('the db is read from a URL path (redis://host:port/4) and from an options object', async () => {
		const prefix = res.keyPrefix('coord')
		const db4 = userRedis({ ...svc.redisOptionsFromUrl(), db: 4 })
		const db5 = userRedis({ ...svc.redisOptionsFromUrl(), db: 5 })
		res.onCleanup(() => svc.deleteRedisKeysByPrefix(prefix, db4))
		res.onCleanup(() => svc.deleteRedisKeysByPrefix(prefix, db5))
		const url = new URL(svc.REDIS_URL)
		url.pathname = '/4'
		await new RedisCoordinationStore(url.toString()).increment(`${prefix}url`, 60)
		await new RedisCoordinationStore({ ...svc.redisOptionsFromUrl(), db: 5 }).increment(`${prefix}opts`, 60)
		expect(await db4.get(`${prefix}url`)).toBe('1')
		expect(await db5.get(`${prefix}opts`)).toBe('1')
		expect(await svc.redisAdmin().exists(`${prefix}url`, `${prefix}opts`)).toBe(0)
	})
})

describe('RedisCoordinationStore errors', () => {
	test('a refused connection rejects with ERR_REDIS_CONNECT or ERR_REDIS in bounded time', async () => {
		const started = Date.now()
		const err = await svc.withTimeout(
			svc.captureError(async () => {
				const store = new RedisCoordinationStore(svc.REFUSED_REDIS_URL)
				await store.increment('t_refused:key', 60)
			}),
			20000,
			'increment() on a refused Redis connection',
		)
		expect(err).toBeInstanceOf(Error)
		expect(['ERR_REDIS_CONNECT', 'ERR_REDIS']).toContain(err.code)
		expect(err.message).toMatch(/127\.0\.0\.1/)
		expect(Date.now() - started).toBeLessThan(20000)
	})

	test('every method fails the same way on a refused connection (ioredis instance and options)', async () => {
		const targets = [
			userRedis({ host: '127.0.0.1', port: 1, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null }),
			{ host: '127.0.0.1', port: 1 },
		]
		for (const target of targets) {
			const store = new RedisCoordinationStore(target)
			const calls = [
				() => store.increment('k', 1),
				() => store.setIfNotExist('k', 'v', 1),
				() => store.delete('k'),
				() => store.extendTTL('k', 1),
				() => store.get('k'),
			]
			for (const call of calls) {
				const err = await svc.withTimeout(svc.captureError(call), 20000, 'a call on a refused Redis connection')
				expect(['ERR_REDIS_CONNECT', 'ERR_REDIS']).toContain(err.code)
			}
		}
	})

	test('wrong argument types give a TypeError-like error, not a crash', async () => {
		for (const target of [42, true, () => {}]) {
			const err = await svc.captureError(async () => {
				const store = new RedisCoordinationStore(target)
				await store.increment('k', 1)
			})
			expect(err).toBeInstanceOf(Error)
			expect(err instanceof TypeError || ['ERR_INVALID_ARGUMENT'].includes(err.code)).toBe(true)
		}
		const { store, prefix, redis } = fresh()
		for (const call of [
			() => store.increment(`${prefix}x`, 'soon'),
			() => store.setIfNotExist(`${prefix}x`, 'v', {}),
		]) {
			const err = await svc.captureError(call)
			expect(err).toBeInstanceOf(Error)
			expect(err instanceof TypeError || ['ERR_INVALID_ARGUMENT'].includes(err.code)).toBe(true)
		}
		expect(await redis.exists(`${prefix}x`)).toBe(0)
	})

	test('a key of the wrong type gives ERR_REDIS, and the store keeps working', async () => {
		const { store, prefix, redis } = fresh()
		await redis.set(`${prefix}text`, 'not a number')
		const err = await svc.captureError(() => store.increment(`${prefix}text`, 60))
		expect(err.code).toBe('ERR_REDIS')
		await expect(store.increment(`${prefix}ok`, 60)).resolves.toBe(1)
	})
})
