'use strict'
/**
 * A test's place to run workflows: its queue and tables (with the node rows' table and the
 * dead-letter queue), an adapter on them, worker processes on them, and a poll.
 */
const fs = require('node:fs')
const path = require('node:path')
const { spawn } = require('node:child_process')
const S = require('./services')

const ROOT = path.join(__dirname, '..', '..')
const quiet = { debug() {}, info() {}, warn() {}, error() {} }

/** Unique queue and table names, removed after the test by `res` (S.useResources()). */
function place(res, label) {
	const queue = res.queueName(label)
	res.onCleanup(() => S.deleteQueues([`${queue}.dead`]))
	const ctx = res.trackTable(S.uniqueName(`${label}_c`))
	res.trackTable(`${ctx}_nodes`)
	return { queue, ctx, st: res.trackTable(S.uniqueName(`${label}_s`)) }
}

/**
 * An adapter on `where` (worker and client in one, started or not), stopped after the test;
 * `runtimeOptions` get a quiet logger unless they bring one, `options` are the adapter's others.
 */
function adapterAt(res, where, runtimeOptions, options = {}) {
	const { RabbitMqAdapter, RedisCoordinationStore } = require(ROOT)
	const adapter = new RabbitMqAdapter({
		amqpConnection: S.RABBITMQ_URL,
		pgClient: S.POSTGRES_URL,
		coordinationStore: new RedisCoordinationStore(S.REDIS_URL),
		queueName: where.queue,
		contextTableName: where.ctx,
		statusTableName: where.st,
		...options,
		runtimeOptions: { logger: quiet, ...runtimeOptions },
	})
	res.onCleanup(() => adapter.stop({ timeoutMs: 2000 }).catch(() => {}))
	return adapter
}

/**
 * A worker process (`script`, configured by QUEUE, CTX_TABLE, STATUS_TABLE and the service URLs,
 * plus `env`) on `where`, its stderr in `<logDir>/<label>.log`; `child.ready` resolves when it
 * prints WORKER_READY, `child.exited` (`{ code, signal }`) when it ends; `onLine(line)` sees each
 * line it prints on stdout; `child.stop(signal)` sends `signal` and resolves once it has exited
 * (SIGKILL after 20 s). SIGKILLed after the test if still alive.
 */
function spawnWorker(res, { script, where, env = {}, label, logDir, onLine }) {
	const logFile = path.join(logDir, `${label}.log`)
	const child = spawn(process.execPath, [script], {
		cwd: ROOT,
		env: {
			...process.env,
			QUEUE: where.queue,
			CTX_TABLE: where.ctx,
			STATUS_TABLE: where.st,
			POSTGRES_URL: S.POSTGRES_URL,
			REDIS_URL: S.REDIS_URL,
			RABBITMQ_URL: S.RABBITMQ_URL,
			...env,
		},
		stdio: ['ignore', 'pipe', fs.openSync(logFile, 'w')],
	})
	child.label = label
	child.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
	res.onCleanup(async () => {
		if (child.exitCode === null && child.signalCode === null) {
			child.kill('SIGKILL')
			await child.exited
		}
	})
	child.ready = new Promise((resolve, reject) => {
		let buffered = ''
		child.stdout.on('data', (d) => {
			buffered += d
			let nl = buffered.indexOf('\n')
			while (nl >= 0) {
				const line = buffered.slice(0, nl)
				buffered = buffered.slice(nl + 1)
				if (line === 'WORKER_READY') resolve()
				onLine?.(line)
				nl = buffered.indexOf('\n')
			}
		})
		child.exited.then(() => reject(new Error(`${label} exited before it was ready; see ${logFile}`)))
	})
	child.stop = async (signal) => {
		child.kill(signal)
		const timer = setTimeout(() => child.kill('SIGKILL'), 20000)
		const how = await child.exited
		clearTimeout(timer)
		return how
	}
	return child
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

module.exports = { place, adapterAt, spawnWorker, until, quiet }
