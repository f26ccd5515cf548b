'use strict'
/**
 * Differential scenarios of Flowcraft's built-in nodes (issue 10): `sleep` and loops
 * (`loop-controller`), in the blueprint shapes `createFlow().sleep()` / `.loop()` compile to.
 * Same shape as scenarios.js (which appends these). The reference resumes a sleeping run at its
 * wake-up time, as FlowRuntime's scheduler does (reference.mjs `runToEnd`).
 */

/** `createFlow().loop(id, { startNodeId, endNodeId, condition })`: the controller and its edges. */
function loop(id, { startNodeId, endNodeId, condition }, exits = []) {
	return {
		node: { id, uses: 'loop-controller', params: { condition }, config: { joinStrategy: 'any' } },
		edges: [
			{ source: endNodeId, target: id },
			{ source: id, target: startNodeId, action: 'continue', transform: `context["${endNodeId}"]` },
			...exits.map((target) => ({ source: id, target, action: 'break', transform: `context["${endNodeId}"]` })),
		],
	}
}

// One evaluator factory for the loop group (conditions like `count < 3`): installed once.
let MiniEvaluator
const loopEvaluator = () => {
	MiniEvaluator ??= require('./scenarios').MiniEvaluator
	return new MiniEvaluator()
}

const counter = loop('counter', { startNodeId: 'increment', endNodeId: 'increment', condition: 'count < 3' }, ['done'])
const twoStep = loop('again', { startNodeId: 'step', endNodeId: 'tally', condition: 'n < 4' }, ['fin'])
const slow = loop('round', { startNodeId: 'work', endNodeId: 'check', condition: 'i < 8' }, ['report'])
const never = loop('gate', { startNodeId: 'body', endNodeId: 'body', condition: 'go' }, ['after'])

