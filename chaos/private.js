'use strict'
/**
 * Private instances of PostgreSQL, Redis and RabbitMQ on ports of their own, for faults
 * that hit a whole server (a restart, a stop of 40 s, FLUSHALL, a broker's stop_app):
 * the shared services are never touched. Each is removed by its `remove()`, and also
 * when this process exits (an 'exit' hook) or dies (a detached watchdog shell), so a
 * failed run leaves nothing (__test__/helpers/private-base.js, shared with the tests'
 * private instances).
 *
 *   const pg = await startPrivatePostgres()   // { url, port, restart(), stop(), start(), remove() }
 *   const redis = await startPrivateRedis()   // { url, port, restart(), flushall(), remove() }
 *   const rabbit = await startPrivateRabbit() // { url, port, nodeName, ctl(args), stopAppFor(ms), remove() }
 */
const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { execFileSync, spawn } = require('node:child_process')
// the machinery shared with the tests' private instances: free ports, exit hooks, watchdogs, pg_createcluster
const {
	PG_VERSION,
	run: runCmd,
	freePort,
	waitForPort,
	registerExitCleanup,
	startWatchdog,
	createPgCluster,
	sleep,
} = require('../__test__/helpers/private-base')
// a private RabbitMQ node: a cluster of one (its own node name, ports, data dir and cookie)
const { startRabbitCluster } = require('../__test__/helpers/private-clusters')

/** execFile as a promise, resolving with stdout. */
const run = (cmd, args, timeout = 60000) => runCmd(cmd, args, { timeout }).then((r) => r.stdout)

/** A PostgreSQL 15 cluster of its own (pg_createcluster; trust auth on 127.0.0.1), database `test`. */
async function startPrivatePostgres() {
	const name = `fc_faults_${crypto.randomBytes(4).toString('hex')}`
	const port = await freePort()
	const drop = ['pg_dropcluster', PG_VERSION, name, '--stop']
	const dismiss = startWatchdog(`${drop.join(' ')} >/dev/null 2>&1`)
	const forget = registerExitCleanup(() => execFileSync(drop[0], drop.slice(1), { stdio: 'ignore', timeout: 30000 }))
	const ctl = (action) => run('pg_ctlcluster', [PG_VERSION, name, action, ...(action === 'stop' ? ['-m', 'fast'] : [])])
	await createPgCluster(name, port)
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
			forget()
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
		dismiss = startWatchdog(`kill -9 ${child.pid} 2>/dev/null`)
		await waitForPort(port)
	}
	const kill = async () => {
		const c = child
		if (c.exitCode !== null || c.signalCode !== null) return
		const gone = new Promise((resolve) => c.once('exit', resolve))
		c.kill('SIGKILL')
		await gone
	}
	const forget = registerExitCleanup(() => {
		try {
			process.kill(child.pid, 'SIGKILL')
		} catch {}
		fs.rmSync(dir, { recursive: true, force: true })
	})
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
			forget()
			fs.rmSync(dir, { recursive: true, force: true })
		},
	}
}

/**
 * A RabbitMQ node of its own (plain AMQP on 127.0.0.1, guest/guest): the one-node
 * cluster of __test__/helpers/private-clusters.js, with its own RABBITMQ_NODENAME,
 * AMQP and distribution ports, data and log dirs (one temp dir) and Erlang cookie.
 * `ctl(args)` runs rabbitmqctl against this node only (`-n <node> --erlang-cookie`);
 * `stopAppFor(ms)` is stop_app, a pause, start_app (always, in a finally) and
 * await_startup; `remove()` stops the node and deletes its dir (idempotent).
 */
async function startPrivateRabbit({ timeoutMs = 150000 } = {}) {
	const cluster = await startRabbitCluster({ nodes: 1, timeoutMs })
	const node = cluster.nodes[0]
	const ctl = (args, opts) => cluster.ctl(0, args, opts)
	return {
		nodeName: node.name,
		port: node.port,
		url: node.url,
		baseDir: cluster.baseDir,
		ctl,
		stopAppFor: async (downMs) => {
			try {
				await ctl(['stop_app'], { timeout: 120000 })
				await sleep(downMs)
			} finally {
				await ctl(['start_app'], { timeout: 120000 })
			}
			await ctl(['await_startup', '--timeout', '60'], { timeout: 70000 }).catch(() => {})
		},
		remove: () => cluster.stop(),
	}
}

module.exports = { startPrivatePostgres, startPrivateRedis, startPrivateRabbit }
