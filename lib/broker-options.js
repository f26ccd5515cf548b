'use strict'

// The broker side of the adapter's options: one broker or a cluster's nodes, the
// job queue's type and arguments. Checked once here, handed to the core as is.

const { invalidArgument, describe } = require('./errors')
const { toAmqpUrl } = require('./targets')

const QUEUE_TYPES = ['classic', 'quorum']

/**
 * `amqpConnection` may be an amqplib connection, a URL, or several URLs (a cluster's
 * nodes: the worker connects to any, and moves on to another when one is lost).
 * @returns {{ amqpUrl: string, amqpAlternateUrls: string[] }}
 */
function brokerUrls(amqpConnection, amqpUrl) {
	if (!Array.isArray(amqpConnection)) return { amqpUrl: toAmqpUrl(amqpConnection, { amqpUrl }), amqpAlternateUrls: [] }
	if (amqpConnection.length === 0 || !amqpConnection.every((u) => typeof u === 'string')) {
		throw invalidArgument(
			`RabbitMqAdapter: amqpConnection as a list must hold one or more amqp:// URLs (a cluster's nodes); got ${describe(amqpConnection)}`,
		)
	}
	const urls = amqpConnection.map((u) => toAmqpUrl(u))
	return { amqpUrl: urls[0], amqpAlternateUrls: urls.slice(1) }
}

/** `queueType` ('classic' | 'quorum') and `queueArguments` ({ 'x-max-length': 1e6, … }). */
function queueDeclaration(queueType, queueArguments) {
	if (queueType !== undefined && !QUEUE_TYPES.includes(queueType)) {
		throw invalidArgument(`RabbitMqAdapter: queueType must be 'classic' or 'quorum'; got ${describe(queueType)}`)
	}
	if (queueArguments === undefined) return { queueType }
	if (queueArguments === null || typeof queueArguments !== 'object' || Array.isArray(queueArguments)) {
		throw invalidArgument(
			`RabbitMqAdapter: queueArguments must be an object of queue arguments ({ 'x-max-length': 100000 }); got ${describe(queueArguments)}`,
		)
	}
	for (const [key, value] of Object.entries(queueArguments)) {
		const ok = typeof value === 'string' || typeof value === 'boolean' || Number.isFinite(value)
		if (!ok) {
			throw invalidArgument(
				`RabbitMqAdapter: queueArguments[${JSON.stringify(key)}] must be a string, number or boolean; got ${describe(value)}`,
			)
		}
		if (key === 'x-queue-type' && queueType !== undefined) {
			throw invalidArgument(
				"RabbitMqAdapter: give the queue type once, as queueType or as queueArguments['x-queue-type']",
			)
		}
	}
	return { queueType, queueArguments: { ...queueArguments } }
}

module.exports = { brokerUrls, queueDeclaration }
