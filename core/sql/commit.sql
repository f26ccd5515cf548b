-- Commits a completed node's effect once, in one statement: its row (output, route), the rows of the
-- successors it touches (their inputs, join arrivals, and those it enqueues), its context writes, the
-- run's pending count, and, when nothing of the run remains pending, the run's outputs folded into
-- its context row and its final status. No row returned: the node was not pending (another delivery
-- committed it) or the run has ended. Every row is changed by an UPDATE that computes from the row
-- as it is now (the status row is locked first, so the commits of a run are serialised), and no
-- growing document is rewritten: a job's cost does not grow with the run's width.
-- $1 run id, $2 node id, $3 output (JSON text; NULL: undefined), $4 route (chosen successors),
-- per touched successor: $5 id, $6 ready (one predecessor), $7 join arrival's expected count (0: none),
-- $8 'any' join, $9 the arrival may fire it, $10 this node arrives at it, $11 an edge wrote its input,
-- $12 that input (JSON text; NULL: undefined), $13 its input is bound from now on (routing.rs);
-- $14/$15 (owner, join) pairs: nodes this fallback arrives for; $16 context sets (JSON object text),
-- $17 context deletes, $18 has context writes, $19 per touched successor: no transform reads its input
-- before it runs (an 'all' join's input can then be written by the arrival that completes it);
-- $20 a loop's body rows sent round again (reset to idle, iteration + 1: a loop controller that
-- continues), $21 this node goes round again itself (idle, iteration + 1), $22 the job's iteration
-- (a job of an earlier iteration changes nothing); $23/$24/$25 nodes this commit adds to the run (a
-- batch's items: id, input as JSON text, spec as JSON text), queued; $26 per touched successor: the
-- input an edge wrote is the output as it is ($3: its text is sent once, $12 is NULL); $27
-- typescriptCompat (core/src/compat.rs): the context row also gets the node's `_outputs.<id>` / `<id>`
-- and the inputs its edges wrote (`_inputs.<target>`); $28 the joins whose firing the coordination
-- store decides for this arrival: each holds the run open (pending + 1, the node row's `joined_now`)
-- until sql/compat_settle.sql enqueues what they fired. With $27 the run's end is left to
-- compat_settle and JobRunner::compat_after (old workers' jobs are in flight unseen).
-- Returns: the successors it enqueued (and their iterations), the status when nothing of the run remains pending (final, or
-- `awaiting`), the NOTIFY, the run's first error.
-- Two statements are made of this text (run_store.rs `variant`): the full one, and the plain one for the commits of
-- most jobs, without what only a fallback's owners ($14/$15), a loop ($20/$21), a batch's items ($23..$25) or
-- typescriptCompat ($27/$28) need: the lines between `--[full` and `--full]` are only in the full statement, those
-- between `--[plain` and `--plain]` only in the plain one. (Every plan node costs at each execution's start.)
WITH lk AS (
  SELECT s.pending, COALESCE(s.arrivals, '{}'::jsonb) AS arrivals FROM {st} s
  WHERE s.run_id = $1 AND {not_final} AND s.pending IS NOT NULL FOR UPDATE
), me AS (
  UPDATE {nodes} n SET state = CASE WHEN $21 THEN 'idle' ELSE 'done' END, output = $3::text::jsonb,
    route = CASE WHEN $21 THEN NULL ELSE $4::text[] END, wake_at = NULL, iteration = n.iteration + $21::int,
    joined = CASE WHEN $21 THEN '{}' ELSE n.joined || ARRAY(SELECT t.id FROM unnest($5::text[], $10::bool[]) AS t(id, self) WHERE t.self) END,
    -- typescriptCompat: the arrivals whose join the coordination store decides hold the run open
    -- (one pending each) until sql/compat_settle.sql has enqueued what they fired
    joined_now = CASE WHEN cardinality($28::text[]) > 0 THEN $28::text[] ELSE n.joined_now END
  FROM lk WHERE n.run_id = $1 AND n.node_id = $2 AND n.state IN ('queued', 'sleeping', 'woken') AND n.iteration = $22
  RETURNING n.input
--[full
), ow AS (
  -- the nodes this fallback arrives for count once at each join: their rows say where they were counted
  UPDATE {nodes} o SET joined_now = ARRAY(SELECT t FROM unnest(p.targets) t WHERE NOT t = ANY(o.joined)),
    joined = o.joined || ARRAY(SELECT t FROM unnest(p.targets) t WHERE NOT t = ANY(o.joined))
  FROM me, (SELECT w.owner, array_agg(w.target) AS targets FROM unnest($14::text[], $15::text[]) AS w(owner, target)
            GROUP BY w.owner) p
  WHERE o.run_id = $1 AND o.node_id = ANY($14::text[]) AND o.node_id = p.owner
  RETURNING o.node_id, o.state, o.output, o.input, o.joined_now, o.iteration
--full]
), x AS (
  SELECT t.*, c.cur + c.new AS after, t.fire AND t.expected > 0
      AND ((t.is_any AND c.cur = 0 AND c.new > 0) OR (NOT t.is_any AND c.cur + c.new >= t.expected)) AS completes
  FROM unnest($5::text[], $6::bool[], $7::int[], $8::bool[], $9::bool[], $10::bool[], $11::bool[], $12::text[],
    $13::bool[], $19::bool[], $26::bool[]) AS t(id, ready, expected, is_any, fire, self, writes, input, binds, deferred,
    passes), me, lk,
    LATERAL (SELECT COALESCE((lk.arrivals ->> t.id)::int, 0) AS cur, (CASE WHEN t.self THEN 1 ELSE 0 END)
--[full
      + (SELECT count(*) FROM ow, unnest(ow.joined_now) j WHERE j = t.id)
--full]
      AS new) c
--[full
), rs AS (
  -- a loop going round again: its body's settled rows become idle for the next iteration (outputs
  -- stay until overwritten, as in FlowRuntime's context); those it enqueues are reset in `upd`
  UPDATE {nodes} n SET state = 'idle', iteration = n.iteration + 1, route = NULL, joined = '{}', joined_now = NULL,
    fired_by = NULL, wake_at = NULL
  FROM me WHERE n.run_id = $1 AND n.node_id = ANY($20::text[]) AND NOT n.node_id = ANY($5::text[])
    AND n.state IN ('idle', 'done')
  RETURNING n.node_id
), sp AS (
  -- a batch's items: rows of their own, queued, their input bound
  INSERT INTO {nodes} (run_id, node_id, state, input, bound, spec, fired_by)
  SELECT $1, t.id, 'queued', t.input::jsonb, true, t.spec::jsonb, $2
  FROM me, unnest($23::text[], $24::text[], $25::text[]) AS t(id, input, spec)
  ON CONFLICT (run_id, node_id) DO NOTHING
  RETURNING node_id
--full]
), upd AS (
  -- A touched row is written only when it changes: enqueued, or given an input. An 'all' join's
  -- arrivals are counted in the status row, and (`deferred`: no transform reads it before) its
  -- input is the one the completing arrival writes, the last writer: its row is written once.
  UPDATE {nodes} n SET
    state = CASE WHEN {fires} THEN 'queued' ELSE n.state END,
    fired_by = CASE WHEN {fires} THEN $2 ELSE n.fired_by END,
    iteration = n.iteration + (n.node_id = ANY($20::text[]) AND n.state IN ('idle', 'done'))::int,
    route = CASE WHEN n.node_id = ANY($20::text[]) AND n.state IN ('idle', 'done') THEN NULL ELSE n.route END,
    joined = CASE WHEN n.node_id = ANY($20::text[]) AND n.state IN ('idle', 'done') THEN '{}' ELSE n.joined END,
    bound = n.bound OR x.binds,
    input = CASE WHEN x.writes AND x.passes THEN $3::text::jsonb WHEN x.writes THEN x.input::jsonb ELSE n.input END
  -- `= ANY($5)` makes it an index lookup of the touched rows (never a scan of the run's rows)
  FROM x WHERE n.run_id = $1 AND n.node_id = ANY($5::text[]) AND n.node_id = x.id
    AND (x.ready OR x.completes OR NOT (x.deferred AND x.expected > 0 AND NOT x.is_any))
  RETURNING n.node_id, n.state = 'queued' AND n.fired_by = $2 AS fired, n.state, n.output, n.input, n.iteration
), nx AS (
  SELECT lk.pending - 1 + (SELECT count(*) FROM upd WHERE upd.fired)
--[full
    + (SELECT count(*) FROM sp) + cardinality($28::text[])
--full]
    AS pending
  FROM lk, me
--[full
    , (SELECT count(*) FROM rs) r
), ck AS (
  -- typescriptCompat: the keys the TypeScript adapter's workers read, written as we commit them
  SELECT CASE WHEN $3::text IS NULL THEN '{}'::jsonb
      ELSE jsonb_build_object('_outputs.' || $2, $3::text::jsonb, $2::text, $3::text::jsonb) END
    || COALESCE((SELECT jsonb_object_agg('_inputs.' || x.id, CASE WHEN x.passes THEN $3::text::jsonb ELSE x.input::jsonb END)
                 FROM x WHERE x.writes AND CASE WHEN x.passes THEN $3::text IS NOT NULL ELSE x.input IS NOT NULL END),
                '{}'::jsonb) AS keys,
    ARRAY(SELECT '_inputs.' || x.id FROM x
          WHERE x.writes AND CASE WHEN x.passes THEN $3::text IS NULL ELSE x.input IS NULL END) AS dropped
  FROM me WHERE $27
--full]
), own AS (
  -- what this statement wrote to node rows, as context keys (the fold below reads the others)
  SELECT CASE WHEN $3::text IS NULL THEN '{}'::jsonb
      ELSE jsonb_build_object('_outputs.' || $2, $3::text::jsonb, $2::text, $3::text::jsonb) END
    || COALESCE((SELECT jsonb_object_agg('_inputs.' || $2, me.input) FROM me WHERE me.input IS NOT NULL), '{}'::jsonb)
    || COALESCE((SELECT jsonb_object_agg(e.k, e.v) FROM (SELECT node_id, state, output, input, iteration FROM upd
--[full
                 UNION ALL SELECT node_id, state, output, input, iteration FROM ow
--full]
                 ) r,
         LATERAL (SELECT '_outputs.' || r.node_id, r.output WHERE {has_output(r)}
                  UNION ALL SELECT r.node_id, r.output WHERE {has_output(r)}
                  UNION ALL SELECT '_inputs.' || r.node_id, r.input WHERE r.input IS NOT NULL) e(k, v)), '{}'::jsonb) AS keys
), gone AS (
  -- an undefined output removes the node's keys (FlowRuntime deletes them), e.g. an initial key named like it
  SELECT CASE WHEN $3::text IS NULL THEN ARRAY['_outputs.' || $2, $2::text] ELSE '{}'::text[] END AS keys
--[plain
    -- (typed here: only the full statement reads them)
    , cardinality($14::text[]) + cardinality($15::text[]) + cardinality($23::text[]) + cardinality($24::text[])
      + cardinality($25::text[]) AS unused
--plain]
), c AS (
  UPDATE {ctx} t SET context_data = CASE WHEN nx.pending = 0 AND NOT $27
      THEN ((t.context_data - $17::text[] - gone.keys) || $16::text::jsonb) || {fold} || own.keys
--[full
      ELSE (t.context_data - $17::text[] - gone.keys - COALESCE(ck.dropped, '{}'::text[])) || $16::text::jsonb
        || COALESCE(ck.keys, '{}'::jsonb) END
  FROM nx CROSS JOIN own CROSS JOIN gone LEFT JOIN ck ON true
--full]
--[plain
      ELSE (t.context_data - $17::text[] - gone.keys) || $16::text::jsonb END
  FROM nx CROSS JOIN own CROSS JOIN gone
--plain]
  -- (an undefined output's keys are looked for only then: `?|` reads the whole document)
  WHERE t.run_id = $1 AND ($18 OR nx.pending = 0 OR $27 OR (cardinality(gone.keys) > 0 AND t.context_data ?| gone.keys))
  RETURNING t.context_data
), u AS (
  UPDATE {st} AS s SET pending = nx.pending, updated_at = now(),
    -- join arrivals (a completed 'all' join's count is dropped: the map holds the joins in progress)
    arrivals = (COALESCE(s.arrivals, '{}'::jsonb) || COALESCE((SELECT jsonb_object_agg(x.id, x.after) FROM x
        WHERE x.expected > 0 AND (x.is_any OR NOT x.completes)), '{}'::jsonb))
      - ARRAY(SELECT x.id FROM x WHERE x.completes AND NOT x.is_any),
    status = CASE WHEN nx.pending = 0 AND NOT $27 AND s.status = 'running' THEN {ended_status} ELSE s.status END,
    status_data = CASE WHEN nx.pending = 0 AND NOT $27 AND s.status = 'running' THEN {ended_context} ELSE s.status_data END
  FROM nx LEFT JOIN c ON true WHERE s.run_id = $1
  RETURNING s.run_id, s.status, s.error, nx.pending = 0 AND NOT $27 AS drained
), f AS (
  SELECT upd.node_id AS id, upd.iteration FROM upd WHERE upd.fired
--[full
  UNION ALL SELECT sp.node_id, 0 FROM sp
--full]
)
SELECT ARRAY(SELECT f.id FROM f ORDER BY f.id), ARRAY(SELECT f.iteration FROM f ORDER BY f.id),
  CASE WHEN u.drained AND u.status IN ('completed', 'failed', 'awaiting') THEN u.status END,
  CASE WHEN u.drained AND u.status IN ('completed', 'failed') THEN {notify_u} END,
  u.error
FROM u
