'use strict'
/**
 * The chaos suite's scenarios on fan-out runs: fanoutPhase (runs under a chaos
 * function, then verifyFanout), redeliveryCases and inflightCommitCases (faults timed
 * to land on a commit in flight, by holding the run's row locked). Each case is
 * { name, expected, observed, pass }. The bad inputs are in chaos/bad-inputs.js.
 */
const { sleep, quoteIdent } = require('./services')
const { FANOUT } = require('./blueprints')

/**
 * A fan-out phase: start `runs` runs (paced over `startOverMs`), run `chaos(h, state)`
 * alongside (it returns when its faults are done), wait for every run, verify.
 */
async function fanoutPhase(h, { name, runs, startOverMs = 0, faults = {}, chaos, waitOptions, runExtra } = {}) {
	const t0 = Date.now()
	const list = h.fanoutRuns(name, runs, runExtra)
	const state = { done: false, started: false, runIds: list.map((r) => r.runId) }
	const statsBefore = { ...h.stats }
	const starting = (async () => {
		const batch = Math.max(1, Math.ceil(runs / Math.max(1, startOverMs / 100)))
		for (let i = 0; i < list.length; i += batch) {
			await h.startRuns(list.slice(i, i + batch))
			if (startOverMs) await sleep(100)
		}
		state.started = true
	})()
	const chaosTask = chaos ? chaos(h, state) : Promise.resolve()
	await starting
	const pending = await h.waitForRuns(state.runIds, waitOptions)
	state.done = true
	await chaosTask
	await h.waitForWorkersReady()
	const dead = await h.drainDeadLetters()
	const v = await h.verifyFanout(list, faults)
	const delta = (k) => h.stats[k] - statsBefore[k]
	return {
		name,
		seconds: (Date.now() - t0) / 1000,
		verify: v,
		pending,
		deadLetters: dead,
		kills: delta('kills'),
		selfKills: delta('selfKills'),
		workerRestarts: delta('workerRestarts'),
		rabbitRestarts: delta('rabbitRestarts'),
		pgTerminated: delta('pgTerminated'),
		redisKilled: delta('redisKilled'),
		amqpClosed: delta('amqpClosed'),
		unexpectedExits: h.stats.unexpectedExits.length - statsBefore.unexpectedExits.length,
	}
}

// ---- redelivery cases

/**
 * Redelivery: the same job twice, a job published again after its commit (what a
 * nack-requeue after the commit amounts to), and a real broker redelivery after the
 * worker holding the job died (the node kills its own process once).
 * Returns [{ name, expected, observed, pass }].
 */
