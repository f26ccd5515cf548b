'use strict'
/**
 * The full chaos suite: `npm run test:chaos`.
 *
 * Phases, each on its own runs of the fan-out/fan-in blueprint (start → 8 branches →
 * 'all' join → end) over 3 worker processes (chaos/worker.js):
 *   kill      CHAOS_RUNS runs (default 1000, started at CHAOS_START_RATE = 20 a second);
 *             `kill -9` a random worker every ~CHAOS_KILL_INTERVAL_MS (1000 ± 50%) and
 *             restart it, until every run is done
 *   rabbitmq  CHAOS_FAULT_RUNS runs on a harness of its own (queue, tables, 3 workers)
 *             whose workers and checker use a private RabbitMQ node started for it
 *             (chaos/private.js: own node name, ports, data dir and cookie);
 *             `rabbitmqctl -n <node> stop_app`, 3 s, `start_app` mid-run (in a finally);
 *             the node and its dir are removed afterwards, also on failure. The shared
 *             broker (5672) is never stopped, restarted or reconfigured
 *   amqp      CHAOS_FAULT_RUNS runs; `rabbitmqctl close_connection` on the workers' AMQP
 *             connections, twice (targeted: other users of the broker are not affected)
 *   postgres  CHAOS_FAULT_RUNS runs; pg_terminate_backend on the workers' backends, 4 times
 *   redis     CHAOS_FAULT_RUNS runs; CLIENT KILL ID on the workers' clients, 4 times
 *   built-ins CHAOS_BUILTIN_RUNS runs (default 48) of each built-in case (chaos/builtins-kill.js,
 *             shared with __test__/builtins-kill.test.js), each on its own queue, tables and
 *             workers: kill -9 mid-loop, while runs sleep, mid-batch; nothing lost, no loop
 *             iteration applied twice, no batch item lost or added twice
 *   redelivery, in-flight commit and bad input cases (chaos/phases.js, chaos/bad-inputs.js)
 *   link faults and outages (chaos/faults.js), each on a harness of its own whose
 *             workers reach the service through a TCP fault proxy or a private
 *             instance: PostgreSQL black hole, a 40 s PostgreSQL outage, a RabbitMQ
 *             black hole, jobs redelivered after a worker death, a poison job with
 *             Redis flushed after each crash, a PostgreSQL restart (CHAOS_SKIP_FAULTS=1
 *             skips them)
 * Then prints a summary and writes it to chaos/last-run.md. Exit code 1 when any
 * check failed. CHAOS_SKIP_RABBIT=1 skips the RabbitMQ restart; CHAOS_KEEP_LOGS=1 keeps
 * the worker logs (they are kept anyway when something failed). CHAOS_ONLY=builtins runs
 * the built-in phases alone, CHAOS_ONLY=rabbitmq the RabbitMQ restart phase alone
 * (minutes, not the suite's many): their table goes to stdout and to CHAOS_REPORT
 * (default <tmpdir>/chaos-<value>-last-run.md), not to chaos/last-run.md, which keeps
 * the last full run.
 */
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { Chaos } = require('./harness')
const { fanoutPhase, redeliveryCases, inflightCommitCases } = require('./phases')
const { badInputCases } = require('./bad-inputs')
const { phaseProblems } = require('./verify')
const { table, phaseRow, builtinRow, PHASE_HEADERS } = require('./report')
const { builtinKillPhases } = require('./builtins-kill')
const { sleep } = require('./services')
const { startPrivateRabbit } = require('./private')
const faults = require('./faults')

const env = process.env
const RUNS = Number(env.CHAOS_RUNS || 1000)
const FAULT_RUNS = Number(env.CHAOS_FAULT_RUNS || Math.min(300, Math.max(50, Math.round(RUNS / 4))))
const KILL_MS = Number(env.CHAOS_KILL_INTERVAL_MS || 1000)
const START_RATE = Number(env.CHAOS_START_RATE || 20) // runs per second in the kill phase
const SKIP_RABBIT = env.CHAOS_SKIP_RABBIT === '1'
const BUILTIN_RUNS = Number(env.CHAOS_BUILTIN_RUNS || 48)
const BUILTIN_NOTE =
	'*built-ins*: worker processes of the README (`__test__/diff/worker-process.js`) SIGKILLed mid-loop (`loop-slow-body`: 8 iterations, each appending its number once), while every run sleeps (`sleep-then-join`), mid-batch (`batch-wide`: 60 items), then a fresh worker; *lost*: a run not ending as FlowRuntime ends it, an output, iteration or item row missing, a dead letter; *duplicated*: an iteration applied twice, an item row added twice.'
