'use strict'
/**
 * What the chaos checker verifies, and the side tables it reads (the harness's
 * header, chaos/harness.js, tells what each records):
 *   sideTablesSql  the tables <p>_exec, <p>_eff and <p>_slog and the triggers that fill
 *                  <p>_eff (one row per committed effect) and <p>_slog (one row per
 *                  status change)
 *   verifyFanout   a method of Chaos: every fan-out run completed once, every effect
 *                  committed once, the join saw every branch once, one final status
 *                  write, every extra execution explained by a fault
 *   phaseProblems  a phase's verdict
 */
const { quoteIdent } = require('./services')
const { BRANCHES, FANOUT, FANOUT_NODES, blueprints } = require('./blueprints')

/** The functions sideTablesSql creates, named `<prefix>_<name>` (dropped by the harness's cleanup). */
const SIDE_FUNCTIONS = ['eff_fn', 'effn_fn', 'slog_fn']

/** The checker's side tables and triggers of a harness with this prefix and these tables. */
function sideTablesSql(prefix, t) {
	const { ctx, st, exec, eff, slog } = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, quoteIdent(v)]))
	const fn = (n) => quoteIdent(`${prefix}_${n}`)
	const nodes = quoteIdent(`${t.ctx}_nodes`)
	return `
		CREATE TABLE ${exec} (id BIGSERIAL PRIMARY KEY, run_id TEXT NOT NULL, node_id TEXT NOT NULL, attempt INT NOT NULL,
			pid INT NOT NULL, exec_id TEXT NOT NULL, at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp());
		CREATE INDEX ON ${exec} (run_id, node_id);
		CREATE TABLE ${eff} (id BIGSERIAL PRIMARY KEY, run_id TEXT NOT NULL, key TEXT NOT NULL, value_exec TEXT,
			at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp());
		CREATE TABLE ${slog} (id BIGSERIAL PRIMARY KEY, run_id TEXT NOT NULL, old_status TEXT, new_status TEXT,
			at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp());
		CREATE FUNCTION ${fn('eff_fn')}() RETURNS trigger LANGUAGE plpgsql AS $f$
		BEGIN
			INSERT INTO ${eff} (run_id, key, value_exec)
			SELECT NEW.run_id, n.key, CASE WHEN jsonb_typeof(n.value) = 'object' THEN n.value->>'exec'
				WHEN jsonb_typeof(n.value) = 'string' THEN left(n.value #>> '{}', 200) END
			FROM jsonb_each(COALESCE(NEW.context_data, '{}'::jsonb)) n
			WHERE n.key LIKE 'w.%'
			  AND (TG_OP = 'INSERT' OR NOT (COALESCE(OLD.context_data, '{}'::jsonb) ? n.key)
			       OR OLD.context_data -> n.key IS DISTINCT FROM n.value);
			RETURN NULL;
		END $f$;
		CREATE TRIGGER ${fn('eff_tr')} AFTER INSERT OR UPDATE ON ${ctx} FOR EACH ROW EXECUTE FUNCTION ${fn('eff_fn')}();
		-- a node's output is committed to its node row (the context row gets it once, when the run ends)
		CREATE FUNCTION ${fn('effn_fn')}() RETURNS trigger LANGUAGE plpgsql AS $f$
		BEGIN
			IF NEW.state = 'done' AND (TG_OP = 'INSERT' OR OLD.state IS DISTINCT FROM 'done'
			    OR OLD.output IS DISTINCT FROM NEW.output) THEN
				INSERT INTO ${eff} (run_id, key, value_exec) VALUES (NEW.run_id, '_outputs.' || NEW.node_id,
					CASE WHEN jsonb_typeof(NEW.output) = 'object' THEN NEW.output->>'exec'
					WHEN jsonb_typeof(NEW.output) = 'string' THEN left(NEW.output #>> '{}', 200) END);
			END IF;
			RETURN NULL;
		END $f$;
		CREATE TRIGGER ${fn('effn_tr')} AFTER INSERT OR UPDATE ON ${nodes} FOR EACH ROW EXECUTE FUNCTION ${fn('effn_fn')}();
		CREATE FUNCTION ${fn('slog_fn')}() RETURNS trigger LANGUAGE plpgsql AS $f$
		BEGIN
			IF TG_OP = 'INSERT' THEN
				INSERT INTO ${slog} (run_id, old_status, new_status) VALUES (NEW.run_id, NULL, NEW.status);
			ELSIF NEW.status IS DISTINCT FROM OLD.status OR NEW.status_data IS DISTINCT FROM OLD.status_data THEN
				INSERT INTO ${slog} (run_id, old_status, new_status) VALUES (NEW.run_id, OLD.status, NEW.status);
			END IF;
			RETURN NULL;
		END $f$;
		CREATE TRIGGER ${fn('slog_tr')} AFTER INSERT OR UPDATE ON ${st} FOR EACH ROW EXECUTE FUNCTION ${fn('slog_fn')}();
		`
}

