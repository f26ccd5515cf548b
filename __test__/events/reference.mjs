// Reference half of events.test.js: each scenario run by flowcraft's FlowRuntime with a
// recording event bus; prints `__EVENTS__<json>` ({ name: { events, executionIds } }).
// ESM because flowcraft is ESM-only.
import { createRequire } from 'node:module'
import * as fc from 'flowcraft'

const require = createRequire(import.meta.url)
const { scenarios, summary } = require('./scenarios.js')

const quiet = { debug() {}, info() {}, warn() {}, error() {} }
const out = {}
for (const s of scenarios) {
	const events = []
	const runtime = new fc.FlowRuntime({
		registry: s.registry(fc),
		blueprints: { [s.blueprint.id]: structuredClone(s.blueprint) },
		logger: quiet,
		eventBus: { emit: async (e) => events.push(e) },
	})
	const result = await runtime.run(structuredClone(s.blueprint), { tag: `ref-${s.name}` })
	const kept = events.filter((e) => e.type.startsWith('node:') || e.type.startsWith('workflow:'))
	out[s.name] = {
		status: result.status,
		events: kept.map(summary),
		executionIds: [...new Set(kept.map((e) => e.payload?.executionId))],
		blueprintIds: [...new Set(kept.map((e) => e.payload?.blueprintId))],
	}
}
process.stdout.write(`__EVENTS__${JSON.stringify(out)}\n`)
