'use strict'

// Runs one node for the native core: the core decides WHAT runs (routing, joins,
// blueprint-level fallbacks, persistence); this module runs the user's code the way
// Flowcraft's NodeExecutor does (middleware, retries, class lifecycle, events) and
// answers with the result and the context writes, as JSON text (`RunNodeFn` in native.d.ts).

const { setTimeout: sleep } = require('node:timers/promises')
const { canEmit, emitEvent } = require('./callbacks')
const { withTraceparent } = require('./trace')
const { NodeContextView, rawSnapshot } = require('./context-view')
const { safeLogger, createConsoleLogger } = require('./logger')
const { CODES, codedError, describe } = require('./errors')
const { assertNoFunctions } = require('./json')
const { collectNow, collectSoon } = require('./memory')

/** Same test as Flowcraft's `isNodeClass`: a function whose prototype has `exec`. */
function isNodeClass(impl) {
	return typeof impl === 'function' && !!impl.prototype?.exec
}

function toError(e) {
	if (e instanceof Error) return e
	if (e !== null && typeof e === 'object' && typeof e.message === 'string') {
		const err = new Error(e.message)
		if (typeof e.name === 'string') err.name = e.name
		return err
	}
	return new Error(typeof e === 'string' ? e : describe(e))
}

function toRegistryMap(registry) {
	if (registry instanceof Map) return registry
	return new Map(Object.entries(registry || {}))
}

/**
 * Text PostgreSQL can store: U+0000 (which neither TEXT nor JSONB holds) and lone
 * UTF-16 surrogates (which are not Unicode text) become U+FFFD.
 */
function storableText(text) {
	return String(text).replaceAll('\u0000', '\ufffd').toWellFormed()
}

/** The error part of a response: the root cause's own message, not a wrapper's. */
function errorPayload(err) {
	const e = toError(err)
	const out = { message: storableText(e.message), name: storableText(e.name || 'Error') }
	if (typeof e.code === 'string') out.code = e.code
	if (typeof e.stack === 'string') out.stack = storableText(e.stack)
	// Flowcraft's fatal error: no retries, no fallback (the core runs none)
	if (isFatal(e)) out.fatal = true
	return out
}

/**
 * Creates the `runNode` callback the native worker calls for each job.
 *
 * @param {object} options
 * @param {Record<string, Function>|Map<string, Function>} options.registry
 * @param {Record<string, any>} [options.dependencies]  passed to nodes as `dependencies` (plus `logger`)
 * @param {object} [options.logger]
 * @param {Array<object>} [options.middleware]
 * @param {{ emit: Function }} [options.eventBus]
 * @param {boolean} [options.contextEvents]  also emit `context:change` for what the core
 *   commits of each node (its writes, its output, its bound input), as FlowRuntime does
 * @returns {((requestJson: string) => Promise<string>) & { abortAll(reason?: Error): void, inFlight(): number }}
 */
/** A node context's hidden `{ runId, nodeId, blueprintId }` (not part of Flowcraft's NodeContext). */
const NODE_IDENTITY = Symbol('flowcraft-rabbitmq node identity')