/** The verification methods of Chaos (chaos/harness.js mixes them in). */
class ChaosVerify {
	async verifyFanout(runs, faults = {}) {
		const ids = runs.map((r) => r.runId)
		const seedOf = new Map(runs.map((r) => [r.runId, r.seed]))
		const q = (sql) => this.pg.query(sql, [ids]).then((r) => r.rows)
		const [st, ctx, eff, slog, execs, deliveries] = await Promise.all([
			q(`SELECT run_id, status, status_data->>'reason' AS reason,
				(status_data->'payload'->'context') = c.context_data AS payload_ok
				FROM ${quoteIdent(this.t.st)} s LEFT JOIN ${quoteIdent(this.t.ctx)} c USING (run_id) WHERE s.run_id = ANY($1)`),
			q(`SELECT run_id, context_data FROM ${quoteIdent(this.t.ctx)} WHERE run_id = ANY($1)`),
			q(`SELECT run_id, key, value_exec FROM ${quoteIdent(this.t.eff)} WHERE run_id = ANY($1) ORDER BY id`),
			q(`SELECT run_id, old_status, new_status FROM ${quoteIdent(this.t.slog)} WHERE run_id = ANY($1) ORDER BY id`),
			this.executions(ids),
			this.deliveryCounters(ids),
		])
		const group = (rows, key) => {
			const m = new Map()
			for (const r of rows) {
				const k = key(r)
				if (!m.has(k)) m.set(k, [])
				m.get(k).push(r)
			}
			return m
		}
		const stOf = new Map(st.map((r) => [r.run_id, r]))
		const ctxOf = new Map(ctx.map((r) => [r.run_id, r.context_data]))
		const effOf = group(eff, (r) => r.run_id)
		const slogOf = group(slog, (r) => r.run_id)
		const execOf = group(execs, (r) => r.run_id)
		const FINAL = ['completed', 'failed', 'cancelled']

		const res = {
			runs: ids.length,
			completed: 0,
			lost: [],
			duplicated: [],
			inconsistent: [],
			reRunsCrash: 0,
			reRunsConnection: 0,
			/** of which the process that committed had run the node before (retried in place) */
			reRunsConnectionSameProcess: 0,
			/** join executed again with no killed process involved (the brief: only a crash allows it) */
			joinRerunsWithoutCrash: [],
			reRunsDuplicateMessage: 0,
			joinExtraExecutions: { crash: 0, connection: 0, duplicateMessage: 0 },
			unexplained: [],
			redeliveredJobs: 0,
			executions: execs.length,
		}
		for (const id of ids) {
			const s = stOf.get(id)
			const c = ctxOf.get(id) || {}
			const runExecs = execOf.get(id) || []
			const problems = { lost: [], dup: [], inc: [] }
			if (s?.status !== 'completed') {
				problems.lost.push(`status ${s ? `${s.status}${s.reason ? ` (${s.reason})` : ''}` : 'missing'}`)
			} else {
				res.completed++
				if (s.payload_ok !== true) problems.inc.push('final status payload.context differs from the stored context')
			}
			// outputs present once, and the join saw every branch exactly once
			for (const n of FANOUT_NODES) {
				if (!(`_outputs.${n}` in c)) problems.lost.push(`_outputs.${n} missing`)
			}
			const seed = seedOf.get(id)
			const join = c['_outputs.join']
			if (join) {
				const expected = BRANCHES * seed * 10 + (BRANCHES * (BRANCHES - 1)) / 2
				const idx = [...(join.indexes || [])].sort((a, b) => a - b)
				const want = Array.from({ length: BRANCHES }, (_, i) => i)
				if (join.sum !== expected || JSON.stringify(idx) !== JSON.stringify(want)) {
					problems.dup.push(
						`join saw ${JSON.stringify(join.indexes)} sum ${join.sum}, expected every branch once (sum ${expected})`,
					)
				}
				if (c['_outputs.end'] && c['_outputs.end'].total !== join.sum)
					problems.inc.push(`end.total ${c['_outputs.end'].total} != join.sum ${join.sum}`)
			}
			// effects: one per key
			const effCount = new Map()
			for (const e of effOf.get(id) || []) effCount.set(e.key, (effCount.get(e.key) || 0) + 1)
			for (const [k, n] of effCount) if (n > 1) problems.dup.push(`${k} committed ${n} times`)
			// a node's context write committed with its own output (same execution)
			for (const n of FANOUT_NODES) {
				const out = c[`_outputs.${n}`]
				if (out && c[`w.${n}`] !== out.exec)
					problems.inc.push(`w.${n} = ${c[`w.${n}`]} but _outputs.${n}.exec = ${out.exec}`)
			}
			// one final status write, none after it
			const log = slogOf.get(id) || []
			const finals = log.filter((l) => FINAL.includes(l.new_status))
			const afterFinal = log.filter((l) => FINAL.includes(l.old_status))
			if (finals.length > 1)
				problems.dup.push(`${finals.length} final status writes (${finals.map((f) => f.new_status).join(', ')})`)
			if (afterFinal.length)
				problems.dup.push(
					`status changed after final: ${afterFinal.map((l) => `${l.old_status}->${l.new_status}`).join(', ')}`,
				)
			if (s && FINAL.includes(s.status) && finals.length === 0)
				problems.inc.push('final status without a final write in the status log')
			// executions per committed effect
			const runDeliveries = deliveries.get(id)
			if (runDeliveries) for (const v of runDeliveries.values()) res.redeliveredJobs += v
			const deadInRun = runExecs.some((r) => this.deadPids.has(r.pid))
			const byNode = group(runExecs, (r) => r.node_id)
			for (const n of FANOUT_NODES) {
				const rows = byNode.get(n) || []
				const committed = c[`_outputs.${n}`]?.exec
				if (committed && !rows.some((r) => r.exec_id === committed))
					problems.inc.push(`_outputs.${n} came from no recorded execution (${committed})`)
				const extras = rows.filter((r) => r.exec_id !== committed)
				const expectedExtras = committed ? extras.length : Math.max(0, rows.length - 1)
				for (const r of extras.slice(0, expectedExtras)) {
					let why
					if (this.deadPids.has(r.pid) || deadInRun || (runDeliveries && faults.kills)) why = 'crash'
					else if (faults.service) why = 'connection'
					else if (faults.duplicates) why = 'duplicateMessage'
					if (!why) {
						problems.dup.push(
							`node ${n} executed ${rows.length} times without a crash, lost connection or duplicate message (pids ${rows.map((x) => `${x.pid}#${x.attempt}`).join(', ')})`,
						)
						res.unexplained.push({ runId: id, node: n, rows })
						break
					}
					if (why === 'crash') res.reRunsCrash++
					else if (why === 'connection') {
						res.reRunsConnection++
						if (committed && r.pid === Number(String(committed).split('.')[0])) res.reRunsConnectionSameProcess++
					} else res.reRunsDuplicateMessage++
					if (n === 'join') res.joinExtraExecutions[why]++
					// The brief's rule for the join: more than one execution per committed effect
					// only when a killed process was involved.
					// A closed broker connection is a crash in the broker's eyes: it hands the
					// job to another worker while the first may still run it. Only a re-run
					// with the broker connection intact (a PostgreSQL or Redis fault) fails.
					if (n === 'join' && why === 'connection' && !faults.brokerConnection) {
						res.joinRerunsWithoutCrash.push({
							runId: id,
							executions: rows
								.map((x) => `pid ${x.pid} #${x.attempt}${x.exec_id === committed ? ' (committed)' : ''}`)
								.join(', '),
						})
					}
				}
			}
			if (problems.lost.length && res.lost.length < 20) {
				// Where did it stop? The run's bookkeeping, the join's arrivals in Redis, and
				// who executed the nodes that are still queued.
				const { queued, arrivals } = await this.runRows(id)
				const missing = Array.from({ length: BRANCHES }, (_, i) => `b${i}`).filter((b) => !arrivals.includes(b))
				problems.lost.push(`queued [${queued.join(',')}]`)
				if (c['_outputs.b0'] !== undefined) problems.lost.push(`join arrivals missing [${missing.join(',')}]`)
				const preds = (n) => blueprints[FANOUT].edges.filter((e) => e.target === n).map((e) => e.source)
				// the node that made each queued node ready: its only predecessor, or the join's last arrival
				const readiedBy = (q) =>
					preds(q).length === 1 ? preds(q) : q === 'join' && arrivals.length ? [arrivals[arrivals.length - 1]] : []
				const shown = new Set([...queued, ...missing, ...queued.flatMap(readiedBy)])
				for (const n of shown) {
					const rows = byNodeOf(runExecs, n)
					problems.lost.push(
						`${n} executed by ${rows.map((r) => `${r.pid}${this.deadPids.has(r.pid) ? '(killed)' : ''}`).join(', ') || 'nobody'}${c[`_outputs.${n}`] ? `, output committed by ${String(c[`_outputs.${n}`].exec).split('.')[0]}` : ''}`,
					)
				}
			}
			if (problems.lost.length) res.lost.push({ runId: id, problems: problems.lost })
			if (problems.dup.length) res.duplicated.push({ runId: id, problems: problems.dup })
			if (problems.inc.length) res.inconsistent.push({ runId: id, problems: problems.inc })
		}
		return res
	}
}

