'use strict'

// Unit tests of lib/node-runner.js: the JS side of the runNode protocol
// (`RunNodeFn` in native.d.ts). No services and no native addon are needed.

const { createNodeRunner, isNodeClass } = require('../lib/node-runner')

const silent = { debug() {}, info() {}, warn() {}, error() {} }

function recordingLogger() {
	const lines = []
	const rec = (level) => (message, meta) => lines.push({ level, message, meta })
	return { lines, debug: rec('debug'), info: rec('info'), warn: rec('warn'), error: rec('error') }
}

function recordingBus() {
	const events = []
	return { events, emit: async (e) => void events.push(e) }
}

function request(over = {}) {
	return {
		runId: 'r1',
		blueprintId: 'bp',
		nodeId: 'n1',
		uses: 'fn',
		params: {},
		config: {},
		context: {},
		attempt: 1,
		...over,
	}
}

/** Runs one request through a fresh runner and returns the parsed response. */
async function run(registry, over = {}, options = {}) {
	const runner = createNodeRunner({ registry, logger: silent, ...options })
	const text = await runner(JSON.stringify(request(over)))
	expect(typeof text).toBe('string')
	return JSON.parse(text)
}

// flowcraft is ESM-only and jest (without --experimental-vm-modules) cannot import()
// it, so the tests with real BaseNode subclasses run in a child Node process, which
// feeds requests to the same runner and prints the responses.
const { execFileSync } = require('node:child_process')
const path = require('node:path')

function runWithBaseNode(body) {
	const script = `
    import { BaseNode } from 'flowcraft'
    import { createRequire } from 'node:module'
    const require = createRequire(${JSON.stringify(path.join(__dirname, 'x.js'))})
    const { createNodeRunner } = require('../lib/node-runner.js')
    const silent = { debug() {}, info() {}, warn() {}, error() {} }
    const run = async (registry, req) => JSON.parse(await createNodeRunner({ registry, logger: silent })(JSON.stringify({
      runId: 'r1', blueprintId: 'bp', nodeId: 'n1', params: {}, config: {}, context: {}, attempt: 1, ...req })))
    const out = await (async () => { ${body} })()
    process.stdout.write(JSON.stringify(out))
  `
	const text = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
		cwd: __dirname,
		encoding: 'utf8',
	})
	return JSON.parse(text)
}

describe('function nodes', () => {
	test('receives the NodeContext and returns output and action', async () => {
		let seen
		const res = await run(
			{
				fn: async (ctx) => {
					seen = ctx
					return { output: { got: ctx.input, p: ctx.params.p, dep: ctx.dependencies.db }, action: 'go' }
				},
			},
			{ input: 42, params: { p: 'x' } },
			{ dependencies: { db: 'the-db' } },
		)
		expect(res).toEqual({ ok: true, result: { output: { got: 42, p: 'x', dep: 'the-db' }, action: 'go' }, writes: [] })
		expect(seen.context.type).toBe('async')
		expect(seen.dependencies.logger).toBe(silent)
		expect(seen.signal).toBeInstanceOf(AbortSignal)
	})

	test('a sync function and a sync throw both work', async () => {
		expect(await run({ fn: () => ({ output: 1 }) })).toMatchObject({ ok: true, result: { output: 1 } })
		const res = await run({
			fn: () => {
				throw new Error('sync boom')
			},
		})
		expect(res.ok).toBe(false)
		expect(res.error).toMatchObject({ message: 'sync boom', name: 'Error' })
	})

	test('the error message is the root cause, for thrown values of any kind', async () => {
		expect(
			(
				await run({
					fn: async () => {
						throw new Error('boom')
					},
				})
			).error.message,
		).toBe('boom')
		expect(
			(
				await run({
					fn: async () => {
						throw 'plain string'
					},
				})
			).error.message,
		).toBe('plain string')
		class MyError extends Error {
			constructor(m) {
				super(m)
				this.name = 'MyError'
				this.code = 'E_MINE'
			}
		}
		const res = await run({
			fn: async () => {
				throw new MyError('mine')
			},
		})
		expect(res.error).toMatchObject({ message: 'mine', name: 'MyError', code: 'E_MINE' })
	})

	test('input absent in the request is undefined; output absent means undefined', async () => {
		let input = 'unset'
		const res = await run({
			fn: async (ctx) => {
				input = ctx.input
				return {}
			},
		})
		expect(input).toBeUndefined()
		expect(res).toEqual({ ok: true, result: {}, writes: [] })
	})

	test('a uses key missing from the registry fails with a message naming it', async () => {
		const res = await run({ other: async () => ({}) }, { uses: 'nope', nodeId: 'step' })
		expect(res.ok).toBe(false)
		expect(res.error.message).toMatch(/'nope'/)
		expect(res.error.message).toMatch(/step/)
	})

	test('a Map registry works too', async () => {
		const res = await run(new Map([['fn', async () => ({ output: 'm' })]]))
		expect(res.result.output).toBe('m')
	})

	test('an invalid request is answered, not rejected', async () => {
		const runner = createNodeRunner({ registry: {}, logger: silent })
		const res = JSON.parse(await runner('not json'))
		expect(res.ok).toBe(false)
		expect(res.error.message).toMatch(/invalid runNode request/)
	})
})

