'use strict'
/**
 * The shared services as the chaos suite sees them: their URLs, the local ports of a
 * process's connections to them (read from /proc, to aim a fault at one harness's
 * workers only), and rabbitmqctl for the shared broker (list_connections and
 * close_connection of a harness's own connections only: a stop or restart of a broker
 * runs on a private node, chaos/private.js).
 */
const { execFile } = require('node:child_process')
const fs = require('node:fs')

const POSTGRES_URL = process.env.POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/test'
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379'
const RABBITMQ_URL = process.env.RABBITMQ_URL || 'amqp://guest:guest@127.0.0.1:5672'

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// ------------------------------------------------------------------ /proc sockets

/** Local ports of the ESTABLISHED TCP connections of process `pid` to `remotePort`. */
function localPorts(pid, remotePort) {
	const inodes = new Set()
	let fds = []
	try {
		fds = fs.readdirSync(`/proc/${pid}/fd`)
	} catch {
		return []
	}
	for (const fd of fds) {
		try {
			const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`))
			if (m) inodes.add(m[1])
		} catch {
			/* fd closed meanwhile */
		}
	}
	const ports = []
	for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
		let text = ''
		try {
			text = fs.readFileSync(file, 'utf8')
		} catch {
			continue
		}
		for (const line of text.split('\n').slice(1)) {
			const parts = line.trim().split(/\s+/)
			if (parts.length < 10 || parts[3] !== '01') continue
			const lport = parseInt(parts[1].split(':').pop(), 16)
			const rport = parseInt(parts[2].split(':').pop(), 16)
			if (rport === remotePort && inodes.has(parts[9])) ports.push(lport)
		}
	}
	return ports
}

// ------------------------------------------------------------------ helpers

function quoteIdent(name) {
	if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`unsafe identifier ${name}`)
	return `"${name}"`
}

function headerText(v) {
	if (v === undefined || v === null) return undefined
	if (Buffer.isBuffer(v)) return v.toString('utf8')
	return String(v)
}

function rabbitmqctl(args, timeoutMs = 120000) {
	return new Promise((resolve, reject) => {
		execFile('rabbitmqctl', args, { timeout: timeoutMs }, (err, stdout, stderr) => {
			if (err) reject(new Error(`rabbitmqctl ${args.join(' ')} failed: ${err.message}\n${stderr}`))
			else resolve(stdout)
		})
	})
}

module.exports = {
	POSTGRES_URL,
	REDIS_URL,
	RABBITMQ_URL,
	sleep,
	localPorts,
	quoteIdent,
	headerText,
	rabbitmqctl,
}
