'use strict'
/**
 * Big payloads do not amplify memory (issue 12, item 10). A worker process runs one
 * node whose output is a ~50 MB JSON value (read by its successor), and, in a fresh
 * process, a run whose context holds such a value; the runs end with the right result.
 *
 * Formula: peak RSS (VmHWM) of the worker ≤ idle baseline + FACTOR × payload, where payload
 * is the value's JSON text in bytes and the idle baseline is the same process's VmHWM after
 * it started and ran the same blueprint with a tiny payload (connections open, code
 * compiled), measured in this test.
 *
 * The target is FACTOR 4. The factors below are regression guards above what the worker
 * reaches today: a 50 MB context 5.6×; a 30 MB node output 23–32× alone on this machine, and
 * up to about 1.6× that when the whole suite runs beside it (V8's collection of the node's
 * garbage comes later under load; a CI run of the older code measured 58×), so the output
 * guard is 64. What remains is listed in docs/architecture.md §8 (measured with heaptrack):
 * the core holds a big value as serde_json::Value (about twice its text) up to three times
 * in a successor's job (`<id>`, `_outputs.<id>`, `_inputs.<successor>` from the node rows),
 * tokio-postgres keeps read and write buffers as large as the largest message a pooled
 * connection ever moved, and V8 holds the node's value, its JSON text and the request.
 *
 * BIG_BYTES overrides the payload size (default 50 MB).
 */
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const S = require('./helpers/services')
const { place: placeFor, adapterAt, spawnWorker: spawnProcess } = require('./helpers/run-place')
const { bigValue, digest, blueprints } = require('./helpers/big-fixtures')

const res = S.useResources()
const LOG_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'big-payload-'))
const PAYLOAD = Number(process.env.BIG_BYTES) || 50e6
// A node's output is held three times by its run's context (`<id>`, `_outputs.<id>`,
// `_inputs.<successor>`) and the final status payload holds that context twice (as JSON
// and as `serializedContext` text): jsonb's 255 MB limit fails a run whose output is
// over about 40 MB at its final commit. So the output case uses 30 MB.
const OUTPUT = Number(process.env.BIG_OUTPUT_BYTES) || 30e6
const FACTOR = { context: 14, output: 64 }

const spawnWorker = (where, label) =>
	spawnProcess(res, { script: path.join(__dirname, 'helpers', 'big-worker.js'), where, label, logDir: LOG_DIR })
const clientFor = (where) => adapterAt(res, where, { blueprints, registry: {} })

/** The process's peak resident set (VmHWM), in bytes. */
function peakRss(pid) {
	const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8')
	return Number(/VmHWM:\s+(\d+) kB/.exec(status)[1]) * 1024
}

const mb = (n) => `${(n / 1e6).toFixed(1)} MB`

/** Runs `blueprint` with a tiny, then the big context; returns the peak numbers and the big run's result. */
async function measure(label, blueprint, context, payload, factor) {
	const where = placeFor(res, label)
	const worker = spawnWorker(where, label)
	await worker.ready
	const client = clientFor(where)
	const run = async (ctx) => {
		const { runId } = await client.startRun(blueprint, ctx)
		return client.waitForRun(runId, { timeoutMs: 240000 })
	}
	const warm = await run(context(1000))
	expect(warm.status).toBe('completed')
	const baseline = peakRss(worker.pid)
	const result = await run(context(payload))
	const peak = peakRss(worker.pid)
	const limit = baseline + factor * payload
	const line = `${label}: payload ${mb(payload)}, idle baseline ${mb(baseline)}, peak ${mb(peak)}, (peak - baseline) / payload = ${((peak - baseline) / payload).toFixed(2)}, limit ${mb(limit)}`
	process.stderr.write(`${line}\n`)
	return { baseline, peak, limit, result, line }
}

test('a node returning a 30 MB output: peak worker RSS ≤ idle baseline + FACTOR × payload', async () => {
	const expected = digest(bigValue(OUTPUT))
	const m = await measure('bigout', 'produce', (bytes) => ({ bytes }), OUTPUT, FACTOR.output)
	expect(m.result.status).toBe('completed')
	const context = m.result.payload.context
	expect(context['_outputs.check']).toEqual(expected)
	expect(digest(context.make)).toEqual(expected)
	expect(digest(context['_outputs.make'])).toEqual(expected)
	expect({ peak: m.peak, line: m.line }).toEqual({ peak: Math.min(m.peak, m.limit), line: m.line })
}, 300000)

test('a run whose context holds 50 MB: peak worker RSS ≤ idle baseline + FACTOR × payload', async () => {
	const big = bigValue(PAYLOAD)
	const expected = digest(big)
	const m = await measure(
		'bigctx',
		'carry',
		(bytes) => ({ blob: bytes === PAYLOAD ? big : bigValue(bytes) }),
		PAYLOAD,
		FACTOR.context,
	)
	expect(m.result.status).toBe('completed')
	expect(m.result.payload.context['_outputs.check']).toEqual(expected)
	expect(digest(m.result.payload.context.blob)).toEqual(expected)
	expect({ peak: m.peak, line: m.line }).toEqual({ peak: Math.min(m.peak, m.limit), line: m.line })
}, 300000)
