/**
 * What Flowcraft's own FlowRuntime makes of the upgrade tests' workflow, in process:
 * prints `OUTPUTS {"_outputs.<id>": value, ...}` (every `_outputs.*` key of the final
 * context) and the run's status as `STATUS <status>`.
 */
import { createRequire } from 'node:module'
import { FlowRuntime } from 'flowcraft'

const require = createRequire(import.meta.url)
const { registry, blueprints, BLUEPRINT_ID } = require('./workflows.js')

const bps = blueprints
const runtime = new FlowRuntime({
	registry,
	blueprints: bps,
	logger: { debug() {}, info() {}, warn() {}, error() {} },
})
const result = await runtime.run(bps[BLUEPRINT_ID], { tag: 'reference' })
const outputs = Object.fromEntries(
	Object.entries(result.context)
		.filter(([k]) => k.startsWith('_outputs.'))
		.sort(([a], [b]) => (a < b ? -1 : 1)),
)
process.stdout.write(`STATUS ${result.status}\nOUTPUTS ${JSON.stringify(outputs)}\n`)