const RABBIT_NOTE =
	'*RabbitMQ restart*: its own queue, tables and 3 worker processes on a private RabbitMQ node (chaos/private.js: own node name, ports, data dir and cookie), whose app is stopped for 3 s (`rabbitmqctl -n <node> stop_app`, then `start_app`) while every run is in flight; the node is removed afterwards. The shared broker is never stopped.'

// Node delays (ms) of the service phases: runs last a few seconds, so a fault lands on
// runs in every state (starting, fanning out, joining, finishing).
const SLOW = { b0: 300, b2: 200, b4: 300, b6: 200, join: 150, end: 100 }
const randomDelays = (min, max) =>
	Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`b${i}`, Math.round(min + Math.random() * (max - min))]))

const log = (...a) => console.log(`[chaos ${new Date().toISOString().slice(11, 23)}]`, ...a)

/** every Chaos harness of this run (their stats make the totals); `cleanedUp` once removed */
const harnesses = []
/** the private RabbitMQ node of the RabbitMQ restart phase while it exists */
let privateRabbit = null

/** Cleans up every harness not cleaned up yet and removes the private node (signals, fatal errors). */
async function cleanupAll() {
	for (const hh of harnesses) {
		if (hh.cleanedUp) continue
		hh.cleanedUp = true
		await hh.cleanup({ keepLogs: true }).catch(() => {})
		log(`worker logs kept in ${hh.logDir}`)
	}
	if (privateRabbit) await privateRabbit.remove().catch((e) => log('!! private RabbitMQ removal failed:', e.message))
}

let interrupted = false
async function emergency(signal) {
	if (interrupted) return
	interrupted = true
	log(`${signal}: cleaning up`)
	await cleanupAll()
	process.exit(130)
}
process.on('SIGINT', () => emergency('SIGINT'))
process.on('SIGTERM', () => emergency('SIGTERM'))

function progress(label) {
	let last = 0
	return (done, total) => {
		if (Date.now() - last > 5000) {
			last = Date.now()
			log(`${label}: ${done}/${total} runs final`)
		}
	}
}

/** A phase's fault, done four times 800 ms apart while the phase's runs go on. */
function fourTimes(fault) {
	return async (hh, state) => {
		for (let i = 0; i < 4 && !state.done; i++) {
			await sleep(800)
			if (state.done) break
			await fault(hh)
		}
	}
}

/**
 * `runPhase(hh, opts)`: a fan-out phase on harness `hh` (chaos/phases.js fanoutPhase),
 * pushed to `phases`, its problems to `failures`, logged.
 */
function phaseRunner(phases, failures) {
	return async (hh, opts) => {
		log(`phase ${opts.name}: ${opts.runs} runs`)
		const p = await fanoutPhase(hh, {
			...opts,
			waitOptions: { stallMs: 60000, timeoutMs: 1800000, onTick: progress(opts.name), ...(opts.waitOptions || {}) },
		})
		phases.push(p)
		const probs = phaseProblems(p)
		for (const x of probs) failures.push(`${p.name}: ${x}`)
		log(
			`phase ${p.name} done in ${p.seconds.toFixed(1)} s: ${p.verify.completed}/${p.verify.runs} completed, ${p.verify.lost.length} lost, ${p.verify.duplicated.length} duplicated, ${p.deadLetters.length} dead letters${probs.length ? `\n  !! ${probs.join('\n  !! ')}` : ''}`,
		)
		await hh.waitForWorkersReady()
		return p
	}
}

/**
 * The RabbitMQ restart phase, on a harness of its own (queue, tables, 3 workers) whose
 * workers and checker use a private RabbitMQ node (chaos/private.js startPrivateRabbit):
 * that node's app is stopped for 3 s mid-run, nobody else's broker. The harness and the
 * node (with its dir) are removed afterwards, also on failure. Returns the phase.
 */
