'use strict'

const { loadNative, constructNative, callNative } = require('./load-native')
const { toPgTarget } = require('./targets')
const { toJsonText, fromJsonText } = require('./json')
const { invalidArgument, describe } = require('./errors')
const { checkTableName, checkRunId } = require('./options')

function checkKey(key) {
	if (typeof key !== 'string') throw invalidArgument(`context key must be a string; got ${describe(key)}`)
	return key
}

/**
 * The state of one workflow run, stored as one JSONB row (`run_id`, `context_data`)
 * of a PostgreSQL table. Every call is one statement in the native core; the
 * connection pool is shared by every context with the same connection target.
 */
class PostgresContext {
	constructor(runId, options) {
		checkRunId(runId, 'PostgresContext: runId')
		if (options === null || typeof options !== 'object') {
			throw invalidArgument('PostgresContext: options { client, tableName } are required')
		}
		const { client, tableName } = options
		if (client === undefined || client === null) {
			throw invalidArgument(
				'PostgresContext: options.client is required (a pg.Client, pg.Pool, connection string or pg config)',
			)
		}
		checkTableName(tableName, 'PostgresContext: options.tableName')
		const { target, passwordFn } = toPgTarget(client)

		Object.defineProperty(this, 'type', { value: 'async', enumerable: true })
		Object.defineProperty(this, 'runId', { value: runId, enumerable: true })
		Object.defineProperty(this, 'tableName', { value: tableName, enumerable: true })
		if (passwordFn) {
			// pg's password function may be async: connect lazily, on first use.
			let pending
			this._native = () =>
				(pending ??= Promise.resolve()
					.then(passwordFn)
					.then((password) =>
						constructNative(loadNative().NativeContext, { ...target, password: String(password) }, tableName, runId),
					)
					.catch((err) => {
						pending = undefined // let a later call try again
						throw err
					}))
		} else {
			// Constructed now so that a bad target or table name fails here, synchronously.
			const native = constructNative(loadNative().NativeContext, target, tableName, runId)
			this._native = () => native
		}
		Object.defineProperty(this, '_native', { enumerable: false })
	}

	/** The value stored under `key`, or `undefined` when the key is missing. */
	async get(key) {
		checkKey(key)
		const native = await this._native()
		return fromJsonText(await callNative(() => native.get(key)))
	}

	/** Stores `value` (anything JSON can hold; `undefined` is stored as `null`). */
	async set(key, value) {
		checkKey(key)
		const text = toJsonText(value, `PostgresContext.set: value for key ${JSON.stringify(key)}`)
		const native = await this._native()
		await callNative(() => native.set(key, text))
	}

	async has(key) {
		checkKey(key)
		const native = await this._native()
		return callNative(() => native.has(key))
	}

	/** Removes `key`; true only when it existed. */
	async delete(key) {
		checkKey(key)
		const native = await this._native()
		return callNative(() => native.delete(key))
	}

	/** The whole context as an object (`{}` when the run has no row yet). */
	async toJSON() {
		const native = await this._native()
		return JSON.parse(await callNative(() => native.toJson()))
	}

	/** Applies `set` / `delete` operations atomically, in order (the last operation on a key wins). */
	async patch(operations) {
		const text = patchText(operations, 'PostgresContext.patch')
		if (text === '[]') return
		const native = await this._native()
		await callNative(() => native.patch(text))
	}
}

/** Validates patch operations and returns them as JSON text, naming the bad key on error. */
function patchText(operations, where) {
	if (!Array.isArray(operations))
		throw invalidArgument(`${where}: operations must be an array; got ${describe(operations)}`)
	const parts = []
	for (let i = 0; i < operations.length; i++) {
		const op = operations[i]
		if (op === null || typeof op !== 'object' || typeof op.key !== 'string') {
			throw invalidArgument(
				`${where}: operation ${i} must be { op: 'set', key, value } or { op: 'delete', key } with a string key`,
			)
		}
		if (op.op === 'set') {
			const value = toJsonText(op.value, `${where}: value for key ${JSON.stringify(op.key)}`)
			parts.push(`{"op":"set","key":${JSON.stringify(op.key)},"value":${value}}`)
		} else if (op.op === 'delete') {
			parts.push(`{"op":"delete","key":${JSON.stringify(op.key)}}`)
		} else {
			throw invalidArgument(`${where}: operation ${i} has op ${describe(op.op)}; expected 'set' or 'delete'`)
		}
	}
	return `[${parts.join(',')}]`
}

module.exports = { PostgresContext }
