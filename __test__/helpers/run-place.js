'use strict'
/** One test's queue and tables (with the node rows' table and the dead-letter queue), and a poll. */
const S = require('./services')

/** Unique queue and table names, removed after the test by `res` (S.useResources()). */
function place(res, label) {
	const queue = res.queueName(label)
	res.onCleanup(() => S.deleteQueues([`${queue}.dead`]))
	const ctx = res.trackTable(S.uniqueName(`${label}_c`))
	res.trackTable(`${ctx}_nodes`)
	return { queue, ctx, st: res.trackTable(S.uniqueName(`${label}_s`)) }
}

/** Polls `check` (sync or async) every 50 ms until it is truthy; throws after `ms`. */
async function until(check, ms, what) {
	const deadline = Date.now() + ms
	for (;;) {
		const value = await check()
		if (value) return value
		if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`)
		await new Promise((r) => setTimeout(r, 50))
	}
}

module.exports = { place, until }
