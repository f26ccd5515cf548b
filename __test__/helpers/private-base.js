'use strict'

// What the private service instances of the tests and the chaos suite share (a
// server on ports of its own, never the shared 127.0.0.1:5432 / 6379 / 5672): free
// ports, timeouts and log tails, child processes and their process groups, the
// last-resort cleanup (an 'exit' hook, and a detached watchdog shell for a process
// that dies without running it), pg_createcluster and a private RabbitMQ node's files.
// Used by helpers/private-services.js (TLS-only instances), helpers/private-clusters.js
// (clusters; a one-node cluster is chaos/private.js's private broker) and chaos/private.js
// (plain instances for whole-server faults).
//
// This file is not a test (no `.test.` in its name), so jest does not collect it.

const crypto = require('node:crypto')
const fs = require('node:fs')
const net = require('node:net')
const path = require('node:path')
const { execFile, spawn } = require('node:child_process')

const START_TIMEOUT_MS = 60000
const RABBITMQ_SBIN = '/usr/lib/rabbitmq/bin'
const PG_VERSION = '15'

const randomHex = (bytes = 4) => crypto.randomBytes(bytes).toString('hex')
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// ------------------------------------------------------------------ utilities

/** A TCP port free on 127.0.0.1 right now (the OS picks it). */
function freePort() {
	return new Promise((resolve, reject) => {
		const srv = net.createServer()
		srv.unref()
		srv.on('error', reject)
		srv.listen(0, '127.0.0.1', () => {
			const { port } = srv.address()
			srv.close(() => resolve(port))
		})
	})
}

/** `n` distinct free ports. */
async function freePorts(n) {
	const ports = new Set()
	while (ports.size < n) ports.add(await freePort())
	return [...ports]
}

/**
 * Resolve with the promise's value, or reject after `ms` with an error naming
 * `what`; `details()` (e.g. a log tail) is appended to the message when given.
 */
