'use strict'

// One trace per run, across processes: the W3C trace context (`traceparent`) active
// where startRun is called travels in every job message of the run, and each node runs
// inside it, so spans made by node code or by Flowcraft's OpenTelemetry middleware join
// the run's trace. `@opentelemetry/api` is an optional peer dependency: without it, or
// without a propagator registered (an OpenTelemetry SDK registers W3C's), nothing is
// carried and nothing changes.

let api // undefined: not looked up yet; null: not installed

function otel() {
	if (api === undefined) {
		try {
			api = require('@opentelemetry/api')
		} catch {
			api = null
		}
	}
	return api
}

/** The `traceparent` of the active context, or undefined when there is none to carry. */
function activeTraceparent() {
	const o = otel()
	if (!o) return undefined
	try {
		const carrier = {}
		o.propagation.inject(o.context.active(), carrier)
		return typeof carrier.traceparent === 'string' && carrier.traceparent !== '' ? carrier.traceparent : undefined
	} catch {
		return undefined
	}
}

/** Runs `fn` inside the trace context `traceparent` (as is, when there is none or no API). */
function withTraceparent(traceparent, fn) {
	const o = otel()
	if (!o || typeof traceparent !== 'string' || traceparent === '') return fn()
	let ctx
	try {
		ctx = o.propagation.extract(o.context.active(), { traceparent })
	} catch {
		return fn()
	}
	return o.context.with(ctx, fn)
}

module.exports = { activeTraceparent, withTraceparent }
