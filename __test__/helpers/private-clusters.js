'use strict'

// Private clusters for failover tests: a RabbitMQ cluster (plain AMQP, several
// nodes on loopback) and a PostgreSQL primary with a streaming-replication
// standby. Built on helpers/private-base.js (RabbitMQ run as root straight from
// /usr/lib/rabbitmq/bin, pg_createcluster, exit hooks and a detached watchdog), so a killed jest leaves nothing running. The shared
// services (127.0.0.1:5432 / 6379 / 5672) are never touched. A cluster of one node is
// the chaos suite's private broker (chaos/private.js startPrivateRabbit).
//
// This file is not a test (no `.test.` in its name), so jest does not collect it.

const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const { execFileSync, spawn } = require('node:child_process')
const B = require('./private-base')

const {
	RABBITMQ_SBIN,
	PG_VERSION,
	AMQP_HELLO,
	randomHex,
	sleep,
	run,
	exited,
	terminate,
	killGroup,
	shQuote,
	registerExitCleanup,
	startWatchdog,
	freePorts,
	withTimeout,
	logTail,
	probeUntil,
	rabbitNodeFiles,
	listPgClusters,
	createPgCluster,
} = B

const PG_BIN = `/usr/lib/postgresql/${PG_VERSION}/bin`

// ----------------------------------------------------------------- utilities

/** Poll until 127.0.0.1:port answers the AMQP protocol header with some bytes. */
function waitForAmqp(port, { deadline, isDead }) {
	const open = () => net.connect({ host: '127.0.0.1', port })
	return probeUntil(port, { kind: 'AMQP', open, readyEvent: 'connect', hello: AMQP_HELLO, deadline, isDead })
}

/** Retry `fn` until it resolves or `deadline` passes (then rethrow its last error). */
async function retryUntil(fn, deadline, what, pauseMs = 1000) {
	let lastError = null
	for (;;) {
		try {
			return await fn()
		} catch (e) {
			lastError = e
		}
		if (Date.now() >= deadline) {
			lastError.message = `${what}: ${lastError.message}`
			throw lastError
		}
		await sleep(pauseMs)
	}
}

const secondsLeft = (deadline) => String(Math.max(5, Math.ceil((deadline - Date.now()) / 1000)))

// ------------------------------------------------------------ RabbitMQ cluster

/**
 * A private RabbitMQ cluster of `nodes` nodes on loopback, plain AMQP only, all
 * with one private Erlang cookie; nodes 2..n join node 1. opts.timeoutMs bounds
 * the startup (default 150000: three boots and two joins on two busy cores).
 *
 * Returns {
 *   id, baseDir, cookie,
 *   nodes: [{ index, name, port, distPort, url, pid, logFiles, kill9(), restart(), isRunning() }],
 *   urls, ctl(nodeIndex, args, { timeout, tool }), clusterStatus(nodeIndex),
 *   queueLeader(queueName) → node index (or -1), stop()
 * }
 * url is 'amqp://guest:guest@127.0.0.1:<port>'. kill9() SIGKILLs the node's whole
 * process group (shell and beam) and resolves once it is gone; restart() starts
 * it again with the same name, dirs and ports and resolves once the cluster
 * lists it as running. stop() is idempotent.
 */
