'use strict'
/**
 * Differential scenarios: each one is run by flowcraft's in-memory FlowRuntime
 * (reference.mjs) and by our RabbitMqAdapter (worker-process.js + client.js),
 * and the final status plus every `_outputs.*` key must agree.
 *
 * Scenario shape:
 *   name            unique, also the suffix of the blueprint id
 *   group           runtime profile: scenarios of one group share worker processes
 *                   and one queue. A scenario that brings its own evaluator or
 *                   middleware gets its own group, because those are adapter-wide
 *                   runtimeOptions (they would otherwise apply to every blueprint).
 *   blueprint       a Flowcraft WorkflowBlueprint (plain JSON)
 *   registry(fc)    builds the node registry; `fc` is the imported `flowcraft` module
 *                   (for BaseNode). Called once per process, so closures are per process.
 *   evaluator()     optional: builds runtimeOptions.evaluator
 *   middleware()    optional: builds runtimeOptions.middleware
 *   children        optional: the blueprints its subflow nodes run (given to the runtime too)
 *   initialContext  optional initial context. The harness adds `runTag` (unique per run)
 *                   so in-process counters (retries) can be keyed per run.
 *   compareContext  optional: context keys whose final presence and value must agree too
 *   resumes         optional: what resumes the run each time it stops, awaiting, at a `wait`
 *                   node, in order (diff/builtins.js has the webhook scenarios):
 *                     { node, action, output }     ours: resumeWithAction(run, action, output);
 *                                                  the reference: resume() of `node` with
 *                                                  { output, action }
 *                     { node, webhook, via, request, secretHeaders?, repeat? }
 *                                                  a call to the webhook node `webhook`: ours
 *                                                  delivers it through createWebhookHandler
 *                                                  (via 'http': a POST of request.body with
 *                                                  request.headers and secretHeaders) or
 *                                                  adapter.deliverWebhook (via 'deliver'),
 *                                                  `repeat` times at once (one is delivered, the
 *                                                  others are duplicates); the reference
 *                                                  resume()s `node` with action 'webhook' and
 *                                                  the output the call gives (builtins.js
 *                                                  `deliveryOutput`)
 *   runIdInOutputs  optional reason: outputs carry the run id (a webhook's url, event): both
 *                   sides replace it with '<run id>' (FlowRuntime's is a random executionId)
 *   intended        what FlowRuntime is expected to produce (self-check of the scenario)
 *   expect          deliberate differences between FlowRuntime and our adapter, each
 *                   with its reason:
 *                     reasonIncludes   failed runs: the adapter's status reason must
 *                                      contain this (a string, or an array of strings
 *                                      that must all appear; FlowRuntime wraps the
 *                                      error as "Node 'x' execution failed")
 *                     status           the adapter's status when it deliberately differs
 *                                      from FlowRuntime's (README, "Differences from
 *                                      FlowRuntime")
 *                     ignoreOutputs    { '_outputs.x': 'reason' }: keys left out of the
 *                                      comparison (none needed so far)
 *                     ignoreFields     { '_outputs.x': { field: 'reason' } }: fields of an
 *                                      output value left out on both sides
 *                     addedOutputs     { '_outputs.x': value }: outputs only the adapter
 *                                      has, each asserted exactly (`notes` says why)
 *                     notes            prose on a deliberate difference
 *
 * A node output that is `undefined` (a node returning `{}` or nothing) is compared as
 * FlowRuntime's context serialises it: the `_outputs.<id>` key is absent.
 */

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const jitter = (max = 25) => sleep(Math.floor(Math.random() * max))

/** Per-process attempt counter keyed by run and node (retries run in-process). */
function attemptCounter() {
	const counts = new Map()
	return async (ctx, nodeId) => {
		const key = `${await ctx.context.get('runTag')}:${nodeId}`
		const n = (counts.get(key) || 0) + 1
		counts.set(key, n)
		return n
	}
}

/** Evaluator accepting `path`, `!path` and `path <op> number` (op in > < >= <= === !==). */
class MiniEvaluator {
	resolve(path, data) {
		if (!/^[A-Za-z0-9_$.]+$/.test(path)) return undefined
		const parts = path.split('.')
		if (data == null || !Object.hasOwn(data, parts[0])) return undefined
		let cur = data[parts[0]]
		for (let i = 1; i < parts.length; i++) {
			if (cur === null || cur === undefined) return undefined
			cur = cur[parts[i]]
		}
		return cur
	}
	evaluate(expression, data) {
		const expr = String(expression).trim()
		if (expr.startsWith('!')) return !this.evaluate(expr.slice(1), data)
		const m = /^([A-Za-z0-9_$.]+)\s*(>=|<=|===|!==|>|<)\s*(-?\d+(?:\.\d+)?)$/.exec(expr)
		if (m) {
			const left = this.resolve(m[1], data)
			const right = Number(m[3])
			switch (m[2]) {
				case '>':
					return left > right
				case '<':
					return left < right
				case '>=':
					return left >= right
				case '<=':
					return left <= right
				case '===':
					return left === right
				case '!==':
					return left !== right
			}
		}
		return this.resolve(expr, data)
	}
}

// Middleware of the issue 9 scenarios (items 1, and middleware stacks). They run in the
// 'middleware' group, beside that group's own scenario, without more worker processes: every
// hook acts only on the nodes of its scenario (by node id) and lets the others through, and
// the scenarios share this one factory, so it is installed once.
const MWF_NODES = new Set(['ok', 'bad', 'BadClass', 'never']) // middleware-failing-node
const MWFB_NODES = new Set(['shaky', 'backup', 'tail']) // middleware-fallback-node: no aroundNode
const MWS_NODES = new Set(['plain', 'cached', 'guarded', 'afterPlain']) // middleware-stack

/** before/after hooks that record what they saw around a node. */
function recorder(scope) {
	return {
		beforeNode: async (ctx, nodeId) => {
			if (!scope.has(nodeId)) return
			await ctx.set(`mwf.before.${nodeId}`, ((await ctx.get(`mwf.before.${nodeId}`)) ?? 0) + 1)
		},
		afterNode: async (ctx, nodeId, result, error) => {
			if (!scope.has(nodeId)) return
			await ctx.set(`mwf.after.${nodeId}`, { output: result?.output ?? null, error: error ? error.message : null })
		},
	}
}

// FlowRuntime turns a fallback into a failure under any aroundNode hook that calls next()
// (a deliberate difference, README), so the fallback scenario has a factory of its own
// without one; in our worker group both factories are installed, and the fallback runs.
function fallbackRecorderMiddleware() {
	return [recorder(MWFB_NODES)]
}

function issue9Middleware() {
	const note = async (ctx, nodeId, entry) => {
		const key = `ms.order.${nodeId}`
		await ctx.set(key, [...((await ctx.get(key)) ?? []), entry])
	}
	return [
		// records what it saw around a node (item 1: writes around failing nodes)
		recorder(MWF_NODES),
		{
			aroundNode: async (ctx, nodeId, next) => {
				if (!MWF_NODES.has(nodeId)) return next()
				try {
					const result = await next()
					await ctx.set(`mwf.around.${nodeId}`, 'left')
					return result
				} catch (e) {
					await ctx.set(`mwf.around.${nodeId}`, 'threw')
					throw e
				}
			},
		},
		// a stack: its order, a short-circuit, a throwing hook
		{
			beforeNode: (ctx, nodeId) => MWS_NODES.has(nodeId) && note(ctx, nodeId, 'before1'),
			afterNode: (ctx, nodeId, result, error) =>
				MWS_NODES.has(nodeId) && note(ctx, nodeId, `after1:${error ? 'error' : (result?.output ?? 'none')}`),
		},
		{
			aroundNode: async (ctx, nodeId, next) => {
				if (!MWS_NODES.has(nodeId)) return next()
				await note(ctx, nodeId, 'outer:in')
				try {
					return await next()
				} finally {
					await note(ctx, nodeId, 'outer:out')
				}
			},
		},
		{
			// short-circuits one node: it never runs, the hook's result is its result
			aroundNode: async (ctx, nodeId, next) => {
				if (!MWS_NODES.has(nodeId)) return next()
				if (nodeId === 'cached') return { output: 'from-cache' }
				await note(ctx, nodeId, 'inner:in')
				return next()
			},
		},
		{
			beforeNode: async (ctx, nodeId) => {
				if (!MWS_NODES.has(nodeId)) return
				await note(ctx, nodeId, 'before2')
				if (nodeId === 'guarded') throw new Error('guard refused the node')
			},
			afterNode: (ctx, nodeId, _result, error) =>
				MWS_NODES.has(nodeId) && note(ctx, nodeId, `after2:${error ? error.message : 'ok'}`),
		},
	]
}

/** The context keys issue9Middleware records for these nodes, plus `extra`. */
function mwfKeys(nodeIds, extra = []) {
	return [...nodeIds.flatMap((id) => ['before', 'after', 'around'].map((h) => `mwf.${h}.${id}`)), ...extra]
}

/** 300 short strings: a value of about 6 KB, over the worker's 2 KB limit for values it reads at once. */
const bigRows = () => Array.from({ length: 300 }, (_, i) => `row-${i}-${'v'.repeat(12)}`)

