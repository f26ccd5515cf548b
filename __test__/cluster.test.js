'use strict'

// Production topologies, started by the test on ports of their own
// (helpers/private-clusters.js), never the shared services:
// - a 3-node RabbitMQ cluster with the job queue as a quorum queue, under load, where
//   the node leading the queue is kill -9'ed and restarted: every run completes, once;
// - a PostgreSQL primary and its streaming standby behind one multi-host connection
//   string: after the primary dies and the standby is promoted, the workers go on
//   without a redeploy.

const S = require('./helpers/services')
const C = require('./helpers/private-clusters')
const { runsEnv } = require('./helpers/runs-env')

const res = S.useResources()
const setup = runsEnv(res)

jest.setTimeout(300000)

/** Starts `count` runs of `blueprint`; resolves with their ids. */
async function startRuns(client, env, blueprint, count) {
	const ids = []
	for (let i = 0; i < count; i++) {
		const { runId } = await client.startRun(blueprint, { testRunId: `r${i}` }, { runId: env.runId(`r${i}`) })
		ids.push(runId)
	}
	return ids
}

/** Every run's final status (waits up to `timeoutMs` for each). */
async function finalStatuses(client, ids, timeoutMs) {
	return Promise.all(ids.map((id) => client.waitForRun(id, { timeoutMs }).then((r) => r.status)))
}

test('3-node RabbitMQ cluster, quorum queue: the leader is kill -9ed mid-load and restarted; every run completes', async () => {
	const cluster = await C.startRabbitCluster({ nodes: 3 })
	res.onCleanup(() => cluster.stop())
	const env = setup('cluster_q')
	const extra = { RABBITMQ_URLS: cluster.urls.join(','), RABBITMQ_URL: cluster.urls[0], QUEUE_TYPE: 'quorum' }
	const workers = [await env.spawnWorker(extra), await env.spawnWorker(extra)]
	const client = env.adapter({ amqpConnection: cluster.urls, queueType: 'quorum' })

	const ids = await startRuns(client, env, 'sleepy', 40)
	const leader = await cluster.queueLeader(env.queue)
	expect(leader).toBeGreaterThanOrEqual(0)
	await cluster.nodes[leader].kill9()
	const more = await startRuns(client, env, 'quick', 20)
	await cluster.nodes[leader].restart()

	const statuses = await finalStatuses(client, [...ids, ...more], 120000)
	expect(statuses.filter((s) => s !== 'completed')).toEqual([])
	// Each run's outputs are all there, and its status row was written once.
	for (const id of ids) {
		const run = await client.getRun(id)
		expect(run.status).toBe('completed')
		expect(
			Object.keys(run.context)
				.filter((k) => k.startsWith('_outputs.'))
				.sort(),
		).toEqual(['_outputs.after', '_outputs.nap'])
	}
	for (const w of workers) expect(w.exitCode).toBeNull()
	// The workers reconnected on their own: the queue has consumers again.
	const leaderNow = await cluster.queueLeader(env.queue)
	expect(leaderNow).toBeGreaterThanOrEqual(0)
})

test('PostgreSQL failover: a multi-host URL with target_session_attrs=read-write follows the promoted standby', async () => {
	const pair = await C.startPgPair()
	res.onCleanup(() => pair.stop())
	// Synchronous replication, as an HA setup that must not lose commits runs it: with
	// asynchronous replication a failover loses the last commits (seconds of them on
	// this busy machine), and the runs they advanced with them.
	const { Client } = require('pg')
	const primary = new Client({ connectionString: pair.primary.url })
	await primary.connect()
	await primary.query("ALTER SYSTEM SET synchronous_standby_names = '*'")
	await primary.query('ALTER SYSTEM SET synchronous_commit = on')
	await primary.query('SELECT pg_reload_conf()')
	await primary.end()
	const env = setup('failover', { postgresUrl: pair.multiHostUrl })
	const worker = await env.spawnWorker()
	const client = env.adapter()

	const before = await startRuns(client, env, 'quick', 10)
	expect((await finalStatuses(client, before, 60000)).every((s) => s === 'completed')).toBe(true)

	const during = await startRuns(client, env, 'sleepy', 10)
	await pair.failover()
	const after = await startRuns(client, env, 'quick', 10)

	const statuses = await finalStatuses(client, [...during, ...after], 120000)
	expect(statuses.filter((s) => s !== 'completed')).toEqual([])
	expect(worker.exitCode).toBeNull()
})
