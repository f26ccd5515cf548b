'use strict'
/**
 * Flowcraft's `webhook` node (issue 10, item 5): the node registers its endpoint through the
 * adapter hook Flowcraft calls (`registerWebhookEndpoint`) and completes with `{ url, event }`;
 * the run waits at the `wait` node after it; a POST to the URL, through the request handler
 * for Node's http, resumes the run once with the call as the wait node's output.
 */
const http = require('node:http')
const path = require('node:path')
const S = require('./helpers/services')
const { place, adapterAt } = require('./helpers/run-place')

const { createWebhookHandler } = require(path.join(__dirname, '..'))
const res = S.useResources()

const approval = {
	id: 'approval',
	nodes: [
		{ id: 'prep', uses: 'wh.prep' },
		{ id: 'hook', uses: 'webhook' },
		{ id: 'callback', uses: 'wait' },
		{ id: 'handle', uses: 'wh.handle' },
	],
	edges: [
		{ source: 'prep', target: 'hook' },
		{ source: 'hook', target: 'callback' },
		{ source: 'callback', target: 'handle' },
	],
}

async function post(url, body, method = 'POST') {
	const response = await fetch(url, { method, headers: { 'content-type': 'application/json' }, body })
	return { status: response.status, body: await response.json() }
}

test('a webhook node gives its URL, and one call to it resumes the run with the request; repeats change nothing', async () => {
	const where = place(res, 'wh')
	const server = http.createServer()
	await new Promise((r) => server.listen(0, '127.0.0.1', r))
	res.onCleanup(() => new Promise((r) => server.close(r)))
	const base = `http://127.0.0.1:${server.address().port}/hooks`
	let handled = 0
	const adapter = adapterAt(
		res,
		where,
		{
			blueprints: { approval },
			registry: {
				'wh.prep': async () => ({ output: 'ready' }),
				'wh.handle': async (ctx) => {
					handled += 1
					return { output: { saw: ctx.input?.body ?? null, via: ctx.input?.webhook ?? null } }
				},
			},
		},
		{ webhookBaseUrl: base },
	)
	server.on('request', createWebhookHandler(adapter, { path: '/hooks' }))
	await adapter.start()

	const { runId } = await adapter.startRun('approval', {})
	expect(await adapter.waitForRun(runId, { timeoutMs: 15000 })).toEqual({ status: 'awaiting' })
	const hook = (await adapter.getRun(runId)).context['_outputs.hook']
	expect(hook).toEqual({
		url: `${base}/${encodeURIComponent(runId)}/hook`,
		event: `webhook:${runId}:hook`,
	})
	expect(await adapter.registerWebhookEndpoint(runId, 'hook')).toEqual(hook)

	// wrong method, unknown node, then the call
	expect((await post(hook.url, '{}', 'PUT')).status).toBe(405)
	expect((await post(`${base}/${encodeURIComponent(runId)}/prep`, '{}')).status).toBe(404)
	const first = await post(hook.url, JSON.stringify({ approved: true }))
	expect(first).toEqual({ status: 202, body: { status: 202, delivered: true } })
	const done = await adapter.waitForRun(runId, { timeoutMs: 15000 })
	expect(done.status).toBe('completed')
	expect(done.payload.context['_outputs.handle']).toEqual({ saw: { approved: true }, via: 'hook' })
	expect(done.payload.context['_resume.action']).toBe('webhook')

	// the sender retries: delivered once, the run is not touched again
	expect(await post(hook.url, JSON.stringify({ approved: true }))).toEqual({
		status: 200,
		body: { status: 200, delivered: true, duplicate: true },
	})
	expect(handled).toBe(1)
	// a call for a run that is not awaiting one
	const other = await adapter.startRun('approval', {})
	await adapter.waitForRun(other.runId, { timeoutMs: 15000 })
	await adapter.cancelRun(other.runId, 'no longer needed')
	const late = await adapter.deliverWebhook(other.runId, 'hook', { body: 'late' })
	expect(late).toEqual(expect.objectContaining({ status: 409, delivered: false }))
	await expect(adapter.deliverWebhook(runId, 'hook', 'not an object')).rejects.toMatchObject({
		code: 'ERR_INVALID_ARGUMENT',
	})
}, 60000)
