'use strict'
/**
 * The worker processes of a Chaos harness (chaos/worker.js, one per slot): spawned,
 * watched (a worker that dies is restarted unless the harness closes), killed, scaled
 * and stopped. Methods of Chaos (chaos/harness.js mixes them in).
 */
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { REDIS_URL, sleep } = require('./services')

/** The worker methods of Chaos. */
class ChaosWorkers {
	spawnWorker(slot) {
		const logFile = path.join(this.logDir, `worker-${slot}.log`)
		const logStream = fs.createWriteStream(logFile, { flags: 'a' })
		const env = {
			...process.env,
			QUEUE: this.queue,
			CTX_TABLE: this.t.ctx,
			STATUS_TABLE: this.t.st,
			EXEC_TABLE: this.t.exec,
			POSTGRES_URL: this.postgresUrl,
			REDIS_URL,
			RABBITMQ_URL: this.rabbitmqUrl,
			CONCURRENCY: String(this.concurrency),
			...this.workerEnv(slot),
		}
		if (this.maxDeliveries) env.MAX_DELIVERIES = String(this.maxDeliveries)
		const child = spawn(process.execPath, [path.join(__dirname, 'worker.js')], {
			env,
			stdio: ['ignore', 'pipe', 'pipe'],
		})
		const w = {
			slot,
			child,
			pid: child.pid,
			ready: false,
			selfKill: false,
			killedByUs: false,
			stopping: false,
			out: '',
		}
		this.slots[slot] = w
		child.stderr.pipe(logStream, { end: false })
		w.readyPromise = new Promise((resolve) => {
			child.stdout.on('data', (d) => {
				logStream.write(d)
				w.out += d.toString()
				if (!w.ready && w.out.includes('WORKER_READY')) {
					w.ready = true
					resolve(true)
				}
				if (w.out.includes('SELF_KILL')) w.selfKill = true
			})
			child.once('close', () => resolve(false))
		})
		w.closed = new Promise((resolve) => {
			child.once('close', (code, signal) => {
				logStream.end()
				if (w.out.includes('SELF_KILL')) w.selfKill = true
				if (!w.stopping) {
					this.deadPids.add(w.pid)
					if (w.selfKill) this.stats.selfKills++
					else if (!w.killedByUs && !w.ready && w.out.includes('WORKER_FAILED')) {
						// start() failed (e.g. PostgreSQL out of connection slots, shared with other
						// suites): the environment, not a lost guarantee; start it again.
						const line = w.out.split('\n').find((l) => l.startsWith('WORKER_FAILED')) || ''
						this.stats.startFailures.push({ pid: w.pid, line })
						this.log(`worker ${w.pid} failed to start (${line.slice(14, 200)}); starting another`)
					} else if (!w.killedByUs) {
						const tail = safeTail(logFile)
						this.stats.unexpectedExits.push({ pid: w.pid, code, signal, ready: w.ready, tail })
						this.log(`!! worker ${w.pid} exited unexpectedly (code ${code}, signal ${signal})\n${tail}`)
					}
				}
				if (this.slots[slot] === w && this.autoRestart && !this.closing && !w.stopping && slot < this.active) {
					this.stats.workerRestarts++
					setTimeout(
						() => {
							if (this.slots[slot] === w && this.autoRestart && !this.closing && slot < this.active)
								this.spawnWorker(slot)
						},
						w.ready ? 50 : 500,
					)
				}
				resolve({ code, signal })
			})
		})
		return w
	}

	async startWorkers() {
		for (let i = 0; i < this.workerCount; i++) this.spawnWorker(i)
		if (!(await this.waitForWorkersReady(60000)))
			throw new Error(`the workers did not start within 60 s; logs in ${this.logDir}`)
	}

	liveWorkers() {
		return this.slots.filter((w) => w && w.child.exitCode === null && w.child.signalCode === null)
	}

	/** kill -9 the worker process `pid` (restarted by the close handler). */
	killWorkerByPid(pid) {
		const w = this.liveWorkers().find((x) => x.pid === pid)
		if (!w) return false
		w.killedByUs = true
		this.deadPids.add(w.pid)
		w.child.kill('SIGKILL')
		this.stats.kills++
		return true
	}

	/** kill -9 a random ready worker (it is restarted by the close handler). */
	killRandomWorker() {
		const ready = this.liveWorkers().filter((w) => w.ready && !w.killedByUs)
		if (!ready.length) return null
		const w = ready[Math.floor(Math.random() * ready.length)]
		w.killedByUs = true
		this.deadPids.add(w.pid)
		w.child.kill('SIGKILL')
		this.stats.kills++
		return w.pid
	}

	async waitForWorkersReady(timeoutMs = 30000) {
		const deadline = Date.now() + timeoutMs
		while (Date.now() < deadline) {
			const live = this.liveWorkers()
			if (live.length === this.active && live.every((w) => w.ready)) return true
			await sleep(100)
		}
		return false
	}

	/** Runs `n` workers: stops (gracefully) those above, starts those missing. */
	async scaleTo(n) {
		this.active = n
		const extra = this.slots.slice(n).filter((w) => w && w.child.exitCode === null && w.child.signalCode === null)
		for (const w of extra) {
			w.stopping = true
			w.child.kill('SIGTERM')
		}
		await Promise.all(extra.map((w) => w.closed))
		for (let i = 0; i < n; i++) {
			const w = this.slots[i]
			if (!w || w.child.exitCode !== null || w.child.signalCode !== null) this.spawnWorker(i)
		}
		return this.waitForWorkersReady(60000)
	}

	/** SIGTERM every worker (a graceful adapter.stop()), SIGKILL after 15 s. */
	async stopWorkers() {
		this.autoRestart = false
		const live = this.liveWorkers()
		for (const w of live) {
			w.stopping = true
			w.child.kill('SIGTERM')
		}
		await Promise.all(
			live.map(async (w) => {
				let timer
				const r = await Promise.race([
					w.closed,
					new Promise((resolve) => (timer = setTimeout(() => resolve(null), 15000))),
				])
				clearTimeout(timer)
				if (!r) {
					w.child.kill('SIGKILL')
					await w.closed
				}
			}),
		)
	}
}

function safeTail(file, n = 30) {
	try {
		return fs.readFileSync(file, 'utf8').split('\n').slice(-n).join('\n')
	} catch {
		return ''
	}
}

module.exports = { ChaosWorkers }
