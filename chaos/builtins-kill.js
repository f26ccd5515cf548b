'use strict'
/**
 * The chaos suite's built-in phases (issue 10): worker processes SIGKILLed mid-loop, while runs
 * sleep and mid-batch. The cases are __test__/helpers/builtins-kill.js, shared with
 * __test__/builtins-kill.test.js (their short version in `npm test`); here with more runs
 * (CHAOS_BUILTIN_RUNS, default 48 a case). Each case has its own queue and tables (removed
 * after it), its own worker processes (__test__/diff/worker-process.js), and gives one row of
 * the phase table of chaos/last-run.md (chaos/report.js `builtinRow`): nothing lost, no loop
 * iteration applied twice, no batch item lost or added twice.
 */
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const S = require('../__test__/helpers/services')
const { killCases } = require('../__test__/helpers/builtins-kill')

/**
 * Runs the three cases one after another; → { results, logDir }. A case that throws (a
 * precondition not met in time) gives a result whose problem says so.
 */
async function builtinKillPhases({ log = () => {}, runs = 48 } = {}) {
	const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chaos-builtins-'))
	const results = []
	try {
		for (const [kind, n] of [
			['loop', runs],
			['sleep', runs],
			['batch', runs],
		]) {
			const res = S.resourceTracker()
			const t0 = Date.now()
			log(`built-in phase ${kind}: ${n} runs`)
			let r
			try {
				r = await killCases[kind](res, { logDir, runs: n })
			} catch (e) {
				r = {
					name: `kill -9 (${kind})`,
					runs: n,
					completed: 0,
					kills: 0,
					restarts: 0,
					lost: [],
					doubled: [],
					problems: [`threw: ${e?.message}`],
					deadLetters: 0,
					redeliveries: 0,
					seconds: (Date.now() - t0) / 1000,
				}
			} finally {
				await res.cleanup().catch((e) => log(`cleanup of the ${kind} case failed: ${e.message}`))
			}
			log(
				`built-in phase ${r.name} done in ${r.seconds.toFixed(1)} s: ${r.completed}/${r.runs} completed, ${r.lost.length} lost, ${r.doubled.length} doubled, ${r.kills} kills${r.problems.length ? `\n  !! ${r.problems.join('\n  !! ')}` : ''}`,
			)
			results.push(r)
		}
	} finally {
		await S.closeServices()
	}
	return { results, logDir }
}

module.exports = { builtinKillPhases }