const scenarios = [
	// ---------------------------------------------------------------- linear chain
	{
		name: 'linear-chain',
		group: 'default',
		blueprint: {
			id: 'diff-linear-chain',
			metadata: { version: 'v1' },
			nodes: [
				{ id: 'start', uses: 'chain.start' },
				{ id: 'double', uses: 'chain.double' },
				{ id: 'label', uses: 'chain.label' },
			],
			edges: [
				{ source: 'start', target: 'double' },
				{ source: 'double', target: 'label' },
			],
		},
		registry: () => ({
			'chain.start': async (ctx) => ({ output: (await ctx.context.get('seed')) + 1 }),
			'chain.double': async (ctx) => {
				await jitter()
				return { output: ctx.input * 2 }
			},
			'chain.label': async (ctx) => ({ output: `value=${ctx.input}` }),
		}),
		initialContext: { seed: 4 },
		intended: {
			status: 'completed',
			outputs: { '_outputs.start': 5, '_outputs.double': 10, '_outputs.label': 'value=10' },
		},
	},

	// ------------------------------------------------- fan-out / fan-in 'all' (diamond)
	{
		name: 'fan-in-all',
		group: 'default',
		blueprint: {
			id: 'diff-fan-in-all',
			nodes: [
				{ id: 'start', uses: 'fan.start' },
				{ id: 'b1', uses: 'fan.add', params: { k: 1 } },
				{ id: 'b2', uses: 'fan.add', params: { k: 2 } },
				{ id: 'b3', uses: 'fan.add', params: { k: 3 } },
				{ id: 'b4', uses: 'fan.add', params: { k: 4 } },
				// the join's own input (`_inputs.join`) is whichever predecessor wrote last in
				// both engines, so the join reads its predecessors through an `inputs` mapping
				{ id: 'join', uses: 'fan.sum', inputs: { a: 'b1', b: 'b2', c: 'b3', d: 'b4' } },
				{ id: 'final', uses: 'fan.final' },
			],
			edges: [
				{ source: 'start', target: 'b1' },
				{ source: 'start', target: 'b2' },
				{ source: 'start', target: 'b3' },
				{ source: 'start', target: 'b4' },
				{ source: 'b1', target: 'join' },
				{ source: 'b2', target: 'join' },
				{ source: 'b3', target: 'join' },
				{ source: 'b4', target: 'join' },
				{ source: 'join', target: 'final' },
			],
		},
		registry: () => ({
			'fan.start': async () => ({ output: 10 }),
			'fan.add': async (ctx) => {
				await jitter(40)
				return { output: ctx.input + ctx.params.k }
			},
			'fan.sum': async (ctx) => {
				const { a, b, c, d } = ctx.input
				return { output: { parts: [a, b, c, d], sum: a + b + c + d } }
			},
			'fan.final': async (ctx) => ({ output: `total:${ctx.input.sum}` }),
		}),
		intended: {
			status: 'completed',
			outputs: {
				'_outputs.start': 10,
				'_outputs.b1': 11,
				'_outputs.b2': 12,
				'_outputs.b3': 13,
				'_outputs.b4': 14,
				'_outputs.join': { parts: [11, 12, 13, 14], sum: 50 },
				'_outputs.final': 'total:50',
			},
		},
	},

	// ----------------------------------------------------------------------- 'any' join
	{
		name: 'any-join',
		group: 'default',
		blueprint: {
			id: 'diff-any-join',
			nodes: [
				{ id: 'start', uses: 'any.start' },
				{ id: 'p1', uses: 'any.branch' },
				{ id: 'p2', uses: 'any.branch' },
				{ id: 'p3', uses: 'any.branch' },
				{ id: 'first', uses: 'any.first', config: { joinStrategy: 'any' } },
				{ id: 'tail', uses: 'any.tail' },
			],
			edges: [
				{ source: 'start', target: 'p1' },
				{ source: 'start', target: 'p2' },
				{ source: 'start', target: 'p3' },
				{ source: 'p1', target: 'first' },
				{ source: 'p2', target: 'first' },
				{ source: 'p3', target: 'first' },
				{ source: 'first', target: 'tail' },
			],
		},
		registry: () => ({
			'any.start': async () => ({ output: 'go' }),
			'any.branch': async (ctx) => {
				await jitter(60)
				return { output: `from-${ctx.params.name ?? 'branch'}` }
			},
			// independent of which predecessor arrived: only checks that it got one of them
			'any.first': async (ctx) => ({ output: { gotBranchOutput: ctx.input === 'from-branch' } }),
			'any.tail': async (ctx) => ({ output: ctx.input.gotBranchOutput ? 'tail-ok' : 'tail-bad' }),
		}),
		intended: {
			status: 'completed',
			outputs: {
				'_outputs.start': 'go',
				'_outputs.p1': 'from-branch',
				'_outputs.p2': 'from-branch',
				'_outputs.p3': 'from-branch',
				'_outputs.first': { gotBranchOutput: true },
				'_outputs.tail': 'tail-ok',
			},
		},
		expect: {
			notes:
				"Deliberate difference (DESIGN.md step 7): our adapter runs an 'any' join once, on the FIRST " +
				"arrival, with that arrival's input; FlowRuntime runs it once per batch in which a predecessor " +
				'completed, with the last `_inputs.first` written. The join output does not depend on which ' +
				'predecessor it saw, so outputs still compare equal.',
		},
	},

	// -------------------------------------------------------------------- action routing
	{
		name: 'action-routing',
		group: 'default',
		blueprint: {
			id: 'diff-action-routing',
			metadata: { version: '2.0.0' },
			nodes: [
				{ id: 'start', uses: 'act.start' },
				{ id: 'r1', uses: 'act.router', params: { action: 'approve' } },
				{ id: 'approved1', uses: 'act.leaf' },
				{ id: 'rejected1', uses: 'act.leaf' },
				{ id: 'default1', uses: 'act.leaf' },
				{ id: 'r2', uses: 'act.router', params: { action: 'escalate' } },
				{ id: 'approved2', uses: 'act.leaf' },
				{ id: 'rejected2', uses: 'act.leaf' },
				{ id: 'default2', uses: 'act.leaf' },
				{ id: 'r4', uses: 'act.router', params: { action: 'approve' } },
				{ id: 'approved4', uses: 'act.leaf' },
				{ id: 'default4', uses: 'act.leaf' },
				{ id: 'r3', uses: 'act.router', params: {} },
				{ id: 'approved3', uses: 'act.leaf' },
				{ id: 'default3', uses: 'act.leaf' },
			],
			edges: [
				{ source: 'start', target: 'r1' },
				{ source: 'start', target: 'r2' },
				{ source: 'start', target: 'r3' },
				{ source: 'start', target: 'r4' },
				// r1 returns action 'approve': only the 'approve' edge is taken (not the default)
				{ source: 'r1', target: 'approved1', action: 'approve' },
				{ source: 'r1', target: 'rejected1', action: 'reject' },
				{ source: 'r1', target: 'default1' },
				// r2 returns action 'escalate' with no edge for it: the action-less edge is taken
				{ source: 'r2', target: 'approved2', action: 'approve' },
				{ source: 'r2', target: 'rejected2', action: 'reject' },
				{ source: 'r2', target: 'default2' },
				// r4 returns action 'approve' but the 'approve' edge's condition is false: no
				// action edge is taken, so the action-less edge is
				{ source: 'r4', target: 'approved4', action: 'approve', condition: 'result.output.nope' },
				{ source: 'r4', target: 'default4' },
				// r3 returns no action: only action-less edges are candidates
				{ source: 'r3', target: 'approved3', action: 'approve' },
				{ source: 'r3', target: 'default3' },
			],
		},
		registry: () => ({
			'act.start': async () => ({ output: 's' }),
			'act.router': async (ctx) => {
				const result = { output: `routed:${ctx.params.action ?? 'none'}` }
				if (ctx.params.action) result.action = ctx.params.action
				return result
			},
			'act.leaf': async (ctx) => ({ output: `leaf<-${ctx.input}` }),
		}),
		intended: {
			status: 'completed',
			outputs: {
				'_outputs.start': 's',
				'_outputs.r1': 'routed:approve',
				'_outputs.approved1': 'leaf<-routed:approve',
				'_outputs.r2': 'routed:escalate',
				'_outputs.default2': 'leaf<-routed:escalate',
				'_outputs.r4': 'routed:approve',
				'_outputs.default4': 'leaf<-routed:approve',
				'_outputs.r3': 'routed:none',
				'_outputs.default3': 'leaf<-routed:none',
			},
		},
	},

	// ------------------------------------------------------ conditions on untaken branches
	{
		name: 'conditions',
		group: 'default',
		blueprint: {
			id: 'diff-conditions',
			nodes: [
				{ id: 'check1', uses: 'cond.check', params: { ok: true } },
				{ id: 'yes1', uses: 'cond.leaf' },
				{ id: 'always1', uses: 'cond.leaf' },
				{ id: 'check2', uses: 'cond.check', params: { ok: false } },
				{ id: 'yes2', uses: 'cond.leaf' },
				{ id: 'yes2tail', uses: 'cond.leaf' },
				{ id: 'yes2tail2', uses: 'cond.leaf' },
				{ id: 'always2', uses: 'cond.leaf' },
				{ id: 'flagged', uses: 'cond.leaf' },
				{ id: 'missing', uses: 'cond.leaf' },
				{ id: 'big', uses: 'cond.leaf' },
			],
			edges: [
				{ source: 'check1', target: 'yes1', condition: 'result.output.ok' },
				{ source: 'check1', target: 'always1' },
				// the untaken branch has successors of its own: they must not hold the run open
				{ source: 'check2', target: 'yes2', condition: 'result.output.ok' },
				{ source: 'yes2', target: 'yes2tail' },
				{ source: 'yes2tail', target: 'yes2tail2' },
				{ source: 'check2', target: 'always2' },
				// conditions see the context keys beside `result`
				{ source: 'check1', target: 'flagged', condition: 'flag' },
				{ source: 'check1', target: 'missing', condition: 'nothing.here' },
				{ source: 'check2', target: 'big', condition: 'result.output.size' },
			],
		},
		registry: () => ({
			'cond.check': async (ctx) => ({ output: { ok: ctx.params.ok, size: ctx.params.ok ? 0 : 3 } }),
			'cond.leaf': async (ctx) => ({ output: { saw: ctx.input ?? null } }),
		}),
		initialContext: { flag: true },
		intended: {
			status: 'completed',
			outputs: {
				'_outputs.check1': { ok: true, size: 0 },
				'_outputs.yes1': { saw: { ok: true, size: 0 } },
				'_outputs.always1': { saw: { ok: true, size: 0 } },
				'_outputs.flagged': { saw: { ok: true, size: 0 } },
				'_outputs.check2': { ok: false, size: 3 },
				'_outputs.always2': { saw: { ok: false, size: 3 } },
				'_outputs.big': { saw: { ok: false, size: 3 } },
			},
		},
	},

	// ------------------------------------------ an untaken conditional branch before a join
	{
		name: 'untaken-branch-before-join',
		group: 'default',
		blueprint: {
			id: 'diff-untaken-branch-before-join',
			nodes: [
				{ id: 'start', uses: 'ubj.start' },
				{ id: 'maybe', uses: 'ubj.leaf' },
				{ id: 'sure', uses: 'ubj.leaf' },
				{ id: 'join', uses: 'ubj.leaf' },
			],
			edges: [
				{ source: 'start', target: 'maybe', condition: 'result.output.ok' },
				{ source: 'start', target: 'sure' },
				{ source: 'maybe', target: 'join' },
				{ source: 'sure', target: 'join' },
			],
		},
		registry: () => ({
			'ubj.start': async () => ({ output: { ok: false } }),
			'ubj.leaf': async (ctx) => ({ output: `leaf:${JSON.stringify(ctx.input ?? null)}` }),
		}),
		intended: {
			// FlowRuntime: the 'all' join never becomes ready (its predecessor 'maybe' never
			// completes), and the run still completes.
			status: 'completed',
			outputs: { '_outputs.start': { ok: false }, '_outputs.sure': 'leaf:{"ok":false}' },
		},
	},

	// -------------------------------------------------------------------- edge transforms
	{
		name: 'transform',
		group: 'default',
		blueprint: {
			id: 'diff-transform',
			nodes: [
				{ id: 'src', uses: 'tr.src' },
				{ id: 't1', uses: 'tr.double' },
				{ id: 't2', uses: 'tr.echo' },
				{ id: 't3', uses: 'tr.echo' },
				{ id: 't4', uses: 'tr.echo' },
			],
			edges: [
				{ source: 'src', target: 't1', transform: 'input.value' },
				{ source: 'src', target: 't2', transform: 'context.factor' },
				{ source: 'src', target: 't3', transform: 'input.nested.list' },
				{ source: 'src', target: 't4' },
			],
		},
		registry: () => ({
			'tr.src': async () => ({ output: { value: 7, nested: { list: [1, 2, 3] }, label: 'x' } }),
			'tr.double': async (ctx) => ({ output: ctx.input * 2 }),
			'tr.echo': async (ctx) => ({ output: { got: ctx.input ?? null } }),
		}),
		initialContext: { factor: 3 },
		intended: {
			status: 'completed',
			outputs: {
				'_outputs.src': { value: 7, nested: { list: [1, 2, 3] }, label: 'x' },
				'_outputs.t1': 14,
				'_outputs.t2': { got: 3 },
				'_outputs.t3': { got: [1, 2, 3] },
				'_outputs.t4': { got: { value: 7, nested: { list: [1, 2, 3] }, label: 'x' } },
			},
		},
	},

	// -------------------------------------------------- `inputs` mappings (string and object)
	{
		name: 'inputs-mapping',
		group: 'default',
		blueprint: {
			id: 'diff-inputs-mapping',
			nodes: [
				{ id: 'a', uses: 'in.const', params: { value: 1 } },
				{ id: 'b', uses: 'in.const', params: { value: 2 } },
				// string form naming a node: reads `_outputs.a`
				{ id: 'fromNode', uses: 'in.echo', inputs: 'a' },
				// string form naming a plain context key (no `_outputs.cfg` exists)
				{ id: 'fromKey', uses: 'in.echo', inputs: 'cfg' },
				// string form starting with '_': reads that context key as is
				{ id: 'fromUnderscore', uses: 'in.echo', inputs: '_seed' },
				// object form, each field resolved the same way
				{ id: 'obj', uses: 'in.echo', inputs: { x: 'a', y: 'b', c: 'cfg', s: '_seed', o: '_outputs.b' } },
			],
			edges: [
				{ source: 'a', target: 'fromNode' },
				{ source: 'b', target: 'fromKey' },
				{ source: 'b', target: 'fromUnderscore' },
				{ source: 'a', target: 'obj' },
				{ source: 'b', target: 'obj' },
			],
		},
		registry: () => ({
			'in.const': async (ctx) => {
				await jitter()
				return { output: ctx.params.value }
			},
			'in.echo': async (ctx) => ({ output: { got: ctx.input ?? null } }),
		}),
		initialContext: { cfg: 'C', _seed: 5 },
		intended: {
			status: 'completed',
			outputs: {
				'_outputs.a': 1,
				'_outputs.b': 2,
				'_outputs.fromNode': { got: 1 },
				'_outputs.fromKey': { got: 'C' },
				'_outputs.fromUnderscore': { got: 5 },
				'_outputs.obj': { got: { x: 1, y: 2, c: 'C', s: 5, o: 2 } },
			},
		},
	},

	// ------------------------------------------------------------------------- class nodes
	{
		name: 'class-node',
		group: 'default',
		blueprint: {
			id: 'diff-class-node',
			nodes: [
				{ id: 'start', uses: 'cls.start' },
				{ id: 'mult', uses: 'cls.Multiply', params: { factor: 7 } },
				{ id: 'after', uses: 'cls.after' },
				{ id: 'shaky', uses: 'cls.Shaky', config: { maxRetries: 2, retryDelay: 5 } },
				{ id: 'afterShaky', uses: 'cls.after' },
			],
			edges: [
				{ source: 'start', target: 'mult' },
				{ source: 'mult', target: 'after' },
				{ source: 'start', target: 'shaky' },
				{ source: 'shaky', target: 'afterShaky' },
			],
		},
		registry: (fc) => {
			const attempts = attemptCounter()
			class Multiply extends fc.BaseNode {
				async prep(ctx) {
					return { value: ctx.input, factor: this.params.factor }
				}
				async exec(prepResult) {
					return { output: { node: this.nodeId, product: prepResult.value * prepResult.factor } }
				}
				async post(execResult, ctx) {
					await ctx.context.set(`class.post.${this.nodeId}`, execResult.output.product)
					return execResult
				}
			}
			// exec always fails: the class `fallback` method supplies the result, then
			// `post` runs, and `recover` runs because something failed
			class Shaky extends fc.BaseNode {
				async exec(_prep, ctx) {
					const n = await attempts(ctx, this.nodeId)
					throw new Error(`shaky exec failed (attempt ${n})`)
				}
				async fallback(error) {
					return { output: `class-fallback: ${error.message}` }
				}
				async post(execResult, ctx) {
					await ctx.context.set('class.post.shaky', execResult.output)
					return execResult
				}
				async recover(error, ctx) {
					await ctx.context.set('class.recovered', error.message)
				}
			}
			return {
				'cls.start': async () => ({ output: 6 }),
				'cls.Multiply': Multiply,
				'cls.Shaky': Shaky,
				'cls.after': async (ctx) => ({ output: { after: ctx.input } }),
			}
		},
		compareContext: ['class.post.mult', 'class.post.shaky', 'class.recovered'],
		intended: {
			status: 'completed',
			outputs: {
				'_outputs.start': 6,
				'_outputs.mult': { node: 'mult', product: 42 },
				'_outputs.after': { after: { node: 'mult', product: 42 } },
				'_outputs.shaky': 'class-fallback: shaky exec failed (attempt 2)',
				'_outputs.afterShaky': { after: 'class-fallback: shaky exec failed (attempt 2)' },
			},
			context: {
				'class.post.mult': 42,
				'class.post.shaky': 'class-fallback: shaky exec failed (attempt 2)',
				'class.recovered': 'shaky exec failed (attempt 2)',
			},
		},
	},

	// ------------------------------------------------------------- retries that succeed
	{
		name: 'retry-success',
		group: 'default',
		blueprint: {
			id: 'diff-retry-success',
			nodes: [
				{ id: 'start', uses: 'rs.start' },
				{ id: 'flaky', uses: 'rs.flaky', config: { maxRetries: 3, retryDelay: 20 } },
				{ id: 'after', uses: 'rs.after' },
			],
			edges: [
				{ source: 'start', target: 'flaky' },
				{ source: 'flaky', target: 'after' },
			],
		},
		registry: () => {
			const attempts = attemptCounter()
			return {
				'rs.start': async () => ({ output: 'in' }),
				// fails on attempts 1 and 2, succeeds on attempt 3 (of maxRetries 3)
				'rs.flaky': async (ctx) => {
					const n = await attempts(ctx, 'flaky')
					if (n < 3) throw new Error(`transient failure ${n}`)
					return { output: { attempt: n, input: ctx.input } }
				},
				'rs.after': async (ctx) => ({ output: `after:${ctx.input.attempt}` }),
			}
		},
		intended: {
			status: 'completed',
			outputs: {
				'_outputs.start': 'in',
				'_outputs.flaky': { attempt: 3, input: 'in' },
				'_outputs.after': 'after:3',
			},
		},
	},

	// --------------------------------------------- retries exhausted, no fallback: failed
	{
		name: 'retry-exhausted',
		group: 'default',
		blueprint: {
			id: 'diff-retry-exhausted',
			nodes: [
				{ id: 'start', uses: 're.start' },
				{ id: 'doomed', uses: 're.doomed', config: { maxRetries: 2, retryDelay: 10 } },
				{ id: 'after', uses: 're.after' },
			],
			edges: [
				{ source: 'start', target: 'doomed' },
				{ source: 'doomed', target: 'after' },
			],
		},
		registry: () => ({
			're.start': async () => ({ output: 'in' }),
			're.doomed': async () => {
				throw new Error('doomed node exploded')
			},
			're.after': async () => ({ output: 'never' }),
		}),
		intended: { status: 'failed', outputs: { '_outputs.start': 'in' } },
		expect: {
			reasonIncludes: 'doomed node exploded',
			notes:
				'FlowRuntime reports the failure as FlowcraftError "Node \'doomed\' execution failed" with the ' +
				"node's error as cause; our adapter's status reason must carry the node's own message.",
		},
	},

	// ------------------------------------------ retries exhausted with a config.fallback node
	{
		name: 'retry-fallback',
		group: 'default',
		blueprint: {
			id: 'diff-retry-fallback',
			nodes: [
				{ id: 'start', uses: 'rf.start' },
				{ id: 'risky', uses: 'rf.risky', config: { maxRetries: 2, retryDelay: 10, fallback: 'rescue' } },
				// the fallback is another node of the blueprint (Flowcraft semantics); it is not a
				// start node even though it has no incoming edge
				{ id: 'rescue', uses: 'rf.rescue' },
				{ id: 'after', uses: 'rf.after' },
			],
			edges: [
				{ source: 'start', target: 'risky' },
				{ source: 'risky', target: 'after' },
			],
		},
		registry: () => ({
			'rf.start': async () => ({ output: 'in' }),
			'rf.risky': async () => {
				throw new Error('risky node failed')
			},
			'rf.rescue': async () => ({ output: 'rescued' }),
			'rf.after': async (ctx) => ({ output: `after:${ctx.input}` }),
		}),
		intended: {
			// FlowRuntime: the failed node's output is null, the fallback node runs as a node of
			// its own and inherits the failed node's outgoing edges; the run completes.
			status: 'completed',
			outputs: {
				'_outputs.start': 'in',
				'_outputs.risky': null,
				'_outputs.rescue': 'rescued',
				'_outputs.after': 'after:rescued',
			},
		},
	},

	// ------------------------------------------------ a failing branch beside a joining one
	{
		name: 'failing-branch-beside-join',
		group: 'default',
		blueprint: {
			id: 'diff-failing-branch-beside-join',
			nodes: [
				{ id: 'start', uses: 'fb.start' },
				{ id: 'ok', uses: 'fb.ok' },
				{ id: 'bad', uses: 'fb.bad', config: { maxRetries: 2, retryDelay: 150 } },
				{ id: 'side', uses: 'fb.ok' },
				{ id: 'sideTail', uses: 'fb.ok' },
				// 'all' join with a failing predecessor: must never run, must not hold the run
				{ id: 'join', uses: 'fb.ok' },
				{ id: 'joinTail', uses: 'fb.ok' },
				// 'any' join reached first by the healthy branch: runs before the failure
				{ id: 'anyJoin', uses: 'fb.ok', config: { joinStrategy: 'any' } },
			],
			edges: [
				{ source: 'start', target: 'ok' },
				{ source: 'start', target: 'bad' },
				{ source: 'start', target: 'side' },
				{ source: 'side', target: 'sideTail' },
				{ source: 'ok', target: 'join' },
				{ source: 'bad', target: 'join' },
				{ source: 'join', target: 'joinTail' },
				{ source: 'ok', target: 'anyJoin' },
				{ source: 'bad', target: 'anyJoin' },
			],
		},
		registry: () => ({
			'fb.start': async () => ({ output: 0 }),
			'fb.ok': async (ctx) => ({ output: (ctx.input ?? 0) + 1 }),
			// fails slowly (2 attempts, 150 ms apart, plus 150 ms): the healthy branches are
			// done long before the run is declared failed, in both engines
			'fb.bad': async () => {
				await sleep(150)
				throw new Error('bad branch broke')
			},
		}),
		intended: {
			status: 'failed',
			outputs: {
				'_outputs.start': 0,
				'_outputs.ok': 1,
				'_outputs.side': 1,
				'_outputs.sideTail': 2,
				'_outputs.anyJoin': 2,
			},
		},
		expect: { reasonIncludes: 'bad branch broke' },
	},

	// ------------------------------------------ wide 'all' fan-in (16 branches race on the counter)
	(() => {
		const width = 16
		const branches = Array.from({ length: width }, (_, i) => `w${i}`)
		const inputs = Object.fromEntries(branches.map((b) => [b, b]))
		const outputs = { '_outputs.start': 100 }
		for (let i = 0; i < width; i++) outputs[`_outputs.w${i}`] = 100 + i
		outputs['_outputs.join'] = { count: width, sum: 100 * width + (width * (width - 1)) / 2 }
		return {
			name: 'wide-fan-in',
			group: 'default',
			blueprint: {
				id: 'diff-wide-fan-in',
				nodes: [
					{ id: 'start', uses: 'wide.start' },
					...branches.map((id, i) => ({ id, uses: 'wide.branch', params: { i } })),
					{ id: 'join', uses: 'wide.join', inputs },
				],
				edges: [
					...branches.map((id) => ({ source: 'start', target: id })),
					...branches.map((id) => ({ source: id, target: 'join' })),
				],
			},
			registry: () => ({
				'wide.start': async () => ({ output: 100 }),
				'wide.branch': async (ctx) => {
					await jitter(30)
					return { output: ctx.input + ctx.params.i }
				},
				'wide.join': async (ctx) => {
					const values = Object.values(ctx.input)
					return {
						output: {
							count: values.filter((v) => typeof v === 'number').length,
							sum: values.reduce((a, b) => a + b, 0),
						},
					}
				},
			}),
			intended: { status: 'completed', outputs },
		}
	})(),

	// ----------------------------------------------------- a `uses` key missing from the registry
	{
		name: 'unknown-uses',
		group: 'default',
		blueprint: {
			id: 'diff-unknown-uses',
			nodes: [
				{ id: 'start', uses: 'uu.start' },
				{ id: 'ghost', uses: 'uu.notRegistered' },
				{ id: 'after', uses: 'uu.start' },
			],
			edges: [
				{ source: 'start', target: 'ghost' },
				{ source: 'ghost', target: 'after' },
			],
		},
		registry: () => ({ 'uu.start': async () => ({ output: 'ran' }) }),
		intended: { status: 'failed', outputs: { '_outputs.start': 'ran' } },
		expect: {
			reasonIncludes: 'uu.notRegistered',
			notes:
				'FlowRuntime fails the run with "Implementation for \'uu.notRegistered\' not found."; our reason must name the key.',
		},
	},

	// ------------------------------------------------ a node writing and deleting context keys
	{
		name: 'context-writes',
		group: 'default',
		blueprint: {
			id: 'diff-context-writes',
			nodes: [
				{ id: 'writer', uses: 'cw.writer' },
				{ id: 'wA', uses: 'cw.parallel', params: { key: 'par.A' } },
				{ id: 'wB', uses: 'cw.parallel', params: { key: 'par.B' } },
				{ id: 'wC', uses: 'cw.parallel', params: { key: 'par.C' } },
				{ id: 'reader', uses: 'cw.reader' },
			],
			edges: [
				{ source: 'writer', target: 'wA' },
				{ source: 'writer', target: 'wB' },
				{ source: 'writer', target: 'wC' },
				{ source: 'wA', target: 'reader' },
				{ source: 'wB', target: 'reader' },
				{ source: 'wC', target: 'reader' },
			],
		},
		registry: () => ({
			'cw.writer': async (ctx) => {
				await ctx.context.set('k.written', { a: 1, list: ['x'] })
				await ctx.context.set('temp', 'short-lived')
				const sawTemp = await ctx.context.get('temp')
				const deletedTemp = await ctx.context.delete('temp')
				const deletedDrop = await ctx.context.delete('drop')
				await ctx.context.set('dotted.key', 2)
				return {
					output: {
						sawTemp,
						deletedTemp,
						deletedDrop,
						hasTempAfter: await ctx.context.has('temp'),
						dottedAfter: await ctx.context.get('dotted.key'),
					},
				}
			},
			// three parallel nodes each writing their own key: none of the writes may be lost
			'cw.parallel': async (ctx) => {
				await jitter()
				await ctx.context.set(ctx.params.key, `set-by-${ctx.params.key}`)
				return { output: ctx.params.key }
			},
			'cw.reader': async (ctx) => {
				const c = ctx.context
				return {
					output: {
						written: (await c.get('k.written')) ?? null,
						hasDrop: await c.has('drop'),
						hasTemp: await c.has('temp'),
						keep: (await c.get('keep')) ?? null,
						dotted: (await c.get('dotted.key')) ?? null,
						par: [(await c.get('par.A')) ?? null, (await c.get('par.B')) ?? null, (await c.get('par.C')) ?? null],
						missing: (await c.get('no.such.key')) ?? null,
					},
				}
			},
		}),
		initialContext: { keep: 'K', drop: 'D', 'dotted.key': 1 },
		compareContext: ['keep', 'drop', 'temp', 'k.written', 'dotted.key', 'par.A', 'par.B', 'par.C'],
		intended: {
			status: 'completed',
			outputs: {
				'_outputs.writer': {
					sawTemp: 'short-lived',
					deletedTemp: true,
					deletedDrop: true,
					hasTempAfter: false,
					dottedAfter: 2,
				},
				'_outputs.wA': 'par.A',
				'_outputs.wB': 'par.B',
				'_outputs.wC': 'par.C',
				'_outputs.reader': {
					written: { a: 1, list: ['x'] },
					hasDrop: false,
					hasTemp: false,
					keep: 'K',
					dotted: 2,
					par: ['set-by-par.A', 'set-by-par.B', 'set-by-par.C'],
					missing: null,
				},
			},
			context: {
				keep: 'K',
				'k.written': { a: 1, list: ['x'] },
				'dotted.key': 2,
				'par.A': 'set-by-par.A',
				'par.B': 'set-by-par.B',
				'par.C': 'set-by-par.C',
			},
		},
	},

	// -------------------------------------------------------------------------- middleware
	{
		name: 'middleware',
		group: 'middleware',
		blueprint: {
			id: 'diff-middleware',
			nodes: [
				{ id: 'm1', uses: 'mw.const' },
				{ id: 'm2', uses: 'mw.flakyInc', config: { maxRetries: 2, retryDelay: 5 } },
				{ id: 'm3', uses: 'mw.snapshot' },
			],
			edges: [
				{ source: 'm1', target: 'm2' },
				{ source: 'm2', target: 'm3' },
			],
		},
		registry: () => {
			const attempts = attemptCounter()
			return {
				'mw.const': async () => ({ output: 1 }),
				// fails once: middleware wraps the node execution, not each attempt
				'mw.flakyInc': async (ctx) => {
					const n = await attempts(ctx, 'm2')
					if (n === 1) throw new Error('first attempt fails')
					return { output: ctx.input + 1 }
				},
				// what the hooks had written when this node ran (its own before/around included)
				'mw.snapshot': async (ctx) => {
					const all = await ctx.context.toJSON()
					const seen = {}
					for (const key of Object.keys(all).sort()) if (key.startsWith('mw.')) seen[key] = all[key]
					return { output: seen }
				},
			}
		},
		middleware: () => [
			{
				beforeNode: async (ctx, nodeId) => {
					const count = (await ctx.get('mw.count')) ?? 0
					await ctx.set('mw.count', count + 1)
					await ctx.set(`mw.before.${nodeId}`, true)
				},
				afterNode: async (ctx, nodeId, result, error) => {
					await ctx.set(`mw.after.${nodeId}`, { output: result?.output ?? null, error: error ? error.message : null })
				},
			},
			{
				aroundNode: async (ctx, nodeId, next) => {
					await ctx.set(`mw.around.${nodeId}`, 'entered')
					const result = await next()
					return result
				},
			},
		],
		compareContext: [
			'mw.count',
			'mw.before.m1',
			'mw.before.m2',
			'mw.before.m3',
			'mw.after.m1',
			'mw.after.m2',
			'mw.after.m3',
			'mw.around.m1',
			'mw.around.m2',
			'mw.around.m3',
		],
		intended: {
			status: 'completed',
			outputs: {
				'_outputs.m1': 1,
				'_outputs.m2': 2,
				'_outputs.m3': {
					'mw.after.m1': { output: 1, error: null },
					'mw.after.m2': { output: 2, error: null },
					'mw.around.m1': 'entered',
					'mw.around.m2': 'entered',
					'mw.around.m3': 'entered',
					'mw.before.m1': true,
					'mw.before.m2': true,
					'mw.before.m3': true,
					'mw.count': 3,
				},
			},
			context: {
				'mw.count': 3,
				'mw.before.m1': true,
				'mw.before.m2': true,
				'mw.before.m3': true,
				'mw.after.m1': { output: 1, error: null },
				'mw.after.m2': { output: 2, error: null },
				'mw.after.m3': {
					output: {
						'mw.after.m1': { output: 1, error: null },
						'mw.after.m2': { output: 2, error: null },
						'mw.around.m1': 'entered',
						'mw.around.m2': 'entered',
						'mw.around.m3': 'entered',
						'mw.before.m1': true,
						'mw.before.m2': true,
						'mw.before.m3': true,
						'mw.count': 3,
					},
					error: null,
				},
				'mw.around.m1': 'entered',
				'mw.around.m2': 'entered',
				'mw.around.m3': 'entered',
			},
		},
	},

	// -------------------------------------------------------------------- custom evaluator
	{
		name: 'custom-evaluator',
		group: 'evaluator',
		blueprint: {
			id: 'diff-custom-evaluator',
			nodes: [
				{ id: 'check', uses: 'ev.check' },
				{ id: 'neg', uses: 'ev.leaf' },
				{ id: 'pos', uses: 'ev.leaf' },
				{ id: 'high', uses: 'ev.leaf' },
				{ id: 'low', uses: 'ev.leaf' },
				{ id: 'ctxCmp', uses: 'ev.leaf' },
				{ id: 'tr', uses: 'ev.leaf' },
				{ id: 'plain', uses: 'ev.leaf' },
			],
			edges: [
				{ source: 'check', target: 'neg', condition: '!result.output.ok' },
				{ source: 'check', target: 'pos', condition: 'result.output.ok' },
				{ source: 'check', target: 'high', condition: 'result.output.score > 5' },
				{ source: 'check', target: 'low', condition: 'result.output.score < 5' },
				{ source: 'check', target: 'ctxCmp', condition: 'limit >= 10' },
				{ source: 'check', target: 'tr', transform: '!input.ok' },
				{ source: 'check', target: 'plain', transform: 'input.score' },
			],
		},
		registry: () => ({
			'ev.check': async () => ({ output: { ok: false, score: 8 } }),
			'ev.leaf': async (ctx) => ({ output: { saw: ctx.input ?? null } }),
		}),
		evaluator: () => new MiniEvaluator(),
		initialContext: { limit: 10 },
		intended: {
			status: 'completed',
			outputs: {
				'_outputs.check': { ok: false, score: 8 },
				'_outputs.neg': { saw: { ok: false, score: 8 } },
				'_outputs.high': { saw: { ok: false, score: 8 } },
				'_outputs.ctxCmp': { saw: { ok: false, score: 8 } },
				'_outputs.tr': { saw: true },
				'_outputs.plain': { saw: 8 },
			},
		},
	},

	// =========================================================================================
	// Issue 9, items 1-7: FlowRuntime's results on failing paths, fallbacks into joins, fatal
	// errors, undefined, `inputs` resolution, transforms with `inputs`, unstorable strings.
	// =========================================================================================

	// ------------------------------------ item 1: a class node failing in each lifecycle hook
	{
		name: 'class-lifecycle-failures',
		group: 'default',
		blueprint: {
			id: 'diff-class-lifecycle-failures',
			nodes: [
				{ id: 'prepFails', uses: 'lc.PrepFails' },
				{ id: 'execFails', uses: 'lc.ExecFails', config: { maxRetries: 2, retryDelay: 5 } },
				{ id: 'postFails', uses: 'lc.PostFails' },
				{ id: 'fallbackFails', uses: 'lc.FallbackFails' },
				{ id: 'recoverThrows', uses: 'lc.RecoverThrows' },
				{ id: 'healthy', uses: 'lc.Healthy' },
				{ id: 'afterHealthy', uses: 'lc.after' },
				{ id: 'afterPrep', uses: 'lc.after' },
			],
			edges: [
				{ source: 'healthy', target: 'afterHealthy' },
				{ source: 'prepFails', target: 'afterPrep' },
			],
		},
		registry: (fc) => {
			const attempts = attemptCounter()
			// every hook that runs leaves a trace in the context; recover records the error
			class Traced extends fc.BaseNode {
				async trace(ctx, hook, value = true) {
					await ctx.context.set(`lc.${this.nodeId}.${hook}`, value)
				}
				async recover(error, ctx) {
					await this.trace(ctx, 'recover', error.message)
				}
			}
			class PrepFails extends Traced {
				async prep(ctx) {
					await this.trace(ctx, 'prep')
					throw new Error('prep broke')
				}
				async exec() {
					return { output: 'never' }
				}
			}
			class ExecFails extends Traced {
				async exec(_prep, ctx) {
					const n = await attempts(ctx, this.nodeId)
					await this.trace(ctx, `exec${n}`)
					throw new Error(`exec broke ${n}`)
				}
			}
			class PostFails extends Traced {
				async exec() {
					return { output: 'exec-ok' }
				}
				async post(execResult, ctx) {
					await this.trace(ctx, 'post', execResult.output)
					throw new Error('post broke')
				}
			}
			class FallbackFails extends Traced {
				async exec() {
					throw new Error('exec broke')
				}
				async fallback(error, ctx) {
					await this.trace(ctx, 'fallback', error.message)
					throw new Error('class fallback broke too')
				}
			}
			class RecoverThrows extends fc.BaseNode {
				async exec() {
					throw new Error('exec broke')
				}
				async recover(error, ctx) {
					await ctx.context.set('lc.recoverThrows.recover', error.message)
					throw new Error('recover broke')
				}
			}
			class Healthy extends Traced {
				async prep(ctx) {
					await this.trace(ctx, 'prep')
					return 1
				}
				async exec(p) {
					return { output: p + 1 }
				}
			}
			return {
				'lc.PrepFails': PrepFails,
				'lc.ExecFails': ExecFails,
				'lc.PostFails': PostFails,
				'lc.FallbackFails': FallbackFails,
				'lc.RecoverThrows': RecoverThrows,
				'lc.Healthy': Healthy,
				'lc.after': async (ctx) => ({ output: { after: ctx.input ?? null } }),
			}
		},
		compareContext: [
			'lc.prepFails.prep',
			'lc.prepFails.recover',
			'lc.execFails.exec1',
			'lc.execFails.exec2',
			'lc.execFails.recover',
			'lc.postFails.post',
			'lc.postFails.recover',
			'lc.fallbackFails.fallback',
			'lc.fallbackFails.recover',
			'lc.recoverThrows.recover',
			'lc.healthy.prep',
			'lc.healthy.recover',
		],
		intended: {
			status: 'failed',
			outputs: { '_outputs.healthy': 2, '_outputs.afterHealthy': { after: 2 } },
			context: {
				'lc.prepFails.prep': true,
				'lc.prepFails.recover': 'prep broke',
				'lc.execFails.exec1': true,
				'lc.execFails.exec2': true,
				'lc.execFails.recover': 'exec broke 2',
				'lc.postFails.post': 'exec-ok',
				'lc.postFails.recover': 'post broke',
				'lc.fallbackFails.fallback': 'exec broke',
				'lc.fallbackFails.recover': 'class fallback broke too',
				'lc.recoverThrows.recover': 'exec broke',
				'lc.healthy.prep': true,
			},
		},
	},

	// ------------------------- item 1: the writes of a node that fails into a config.fallback
	{
		name: 'fallback-keeps-failed-writes',
		group: 'default',
		blueprint: {
			id: 'diff-fallback-keeps-failed-writes',
			nodes: [
				{ id: 'start', uses: 'fkw.start' },
				{ id: 'writer', uses: 'fkw.writeThenFail', config: { maxRetries: 2, fallback: 'rescue' } },
				{ id: 'rescue', uses: 'fkw.rescue', params: { prefix: 'fkw.writer.' } },
				{ id: 'classy', uses: 'fkw.Classy', config: { fallback: 'classRescue' } },
				{ id: 'classRescue', uses: 'fkw.rescue', params: { prefix: 'fkw.classy.' } },
			],
			edges: [
				{ source: 'start', target: 'writer' },
				{ source: 'start', target: 'classy' },
			],
		},
		registry: (fc) => {
			const attempts = attemptCounter()
			class Classy extends fc.BaseNode {
				async exec(_p, ctx) {
					await ctx.context.set('fkw.classy.exec', 'wrote')
					throw new Error('classy broke')
				}
				async recover(error, ctx) {
					await ctx.context.set('fkw.classy.recover', error.message)
				}
			}
			return {
				'fkw.start': async () => ({ output: 's' }),
				'fkw.Classy': Classy,
				'fkw.writeThenFail': async (ctx) => {
					const n = await attempts(ctx, 'writer')
					await ctx.context.set(`fkw.writer.attempt${n}`, n)
					await ctx.context.delete('fkw.dropMe')
					throw new Error(`writer broke ${n}`)
				},
				// the fallback node sees what the failed node wrote
				'fkw.rescue': async (ctx) => {
					const c = await ctx.context.toJSON()
					const seen = {}
					for (const k of Object.keys(c).sort()) if (k.startsWith(ctx.params.prefix)) seen[k] = c[k]
					return { output: seen }
				},
			}
		},
		initialContext: { 'fkw.dropMe': 'x' },
		compareContext: [
			'fkw.writer.attempt1',
			'fkw.writer.attempt2',
			'fkw.dropMe',
			'fkw.classy.exec',
			'fkw.classy.recover',
		],
		intended: {
			status: 'completed',
			outputs: {
				'_outputs.start': 's',
				'_outputs.writer': null,
				'_outputs.classy': null,
				'_outputs.rescue': { 'fkw.writer.attempt1': 1, 'fkw.writer.attempt2': 2 },
				'_outputs.classRescue': { 'fkw.classy.exec': 'wrote', 'fkw.classy.recover': 'classy broke' },
			},
			context: {
				'fkw.writer.attempt1': 1,
				'fkw.writer.attempt2': 2,
				'fkw.classy.exec': 'wrote',
				'fkw.classy.recover': 'classy broke',
			},
		},
	},

	// --------------------------- item 1: beforeNode / afterNode / aroundNode around a failing node
	{
		name: 'middleware-failing-node',
		group: 'middleware',
		blueprint: {
			id: 'diff-middleware-failing-node',
			nodes: [
				{ id: 'ok', uses: 'mwf.ok' },
				{ id: 'bad', uses: 'mwf.bad', config: { maxRetries: 2, retryDelay: 5 } },
				{ id: 'BadClass', uses: 'mwf.BadClass' },
				{ id: 'never', uses: 'mwf.ok' },
			],
			edges: [
				{ source: 'ok', target: 'bad' },
				{ source: 'ok', target: 'BadClass' },
				{ source: 'bad', target: 'never' },
			],
		},
		registry: (fc) => {
			class BadClass extends fc.BaseNode {
				async exec() {
					throw new Error('class node broke')
				}
				async recover(error, ctx) {
					await ctx.context.set('mwf.recover.BadClass', error.message)
				}
			}
			return {
				'mwf.ok': async () => ({ output: 'ok' }),
				'mwf.bad': async (ctx) => {
					await ctx.context.set('mwf.inside.bad', true)
					throw new Error('bad node broke')
				},
				'mwf.BadClass': BadClass,
			}
		},
		middleware: issue9Middleware,
		compareContext: mwfKeys(['ok', 'bad', 'BadClass', 'never'], ['mwf.inside.bad', 'mwf.recover.BadClass']),
		intended: {
			status: 'failed',
			outputs: { '_outputs.ok': 'ok' },
			context: {
				'mwf.before.ok': 1,
				'mwf.after.ok': { output: 'ok', error: null },
				'mwf.around.ok': 'left',
				'mwf.before.bad': 1,
				'mwf.after.bad': { output: null, error: 'bad node broke' },
				'mwf.around.bad': 'threw',
				'mwf.before.BadClass': 1,
				'mwf.after.BadClass': { output: null, error: 'class node broke' },
				'mwf.around.BadClass': 'threw',
				'mwf.inside.bad': true,
				'mwf.recover.BadClass': 'class node broke',
			},
		},
		expect: { reasonIncludes: 'broke' },
	},

	// ------------------- item 1: middleware around a node that fails into its config.fallback
	{
		name: 'middleware-fallback-node',
		// before/after hooks only (fallbackRecorderMiddleware); the group's aroundNode hooks wrap
		// these nodes too in our worker, where the fallback runs all the same
		group: 'middleware',
		blueprint: {
			id: 'diff-middleware-fallback-node',
			nodes: [
				{ id: 'shaky', uses: 'mwfb.shaky', config: { fallback: 'backup' } },
				{ id: 'backup', uses: 'mwfb.backup' },
				{ id: 'tail', uses: 'mwfb.tail' },
			],
			edges: [{ source: 'shaky', target: 'tail' }],
		},
		registry: () => ({
			'mwfb.shaky': async (ctx) => {
				await ctx.context.set('mwf.inside.shaky', 'wrote')
				throw new Error('shaky broke')
			},
			'mwfb.backup': async (ctx) => ({
				output: {
					sawInside: (await ctx.context.get('mwf.inside.shaky')) ?? null,
					sawAfter: (await ctx.context.get('mwf.after.shaky')) ?? null,
				},
			}),
			'mwfb.tail': async (ctx) => ({ output: { tail: ctx.input } }),
		}),
		middleware: fallbackRecorderMiddleware,
		compareContext: mwfKeys(['shaky', 'backup', 'tail'], ['mwf.inside.shaky']),
		intended: {
			status: 'completed',
			outputs: {
				'_outputs.shaky': null,
				'_outputs.backup': {
					sawInside: 'wrote',
					sawAfter: { output: null, error: 'shaky broke' },
				},
				'_outputs.tail': {
					tail: { sawInside: 'wrote', sawAfter: { output: null, error: 'shaky broke' } },
				},
			},
			context: {
				'mwf.before.shaky': 1,
				'mwf.after.shaky': { output: null, error: 'shaky broke' },
				'mwf.before.backup': 1,
				'mwf.after.backup': {
					output: { sawInside: 'wrote', sawAfter: { output: null, error: 'shaky broke' } },
					error: null,
				},
				'mwf.before.tail': 1,
				'mwf.after.tail': {
					output: { tail: { sawInside: 'wrote', sawAfter: { output: null, error: 'shaky broke' } } },
					error: null,
				},
				'mwf.inside.shaky': 'wrote',
			},
		},
	},

	// ------------------- item 2: Flowcraft's error-handling guide: a fallback feeding an 'all' join
	{
		name: 'fallback-into-all-join',
		group: 'default',
		blueprint: {
			id: 'diff-fallback-into-all-join',
			nodes: [
				{ id: 'primary-api', uses: 'fij.primary', config: { maxRetries: 2, retryDelay: 5, fallback: 'secondary-api' } },
				{ id: 'secondary-api', uses: 'fij.secondary' },
				{ id: 'process-data', uses: 'fij.process', config: { joinStrategy: 'all' } },
			],
			edges: [
				{ source: 'primary-api', target: 'process-data' },
				{ source: 'secondary-api', target: 'process-data' },
			],
		},
		registry: () => ({
			'fij.primary': async () => {
				throw new Error('primary API is down')
			},
			'fij.secondary': async () => ({ output: { source: 'secondary', items: [1, 2] } }),
			'fij.process': async (ctx) => ({ output: { processed: ctx.input ?? null } }),
		}),
		intended: {
			status: 'completed',
			outputs: {
				'_outputs.primary-api': null,
				'_outputs.secondary-api': { source: 'secondary', items: [1, 2] },
				'_outputs.process-data': { processed: { source: 'secondary', items: [1, 2] } },
			},
		},
	},

	// ----------- item 2: a fallback that is not a predecessor of the join inherits its owner's edge
	// FlowRuntime counts the failed node completed at the join; the join runs when a node routing
	// to it finds every predecessor completed. Part 1: 'steady' completes before 'flaky' runs and
	// fails, so the join waits for 'spare' (routing through flaky's edge). Part 2: 'flaky2' fails
	// before 'steady2' runs (spare2 routes to it), so steady2 runs the join.
	{
		name: 'fallback-inherited-edge-into-join',
		group: 'default',
		blueprint: {
			id: 'diff-fallback-inherited-edge-into-join',
			nodes: [
				{ id: 'start', uses: 'fie.start' },
				{ id: 'steady', uses: 'fie.steady' },
				{ id: 'flaky', uses: 'fie.flaky', config: { fallback: 'spare' } },
				{ id: 'spare', uses: 'fie.spare' },
				{ id: 'join', uses: 'fie.join', inputs: { f: 'flaky', s: 'spare', t: 'steady' } },
				{ id: 'flaky2', uses: 'fie.flaky', config: { fallback: 'spare2' } },
				{ id: 'spare2', uses: 'fie.spare' },
				{ id: 'steady2', uses: 'fie.steady' },
				{ id: 'join2', uses: 'fie.join', inputs: { f: 'flaky2', s: 'spare2', t: 'steady2' } },
			],
			edges: [
				{ source: 'start', target: 'steady' },
				{ source: 'steady', target: 'flaky' },
				{ source: 'flaky', target: 'join' },
				{ source: 'steady', target: 'join' },
				{ source: 'start', target: 'flaky2' },
				{ source: 'flaky2', target: 'steady2' },
				{ source: 'flaky2', target: 'join2' },
				{ source: 'steady2', target: 'join2' },
			],
		},
		registry: () => ({
			'fie.start': async () => ({ output: 1 }),
			'fie.flaky': async () => {
				throw new Error('flaky broke')
			},
			'fie.spare': async () => ({ output: 'spare' }),
			'fie.steady': async (ctx) => ({ output: (ctx.input ?? 0) + 1 }),
			'fie.join': async (ctx) => ({ output: ctx.input }),
		}),
		intended: {
			status: 'completed',
			outputs: {
				'_outputs.start': 1,
				'_outputs.flaky': null,
				'_outputs.spare': 'spare',
				'_outputs.steady': 2,
				'_outputs.join': { f: null, s: 'spare', t: 2 },
				'_outputs.flaky2': null,
				'_outputs.spare2': 'spare',
				'_outputs.steady2': 'spare1',
				'_outputs.join2': { f: null, s: 'spare', t: 'spare1' },
			},
		},
	},

	// ------------------------------------------------ item 2: a chain of fallbacks into an 'all' join
	// 'a' fails into 'b', which fails into 'c'; 'c' leads to 'last', the join's other predecessor:
	// FlowRuntime counts 'a' completed (null) when 'last' reaches the join.
	{
		name: 'fallback-chain-into-join',
		group: 'default',
		blueprint: {
			id: 'diff-fallback-chain-into-join',
			nodes: [
				{ id: 'a', uses: 'fcj.fail', config: { fallback: 'b' } },
				{ id: 'b', uses: 'fcj.fail', config: { maxRetries: 2, fallback: 'c' } },
				{ id: 'c', uses: 'fcj.ok' },
				{ id: 'last', uses: 'fcj.last' },
				{ id: 'join', uses: 'fcj.join', inputs: { a: 'a', b: 'b', c: 'c', last: 'last' } },
			],
			edges: [
				{ source: 'a', target: 'join' },
				{ source: 'c', target: 'last' },
				{ source: 'last', target: 'join' },
			],
		},
		registry: () => ({
			'fcj.fail': async () => {
				throw new Error('broke')
			},
			'fcj.ok': async () => ({ output: 'c-ok' }),
			'fcj.last': async (ctx) => ({ output: `last after ${ctx.input}` }),
			'fcj.join': async (ctx) => ({ output: ctx.input }),
		}),
		intended: {
			status: 'completed',
			outputs: {
				'_outputs.a': null,
				'_outputs.b': null,
				'_outputs.c': 'c-ok',
				'_outputs.last': 'last after c-ok',
				'_outputs.join': { a: null, b: null, c: 'c-ok', last: 'last after c-ok' },
			},
		},
	},

	// ----------------------------------------- item 2: a fallback inheriting an edge into an 'any' join
	{
		name: 'fallback-into-any-join',
		group: 'default',
		blueprint: {
			id: 'diff-fallback-into-any-join',
			nodes: [
				{ id: 'start', uses: 'fany.start' },
				{ id: 'down', uses: 'fany.down', config: { fallback: 'alt' } },
				{ id: 'alt', uses: 'fany.alt' },
				{ id: 'up', uses: 'fany.up' },
				{ id: 'first', uses: 'fany.first', config: { joinStrategy: 'any' } },
			],
			edges: [
				{ source: 'start', target: 'down' },
				{ source: 'start', target: 'up' },
				{ source: 'down', target: 'first' },
				{ source: 'up', target: 'first' },
			],
		},
		registry: () => ({
			'fany.start': async () => ({ output: 0 }),
			'fany.down': async () => {
				throw new Error('down')
			},
			'fany.alt': async () => ({ output: 'alt' }),
			'fany.up': async () => ({ output: 'up' }),
			'fany.first': async () => ({ output: 'ran' }),
		}),
		intended: {
			status: 'completed',
			outputs: {
				'_outputs.start': 0,
				'_outputs.down': null,
				'_outputs.alt': 'alt',
				'_outputs.up': 'up',
				'_outputs.first': 'ran',
			},
		},
	},

	// ---------------------------------------- item 3: FlowcraftError with isFatal stops at once
	{
		name: 'fatal-error',
		group: 'default',
		blueprint: {
			id: 'diff-fatal-error',
			nodes: [
				{ id: 'start', uses: 'fat.start' },
				{ id: 'fatalFn', uses: 'fat.fatal', config: { maxRetries: 3, retryDelay: 5, fallback: 'rescue' } },
				{ id: 'rescue', uses: 'fat.rescue' },
				{ id: 'afterFatal', uses: 'fat.after' },
			],
			edges: [
				{ source: 'start', target: 'fatalFn' },
				{ source: 'fatalFn', target: 'afterFatal' },
			],
		},
		registry: (fc) => {
			const attempts = attemptCounter()
			return {
				'fat.start': async () => ({ output: 'go' }),
				'fat.fatal': async (ctx) => {
					const n = await attempts(ctx, 'fatalFn')
					await ctx.context.set('fat.attempts', n)
					throw new fc.FlowcraftError('payment declined: card blocked', { isFatal: true })
				},
				'fat.rescue': async () => ({ output: 'rescued' }),
				'fat.after': async (ctx) => ({ output: `after:${ctx.input}` }),
			}
		},
		compareContext: ['fat.attempts'],
		intended: { status: 'failed', outputs: { '_outputs.start': 'go' }, context: { 'fat.attempts': 1 } },
		expect: { reasonIncludes: ["Node 'fatalFn'", 'payment declined: card blocked'] },
	},

	// ------------------ item 3: fatal in a class exec (no class fallback), non-fatal look-alikes retried
	{
		name: 'fatal-error-class-and-lookalikes',
		group: 'default',
		blueprint: {
			id: 'diff-fatal-error-class-and-lookalikes',
			nodes: [
				{ id: 'start', uses: 'fatc.start' },
				{ id: 'fatalClass', uses: 'fatc.FatalClass', config: { maxRetries: 3, fallback: 'spare' } },
				{ id: 'spare', uses: 'fatc.spare' },
				{ id: 'nonFatal', uses: 'fatc.nonFatal', config: { maxRetries: 2, retryDelay: 5 } },
				{ id: 'lookalike', uses: 'fatc.lookalike', config: { maxRetries: 2, retryDelay: 5 } },
			],
			edges: [
				{ source: 'start', target: 'fatalClass' },
				{ source: 'start', target: 'nonFatal' },
				{ source: 'start', target: 'lookalike' },
			],
		},
		registry: (fc) => {
			const attempts = attemptCounter()
			class FatalClass extends fc.BaseNode {
				async exec(_p, ctx) {
					const n = await attempts(ctx, this.nodeId)
					await ctx.context.set('fatc.execAttempts', n)
					throw new fc.FlowcraftError('class fatal', { isFatal: true })
				}
				async fallback(_e, ctx) {
					await ctx.context.set('fatc.classFallback', 'ran')
					return { output: 'class-fallback' }
				}
				async recover(error, ctx) {
					await ctx.context.set('fatc.recover', error.message)
				}
			}
			return {
				'fatc.start': async () => ({ output: 0 }),
				'fatc.FatalClass': FatalClass,
				'fatc.spare': async () => ({ output: 'spare' }),
				// a FlowcraftError that is not fatal is retried like any error
				'fatc.nonFatal': async (ctx) => {
					const n = await attempts(ctx, 'nonFatal')
					if (n === 1) throw new fc.FlowcraftError('transient', { isFatal: false })
					return { output: `nonFatal ok on ${n}` }
				},
				// an isFatal property on another error is not Flowcraft's fatal error: retried
				'fatc.lookalike': async (ctx) => {
					await jitter(30)
					const n = await attempts(ctx, 'lookalike')
					if (n === 1) throw Object.assign(new Error('looks fatal'), { isFatal: true })
					return { output: `lookalike ok on ${n}` }
				},
			}
		},
		compareContext: ['fatc.execAttempts', 'fatc.classFallback', 'fatc.recover'],
		intended: {
			status: 'failed',
			outputs: {
				'_outputs.start': 0,
				'_outputs.nonFatal': 'nonFatal ok on 2',
				'_outputs.lookalike': 'lookalike ok on 2',
			},
			context: { 'fatc.execAttempts': 1, 'fatc.recover': 'class fatal' },
		},
		expect: { reasonIncludes: ["Node 'fatalClass'", 'class fatal'] },
	},

	// -------------------------------------------- item 4: undefined outputs and inputs stay undefined
	{
		name: 'undefined-values',
		group: 'default',
		blueprint: {
			id: 'diff-undefined-values',
			nodes: [
				{ id: 'empty', uses: 'und.empty' },
				{ id: 'nothing', uses: 'und.nothing' },
				{ id: 'nul', uses: 'und.null' },
				{ id: 'explicitUndef', uses: 'und.explicitUndefined' },
				{ id: 'dEmpty', uses: 'und.withDefault' },
				{ id: 'dNothing', uses: 'und.withDefault' },
				{ id: 'dNull', uses: 'und.withDefault' },
				{ id: 'dTransform', uses: 'und.withDefault' },
				{ id: 'byName', uses: 'und.withDefault', inputs: 'empty' },
				{ id: 'byObject', uses: 'und.describe', inputs: { e: 'empty', n: 'nul', gone: 'no.such.key', x: '_nope' } },
				{ id: 'cond', uses: 'und.withDefault' },
				{ id: 'emptyClass', uses: 'und.EmptyClass' },
				{ id: 'dClass', uses: 'und.withDefault' },
				{ id: 'actionOnly', uses: 'und.actionOnly' },
				{ id: 'dAction', uses: 'und.withDefault' },
				{ id: 'dNoAction', uses: 'und.withDefault' },
			],
			edges: [
				{ source: 'empty', target: 'dEmpty' },
				{ source: 'nothing', target: 'dNothing' },
				{ source: 'nul', target: 'dNull' },
				{ source: 'explicitUndef', target: 'dTransform', transform: 'input.missing' },
				{ source: 'empty', target: 'byName' },
				{ source: 'empty', target: 'byObject' },
				{ source: 'nul', target: 'byObject' },
				{ source: 'nothing', target: 'cond', condition: 'result.output' },
				{ source: 'emptyClass', target: 'dClass' },
				{ source: 'actionOnly', target: 'dAction', action: 'go' },
				{ source: 'actionOnly', target: 'dNoAction' },
			],
		},
		registry: (fc) => ({
			// a class whose post returns a result without output
			'und.EmptyClass': class extends fc.BaseNode {
				async exec() {
					return { output: 'dropped by post' }
				}
				async post() {
					return {}
				}
			},
			// routes on its action, with no output
			'und.actionOnly': async () => ({ action: 'go' }),
			'und.empty': async () => ({}),
			'und.nothing': async () => {},
			'und.null': async () => ({ output: null }),
			'und.explicitUndefined': async () => ({ output: undefined }),
			// destructuring defaults apply to undefined, not to null
			'und.withDefault': async ({ input = 'default-applied' }) => ({
				output: { input: input === null ? 'null' : input, type: typeof input },
			}),
			'und.describe': async ({ input }) => ({
				output: {
					keys: Object.keys(input),
					hasGone: 'gone' in input,
					types: Object.fromEntries(Object.entries(input).map(([k, v]) => [k, v === null ? 'null' : typeof v])),
				},
			}),
		}),
		initialContext: { empty: 'initial-empty-key' },
		compareContext: ['empty', 'nothing', 'nul', '_inputs.dEmpty', '_inputs.dTransform'],
		intended: {
			status: 'completed',
			outputs: {
				'_outputs.nul': null,
				'_outputs.dEmpty': { input: 'default-applied', type: 'string' },
				'_outputs.dNothing': { input: 'default-applied', type: 'string' },
				'_outputs.dNull': { input: 'null', type: 'object' },
				'_outputs.dTransform': { input: 'default-applied', type: 'string' },
				'_outputs.dClass': { input: 'default-applied', type: 'string' },
				'_outputs.dAction': { input: 'default-applied', type: 'string' },
				'_outputs.byName': { input: 'default-applied', type: 'string' },
				'_outputs.byObject': {
					keys: ['e', 'n', 'gone', 'x'],
					hasGone: true,
					types: { e: 'undefined', n: 'null', gone: 'undefined', x: 'undefined' },
				},
			},
			context: { nul: null },
		},
		expect: {
			notes:
				"FlowRuntime keeps `_outputs.empty` and `empty` holding undefined, which its serialised context (and ours) leaves out; `context.has('_outputs.empty')` is true in FlowRuntime and false here (README, Differences)",
		},
	},

	// ---------------------------------------------- item 5: `inputs` strings resolve as FlowRuntime does
	{
		name: 'inputs-resolution',
		group: 'default',
		blueprint: {
			id: 'diff-inputs-resolution',
			nodes: [
				{ id: 'user', uses: 'inr.user' },
				{ id: 'acct', uses: 'inr.acct' },
				// not a path into `_outputs.user`: the flat context key 'user.profile.name'
				{ id: 'dotted', uses: 'inr.echo', inputs: { name: 'user.profile.name' } },
				{ id: 'dottedStr', uses: 'inr.echo', inputs: 'user.profile.name' },
				// a flat key with dots that exists
				{ id: 'flat', uses: 'inr.echo', inputs: 'acct.id' },
				// `_outputs.<id>` spelled out, and a plain `_`-key
				{ id: 'spelled', uses: 'inr.echo', inputs: { u: '_outputs.user', s: '_seed', i: '_inputs.user' } },
				// a node that never ran: its plain context key is read instead
				{ id: 'ghost', uses: 'inr.echo' },
				{ id: 'viaGhost', uses: 'inr.echo', inputs: { g: 'ghost', gs: 'ghost' } },
				// empty string and empty object
				{ id: 'emptyStr', uses: 'inr.echo', inputs: '' },
				{ id: 'emptyObj', uses: 'inr.echo', inputs: {} },
				// the node's own id, and its predecessor by name and as a key
				{ id: 'self', uses: 'inr.echo', inputs: { me: 'self', u: 'user', uk: 'acct' } },
			],
			edges: [
				{ source: 'user', target: 'dotted' },
				{ source: 'user', target: 'dottedStr' },
				{ source: 'acct', target: 'flat' },
				{ source: 'user', target: 'spelled' },
				{ source: 'user', target: 'ghost', condition: 'result.output.never' },
				{ source: 'user', target: 'viaGhost' },
				{ source: 'user', target: 'emptyStr' },
				{ source: 'user', target: 'emptyObj' },
				{ source: 'user', target: 'self' },
				{ source: 'acct', target: 'self' },
			],
		},
		registry: () => ({
			'inr.user': async () => ({ output: { profile: { name: 'Ada' } } }),
			'inr.acct': async () => ({ output: { id: 'nested-id' } }),
			'inr.echo': async ({ input }) => ({
				output: {
					got: input === undefined ? 'undefined' : input,
					keys: input && typeof input === 'object' ? Object.keys(input) : null,
				},
			}),
		}),
		initialContext: {
			'acct.id': 'flat-id',
			_seed: 9,
			ghost: 'plain-ghost',
			self: 'plain-self',
			'_inputs.user': 'u-in',
		},
		intended: {
			status: 'completed',
			outputs: {
				'_outputs.user': { profile: { name: 'Ada' } },
				'_outputs.acct': { id: 'nested-id' },
				'_outputs.dotted': { got: {}, keys: ['name'] },
				'_outputs.dottedStr': { got: 'undefined', keys: null },
				'_outputs.flat': { got: 'flat-id', keys: null },
				'_outputs.spelled': { got: { u: { profile: { name: 'Ada' } }, s: 9, i: 'u-in' }, keys: ['u', 's', 'i'] },
				'_outputs.viaGhost': { got: { g: 'plain-ghost', gs: 'plain-ghost' }, keys: ['g', 'gs'] },
				'_outputs.emptyStr': { got: { profile: { name: 'Ada' } }, keys: ['profile'] },
				'_outputs.emptyObj': { got: {}, keys: [] },
				'_outputs.self': {
					got: { me: 'plain-self', u: { profile: { name: 'Ada' } }, uk: { id: 'nested-id' } },
					keys: ['me', 'u', 'uk'],
				},
			},
		},
	},

	// ------------------------------------- item 5: `inputs` shapes other than a string or an object
	{
		name: 'inputs-odd-shapes',
		group: 'default',
		blueprint: {
			id: 'diff-inputs-odd-shapes',
			nodes: [
				{ id: 'src', uses: 'ios.src' },
				{ id: 'arr', uses: 'ios.echo', inputs: ['src', '_k'] },
				{ id: 'num', uses: 'ios.echo', inputs: 5 },
				{ id: 'nul', uses: 'ios.echo', inputs: null },
				{ id: 'yes', uses: 'ios.echo', inputs: true },
			],
			edges: [
				{ source: 'src', target: 'arr' },
				{ source: 'src', target: 'num' },
				{ source: 'src', target: 'nul' },
				{ source: 'src', target: 'yes' },
			],
		},
		registry: () => ({
			'ios.src': async () => ({ output: 'S' }),
			'ios.echo': async ({ input }) => ({
				output: { got: input ?? null, keys: input && typeof input === 'object' ? Object.keys(input) : null },
			}),
		}),
		initialContext: { _k: 'K' },
		intended: {
			status: 'completed',
			outputs: {
				'_outputs.src': 'S',
				'_outputs.arr': { got: { 0: 'S', 1: 'K' }, keys: ['0', '1'] },
				'_outputs.num': { got: 'S', keys: null },
				'_outputs.nul': { got: 'S', keys: null },
				'_outputs.yes': { got: 'S', keys: null },
			},
		},
	},

	// ---------------------------- item 5: an object `inputs` field that is not a string fails the node
	{
		name: 'inputs-non-string-field',
		group: 'default',
		blueprint: {
			id: 'diff-inputs-non-string-field',
			nodes: [
				{ id: 'src', uses: 'insf.src' },
				{ id: 'bad', uses: 'insf.echo', inputs: { a: 'src', n: 42 }, config: { fallback: 'spare' } },
				{ id: 'spare', uses: 'insf.echo' },
			],
			edges: [{ source: 'src', target: 'bad' }],
		},
		registry: () => ({
			'insf.src': async () => ({ output: 'S' }),
			'insf.echo': async ({ input }) => ({ output: { got: input ?? null } }),
		}),
		intended: { status: 'failed', outputs: { '_outputs.src': 'S' } },
		expect: {
			reasonIncludes: ["Node 'bad'", "inputs field 'n'"],
			notes:
				'FlowRuntime fails the node before it runs (a TypeError from `inputs.n.startsWith`), without retries or fallback; we fail it with a message naming the field',
		},
	},

	// ------------------------------- item 6: a transform on an edge into a node with `inputs`
	{
		name: 'transform-with-inputs',
		group: 'default',
		blueprint: {
			id: 'diff-transform-with-inputs',
			nodes: [
				{ id: 'other', uses: 'twi.const', params: { value: { v: 'from-other', k: 'other-k' } } },
				{ id: 'src', uses: 'twi.const', params: { value: { v: 'from-src', k: 'src-k' } } },
				// names another node: the edge's transform reads that node's output
				{ id: 't1', uses: 'twi.echo', inputs: 'other' },
				// a `_` key: the transform reads that context key
				{ id: 't2', uses: 'twi.echo', inputs: '_seed' },
				// the edge's own source: its output, as without `inputs`
				{ id: 't3', uses: 'twi.echo', inputs: 'src' },
				// an object mapping: the transform reads the source's output; the node then
				// receives the transformed value, not its mapping
				{ id: 't4', uses: 'twi.echo', inputs: { o: 'other' } },
				// a node with no output: the source's output
				{ id: 't5', uses: 'twi.echo', inputs: 'nobody' },
				// a transform reading the context beside `inputs`
				{ id: 't6', uses: 'twi.echo', inputs: 'other' },
				// no transform: `inputs` as such
				{ id: 't7', uses: 'twi.echo', inputs: 'other' },
			],
			edges: [
				{ source: 'other', target: 'src' },
				{ source: 'src', target: 't1', transform: 'input.v' },
				{ source: 'src', target: 't2', transform: 'input.k' },
				{ source: 'src', target: 't3', transform: 'input.v' },
				{ source: 'src', target: 't4', transform: 'input.k' },
				{ source: 'src', target: 't5', transform: 'input.v' },
				{ source: 'src', target: 't6', transform: 'context.factor' },
				{ source: 'src', target: 't7' },
			],
		},
		registry: () => ({
			'twi.const': async (ctx) => ({ output: ctx.params.value }),
			'twi.echo': async ({ input }) => ({ output: { got: input === undefined ? 'undefined' : input } }),
		}),
		initialContext: { _seed: { k: 'seed-k', v: 'seed-v' }, factor: 3 },
		intended: {
			status: 'completed',
			outputs: {
				'_outputs.other': { v: 'from-other', k: 'other-k' },
				'_outputs.src': { v: 'from-src', k: 'src-k' },
				'_outputs.t1': { got: 'from-other' },
				'_outputs.t2': { got: 'seed-k' },
				'_outputs.t3': { got: 'from-src' },
				'_outputs.t4': { got: 'src-k' },
				'_outputs.t5': { got: 'from-src' },
				'_outputs.t6': { got: 3 },
				'_outputs.t7': { got: { v: 'from-other', k: 'other-k' } },
			},
		},
	},

	// ---------------- item 6: two transformed edges into one join, the second one arriving later
	{
		name: 'transform-second-arrival',
		group: 'default',
		blueprint: {
			id: 'diff-transform-second-arrival',
			nodes: [
				{ id: 'a', uses: 'tsa.const', params: { value: 0 } },
				{ id: 'b', uses: 'tsa.const', params: { value: { b: { deep: 'from-b' } } } },
				{ id: 'mid', uses: 'tsa.slow' },
				{ id: 'c', uses: 'tsa.const', params: { value: { deep: 'from-c' } } },
				{ id: 'join', uses: 'tsa.echo' },
			],
			edges: [
				// b is committed before mid runs: c's edge is the second arrival in both engines
				{ source: 'a', target: 'b' },
				{ source: 'b', target: 'mid' },
				{ source: 'mid', target: 'c' },
				{ source: 'b', target: 'join', transform: 'input.b' },
				{ source: 'c', target: 'join', transform: 'input.deep' },
			],
		},
		registry: () => ({
			'tsa.const': async (ctx) => ({ output: ctx.params.value }),
			'tsa.slow': async () => ({ output: 'mid' }),
			'tsa.echo': async ({ input }) => ({ output: { got: input === undefined ? 'undefined' : input } }),
		}),
		intended: {
			status: 'completed',
			outputs: {
				'_outputs.a': 0,
				'_outputs.b': { b: { deep: 'from-b' } },
				'_outputs.mid': 'mid',
				'_outputs.c': { deep: 'from-c' },
				// FlowRuntime: the first arrival binds the join's input to `_inputs.join`; the
				// second edge's transform then reads that value, not c's output
				'_outputs.join': { got: 'from-b' },
			},
		},
	},

	// ------------------------------------------------------ transforms reading the context
	{
		name: 'transform-reads-context',
		group: 'default',
		blueprint: {
			id: 'diff-transform-reads-context',
			nodes: [
				{ id: 'start', uses: 'trc.start' },
				{ id: 'src', uses: 'trc.src' },
				{ id: 'own', uses: 'trc.echo' },
				{ id: 'sib', uses: 'trc.echo' },
				{ id: 'plain', uses: 'trc.echo' },
				{ id: 'dotted', uses: 'trc.echo' },
				{ id: 'nested', uses: 'trc.echo' },
				{ id: 'len', uses: 'trc.echo' },
				{ id: 'whole', uses: 'trc.keys' },
			],
			edges: [
				{ source: 'start', target: 'src' },
				{ source: 'src', target: 'own', transform: 'context.written' },
				{ source: 'src', target: 'sib', transform: 'context.start' },
				{ source: 'src', target: 'plain', transform: 'context.src.list' },
				{ source: 'src', target: 'dotted', transform: 'context.a.b' },
				{ source: 'src', target: 'nested', transform: 'context.obj.deep.0' },
				{ source: 'src', target: 'len', transform: 'input.list.length' },
				{ source: 'src', target: 'whole', transform: 'context' },
			],
		},
		registry: () => ({
			'trc.start': async () => ({ output: 'started' }),
			'trc.src': async (ctx) => {
				await ctx.context.set('written', { by: 'src' })
				return { output: { list: [1, 2, 3] } }
			},
			'trc.echo': async ({ input }) => ({ output: { got: input === undefined ? 'undefined' : input } }),
			'trc.keys': async ({ input }) => ({
				output: Object.keys(input)
					.filter((k) => !k.startsWith('_') && k !== 'runTag' && k !== 'blueprintId' && k !== 'blueprintVersion')
					.sort(),
			}),
		}),
		initialContext: { 'a.b': 'flat', a: { b: 'nested-a-b' }, obj: { deep: ['d0'] } },
		intended: {
			status: 'completed',
			outputs: {
				'_outputs.start': 'started',
				'_outputs.src': { list: [1, 2, 3] },
				'_outputs.own': { got: { by: 'src' } },
				'_outputs.sib': { got: 'started' },
				'_outputs.plain': { got: [1, 2, 3] },
				'_outputs.dotted': { got: 'nested-a-b' },
				'_outputs.nested': { got: 'd0' },
				'_outputs.len': { got: 3 },
				'_outputs.whole': ['a', 'a.b', 'obj', 'src', 'start', 'written'],
			},
		},
	},

	// ---------------------------------- item 7: strings PostgreSQL JSONB cannot store are refused
	{
		name: 'unstorable-nul-output',
		group: 'default',
		blueprint: {
			id: 'diff-unstorable-nul-output',
			nodes: [
				{ id: 'start', uses: 'uns.start' },
				{ id: 'bad', uses: 'uns.nul' },
				{ id: 'after', uses: 'uns.after' },
			],
			edges: [
				{ source: 'start', target: 'bad' },
				{ source: 'bad', target: 'after' },
			],
		},
		registry: () => ({
			'uns.start': async () => ({ output: 'ok' }),
			'uns.nul': async () => ({ output: { a: { list: ['fine', 'x\u0000y'] } } }),
			'uns.after': async () => ({ output: 'after' }),
		}),
		intended: {
			status: 'completed',
			outputs: {
				'_outputs.start': 'ok',
				'_outputs.bad': { a: { list: ['fine', 'x\u0000y'] } },
				'_outputs.after': 'after',
			},
		},
		expect: {
			status: 'failed',
			ignoreOutputs: {
				'_outputs.bad': 'refused: JSONB cannot hold a NUL character',
				'_outputs.after': 'never runs: its predecessor was refused',
			},
			reasonIncludes: ["Node 'bad'", 'output.a.list[1]', 'NUL'],
			notes: 'Deliberate difference (README, Differences from FlowRuntime): PostgreSQL JSONB cannot store U+0000',
		},
	},
	{
		name: 'unstorable-lone-surrogate-write',
		group: 'default',
		blueprint: {
			id: 'diff-unstorable-lone-surrogate-write',
			nodes: [
				{ id: 'start', uses: 'unsl.start' },
				{ id: 'bad', uses: 'unsl.write' },
			],
			edges: [{ source: 'start', target: 'bad' }],
		},
		registry: () => ({
			'unsl.start': async () => ({ output: 'ok' }),
			'unsl.write': async (ctx) => {
				await ctx.context.set('unsl.key', { note: ['fine', { text: 'half \ud83d' }] })
				return { output: 'done' }
			},
		}),
		intended: { status: 'completed', outputs: { '_outputs.start': 'ok', '_outputs.bad': 'done' } },
		expect: {
			status: 'failed',
			ignoreOutputs: { '_outputs.bad': 'refused: JSONB cannot hold a lone surrogate' },
			reasonIncludes: ["Node 'bad'", 'context key "unsl.key"', '.note[1].text', 'lone surrogate'],
			notes:
				'Deliberate difference (README, Differences from FlowRuntime): a lone UTF-16 surrogate is not Unicode text',
		},
	},

	// ------------------------------ middleware stacks: order, a short-circuit, a throwing hook
	{
		name: 'middleware-stack',
		group: 'middleware',
		blueprint: {
			id: 'diff-middleware-stack',
			nodes: [
				{ id: 'plain', uses: 'mws.node' },
				{ id: 'cached', uses: 'mws.node' },
				{ id: 'guarded', uses: 'mws.node' },
				{ id: 'afterPlain', uses: 'mws.node' },
			],
			edges: [{ source: 'plain', target: 'afterPlain' }],
		},
		registry: () => ({
			'mws.node': async (ctx) => {
				await ctx.context.set(`ms.ran.${ctx.input ?? 'start'}`, true)
				return { output: `ran:${ctx.input ?? 'start'}` }
			},
		}),
		middleware: issue9Middleware,
		compareContext: [
			'ms.order.plain',
			'ms.order.cached',
			'ms.order.guarded',
			'ms.order.afterPlain',
			'ms.ran.start',
			'ms.ran.ran:start',
		],
		intended: {
			status: 'failed',
			outputs: {
				'_outputs.plain': 'ran:start',
				'_outputs.cached': 'from-cache',
				'_outputs.afterPlain': 'ran:ran:start',
			},
			context: {
				'ms.order.plain': ['outer:in', 'inner:in', 'before1', 'before2', 'after1:ran:start', 'after2:ok', 'outer:out'],
				'ms.order.cached': ['outer:in', 'outer:out'],
				'ms.order.guarded': [
					'outer:in',
					'inner:in',
					'before1',
					'before2',
					'after1:error',
					'after2:guard refused the node',
					'outer:out',
				],
				'ms.order.afterPlain': [
					'outer:in',
					'inner:in',
					'before1',
					'before2',
					'after1:ran:ran:start',
					'after2:ok',
					'outer:out',
				],
				'ms.ran.start': true,
				'ms.ran.ran:start': true,
			},
		},
		expect: { reasonIncludes: ["Node 'guarded'", 'guard refused the node'] },
	},

	// ------------------------------------------------ strings JSONB stores: they round-trip as is
	{
		name: 'odd-strings',
		group: 'default',
		blueprint: {
			id: 'diff-odd-strings',
			nodes: [
				{ id: 'make', uses: 'odd.make' },
				{ id: 'echo', uses: 'odd.echo' },
				{ id: 'picked', uses: 'odd.echo', inputs: { q: 'k"quote', d: 'dotted.key.é' } },
			],
			edges: [
				{ source: 'make', target: 'echo', transform: 'input.nested' },
				{ source: 'make', target: 'picked' },
			],
		},
		registry: () => ({
			'odd.make': async (ctx) => {
				await ctx.context.set('k"quote', 'quote \' " ` value')
				await ctx.context.set('dotted.key.é', 'ünïcødé ✓')
				return {
					output: {
						nested: {
							emoji: '😀👩‍👩‍👧',
							astral: '𝄞 𠜎',
							combining: 'e\u0301',
							rtl: 'שלום עולם',
							controls: 'tab\tnew\nline\rcr\u0001\u001f',
							separators: 'a\u2028b\u2029c',
							escapes: 'not a NUL: \\u0000, not a surrogate: \\ud800',
							noncharacters: '\uffff\ufffe',
							replacement: '\ufffd',
							backslashes: '\\\\ \\',
							long: 'x'.repeat(100000),
						},
						'key with spaces': 1,
						ключ: 2,
						'': 'empty key',
					},
				}
			},
			'odd.echo': async ({ input }) => ({ output: input }),
		}),
		compareContext: ['k"quote', 'dotted.key.é'],
		intended: {
			status: 'completed',
			outputs: (() => {
				const nested = {
					emoji: '😀👩‍👩‍👧',
					astral: '𝄞 𠜎',
					combining: 'e\u0301',
					rtl: 'שלום עולם',
					controls: 'tab\tnew\nline\rcr\u0001\u001f',
					separators: 'a\u2028b\u2029c',
					escapes: 'not a NUL: \\u0000, not a surrogate: \\ud800',
					noncharacters: '\uffff\ufffe',
					replacement: '\ufffd',
					backslashes: '\\\\ \\',
					long: 'x'.repeat(100000),
				}
				return {
					'_outputs.make': { nested, 'key with spaces': 1, ключ: 2, '': 'empty key' },
					'_outputs.echo': nested,
					'_outputs.picked': { q: 'quote \' " ` value', d: 'ünïcødé ✓' },
				}
			})(),
			context: { 'k"quote': 'quote \' " ` value', 'dotted.key.é': 'ünïcødé ✓' },
		},
	},
	// ------------------------------------ values over 2 KB (issue 12: kept as text, left out of reads)
	// A big output bound to its successors' inputs: the worker reads it as text and never parses
	// it on the way (the successor's request carries it; the context's `_inputs.<id>`, `<id>` and
	// `_outputs.<id>` are read on demand), and a built-in (sleep) passes it on the same way.
	{
		name: 'big-bound-inputs',
		group: 'default',
		blueprint: {
			id: 'diff-big-bound-inputs',
			nodes: [
				{ id: 'make', uses: 'bb.make' },
				{ id: 'echo', uses: 'bb.echo' },
				{ id: 'nap', uses: 'sleep', params: { duration: 50 } },
				{ id: 'after', uses: 'bb.count' },
			],
			edges: [
				{ source: 'make', target: 'echo' },
				{ source: 'make', target: 'nap' },
				{ source: 'nap', target: 'after' },
			],
		},
		registry: () => ({
			'bb.make': async () => ({ output: { rows: bigRows() } }),
			'bb.echo': async ({ input, context }) => {
				const own = await context.get('_inputs.echo')
				const made = await context.get('make')
				return {
					output: {
						n: input.rows.length,
						last: input.rows.at(-1),
						ownIsInput: JSON.stringify(own) === JSON.stringify(input),
						madeIsInput: JSON.stringify(made) === JSON.stringify(input),
						hasMade: await context.has('_outputs.make'),
					},
				}
			},
			'bb.count': async ({ input, context }) => ({
				output: { n: input.rows.length, napped: (await context.get('_outputs.nap')).rows.length },
			}),
		}),
		intended: {
			status: 'completed',
			outputs: (() => {
				const rows = bigRows()
				return {
					'_outputs.make': { rows },
					'_outputs.echo': { n: 300, last: rows[299], ownIsInput: true, madeIsInput: true, hasMade: true },
					'_outputs.nap': { rows },
					'_outputs.after': { n: 300, napped: 300 },
				}
			})(),
		},
	},
]
// Flowcraft's built-in nodes (sleep, loops): diff/builtins.js
scenarios.push(...require('./builtins').builtins)