async function startRabbitCluster({ nodes: count = 3, timeoutMs = 150000 } = {}) {
	if (!(count >= 1)) throw new Error(`startRabbitCluster: nodes must be >= 1, got ${count}`)
	const id = randomHex(3)
	const cookie = `FCCLUSTER${randomHex(16).toUpperCase()}`
	const base = fs.mkdtempSync(path.join(os.tmpdir(), `fc-rabbit-cluster-${id}-`))
	const ports = await freePorts(count * 2)

	const nodes = []
	for (let i = 0; i < count; i++) {
		const dir = path.join(base, `n${i + 1}`)
		const name = `fc_c${id}_${i + 1}@localhost`
		const port = ports[2 * i]
		const distPort = ports[2 * i + 1]
		const conf = [
			`listeners.tcp.default = 127.0.0.1:${port}`,
			'listeners.ssl = none',
			'loopback_users.guest = true',
			'disk_free_limit.absolute = 10MB',
			'cluster_partition_handling = ignore',
			'log.console = false',
			'log.file.level = info',
		]
		const { dirs, env } = rabbitNodeFiles(dir, {
			nodeName: name,
			distPort,
			cookie,
			conf,
			// no busy-waiting schedulers on shared cores
			extraErlArgs: ' +sbwt none +sbwtdcpu none +sbwtdio none',
			// the CLI's own distribution port: any free one, not the 11-port default range
			// (35672-35682) that every concurrent rabbitmqctl on the machine competes for
			extraEnv: { RABBITMQ_CTL_DIST_PORT_MIN: '0', RABBITMQ_CTL_DIST_PORT_MAX: '0' },
		})
		const stdoutFile = path.join(dirs.log, 'startup.out')
		nodes.push({
			index: i,
			name,
			port,
			distPort,
			dir,
			env,
			stdoutFile,
			logFiles: [stdoutFile, path.join(dirs.log, `${name}.log`)],
			child: null,
		})
	}

	let stopped = null
	const running = (n) => n.child && n.child.exitCode === null && n.child.signalCode === null
	const livePids = () => nodes.filter((n) => n.child).map((n) => n.child.pid)

	// One watchdog for the whole cluster, re-armed whenever a node's pid changes.
	let dismissWatchdog = () => {}
	const armWatchdog = () => {
		dismissWatchdog()
		const kills = livePids()
			.map((pid) => `kill -9 -${pid} 2>/dev/null;`)
			.join(' ')
		dismissWatchdog = startWatchdog(`${kills} sleep 1; rm -rf ${shQuote(base)}`)
	}
	const removeDirs = () => fs.rmSync(base, { recursive: true, force: true })
	const forget = registerExitCleanup(() => {
		for (const pid of livePids()) killGroup(pid)
		dismissWatchdog()
		removeDirs()
	})
	armWatchdog()

	const spawnNode = (n) => {
		const out = fs.openSync(n.stdoutFile, 'a')
		const child = spawn(path.join(RABBITMQ_SBIN, 'rabbitmq-server'), [], {
			env: n.env,
			cwd: n.dir,
			stdio: ['ignore', out, out],
			detached: true, // own process group: kill9() reaches beam.smp too
		})
		fs.closeSync(out)
		child.on('error', () => {})
		child.unref()
		n.child = child
		armWatchdog()
	}

	const ctl = async (index, args, { timeout = 60000, tool = 'rabbitmqctl' } = {}) => {
		const n = nodes[index]
		if (!n) throw new Error(`no node ${index} (the cluster has ${count})`)
		const { stdout } = await run(path.join(RABBITMQ_SBIN, tool), ['-n', n.name, '--erlang-cookie', cookie, ...args], {
			env: n.env,
			cwd: n.dir,
			timeout,
		})
		return stdout
	}

	const clusterStatus = async (index) => {
		const out = await ctl(index, ['cluster_status', '--formatter', 'json', '--quiet'])
		return JSON.parse(out.slice(out.indexOf('{')))
	}

	/** Boot node `n` (fresh or restarted) until it answers AMQP and its CLI. */
	const bootNode = async (n, deadline) => {
		spawnNode(n)
		await waitForAmqp(n.port, { deadline, isDead: () => !running(n) })
		await ctl(n.index, ['await_startup', '--timeout', secondsLeft(deadline)], {
			timeout: Math.max(5000, deadline - Date.now()),
		})
	}

	/** Resolves when node `via` lists every name in `names` as running. */
	const awaitRunning = (via, names, deadline) =>
		retryUntil(
			async () => {
				const st = await clusterStatus(via)
				const missing = names.filter((nm) => !(st.running_nodes || []).includes(nm))
				if (missing.length) throw new Error(`not running yet: ${missing.join(', ')}`)
				return st
			},
			deadline,
			`cluster_status on ${nodes[via].name}`,
		)

	const stop = () => {
		if (!stopped) {
			stopped = (async () => {
				await Promise.all(nodes.filter((n) => n.child).map((n) => terminate(n.child, 10000)))
				forget()
				dismissWatchdog()
				removeDirs()
			})()
		}
		return stopped
	}

	const allLogs = () =>
		logTail(
			nodes.flatMap((n) => n.logFiles),
			25,
		)

	try {
		await withTimeout(
			(async () => {
				const deadline = Date.now() + timeoutMs
				// Boot in parallel (the slow part), then join one at a time.
				await Promise.all(nodes.map((n) => bootNode(n, deadline)))
				const first = nodes[0].name
				for (const n of nodes.slice(1)) {
					await ctl(n.index, ['stop_app'])
					await ctl(n.index, ['join_cluster', first])
					await ctl(n.index, ['start_app'])
					await ctl(n.index, ['await_startup', '--timeout', secondsLeft(deadline)])
				}
				await awaitRunning(
					0,
					nodes.map((n) => n.name),
					deadline,
				)
			})(),
			timeoutMs,
			`private RabbitMQ cluster ${id} (${count} nodes) startup`,
		)
	} catch (e) {
		e.message += `\n${allLogs()}`
		await stop()
		throw e
	}

	const nodeApi = (n) => ({
		index: n.index,
		name: n.name,
		port: n.port,
		distPort: n.distPort,
		url: `amqp://guest:guest@127.0.0.1:${n.port}`,
		logFiles: n.logFiles,
		/** The pid (= process group id) of the node's current rabbitmq-server shell. */
		get pid() {
			return n.child?.pid
		},
		isRunning: () => Boolean(running(n)),
		async kill9() {
			if (!n.child) return
			killGroup(n.child.pid)
			// the child is unref()ed: a timer keeps the event loop alive until it is reaped
			const keepAlive = setInterval(() => {}, 200)
			try {
				await exited(n.child)
			} finally {
				clearInterval(keepAlive)
			}
			// the group is gone with its leader's SIGKILL; sweep once more for stragglers
			killGroup(n.child.pid)
		},
		async restart({ timeoutMs: restartMs = 120000 } = {}) {
			if (stopped) throw new Error('the cluster has been stopped')
			if (running(n)) throw new Error(`${n.name} is still running; kill9() it first`)
			const deadline = Date.now() + restartMs
			try {
				await withTimeout(
					(async () => {
						await bootNode(n, deadline)
						// running in the cluster as seen from itself and from another node
						await awaitRunning(n.index, [n.name], deadline)
						const other = nodes.find((o) => o !== n && running(o))
						if (other) await awaitRunning(other.index, [n.name], deadline)
					})(),
					restartMs,
					`restart of ${n.name}`,
				)
			} catch (e) {
				e.message += `\n${logTail(n.logFiles, 40)}`
				throw e
			}
		},
	})
	const api = nodes.map(nodeApi)

	const queueLeader = async (queueName, { vhost = '/' } = {}) => {
		const candidates = nodes.filter(running)
		let lastError = null
		for (const n of candidates) {
			try {
				const out = await ctl(n.index, ['list_queues', '-p', vhost, 'name', 'leader', '--formatter', 'json', '--quiet'])
				const rows = JSON.parse(out.slice(out.indexOf('[')))
				const row = rows.find((r) => r.name === queueName)
				if (!row) throw new Error(`no queue ${queueName} in list_queues on ${n.name}`)
				return nodes.findIndex((o) => o.name === row.leader)
			} catch (e) {
				lastError = e
			}
		}
		throw lastError || new Error('no running node to ask')
	}

	return {
		id,
		baseDir: base,
		cookie,
		nodes: api,
		urls: api.map((n) => n.url),
		ctl,
		clusterStatus,
		queueLeader,
		stop,
	}
}