async function redeliveryCases(h, { poison = false } = {}) {
	const cases = []
	const add = (name, expected, observed, pass) => cases.push({ name, expected, observed, pass: !!pass })
	const execCount = (rows, node) => rows.filter((r) => r.node_id === node).length
	const effCount = async (runId, key) =>
		(
			await h.pg.query(`SELECT count(*)::int AS n FROM ${quoteIdent(h.t.eff)} WHERE run_id = $1 AND key = $2`, [
				runId,
				key,
			])
		).rows[0].n
	const finalWrites = async (runId) =>
		(
			await h.pg.query(
				`SELECT count(*)::int AS n FROM ${quoteIdent(h.t.slog)} WHERE run_id = $1 AND new_status IN ('completed','failed','cancelled')`,
				[runId],
			)
		).rows[0].n

	// 1. The same start job published twice, at once.
	const dup = h.fanoutRuns('dupstart', 4, () => ({ duplicateStart: true }))
	await h.startRuns(dup)
	// 2. A branch job published again after the branch committed, while the join still
	//    waits for a slow branch (b7 sleeps 2.5 s): b3 must not run again, the join must
	//    count it once and fire once.
	const br = h.fanoutRuns('republish-branch', 1, () => ({ delays: { b7: 2500 } }))
	// 3. The join job published again after the join committed, while `end` is slow:
	//    the join must not run again, `end` is committed once.
	const jn = h.fanoutRuns('republish-join', 1, () => ({ delays: { end: 2500 } }))
	await h.startRuns([...br, ...jn])

	const brId = br[0].runId
	const okB3 = await h.waitForKey(brId, '_outputs.b3')
	const joinEarly = (await h.contextOf(brId))?.['_outputs.join'] !== undefined
	if (okB3) await h.publish([{ runId: brId, blueprintId: FANOUT, nodeId: 'b3' }])
	const jnId = jn[0].runId
	const okJoin = await h.waitForKey(jnId, '_outputs.join')
	const endEarly = (await h.contextOf(jnId))?.['_outputs.end'] !== undefined
	if (okJoin) await h.publish([{ runId: jnId, blueprintId: FANOUT, nodeId: 'join' }])

	const all = [...dup, ...br, ...jn]
	const pending = await h.waitForRuns(
		all.map((r) => r.runId),
		{ stallMs: 15000, timeoutMs: 120000 },
	)
	await h.waitForWorkersReady()

	// 1b. After completion: publish the start job of a completed run again.
	const doneId = dup[0].runId
	const before = (await h.executions([doneId])).length
	await h.publish([{ runId: doneId, blueprintId: FANOUT, nodeId: 'start' }])
	await sleep(1500)

	const v = await h.verifyFanout(all, { duplicates: true, kills: true })
	const bad = (id) => [...v.lost, ...v.duplicated, ...v.inconsistent].filter((x) => x.runId === id)

	const dupExecs = await h.executions(dup.map((r) => r.runId))
	const dupBad = dup.flatMap((r) => bad(r.runId))
	add(
		'same start job published twice (4 runs)',
		'each run completed, every node committed once, one final status; the start node may run twice, its effect once',
		`${dup.length - dup.filter((r) => bad(r.runId).length).length}/${dup.length} runs clean; start executed ${execCount(dupExecs, 'start')} times in all for ${dup.length} runs${dupBad.length ? `; problems ${JSON.stringify(dupBad)}` : ''}`,
		dupBad.length === 0 && !pending.some((id) => dup.some((r) => r.runId === id)),
	)
	const after = (await h.executions([doneId])).length
	add(
		'start job of a completed run published again',
		'acknowledged and skipped: no execution, no effect, no status write',
		`${after - before} new executions, ${await finalWrites(doneId)} final status writes`,
		after === before && (await finalWrites(doneId)) === 1,
	)
	const brExecs = await h.executions([brId])
	add(
		'branch b3 job published again after its commit (join still waiting)',
		'b3 not run again; join counts b3 once and fires once; one effect per node',
		okB3
			? `b3 executed ${execCount(brExecs, 'b3')}x, join executed ${execCount(brExecs, 'join')}x, _outputs.b3 committed ${await effCount(brId, '_outputs.b3')}x, _outputs.join committed ${await effCount(brId, '_outputs.join')}x${joinEarly ? ' (join already done when republished)' : ''}${bad(brId).length ? `; ${JSON.stringify(bad(brId))}` : ''}`
			: 'b3 never committed',
		okB3 && execCount(brExecs, 'b3') === 1 && execCount(brExecs, 'join') === 1 && bad(brId).length === 0,
	)
	const jnExecs = await h.executions([jnId])
	add(
		'join job published again after its commit (end still running)',
		'join not run again; end committed once (its job is re-published, so end may run twice, its effect once)',
		okJoin
			? `join executed ${execCount(jnExecs, 'join')}x, end executed ${execCount(jnExecs, 'end')}x, _outputs.join committed ${await effCount(jnId, '_outputs.join')}x, _outputs.end committed ${await effCount(jnId, '_outputs.end')}x${endEarly ? ' (end already done when republished)' : ''}${bad(jnId).length ? `; ${JSON.stringify(bad(jnId))}` : ''}`
			: 'join never committed',
		okJoin && execCount(jnExecs, 'join') === 1 && bad(jnId).length === 0,
	)

	// 4. A real redelivery: b2 kills its own worker process on its first execution,
	//    while 12 other runs are in flight on the same workers (their jobs die with it).
	await h.waitForWorkersReady()
	const crash = h.fanoutRuns('crash-once', 1, () => ({ crash: { b2: 'once' }, delays: { b0: 200, b1: 200 } }))
	const beside = h.fanoutRuns('beside-crash', 12, () => ({ delays: { b3: 150, b4: 150, join: 50, end: 50 } }))
	await h.startRuns([...beside.slice(0, 6), ...crash, ...beside.slice(6)])
	const crashPending = await h.waitForRuns(
		[...crash, ...beside].map((r) => r.runId),
		{ stallMs: 15000, timeoutMs: 120000 },
	)
	await h.waitForWorkersReady()
	const cv = await h.verifyFanout([...crash, ...beside], { kills: true })
	const cbad = (id) => [...cv.lost, ...cv.duplicated, ...cv.inconsistent].filter((x) => x.runId === id)
	const crId = crash[0].runId
	const crExecs = await h.executions([crId])
	const crDel = (await h.deliveryCounters([crId])).get(crId)
	const b2 = crExecs.filter((r) => r.node_id === 'b2')
	add(
		'worker killed inside node b2 (real broker redelivery)',
		'b2 re-run by another worker (user code re-ran after crash), committed once, redelivery counted in PostgreSQL, run completed',
		`${crashPending.includes(crId) ? 'run never finished; ' : ''}b2 executed ${b2.length}x (first by pid ${b2[0]?.pid}, ${h.deadPids.has(b2[0]?.pid) ? 'dead' : 'alive'}), _outputs.b2 committed ${await effCount(crId, '_outputs.b2')}x, delivery counter b2=${crDel?.get('b2') ?? 0}${cbad(crId).length ? `; ${JSON.stringify(cbad(crId))}` : ''}`,
		b2.length === 2 &&
			h.deadPids.has(b2[0].pid) &&
			(await effCount(crId, '_outputs.b2')) === 1 &&
			(crDel?.get('b2') ?? 0) >= 1 &&
			cbad(crId).length === 0,
	)
	const besideBad = beside.flatMap((r) => cbad(r.runId))
	add(
		`${beside.length} runs in flight on the worker that died`,
		'all completed, every effect once, the join fired once per run with every branch (their user code may re-run)',
		`${beside.length - beside.filter((r) => crashPending.includes(r.runId)).length}/${beside.length} finished; ${cv.reRunsCrash} user-code re-runs after the crash${besideBad.length ? `; problems ${JSON.stringify(besideBad)}` : ''}`,
		besideBad.length === 0,
	)

	if (poison) {
		// A job that kills every worker that takes it, with ONE worker process, and an
		// innocent run whose node b1 takes 2 s: each crash also kills b1's delivery, so both
		// are redelivered together every time. The poison job must end in the dead-letter
		// queue; the innocent run must not pay for it.
		const stray0 = await h.drainDeadLetters()
		if (stray0.length)
			add(
				'no dead letters from the redelivery cases',
				'none',
				`${stray0.length}: ${JSON.stringify(stray0.map((d) => d.reason))}`,
				false,
			)
		await h.scaleTo(1)
		const poisonRun = h.fanoutRuns('poison', 1, () => ({ crash: { b5: 'always' } }))
		const innocent = h.fanoutRuns('beside-poison', 1, () => ({ delays: { b1: 2000 } }))
		await h.startRuns([...innocent, ...poisonRun])
		const pId = poisonRun[0].runId
		const iId = innocent[0].runId
		const left = await h.waitForRuns([pId, iId], { stallMs: 60000, timeoutMs: 300000 })
		await h.waitForWorkersReady()
		await sleep(1000)
		const st = await h.statuses([pId, iId])
		const dls = await h.drainDeadLetters()
		const pDls = dls.filter((d) => d.text.includes(pId))
		const iDls = dls.filter((d) => d.text.includes(iId))
		const nodeOf = (d) => {
			try {
				return JSON.parse(d.text).nodeId
			} catch {
				return '?'
			}
		}
		const pExecs = (await h.executions([pId])).filter((r) => r.node_id === 'b5')
		const max = h.maxDeliveries || 20
		const ps = st.get(pId)
		add(
			`poison job: b5 kills every worker that runs it (one worker process, maxDeliveries ${max})`,
			`b5 dead-lettered (every copy of its job) after about ${max} deliveries, with a reason; the run fails with that reason`,
			`${left.includes(pId) ? 'run never finished; ' : ''}status ${ps?.status}, reason ${JSON.stringify(ps?.reason)}; b5 executed ${pExecs.length}x; dead letters of the run: ${pDls.map((d) => `${nodeOf(d)} (${(d.reason || '').slice(0, 60)}…)`).join(', ') || 'none'}`,
			ps?.status === 'failed' &&
				/poison/.test(ps?.reason || '') &&
				pDls.length >= 1 &&
				pDls.every((d) => nodeOf(d) === 'b5' && /poison/.test(d.reason || '')),
		)
		const iv = await h.verifyFanout(innocent, { kills: true })
		const iBad = [...iv.lost, ...iv.duplicated, ...iv.inconsistent]
		add(
			'innocent run (b1 takes 2 s) on the worker the poison job keeps killing',
			'completed, every check passes, none of its jobs dead-lettered (its user code re-runs after each crash)',
			`status ${st.get(iId)?.status}${st.get(iId)?.reason ? ` (${st.get(iId).reason})` : ''}; ${iDls.length} of its jobs dead-lettered${iDls.length ? ` (${iDls.map((d) => `${nodeOf(d)}: ${(d.reason || '').slice(0, 110)}`).join('; ')})` : ''}; b1 executed ${(await h.executions([iId])).filter((r) => r.node_id === 'b1').length}x`,
			iBad.length === 0 && iDls.length === 0,
		)
		const others = dls.filter((d) => !pDls.includes(d) && !iDls.includes(d))
		if (others.length)
			add('no other dead letters beside the poison job', 'none', JSON.stringify(others.map((d) => d.reason)), false)
		await h.scaleTo(h.workerCount)
	}
	const stray = await h.drainDeadLetters()
	if (stray.length)
		add(
			'no dead letters from the redelivery cases',
			'none',
			`${stray.length}: ${JSON.stringify(stray.map((d) => d.reason))}`,
			false,
		)
	return cases
}

