'use strict'

// Private, TLS-only instances of the three services, for tests of TLS settings
// (amqps://, rediss://, sslmode). Each start*() launches its own server on free
// ports, with its own data, config and log directories, and returns a stop().
// The shared services (127.0.0.1:5432 / 6379 / 5672) are never touched.
//
// Every instance is also killed when the jest process exits (an 'exit' hook)
// and by a small detached watchdog shell should the process die without
// running it (SIGKILL), so a failing test never leaves a server behind
// (helpers/private-base.js).
//
// This file is not a test (no `.test.` in its name), so jest does not collect it.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const tls = require('node:tls')
const { execFileSync, spawn } = require('node:child_process')
const B = require('./private-base')

const {
	START_TIMEOUT_MS,
	RABBITMQ_SBIN,
	PG_VERSION,
	AMQP_HELLO,
	randomHex,
	freePort,
	freePorts,
	withTimeout,
	logTail,
	run,
	terminate,
	killGroup,
	shQuote,
	registerExitCleanup,
	startWatchdog,
	probeUntil,
	rabbitNodeFiles,
	listPgClusters,
	createPgCluster,
} = B

// ----------------------------------------------------------------- certificates

const CA_EXT = `[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
`

function leafExt(kind, altNames) {
	const lines = [
		'basicConstraints = critical, CA:FALSE',
		'subjectKeyIdentifier = hash',
		'authorityKeyIdentifier = keyid, issuer',
	]
	if (kind === 'server') {
		lines.push('keyUsage = critical, digitalSignature, keyEncipherment')
		lines.push('extendedKeyUsage = serverAuth')
		lines.push(`subjectAltName = ${altNames}`)
	} else {
		lines.push('keyUsage = critical, digitalSignature')
		lines.push('extendedKeyUsage = clientAuth')
	}
	return `[leaf_ext]\n${lines.join('\n')}\n`
}

/**
 * A throwaway PKI made with the openssl CLI (EC P-256 keys, sha256, X.509 v3),
 * in a fresh temp dir (or `dir`). Synchronous. Returns absolute paths:
 *
 *   ca, caKey                         the good CA (CN "Flowcraft Test CA ...")
 *   serverCert, serverKey             signed by ca, for DNS:localhost, IP:127.0.0.1
 *   clientCert, clientKey             signed by ca, clientAuth, CN=postgres (PostgreSQL
 *                                     `cert` auth maps the CN to the user name)
 *   wrongCa, wrongCaKey               an unrelated second CA
 *   wrongServerCert, wrongServerKey   signed by wrongCa, for localhost / 127.0.0.1
 *   wrongClientCert, wrongClientKey   signed by wrongCa, clientAuth, CN=postgres
 *   otherNameCert, otherNameKey       signed by ca, but only for DNS:other.invalid
 *
 * plus `dir` and `cleanup()` (removes the directory; a temp dir made here is
 * also removed when the process exits).
 */