function createNodeRunner({
	registry,
	dependencies,
	logger,
	middleware,
	eventBus,
	blueprints,
	readContext,
	contextEvents,
} = {}) {
	const reg = toRegistryMap(registry)
	const mappings = inputMappings(blueprints)
	const referenced = referencedInputs(blueprints)
	const nodeIds = nodeIdSets(blueprints)
	const userLogger = logger || createConsoleLogger()
	const log = safeLogger(userLogger)
	const deps = { ...(dependencies || {}), logger: userLogger }
	const mws = Array.isArray(middleware) ? middleware.filter(Boolean) : []
	const beforeHooks = mws.map((m) => m.beforeNode).filter((h) => typeof h === 'function')
	const afterHooks = mws.map((m) => m.afterNode).filter((h) => typeof h === 'function')
	const aroundHooks = mws.map((m) => m.aroundNode).filter((h) => typeof h === 'function')
	// Node-level controllers of the executions in flight: all of them for abortAll()
	// at shutdown, and by run id for abortRun() when a run is cancelled.
	const inFlight = new Set()
	const byRun = new Map()

	const emit = (type, payload) => emitEvent(eventBus, log, type, payload)
	const events = canEmit(eventBus)
	const tracing = contextEvents === true && events
	// FlowRuntime's `context:change` for a key the core writes when it commits the node
	const change = (executionId, sourceNode, op) =>
		emit(
			'context:change',
			op.op === 'set'
				? { sourceNode, key: op.key, op: 'set', value: op.value, executionId }
				: { sourceNode, key: op.key, op: 'delete', executionId },
		)
	// the writes a response carries (those the core commits), as changes made by the node
	const changesOf = async (responseText, runId, nodeId) => {
		if (!tracing) return
		let writes
		try {
			writes = JSON.parse(responseText).writes
		} catch {
			return
		}
		if (Array.isArray(writes)) for (const w of writes) await change(runId, nodeId, w)
	}

	async function runNode(requestJson) {
		let req
		try {
			if (Array.isArray(requestJson)) {
				// the native call (native.d.ts RunNodeFn): [request without its input and
				// context, input JSON ('': undefined), key, value JSON, ...]; the context's
				// values are parsed when the node reads them (lib/context-view.js rawSnapshot)
				req = JSON.parse(requestJson[0])
				if (req === null || typeof req !== 'object') throw new Error('not an object')
				const input = requestJson[1]
				// parsed when something reads it (lazyInput): a node that never reads its input
				// never holds a second, parsed copy of a big one
				if (typeof input === 'string' && input !== '') req.inputText = input
				req.context = rawSnapshot(requestJson, 2)
				requestJson.length = 0 // a value's text is then held by the snapshot only
			} else {
				req = typeof requestJson === 'string' ? JSON.parse(requestJson) : requestJson
				if (req === null || typeof req !== 'object') throw new Error('not an object')
			}
		} catch (e) {
			return JSON.stringify({
				ok: false,
				error: errorPayload(new Error(`invalid runNode request: ${toError(e).message}`)),
				writes: [],
			})
		}
		try {
			// the run's trace, when its start was traced (lib/trace.js)
			const response = await withTraceparent(req.traceparent, () => execute(req))
			collectSoon(response)
			return response
		} catch (e) {
			// execute() handles every failure itself; this is the last line of defence,
			// because a rejection here would reach the native side as a failed call.
			return JSON.stringify({ ok: false, error: errorPayload(e), writes: [] })
		}
	}

	async function execute(req) {
		const nodeId = String(req.nodeId)
		const runId = req.runId === undefined ? '' : String(req.runId)
		const blueprintId = req.blueprintId === undefined ? '' : String(req.blueprintId)
		const config = req.config !== null && typeof req.config === 'object' ? req.config : {}
		const meta = { runId, blueprintId, nodeId }
		let lateWriteLogged = false
		const ids = nodeIds.get(blueprintId)
		const lazy =
			req.partial === true && typeof readContext === 'function' && ids
				? {
						// other nodes' keys, and the context row's large values the core left out
						isNodeKey: (key) => ids.has(nodeOfKey(key)) || (Array.isArray(req.lazyKeys) && req.lazyKeys.includes(key)),
						read: (keys) => readContext(runId, keys),
						input: req.inputText,
					}
				: undefined
		const view = new NodeContextView(
			req.context,
			(key) => {
				if (lateWriteLogged) return
				lateWriteLogged = true
				log.warn(
					`Node '${nodeId}' wrote context key ${JSON.stringify(key)} after its result was sent (an attempt that timed out kept running); the write is ignored`,
					meta,
				)
			},
			lazy,
		)

		const impl = reg.get(req.uses)
		if (typeof impl !== 'function') {
			const why = impl === undefined ? 'not found in the registry' : `is ${describe(impl)}, not a function or class`
			return failure(new Error(`Implementation for '${req.uses}' ${why} (node '${nodeId}')`), view, nodeId, log)
		}

		const nodeCtl = new AbortController()
		inFlight.add(nodeCtl)
		let runCtls = byRun.get(runId)
		if (!runCtls) {
			runCtls = new Set()
			byRun.set(runId, runCtls)
		}
		runCtls.add(nodeCtl)
		const inputOf = lazyInput(req)
		const ctx = {
			context: view,
			params: req.params !== null && typeof req.params === 'object' ? req.params : {},
			dependencies: deps,
			signal: nodeCtl.signal,
		}
		// (once read or set, `input` is a plain property)
		const setInput = (input) =>
			Object.defineProperty(ctx, 'input', { value: input, writable: true, enumerable: true, configurable: true })
		Object.defineProperty(ctx, 'input', {
			get: () => {
				const input = req.inputFromMapping ? mappedInput(mappings, blueprintId, nodeId, inputOf()) : inputOf()
				setInput(input)
				return input
			},
			set: setInput,
			enumerable: true,
			configurable: true,
		})
		// which node of which run this is, for the built-ins that need it (lib/webhooks.js)
		Object.defineProperty(ctx, NODE_IDENTITY, { value: { runId, nodeId, blueprintId } })
		const run = {
			nodeId,
			meta,
			ctx,
			nodeCtl,
			config,
			maxRetries: Number.isInteger(config.maxRetries) && config.maxRetries > 1 ? config.maxRetries : 1,
			retryDelay: Number.isFinite(config.retryDelay) && config.retryDelay > 0 ? config.retryDelay : 0,
			timeout: Number.isFinite(config.timeout) && config.timeout > 0 ? config.timeout : 0,
		}

		try {
			const strategy = isNodeClass(impl) ? () => runClass(impl, run) : () => withRetries(() => impl(ctx), run)
			// the input an edge bound to `_inputs.<id>` (a mapped input is read, not written)
			if (tracing && inputOf() !== undefined && !req.inputFromMapping && !referenced.has(`${blueprintId}\n${nodeId}`))
				await change(runId, 'unknown', { op: 'set', key: `_inputs.${nodeId}`, value: inputOf() })
			if (events) await emit('node:start', { nodeId, executionId: runId, input: ctx.input, blueprintId })

			let outcome
			try {
				outcome = await withMiddleware(strategy, run)
			} catch (e) {
				outcome = { status: 'failed', error: toError(e) }
			}
			view.seal() // the result is decided: writes from here on belong to no attempt
			let response
			if (outcome.status === 'success') {
				try {
					response = success(normalizeResult(outcome.result, nodeId), view, nodeId)
				} catch (e) {
					outcome = { status: 'failed', error: toError(e) }
				}
			}
			if (outcome.status === 'success') {
				await changesOf(response, runId, nodeId)
				await emit('node:finish', { nodeId, result: outcome.result, executionId: runId, blueprintId })
				// the core records the output under both keys (none for an undefined output)
				const output = tracing ? JSON.parse(response).result?.output : undefined
				if (output !== undefined)
					for (const key of [`_outputs.${nodeId}`, nodeId])
						await change(runId, 'unknown', { op: 'set', key, value: output })
				outcome = undefined // (its value is garbage now: lib/memory.js)
				collectNow(response)
				return response
			}
			// FlowRuntime announces the fallback node it will run, then the error. The core
			// runs that node (a fatal error or a cancellation runs none).
			const code = outcome.error?.code
			const fallback = config.fallback
			const toFallback =
				typeof fallback === 'string' &&
				ids?.has(fallback) &&
				!isFatal(outcome.error) &&
				code !== CODES.NODE_CANCELLED &&
				code !== CODES.RUN_CANCELLED
			const text = failure(outcome.error, view, nodeId, log)
			await changesOf(text, runId, nodeId)
			if (toFallback) await emit('node:fallback', { nodeId, executionId: runId, fallback, blueprintId })
			await emit('node:error', {
				nodeId,
				error: eventError(outcome.error, nodeId, runId, blueprintId),
				executionId: runId,
				blueprintId,
			})
			// a node failing into its fallback node completes with a null output
			if (toFallback && tracing)
				for (const key of [`_outputs.${nodeId}`, nodeId])
					await change(runId, 'unknown', { op: 'set', key, value: null })
			return text
		} finally {
			view.seal()
			inFlight.delete(nodeCtl)
			runCtls.delete(nodeCtl)
			if (runCtls.size === 0 && byRun.get(runId) === runCtls) byRun.delete(runId)
		}
	}

	// Middleware exactly as Flowcraft composes it: before hooks and the node inside a
	// core step whose failure is a value, after hooks in its finally, around hooks
	// wrapped outside-in (the first middleware is the outermost).
	async function withMiddleware(strategy, run) {
		const { ctx, nodeId } = run
		const core = async () => {
			let result
			let error
			try {
				for (const hook of beforeHooks) await hook(ctx.context, nodeId)
				result = await strategy()
				return { status: 'success', result }
			} catch (e) {
				error = toError(e)
				return { status: 'failed', error }
			} finally {
				for (const hook of afterHooks) await hook(ctx.context, nodeId, result, error)
			}
		}
		let chain = core
		for (let i = aroundHooks.length - 1; i >= 0; i--) {
			const hook = aroundHooks[i]
			const next = chain
			chain = async () => {
				let captured
				const returned = await hook(ctx.context, nodeId, async () => {
					captured = await next()
					if (captured.status === 'success') return captured.result
					throw captured.error
				})
				// A hook that short-circuits (never calls next) supplies the result itself.
				if (!captured && returned) return { status: 'success', result: returned }
				if (!captured)
					throw new Error(`Middleware aroundNode for node '${nodeId}' did not call next() and returned no result`)
				return captured
			}
		}
		return chain()
	}

	// Flowcraft's ClassNodeExecutor lifecycle: prep, exec under retries, fallback when
	// exec is exhausted, post; recover whenever anything failed (its own error is logged).
	async function runClass(Impl, run) {
		const { ctx, nodeId, meta } = run
		const instance = new Impl(ctx.params, nodeId)
		let lastError
		try {
			throwIfCancelled(run)
			const prepResult = typeof instance.prep === 'function' ? await instance.prep(ctx) : ctx.input
			let execResult
			try {
				execResult = await withRetries(() => instance.exec(prepResult, ctx), run)
			} catch (e) {
				lastError = toError(e)
				if (isCancelled(run) || isFatal(e)) throw e
			}
			if (lastError) {
				throwIfCancelled(run)
				if (typeof instance.fallback !== 'function') throw lastError
				execResult = await instance.fallback(lastError, ctx)
			}
			throwIfCancelled(run)
			if (!execResult) {
				throw new Error(
					`Node '${nodeId}': ${lastError ? 'fallback' : 'exec'}() returned ${describe(execResult)}; it must return an object such as { output }`,
				)
			}
			return typeof instance.post === 'function' ? await instance.post(execResult, ctx) : execResult
		} catch (e) {
			lastError = toError(e)
			throw e
		} finally {
			if (lastError && typeof instance.recover === 'function') {
				try {
					await instance.recover(lastError, ctx)
				} catch (recoverError) {
					log.warn('Recover phase failed', {
						...meta,
						originalError: lastError.message,
						recoverError: toError(recoverError).message,
					})
				}
			}
		}
	}

	async function withRetries(fn, run) {
		const { nodeId, meta, maxRetries, retryDelay } = run
		let lastError
		for (let attempt = 1; attempt <= maxRetries; attempt++) {
			throwIfCancelled(run)
			try {
				const result = await runAttempt(fn, run)
				if (attempt > 1) log.info('Node execution succeeded after retry', { ...meta, attempt })
				return result
			} catch (e) {
				lastError = e
				if (isCancelled(run)) throw cancelledError(nodeId, run.nodeCtl.signal.reason)
				// Like Flowcraft: a fatal error or an abort is not retried.
				if (isFatal(e) || (e && e.name === 'AbortError')) break
				const message = toError(e).message
				if (attempt < maxRetries) {
					log.warn('Node execution failed, retrying', { ...meta, attempt, maxRetries, error: message })
					await emit('node:retry', { nodeId, attempt, executionId: meta.runId, blueprintId: meta.blueprintId })
					if (retryDelay > 0) {
						try {
							await sleep(retryDelay, undefined, { signal: run.nodeCtl.signal })
						} catch {
							throw cancelledError(nodeId, run.nodeCtl.signal.reason)
						}
					}
				} else if (maxRetries > 1) {
					log.error('Node execution failed after all retries', { ...meta, attempts: maxRetries, error: message })
				}
			}
		}
		throw lastError
	}

	// One attempt: its own AbortController (aborted on timeout, or with the node's on
	// shutdown), exposed as ctx.signal while it runs. The attempt's promise is raced,
	// so a node that ignores its signal still fails the attempt on time.
	async function runAttempt(fn, run) {
		const { ctx, nodeCtl, timeout, nodeId } = run
		const attemptCtl = new AbortController()
		const onNodeAbort = () => attemptCtl.abort(nodeCtl.signal.reason)
		nodeCtl.signal.addEventListener('abort', onNodeAbort, { once: true })
		ctx.signal = attemptCtl.signal
		let timer
		try {
			const work = new Promise((resolve) => resolve(fn())) // a sync throw becomes a rejection
			work.catch(() => {}) // it may settle after we stopped waiting for it
			return await new Promise((resolve, reject) => {
				work.then(resolve, reject)
				if (timeout > 0) {
					timer = setTimeout(() => {
						const err = codedError(CODES.NODE_TIMEOUT, `Node '${nodeId}' timed out after ${timeout} ms`)
						err.name = 'TimeoutError'
						reject(err) // first, so the timeout and not the node's reaction to the abort is the attempt's error
						attemptCtl.abort(err)
					}, timeout)
				}
				attemptCtl.signal.addEventListener(
					'abort',
					() => {
						if (nodeCtl.signal.aborted) reject(cancelledError(nodeId, nodeCtl.signal.reason))
					},
					{ once: true },
				)
			})
		} finally {
			clearTimeout(timer)
			nodeCtl.signal.removeEventListener('abort', onNodeAbort)
			ctx.signal = nodeCtl.signal
		}
	}

	function isCancelled(run) {
		return run.nodeCtl.signal.aborted
	}

	function throwIfCancelled(run) {
		if (isCancelled(run)) throw cancelledError(run.nodeId, run.nodeCtl.signal.reason)
	}

	/** Aborts the signal of every node in flight (the worker is stopping). */
	runNode.abortAll = (reason) => {
		const why = reason instanceof Error ? reason : codedError(CODES.NODE_CANCELLED, 'The worker is stopping')
		for (const ctl of inFlight) ctl.abort(why)
	}
	/**
	 * Aborts the signal of every node of `runId` running in this process (the run was
	 * cancelled). Their executions fail with ERR_RUN_CANCELLED; the core does not
	 * commit anything for a run that has ended. Returns how many were aborted.
	 */
	runNode.abortRun = (runId, reason) => {
		const ctls = byRun.get(String(runId))
		if (!ctls) return 0
		const why = reason instanceof Error ? reason : codedError(CODES.RUN_CANCELLED, `Run '${runId}' was cancelled`)
		let n = 0
		for (const ctl of ctls) {
			if (!ctl.signal.aborted) {
				ctl.abort(why)
				n++
			}
		}
		return n
	}
	runNode.inFlight = () => inFlight.size
	return runNode
}

