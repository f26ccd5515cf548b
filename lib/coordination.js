'use strict'

const { loadNative, constructNative, callNative } = require('./load-native')
const { toRedisTarget } = require('./targets')
const { invalidArgument, describe } = require('./errors')

function checkKey(key) {
	if (typeof key !== 'string' || key === '')
		throw invalidArgument(`coordination key must be a non-empty string; got ${describe(key)}`)
}

function checkTtl(ttlSeconds) {
	// Redis EX/EXPIRE take whole seconds; 0 or a fraction would mean "no TTL" or an error.
	if (!Number.isInteger(ttlSeconds) || ttlSeconds <= 0) {
		throw invalidArgument(`ttlSeconds must be a positive whole number of seconds; got ${describe(ttlSeconds)}`)
	}
}

/**
 * Fan-in counters and locks in Redis, with atomic commands (one round trip each).
 * Built from an ioredis instance (its host, port, username, password, db and tls are
 * read; the instance itself is not used), a redis:// / rediss:// URL, or an options object.
 */
class RedisCoordinationStore {
	constructor(redis) {
		if (redis === undefined || redis === null) {
			throw invalidArgument('RedisCoordinationStore: pass an ioredis instance, a redis:// URL or an options object')
		}
		const { target, keyPrefix } = toRedisTarget(redis)
		const native = constructNative(loadNative().NativeRedisStore, target)
		// The adapter hands this target to the core, which then talks to Redis directly.
		Object.defineProperty(this, '_nativeTarget', {
			value: Object.freeze(keyPrefix ? { ...target, keyPrefix } : { ...target }),
		})
		Object.defineProperty(this, '_native', { value: native })
		// ioredis prepends `keyPrefix` to every key; so do we, for the same keys.
		Object.defineProperty(this, '_prefix', { value: keyPrefix })
	}

	/** Atomically adds 1 to `key`, sets its TTL, and returns the new value. */
	async increment(key, ttlSeconds) {
		checkKey(key)
		checkTtl(ttlSeconds)
		return callNative(() => this._native.increment(this._prefix + key, ttlSeconds))
	}

	/** Sets `key` only when it does not exist (SET NX EX); true when it was set. */
	async setIfNotExist(key, value, ttlSeconds) {
		checkKey(key)
		checkTtl(ttlSeconds)
		// ioredis would send String(value); objects are sent as JSON rather than "[object Object]".
		const text =
			typeof value === 'string'
				? value
				: value === null || typeof value !== 'object'
					? String(value)
					: JSON.stringify(value)
		return callNative(() => this._native.setIfNotExist(this._prefix + key, text, ttlSeconds))
	}

	async delete(key) {
		checkKey(key)
		await callNative(() => this._native.delete(this._prefix + key))
	}

	/** Resets the TTL of an existing key; false when the key does not exist. */
	async extendTTL(key, ttlSeconds) {
		checkKey(key)
		checkTtl(ttlSeconds)
		return callNative(() => this._native.extendTtl(this._prefix + key, ttlSeconds))
	}

	/** The value of `key`, or `undefined` when it does not exist. */
	async get(key) {
		checkKey(key)
		const value = await callNative(() => this._native.get(this._prefix + key))
		return value === null || value === undefined ? undefined : value
	}
}

module.exports = { RedisCoordinationStore }