async function rabbitRestartPhase(runPhase, failures) {
	log('RabbitMQ restart: starting a private RabbitMQ node')
	try {
		privateRabbit = await startPrivateRabbit()
	} catch (e) {
		failures.push(`RabbitMQ restart: the private RabbitMQ node did not start: ${e?.message}`)
		return null
	}
	const rabbit = privateRabbit
	log(`private RabbitMQ ${rabbit.nodeName} on 127.0.0.1:${rabbit.port} (${rabbit.baseDir})`)
	const rh = new Chaos({ label: 'rabbit', workers: 3, log, rabbit })
	harnesses.push(rh)
	const failuresBefore = failures.length
	let ok = false
	try {
		await rh.setup()
		await rh.startWorkers()
		log(
			`3 workers on the private node ready (pids ${rh
				.liveWorkers()
				.map((w) => w.pid)
				.join(', ')})`,
		)
		const p = await runPhase(rh, {
			name: 'RabbitMQ restart',
			runs: FAULT_RUNS,
			startOverMs: 1000,
			// slow branches (0.5 to 2 s) keep every run in flight when the broker goes away:
			// jobs unacked mid-node, successors being published, jobs waiting in the queue
			runExtra: () => ({ delays: { ...randomDelays(500, 2000), join: 200, end: 100 } }),
			faults: { service: true },
			chaos: async (hh, state) => {
				while (!state.started) await sleep(50)
				await sleep(800)
				const r = await hh.pg.query(
					`SELECT count(*)::int AS n FROM "${hh.t.st}" WHERE run_id = ANY($1) AND status IN ('completed','failed')`,
					[state.runIds],
				)
				log(`rabbitmqctl -n ${rabbit.nodeName} stop_app (${r.rows[0].n}/${state.runIds.length} runs final)`)
				await hh.restartRabbit(3000)
				log(`rabbitmqctl -n ${rabbit.nodeName} start_app done`)
			},
		})
		if (rh.stats.unexpectedExits.length)
			failures.push(
				`RabbitMQ restart: ${rh.stats.unexpectedExits.length} worker processes exited by themselves: ${JSON.stringify(rh.stats.unexpectedExits.map((e) => ({ pid: e.pid, code: e.code, signal: e.signal })))}`,
			)
		ok = failures.length === failuresBefore
		return p
	} catch (e) {
		// a node that did not start, workers that did not: a failure of the phase, not of the suite
		failures.push(`RabbitMQ restart: threw ${e?.stack || e}`)
		return null
	} finally {
		const keep = !ok || env.CHAOS_KEEP_LOGS === '1'
		rh.cleanedUp = true
		await rh.cleanup({ keepLogs: keep }).catch((e) => log('!! RabbitMQ restart harness cleanup:', e.message))
		if (keep) log(`RabbitMQ restart worker logs kept in ${rh.logDir}`)
		await rabbit.remove()
		privateRabbit = null
		log(`private RabbitMQ ${rabbit.nodeName} removed (${rabbit.baseDir})`)
	}
}

/** The built-in phases: rows of the phase table, and a failure per problem. */
async function builtinPhases(failures) {
	const { results, logDir } = await builtinKillPhases({ log, runs: BUILTIN_RUNS })
	for (const r of results) for (const x of r.problems) failures.push(`${r.name}: ${x}`)
	log(`built-in worker logs in ${logDir}`)
	return results
}

/**
 * CHAOS_ONLY=builtins | rabbitmq: those phases alone; their report goes to stdout and
 * CHAOS_REPORT, not to chaos/last-run.md.
 */
async function onlyPhases(which) {
	const t0 = Date.now()
	const failures = []
	let rows
	let about
	let note
	if (which === 'builtins') {
		rows = (await builtinPhases(failures)).map(builtinRow)
		about = `${BUILTIN_RUNS} runs a case`
		note = BUILTIN_NOTE
	} else {
		const phases = []
		await rabbitRestartPhase(phaseRunner(phases, failures), failures)
		rows = phases.map(phaseRow)
		about = `${FAULT_RUNS} runs · 3 worker processes on a private RabbitMQ node`
		note = RABBIT_NOTE
	}
	const md = [
		`## Chaos suite: ${which === 'builtins' ? 'built-in phases' : 'RabbitMQ restart phase'} (CHAOS_ONLY=${which})`,
		'',
		`${new Date().toISOString()} · \`CHAOS_ONLY=${which} npm run test:chaos\` · ${about} · ${((Date.now() - t0) / 60000).toFixed(1)} min · node ${process.version}`,
		'',
		note,
		'',
		table(PHASE_HEADERS, rows),
		'',
		failures.length
			? `### Failures (${failures.length})\n\n${failures.map((f) => `- ${f}`).join('\n')}`
			: '### Failures\n\nNone.',
		'',
	].join('\n')
	console.log(`\n${md}`)
	const out = env.CHAOS_REPORT || path.join(os.tmpdir(), `chaos-${which}-last-run.md`)
	fs.writeFileSync(out, md)
	log(`summary written to ${out}`)
	return failures.length ? 1 : 0
}

