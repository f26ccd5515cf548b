'use strict'

/**
 * Big values in V8. A node that returns a big output leaves its value, the strings it was
 * built from and the pieces of its JSON text behind as garbage, and V8 collects garbage
 * only when its heap next grows past a limit: meanwhile napi copies the text to the core,
 * the core commits it, and the next node reads values of its own, so the worker's peak
 * memory counted the same value several times (issue 12). So around a response this big,
 * the worker asks V8 for a full collection twice: before the response goes to the core
 * (the value and the pieces go; the text stays) and on the next turn of the event loop,
 * once the core has its copy (the text goes). A collection of a heap holding such a value
 * takes tens of milliseconds, against seconds to commit it.
 */

const v8 = require('node:v8')
const vm = require('node:vm')

/** A response text of at least this many characters is collected around. */
const BIG_TEXT_CHARS = 8 * 2 ** 20

let collect // V8's `gc`, exposed to a context of its own (the process's globals stay as they were)
let pending = false

function gcFunction() {
	if (collect === undefined) {
		try {
			v8.setFlagsFromString('--expose-gc')
			collect = vm.runInNewContext('gc')
		} catch {
			collect = null // this V8 does not expose it: V8 collects when it decides to
		}
		if (typeof collect !== 'function') collect = null
	}
	return collect
}

const isBig = (text) => typeof text === 'string' && text.length >= BIG_TEXT_CHARS

/** A full collection now, when `text` is big (its caller dropped what is garbage). */
function collectNow(text) {
	if (isBig(text)) gcFunction()?.()
}

/** One full collection on the next turn of the event loop, when `text` is big. */
function collectSoon(text) {
	if (!isBig(text) || pending) return
	const gc = gcFunction()
	if (!gc) return
	pending = true
	setImmediate(() => {
		pending = false
		gc()
	})
}

/**
 * A full collection once the current native callback has returned, then a turn of the event
 * loop for Node to run the finalizers it queued: the core's bytes behind an external string
 * that was garbage go too. (A value a native call resolved with stays in that callback's
 * handle scope until the microtasks it ran are done: collected at once, it would survive.)
 */
async function collected() {
	const gc = gcFunction()
	if (!gc) return
	await new Promise((resolve) => setImmediate(resolve))
	gc()
	await new Promise((resolve) => setImmediate(resolve))
}

module.exports = { BIG_TEXT_CHARS, collected, collectNow, collectSoon, isBig }
