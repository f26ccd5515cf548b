'use strict'

// Blueprints, a registry and a payload generator for the big-payload memory test
// (big-payload.test.js) and its worker process (big-worker.js). Not a test file.
//
// The payload is an array of records of about 1 KB each (numbers, short strings, an
// array and one long string): the shape of a typical large JSON document. Record keys
// are in the order PostgreSQL's jsonb keeps them (by length, then bytes), so the
// value's JSON text is the same after a round trip through jsonb.

const crypto = require('node:crypto')

const RECORD_TEXT = 960

/** About `bytes` of JSON: an array of records, with non-ASCII names when `unicode`. Deterministic. */
function bigValue(bytes, unicode = false) {
	const out = []
	let size = 2
	for (let i = 0; size < bytes; i++) {
		const seed = crypto.createHash('sha256').update(String(i)).digest('hex')
		const record = {
			i,
			n: i * 1.5,
			name: unicode ? `item-${i}-é✓` : `item-${i}`,
			tags: ['a', `t${i % 7}`],
			text: seed.repeat(15),
		}
		out.push(record)
		size += RECORD_TEXT + 60 + String(i).length * 3
	}
	return out
}

/**
 * A digest of a value's JSON text (length and sha256), small enough to compare anywhere.
 * An array is hashed element by element, so the node computing it adds little memory.
 */
function digest(value) {
	const hash = crypto.createHash('sha256')
	let bytes = 0
	const add = (text) => {
		hash.update(text)
		bytes += Buffer.byteLength(text)
	}
	if (Array.isArray(value)) {
		add('[')
		for (let i = 0; i < value.length; i++) add(i ? `,${JSON.stringify(value[i])}` : JSON.stringify(value[i]))
		add(']')
	} else add(JSON.stringify(value))
	return { bytes, sha256: hash.digest('hex') }
}

const blueprints = {
	// a node returns the big value; its successor reads it from the context
	produce: {
		id: 'produce',
		nodes: [
			{ id: 'make', uses: 'make' },
			{ id: 'check', uses: 'check', params: { key: 'make' } },
		],
		edges: [{ source: 'make', target: 'check' }],
	},
	// a node returns a value of `bytes` (non-ASCII when `unicode`); its successor reads it as
	// its input and by key, and a node that never reads its input runs beside it
	relay: {
		id: 'relay',
		nodes: [
			{ id: 'make', uses: 'makeMixed' },
			{ id: 'both', uses: 'both', params: { key: 'make' } },
			{ id: 'ignore', uses: 'ignore' },
		],
		edges: [
			{ source: 'make', target: 'both' },
			{ source: 'make', target: 'ignore' },
		],
	},
	// the run starts with the big value in its context; one node reads it
	carry: {
		id: 'carry',
		nodes: [{ id: 'check', uses: 'check', params: { key: 'blob' } }],
		edges: [],
	},
}

function createRegistry() {
	return {
		make: async ({ context }) => ({ output: bigValue(Number(await context.get('bytes'))) }),
		check: async ({ context, params }) => ({ output: digest(await context.get(params.key)) }),
		makeMixed: async ({ context }) => ({
			output: bigValue(Number(await context.get('bytes')), (await context.get('unicode')) === true),
		}),
		both: async (ctx) => {
			const input = digest(ctx.input)
			const byKey = digest(await ctx.context.get(ctx.params.key))
			return { output: { input, byKey, again: digest(ctx.input) } }
		},
		ignore: async () => ({ output: 'ran' }),
	}
}

module.exports = { bigValue, digest, blueprints, createRegistry }
