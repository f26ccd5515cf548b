'use strict'

// `npm run demo` without the build step: demo/run.js starts the demo worker, runs the
// client, stops the worker with SIGTERM, and exits 0 only if every run completed.
// It runs here on a queue and tables of its own, created by the demo itself.

const path = require('node:path')
const { execFile } = require('node:child_process')
const S = require('./helpers/services')
const { deleteRunKeys, ROOT } = require('./helpers/runs-env')

const res = S.useResources()

test('node demo/run.js exits 0: every run completed and the worker stopped on SIGTERM', async () => {
	const queue = res.queueName('demo')
	res.onCleanup(() => S.deleteQueues([`${queue}.dead`]))
	const ctxTable = res.trackTable(S.uniqueName('demo_c'))
	const statusTable = res.trackTable(S.uniqueName('demo_s'))
	const r = await new Promise((resolve) => {
		execFile(
			process.execPath,
			[path.join(ROOT, 'demo', 'run.js')],
			{
				env: {
					...process.env,
					POSTGRES_URL: S.POSTGRES_URL,
					REDIS_URL: S.REDIS_URL,
					RABBITMQ_URL: S.RABBITMQ_URL,
					FLOWCRAFT_QUEUE: queue,
					FLOWCRAFT_CONTEXT_TABLE: ctxTable,
					FLOWCRAFT_STATUS_TABLE: statusTable,
				},
				timeout: 90000,
			},
			(error, stdout, stderr) =>
				resolve({ code: error ? error.code : 0, signal: error ? error.signal : null, stdout, stderr }),
		)
	})
	const runIds = [...r.stdout.matchAll(/started \S+ as (\S+)/g)].map((m) => m[1])
	res.onCleanup(() => deleteRunKeys(runIds))
	expect({ code: r.code, signal: r.signal, stderr: r.stderr }).toEqual({ code: 0, signal: null, stderr: '' })
	expect(runIds).toHaveLength(4)
	expect(r.stdout).toContain('[client] 4 of 4 runs completed')
	// The worker's and the client's lines interleave at random: match the client's alone.
	const clientLines = r.stdout
		.split('\n')
		.filter((line) => line.startsWith('[client]'))
		.join('\n')
	expect(clientLines).toMatch(/order-diamond \S+: completed\n\[client\] {3}receive {3}\{"items":2,"subtotal":37\}/)
	expect(r.stdout).toContain('[client]   total     49.3')
	expect(r.stdout).toContain('[client]   approve   "approved 42 EUR for ada"')
	expect(r.stdout).toContain('[client]   escalate  "sent 1250 EUR from grace to a manager"')
	expect(r.stdout).toContain('[worker] [flowcraft-rabbitmq] Worker stopped; exiting on SIGTERM')
	expect(r.stdout).toContain('demo: every run completed')
	// the demo created its own tables
	expect(await S.countRows(statusTable)).toBe(4)
}, 120000)
