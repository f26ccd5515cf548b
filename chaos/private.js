'use strict'
/**
 * Private instances of PostgreSQL and Redis on ports of their own, for faults that hit
 * a whole server (a restart, a stop of 40 s, FLUSHALL): the shared services are never
 * touched. Each is removed by its `remove()`, and also when this process exits (an
 * 'exit' hook) or dies (a detached watchdog shell), so a failed run leaves nothing.
 *
 *   const pg = await startPrivatePostgres()   // { url, port, restart(), stop(), start(), remove() }
 *   const redis = await startPrivateRedis()   // { url, port, restart(), flushall(), remove() }
 */
const crypto = require('node:crypto')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const { execFile, execFileSync, spawn } = require('node:child_process')

const PG_VERSION = '15'
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function run(cmd, args, timeout = 60000) {
	return new Promise((resolve, reject) => {
		execFile(cmd, args, { timeout }, (err, stdout, stderr) => {
			if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${err.message}\n${stdout}${stderr}`))
			else resolve(stdout)
		})
	})
}

function freePort() {
	return new Promise((resolve, reject) => {
		const srv = net.createServer()
		srv.on('error', reject)
		srv.listen(0, '127.0.0.1', () => {
			const { port } = srv.address()
			srv.close(() => resolve(port))
		})
	})
}

/** Resolves once something accepts TCP connections on the port. */
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

const exitHooks = new Set()
process.on('exit', () => {
	for (const f of exitHooks) {
		try {
			f()
		} catch {}
	}
})

/** A shell that runs `script` once this process is gone, even after a SIGKILL. Returns its dismissal. */
function watchdog(script) {
	const dog = spawn('/bin/sh', ['-c', `while kill -0 ${process.pid} 2>/dev/null; do sleep 2; done; ${script}`], {
		detached: true,
		stdio: 'ignore',
	})
	dog.unref()
	return () => {
		try {
			process.kill(dog.pid, 'SIGKILL')
		} catch {}
	}
}

/** A PostgreSQL 15 cluster of its own (pg_createcluster; trust auth on 127.0.0.1), database `test`. */
async function startPrivatePostgres() {
	const name = `fc_faults_${crypto.randomBytes(4).toString('hex')}`
	const port = await freePort()
	const drop = ['pg_dropcluster', PG_VERSION, name, '--stop']
	const dismiss = watchdog(`${drop.join(' ')} >/dev/null 2>&1`)
	const hook = () => execFileSync(drop[0], drop.slice(1), { stdio: 'ignore', timeout: 30000 })
	exitHooks.add(hook)
	const ctl = (action) => run('pg_ctlcluster', [PG_VERSION, name, action, ...(action === 'stop' ? ['-m', 'fast'] : [])])
	await run('pg_createcluster', [
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
		'trust',
	])
	const conf = `/etc/postgresql/${PG_VERSION}/${name}/postgresql.conf`
	fs.appendFileSync(
		conf,
		"\nlisten_addresses = '127.0.0.1'\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n",
	)
	await ctl('start')
	await run('createdb', ['-h', '/var/run/postgresql', '-p', String(port), '-U', 'postgres', 'test'])
	return {
		name,
		port,
		url: `postgres://postgres@127.0.0.1:${port}/test`,
		/** Stops the server (fast: sessions are ended); `start()` brings it back. */
		stop: () => ctl('stop'),
		start: async () => {
			await ctl('start')
			await waitForPort(port)
		},
		restart: async () => {
			await ctl('restart')
			await waitForPort(port)
		},
		remove: async () => {
			await run(drop[0], drop.slice(1)).catch(() => {})
			exitHooks.delete(hook)
			dismiss()
		},
	}
}

/** A redis-server of its own, in memory only. */
async function startPrivateRedis() {
	const port = await freePort()
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fc-faults-redis-'))
	let child
	let dismiss = () => {}
	const launch = async () => {
		child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
			cwd: dir,
			stdio: 'ignore',
			detached: true,
		})
		child.on('error', () => {})
		child.unref()
		dismiss()
		dismiss = watchdog(`kill -9 ${child.pid} 2>/dev/null`)
		await waitForPort(port)
	}
	const kill = async () => {
		const c = child
		if (c.exitCode !== null || c.signalCode !== null) return
		const gone = new Promise((resolve) => c.once('exit', resolve))
		c.kill('SIGKILL')
		await gone
	}
	const hook = () => {
		try {
			process.kill(child.pid, 'SIGKILL')
		} catch {}
		fs.rmSync(dir, { recursive: true, force: true })
	}
	exitHooks.add(hook)
	await launch()
	return {
		port,
		url: `redis://127.0.0.1:${port}`,
		restart: async () => {
			await kill()
			await launch()
		},
		flushall: () => run('redis-cli', ['-p', String(port), 'FLUSHALL']),
		remove: async () => {
			await kill()
			dismiss()
			exitHooks.delete(hook)
			fs.rmSync(dir, { recursive: true, force: true })
		},
	}
}

module.exports = { startPrivatePostgres, startPrivateRedis }
