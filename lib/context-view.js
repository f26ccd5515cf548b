'use strict'

const { invalidArgument, describe } = require('./errors')
const { collected, isBig } = require('./memory')

const hasOwn = (o, k) => Object.hasOwn(o, k)

// Assignment to `__proto__` would set the prototype instead of a key; context keys
// may hold any characters, so that one is defined as a plain property.
function setOwn(obj, key, value) {
	if (key === '__proto__')
		Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true })
	else obj[key] = value
}

function checkKey(key) {
	if (typeof key !== 'string') throw invalidArgument(`context key must be a string; got ${describe(key)}`)
}

const DELETED = Symbol('deleted')

/** A context value still as its JSON text: parsed when first read. */
class RawJson {
	constructor(text) {
		this.text = text
	}
}

/**
 * `raw`, a value read on demand, when its text is the node's own input's (a node reading its
 * predecessor's output by key, say): it takes the input's text, and the text read goes at once.
 * Each is a big value's row read, which V8 holds without a copy (an external string); holding
 * both would count the value twice in the worker's peak memory (issue 12).
 */
async function shareInputText(raw, input) {
	if (takesInputText(raw, input)) await collected()
}

// (apart, so that no frame still holds the text read when V8 collects)
function takesInputText(raw, input) {
	if (!(raw instanceof RawJson) || typeof input !== 'string' || !isBig(input)) return false
	if (raw.text !== input) return false
	raw.text = input
	return true
}

/**
 * A snapshot whose values stay JSON text until read: `entries[from]` is a key,
 * `entries[from + 1]` its value's JSON, and so on. Keys keep their order; a value no
 * one reads is never parsed (a big context is not held twice in memory).
 */
function rawSnapshot(entries, from = 0) {
	const out = {}
	for (let i = from; i + 1 < entries.length; i += 2) setOwn(out, entries[i], new RawJson(entries[i + 1]))
	return out
}

/**
 * The `context` a node sees: an async view over the run's state as read once for
 * this job, plus the node's own writes. The writes are not sent anywhere here: the
 * core commits them with the node's output, in one transaction, after the node ran.
 * Values are kept by reference, as Flowcraft's own contexts do, and serialised once
 * at the end.
 *
 * In a wide run the snapshot holds the context row and only the node keys this node
 * needs (its own, its predecessors'): `lazy` then reads other nodes' keys
 * (`_outputs.<id>`, `<id>`, `_inputs.<id>`) on first use, so a job's cost does not
 * grow with the run's width. `lazy = { isNodeKey(key), read(keys | null), input? }`, `input`
 * the node's input's JSON text.
 */
class NodeContextView {
	#snapshot
	#writes = new Map() // key → value | DELETED, in order of each key's last write
	#sealed = false
	#onLateWrite
	#lazy
	#fetched = new Set()
	#complete = false

	constructor(snapshot, onLateWrite, lazy) {
		this.#snapshot = snapshot !== null && typeof snapshot === 'object' ? snapshot : {}
		this.#onLateWrite = onLateWrite
		this.#lazy = lazy
	}

	get type() {
		return 'async'
	}

	async #lookup(key) {
		if (this.#writes.has(key)) return this.#writes.get(key)
		if (!hasOwn(this.#snapshot, key) && this.#lazy && !this.#complete && !this.#fetched.has(key)) {
			if (this.#lazy.isNodeKey(key)) {
				const got = await this.#lazy.read([key])
				this.#fetched.add(key)
				if (hasOwn(got, key)) await shareInputText(got[key], this.#lazy.input)
				if (hasOwn(got, key) && !hasOwn(this.#snapshot, key)) setOwn(this.#snapshot, key, got[key])
				if (this.#writes.has(key)) return this.#writes.get(key)
			}
		}
		return hasOwn(this.#snapshot, key) ? this.#value(key) : DELETED
	}

	/** The snapshot's value of `key` (an own key), parsed on first read. */
	#value(key) {
		const v = this.#snapshot[key]
		if (!(v instanceof RawJson)) return v
		const parsed = JSON.parse(v.text)
		setOwn(this.#snapshot, key, parsed) // in place: the key keeps its position
		return parsed
	}

	#write(key, value) {
		if (this.#sealed) {
			// A timed-out attempt that kept running: its result was already sent.
			if (this.#onLateWrite) this.#onLateWrite(key)
			return
		}
		// Delete first so the key moves to the end: the core applies writes in order.
		this.#writes.delete(key)
		this.#writes.set(key, value)
	}

	async get(key) {
		checkKey(key)
		const v = await this.#lookup(key)
		return v === DELETED ? undefined : v
	}

	async set(key, value) {
		checkKey(key)
		this.#write(key, value)
	}

	async has(key) {
		checkKey(key)
		return (await this.#lookup(key)) !== DELETED
	}

	async delete(key) {
		checkKey(key)
		const existed = (await this.#lookup(key)) !== DELETED
		this.#write(key, DELETED)
		return existed
	}

	async toJSON() {
		if (this.#lazy && !this.#complete) {
			const all = await this.#lazy.read(null)
			this.#complete = true
			for (const key of Object.keys(all)) if (!hasOwn(this.#snapshot, key)) setOwn(this.#snapshot, key, all[key])
		}
		const out = {}
		for (const key of Object.keys(this.#snapshot)) if (!this.#writes.has(key)) setOwn(out, key, this.#value(key))
		for (const [key, value] of this.#writes) if (value !== DELETED) setOwn(out, key, value)
		return out
	}

	async patch(operations) {
		if (!Array.isArray(operations))
			throw invalidArgument(`patch: operations must be an array; got ${describe(operations)}`)
		// Validate all before applying any, so a bad batch changes nothing.
		for (const op of operations) {
			if (
				op === null ||
				typeof op !== 'object' ||
				typeof op.key !== 'string' ||
				(op.op !== 'set' && op.op !== 'delete')
			) {
				throw invalidArgument(
					"patch: each operation must be { op: 'set', key, value } or { op: 'delete', key } with a string key",
				)
			}
		}
		for (const op of operations) this.#write(op.key, op.op === 'set' ? op.value : DELETED)
	}

	/** Stops recording: later writes are reported through `onLateWrite` and dropped. */
	seal() {
		this.#sealed = true
	}

	/** The writes as patch operations, last write per key, in order. */
	operations() {
		const ops = []
		for (const [key, value] of this.#writes)
			ops.push(value === DELETED ? { op: 'delete', key } : { op: 'set', key, value })
		return ops
	}
}

module.exports = { NodeContextView, rawSnapshot }