function makeCerts(dir) {
	const root = dir ? path.resolve(dir) : fs.mkdtempSync(path.join(os.tmpdir(), 'fc-certs-'))
	fs.mkdirSync(root, { recursive: true })
	const p = (name) => path.join(root, name)
	const ssl = (args) => {
		try {
			execFileSync('openssl', args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
		} catch (e) {
			throw new Error(`openssl ${args.join(' ')} failed: ${e.stderr || e.message}`)
		}
	}
	const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']
	const tag = randomHex(3)

	fs.writeFileSync(p('ca.cnf'), CA_EXT)
	const makeCa = (name, cn) => {
		ssl([
			'req',
			'-x509',
			'-new',
			...newKey,
			'-keyout',
			p(`${name}.key`),
			'-out',
			p(`${name}.crt`),
			'-days',
			'3650',
			'-sha256',
			'-subj',
			`/O=Flowcraft tests/CN=${cn}`,
			'-config',
			p('ca.cnf'),
			'-extensions',
			'ca_ext',
		])
		fs.chmodSync(p(`${name}.key`), 0o600)
	}
	const makeLeaf = (name, caName, kind, cn, altNames) => {
		const ext = p(`${name}.ext`)
		fs.writeFileSync(ext, leafExt(kind, altNames))
		ssl(['req', '-new', ...newKey, '-keyout', p(`${name}.key`), '-out', p(`${name}.csr`), '-subj', `/CN=${cn}`])
		ssl([
			'x509',
			'-req',
			'-in',
			p(`${name}.csr`),
			'-CA',
			p(`${caName}.crt`),
			'-CAkey',
			p(`${caName}.key`),
			'-set_serial',
			`0x${randomHex(12)}`,
			'-days',
			'825',
			'-sha256',
			'-extfile',
			ext,
			'-extensions',
			'leaf_ext',
			'-out',
			p(`${name}.crt`),
		])
		fs.chmodSync(p(`${name}.key`), 0o600)
		fs.rmSync(p(`${name}.csr`), { force: true })
		fs.rmSync(ext, { force: true })
	}

	const localNames = 'DNS:localhost, IP:127.0.0.1'
	makeCa('ca', `Flowcraft Test CA ${tag}`)
	makeLeaf('server', 'ca', 'server', 'localhost', localNames)
	makeLeaf('client', 'ca', 'client', 'postgres')
	makeLeaf('other-name', 'ca', 'server', 'other.invalid', 'DNS:other.invalid')
	makeCa('wrong-ca', `Unrelated Test CA ${tag}`)
	makeLeaf('wrong-server', 'wrong-ca', 'server', 'localhost', localNames)
	makeLeaf('wrong-client', 'wrong-ca', 'client', 'postgres')
	fs.rmSync(p('ca.cnf'), { force: true })
	// a temp dir of our own also goes when the process exits without cleanup()
	const forget = dir ? () => {} : registerExitCleanup(() => fs.rmSync(root, { recursive: true, force: true }))

	return {
		dir: root,
		ca: p('ca.crt'),
		caKey: p('ca.key'),
		serverCert: p('server.crt'),
		serverKey: p('server.key'),
		clientCert: p('client.crt'),
		clientKey: p('client.key'),
		wrongCa: p('wrong-ca.crt'),
		wrongCaKey: p('wrong-ca.key'),
		wrongServerCert: p('wrong-server.crt'),
		wrongServerKey: p('wrong-server.key'),
		wrongClientCert: p('wrong-client.crt'),
		wrongClientKey: p('wrong-client.key'),
		otherNameCert: p('other-name.crt'),
		otherNameKey: p('other-name.key'),
		cleanup() {
			forget()
			fs.rmSync(root, { recursive: true, force: true })
		},
	}
}

/**
 * Which cert/key a server presents: opts.serverCert/serverKey win, then
 * opts.serverIdentity ('good' | 'wrong' | 'otherName'), default the good one.
 */
function serverIdentity(certs, opts) {
	const pick = {
		good: [certs.serverCert, certs.serverKey],
		wrong: [certs.wrongServerCert, certs.wrongServerKey],
		otherName: [certs.otherNameCert, certs.otherNameKey],
	}[opts.serverIdentity || 'good']
	if (!pick) throw new Error(`unknown serverIdentity ${opts.serverIdentity}`)
	return { cert: opts.serverCert || pick[0], key: opts.serverKey || pick[1] }
}

/**
 * Poll until a TLS handshake with 127.0.0.1:port (SNI localhost) succeeds and,
 * when `hello` is given, the server answers it with some bytes.
 */
async function waitForTls(port, certs, { requireClientCert, hello, deadline, isDead }) {
	const ca = fs.readFileSync(certs.ca)
	const clientAuth = requireClientCert
		? { cert: fs.readFileSync(certs.clientCert), key: fs.readFileSync(certs.clientKey) }
		: {}
	const open = () =>
		tls.connect({
			host: '127.0.0.1',
			port,
			servername: 'localhost',
			ca,
			...clientAuth,
			rejectUnauthorized: false, // the server may present a deliberately wrong cert
		})
	await probeUntil(port, { kind: 'TLS', open, readyEvent: 'secureConnect', hello, deadline, isDead })
}

// -------------------------------------------------------------------- RabbitMQ

/**
 * A private RabbitMQ node (runs as root, straight from /usr/lib/rabbitmq/bin,
 * not through the /usr/sbin wrapper that su's to the shared node's user) with
 * only a TLS listener. opts:
 *   requireClientCert  verify_peer + fail_if_no_peer_cert (default false: verify_none)
 *   serverIdentity     'good' (default) | 'wrong' | 'otherName'  (see makeCerts)
 *   extraConfig        lines appended to rabbitmq.conf
 *   timeoutMs          startup limit (default 60000)
 *
 * Returns { port, url, nodeName, cookie, pid, baseDir, logFiles, ctl(args), stop() }:
 * url is 'amqps://guest:guest@localhost:<port>'; ctl(['list_queues']) runs
 * rabbitmqctl against this node (with its cookie) and resolves with stdout;
 * ctl(['listeners'], { tool: 'rabbitmq-diagnostics' }) runs another CLI tool.
 */
async function startTlsRabbit(certs, opts = {}) {
	const timeoutMs = opts.timeoutMs || START_TIMEOUT_MS
	const deadline = Date.now() + timeoutMs
	const id = randomHex(4)
	const nodeName = `fc_tls_${id}@localhost`
	const cookie = `FCTLS${randomHex(16).toUpperCase()}`
	const base = fs.mkdtempSync(path.join(os.tmpdir(), `fc-rabbit-${id}-`))
	const [port, distPort] = await freePorts(2)
	const { cert, key } = serverIdentity(certs, opts)

	const conf = [
		'listeners.tcp = none',
		`listeners.ssl.default = ${port}`,
		`ssl_options.cacertfile = ${certs.ca}`,
		`ssl_options.certfile = ${cert}`,
		`ssl_options.keyfile = ${key}`,
		opts.requireClientCert ? 'ssl_options.verify = verify_peer' : 'ssl_options.verify = verify_none',
		`ssl_options.fail_if_no_peer_cert = ${opts.requireClientCert ? 'true' : 'false'}`,
		'loopback_users.guest = true',
		'disk_free_limit.absolute = 10MB',
		'log.console = false',
		'log.file.level = info',
		...(opts.extraConfig || []),
	]
	const { dirs, env } = rabbitNodeFiles(base, { nodeName, distPort, cookie, conf })
	const stdoutFile = path.join(dirs.log, 'startup.out')
	const logFiles = [stdoutFile, path.join(dirs.log, `${nodeName}.log`)]
	const out = fs.openSync(stdoutFile, 'a')
	// rabbitmq-server is a shell that runs erl in the background and turns SIGTERM
	// into a clean shutdown; in its own process group, so a hard kill of the group
	// also reaches beam.smp.
	const child = spawn(path.join(RABBITMQ_SBIN, 'rabbitmq-server'), [], {
		env,
		cwd: base,
		stdio: ['ignore', out, out],
		detached: true,
	})
	fs.closeSync(out)
	child.on('error', () => {})
	child.unref()

	const removeDirs = () => fs.rmSync(base, { recursive: true, force: true })
	const dismissWatchdog = startWatchdog(
		`kill -9 -${child.pid} 2>/dev/null; sleep 1; rm -rf ${shQuote(base)}`,
		child.pid,
	)
	const forget = registerExitCleanup(() => {
		killGroup(child.pid)
		dismissWatchdog()
		removeDirs()
	})

	const ctl = async (args, { timeout = 60000, tool = 'rabbitmqctl' } = {}) => {
		const { stdout } = await run(path.join(RABBITMQ_SBIN, tool), ['-n', nodeName, '--erlang-cookie', cookie, ...args], {
			env,
			cwd: base,
			timeout,
		})
		return stdout
	}

	let stopped = null
	const stop = () => {
		if (!stopped) {
			stopped = (async () => {
				await terminate(child, 20000)
				forget()
				dismissWatchdog()
				removeDirs()
			})()
		}
		return stopped
	}

	const dead = () => child.exitCode !== null || child.signalCode !== null
	try {
		await withTimeout(
			(async () => {
				await waitForTls(port, certs, {
					requireClientCert: opts.requireClientCert,
					hello: AMQP_HELLO,
					deadline,
					isDead: dead,
				})
				// proves the CLI reaches this node with its cookie (and that boot is complete)
				await ctl(['await_startup', '--timeout', String(Math.max(5, Math.ceil((deadline - Date.now()) / 1000)))])
			})(),
			timeoutMs,
			`private RabbitMQ ${nodeName} (TLS port ${port}) startup`,
		)
	} catch (e) {
		e.message += `\n${logTail(logFiles)}`
		await stop()
		throw e
	}

	return {
		port,
		url: `amqps://guest:guest@localhost:${port}`,
		nodeName,
		cookie,
		distPort,
		pid: child.pid,
		baseDir: base,
		logFiles,
		ctl,
		stop,
	}
}

// ----------------------------------------------------------------------- Redis

/**
 * A private redis-server with only a TLS port (port 0 = no plain TCP), no
 * persistence. opts: requireClientCert (--tls-auth-clients yes), serverIdentity,
 * extraArgs (more command-line arguments), timeoutMs.
 *
 * Returns { port, url: 'rediss://localhost:<port>', pid, dir, logFile, stop() }.
 */
async function startTlsRedis(certs, opts = {}) {
	const timeoutMs = opts.timeoutMs || START_TIMEOUT_MS
	const deadline = Date.now() + timeoutMs
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fc-redis-'))
	const port = await freePort()
	const { cert, key } = serverIdentity(certs, opts)
	const logFile = path.join(dir, 'redis.log')
	const args = [
		'--port',
		'0',
		'--bind',
		'127.0.0.1',
		'--tls-port',
		String(port),
		'--tls-cert-file',
		cert,
		'--tls-key-file',
		key,
		'--tls-ca-cert-file',
		certs.ca,
		'--tls-auth-clients',
		opts.requireClientCert ? 'yes' : 'no',
		'--save',
		'',
		'--appendonly',
		'no',
		'--dir',
		dir,
		'--daemonize',
		'no',
		'--logfile',
		logFile,
		...(opts.extraArgs || []),
	]
	const child = spawn('redis-server', args, { cwd: dir, stdio: 'ignore', detached: true })
	child.on('error', () => {})
	child.unref()

	const removeDir = () => fs.rmSync(dir, { recursive: true, force: true })
	const dismissWatchdog = startWatchdog(`kill -9 -${child.pid} 2>/dev/null; rm -rf ${shQuote(dir)}`, child.pid)
	const forget = registerExitCleanup(() => {
		killGroup(child.pid)
		dismissWatchdog()
		removeDir()
	})

	let stopped = null
	const stop = () => {
		if (!stopped) {
			stopped = (async () => {
				await terminate(child, 10000)
				forget()
				dismissWatchdog()
				removeDir()
			})()
		}
		return stopped
	}

	try {
		await withTimeout(
			waitForTls(port, certs, {
				requireClientCert: opts.requireClientCert,
				hello: Buffer.from('PING\r\n'),
				deadline,
				isDead: () => child.exitCode !== null || child.signalCode !== null,
			}),
			timeoutMs,
			`private Redis (TLS port ${port}) startup`,
		)
	} catch (e) {
		e.message += `\n${logTail(logFile)}`
		await stop()
		throw e
	}

	return { port, url: `rediss://localhost:${port}`, pid: child.pid, dir, logFile, stop }
}

// ------------------------------------------------------------------ PostgreSQL

/**
 * A private PostgreSQL 15 cluster (pg_createcluster, as root; the server runs
 * as the `postgres` OS user) that accepts only TLS over TCP, on 127.0.0.1.
 * Database `test` is created. opts:
 *   requireClientCert  ssl_ca_file + `hostssl ... cert` (the client cert's CN must
 *                      be the user name: makeCerts' client cert has CN=postgres)
 *   serverIdentity     'good' (default) | 'wrong' | 'otherName'
 *   extraConfig        lines appended to postgresql.conf
 *   timeoutMs          startup limit (default 60000)
 *
 * Returns { port, url: 'postgresql://postgres@localhost:<port>/test', name,
 * confDir, logFile, stop() }; stop() runs pg_dropcluster 15 <name> --stop.
 */
async function startTlsPostgres(certs, opts = {}) {
	const timeoutMs = opts.timeoutMs || START_TIMEOUT_MS
	const name = `fc_tls_${randomHex(4)}`
	const port = await freePort()
	const confDir = `/etc/postgresql/${PG_VERSION}/${name}`
	const logFile = `/var/log/postgresql/postgresql-${PG_VERSION}-${name}.log`
	const { cert, key } = serverIdentity(certs, opts)
	const pgUid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim())
	const pgGid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim())

	// pg_dropcluster leaves the conf dir behind when it holds files it did not
	// create (our cert and key), so that is removed afterwards.
	const drop = ['pg_dropcluster', PG_VERSION, name, '--stop']
	const removeConfDir = () => fs.rmSync(confDir, { recursive: true, force: true })
	const dismissWatchdog = startWatchdog(`${drop.join(' ')} >/dev/null 2>&1; rm -rf ${shQuote(confDir)}`)
	const forget = registerExitCleanup(() => {
		dismissWatchdog()
		try {
			execFileSync(drop[0], drop.slice(1), { stdio: 'ignore', timeout: 30000 })
		} catch {
			/* not created, or already dropped */
		}
		removeConfDir()
	})

	let stopped = null
	const stop = () => {
		if (!stopped) {
			stopped = (async () => {
				try {
					await run(drop[0], drop.slice(1), { timeout: 60000 })
				} catch (e) {
					// not an error when it was never created; otherwise the exit hook retries
					const known = await listPgClusters().catch(() => [])
					if (known.some((c) => c.name === name)) throw e
				}
				removeConfDir()
				forget()
				dismissWatchdog()
			})()
		}
		return stopped
	}

	const start = async () => {
		await createPgCluster(name, port, { authHost: 'reject', timeout: timeoutMs })
		// The server (user postgres) must read cert and key; the key must be 0600 and its own.
		const put = (src, dest, mode) => {
			fs.copyFileSync(src, dest)
			fs.chownSync(dest, pgUid, pgGid)
			fs.chmodSync(dest, mode)
		}
		put(cert, path.join(confDir, 'server.crt'), 0o644)
		put(key, path.join(confDir, 'server.key'), 0o600)
		const settings = [
			'',
			'# private TLS-only test cluster (appended by __test__/helpers/private-services.js)',
			`listen_addresses = '127.0.0.1'`,
			'ssl = on',
			`ssl_cert_file = '${confDir}/server.crt'`,
			`ssl_key_file = '${confDir}/server.key'`,
			'fsync = off',
			'synchronous_commit = off',
			'full_page_writes = off',
		]
		if (opts.requireClientCert) {
			put(certs.ca, path.join(confDir, 'root.crt'), 0o644)
			settings.push(`ssl_ca_file = '${confDir}/root.crt'`)
		}
		settings.push(...(opts.extraConfig || []))
		fs.appendFileSync(path.join(confDir, 'postgresql.conf'), `${settings.join('\n')}\n`)
		const hba = [
			'# private TLS-only test cluster',
			'local all all trust',
			`hostssl all all 127.0.0.1/32 ${opts.requireClientCert ? 'cert' : 'trust'}`,
			'hostnossl all all 0.0.0.0/0 reject',
			'host all all ::/0 reject',
		]
		fs.writeFileSync(path.join(confDir, 'pg_hba.conf'), `${hba.join('\n')}\n`)
		await run('pg_ctlcluster', [PG_VERSION, name, 'start'], { timeout: timeoutMs })
		await run('createdb', ['-h', '/var/run/postgresql', '-p', String(port), '-U', 'postgres', 'test'], {
			timeout: timeoutMs,
		})
	}

	try {
		await withTimeout(start(), timeoutMs, `private PostgreSQL cluster ${name} (port ${port}) startup`)
	} catch (e) {
		e.message += `\n${logTail(logFile)}`
		await stop().catch(() => {})
		throw e
	}

	return {
		port,
		url: `postgresql://postgres@localhost:${port}/test`,
		name,
		confDir,
		logFile,
		stop,
	}
}

module.exports = {
	makeCerts,
	startTlsRabbit,
	startTlsRedis,
	startTlsPostgres,
	// the shared internals and utilities (helpers/private-base.js), for the tests that use them from here
	...B,
}
