// Reference half of the differential tests: runs scenarios with flowcraft's in-memory
// FlowRuntime. ESM because flowcraft is ESM-only and jest (CommonJS, no
// --experimental-vm-modules) cannot `import()` it: the jest test runs this file as a
// child process.
//
//   node __test__/diff/reference.mjs                 print a readable table of every scenario
//   node __test__/diff/reference.mjs --json [names]  print `__REFERENCE__<json>` (used by the test)
import { createRequire } from 'node:module'
import * as fc from 'flowcraft'

const require = createRequire(import.meta.url)
const { scenarios, byName, outputKey, withoutRunId } = require('./scenarios.js')
const { webhookEndpoint, deliveryOutput } = require('./builtins.js')

/** Every `_outputs.*` key of a context object. */
export function outputsOf(context) {
	const out = {}
	for (const key of Object.keys(context).sort()) if (key.startsWith('_outputs.')) out[outputKey(key)] = context[key]
	return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
}

const quietLogger = { debug() {}, info() {}, warn() {}, error() {} }

/**
 * FlowRuntime's run(), then what its scheduler does for a run stopped at sleep nodes: at each
 * wake-up time, resume() at that node, until the run is no longer awaiting a timer. A run
 * awaiting at the wait node of the scenario's next `resumes` step is resume()d there with that
 * step's action and output (a webhook call's output for the run id its webhook node
 * registered). A run() that throws (a runaway loop: "Traversal exceeded maximum iterations")
 * counts as failed.
 */
async function runToEnd(runtime, blueprint, initial, steps = [], runIdOf = () => undefined) {
	let result
	let next = 0
	try {
		result = await runtime.run(structuredClone(blueprint), initial)
		for (;;) {
			const ctx = result.context ?? {}
			const details = ctx._awaitingDetails ?? {}
			const awaiting = ctx._awaitingNodeIds ?? []
			const timer = awaiting.find((id) => details[id]?.reason === 'timer')
			const step = steps[next]
			if (result.status === 'awaiting' && !timer && step && awaiting.includes(step.node)) {
				next += 1
				const resumeData = step.webhook
					? { output: deliveryOutput(step, runIdOf()), action: 'webhook' }
					: { output: step.output, action: step.action }
				result = await runtime.resume(structuredClone(blueprint), result.serializedContext, resumeData, step.node)
				continue
			}
			if (result.status !== 'awaiting' || !timer) return result
			const wait = Date.parse(details[timer].wakeUpAt) - Date.now()
			await new Promise((resolve) => setTimeout(resolve, Math.max(0, wait)))
			result = await runtime.resume(structuredClone(blueprint), result.serializedContext, { output: undefined }, timer)
		}
	} catch (error) {
		return { status: 'failed', context: result?.context ?? {}, errors: [{ message: error.message }] }
	}
}

/** Runs one scenario once; `runTag` keys the in-process retry counters. */
export async function runScenario(scenario, runTag) {
	const options = {
		registry: scenario.registry(fc),
		blueprints: Object.fromEntries(
			[scenario.blueprint, ...(scenario.children ?? [])].map((bp) => [bp.id, structuredClone(bp)]),
		),
		logger: quietLogger,
	}
	if (scenario.evaluator) options.evaluator = scenario.evaluator()
	if (scenario.middleware) options.middleware = scenario.middleware()
	// FlowRuntime's WebhookNode calls dependencies.adapter.registerWebhookEndpoint(executionId,
	// nodeId) in prep: answer as ours does, and keep the run id it saw (one runtime per run)
	let webhookRunId
	options.dependencies = {
		adapter: {
			async registerWebhookEndpoint(runId, nodeId) {
				webhookRunId = runId
				return webhookEndpoint(runId, nodeId)
			},
		},
	}
	const runtime = new fc.FlowRuntime(options)
	const initial = { ...(scenario.initialContext ?? {}), runTag }
	const result = await runToEnd(runtime, scenario.blueprint, initial, scenario.resumes, () => webhookRunId)
	if (scenario.runIdInOutputs && webhookRunId === undefined)
		throw new Error(`${scenario.name}: no webhook node registered an endpoint in FlowRuntime`)
	const normalise = (value) => (scenario.runIdInOutputs ? withoutRunId(value, webhookRunId) : value)
	const errors = (result.errors ?? []).map((e) => ({
		nodeId: e.nodeId,
		message: e.message,
		cause: e.originalError?.cause?.message ?? e.originalError?.message ?? null,
	}))
	const context = {}
	for (const key of scenario.compareContext ?? [])
		if (Object.hasOwn(result.context, key)) context[key] = result.context[key]
	return { status: result.status, outputs: normalise(outputsOf(result.context)), context: normalise(context), errors }
}

/**
 * Runs each scenario REPEAT times (fresh runtime, fresh runTag) and checks that the
 * reference is deterministic; returns { [name]: { status, outputs, context, errors } }.
 */
export async function runReference(names, repeat = 3) {
	const out = {}
	for (const name of names) {
		const scenario = byName(name)
		const runs = []
		for (let i = 0; i < repeat; i++) runs.push(await runScenario(scenario, `ref-${name}-${i}`))
		// keys a scenario leaves out of the comparison may differ (values FlowRuntime makes random)
		const ignored = Object.keys(scenario.expect?.ignoreOutputs ?? {})
		const stable = (r) => {
			const outputs = { ...r.outputs }
			for (const key of ignored) delete outputs[key]
			return JSON.stringify({ ...r, outputs, errors: undefined })
		}
		const first = stable(runs[0])
		for (const r of runs.slice(1)) {
			if (stable(r) !== first) {
				throw new Error(`reference result of ${name} is not deterministic:\n${first}\n${JSON.stringify(r)}`)
			}
		}
		out[name] = runs[0]
	}
	return out
}

const isMain = import.meta.url === `file://${process.argv[1]}`
if (isMain) {
	const args = process.argv.slice(2)
	const json = args[0] === '--json'
	const names = (json ? args.slice(1) : args).length ? (json ? args.slice(1) : args) : scenarios.map((s) => s.name)
	// FlowRuntime's PropertyEvaluator console.error()s on unsupported expressions; keep stdout clean
	console.error = () => {}
	const results = await runReference(names)
	if (json) {
		process.stdout.write(`__REFERENCE__${JSON.stringify(results)}\n`)
	} else {
		for (const [name, r] of Object.entries(results)) {
			console.log(`\n=== ${name}: ${r.status}`)
			for (const [k, v] of Object.entries(r.outputs)) console.log(`  ${k} = ${JSON.stringify(v)}`)
			for (const [k, v] of Object.entries(r.context)) console.log(`  (ctx) ${k} = ${JSON.stringify(v)}`)
			for (const e of r.errors) console.log(`  error ${e.nodeId}: ${e.message} <- ${e.cause}`)
			const intended = byName(name).intended
			const same =
				intended &&
				intended.status === r.status &&
				JSON.stringify(sortKeys(intended.outputs)) === JSON.stringify(sortKeys(r.outputs)) &&
				JSON.stringify(sortKeys(intended.context ?? {})) === JSON.stringify(sortKeys(r.context))
			console.log(`  matches intended: ${same ? 'yes' : 'NO'}`)
		}
	}
}

function sortKeys(v) {
	if (Array.isArray(v)) return v.map(sortKeys)
	if (v && typeof v === 'object')
		return Object.fromEntries(
			Object.keys(v)
				.sort()
				.map((k) => [k, sortKeys(v[k])]),
		)
	return v
}