/**
 * Flowcraft's fatal error, recognised without loading the `flowcraft` package: a
 * `FlowcraftError` (by name) with `isFatal: true`. FlowRuntime retries any other
 * error, whatever properties it has.
 */
function isFatal(e) {
	return !!e && e.name === 'FlowcraftError' && e.isFatal === true
}

/**
 * The node's input, parsed from the text the core sent on first call (a request given as an
 * object carries it parsed, as `input`).
 */
function lazyInput(req) {
	let text = req.inputText
	let input = req.input
	return () => {
		if (text !== undefined) {
			input = JSON.parse(text)
			text = undefined
		}
		return input
	}
}

/**
 * The object `inputs` mapping of every node, by blueprint and node id: the core
 * sends a mapped input without its undefined fields (JSON has none), and the runner
 * gives the node the object FlowRuntime builds, every field in the mapping's order.
 */
function inputMappings(blueprints) {
	const out = new Map()
	const entries = blueprints instanceof Map ? [...blueprints] : Object.entries(blueprints || {})
	for (const [id, bp] of entries) {
		for (const node of Array.isArray(bp?.nodes) ? bp.nodes : []) {
			if (node && node.inputs !== null && typeof node.inputs === 'object') out.set(`${id}\n${node.id}`, node.inputs)
		}
	}
	return out
}

