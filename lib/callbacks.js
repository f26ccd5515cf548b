'use strict'

// The two small callbacks the native worker calls besides runNode. Both must never
// throw or reject: they run inside native callbacks, where an exception has nowhere
// useful to go.

const { safeLogger } = require('./logger')

const LOG_LEVELS = new Set(['debug', 'info', 'warn', 'error'])

/** Whether `eventBus` is one events can be emitted on (it has `emit`). */
function canEmit(eventBus) {
	return !!eventBus && typeof eventBus.emit === 'function'
}

/**
 * `notify(messageJson)`: log lines go to the logger, events to the event bus, and
 * `{ kind: 'cancel', runId }` (a run with nodes running here was cancelled) to `onCancel`.
 * `holdFinish(runId)`: a promise while this process's startRun of that run has not yet
 * emitted its workflow:start, so a quick run's workflow:finish comes after it.
 * @param {{ logger?: object, eventBus?: { emit: Function }, onCancel?: (runId: string) => void, holdFinish?: (runId: string) => Promise<void> | undefined }} options
 */
function createNotify({ logger, eventBus, onCancel, holdFinish } = {}) {
	const log = safeLogger(logger)
	const emits = canEmit(eventBus)
	return function notify(messageJson) {
		let msg
		try {
			msg = typeof messageJson === 'string' ? JSON.parse(messageJson) : messageJson
		} catch (e) {
			log.warn('notify: message from the native core is not JSON', { error: e.message })
			return
		}
		if (!msg || typeof msg !== 'object') return
		if (msg.kind === 'log') {
			const level = LOG_LEVELS.has(msg.level) ? msg.level : 'info'
			log[level](String(msg.message), msg.meta === null || typeof msg.meta !== 'object' ? undefined : msg.meta)
		} else if (msg.kind === 'cancel') {
			if (typeof onCancel !== 'function' || typeof msg.runId !== 'string') return
			try {
				onCancel(msg.runId)
			} catch (e) {
				log.warn('Aborting the nodes of a cancelled run failed', {
					runId: msg.runId,
					error: e?.message ? e.message : String(e),
				})
			}
		} else if (msg.kind === 'event') {
			if (!emits) return
			const onError = (e) =>
				log.warn('eventBus.emit failed', { type: msg.type, error: e?.message ? e.message : String(e) })
			const emit = () => {
				try {
					const p = eventBus.emit({ type: msg.type, payload: withExecutionId(msg.payload) })
					if (p && typeof p.then === 'function') p.then(undefined, onError)
				} catch (e) {
					onError(e)
				}
			}
			const held = msg.type === 'workflow:finish' && holdFinish ? holdFinish(msg.payload?.executionId) : undefined
			if (held) held.then(emit, emit)
			else emit()
		}
	}
}

/**
 * The core's job events (`job:*`) name their run `runId`, as Flowcraft's distributed
 * adapter does; an event store files an event under `payload.executionId` (Flowcraft's
 * PersistentEventBusAdapter: 'unknown' without it), so each also gets `executionId`.
 */
function withExecutionId(payload) {
	if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) return payload
	if (payload.executionId !== undefined || typeof payload.runId !== 'string') return payload
	return { ...payload, executionId: payload.runId }
}

/**
 * `evaluate(requestJson)` for a user evaluator: `{ expression, data }` → `{ value }`
 * (`{}` when the value is undefined), or `{ error: { message } }` when the evaluator
 * throws or its value is not JSON.
 */
function createEvaluate(evaluator, { logger } = {}) {
	const log = safeLogger(logger)
	return async function evaluate(requestJson) {
		let expression
		try {
			const req = typeof requestJson === 'string' ? JSON.parse(requestJson) : requestJson
			expression = req.expression
			const value = await evaluator.evaluate(
				expression,
				req.data === null || typeof req.data !== 'object' ? {} : req.data,
			)
			if (value === undefined || typeof value === 'function' || typeof value === 'symbol') return '{}'
			return JSON.stringify({ value })
		} catch (e) {
			const message = `evaluator failed for expression ${JSON.stringify(expression)}: ${e?.message ? e.message : String(e)}`
			log.warn(message)
			return JSON.stringify({ error: { message } })
		}
	}
}

/**
 * Emits `{ type, payload }` on `eventBus` (if it has `emit`) and waits for it; a bus
 * that throws or rejects is logged on `log`, never passed on.
 */
async function emitEvent(eventBus, log, type, payload) {
	if (!canEmit(eventBus)) return
	try {
		await eventBus.emit({ type, payload })
	} catch (e) {
		log.warn('eventBus.emit failed', { type, error: e?.message ? e.message : String(e) })
	}
}

module.exports = { canEmit, createNotify, createEvaluate, emitEvent, withExecutionId }