// Sanity: unique names and blueprint ids (registry keys are checked in buildRuntimeOptions).
{
	const names = new Set()
	const ids = new Set()
	for (const s of scenarios) {
		if (names.has(s.name)) throw new Error(`duplicate scenario name ${s.name}`)
		if (ids.has(s.blueprint.id)) throw new Error(`duplicate blueprint id ${s.blueprint.id}`)
		names.add(s.name)
		ids.add(s.blueprint.id)
	}
}

/** Nodes with no incoming edge that are not any node's `config.fallback`. */
function startNodeIds(blueprint) {
	const targets = new Set(blueprint.edges.map((e) => e.target))
	const fallbacks = new Set(blueprint.nodes.map((n) => n.config?.fallback).filter(Boolean))
	return blueprint.nodes.map((n) => n.id).filter((id) => !targets.has(id) && !fallbacks.has(id))
}

/**
 * Builds the runtimeOptions of a set of scenarios (one worker group): merged registry
 * (keys must not collide), blueprints by id, the group's evaluator and middleware.
 */
function buildRuntimeOptions(selected, fc) {
	const registry = {}
	const blueprints = {}
	const evaluators = []
	const evaluatorFactories = new Set()
	const middleware = []
	const middlewareFactories = new Set()
	for (const s of selected) {
		const reg = s.registry(fc)
		for (const [key, impl] of Object.entries(reg)) {
			if (Object.hasOwn(registry, key)) throw new Error(`registry key '${key}' of scenario ${s.name} collides`)
			registry[key] = impl
		}
		for (const bp of [s.blueprint, ...(s.children ?? [])]) blueprints[bp.id] = structuredClone(bp)
		// scenarios of one group may share one evaluator factory: it is installed once
		if (s.evaluator && !evaluatorFactories.has(s.evaluator)) {
			evaluatorFactories.add(s.evaluator)
			evaluators.push(s.evaluator())
		}
		// scenarios of one group may share one middleware factory: it is installed once
		if (s.middleware && !middlewareFactories.has(s.middleware)) {
			middlewareFactories.add(s.middleware)
			middleware.push(...s.middleware())
		}
	}
	if (evaluators.length > 1) throw new Error('at most one scenario with an evaluator per group')
	const options = { registry, blueprints }
	if (evaluators.length) options.evaluator = evaluators[0]
	if (middleware.length) options.middleware = middleware
	return options
}

function byName(name) {
	const s = scenarios.find((x) => x.name === name)
	if (!s) throw new Error(`unknown scenario ${name}`)
	return s
}

function groups() {
	const out = {}
	for (const s of scenarios) {
		out[s.group] ??= []
		out[s.group].push(s.name)
	}
	return out
}

/** A context key with a batch item's id, its random batch id replaced (`_outputs.w_<batch>_3`). */
function outputKey(key) {
	return key.replace(/_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}_(\d+)$/, '_<batch>_$1')
}

/** `value` with every occurrence of the run id (plain or URL-encoded) in its strings replaced by '<run id>'. */
function withoutRunId(value, runId) {
	if (typeof value === 'string')
		return value.split(encodeURIComponent(runId)).join('<run id>').split(runId).join('<run id>')
	if (Array.isArray(value)) return value.map((v) => withoutRunId(v, runId))
	if (value && typeof value === 'object')
		return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, withoutRunId(v, runId)]))
	return value
}

module.exports = {
	scenarios,
	startNodeIds,
	buildRuntimeOptions,
	byName,
	groups,
	MiniEvaluator,
	outputKey,
	withoutRunId,
}