const builtins = [
	// ------------------------------------------------------------------ sleep
	{
		name: 'sleep-then-join',
		group: 'default',
		blueprint: {
			id: 'diff-sleep-then-join',
			nodes: [
				{ id: 'start', uses: 'sl.start' },
				{ id: 'nap', uses: 'sleep', params: { duration: 200 } },
				{ id: 'napLong', uses: 'sleep', params: { duration: '2s' } },
				{ id: 'side', uses: 'sl.leaf' },
				{ id: 'after', uses: 'sl.leaf' },
				{ id: 'joined', uses: 'sl.join' },
			],
			edges: [
				{ source: 'start', target: 'nap' },
				{ source: 'start', target: 'napLong' },
				{ source: 'start', target: 'side' },
				{ source: 'nap', target: 'after' },
				{ source: 'after', target: 'joined' },
				{ source: 'napLong', target: 'joined' },
				{ source: 'side', target: 'joined' },
			],
		},
		registry: () => ({
			'sl.start': async () => ({ output: { n: 5 } }),
			'sl.leaf': async (ctx) => ({ output: { saw: ctx.input ?? null } }),
			'sl.join': async () => ({ output: 'joined' }),
		}),
		intended: {
			status: 'completed',
			outputs: {
				'_outputs.start': { n: 5 },
				'_outputs.side': { saw: { n: 5 } },
				'_outputs.nap': { n: 5 },
				'_outputs.napLong': { n: 5 },
				'_outputs.after': { saw: { n: 5 } },
				'_outputs.joined': 'joined',
			},
		},
	},
	{
		name: 'sleep-invalid-duration',
		group: 'default',
		blueprint: {
			id: 'diff-sleep-invalid-duration',
			nodes: [
				{ id: 'first', uses: 'sli.leaf' },
				{ id: 'bad', uses: 'sleep', params: { duration: 'soon' } },
				{ id: 'never', uses: 'sli.leaf' },
			],
			edges: [
				{ source: 'first', target: 'bad' },
				{ source: 'bad', target: 'never' },
			],
		},
		registry: () => ({ 'sli.leaf': async () => ({ output: 'ran' }) }),
		intended: { status: 'failed', outputs: { '_outputs.first': 'ran' } },
		expect: { reasonIncludes: ["SleepNode 'bad' received an invalid duration string: 'soon'"] },
	},

	// ------------------------------------------------------------------ loops
	{
		// Flowcraft's loops guide: a counter from 0 to 3
		name: 'loop-counter',
		group: 'loop',
		blueprint: {
			id: 'diff-loop-counter',
			nodes: [
				{ id: 'initialize', uses: 'lc.init' },
				{ id: 'increment', uses: 'lc.inc' },
				counter.node,
				{ id: 'done', uses: 'lc.done' },
			],
			edges: [...counter.edges, { source: 'initialize', target: 'counter' }],
		},
		registry: () => ({
			'lc.init': async (ctx) => {
				await ctx.context.set('count', 0)
				return { output: 'Initialized' }
			},
			'lc.inc': async (ctx) => {
				const count = ((await ctx.context.get('count')) ?? 0) + 1
				await ctx.context.set('count', count)
				const seen = (await ctx.context.get('seen')) ?? []
				await ctx.context.set('seen', [...seen, count])
				return { output: { count } }
			},
			'lc.done': async (ctx) => ({ output: { done: ctx.input ?? null, count: await ctx.context.get('count') } }),
		}),
		evaluator: loopEvaluator,
		compareContext: ['count', 'seen'],
		intended: {
			status: 'completed',
			outputs: {
				'_outputs.initialize': 'Initialized',
				'_outputs.increment': { count: 3 },
				'_outputs.counter': null,
				'_outputs.done': { done: null, count: 3 },
			},
			context: { count: 3, seen: [1, 2, 3] },
		},
	},
	{
		// a body of two nodes, each reading what the other wrote in the same iteration
		name: 'loop-two-step-body',
		group: 'loop',
		blueprint: {
			id: 'diff-loop-two-step-body',
			nodes: [
				{ id: 'setup', uses: 'l2.setup' },
				{ id: 'step', uses: 'l2.step' },
				{ id: 'tally', uses: 'l2.tally' },
				twoStep.node,
				{ id: 'fin', uses: 'l2.fin' },
			],
			edges: [{ source: 'setup', target: 'again' }, { source: 'step', target: 'tally' }, ...twoStep.edges],
		},
		registry: () => ({
			'l2.setup': async (ctx) => {
				await ctx.context.set('n', 0)
				return { output: 'ready' }
			},
			'l2.step': async (ctx) => {
				const n = (await ctx.context.get('n')) + 1
				await ctx.context.set('n', n)
				return { output: { n } }
			},
			'l2.tally': async (ctx) => {
				const log = (await ctx.context.get('log')) ?? []
				await ctx.context.set('log', [...log, `${ctx.input?.n}`])
				return { output: { last: ctx.input?.n ?? null } }
			},
			'l2.fin': async (ctx) => ({ output: { log: await ctx.context.get('log') } }),
		}),
		evaluator: loopEvaluator,
		compareContext: ['n', 'log'],
		intended: {
			status: 'completed',
			outputs: {
				'_outputs.step': { n: 4 },
				'_outputs.tally': { last: 4 },
				'_outputs.again': null,
				'_outputs.setup': 'ready',
				'_outputs.fin': { log: ['1', '2', '3', '4'] },
			},
			context: { n: 4, log: ['1', '2', '3', '4'] },
		},
	},
	{
		// a slow body (the kill -9 test of builtins-kill.test.js stops a worker in it)
		name: 'loop-slow-body',
		group: 'loop',
		blueprint: {
			id: 'diff-loop-slow-body',
			nodes: [
				{ id: 'prime', uses: 'ls.prime' },
				{ id: 'work', uses: 'ls.work' },
				{ id: 'check', uses: 'ls.check' },
				slow.node,
				{ id: 'report', uses: 'ls.report' },
			],
			edges: [{ source: 'prime', target: 'round' }, { source: 'work', target: 'check' }, ...slow.edges],
		},
		registry: () => ({
			'ls.prime': async (ctx) => {
				await ctx.context.set('i', 0)
				return { output: 'primed' }
			},
			'ls.work': async (ctx) => {
				await new Promise((r) => setTimeout(r, 120))
				const i = (await ctx.context.get('i')) + 1
				await ctx.context.set('i', i)
				await ctx.context.set('trail', [...((await ctx.context.get('trail')) ?? []), i])
				return { output: { i } }
			},
			'ls.check': async (ctx) => {
				await new Promise((r) => setTimeout(r, 60))
				return { output: { checked: ctx.input?.i ?? null } }
			},
			'ls.report': async (ctx) => ({ output: { trail: await ctx.context.get('trail') } }),
		}),
		evaluator: loopEvaluator,
		compareContext: ['i', 'trail'],
		intended: {
			status: 'completed',
			outputs: {
				'_outputs.prime': 'primed',
				'_outputs.work': { i: 8 },
				'_outputs.check': { checked: 8 },
				'_outputs.round': null,
				'_outputs.report': { trail: [1, 2, 3, 4, 5, 6, 7, 8] },
			},
			context: { i: 8, trail: [1, 2, 3, 4, 5, 6, 7, 8] },
		},
	},
	{
		// the condition is false at once: the body never runs
		name: 'loop-never-enters',
		group: 'loop',
		blueprint: {
			id: 'diff-loop-never-enters',
			nodes: [
				{ id: 'entry', uses: 'ln.leaf' },
				{ id: 'body', uses: 'ln.leaf' },
				never.node,
				{ id: 'after', uses: 'ln.leaf' },
			],
			edges: [{ source: 'entry', target: 'gate' }, ...never.edges],
		},
		registry: () => ({ 'ln.leaf': async (ctx) => ({ output: { saw: ctx.input ?? null } }) }),
		evaluator: loopEvaluator,
		initialContext: { go: false },
		intended: {
			status: 'completed',
			outputs: { '_outputs.entry': { saw: null }, '_outputs.gate': null, '_outputs.after': { saw: null } },
		},
	},
]

module.exports = { builtins, loop }
