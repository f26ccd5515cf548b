'use strict'
/**
 * The blueprints of the chaos suite's worker (chaos/worker.js) and what the checker
 * knows of them: the fan-out/fan-in blueprint (start → b0..b7 → 'all' join → end) and
 * the one-node blueprints of the bad-input cases.
 */

const BRANCHES = 8
const FANOUT = 'chaos-fanout'
const VERSION = 'v1'
/** A registered `uses` key that is SQL: it must be just a key. */
const SQL_USES_KEY = `x'); DROP TABLE flowcraft_contexts; SELECT ('`
/** An unregistered `uses` key that is SQL: the run fails naming it, nothing else happens. */
const SQL_USES_MISSING = `y"; DELETE FROM pg_class; --`

/** start → b0..b7 (parallel) → join ('all') → end */
function fanoutBlueprint() {
	const nodes = [{ id: 'start', uses: 'chaos.start', params: { node: 'start' } }]
	const edges = []
	for (let i = 0; i < BRANCHES; i++) {
		nodes.push({ id: `b${i}`, uses: 'chaos.branch', params: { node: `b${i}`, index: i } })
		edges.push({ source: 'start', target: `b${i}` }, { source: `b${i}`, target: 'join' })
	}
	nodes.push({ id: 'join', uses: 'chaos.join', params: { node: 'join' }, config: { joinStrategy: 'all' } })
	nodes.push({ id: 'end', uses: 'chaos.end', params: { node: 'end' } })
	edges.push({ source: 'join', target: 'end' })
	return { id: FANOUT, metadata: { version: VERSION }, nodes, edges }
}
const FANOUT_NODES = ['start', ...Array.from({ length: BRANCHES }, (_, i) => `b${i}`), 'join', 'end']

function single(id, uses) {
	return { id, metadata: { version: VERSION }, nodes: [{ id: 'n', uses }], edges: [] }
}

const blueprints = {
	[FANOUT]: fanoutBlueprint(),
	'bad-bigint': single('bad-bigint', 'bad.bigint'),
	'bad-cycle': single('bad-cycle', 'bad.cycle'),
	'bad-fn-output': single('bad-fn-output', 'bad.fnOutput'),
	'bad-ctx-fn': single('bad-ctx-fn', 'bad.ctxFn'),
	'bad-ctx-bigint': single('bad-ctx-bigint', 'bad.ctxBigint'),
	'bad-number': single('bad-number', 'bad.number'),
	'bad-string': single('bad-string', 'bad.string'),
	'big-output': single('big-output', 'big.output'),
	'sql-uses': single('sql-uses', SQL_USES_KEY),
	'sql-uses-missing': single('sql-uses-missing', SQL_USES_MISSING),
}

function startNodesOf(bp) {
	const targets = new Set(bp.edges.map((e) => e.target))
	return bp.nodes.filter((n) => !targets.has(n.id)).map((n) => n.id)
}

module.exports = {
	BRANCHES,
	FANOUT,
	FANOUT_NODES,
	VERSION,
	SQL_USES_KEY,
	SQL_USES_MISSING,
	blueprints,
	startNodesOf,
}