describe('results', () => {
	test('undefined and null results complete without output, as in Flowcraft', async () => {
		expect(await run({ fn: async () => undefined })).toEqual({ ok: true, result: {}, writes: [] })
		expect(await run({ fn: async () => null })).toEqual({ ok: true, result: {}, writes: [] })
	})

	test('a result that is not an object is a clear error', async () => {
		for (const bad of [42, 'text', true, [1, 2]]) {
			const res = await run({ fn: async () => bad }, { nodeId: 'calc' })
			expect(res.ok).toBe(false)
			expect(res.error.message).toMatch(/Node 'calc' returned .*must return an object such as \{ output/)
		}
	})

	test('a non-string action is a clear error', async () => {
		const res = await run({ fn: async () => ({ action: 7 }) })
		expect(res.ok).toBe(false)
		expect(res.error.message).toMatch(/action must be a string/)
	})

	test('a BigInt output is refused with a message naming the node', async () => {
		const res = await run({ fn: async () => ({ output: { n: 1n } }) }, { nodeId: 'big' })
		expect(res.ok).toBe(false)
		expect(res.error.message).toMatch(/Node 'big' returned an output that is not JSON-serialisable/)
		expect(res.error.message).toMatch(/BigInt/)
	})

	test('a cyclic output is refused with a message naming the node', async () => {
		const res = await run(
			{
				fn: async () => {
					const a = { name: 'a' }
					a.self = a
					return { output: a }
				},
			},
			{ nodeId: 'cyc' },
		)
		expect(res.ok).toBe(false)
		expect(res.error.message).toMatch(/Node 'cyc' returned an output that is not JSON-serialisable/)
		expect(res.error.message).toMatch(/circular/i)
	})

	test('undefined inside the output is dropped as JSON does', async () => {
		const res = await run({ fn: async () => ({ output: { keep: 1, u: undefined }, extra: 'ignored' }) })
		expect(res).toEqual({ ok: true, result: { output: { keep: 1 } }, writes: [] })
	})

	test('a function or symbol nested in the output is refused with its key path, not dropped', async () => {
		const cases = [
			[{ f: () => 1 }, 'function', 'output.f'],
			[{ a: { list: [1, { s: Symbol('x') }] } }, 'symbol', 'output.a.list[1].s'],
			[[1, () => 2], 'function', 'output[1]'],
			[{ 'odd key': { g() {} } }, 'function', 'output["odd key"].g'],
		]
		for (const [output, type, path] of cases) {
			const res = await run({ fn: async () => ({ output }) }, { nodeId: 'nested' })
			expect(res.ok).toBe(false)
			expect(res.error.message).toContain(
				`Node 'nested' returned an output that holds a ${type} at key path ${path}, which cannot be stored as JSON`,
			)
		}
	})

	test('a function nested in a context write is refused with its key path', async () => {
		const res = await run(
			{
				fn: async ({ context }) => {
					await context.set('cfg', { handler: { run: () => 1 } })
					return { output: 1 }
				},
			},
			{ nodeId: 'w' },
		)
		expect(res.ok).toBe(false)
		expect(res.error.message).toMatch(
			/Node 'w' set context key "cfg" to a value that holds a function at key path handler\.run/,
		)
	})
})

describe('the native call: [request, input JSON, key, value JSON, ...]', () => {
	const call = async (registry, input, context = [], options = {}) => {
		const runner = createNodeRunner({ registry, logger: silent, ...options })
		const { context: _, ...req } = request()
		return JSON.parse(await runner([JSON.stringify(req), input, ...context]))
	}

	test('the input is parsed when the node first reads it, once; a node that never reads it never parses it', async () => {
		const seen = []
		const reads = {
			fn: async (ctx) => {
				const first = ctx.input
				seen.push(first === ctx.input, Object.keys(ctx).includes('input'))
				return { output: { first, v: await ctx.context.get('k') } }
			},
		}
		expect(await call(reads, '{"a":[1,2]}', ['k', '"v"'])).toMatchObject({
			ok: true,
			result: { output: { first: { a: [1, 2] }, v: 'v' } },
		})
		expect(seen).toEqual([true, true])
		// text that is not JSON shows whether it was parsed: only the node that reads it fails
		expect(await call({ fn: async () => ({ output: 'ignored it' }) }, '{not json')).toMatchObject({
			ok: true,
			result: { output: 'ignored it' },
		})
		expect(await call({ fn: async (ctx) => ({ output: ctx.input }) }, '{not json')).toMatchObject({ ok: false })
		// no input ('') is undefined
		expect(await call({ fn: async (ctx) => ({ output: ctx.input === undefined }) }, '')).toMatchObject({
			result: { output: true },
		})
	})

	test('a node may replace its input before or after reading it', async () => {
		const res = await call(
			{
				fn: async (ctx) => {
					const before = ctx.input
					ctx.input = 'mine'
					const after = ctx.input
					ctx.input = { ...ctx.input, n: 2 }
					return { output: { before, after, last: ctx.input } }
				},
			},
			'{"a":1}',
		)
		expect(res.result.output).toEqual({
			before: { a: 1 },
			after: 'mine',
			last: { 0: 'm', 1: 'i', 2: 'n', 3: 'e', n: 2 },
		})
		const setFirst = async (ctx) => {
			ctx.input = 7
			return { output: ctx.input }
		}
		const unread = await call({ fn: setFirst }, '{"a":1}')
		expect(unread.result.output).toBe(7)
	})

	test('node:start carries the parsed input when an event bus listens', async () => {
		const bus = recordingBus()
		await call({ fn: async () => ({ output: 1 }) }, '[3]', [], { eventBus: bus })
		expect(bus.events.find((e) => e.type === 'node:start').payload.input).toEqual([3])
	})
})

describe('context view and writes', () => {
	test('reads the snapshot, sees its own writes, and records them in order with the last op winning', async () => {
		const res = await run(
			{
				fn: async ({ context }) => {
					expect(await context.get('a')).toBe(1)
					expect(await context.get('missing')).toBeUndefined()
					expect(await context.has('a')).toBe(true)
					await context.set('x', 1)
					await context.set('y', { deep: [1, 2] })
					await context.set('x', 2) // x moves after y
					expect(await context.delete('a')).toBe(true)
					expect(await context.delete('never')).toBe(false)
					expect(await context.has('a')).toBe(false)
					expect(await context.get('x')).toBe(2)
					await context.set('dots.in key', 'ok')
					await context.set('u', undefined)
					expect(await context.toJSON()).toEqual({ b: 2, x: 2, y: { deep: [1, 2] }, 'dots.in key': 'ok', u: undefined })
					return { output: 'done' }
				},
			},
			{ context: { a: 1, b: 2 } },
		)
		expect(res.ok).toBe(true)
		expect(res.writes).toEqual([
			{ op: 'set', key: 'y', value: { deep: [1, 2] } },
			{ op: 'set', key: 'x', value: 2 },
			{ op: 'delete', key: 'a' },
			{ op: 'delete', key: 'never' },
			{ op: 'set', key: 'dots.in key', value: 'ok' },
			{ op: 'set', key: 'u', value: null },
		])
	})

	test('set then delete of a key sends only the delete; patch records its operations', async () => {
		const res = await run({
			fn: async ({ context }) => {
				await context.set('k', 1)
				await context.delete('k')
				await context.patch([
					{ op: 'set', key: 'p', value: 'v' },
					{ op: 'delete', key: 'q' },
				])
				return {}
			},
		})
		expect(res.writes).toEqual([
			{ op: 'delete', key: 'k' },
			{ op: 'set', key: 'p', value: 'v' },
			{ op: 'delete', key: 'q' },
		])
	})

	test('a key named __proto__ is an ordinary key', async () => {
		const res = await run(
			{
				fn: async ({ context }) => {
					const all = await context.toJSON()
					expect(Object.getPrototypeOf(all)).toBe(Object.prototype)
					expect(Object.keys(all)).toEqual(['__proto__'])
					return { output: await context.get('__proto__') }
				},
			},
			{ context: JSON.parse('{"__proto__": {"x": 1}}') },
		)
		expect(res.result.output).toEqual({ x: 1 })
	})

	test('a write that is not JSON fails the node with a message naming the key', async () => {
		const big = await run(
			{
				fn: async ({ context }) => {
					await context.set('count', 10n)
					return {}
				},
			},
			{ nodeId: 'w' },
		)
		expect(big.ok).toBe(false)
		expect(big.error.message).toMatch(/Node 'w' set context key "count" .*not JSON-serialisable/)
		const fn = await run({
			fn: async ({ context }) => {
				await context.set('cb', () => 1)
				return {}
			},
		})
		expect(fn.ok).toBe(false)
		expect(fn.error.message).toMatch(/"cb".*function/)
	})

	test('a non-string key is a TypeError with ERR_INVALID_ARGUMENT', async () => {
		let err
		await run({
			fn: async ({ context }) => {
				try {
					await context.set(5, 1)
				} catch (e) {
					err = e
				}
				return {}
			},
		})
		expect(err).toBeInstanceOf(TypeError)
		expect(err.code).toBe('ERR_INVALID_ARGUMENT')
	})

	test('a failed node still reports the writes it made', async () => {
		const res = await run({
			fn: async ({ context }) => {
				await context.set('before', 1)
				throw new Error('late')
			},
		})
		expect(res).toMatchObject({
			ok: false,
			error: { message: 'late' },
			writes: [{ op: 'set', key: 'before', value: 1 }],
		})
	})
})

describe('retries and timeouts', () => {
	test('maxRetries is attempts in all; node:retry is emitted between them', async () => {
		let calls = 0
		const bus = recordingBus()
		const res = await run(
			{
				fn: async () => {
					calls++
					if (calls < 3) throw new Error(`fail ${calls}`)
					return { output: calls }
				},
			},
			{ config: { maxRetries: 3 } },
			{ eventBus: bus },
		)
		expect(res).toMatchObject({ ok: true, result: { output: 3 } })
		expect(calls).toBe(3)
		expect(bus.events.filter((e) => e.type === 'node:retry').map((e) => e.payload)).toEqual([
			{ nodeId: 'n1', attempt: 1, executionId: 'r1', blueprintId: 'bp' },
			{ nodeId: 'n1', attempt: 2, executionId: 'r1', blueprintId: 'bp' },
		])
	})

	test('exhausted retries fail with the last error', async () => {
		let calls = 0
		const res = await run(
			{
				fn: async () => {
					calls++
					throw new Error(`fail ${calls}`)
				},
			},
			{ config: { maxRetries: 2 } },
		)
		expect(calls).toBe(2)
		expect(res).toMatchObject({ ok: false, error: { message: 'fail 2' } })
	})

	test('without maxRetries a node runs once', async () => {
		let calls = 0
		await run({
			fn: async () => {
				calls++
				throw new Error('x')
			},
		})
		expect(calls).toBe(1)
	})

	test('a fatal error (isFatal) is not retried', async () => {
		let calls = 0
		const res = await run(
			{
				fn: async () => {
					calls++
					// Flowcraft's fatal error: a FlowcraftError (by name) with isFatal
					const e = new Error('fatal')
					e.name = 'FlowcraftError'
					e.isFatal = true
					throw e
				},
			},
			{ config: { maxRetries: 5 } },
		)
		expect(calls).toBe(1)
		expect(res.error.message).toBe('fatal')
	})

	test('a fatal FlowcraftError is marked fatal for the core; another error with isFatal is retried, as FlowRuntime does', async () => {
		// the shape of flowcraft's FlowcraftError (the package is ESM-only: see runWithBaseNode)
		class FlowcraftError extends Error {
			constructor(message, { isFatal = false } = {}) {
				super(message)
				this.name = 'FlowcraftError'
				this.isFatal = isFatal
			}
		}
		const fatal = await run(
			{
				fn: async () => {
					throw new FlowcraftError('card blocked', { isFatal: true })
				},
			},
			{ config: { maxRetries: 3 } },
		)
		expect(fatal.error).toMatchObject({ message: 'card blocked', name: 'FlowcraftError', fatal: true })
		let calls = 0
		const lookalike = await run(
			{
				fn: async () => {
					calls++
					throw Object.assign(new Error('looks fatal'), { isFatal: true })
				},
			},
			{ config: { maxRetries: 3 } },
		)
		expect(calls).toBe(3)
		expect(lookalike.error.fatal).toBeUndefined()
	})

	test('retryDelay waits between attempts', async () => {
		const times = []
		await run(
			{
				fn: async () => {
					times.push(Date.now())
					throw new Error('x')
				},
			},
			{ config: { maxRetries: 3, retryDelay: 60 } },
		)
		expect(times).toHaveLength(3)
		expect(times[1] - times[0]).toBeGreaterThanOrEqual(50)
		expect(times[2] - times[1]).toBeGreaterThanOrEqual(50)
	})

	test('timeout aborts the signal and fails the attempt with a clear message', async () => {
		let signal
		const started = Date.now()
		const res = await run(
			{
				fn: (ctx) => {
					signal = ctx.signal
					return new Promise(() => {}) // never settles: only the timeout can end it
				},
			},
			{ nodeId: 'slow', config: { timeout: 50 } },
		)
		expect(res.ok).toBe(false)
		expect(res.error.message).toBe("Node 'slow' timed out after 50 ms")
		expect(res.error.code).toBe('ERR_NODE_TIMEOUT')
		expect(signal.aborted).toBe(true)
		expect(Date.now() - started).toBeLessThan(1000)
	})

	test('each attempt gets a fresh signal, so a retry after a timeout can succeed', async () => {
		const signals = []
		const res = await run(
			{
				fn: (ctx) => {
					signals.push(ctx.signal)
					if (signals.length === 1) return new Promise(() => {})
					return { output: ctx.signal.aborted ? 'aborted' : 'fresh' }
				},
			},
			{ config: { timeout: 30, maxRetries: 2 } },
		)
		expect(res).toMatchObject({ ok: true, result: { output: 'fresh' } })
		expect(signals[0].aborted).toBe(true)
		expect(signals[1].aborted).toBe(false)
	})

	test('a timed-out attempt that keeps running cannot write into the sent result', async () => {
		const logger = recordingLogger()
		let release
		const gate = new Promise((r) => {
			release = r
		})
		const runner = createNodeRunner({
			logger,
			registry: {
				fn: async ({ context }) => {
					await gate
					await context.set('late', 1)
					return { output: 'late' }
				},
			},
		})
		const res = JSON.parse(await runner(JSON.stringify(request({ config: { timeout: 20 } }))))
		expect(res.ok).toBe(false)
		release()
		await new Promise((r) => setTimeout(r, 20))
		expect(res.writes).toEqual([])
		expect(logger.lines.some((l) => l.level === 'warn' && /after its result was sent/.test(l.message))).toBe(true)
	})

	test('abortAll() cancels the nodes in flight (worker shutdown)', async () => {
		let signal
		const runner = createNodeRunner({
			logger: silent,
			registry: {
				fn: (ctx) => {
					signal = ctx.signal
					return new Promise(() => {})
				},
			},
		})
		const pending = runner(JSON.stringify(request({ config: { maxRetries: 3 } })))
		await new Promise((r) => setTimeout(r, 10))
		expect(runner.inFlight()).toBe(1)
		runner.abortAll()
		const res = JSON.parse(await pending)
		expect(res.ok).toBe(false)
		expect(res.error.code).toBe('ERR_NODE_CANCELLED')
		expect(signal.aborted).toBe(true)
		expect(runner.inFlight()).toBe(0)
	})
})

describe('class nodes', () => {
	test('isNodeClass follows Flowcraft: a function whose prototype has exec', () => {
		class A {
			exec() {}
		}
		expect(isNodeClass(A)).toBe(true)
		expect(isNodeClass(async () => ({}))).toBe(false)
		expect(isNodeClass(function plain() {})).toBe(false)
	})

	test('subclasses of flowcraft BaseNode: prep, exec, post with params and nodeId; defaults; fallback and recover', () => {
		const out = runWithBaseNode(`
      const calls = []
      class Greet extends BaseNode {
        async prep(ctx) { calls.push('prep'); return ctx.input + '!' }
        async exec(prepResult) { calls.push('exec'); return { output: this.params.greeting + ' ' + prepResult + ' from ' + this.nodeId } }
        async post(execResult, ctx) { calls.push('post'); await ctx.context.set('greeted', true); return { ...execResult, action: 'done' } }
      }
      class Double extends BaseNode {
        async exec(n) { return { output: n * 2 } }
      }
      let recovered
      class Broken extends BaseNode {
        async exec() { throw new Error('db down') }
        async recover(error) { recovered = error.message }
      }
      const greet = await run({ Greet }, { uses: 'Greet', nodeId: 'g1', input: 'Ada', params: { greeting: 'Hello' } })
      const double = await run({ Double }, { uses: 'Double', input: 21 })
      const broken = await run({ Broken }, { uses: 'Broken', config: { maxRetries: 2 } })
      return { calls, greet, double, broken, recovered }
    `)
		expect(out.calls).toEqual(['prep', 'exec', 'post'])
		expect(out.greet).toEqual({
			ok: true,
			result: { output: 'Hello Ada! from g1', action: 'done' },
			writes: [{ op: 'set', key: 'greeted', value: true }],
		})
		// default prep passes the input, default post the exec result
		expect(out.double.result).toEqual({ output: 42 })
		// the default fallback rethrows: the root cause is reported and recover runs
		expect(out.broken).toMatchObject({ ok: false, error: { message: 'db down' } })
		expect(out.recovered).toBe('db down')
	})

	test('a plain class with just exec works (no BaseNode needed)', async () => {
		class Plain {
			constructor(params, nodeId) {
				this.tag = `${params.t}:${nodeId}`
			}
			exec(input) {
				return { output: `${this.tag}:${input}` }
			}
		}
		expect((await run({ Plain }, { uses: 'Plain', params: { t: 'p' }, input: 'i' })).result).toEqual({
			output: 'p:n1:i',
		})
	})

	test('exec is retried; prep and post are not', async () => {
		const count = { prep: 0, exec: 0, post: 0 }
		class Flaky {
			prep() {
				count.prep++
				return 'x'
			}
			exec() {
				count.exec++
				if (count.exec < 3) throw new Error('flaky')
				return { output: 'ok' }
			}
			post(r) {
				count.post++
				return r
			}
		}
		const res = await run({ Flaky }, { uses: 'Flaky', config: { maxRetries: 3 } })
		expect(res.result.output).toBe('ok')
		expect(count).toEqual({ prep: 1, exec: 3, post: 1 })
	})

	test('fallback runs when exec is exhausted, then post, then recover', async () => {
		const calls = []
		class WithFallback {
			exec() {
				calls.push('exec')
				throw new Error('exec failed')
			}
			fallback(error) {
				calls.push(`fallback:${error.message}`)
				return { output: 'from fallback' }
			}
			post(r) {
				calls.push('post')
				return r
			}
			recover(error) {
				calls.push(`recover:${error.message}`)
			}
		}
		const res = await run({ WithFallback }, { uses: 'WithFallback', config: { maxRetries: 2 } })
		expect(res).toMatchObject({ ok: true, result: { output: 'from fallback' } })
		expect(calls).toEqual(['exec', 'exec', 'fallback:exec failed', 'post', 'recover:exec failed'])
	})

	test('an error in recover is logged, not thrown', async () => {
		const logger = recordingLogger()
		class BadRecover {
			exec() {
				throw new Error('first')
			}
			recover() {
				throw new Error('second')
			}
		}
		const res = await run({ BadRecover }, { uses: 'BadRecover' }, { logger })
		expect(res.error.message).toBe('first')
		expect(logger.lines.some((l) => l.message === 'Recover phase failed' && l.meta.recoverError === 'second')).toBe(
			true,
		)
	})

	test('a failure in prep skips exec and runs recover', async () => {
		const calls = []
		class BadPrep {
			prep() {
				calls.push('prep')
				throw new Error('no input')
			}
			exec() {
				calls.push('exec')
				return { output: 1 }
			}
			recover(e) {
				calls.push(`recover:${e.message}`)
			}
		}
		const res = await run({ BadPrep }, { uses: 'BadPrep' })
		expect(res.error.message).toBe('no input')
		expect(calls).toEqual(['prep', 'recover:no input'])
	})

	test('exec returning nothing is a clear error', async () => {
		class Empty {
			exec() {}
		}
		const res = await run({ Empty }, { uses: 'Empty', nodeId: 'e' })
		expect(res.ok).toBe(false)
		expect(res.error.message).toMatch(/Node 'e': exec\(\) returned undefined/)
	})
})

describe('middleware', () => {
	test('before and after hooks see the context, node id, result and error', async () => {
		const calls = []
		const middleware = [
			{
				beforeNode: async (ctx, nodeId) => {
					calls.push(`before:${nodeId}`)
					await ctx.set('mw', 'before')
				},
				afterNode: async (_ctx, nodeId, result, error) => {
					calls.push(`after:${nodeId}:${result?.output}:${error?.message}`)
				},
			},
		]
		const ok = await run({ fn: async ({ context }) => ({ output: await context.get('mw') }) }, {}, { middleware })
		expect(ok.result.output).toBe('before')
		expect(ok.writes).toEqual([{ op: 'set', key: 'mw', value: 'before' }])
		const bad = await run(
			{
				fn: async () => {
					throw new Error('bad')
				},
			},
			{},
			{ middleware },
		)
		expect(bad.error.message).toBe('bad')
		expect(calls).toEqual(['before:n1', 'after:n1:before:undefined', 'before:n1', 'after:n1:undefined:bad'])
	})

	test('around hooks nest with the first middleware outermost and may change the result', async () => {
		const calls = []
		const middleware = [
			{
				aroundNode: async (_ctx, _nodeId, next) => {
					calls.push('outer in')
					const r = await next()
					calls.push('outer out')
					return r
				},
			},
			{
				aroundNode: async (_ctx, _nodeId, next) => {
					calls.push('inner in')
					const r = await next()
					calls.push('inner out')
					return r
				},
				beforeNode: () => calls.push('before'),
			},
		]
		const res = await run(
			{
				fn: async () => {
					calls.push('node')
					return { output: 1 }
				},
			},
			{},
			{ middleware },
		)
		expect(res.result.output).toBe(1)
		expect(calls).toEqual(['outer in', 'inner in', 'before', 'node', 'inner out', 'outer out'])
	})

	test('an around hook that does not call next supplies the result', async () => {
		let ran = false
		const middleware = [{ aroundNode: async () => ({ output: 'cached' }) }]
		const res = await run(
			{
				fn: async () => {
					ran = true
					return { output: 'real' }
				},
			},
			{},
			{ middleware },
		)
		expect(ran).toBe(false)
		expect(res.result.output).toBe('cached')
	})

	test('an around hook sees the node failure as a rejection of next()', async () => {
		let caught
		const middleware = [
			{
				aroundNode: async (_ctx, _id, next) => {
					try {
						return await next()
					} catch (e) {
						caught = e.message
						throw e
					}
				},
			},
		]
		const res = await run(
			{
				fn: async () => {
					throw new Error('inner')
				},
			},
			{},
			{ middleware },
		)
		expect(caught).toBe('inner')
		expect(res.error.message).toBe('inner')
	})

	test('a throwing beforeNode fails the node without running it', async () => {
		let ran = false
		const middleware = [
			{
				beforeNode: () => {
					throw new Error('denied')
				},
			},
		]
		const res = await run(
			{
				fn: async () => {
					ran = true
					return {}
				},
			},
			{},
			{ middleware },
		)
		expect(ran).toBe(false)
		expect(res.error.message).toBe('denied')
	})
})

describe('events', () => {
	test('node:start and node:finish carry the Flowcraft payloads', async () => {
		const bus = recordingBus()
		await run({ fn: async () => ({ output: 5 }) }, { input: 'in' }, { eventBus: bus })
		expect(bus.events).toEqual([
			{ type: 'node:start', payload: { nodeId: 'n1', executionId: 'r1', input: 'in', blueprintId: 'bp' } },
			{ type: 'node:finish', payload: { nodeId: 'n1', result: { output: 5 }, executionId: 'r1', blueprintId: 'bp' } },
		])
	})

	test('node:error carries the error', async () => {
		const bus = recordingBus()
		await run(
			{
				fn: async () => {
					throw new Error('e1')
				},
			},
			{},
			{ eventBus: bus },
		)
		expect(bus.events.map((e) => e.type)).toEqual(['node:start', 'node:error'])
		expect(bus.events[1].payload.error.message).toBe('e1')
	})

	test('a failing event bus is logged and does not fail the node', async () => {
		const logger = recordingLogger()
		const bus = {
			emit: async () => {
				throw new Error('bus down')
			},
		}
		const res = await run({ fn: async () => ({ output: 1 }) }, {}, { eventBus: bus, logger })
		expect(res.ok).toBe(true)
		expect(logger.lines.some((l) => l.message === 'eventBus.emit failed' && l.meta.error === 'bus down')).toBe(true)
	})
})

describe('concurrency', () => {
	test('requests in flight at once keep their own context and writes', async () => {
		const runner = createNodeRunner({
			logger: silent,
			registry: {
				fn: async ({ context, input }) => {
					await new Promise((r) => setTimeout(r, 5 * (10 - input)))
					await context.set('mine', input)
					return { output: (await context.get('seed')) + input }
				},
			},
		})
		const responses = await Promise.all(
			Array.from({ length: 10 }, (_, i) => runner(JSON.stringify(request({ input: i, context: { seed: i * 100 } })))),
		)
		responses
			.map((t) => JSON.parse(t))
			.forEach((res, i) => {
				expect(res.result.output).toBe(i * 101)
				expect(res.writes).toEqual([{ op: 'set', key: 'mine', value: i }])
			})
	})
})

describe('cancellation of a run (abortRun) and the notify cancel message', () => {
	const { createNotify } = require('../lib/callbacks')

	test("abortRun aborts the signal of that run's nodes only, with ERR_RUN_CANCELLED, and the node fails with that code", async () => {
		const seen = {}
		const registry = {
			wait: async ({ signal, params }) => {
				await new Promise((resolve) => {
					const t = setTimeout(resolve, 300)
					signal.addEventListener('abort', () => {
						clearTimeout(t)
						resolve()
					})
				})
				seen[params.tag] = { aborted: signal.aborted, code: signal.reason?.code }
				return { output: params.tag }
			},
		}
		const runner = createNodeRunner({ registry, logger: silent })
		const r1 = runner(JSON.stringify(request({ runId: 'r1', nodeId: 'x', uses: 'wait', params: { tag: 'r1x' } })))
		const r1b = runner(JSON.stringify(request({ runId: 'r1', nodeId: 'y', uses: 'wait', params: { tag: 'r1y' } })))
		const r2 = runner(JSON.stringify(request({ runId: 'r2', nodeId: 'x', uses: 'wait', params: { tag: 'r2x' } })))
		await new Promise((r) => setTimeout(r, 20))
		expect(runner.abortRun('r1')).toBe(2)
		expect(runner.abortRun('nope')).toBe(0)
		const [a, b, c] = (await Promise.all([r1, r1b, r2])).map((t) => JSON.parse(t))
		expect(a.ok).toBe(false)
		expect(a.error.code).toBe('ERR_RUN_CANCELLED')
		expect(a.error.message).toMatch(/^Node 'x' was cancelled: Run 'r1' was cancelled/)
		expect(b.error.code).toBe('ERR_RUN_CANCELLED')
		expect(c).toMatchObject({ ok: true, result: { output: 'r2x' } })
		expect(seen.r1x).toEqual({ aborted: true, code: 'ERR_RUN_CANCELLED' })
		expect(seen.r2x).toEqual({ aborted: false, code: undefined })
		expect(runner.inFlight()).toBe(0)
		expect(runner.abortRun('r1')).toBe(0) // finished nodes are forgotten
	})

	test('abortAll (shutdown) still fails nodes with ERR_NODE_CANCELLED', async () => {
		const runner = createNodeRunner({
			registry: { forever: ({ signal }) => new Promise((resolve) => signal.addEventListener('abort', resolve)) },
			logger: silent,
		})
		const p = runner(JSON.stringify(request({ uses: 'forever' })))
		await new Promise((r) => setTimeout(r, 10))
		runner.abortAll()
		expect(JSON.parse(await p).error.code).toBe('ERR_NODE_CANCELLED')
	})

	test("notify hands { kind: 'cancel', runId } to onCancel and survives a throwing onCancel", () => {
		const cancelled = []
		const logger = recordingLogger()
		const notify = createNotify({ logger, onCancel: (runId) => cancelled.push(runId) })
		notify(JSON.stringify({ kind: 'cancel', runId: 'r9' }))
		notify(JSON.stringify({ kind: 'cancel' })) // no run id: ignored
		expect(cancelled).toEqual(['r9'])
		const throwing = createNotify({
			logger,
			onCancel: () => {
				throw new Error('nope')
			},
		})
		expect(() => throwing(JSON.stringify({ kind: 'cancel', runId: 'r9' }))).not.toThrow()
		expect(logger.lines.some((l) => l.level === 'warn' && /cancelled run/.test(l.message))).toBe(true)
		expect(() => createNotify({})(JSON.stringify({ kind: 'cancel', runId: 'r9' }))).not.toThrow()
	})
})

describe('issue 9: inputs, failing-node writes, unstorable strings', () => {
	test('an input from an object mapping gets every field of the mapping, in its order, undefined ones included', async () => {
		let seen
		const blueprints = {
			bp: { id: 'bp', nodes: [{ id: 'n1', uses: 'fn', inputs: { z: 'a', gone: 'b', a: 'c' } }], edges: [] },
		}
		await run(
			{
				fn: async ({ input }) => {
					seen = { keys: Object.keys(input), hasGone: 'gone' in input, input }
					return {}
				},
			},
			{ input: { a: 3, z: 1 }, inputFromMapping: true },
			{ blueprints },
		)
		expect(seen.keys).toEqual(['z', 'gone', 'a'])
		expect(seen.hasGone).toBe(true)
		expect(seen.input).toEqual({ z: 1, gone: undefined, a: 3 })
	})

	test('the writes of a failing node (and of its middleware) go to the core with the error', async () => {
		const res = await run(
			{
				fn: async ({ context }) => {
					await context.set('inside', 1)
					throw new Error('boom')
				},
			},
			{},
			{
				middleware: [
					{
						afterNode: async (ctx, _id, _result, error) => {
							await ctx.set('after', error.message)
						},
					},
				],
			},
		)
		expect(res.ok).toBe(false)
		expect(res.writes).toEqual([
			{ op: 'set', key: 'inside', value: 1 },
			{ op: 'set', key: 'after', value: 'boom' },
		])
	})

	test('an output or a write PostgreSQL cannot store fails the node, naming the node and the path', async () => {
		const nul = await run({ fn: async () => ({ output: { a: [{ 'b c': 'x\u0000' }] } }) })
		expect(nul.ok).toBe(false)
		expect(nul.error.message).toContain("Node 'n1' returned an output that PostgreSQL cannot store")
		expect(nul.error.message).toContain('a NUL character (U+0000) at output.a[0]["b c"]')
		const lone = await run({
			fn: async ({ context }) => {
				await context.set('k', { t: 'ok \ud800' })
				return { output: 1 }
			},
		})
		expect(lone.error.message).toContain('context key "k"')
		expect(lone.error.message).toContain('a lone surrogate (U+D800) at .t')
		const key = await run({ fn: async () => ({ output: { 'bad\u0000key': 1 } }) })
		expect(key.error.message).toContain('in a key')
		// a valid surrogate pair and an escaped-looking text are fine
		const fine = await run({ fn: async () => ({ output: ['😀', '\\u0000', '\\ud800'] }) })
		expect(fine).toEqual({ ok: true, result: { output: ['😀', '\\u0000', '\\ud800'] }, writes: [] })
	})

	test("a failed node's unstorable writes are dropped, and its error message is made storable", async () => {
		const res = await run({
			fn: async ({ context }) => {
				await context.set('good', 1)
				await context.set('bad', 'x\u0000')
				throw new Error('broke \u0000 here \udc00')
			},
		})
		expect(res.writes).toEqual([{ op: 'set', key: 'good', value: 1 }])
		expect(res.error.message).toBe('broke \ufffd here \ufffd')
	})
})
