'use strict'
/**
 * The three benchmark workflows, shared by the client (bench/run.js) and both workers
 * (bench/worker-ours.js, bench/peer.mjs). Plain Flowcraft blueprints and a registry of
 * trivial async functions, so what is measured is the transport (queue, context store,
 * coordination), not the nodes.
 *
 *   diamond  start → a, b, c (parallel) → join ('all') → end           6 node jobs
 *   chain    n0 → n1 → … → n9                                         10 node jobs
 *   fanout   start → w0 … w49 (parallel) → join ('all')               52 node jobs
 *   widthN   s → b0 … b(N-1) → j ('all') → t, 200-byte outputs       N + 3 node jobs
 *            (the width series: a node job should cost the same at any width)
 *   batch10000  s → createFlow().batch() of 10,000 items → t, 200-byte outputs   10,004 node jobs
 */

/** Passes a small number along: every node does a little work on its input. */
async function step({ input }) {
	return { output: typeof input === 'number' ? input + 1 : 1 }
}

/** A join: its input is whatever the last arriving predecessor passed. */
async function join() {
	return { output: 'joined' }
}

/** A branch of the width series: a 200-byte output. */
const WIDE_OUTPUT = 'x'.repeat(200)
async function wide() {
	return { output: WIDE_OUTPUT }
}

const registry = {
	'bench.step': step,
	'bench.join': join,
	'bench.wide': wide,
}

function diamond() {
	const nodes = [
		{ id: 'start', uses: 'bench.step' },
		{ id: 'a', uses: 'bench.step' },
		{ id: 'b', uses: 'bench.step' },
		{ id: 'c', uses: 'bench.step' },
		{ id: 'join', uses: 'bench.join', config: { joinStrategy: 'all' } },
		{ id: 'end', uses: 'bench.step' },
	]
	const edges = [
		{ source: 'start', target: 'a' },
		{ source: 'start', target: 'b' },
		{ source: 'start', target: 'c' },
		{ source: 'a', target: 'join' },
		{ source: 'b', target: 'join' },
		{ source: 'c', target: 'join' },
		{ source: 'join', target: 'end' },
	]
	return { id: 'bench-diamond', nodes, edges }
}

function chain(length = 10) {
	const nodes = []
	const edges = []
	for (let i = 0; i < length; i++) {
		nodes.push({ id: `n${i}`, uses: 'bench.step' })
		if (i > 0) edges.push({ source: `n${i - 1}`, target: `n${i}` })
	}
	return { id: 'bench-chain', nodes, edges }
}

function fanout(width = 50) {
	const nodes = [{ id: 'start', uses: 'bench.step' }]
	const edges = []
	for (let i = 0; i < width; i++) {
		nodes.push({ id: `w${i}`, uses: 'bench.step' })
		edges.push({ source: 'start', target: `w${i}` })
		edges.push({ source: `w${i}`, target: 'join' })
	}
	nodes.push({ id: 'join', uses: 'bench.join', config: { joinStrategy: 'all' } })
	return { id: 'bench-fanout', nodes, edges }
}

function width(n) {
	const nodes = [{ id: 's', uses: 'bench.wide' }]
	const edges = []
	for (let i = 0; i < n; i++) {
		nodes.push({ id: `b${i}`, uses: 'bench.wide' })
		edges.push({ source: 's', target: `b${i}` }, { source: `b${i}`, target: 'j' })
	}
	nodes.push({ id: 'j', uses: 'bench.join', config: { joinStrategy: 'all' } }, { id: 't', uses: 'bench.wide' })
	edges.push({ source: 'j', target: 't' })
	return { id: `bench-width${n}`, nodes, edges }
}

/** `s` → a batch (`batch-scatter`, one `bench.wide` job per item of `items`, `batch-gather`) → `t`. */
function batch() {
	const nodes = [
		{ id: 's', uses: 'bench.wide' },
		{
			id: 'b_scatter',
			uses: 'batch-scatter',
			inputs: 'items',
			params: { workerUsesKey: 'bench.wide', outputKey: 'results', gatherNodeId: 'b_gather' },
		},
		{ id: 'b_gather', uses: 'batch-gather', params: { outputKey: 'results', gatherNodeId: 'b_gather' } },
		{ id: 't', uses: 'bench.wide' },
	]
	const edges = [
		{ source: 's', target: 'b_scatter' },
		{ source: 'b_scatter', target: 'b_gather' },
		{ source: 'b_gather', target: 't' },
	]
	return { id: 'bench-batch10000', nodes, edges }
}

/**
 * name → { blueprint, label } in the order the report lists them; `jobs`: node jobs per run when
 * not one per blueprint node, `context`: the runs' initial context, `maxRuns`: at most this many
 * measured runs whatever BENCH_RUNS says.
 */
const workflows = {
	diamond: { blueprint: diamond(), label: 'diamond (6 nodes)' },
	chain: { blueprint: chain(10), label: 'chain (10 nodes)' },
	fanout: { blueprint: fanout(50), label: 'fan-out 50 (52 nodes)' },
	width20: { blueprint: width(20), label: 'width 20 (23 nodes, 200-byte outputs)', width: 20 },
	width200: { blueprint: width(200), label: 'width 200 (203 nodes)', width: 200 },
	width2000: { blueprint: width(2000), label: 'width 2,000 (2,003 nodes)', width: 2000 },
	batch10000: {
		blueprint: batch(),
		label: 'batch of 10,000 items (10,004 node jobs)',
		width: 10000,
		jobs: 10004,
		context: { items: Array.from({ length: 10000 }, (_, i) => i) },
		maxRuns: 1,
	},
}

/** Node jobs one run of a workflow makes. */
function jobsPerRun(wf) {
	return workflows[wf].jobs ?? workflows[wf].blueprint.nodes.length
}

/** Nodes with no incoming edge (and that are no node's fallback): the jobs a run starts with. */
function startNodeIds(blueprint) {
	const targets = new Set(blueprint.edges.map((e) => e.target))
	const fallbacks = new Set(blueprint.nodes.map((n) => n.config?.fallback).filter(Boolean))
	return blueprint.nodes.map((n) => n.id).filter((id) => !targets.has(id) && !fallbacks.has(id))
}

/** Every blueprint by id (a worker serves all three). A fresh copy per call. */
function blueprints() {
	const out = {}
	for (const w of Object.values(workflows)) out[w.blueprint.id] = structuredClone(w.blueprint)
	return out
}

module.exports = { workflows, registry, blueprints, startNodeIds, jobsPerRun }