// ------------------------------------------------------------- PostgreSQL pair

function pgIds() {
	return {
		uid: Number(execFileSync('id', ['-u', 'postgres']).toString().trim()),
		gid: Number(execFileSync('id', ['-g', 'postgres']).toString().trim()),
	}
}

/** psql against 127.0.0.1:port, database `db`; resolves with trimmed stdout. */
async function psql(port, sql, { db = 'test', timeout = 30000 } = {}) {
	const { stdout } = await run(
		'psql',
		['-X', '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', db, '-v', 'ON_ERROR_STOP=1', '-Atc', sql],
		{ timeout },
	)
	return stdout.trim()
}

/**
 * A private PostgreSQL 15 primary and a streaming-replication standby (both
 * pg_createcluster, on free ports, 127.0.0.1 only, trust auth incl. replication).
 * Database `test` exists (created before the base backup). opts.timeoutMs bounds
 * the startup (default 120000).
 *
 * Returns {
 *   primary: { name, port, url, confDir, dataDir, logFile },
 *   standby: { ... the same },
 *   multiHostUrl: 'postgresql://postgres@127.0.0.1:<p1>,127.0.0.1:<p2>/test?target_session_attrs=read-write',
 *   failover()  stops the primary (immediate) and promotes the standby; resolves
 *               when the standby accepts writes
 *   stop()      drops both clusters (idempotent)
 * }
 */
