'use strict'
/**
 * Built-in nodes under kill -9 (issue 10): worker processes are SIGKILLed mid-loop, while runs
 * sleep and mid-batch; fresh workers finish every run with FlowRuntime's outputs, no iteration
 * applied twice or skipped (each iteration appends to the context once), no sleep lost, no batch
 * item lost or added twice. The cases are in helpers/builtins-kill.js, shared with the chaos
 * suite (chaos/builtins-kill.js runs them with more runs); this is their short version.
 */
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const S = require('./helpers/services')
const { killCases } = require('./helpers/builtins-kill')

const res = S.useResources()
const LOG_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'builtins-kill-'))

/** What every case must show: every run completed as FlowRuntime's, nothing lost or doubled. */
function expectClean(r, runs) {
	expect({ problems: r.problems, lost: r.lost, doubled: r.doubled }).toEqual({ problems: [], lost: [], doubled: [] })
	expect({ runs: r.runs, completed: r.completed, deadLetters: r.deadLetters }).toEqual({
		runs,
		completed: runs,
		deadLetters: 0,
	})
	expect(r.kills).toBeGreaterThanOrEqual(2)
}

test('workers killed mid-loop: every run ends as FlowRuntime ends it, each iteration applied once', async () => {
	expectClean(await killCases.loop(res, { logDir: LOG_DIR, runs: 6 }), 6)
}, 120000)

test('every worker killed while runs sleep: fresh workers wake them and finish them', async () => {
	expectClean(await killCases.sleep(res, { logDir: LOG_DIR, runs: 6 }), 6)
}, 120000)

test('workers killed mid-batch: every item runs to one committed result, every run gathers them all', async () => {
	expectClean(await killCases.batch(res, { logDir: LOG_DIR, runs: 8 }), 8)
}, 120000)