function byNodeOf(rows, node) {
	return rows.filter((r) => r.node_id === node)
}

/** A phase passes when every run completed once, nothing was dead-lettered, no worker died by itself. */
function phaseProblems(p) {
	const out = []
	const v = p.verify
	if (v.lost.length) out.push(`${v.lost.length} runs lost, e.g. ${JSON.stringify(v.lost.slice(0, 3))}`)
	if (v.duplicated.length)
		out.push(`${v.duplicated.length} runs with a doubled effect, e.g. ${JSON.stringify(v.duplicated.slice(0, 3))}`)
	if (v.inconsistent.length)
		out.push(`${v.inconsistent.length} runs inconsistent, e.g. ${JSON.stringify(v.inconsistent.slice(0, 3))}`)
	if (p.deadLetters.length)
		out.push(
			`${p.deadLetters.length} dead letters, e.g. ${JSON.stringify(p.deadLetters.slice(0, 3).map((d) => ({ text: d.text.slice(0, 200), reason: d.reason })))}`,
		)
	if (p.unexpectedExits) out.push(`${p.unexpectedExits} worker processes exited by themselves`)
	if (v.joinRerunsWithoutCrash.length) {
		out.push(
			`${v.joinRerunsWithoutCrash.length} runs whose join node ran more than once with no killed process (after a lost connection; its effect was committed once), e.g. ${JSON.stringify(v.joinRerunsWithoutCrash.slice(0, 3))}`,
		)
	}
	return out
}

module.exports = { SIDE_FUNCTIONS, sideTablesSql, ChaosVerify, phaseProblems }
