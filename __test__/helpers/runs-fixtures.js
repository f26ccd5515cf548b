'use strict'

// Blueprints and a registry shared by the run API tests (runs.test.js, cli.test.js)
// and their worker processes (runs-worker.js). Not a test file.
//
// Nodes know their own id from params.name and their run from the context key
// `testRunId` (tests start runs with it), and report each execution through
// `dependencies.record(runId, nodeId, token)` when the worker provides it.

const crypto = require('node:crypto')

const node = (id, uses, extra = {}) => ({ id, uses, ...extra, params: { name: id, ...(extra.params || {}) } })

const blueprints = {
	quick: { id: 'quick', nodes: [node('a', 'step')], edges: [] },
	chain: {
		id: 'chain',
		nodes: [node('a', 'step'), node('b', 'slow', { params: { ms: 2500 } }), node('c', 'step')],
		edges: [
			{ source: 'a', target: 'b' },
			{ source: 'b', target: 'c' },
		],
	},
	sleepy: {
		id: 'sleepy',
		nodes: [node('nap', 'slow', { params: { ms: 1500 } }), node('after', 'step')],
		edges: [{ source: 'nap', target: 'after' }],
	},
	diamond: {
		id: 'diamond',
		metadata: { version: '2' },
		nodes: [
			node('a', 'step'),
			node('b', 'step'),
			node('c', 'hold'),
			node('d', 'step', { config: { joinStrategy: 'all' } }),
		],
		edges: [
			{ source: 'a', target: 'b' },
			{ source: 'a', target: 'c' },
			{ source: 'b', target: 'd' },
			{ source: 'c', target: 'd' },
		],
	},
	fails: {
		id: 'fails',
		nodes: [node('a', 'step'), node('b', 'boom'), node('c', 'step')],
		edges: [
			{ source: 'a', target: 'b' },
			{ source: 'b', target: 'c' },
		],
	},
	// a → b → c → d: b, c and d run under a's delivery (each the successor its predecessor goes on with)
	walk: {
		id: 'walk',
		nodes: [node('a', 'step'), node('b', 'step'), node('c', 'dies'), node('d', 'step')],
		edges: [
			{ source: 'a', target: 'b' },
			{ source: 'b', target: 'c' },
			{ source: 'c', target: 'd' },
		],
	},
	approval: {
		id: 'approval',
		nodes: [node('ask', 'step'), node('gate', 'wait'), node('yes', 'step'), node('no', 'step')],
		edges: [
			{ source: 'ask', target: 'gate' },
			{ source: 'gate', target: 'yes', action: 'approve' },
			{ source: 'gate', target: 'no', action: 'reject' },
		],
	},
	cancellable: {
		id: 'cancellable',
		nodes: [node('long', 'untilAborted'), node('after', 'step')],
		edges: [{ source: 'long', target: 'after' }],
	},
	'two-starts': {
		id: 'two-starts',
		nodes: [node('s1', 'step'), node('s2', 'step'), node('j', 'step')],
		edges: [
			{ source: 's1', target: 'j' },
			{ source: 's2', target: 'j' },
		],
	},
}

function abortableSleep(ms, signal) {
	return new Promise((resolve, reject) => {
		const t = setTimeout(resolve, ms)
		signal.addEventListener(
			'abort',
			() => {
				clearTimeout(t)
				reject(signal.reason)
			},
			{ once: true },
		)
	})
}

/**
 * @param {object} [hooks]
 * @param {(nodeId: string, runId: string) => Promise<void>} [hooks.hold]  what a 'hold' node waits for
 * @param {(info: object) => void} [hooks.onAborted]  an 'untilAborted' node saw its signal abort
 * @param {(nodeId: string, runId: string) => void} [hooks.onStart]
 */
function createRegistry(hooks = {}) {
	async function begin({ params, context, dependencies }) {
		const runId = await context.get('testRunId')
		const token = crypto.randomUUID()
		if (hooks.onStart) hooks.onStart(params.name, runId)
		if (typeof dependencies.record === 'function') await dependencies.record(runId, params.name, token)
		return { runId, token }
	}
	return {
		step: async (ctx) => {
			const { token } = await begin(ctx)
			return { output: { node: ctx.params.name, token } }
		},
		slow: async (ctx) => {
			const { token } = await begin(ctx)
			await abortableSleep(ctx.params.ms, ctx.signal)
			const endedAt = Date.now()
			return { output: { node: ctx.params.name, token, endedAt } }
		},
		hold: async (ctx) => {
			const { runId, token } = await begin(ctx)
			if (hooks.hold) await hooks.hold(ctx.params.name, runId)
			return { output: { node: ctx.params.name, token } }
		},
		// in a worker process started with DIE_IN_NODE=<its name>: the process dies (SIGKILL) inside it
		dies: async (ctx) => {
			const { token } = await begin(ctx)
			if (process.env.DIE_IN_NODE === ctx.params.name) process.kill(process.pid, 'SIGKILL')
			return { output: { node: ctx.params.name, token } }
		},
		boom: async (ctx) => {
			await begin(ctx)
			throw new Error('boom')
		},
		untilAborted: async (ctx) => {
			const { runId } = await begin(ctx)
			await new Promise((resolve) => {
				const t = setTimeout(resolve, 15000)
				ctx.signal.addEventListener(
					'abort',
					() => {
						clearTimeout(t)
						resolve()
					},
					{ once: true },
				)
			})
			if (hooks.onAborted) hooks.onAborted({ runId, aborted: ctx.signal.aborted, reason: ctx.signal.reason })
			return { output: 'finished anyway' }
		},
	}
}

module.exports = { blueprints, createRegistry }