function withTimeout(promise, ms, what = 'operation', details) {
	let timer
	const timeout = new Promise((_, reject) => {
		timer = setTimeout(() => {
			let extra = ''
			if (details) {
				try {
					extra = `\n${details()}`
				} catch {
					/* no details */
				}
			}
			reject(new Error(`${what} did not finish within ${ms} ms${extra}`))
		}, ms)
	})
	return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** The last `lines` lines of each file that exists, headed by its path. */
function logTail(files, lines = 40) {
	const out = []
	for (const f of [].concat(files)) {
		let text
		try {
			text = fs.readFileSync(f, 'utf8')
		} catch {
			continue
		}
		out.push(`--- ${f} (last ${lines} lines)`, ...text.trimEnd().split('\n').slice(-lines))
	}
	return out.length ? out.join('\n') : '(no log output)'
}

/** execFile as a promise; rejects with stdout/stderr in the message. */
function run(cmd, args, options = {}) {
	return new Promise((resolve, reject) => {
		execFile(cmd, args, { timeout: 60000, maxBuffer: 16 * 1024 * 1024, ...options }, (err, stdout, stderr) => {
			if (err) {
				err.message = `${cmd} ${args.join(' ')} failed: ${err.message}\n${stdout}\n${stderr}`.trimEnd()
				err.stdout = stdout
				err.stderr = stderr
				reject(err)
			} else {
				resolve({ stdout, stderr })
			}
		})
	})
}

function isAlive(pid) {
	try {
		process.kill(pid, 0)
		return true
	} catch (e) {
		return e.code === 'EPERM'
	}
}

/** Resolves when the child has exited (immediately when it already has). */
function exited(child) {
	if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
	return new Promise((resolve) => child.once('exit', () => resolve()))
}

/**
 * SIGTERM the child, then SIGKILL its whole process group after `graceMs`;
 * resolves when the child is gone (and its group has been swept).
 */
async function terminate(child, graceMs = 15000) {
	if (child.exitCode === null && child.signalCode === null) {
		try {
			child.kill('SIGTERM')
		} catch {
			/* already gone */
		}
		let timer
		const killed = new Promise((resolve) => {
			timer = setTimeout(() => {
				killGroup(child.pid)
				resolve()
			}, graceMs)
		})
		await Promise.race([exited(child), killed])
		clearTimeout(timer)
		await exited(child)
	}
	killGroup(child.pid) // anything the server left in its group (none after a clean stop)
}

/** SIGKILL a process group we started (detached: the group id is the child's pid). */
function killGroup(pid) {
	try {
		process.kill(-pid, 'SIGKILL')
	} catch {
		/* already gone */
	}
}

const shQuote = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`

// ---------------------------------------------------- cleanup when jest exits

const liveInstances = new Set()
let exitHookInstalled = false

/** Remember a synchronous last-resort cleanup; returns a function that forgets it. */
function registerExitCleanup(fn) {
	if (!exitHookInstalled) {
		exitHookInstalled = true
		process.on('exit', () => {
			for (const f of liveInstances) {
				try {
					f()
				} catch {
					/* best effort */
				}
			}
			liveInstances.clear()
		})
	}
	liveInstances.add(fn)
	return () => liveInstances.delete(fn)
}

/**
 * A detached shell that runs `cleanupScript` once this process is gone (even
 * after a SIGKILL, when no 'exit' hook runs). When `childPid` is given it also
 * ends, doing nothing, once that child has exited. Returns a function that
 * dismisses it.
 */
function startWatchdog(cleanupScript, childPid) {
	const childCheck = childPid ? `kill -0 ${childPid} 2>/dev/null || exit 0; ` : ''
	const script = `while kill -0 ${process.pid} 2>/dev/null; do ${childCheck}sleep 2; done; ${cleanupScript}`
	const dog = spawn('/bin/sh', ['-c', script], { detached: true, stdio: 'ignore' })
	dog.unref()
	return () => {
		try {
			process.kill(dog.pid, 'SIGKILL')
		} catch {
			/* already gone */
		}
	}
}

/** process.env without variables that would redirect a server to other config. */
function cleanEnv(prefixes) {
	const env = {}
	for (const [k, v] of Object.entries(process.env)) {
		if (!prefixes.some((pre) => k.startsWith(pre))) env[k] = v
	}
	return env
}

/** Resolves once something accepts TCP connections on 127.0.0.1:port. */
async function waitForPort(port, timeoutMs = 30000) {
	const deadline = Date.now() + timeoutMs
	while (Date.now() < deadline) {
		const ok = await new Promise((resolve) => {
			const s = net.connect(port, '127.0.0.1')
			s.once('connect', () => {
				s.destroy()
				resolve(true)
			})
			s.once('error', () => resolve(false))
		})
		if (ok) return
		await sleep(100)
	}
	throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`)
}

/**
 * Poll until a socket made by `open()` (a net or tls socket to `port`) emits
 * `readyEvent` ('connect' | 'secureConnect') and, when `hello` is given, the server
 * answers it with some bytes; `kind` names the probe in errors ('TLS', 'AMQP').
 * Throws when `isDead()` says the server exited, or at `deadline`.
 */
async function probeUntil(port, { kind, open, readyEvent, hello, deadline, isDead }) {
	let lastError = null
	while (Date.now() < deadline) {
		if (isDead?.()) throw new Error(`server exited during startup (last probe error: ${lastError?.message})`)
		try {
			await new Promise((resolve, reject) => {
				const sock = open()
				const timer = setTimeout(() => {
					sock.destroy()
					reject(new Error(`${kind} probe timed out`))
				}, 5000)
				const done = (err) => {
					clearTimeout(timer)
					sock.destroy()
					if (err) reject(err)
					else resolve()
				}
				sock.on('error', done)
				sock.on(readyEvent, () => {
					if (!hello) return done()
					sock.once('data', () => done())
					sock.write(hello)
				})
				sock.on('close', () => done(new Error('connection closed before the server answered')))
			})
			return
		} catch (e) {
			lastError = e
			await sleep(300)
		}
	}
	throw new Error(`no ${kind} answer on port ${port} (last error: ${lastError?.message})`)
}

// -------------------------------------------------------------------- RabbitMQ

const AMQP_HELLO = Buffer.from([65, 77, 81, 80, 0, 0, 9, 1]) // "AMQP" 0 0 9 1

