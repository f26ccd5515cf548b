'use strict'

// Public entry point of @flowcraft/rabbitmq-adapter. The native addon (native.js) is
// loaded lazily by the classes that need it, so requiring the package never fails
// because of it.

const { PostgresContext } = require('./lib/context')
const { RedisCoordinationStore } = require('./lib/coordination')
const { RabbitMqAdapter } = require('./lib/adapter')
const { createRabbitMqReconciler } = require('./lib/reconciler')
const { stopOnSignals } = require('./lib/signals')
const { CODES } = require('./lib/errors')
const { createWebhookHandler } = require('./lib/webhooks')

module.exports = {
	PostgresContext,
	RedisCoordinationStore,
	RabbitMqAdapter,
	createRabbitMqReconciler,
	stopOnSignals,
	createWebhookHandler,
	ErrorCodes: CODES,
}