// ---- a connection lost while a commit is in flight (deterministic)

/**
 * Two races made deterministic by holding the run's status row locked so that a
 * worker's commit statement is in flight (blocked) at the moment of the fault:
 *  1. the worker is killed while its commit waits; the broker redelivers the job, which
 *     loads the run (no output yet) and runs the node again; then the lock is released
 *     and the dead worker's commit lands first (PostgreSQL finishes a statement it has
 *     received even when its client is gone). The redelivered job's commit finds the
 *     output committed: it must still do what follows a commit (join arrival,
 *     successors), because the delivery that committed is dead.
 *  2. the worker's PostgreSQL backend is terminated while its commit waits: the commit
 *     is rolled back and must be retried (a lost connection), not dead-lettered.
 */
async function inflightCommitCases(h) {
	const cases = []
	const add = (name, expected, observed, pass) => cases.push({ name, expected, observed, pass: !!pass })
	const others = Array.from({ length: 8 }, (_, i) => `b${i}`).filter((n) => n !== 'b3')
	const waitOthers = async (runId) => {
		for (const n of ['start', ...others]) if (!(await h.waitForKey(runId, `_outputs.${n}`, 20000))) return false
		return true
	}
	for (const kind of ['kill', 'terminate']) {
		await h.waitForWorkersReady()
		const [run] = h.fanoutRuns(`inflight-${kind}`, 1, () => ({ delays: { b3: 1500 } }))
		const id = run.runId
		await h.startRuns([run])
		const steps = []
		let lock
		try {
			const first = await h.waitForExecutions(id, 'b3', 1)
			if (!first.length || !(await waitOthers(id)))
				throw new Error('b3 never started or the other branches never committed')
			const pid = first[0].pid
			lock = await h.lockRun(id)
			const blocked = await h.blockedBackends(pid, 5000)
			if (!blocked.length) throw new Error(`the commit of b3 (worker ${pid}) never waited on the lock`)
			steps.push(`b3's commit in flight on worker ${pid} (${blocked[0].query.replace(/\s+/g, ' ').trim()}…)`)
			if (kind === 'kill') {
				h.killWorkerByPid(pid)
				const again = await h.waitForExecutions(id, 'b3', 2, 15000)
				steps.push(
					again.length >= 2
						? `killed it; b3 redelivered and running again on ${again[1].pid}`
						: 'killed it; b3 was not run again within 15 s',
				)
			} else {
				const r = await h.pg.query('SELECT pg_terminate_backend(pid) AS ok FROM unnest($1::int[]) AS pid', [
					blocked.map((b) => b.pid),
				])
				steps.push(`terminated its backend (${r.rows.filter((x) => x.ok).length})`)
				await sleep(300)
			}
		} catch (e) {
			steps.push(`setup failed: ${e.message}`)
		} finally {
			if (lock) await lock.release()
		}
		const pending = await h.waitForRuns([id], { stallMs: 10000, timeoutMs: 40000 })
		await h.waitForWorkersReady()
		const v = await h.verifyFanout([run], { kills: kind === 'kill', service: kind === 'terminate' })
		const probs = [...v.lost, ...v.duplicated, ...v.inconsistent].flatMap((x) => x.problems)
		const dls = (await h.drainDeadLetters()).filter((d) => d.text.includes(id))
		const { queued: queuedNodes, arrivals: fanin } = await h.runRows(id)
		add(
			kind === 'kill'
				? 'worker killed while its commit is in flight; the commit lands after the redelivered job loaded the run'
				: 'PostgreSQL backend terminated while a commit is in flight',
			kind === 'kill'
				? 'run completed: b3 committed once, the join counts b3 and fires once (b3 may run twice)'
				: 'the commit is retried on a new connection; run completed, nothing dead-lettered',
			`${steps.join('; ')}. ${pending.length ? 'Run never finished' : 'Run finished'}${probs.length ? `: ${probs.join('; ')}` : ''}${dls.length ? `; dead-lettered: ${dls.map((d) => d.reason).join(' | ')}` : ''}${pending.length ? `; node rows: queued=${JSON.stringify(queuedNodes)}, join arrivals=${[...fanin].sort().join(',')}` : ''}`,
			!steps.some((x) => x.startsWith('setup failed')) && !pending.length && !probs.length && !dls.length,
		)
	}
	return cases
}

module.exports = { fanoutPhase, redeliveryCases, inflightCommitCases }