async function main() {
	if (env.CHAOS_ONLY === 'builtins' || env.CHAOS_ONLY === 'rabbitmq') return onlyPhases(env.CHAOS_ONLY)
	if (env.CHAOS_ONLY) throw new Error(`CHAOS_ONLY=${env.CHAOS_ONLY}: only 'builtins' and 'rabbitmq' are known`)
	const t0 = Date.now()
	const h = new Chaos({ label: 'full', workers: 3, log })
	harnesses.push(h)
	log(`prefix ${h.prefix}; worker logs in ${h.logDir}`)
	await h.setup()
	await h.startWorkers()
	log(
		`3 workers ready (pids ${h
			.liveWorkers()
			.map((w) => w.pid)
			.join(', ')})`,
	)

	const phases = []
	const failures = []
	const runPhase = phaseRunner(phases, failures)

	// 1. kill -9 a random worker every ~second, restart it
	await runPhase(h, {
		name: 'kill -9 workers',
		runs: RUNS,
		startOverMs: (RUNS / START_RATE) * 1000,
		// every node takes 0-60 ms, so each kill lands on many jobs in flight: mid-node,
		// mid-commit, between the commit and the publish of the successors
		runExtra: () => ({
			delays: Object.fromEntries(
				['start', 'b0', 'b1', 'b2', 'b3', 'b4', 'b5', 'b6', 'b7', 'join', 'end'].map((n) => [
					n,
					1 + Math.floor(Math.random() * 60),
				]),
			),
		}),
		faults: { kills: true },
		chaos: async (hh, state) => {
			// Kill until every run is final, or until nothing has finished for 5 s after the
			// last run was started (the runs left are stuck: more kills would only inflate
			// the count while the phase waits for them).
			let last = -1
			let lastChange = Date.now()
			while (!state.done) {
				await sleep(KILL_MS * (0.5 + Math.random()))
				if (state.done) break
				const r = await hh.pg.query(
					`SELECT count(*)::int AS n FROM "${hh.t.st}" WHERE run_id = ANY($1) AND status IN ('completed','failed')`,
					[state.runIds],
				)
				if (r.rows[0].n !== last) {
					last = r.rows[0].n
					lastChange = Date.now()
				} else if (state.started && Date.now() - lastChange > 5000) {
					log(`kill loop stops: no run finished for 5 s (${last}/${state.runIds.length} final)`)
					break
				}
				hh.killRandomWorker()
			}
		},
	})

	// 2. RabbitMQ restart mid-run, on a private RabbitMQ node and a harness of its own
	if (!SKIP_RABBIT) await rabbitRestartPhase(runPhase, failures)

	// 2b. the workers' AMQP connections closed by the broker (targeted, not global)
	await runPhase(h, {
		name: 'AMQP connections closed',
		runs: FAULT_RUNS,
		startOverMs: 1000,
		runExtra: () => ({ delays: { ...randomDelays(200, 1000), join: 100, end: 50 } }),
		faults: { service: true, brokerConnection: true },
		chaos: async (hh, state) => {
			while (!state.started) await sleep(50)
			for (let i = 0; i < 2 && !state.done; i++) {
				await sleep(700)
				if (state.done) break
				log(`closed ${await hh.closeAmqpConnections()} AMQP connections of the workers`)
			}
		},
	})

	// 3. PostgreSQL backends terminated mid-run
	await runPhase(h, {
		name: 'PostgreSQL backends terminated',
		runs: FAULT_RUNS,
		startOverMs: 3000,
		runExtra: () => ({ delays: SLOW }),
		faults: { service: true },
		chaos: fourTimes(async (hh) =>
			log(`terminated ${await hh.terminatePgBackends()} PostgreSQL backends of the workers`),
		),
	})

	// 4. Redis clients killed mid-run
	await runPhase(h, {
		name: 'Redis clients killed',
		runs: FAULT_RUNS,
		startOverMs: 3000,
		runExtra: () => ({ delays: SLOW }),
		faults: { service: true },
		chaos: fourTimes(async (hh) => log(`killed ${await hh.killRedisClients()} Redis clients of the workers`)),
	})

	// 4b. built-ins under kill -9 (each case on its own queue, tables and workers)
	const builtins = await builtinPhases(failures)

	// 5. redelivery cases, with the poison job
	log('redelivery cases')
	const redelivery = await redeliveryCases(h, { poison: true })
	await h.waitForWorkersReady()
	log('in-flight commit cases')
	const inflight = await inflightCommitCases(h)
	// 6. bad inputs
	log('bad input cases')
	const bad = await badInputCases(h, { big: true, normalRuns: 40 })
	const cases = [
		...redelivery.map((c) => ({ group: 'redelivery', ...c })),
		...inflight.map((c) => ({ group: 'in-flight commit', ...c })),
		...bad.cases.map((c) => ({ group: 'bad input', ...c })),
	]
	// 7. link faults and outages, each on a harness of its own
	const faultCases = []
	if (env.CHAOS_SKIP_FAULTS !== '1') {
		const flog = (l) => log(`  ${l}`)
		for (const [label, run] of [
			['PostgreSQL black hole', () => faults.pgBlackholeCase({ log: flog, runs: 20 })],
			['PostgreSQL outage', () => faults.pgOutageCase({ log: flog, runs: 10, outageMs: 40000 })],
			['RabbitMQ black hole', () => faults.amqpBlackholeCase({ log: flog, runs: 10 })],
			['redelivery concurrency', () => faults.redeliveryConcurrencyCase({ log: flog })],
			['poison and Redis FLUSHALL', () => faults.poisonRedisFlushCase({ log: flog })],
			['PostgreSQL restart', () => faults.pgRestartCase({ log: flog, runs: 30 })],
		]) {
			log(`fault case: ${label}`)
			try {
				const c = await run()
				log(`  ${c.pass ? 'pass' : 'FAIL'}: ${c.observed}`)
				faultCases.push(c)
			} catch (e) {
				faultCases.push({ name: label, expected: 'runs', observed: `threw ${e?.message}`, pass: false, ms: {} })
			}
		}
	}
	cases.push(...faultCases.map((c) => ({ group: 'link fault', ...c })))
	for (const c of cases)
		if (!c.pass) failures.push(`${c.group}: ${c.name}: expected ${c.expected}; observed ${c.observed}`)
	if (h.stats.unexpectedExits.length)
		failures.push(
			`${h.stats.unexpectedExits.length} worker processes exited by themselves: ${JSON.stringify(h.stats.unexpectedExits.map((e) => ({ pid: e.pid, code: e.code, signal: e.signal })))}`,
		)

	const seconds = (Date.now() - t0) / 1000
	// the harnesses' counters (the main one's and the RabbitMQ restart's)
	const stat = (k) => harnesses.reduce((a, x) => a + x.stats[k], 0)
	const statList = (k) => harnesses.flatMap((x) => x.stats[k])
	const totals = phases.reduce(
		(a, p) => {
			const v = p.verify
			a.runs += v.runs
			a.completed += v.completed
			a.lost += v.lost.length
			a.dup += v.duplicated.length
			a.inc += v.inconsistent.length
			a.crash += v.reRunsCrash
			a.conn += v.reRunsConnection
			a.joinCrash += v.joinExtraExecutions.crash
			a.joinConn += v.joinExtraExecutions.connection
			a.connSame += v.reRunsConnectionSameProcess
			a.redeliveries += v.redeliveredJobs
			a.dl += p.deadLetters.length
			return a
		},
		{
			runs: 0,
			completed: 0,
			lost: 0,
			dup: 0,
			inc: 0,
			crash: 0,
			conn: 0,
			connSame: 0,
			joinCrash: 0,
			joinConn: 0,
			redeliveries: 0,
			dl: 0,
		},
	)
	const rows = [...phases.map(phaseRow), ...builtins.map(builtinRow)]
	const sum = (f) => builtins.reduce((a, r) => a + f(r), 0)
	rows.push([
		'**total**',
		totals.runs + sum((r) => r.runs),
		totals.completed + sum((r) => r.completed),
		stat('kills') + sum((r) => r.kills),
		stat('workerRestarts') + sum((r) => r.restarts),
		stat('rabbitRestarts'),
		stat('amqpClosed'),
		stat('pgTerminated'),
		stat('redisKilled'),
		totals.lost + sum((r) => r.lost.length),
		totals.dup + sum((r) => r.doubled.length),
		totals.dl + sum((r) => r.deadLetters),
		totals.crash,
		totals.conn,
		totals.joinCrash,
		totals.joinConn,
		totals.redeliveries + sum((r) => r.redeliveries),
		(phases.reduce((a, p) => a + p.seconds, 0) + sum((r) => r.seconds)).toFixed(1),
	])
	const caseRows = cases.map((c) => [c.group, c.name, c.expected, c.observed, c.pass ? 'pass' : '**FAIL**'])
	const badDl = bad.deadLettered
	const md = [
		`## Chaos suite: last run`,
		'',
		`${new Date().toISOString()} · \`npm run test:chaos\` · ${RUNS} runs in the kill phase, ${FAULT_RUNS} in each service phase · 3 worker processes · ` +
			`${(seconds / 60).toFixed(1)} min · node ${process.version}`,
		'',
		'Workflow: `start → b0..b7 (parallel) → join (all) → end`. Every node execution writes a row to a side table; triggers record every committed `_outputs.*` / context write and every status change. ' +
			'*lost*: a run not `completed`, or a node output missing; *duplicated*: an effect committed twice, a join that did not see every branch exactly once, two final status writes, or an extra execution with no crash, lost connection or duplicate message to explain it. ' +
			'*user code re-ran*: a node executed again because the process running it died (or a job of its run was redelivered after a kill), or because a connection dropped; its effect was still committed once. ' +
			'*join re-ran without crash*: the join node executed more than once with no killed process and no closed broker connection involved (allowed only after those, when the broker hands the job to another worker): counted as a failure. ' +
			`${SKIP_RABBIT ? '' : `${RABBIT_NOTE} `}${BUILTIN_NOTE}`,
		'',
		table(PHASE_HEADERS, rows),
		'',
		`User code re-runs after a lost connection by the same process that then committed (the job retried in place after a service error, running the node again): ${totals.connSame} of ${totals.conn}. ` +
			`Inconsistent runs (torn output/context write, final payload ≠ context): ${totals.inc}. Worker processes that exited by themselves: ${statList('unexpectedExits').length}. Worker starts that failed on the environment (e.g. PostgreSQL out of connection slots), retried: ${statList('startFailures').length}. Self-kills by the crash/poison nodes: ${stat('selfKills')}. Dead letters from the bad-input cases: ${badDl}.`,
		'',
		'### Redelivery, in-flight commits, bad input and link faults',
		'',
		'Link faults run on harnesses of their own, through a TCP fault proxy (chaos/proxy.js) or on private PostgreSQL / Redis instances (chaos/private.js), with the default timings; the times measured are in the observed column.',
		'',
		table(['group', 'case', 'expected', 'observed', 'result'], caseRows),
		'',
		failures.length
			? `### Failures (${failures.length})\n\n${failures.map((f) => `- ${f}`).join('\n')}`
			: '### Failures\n\nNone.',
		'',
	].join('\n')
	console.log(`\n${md}`)
	fs.writeFileSync(path.join(__dirname, 'last-run.md'), md)
	log(`summary written to chaos/last-run.md (${seconds.toFixed(0)} s)`)

	const keep = failures.length > 0 || env.CHAOS_KEEP_LOGS === '1'
	h.cleanedUp = true
	await h.cleanup({ keepLogs: keep })
	if (keep) log(`worker logs kept in ${h.logDir}`)
	return failures.length ? 1 : 0
}

main()
	.then((code) => process.exit(code))
	.catch(async (e) => {
		log('FATAL', e?.stack ? e.stack : e)
		await cleanupAll()
		process.exit(2)
	})