/**
 * `<blueprint id>\n<node id>` of the nodes with an `inputs` mapping: their input may be
 * read from other keys rather than bound to `_inputs.<id>`.
 */
function referencedInputs(blueprints) {
	const out = new Set()
	const entries = blueprints instanceof Map ? [...blueprints] : Object.entries(blueprints || {})
	for (const [id, bp] of entries) {
		for (const node of Array.isArray(bp?.nodes) ? bp.nodes : []) {
			if (node && node.inputs !== undefined && node.inputs !== null && node.inputs !== '') out.add(`${id}\n${node.id}`)
		}
	}
	return out
}

/**
 * The error of `node:error`: a new Error whose fields are its own enumerable properties,
 * as FlowcraftError's are, so an event store that keeps JSON keeps them (an Error's
 * `message` and `name` are not enumerable: JSON.stringify gives `{}`). The node's error
 * is its `cause`.
 */
function eventError(err, nodeId, executionId, blueprintId) {
	const e = toError(err)
	const out = new Error(e.message, { cause: e })
	// own enumerable properties, as FlowcraftError's class fields are (`message` is
	// already an own property, not enumerable: assigning it would keep it so)
	out.name = typeof e.name === 'string' ? e.name : 'Error'
	Object.defineProperty(out, 'message', { value: e.message, enumerable: true, writable: true, configurable: true })
	out.nodeId = nodeId
	out.blueprintId = blueprintId
	out.executionId = executionId
	out.isFatal = isFatal(e)
	if (typeof e.code === 'string') out.code = e.code
	if (typeof e.stack === 'string') out.stack = e.stack // not enumerable: not stored
	return out
}

