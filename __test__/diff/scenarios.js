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
 *   initialContext  optional initial context. The harness adds `runTag` (unique per run)
 *                   so in-process counters (retries) can be keyed per run.
 *   compareContext  optional: context keys whose final presence and value must agree too
 *   intended        what FlowRuntime is expected to produce (self-check of the scenario)
 *   expect          deliberate differences between FlowRuntime and our adapter, each
 *                   with its reason:
 *                     reasonIncludes   failed runs: the adapter's status reason must
 *                                      contain this (FlowRuntime wraps the error as
 *                                      "Node 'x' execution failed")
 *                     ignoreOutputs    { '_outputs.x': 'reason' }: keys left out of the
 *                                      comparison (none needed so far)
 *                     notes            prose on a deliberate difference
 *
 * Node outputs are never `undefined` (JSONB cannot store undefined: a key holding
 * undefined in FlowRuntime's Map has no JSON equivalent).
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
]

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
	const middleware = []
	for (const s of selected) {
		const reg = s.registry(fc)
		for (const [key, impl] of Object.entries(reg)) {
			if (Object.hasOwn(registry, key)) throw new Error(`registry key '${key}' of scenario ${s.name} collides`)
			registry[key] = impl
		}
		blueprints[s.blueprint.id] = structuredClone(s.blueprint)
		if (s.evaluator) evaluators.push(s.evaluator())
		if (s.middleware) middleware.push(...s.middleware())
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

module.exports = { scenarios, startNodeIds, buildRuntimeOptions, byName, groups, MiniEvaluator }
