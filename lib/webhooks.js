'use strict'
// Flowcraft's `webhook` node, distributed: the node registers its endpoint through the
// adapter (`registerWebhookEndpoint`, the hook Flowcraft's WebhookNode calls) and completes
// with `{ url, event }`; the run then waits at the `wait` node that follows it. A call to
// the URL is delivered with `deliverWebhook` (or the request handler below): it resumes the
// awaiting run with the action 'webhook' and the request as output, once (a second delivery
// of the same call changes nothing).

const { CODES, invalidArgument, describe } = require('./errors')
const { checkRunId } = require('./options')
const { NODE_IDENTITY } = require('./node-runner')

/** The action a delivered call resumes its run with. */
const WEBHOOK_ACTION = 'webhook'
/** Largest request body the handler reads. */
const MAX_BODY_BYTES = 1024 * 1024

/** `{ url, event }` of a run's webhook node: `<baseUrl>/<run id>/<node id>`, URL-encoded. */
function webhookEndpoint(baseUrl, runId, nodeId) {
	const url = `${baseUrl.replace(/\/+$/, '')}/${encodeURIComponent(runId)}/${encodeURIComponent(nodeId)}`
	return { url, event: `webhook:${runId}:${nodeId}` }
}

/** The built-in `webhook` node (when the registry has none): registers the endpoint, outputs it. */
function webhookNode(adapter) {
	return async function webhook(ctx) {
		const { runId, nodeId } = ctx[NODE_IDENTITY] ?? {}
		return { output: await adapter.registerWebhookEndpoint(runId, nodeId) }
	}
}

/**
 * Delivers a call to a run's webhook node: resumes the run (awaiting at the wait node after
 * it) with action 'webhook' and `{ webhook, event, ...request }` as output.
 * → `{ status: 202, delivered: true }`, `{ status: 200, delivered: true, duplicate: true }`
 * (already delivered), `{ status: 404 | 409, delivered: false, reason }` (no such webhook
 * node; the run is not awaiting a call yet: try again later).
 */
async function deliverWebhook(adapter, blueprints, runId, nodeId, request = {}) {
	checkRunId(runId, 'deliverWebhook(): runId')
	if (typeof nodeId !== 'string' || nodeId === '')
		throw invalidArgument(`deliverWebhook(): nodeId must be a non-empty string; got ${describe(nodeId)}`)
	if (request === null || typeof request !== 'object' || Array.isArray(request))
		throw invalidArgument(
			`deliverWebhook(): request must be an object ({ body, headers, ... }); got ${describe(request)}`,
		)
	const run = await adapter.getRun(runId)
	if (!run) return { status: 404, delivered: false, reason: `no run '${runId}'` }
	const node = blueprints[run.blueprintId]?.nodes.find((n) => n.id === nodeId)
	if (node?.uses !== 'webhook')
		return { status: 404, delivered: false, reason: `run '${runId}' has no webhook node '${nodeId}'` }
	const delivered = (ctx) => ctx?.['_resume.action'] === WEBHOOK_ACTION && ctx?.['_resume.output']?.webhook === nodeId
	if (delivered(run.context)) return { status: 200, delivered: true, duplicate: true }
	if (run.status !== 'awaiting')
		return { status: 409, delivered: false, reason: `run '${runId}' is ${run.status}, not awaiting a call` }
	const { event } = webhookEndpoint('', runId, nodeId)
	try {
		await adapter.resumeWithAction(runId, WEBHOOK_ACTION, { ...request, webhook: nodeId, event })
		return { status: 202, delivered: true }
	} catch (e) {
		// another delivery of the same call resumed it first
		if (e.code === CODES.WORKER_STATE && delivered((await adapter.getRun(runId))?.context))
			return { status: 200, delivered: true, duplicate: true }
		throw e
	}
}

/**
 * A request handler for Node's `http` (or Express): POST `<path>/<run id>/<node id>` delivers
 * the call (JSON bodies parsed, others as text). Answers 202 / 200 (duplicate) / 404 / 409 /
 * 405 / 413 with a JSON body; anything outside `path` gets 404 (or `next()` when given).
 */
function createWebhookHandler(adapter, { path = '/webhooks', maxBodyBytes = MAX_BODY_BYTES } = {}) {
	if (!adapter || typeof adapter.deliverWebhook !== 'function')
		throw invalidArgument('createWebhookHandler(adapter): a RabbitMqAdapter is required')
	const prefix = `${path.replace(/\/+$/, '')}/`
	const reply = (res, status, body) => {
		res.writeHead(status, { 'content-type': 'application/json' })
		res.end(JSON.stringify(body))
	}
	return async function webhookHandler(req, res, next) {
		const url = new URL(req.url, 'http://localhost')
		const rest = url.pathname.startsWith(prefix) ? url.pathname.slice(prefix.length).split('/') : []
		if (rest.length !== 2 || !rest[0] || !rest[1]) {
			if (typeof next === 'function') return next()
			return reply(res, 404, { error: 'not a webhook URL' })
		}
		if (req.method !== 'POST') return reply(res, 405, { error: 'webhooks are called with POST' })
		const chunks = []
		let size = 0
		for await (const chunk of req) {
			size += chunk.length
			if (size > maxBodyBytes) return reply(res, 413, { error: `body over ${maxBodyBytes} bytes` })
			chunks.push(chunk)
		}
		const text = Buffer.concat(chunks).toString('utf8')
		let body = text
		if (/json/i.test(req.headers['content-type'] ?? '') && text !== '') {
			try {
				body = JSON.parse(text)
			} catch {
				return reply(res, 400, { error: 'the body is not valid JSON' })
			}
		}
		try {
			const [runId, nodeId] = rest.map(decodeURIComponent)
			const headers = Object.fromEntries(
				Object.entries(req.headers).filter(([k]) => k !== 'authorization' && k !== 'cookie'),
			)
			const out = await adapter.deliverWebhook(runId, nodeId, { body, headers, method: req.method })
			return reply(res, out.status, out)
		} catch (e) {
			return reply(res, e.code === CODES.INVALID_ARGUMENT ? 400 : 503, { error: e.message, code: e.code })
		}
	}
}

module.exports = { webhookEndpoint, webhookNode, deliverWebhook, createWebhookHandler, WEBHOOK_ACTION }
