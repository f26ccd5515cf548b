'use strict'
// Workflows whose event stream is compared with FlowRuntime's (events.test.js). Each
// registry is a function of the flowcraft module, so the reference can build
// FlowcraftError; the adapter side passes the same module. Not a test file.

/** A node that fails on its first `failures` attempts of a run, then succeeds. */
function flaky(failures) {
	const seen = new Map()
	return async ({ context }) => {
		const tag = await context.get('tag')
		const n = (seen.get(tag) ?? 0) + 1
		seen.set(tag, n)
		if (n <= failures) throw new Error(`attempt ${n} fails`)
		return { output: `ok after ${n}` }
	}
}

const scenarios = [
	{
		name: 'retry-fallback-chain',
		// a → b (retried, then fails into its fallback c) → d
		blueprint: {
			id: 'ev-retry-fallback',
			nodes: [
				{ id: 'a', uses: 'ok' },
				{ id: 'b', uses: 'fail', config: { maxRetries: 2, fallback: 'c' } },
				{ id: 'c', uses: 'ok' },
				{ id: 'd', uses: 'flaky' },
			],
			edges: [
				{ source: 'a', target: 'b' },
				{ source: 'b', target: 'd' },
			],
		},
		registry: () => ({
			ok: async ({ input }) => ({ output: input ?? 'start' }),
			fail: async () => {
				throw new Error('b always fails')
			},
			flaky: flaky(0),
		}),
	},
	{
		name: 'failure',
		// a → b (retried once more, then fails: no fallback) ; the run fails
		blueprint: {
			id: 'ev-failure',
			nodes: [
				{ id: 'a', uses: 'ok' },
				{ id: 'b', uses: 'flaky', config: { maxRetries: 2 } },
				{ id: 'c', uses: 'ok' },
			],
			edges: [
				{ source: 'a', target: 'b' },
				{ source: 'b', target: 'c' },
			],
		},
		registry: () => ({
			ok: async ({ input }) => ({ output: input ?? 'start' }),
			flaky: flaky(5),
		}),
	},
	{
		name: 'fatal',
		// a FlowcraftError with isFatal: no retry, no fallback
		blueprint: {
			id: 'ev-fatal',
			nodes: [
				{ id: 'a', uses: 'fatal', config: { maxRetries: 3, fallback: 'b' } },
				{ id: 'b', uses: 'ok' },
			],
			edges: [],
		},
		registry: (fc) => ({
			ok: async () => ({ output: 'fallback ran' }),
			fatal: async () => {
				throw new fc.FlowcraftError('stop now', { isFatal: true })
			},
		}),
	},
]

/** The part of an event the comparison looks at. */
function summary(e) {
	const p = e.payload ?? {}
	const out = { type: e.type }
	for (const k of ['nodeId', 'fallback', 'attempt', 'status']) if (p[k] !== undefined) out[k] = p[k]
	return out
}

module.exports = { scenarios, summary }
