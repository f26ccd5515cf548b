'use strict'

// `npm run demo`: starts demo/worker.js, runs demo/client.js, then stops the worker
// with SIGTERM (it drains and exits). Exits 0 only if every run completed and the
// worker stopped cleanly. Needs PostgreSQL, Redis and RabbitMQ (see demo/shared.js
// for the defaults and the environment variables); the tables are created by the
// worker when missing.

const path = require('node:path')
const { spawn } = require('node:child_process')

const READY = 'Worker is running. Waiting for jobs...'
const START_TIMEOUT_MS = 30000
const STOP_TIMEOUT_MS = 30000

function prefixLines(stream, prefix, onLine) {
	let buffer = ''
	stream.setEncoding('utf8')
	stream.on('data', (chunk) => {
		buffer += chunk
		for (let i = buffer.indexOf('\n'); i >= 0; i = buffer.indexOf('\n')) {
			const line = buffer.slice(0, i)
			buffer = buffer.slice(i + 1)
			process.stdout.write(`${prefix}${line}\n`)
			if (onLine) onLine(line)
		}
	})
	stream.on('end', () => {
		if (buffer) process.stdout.write(`${prefix}${buffer}\n`)
	})
}

function exited(child) {
	return new Promise((resolve) => {
		if (child.exitCode !== null || child.signalCode !== null)
			resolve({ code: child.exitCode, signal: child.signalCode })
		else child.once('exit', (code, signal) => resolve({ code, signal }))
	})
}

async function main() {
	const worker = spawn(process.execPath, [path.join(__dirname, 'worker.js')], { stdio: ['ignore', 'pipe', 'pipe'] })
	const workerExit = exited(worker)
	const ready = new Promise((resolve) => {
		prefixLines(worker.stdout, '[worker] ', (line) => {
			if (line.includes(READY)) resolve(true)
		})
		prefixLines(worker.stderr, '[worker] ')
	})
	let timer
	const outcome = await Promise.race([
		ready,
		workerExit.then(() => false),
		new Promise((resolve) => {
			timer = setTimeout(() => resolve(false), START_TIMEOUT_MS)
		}),
	])
	clearTimeout(timer)
	if (!outcome) {
		console.error(`demo: the worker did not start (see its output above)`)
		worker.kill('SIGKILL')
		return 1
	}

	const client = spawn(process.execPath, [path.join(__dirname, 'client.js')], { stdio: ['ignore', 'pipe', 'pipe'] })
	prefixLines(client.stdout, '[client] ')
	prefixLines(client.stderr, '[client] ')
	const clientExit = await exited(client)

	console.log('demo: stopping the worker with SIGTERM')
	worker.kill('SIGTERM')
	let killTimer
	const stopped = await Promise.race([
		workerExit,
		new Promise((resolve) => {
			killTimer = setTimeout(() => resolve(null), STOP_TIMEOUT_MS)
		}),
	])
	clearTimeout(killTimer)
	let workerOk = true
	if (!stopped) {
		console.error(`demo: the worker did not exit within ${STOP_TIMEOUT_MS} ms of SIGTERM; killing it`)
		worker.kill('SIGKILL')
		workerOk = false
	} else if (!(stopped.signal === 'SIGTERM' || stopped.code === 0)) {
		console.error(`demo: the worker exited with ${stopped.signal || `code ${stopped.code}`}`)
		workerOk = false
	}

	const ok = clientExit.code === 0 && workerOk
	console.log(ok ? 'demo: every run completed' : 'demo: FAILED')
	if (ok) {
		const { demoSettings } = require('./shared')
		const s = demoSettings()
		console.log(
			`demo: inspect the runs with: npx flowcraft-rabbitmq runs --blueprints demo/shared.js --queue ${s.queueName} ` +
				`--context-table ${s.contextTableName} --status-table ${s.statusTableName}` +
				(process.env.POSTGRES_URL ? '' : ` --postgres-url ${s.postgresUrl}`),
		)
	}
	return ok ? 0 : 1
}

main().then(
	(code) => {
		process.exitCode = code
	},
	(err) => {
		console.error(err)
		process.exitCode = 1
	},
)
