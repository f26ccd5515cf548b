'use strict'
// The workflow of trace.test.js: s → b0..b11 → j ('all'). Not a test file.
const nodes = [
	{ id: 's', uses: 'traced' },
	{ id: 'j', uses: 'traced' },
]
const edges = []
for (let i = 0; i < 12; i++) {
	nodes.push({ id: `b${i}`, uses: 'traced' })
	edges.push({ source: 's', target: `b${i}` }, { source: `b${i}`, target: 'j' })
}
module.exports = { blueprints: { traced: { id: 'traced', nodes, edges } } }