/** Blueprint id → the set of its node ids (the keys a partial context reads on demand). */
function nodeIdSets(blueprints) {
	const out = new Map()
	const entries = blueprints instanceof Map ? [...blueprints] : Object.entries(blueprints || {})
	for (const [id, bp] of entries) {
		out.set(
			id,
			new Set((Array.isArray(bp?.nodes) ? bp.nodes : []).map((n) => n?.id).filter((n) => typeof n === 'string')),
		)
	}
	return out
}

/** The node a context key belongs to: `_outputs.<id>`, `_inputs.<id>` or `<id>` itself. */
function nodeOfKey(key) {
	if (key.startsWith('_outputs.')) return key.slice(9)
	if (key.startsWith('_inputs.')) return key.slice(8)
	return key
}

function mappedInput(mappings, blueprintId, nodeId, input) {
	const mapping = mappings.get(`${blueprintId}\n${nodeId}`)
	if (!mapping || input === null || typeof input !== 'object') return input
	const out = {}
	for (const field in mapping) {
		const value = Object.hasOwn(input, field) ? input[field] : undefined
		if (field === '__proto__')
			Object.defineProperty(out, field, { value, enumerable: true, writable: true, configurable: true })
		else out[field] = value
	}
	return out
}

// PostgreSQL's JSONB cannot hold U+0000, and a lone UTF-16 surrogate is not Unicode
// text: JSON.stringify writes both as \u escapes (a valid pair is written as is), so
// one look at the JSON text finds them; only then is the value walked for the path.
const UNSTORABLE_ESCAPE = /(?<!\\)(?:\\\\)*\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})/
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/

