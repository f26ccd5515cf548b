'use strict'
/**
 * The short chaos test (the full suite is `npm run test:chaos`, chaos/run.js).
 *
 * 40 fan-out/fan-in runs (start → 8 branches → 'all' join → end) over 3 worker
 * processes (chaos/worker.js) while the harness kills two workers with SIGKILL
 * (restarting them), terminates the workers' PostgreSQL backends once, kills
 * their Redis clients once and has RabbitMQ close their AMQP connections once. Then: every run completed, every node's effect committed
 * exactly once (triggers on the context table), the join saw every branch once, one
 * final status write per run (trigger on the status table), no dead letter, and any
 * extra execution of user code explained by a crash or a lost connection.
 * Also the redelivery cases (with a poison job that kills its worker on every
 * delivery, beside an innocent run, on one worker process), the two in-flight commit races (chaos/phases.js
 * inflightCommitCases) and the bad inputs without the 10 MB ones.
 *
 * Faults only hit this file's own worker processes (selected by their sockets); no
 * RabbitMQ restart here (it is global: full suite only). Everything is removed after.
 */
const { Chaos } = require('../chaos/harness')
const { fanoutPhase, redeliveryCases, inflightCommitCases } = require('../chaos/phases')
const { badInputCases } = require('../chaos/bad-inputs')
const { phaseProblems } = require('../chaos/verify')
const { sleep } = require('../chaos/services')

const lines = []
const log = (l) => lines.push(`${new Date().toISOString().slice(11, 23)} ${l}`)
let h
let failed = false

/** Fails with the harness log and the worker log directory, to make a failure readable. */
function expectNoProblems(problems) {
	if (problems.length) {
		failed = true
		throw new Error(`${problems.join('\n')}\n\nharness log:\n${lines.join('\n')}\nworker logs: ${h.logDir}`)
	}
}

beforeAll(async () => {
	h = new Chaos({ label: 'short', workers: 3, log })
	await h.setup()
	await h.startWorkers()
}, 60000)

afterAll(async () => {
	if (h) await h.cleanup({ keepLogs: failed })
}, 60000)

test('40 runs survive 2 worker kills, a PostgreSQL backend termination, a Redis client kill and closed AMQP connections', async () => {
	const p = await fanoutPhase(h, {
		name: 'short',
		runs: 40,
		startOverMs: 3000,
		// b2 is slow (so it is the last branch to arrive at the join, and in flight when a
		// fault lands); the others take a few ms
		runExtra: () => ({ delays: { b2: 600, b6: 150, join: 100 } }),
		faults: { kills: true, service: true, brokerConnection: true },
		chaos: async (hh) => {
			await sleep(600)
			log(`kill -9 worker ${hh.killRandomWorker()}`)
			await sleep(600)
			log(`closed ${await hh.closeAmqpConnections()} AMQP connections`)
			await sleep(600)
			log(`terminated ${await hh.terminatePgBackends()} PostgreSQL backends`)
			await sleep(600)
			log(`killed ${await hh.killRedisClients()} Redis clients`)
			await sleep(600)
			log(`kill -9 worker ${hh.killRandomWorker()}`)
		},
		waitOptions: { stallMs: 12000, timeoutMs: 40000 },
	})
	log(
		`phase: ${JSON.stringify({ ...p, deadLetters: p.deadLetters.length, verify: { ...p.verify, unexplained: p.verify.unexplained.length } })}`,
	)
	expect(p.kills).toBe(2)
	expect(p.pgTerminated).toBeGreaterThan(0)
	expect(p.redisKilled).toBeGreaterThan(0)
	expect(p.amqpClosed).toBeGreaterThan(0)
	expectNoProblems(phaseProblems(p))
	expect(p.verify.completed).toBe(40)
}, 60000)

test('redelivery: the same job twice, a job published again after its commit, a worker killed mid-node, a poison job', async () => {
	await h.waitForWorkersReady()
	const cases = await redeliveryCases(h, { poison: true })
	for (const c of cases) log(`${c.pass ? 'pass' : 'FAIL'} ${c.name}: ${c.observed}`)
	expectNoProblems(cases.filter((c) => !c.pass).map((c) => `${c.name}: expected ${c.expected}; observed ${c.observed}`))
}, 60000)

test('a connection lost while a commit is in flight: worker killed, PostgreSQL backend terminated', async () => {
	const cases = await inflightCommitCases(h)
	for (const c of cases) log(`${c.pass ? 'pass' : 'FAIL'} ${c.name}: ${c.observed}`)
	expectNoProblems(cases.filter((c) => !c.pass).map((c) => `${c.name}: expected ${c.expected}; observed ${c.observed}`))
}, 60000)

test('bad inputs: dead-lettered or failed with a clear reason while other runs go on', async () => {
	await h.waitForWorkersReady()
	const { cases } = await badInputCases(h, { big: false, normalRuns: 10 })
	for (const c of cases) log(`${c.pass ? 'pass' : 'FAIL'} ${c.name}: ${c.observed}`)
	expectNoProblems(cases.filter((c) => !c.pass).map((c) => `${c.name}: expected ${c.expected}; observed ${c.observed}`))
}, 60000)
