'use strict'
/**
 * Issue 4's bad inputs: messages that are not jobs, jobs
 * naming what does not exist, bad node outputs and writes, SQL in keys, ids and table
 * names, 10 MB bodies and outputs, while normal runs go on beside them.
 */
const fs = require('node:fs')
const path = require('node:path')
const { POSTGRES_URL, REDIS_URL, RABBITMQ_URL, sleep, quoteIdent } = require('./services')
const { FANOUT, VERSION, SQL_USES_MISSING } = require('./blueprints')

/**
 * Issue 4's bad inputs, each with its expected outcome, while `normalRuns` fan-out runs
 * go on beside them. `big` adds the 10 MB cases. Returns [{ name, expected, observed, pass }].
 */
async function badInputCases(h, { big = true, normalRuns = 20 } = {}) {
	const cases = []
	const add = (name, expected, observed, pass) => cases.push({ name, expected, observed, pass: !!pass })
	const marker = (s) => `${h.prefix}.bad.${s}`
	const exitsBefore = h.stats.unexpectedExits.length

	const normal = h.fanoutRuns('beside-bad', normalRuns)
	await h.startRuns(normal)

	// Messages that are not jobs: dead-lettered with a reason.
	const raw = [
		{ name: 'malformed JSON', body: `{"runId": "${marker('malformed')}", "blueprintId": `, reason: /not JSON/ },
		{ name: 'JSON that is not an object', body: JSON.stringify([marker('array')]), reason: /not an object/ },
		{
			name: 'invalid UTF-8',
			body: Buffer.concat([Buffer.from([0xff, 0xfe, 0xfd]), Buffer.from(marker('utf8'))]),
			reason: /UTF-8/,
		},
		{
			name: 'runId of the wrong type (number)',
			body: JSON.stringify({ runId: 12345, blueprintId: FANOUT, nodeId: 'start', m: marker('type1') }),
			reason: /runId.*must be a string/,
		},
		{
			name: 'nodeId of the wrong type (object)',
			body: JSON.stringify({ runId: marker('type2'), blueprintId: FANOUT, nodeId: { id: 'start' } }),
			reason: /nodeId.*must be a string/,
		},
		{
			name: 'attempt of the wrong type (string)',
			body: JSON.stringify({ runId: marker('type3'), blueprintId: FANOUT, nodeId: 'start', attempt: 'two' }),
			reason: /wrong type/,
		},
		{
			name: 'missing nodeId',
			body: JSON.stringify({ runId: marker('missing'), blueprintId: FANOUT }),
			reason: /nodeId/,
		},
	]
	if (big)
		raw.push({
			name: '10 MB body that is not JSON',
			body: `${marker('bigjunk')} ${'x'.repeat(10 * 1024 * 1024)}`,
			reason: /not JSON/,
		})
	await h.publish(raw.map((r) => r.body))

	// Jobs naming an unknown blueprint / node: dead-lettered, and the run fails naming it.
	const unknownBp = { runId: marker('unknown-bp'), blueprintId: 'no-such-blueprint', nodeId: 'a' }
	const unknownNode = { runId: marker('unknown-node'), blueprintId: FANOUT, nodeId: 'no-such-node' }
	await h.pg.query(`INSERT INTO ${quoteIdent(h.t.ctx)} (run_id, context_data) VALUES ($1, $2), ($3, $4)`, [
		unknownBp.runId,
		JSON.stringify({ blueprintId: 'no-such-blueprint', blueprintVersion: null }),
		unknownNode.runId,
		JSON.stringify({ blueprintId: FANOUT, blueprintVersion: VERSION }),
	])
	// A run stored with another blueprint version: refused, dead-lettered, run untouched.
	const versionRun = { runId: marker('version'), blueprintId: FANOUT, nodeId: 'start' }
	await h.pg.query(`INSERT INTO ${quoteIdent(h.t.ctx)} (run_id, context_data) VALUES ($1, $2)`, [
		versionRun.runId,
		JSON.stringify({ blueprintId: FANOUT, blueprintVersion: 'v0', chaosRunId: versionRun.runId }),
	])
	await h.publish([unknownBp, unknownNode, versionRun])

	// Runs whose node output / writes / result are bad: the run fails with a clear reason.
	const failing = [
		{ bp: 'bad-bigint', name: 'node output with a BigInt', reason: /BigInt/ },
		{ bp: 'bad-cycle', name: 'node output with a cycle', reason: /circular|cycl/i },
		{ bp: 'bad-fn-output', name: 'node output that is a function', reason: /function|JSON/i },
		{ bp: 'bad-ctx-fn', name: 'context value that is a function', reason: /callback.*function|function.*callback/ },
		{ bp: 'bad-ctx-bigint', name: 'context value that is a BigInt', reason: /amount[\s\S]*BigInt|BigInt[\s\S]*amount/ },
		{ bp: 'bad-number', name: 'node returning 42 (not an object)', reason: /returned.*42.*must return an object/ },
		{ bp: 'bad-string', name: "node returning 'done' (not an object)", reason: /must return an object/ },
		{
			bp: 'sql-uses-missing',
			name: '`uses` key with SQL in it, not registered',
			reason: new RegExp(
				`No implementation registered for '${SQL_USES_MISSING.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}'`,
			),
		},
	].map((c) => ({ ...c, runId: marker(c.bp) }))
	const completing = [
		{
			bp: 'sql-uses',
			name: '`uses` key with SQL in it, registered',
			check: (ctx) => ctx['_outputs.n'] === 'sql-key-ok',
		},
		{
			bp: FANOUT,
			name: 'run id with quotes and SQL',
			runId: `${marker('quote')}.O'Brien"; DROP TABLE ${h.t.ctx}; --\\`,
			fanout: true,
		},
	]
	if (big) {
		completing.push({
			bp: 'big-output',
			name: 'node output of 10 MB',
			check: (ctx) => typeof ctx['_outputs.n']?.blob === 'string' && ctx['_outputs.n'].blob.length === 10 * 1024 * 1024,
		})
		completing.push({
			bp: FANOUT,
			name: '10 MB job (valid job plus a 10 MB unknown field)',
			runId: marker('bigjob'),
			fanout: true,
			bigJob: true,
		})
	}
	for (const c of completing) c.runId = c.runId || marker(c.bp)
	const startList = [...failing, ...completing.filter((c) => !c.bigJob)].map((c) => ({
		runId: c.runId,
		blueprintId: c.bp,
		seed: 7,
	}))
	await h.startRuns(startList)
	for (const c of completing.filter((x) => x.bigJob)) {
		await h.pg.query(`INSERT INTO ${quoteIdent(h.t.ctx)} (run_id, context_data) VALUES ($1, $2)`, [
			c.runId,
			JSON.stringify({ blueprintId: FANOUT, blueprintVersion: VERSION, chaosRunId: c.runId, chaosSeed: 7 }),
		])
		await h.publish([{ runId: c.runId, blueprintId: FANOUT, nodeId: 'start', padding: 'p'.repeat(10 * 1024 * 1024) }])
	}

	const watched = [
		...normal.map((r) => r.runId),
		...failing.map((c) => c.runId),
		...completing.map((c) => c.runId),
		unknownBp.runId,
		unknownNode.runId,
	]
	const pending = await h.waitForRuns(watched, { stallMs: 45000, timeoutMs: 120000 })
	await sleep(1000) // dead letters of messages without a run
	const dls = await h.drainDeadLetters()
	const st = await h.statuses([...watched, versionRun.runId, marker('type3')])

	for (const r of raw) {
		const key = Buffer.isBuffer(r.body) ? r.body.toString('utf8') : r.body
		const m = key.match(new RegExp(`${h.prefix}\\.bad\\.[a-z0-9]+`))[0]
		const found = dls.filter((d) => d.text.includes(m))
		add(
			`message: ${r.name}`,
			`dead-lettered with a reason matching ${r.reason}`,
			found.length
				? `${found.length} dead letter(s), reason ${JSON.stringify((found[0].reason || '').slice(0, 200))}`
				: 'not dead-lettered',
			found.length === 1 && r.reason.test(found[0].reason || ''),
		)
	}
	const type3 = st.get(marker('type3'))
	add(
		'message with a bad field type leaves its run untouched',
		'no status row for that run id',
		type3 ? `status row ${type3.status}` : 'no status row',
		!type3,
	)
	for (const [job, what, re] of [
		[unknownBp, 'unknown blueprint', /no-such-blueprint/],
		[unknownNode, 'unknown node', /no-such-node/],
	]) {
		const found = dls.filter((d) => d.text.includes(job.runId))
		const s = st.get(job.runId)
		add(
			`job naming an ${what}`,
			`dead-lettered and the run failed, both with a reason naming it (${re})`,
			`${found.length} dead letter(s)${found[0] ? ` reason ${JSON.stringify(found[0].reason)}` : ''}; run ${s?.status} ${JSON.stringify(s?.reason)}`,
			found.length === 1 && re.test(found[0].reason || '') && s?.status === 'failed' && re.test(s?.reason || ''),
		)
	}
	{
		const found = dls.filter((d) => d.text.includes(versionRun.runId))
		const s = st.get(versionRun.runId)
		const ctx = await h.contextOf(versionRun.runId)
		add(
			'job of a run stored with another blueprint version',
			'dead-lettered with a version-mismatch reason; the run untouched (no status, context unchanged)',
			`${found.length} dead letter(s)${found[0] ? ` reason ${JSON.stringify(found[0].reason.slice(0, 160))}` : ''}; status ${s ? s.status : 'none'}; context keys ${Object.keys(ctx || {}).join(',')}`,
			found.length === 1 && /version/i.test(found[0].reason || '') && !s && Object.keys(ctx || {}).length === 3,
		)
	}
	for (const c of failing) {
		const s = st.get(c.runId)
		add(
			c.name,
			`run failed with a reason matching ${c.reason}`,
			`run ${s ? s.status : 'not finished'}${s?.reason ? `: ${JSON.stringify(s.reason.slice(0, 240))}` : ''}`,
			s?.status === 'failed' && c.reason.test(s.reason || ''),
		)
	}
	for (const c of completing) {
		const s = st.get(c.runId)
		let ok = s?.status === 'completed'
		let detail = ''
		if (ok && c.check) {
			ok = c.check(await h.contextOf(c.runId))
			detail = ok ? '' : ', output wrong'
		}
		if (ok && c.fanout) {
			const v = await h.verifyFanout([{ runId: c.runId, seed: 7 }])
			const probs = [...v.lost, ...v.duplicated, ...v.inconsistent]
			ok = probs.length === 0
			detail = ok ? ', all checks pass' : `, ${JSON.stringify(probs)}`
		}
		add(
			c.name,
			'run completed with its output intact',
			`run ${s ? s.status : 'not finished'}${s?.reason ? ` (${s.reason.slice(0, 200)})` : ''}${detail}`,
			ok,
		)
	}
	// The tables survived the SQL in keys and ids.
	const tables = await h.pg.query(`SELECT count(*)::int AS n FROM pg_tables WHERE tablename = ANY($1)`, [
		[h.t.ctx, h.t.st],
	])
	add(
		'tables intact after SQL in keys and run ids',
		'context and status tables exist',
		`${tables.rows[0].n}/2 exist`,
		tables.rows[0].n === 2,
	)
	// Table names with quotes are refused before anything runs.
	{
		const { RabbitMqAdapter, RedisCoordinationStore } = require(path.join(__dirname, '..'))
		let err
		try {
			new RabbitMqAdapter({
				amqpConnection: RABBITMQ_URL,
				pgClient: POSTGRES_URL,
				coordinationStore: new RedisCoordinationStore(REDIS_URL),
				queueName: h.queue,
				contextTableName: `ctx"; DROP TABLE ${h.t.st}; --`,
				statusTableName: h.t.st,
				runtimeOptions: { registry: {}, blueprints: {} },
			})
		} catch (e) {
			err = e
		}
		add(
			'table name with quotes',
			'the constructor throws ERR_INVALID_TABLE_NAME',
			err ? `${err.code}: ${err.message.slice(0, 160)}` : 'no error',
			err && err.code === 'ERR_INVALID_TABLE_NAME',
		)
	}
	// The worker kept serving: the runs beside the bad inputs all completed correctly.
	const v = await h.verifyFanout(normal)
	const probs = [...v.lost, ...v.duplicated, ...v.inconsistent]
	add(
		`${normal.length} normal runs beside the bad inputs`,
		'all completed, every check passes, no worker process crashed',
		`${v.completed}/${normal.length} completed, ${probs.length} with problems, ${h.stats.unexpectedExits.length - exitsBefore} worker crashes${pending.length ? `, pending ${pending.slice(0, 5).join(' ')}` : ''}`,
		probs.length === 0 && h.stats.unexpectedExits.length === exitsBefore,
	)
	const expectedDl = raw.length + 3
	add(
		'dead letters are logged',
		`the workers logged each of the ${expectedDl} dead letters`,
		`${countLogLines(h, 'Message dead-lettered')} 'Message dead-lettered' log lines in all (this harness so far)`,
		countLogLines(h, 'Message dead-lettered') >= expectedDl,
	)
	const extra = dls.filter(
		(d) =>
			!raw.some((r) => d.text.includes(r.body.toString().match(new RegExp(`${h.prefix}\\.bad\\.[a-z0-9]+`))[0])) &&
			![unknownBp, unknownNode, versionRun].some((j) => d.text.includes(j.runId)),
	)
	add(
		'no other dead letters',
		'none',
		extra.length ? JSON.stringify(extra.map((d) => ({ text: d.text.slice(0, 120), reason: d.reason }))) : 'none',
		extra.length === 0,
	)
	return { cases, deadLettered: dls.length }
}

function countLogLines(h, needle) {
	let n = 0
	for (const f of fs.readdirSync(h.logDir)) {
		const text = fs.readFileSync(path.join(h.logDir, f), 'utf8')
		n += text.split(needle).length - 1
	}
	return n
}

module.exports = { badInputCases }
