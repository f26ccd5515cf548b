'use strict'
// A recording event store with the contract Flowcraft's PostgreSQL history store is
// used through (PersistentEventBusAdapter + PostgresHistoryAdapter): an event is filed
// under `payload.executionId` when the payload has that field, else under 'unknown';
// its payload is kept as JSON (a JSONB column); `flowcraft inspect <run id>` reads the
// run's events in order and derives its summary as `summarize` does here. Our own
// code, written from that contract; not a test file.

function createHistoryBus() {
	const runs = new Map()
	let seq = 0
	return {
		runs,
		emit: async (event) => {
			const id = event.payload && 'executionId' in event.payload ? event.payload.executionId : 'unknown'
			if (!runs.has(id)) runs.set(id, [])
			runs
				.get(id)
				.push({ seq: seq++, at: Date.now(), type: event.type, payload: JSON.parse(JSON.stringify(event.payload)) })
		},
	}
}

/** What inspect prints of a run: its summary, node table and replayed final context. */
function summarize(runId, records) {
	const start = records.find((r) => r.type === 'workflow:start')
	const finish = records.find((r) => r.type === 'workflow:finish')
	const nodeEvents = records.filter((r) => r.type.startsWith('node:'))
	const nodes = new Map()
	for (const r of nodeEvents) {
		if (!('nodeId' in r.payload)) continue
		if (!nodes.has(r.payload.nodeId)) nodes.set(r.payload.nodeId, [])
		nodes.get(r.payload.nodeId).push(r.type)
	}
	const table = {}
	for (const [id, types] of nodes) {
		table[id] = types.includes('node:error')
			? 'Failed'
			: types.includes('node:finish')
				? 'Completed'
				: types.includes('node:start')
					? 'Running'
					: 'Unknown'
	}
	// the replay: node:finish records the output (a fallback node's under the node it
	// replaced), context:change sets or deletes a key, node:error records the error
	const context = {}
	const errors = []
	const replaced = new Map()
	for (const r of records) {
		const p = r.payload
		if (p.executionId !== runId) continue
		if (r.type === 'node:fallback') replaced.set(p.fallback, p.nodeId)
		else if (r.type === 'node:finish') {
			const id = replaced.get(p.nodeId) ?? p.nodeId
			context[`_outputs.${id}`] = p.result?.output
			context[id] = p.result?.output
		} else if (r.type === 'context:change') {
			if (p.op === 'set') context[p.key] = p.value
			else if (p.op === 'delete') delete context[p.key]
		} else if (r.type === 'node:error') errors.push(p.error)
	}
	return {
		runId: start ? runId : undefined,
		blueprintId: start?.payload.blueprintId,
		status: finish?.payload.status,
		runErrors: finish?.payload.errors?.length ?? 0,
		startedAt: start?.at,
		finishedAt: finish?.at,
		totalEvents: records.length,
		nodesStarted: nodeEvents.filter((r) => r.type === 'node:start').length,
		nodesCompleted: nodeEvents.filter((r) => r.type === 'node:finish').length,
		nodesFailed: nodeEvents.filter((r) => r.type === 'node:error').length,
		nodes: table,
		context,
		errors,
	}
}

module.exports = { createHistoryBus, summarize }
