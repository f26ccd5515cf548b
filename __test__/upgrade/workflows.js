'use strict'
/**
 * The workflow of the upgrade tests (__test__/upgrade.test.js), served by both kinds of
 * worker: the old one (bench/peer.mjs, WORKFLOWS_MODULE) and ours (__test__/upgrade/worker.js),
 * and run in process by FlowRuntime for the reference (__test__/upgrade/reference.mjs).
 *
 *   start → w0, w1, w2, w3 (parallel, slow-ish) → join ('all') → end
 *
 * Each output depends on what the node read, so a worker that reads the wrong row or key
 * produces a wrong output, not merely a late one: start gives 3, w<k> gives input * 10 + k,
 * the join reads every branch's `_outputs.w<k>` from the context and sums them, end adds 1.
 * A value missing where it is read gives null (NaN as JSON), so it shows in the outputs.
 *
 * When UPGRADE_TRACE=1 every execution prints `RAN <kind> <tag> <nodeId>` on stdout (the
 * context key `tag` names the run; UPGRADE_KIND names the worker), so a test can count
 * how often each node of each run ran, and on which kind of worker.
 * UPGRADE_NODE_MS sets a branch node's time (default 250 ms; start, join and end take a fifth).
 */
const BRANCHES = 4
const env = process.env
const BRANCH_MS = Number(env.UPGRADE_NODE_MS || 250)

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

async function trace(context, nodeId) {
	if (env.UPGRADE_TRACE !== '1') return
	const tag = await context.get('tag')
	process.stdout.write(`RAN ${env.UPGRADE_KIND || '?'} ${tag} ${nodeId}\n`)
}

const registry = {
	'up.start': async ({ context }) => {
		await trace(context, 'start')
		await sleep(BRANCH_MS / 5)
		return { output: 3 }
	},
	'up.branch': async ({ context, input, params }) => {
		await trace(context, `w${params.k}`)
		await sleep(BRANCH_MS)
		return { output: input * 10 + params.k }
	},
	'up.join': async ({ context }) => {
		await trace(context, 'join')
		let sum = 0
		for (let k = 0; k < BRANCHES; k++) sum += await context.get(`_outputs.w${k}`)
		await sleep(BRANCH_MS / 5)
		return { output: sum }
	},
	'up.end': async ({ context, input }) => {
		await trace(context, 'end')
		await sleep(BRANCH_MS / 5)
		return { output: input + 1 }
	},
}

function fanJoin() {
	const nodes = [{ id: 'start', uses: 'up.start' }]
	const edges = []
	for (let k = 0; k < BRANCHES; k++) {
		nodes.push({ id: `w${k}`, uses: 'up.branch', params: { k } })
		edges.push({ source: 'start', target: `w${k}` }, { source: `w${k}`, target: 'join' })
	}
	nodes.push({ id: 'join', uses: 'up.join', config: { joinStrategy: 'all' } }, { id: 'end', uses: 'up.end' })
	edges.push({ source: 'join', target: 'end' })
	return { id: 'up-fan-join', nodes, edges }
}

/** The node ids of the workflow, in blueprint order. */
const NODE_IDS = fanJoin().nodes.map((n) => n.id)

/** Every blueprint by id (an object, as the CLI's --blueprints module needs it). */
const blueprints = { 'up-fan-join': fanJoin() }

module.exports = { registry, blueprints, NODE_IDS, BLUEPRINT_ID: 'up-fan-join' }