function unstorableIn(text) {
	if (text.includes('\u0000')) return 'a NUL character (U+0000)'
	const m = LONE_SURROGATE.exec(text)
	if (m) return `a lone surrogate (U+${m[0].charCodeAt(0).toString(16).toUpperCase()})`
	return null
}

const IDENT = /^[A-Za-z_$][\w$]*$/

/** Where in `value` a string PostgreSQL cannot store is: `{ path, what }`, or null. */
function findUnstorable(value, path, seen = new Set()) {
	if (typeof value === 'string') {
		const what = unstorableIn(value)
		return what ? { path, what } : null
	}
	if (value === null || typeof value !== 'object' || seen.has(value)) return null
	seen.add(value)
	if (typeof value.toJSON === 'function') {
		try {
			return findUnstorable(value.toJSON(), path, seen)
		} catch {
			return null
		}
	}
	if (Array.isArray(value)) {
		for (let i = 0; i < value.length; i++) {
			const found = findUnstorable(value[i], `${path}[${i}]`, seen)
			if (found) return found
		}
		return null
	}
	for (const [key, v] of Object.entries(value)) {
		const at = IDENT.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`
		const inKey = unstorableIn(key)
		if (inKey) return { path: at, what: `${inKey} in a key` }
		const found = findUnstorable(v, at, seen)
		if (found) return found
	}
	return null
}

const WHY_UNSTORABLE =
	'PostgreSQL JSONB holds neither U+0000 nor lone UTF-16 surrogates; encode such data (e.g. base64) or strip it'

/** Throws an error naming the node, the output or context key, and the path of the culprit. */
function refuseUnstorable(result, writes, nodeId) {
	const inOutput = findUnstorable(result.output, 'output')
	if (inOutput) {
		throw codedError(
			CODES.NOT_SERIALIZABLE,
			`Node '${nodeId}' returned an output that PostgreSQL cannot store: ${inOutput.what} at ${inOutput.path}. ${WHY_UNSTORABLE}`,
		)
	}
	if (typeof result.action === 'string' && unstorableIn(result.action)) {
		throw codedError(
			CODES.NOT_SERIALIZABLE,
			`Node '${nodeId}' returned an action that PostgreSQL cannot store. ${WHY_UNSTORABLE}`,
		)
	}
	for (const w of writes) {
		const inKey = unstorableIn(w.key)
		const found = inKey ? { path: '(the key itself)', what: inKey } : findUnstorable(w.value, '')
		if (found) {
			throw codedError(
				CODES.NOT_SERIALIZABLE,
				`Node '${nodeId}' set context key ${JSON.stringify(w.key)} to a value that PostgreSQL cannot store: ${found.what} at ${found.path || '(the value itself)'}. ${WHY_UNSTORABLE}`,
			)
		}
	}
}

// A node interrupted by shutdown fails with ERR_NODE_CANCELLED (the core puts its job
// back on the queue); one interrupted because its run was cancelled carries
// ERR_RUN_CANCELLED (nothing of it is committed: the run has ended).
function cancelledError(nodeId, reason) {
	const why = reason instanceof Error ? reason.message : 'the worker is stopping'
	const code = reason && reason.code === CODES.RUN_CANCELLED ? CODES.RUN_CANCELLED : CODES.NODE_CANCELLED
	return codedError(code, `Node '${nodeId}' was cancelled: ${why}`, { cause: reason })
}

/**
 * What the core receives as the result: `output` and `action` only. Like Flowcraft,
 * a node that returns nothing (undefined/null) completes without output; anything
 * else that is not an object is almost certainly a bug (`return 42` instead of
 * `return { output: 42 }`), so it fails with a message that says so.
 */
function normalizeResult(result, nodeId) {
	if (result === undefined || result === null) return {}
	if (typeof result !== 'object' || Array.isArray(result)) {
		throw new TypeError(
			`Node '${nodeId}' returned ${describe(result)}; a node must return an object such as { output: value }`,
		)
	}
	const out = {}
	// JSON would silently drop a function or symbol output, or one nested in it: refuse it instead.
	assertNoFunctions(result.output, `Node '${nodeId}' returned an output that`, 'output')
	if (result.output !== undefined) out.output = result.output
	if (result.action !== undefined && result.action !== null) {
		if (typeof result.action !== 'string') {
			throw new TypeError(
				`Node '${nodeId}' returned an action that is ${describe(result.action)}; an action must be a string`,
			)
		}
		out.action = result.action
	}
	return out
}

/** Throws an error naming the node and the culprit when the result or a write is not JSON. */
function success(result, view, nodeId) {
	const writes = wireWrites(view, nodeId, true)
	let text
	try {
		text = JSON.stringify({ ok: true, result, writes })
	} catch (cause) {
		// Find the culprit for the message: the output, or one of the writes.
		try {
			JSON.stringify(result.output)
		} catch (e) {
			throw new TypeError(`Node '${nodeId}' returned an output that is not JSON-serialisable: ${e.message}`, {
				cause: e,
			})
		}
		for (const w of writes) {
			try {
				JSON.stringify(w.value)
			} catch (e) {
				throw new TypeError(
					`Node '${nodeId}' set context key ${JSON.stringify(w.key)} to a value that is not JSON-serialisable: ${e.message}`,
					{ cause: e },
				)
			}
		}
		throw cause
	}
	if (UNSTORABLE_ESCAPE.test(text)) refuseUnstorable(result, writes, nodeId)
	return text
}

/**
 * A failed node's writes still go to the core (Flowcraft keeps them); those JSON or
 * PostgreSQL cannot hold are dropped, with a warning.
 */
function failure(err, view, nodeId, log) {
	const error = errorPayload(err)
	let writes
	try {
		writes = wireWrites(view, nodeId, false)
	} catch {
		writes = []
	}
	let text
	try {
		text = JSON.stringify({ ok: false, error, writes })
	} catch {
		text = null
	}
	if (text !== null && !UNSTORABLE_ESCAPE.test(text)) return text
	const kept = writes.filter((w) => {
		try {
			JSON.stringify(w)
		} catch {
			return false
		}
		return !unstorableIn(w.key) && !findUnstorable(w.value, '')
	})
	if (log && kept.length < writes.length) {
		const dropped = writes.filter((w) => !kept.includes(w)).map((w) => w.key)
		log.warn(
			`Node '${nodeId}' failed; its writes of ${dropped.map((k) => JSON.stringify(k)).join(', ')} cannot be stored and are dropped`,
			{ nodeId },
		)
	}
	return JSON.stringify({ ok: false, error, writes: kept })
}

// On the wire a set always carries a value: undefined becomes null (what a context
// store keeps), and a function or symbol (which JSON would drop silently) is an error.
function wireWrites(view, nodeId, strict) {
	const ops = view.operations()
	const out = []
	for (const op of ops) {
		if (op.op === 'set') {
			try {
				assertNoFunctions(op.value, `Node '${nodeId}' set context key ${JSON.stringify(op.key)} to a value that`)
			} catch (err) {
				if (strict) throw err
				continue
			}
			out.push(op.value === undefined ? { op: 'set', key: op.key, value: null } : op)
		} else {
			out.push(op)
		}
	}
	return out
}

module.exports = { createNodeRunner, isNodeClass, normalizeResult, NODE_IDENTITY }
