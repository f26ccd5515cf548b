'use strict'

// The CLI never declares a queue. The native core declares the job queue and its
// dead-letter queue whenever it connects to RabbitMQ (core/src/queue.rs,
// Broker::connect), so before any command that reaches the broker (dead-letters,
// reconcile) the CLI checks, on a connection of its own, that both queues exist:
// amqplib's checkQueue is a passive declare, which fails with 404 and creates nothing.
// A typo'd --queue then fails with ERR_QUEUE_NOT_FOUND instead of creating two durable
// queues and reporting them empty.
//
// amqplib is the package users already install with this adapter; without it the
// check cannot be made, and the command is refused (ERR_AMQPLIB_MISSING) rather than
// risk creating queues.

const { CLI_CODES } = require('../errors')
const { redactUrl } = require('../targets')

function coded(code, message, cause) {
	const err = cause === undefined ? new Error(message) : new Error(message, { cause })
	err.code = code
	return err
}

function loadAmqplib(cwd) {
	for (const paths of [undefined, [cwd]]) {
		try {
			return require(paths ? require.resolve('amqplib', { paths }) : 'amqplib')
		} catch (e) {
			if (e?.code !== 'MODULE_NOT_FOUND') throw e
		}
	}
	throw coded(
		CLI_CODES.AMQPLIB_MISSING,
		'this command reaches RabbitMQ, and the CLI checks first with amqplib that the queues exist (so that a ' +
			'typo in --queue creates nothing), but amqplib is not installed: npm install amqplib',
	)
}

function vhostOf(url) {
	try {
		const p = new URL(url).pathname
		return p === '' || p === '/' ? '/' : decodeURIComponent(p.slice(1))
	} catch {
		return '/'
	}
}

/**
 * Resolves when every queue of `queues` exists on the broker at `url`; rejects with
 * ERR_QUEUE_NOT_FOUND naming the missing ones, or ERR_AMQP_CONNECT / ERR_AMQP.
 * Creates nothing.
 */
async function assertQueuesExist(url, queues, { cwd = process.cwd(), timeoutMs = 10000 } = {}) {
	const amqplib = loadAmqplib(cwd)
	let conn
	try {
		conn = await amqplib.connect(url, { timeout: timeoutMs })
	} catch (e) {
		throw coded('ERR_AMQP_CONNECT', `cannot connect to RabbitMQ at ${redactUrl(url)}: ${e?.message}`, e)
	}
	conn.on('error', () => {}) // a failed check closes a channel, not the connection; errors are reported below
	const missing = []
	try {
		for (const q of queues) {
			// a 404 closes the channel, so one channel per queue
			const ch = await conn.createChannel()
			ch.on('error', () => {})
			try {
				await ch.checkQueue(q)
				await ch.close()
			} catch (e) {
				if (e?.code === 404) missing.push(q)
				else throw coded('ERR_AMQP', `checking the queue ${JSON.stringify(q)} failed: ${e?.message}`, e)
			}
		}
	} finally {
		await conn.close().catch(() => {})
	}
	if (missing.length) {
		const list = missing.map((q) => JSON.stringify(q)).join(' and ')
		throw coded(
			'ERR_QUEUE_NOT_FOUND',
			`the queue${missing.length > 1 ? 's' : ''} ${list} ${missing.length > 1 ? 'do' : 'does'} not exist on ` +
				`${redactUrl(url)} (vhost ${JSON.stringify(vhostOf(url))}); nothing was created. Check --queue ` +
				'(or FLOWCRAFT_QUEUE) and --amqp-url: a worker declares its queue and <queue>.dead when it starts.',
		)
	}
}

module.exports = { assertQueuesExist }