/**
 * The directories, files and environment of a private RabbitMQ node in `dir`, run as
 * root straight from RABBITMQ_SBIN (not through the /usr/sbin wrapper that su's to the
 * shared node's user): mnesia/, log/ and home/, rabbitmq.conf of `conf` lines, no
 * plugins, an empty rabbitmq-env.conf. `extraErlArgs` are appended to the server's erl
 * arguments, `extraEnv` to the environment. Returns { dirs, env }.
 */
function rabbitNodeFiles(dir, { nodeName, distPort, cookie, conf, extraErlArgs = '', extraEnv = {} }) {
	const dirs = { mnesia: path.join(dir, 'mnesia'), log: path.join(dir, 'log'), home: path.join(dir, 'home') }
	for (const d of Object.values(dirs)) fs.mkdirSync(d, { recursive: true })
	fs.writeFileSync(path.join(dir, 'rabbitmq.conf'), `${conf.join('\n')}\n`)
	fs.writeFileSync(path.join(dir, 'enabled_plugins'), '[].\n')
	fs.writeFileSync(path.join(dir, 'rabbitmq-env.conf'), '# private node: no settings\n')
	// Nothing from the shared node's environment (or the caller's RABBITMQ_*/ERL_*)
	// may leak in: /etc/rabbitmq/rabbitmq-env.conf sets NODENAME=rabbit@localhost.
	const env = {
		...cleanEnv(['RABBITMQ_', 'ERL_']),
		HOME: dirs.home, // the CLI and erl never read or create /root/.erlang.cookie
		RABBITMQ_CONF_ENV_FILE: path.join(dir, 'rabbitmq-env.conf'),
		RABBITMQ_NODENAME: nodeName,
		RABBITMQ_DIST_PORT: String(distPort),
		RABBITMQ_CONFIG_FILE: path.join(dir, 'rabbitmq.conf'),
		RABBITMQ_CONFIG_FILES: path.join(dir, 'conf.d', '*.conf'),
		RABBITMQ_ADVANCED_CONFIG_FILE: path.join(dir, 'advanced.config'),
		RABBITMQ_ENABLED_PLUGINS_FILE: path.join(dir, 'enabled_plugins'),
		RABBITMQ_MNESIA_BASE: dirs.mnesia,
		RABBITMQ_LOG_BASE: dirs.log,
		RABBITMQ_PID_FILE: path.join(dir, 'rabbit.pid'),
		// distribution on loopback only, as the shared node's rabbitmq-env.conf does
		RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: `-setcookie ${cookie} -kernel inet_dist_use_interface {127,0,0,1}${extraErlArgs}`,
		RABBITMQ_CTL_ERL_ARGS: `-setcookie ${cookie}`,
		...extraEnv,
		ERL_EPMD_ADDRESS: '127.0.0.1',
	}
	return { dirs, env }
}

// ------------------------------------------------------------------ PostgreSQL

/** The clusters pg_lsclusters knows, as [{ version, name, port, status }]. */
async function listPgClusters() {
	const { stdout } = await run('pg_lsclusters', ['--no-header'])
	return stdout
		.split('\n')
		.filter(Boolean)
		.map((line) => {
			const [version, name, port, status] = line.trim().split(/\s+/)
			return { version, name, port: Number(port), status }
		})
}

/**
 * pg_createcluster PG_VERSION `name` on `port` (as root; the server runs as the
 * `postgres` OS user), started by hand (--start-conf manual), local connections
 * trusted, TCP ones `authHost` ('trust' | 'reject': then pg_hba.conf is the caller's).
 */
function createPgCluster(name, port, { authHost = 'trust', timeout = 60000 } = {}) {
	return run(
		'pg_createcluster',
		[
			PG_VERSION,
			name,
			'--port',
			String(port),
			'--start-conf',
			'manual',
			'--',
			'--auth-local',
			'trust',
			'--auth-host',
			authHost,
		],
		{ timeout },
	)
}

module.exports = {
	START_TIMEOUT_MS,
	RABBITMQ_SBIN,
	PG_VERSION,
	AMQP_HELLO,
	randomHex,
	sleep,
	freePort,
	freePorts,
	withTimeout,
	logTail,
	run,
	isAlive,
	exited,
	terminate,
	killGroup,
	shQuote,
	registerExitCleanup,
	startWatchdog,
	cleanEnv,
	waitForPort,
	probeUntil,
	rabbitNodeFiles,
	listPgClusters,
	createPgCluster,
}