async function startPgPair({ timeoutMs = 120000 } = {}) {
	const id = randomHex(3)
	const [p1, p2] = await freePorts(2)
	const cluster = (name, port) => ({
		name,
		port,
		url: `postgresql://postgres@127.0.0.1:${port}/test`,
		confDir: `/etc/postgresql/${PG_VERSION}/${name}`,
		dataDir: `/var/lib/postgresql/${PG_VERSION}/${name}`,
		logFile: `/var/log/postgresql/postgresql-${PG_VERSION}-${name}.log`,
	})
	const primary = cluster(`fc_pri_${id}`, p1)
	const standby = cluster(`fc_sby_${id}`, p2)
	const both = [primary, standby]

	const dropArgs = (c) => [PG_VERSION, c.name, '--stop']
	const dismissWatchdog = startWatchdog(
		both
			.map(
				(c) =>
					`pg_dropcluster ${dropArgs(c).join(' ')} >/dev/null 2>&1; rm -rf ${shQuote(c.confDir)} ${shQuote(c.dataDir)};`,
			)
			.join(' '),
	)
	const removeDirs = (c) => {
		fs.rmSync(c.confDir, { recursive: true, force: true })
		fs.rmSync(c.dataDir, { recursive: true, force: true })
	}
	const forget = registerExitCleanup(() => {
		dismissWatchdog()
		for (const c of both) {
			try {
				execFileSync('pg_dropcluster', dropArgs(c), { stdio: 'ignore', timeout: 30000 })
			} catch {
				/* not created, or already dropped */
			}
			removeDirs(c)
		}
	})

	let stopped = null
	const stop = () => {
		if (!stopped) {
			stopped = (async () => {
				const errors = []
				for (const c of both) {
					try {
						await run('pg_dropcluster', dropArgs(c), { timeout: 60000 })
					} catch (e) {
						const known = await listPgClusters().catch(() => [])
						if (known.some((k) => k.name === c.name)) errors.push(e)
					}
					removeDirs(c)
				}
				if (errors.length) throw errors[0] // the exit hook retries
				forget()
				dismissWatchdog()
			})()
		}
		return stopped
	}

	const settings = (role) => [
		'',
		`# private ${role} (appended by __test__/helpers/private-clusters.js)`,
		`listen_addresses = '127.0.0.1'`,
		'wal_level = replica',
		'max_wal_senders = 10',
		'max_replication_slots = 10',
		'wal_keep_size = 64MB',
		'hot_standby = on',
		'fsync = off',
		'synchronous_commit = off',
		'full_page_writes = off',
	]
	const hba = [
		'# private replication test cluster',
		'local all all trust',
		'local replication all trust',
		'host all all 127.0.0.1/32 trust',
		'host replication all 127.0.0.1/32 trust',
		'host all all ::/0 reject',
	]
	const create = async (c, role) => {
		await createPgCluster(c.name, c.port, { timeout: timeoutMs })
		fs.appendFileSync(path.join(c.confDir, 'postgresql.conf'), `${settings(role).join('\n')}\n`)
		fs.writeFileSync(path.join(c.confDir, 'pg_hba.conf'), `${hba.join('\n')}\n`)
	}

	const start = async () => {
		const deadline = Date.now() + timeoutMs
		await Promise.all([create(primary, 'primary'), create(standby, 'standby')])
		await run('pg_ctlcluster', [PG_VERSION, primary.name, 'start'], { timeout: timeoutMs })
		await run('createdb', ['-h', '127.0.0.1', '-p', String(primary.port), '-U', 'postgres', 'test'], {
			timeout: timeoutMs,
		})
		// The standby's data directory becomes a base backup of the primary (made
		// as postgres, so the files are its own), with standby.signal and
		// primary_conninfo (-R); its config stays in its own /etc dir.
		// (emptied, not removed: its parent /var/lib/postgresql/15 belongs to root)
		for (const entry of fs.readdirSync(standby.dataDir)) {
			fs.rmSync(path.join(standby.dataDir, entry), { recursive: true, force: true })
		}
		await run(
			'runuser',
			[
				'-u',
				'postgres',
				'--',
				path.join(PG_BIN, 'pg_basebackup'),
				'-h',
				'127.0.0.1',
				'-p',
				String(primary.port),
				'-U',
				'postgres',
				'-D',
				standby.dataDir,
				'-R',
				'-X',
				'stream',
				'-c',
				'fast',
			],
			{ timeout: timeoutMs, cwd: '/tmp' },
		)
		const { uid, gid } = pgIds()
		const st = fs.statSync(standby.dataDir)
		if (st.uid !== uid || st.gid !== gid) throw new Error(`${standby.dataDir} is not owned by postgres`)
		fs.chmodSync(standby.dataDir, 0o700)
		await run('pg_ctlcluster', [PG_VERSION, standby.name, 'start'], { timeout: timeoutMs })
		await retryUntil(
			async () => {
				const status = await psql(standby.port, 'SELECT status FROM pg_stat_wal_receiver')
				if (status !== 'streaming') throw new Error(`wal receiver status '${status}'`)
				if ((await psql(standby.port, 'SELECT pg_is_in_recovery()')) !== 't') throw new Error('not in recovery')
			},
			deadline,
			`standby ${standby.name} streaming from ${primary.name}`,
			500,
		)
	}

	try {
		await withTimeout(start(), timeoutMs, `private PostgreSQL pair ${id} (ports ${p1}, ${p2}) startup`)
	} catch (e) {
		e.message += `\n${logTail([primary.logFile, standby.logFile], 30)}`
		await stop().catch(() => {})
		throw e
	}

	let failedOver = null
	const failover = ({ timeoutMs: failoverMs = 60000 } = {}) => {
		if (!failedOver) {
			failedOver = withTimeout(
				(async () => {
					const deadline = Date.now() + failoverMs
					await run('pg_ctlcluster', [PG_VERSION, primary.name, 'stop', '-m', 'immediate'], {
						timeout: failoverMs,
					})
					await run('pg_ctlcluster', [PG_VERSION, standby.name, 'promote'], { timeout: failoverMs })
					await retryUntil(
						async () => {
							if ((await psql(standby.port, 'SELECT pg_is_in_recovery()')) !== 'f') throw new Error('still in recovery')
							// assigning a transaction id is refused during recovery: a real write check
							await psql(standby.port, 'SELECT txid_current()')
						},
						deadline,
						`promotion of ${standby.name}`,
						300,
					)
				})(),
				failoverMs,
				`failover to ${standby.name}`,
				() => logTail(standby.logFile, 30),
			)
		}
		return failedOver
	}

	const publicView = (c) => ({
		name: c.name,
		port: c.port,
		url: c.url,
		confDir: c.confDir,
		dataDir: c.dataDir,
		logFile: c.logFile,
	})
	return {
		primary: publicView(primary),
		standby: publicView(standby),
		multiHostUrl: `postgresql://postgres@127.0.0.1:${primary.port},127.0.0.1:${standby.port}/test?target_session_attrs=read-write`,
		failover,
		stop,
	}
}

module.exports = { startRabbitCluster, startPgPair }
