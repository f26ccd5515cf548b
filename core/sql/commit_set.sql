-- The plain commits (sql/commit.sql's plain statement) of several jobs, of distinct runs, in one
-- statement: each member's effect is what the plain statement makes of it, computed over sets
-- instead of one job's parameters (group_commit.rs sends it for a group's plain members). A
-- statement's start-up (the plan's nodes and expressions, the protocol, the implicit transaction)
-- costs more than a plain commit's rows: it is paid once for the group. Members of one run are never
-- in one set: they would update the same status row twice. Members answer by their ordinal, `i`.
-- Per member: $1 run id, $2 node id, $3 output (JSON text; NULL: undefined), $4 route (an array
-- literal), $5 context sets (JSON object text), $6 context deletes (an array literal), $7 has context
-- writes, $8 the job's iteration. Per touched successor of any member (flattened): $9 its member's
-- ordinal, then as sql/commit.sql's $5..$13, $19, $26: $10 id, $11 ready, $12 join arrival's expected
-- count, $13 'any' join, $14 the arrival may fire it, $15 this node arrives at it, $16 an edge wrote
-- its input, $17 that input, $18 its input is bound from now on, $19 no transform reads its input
-- before it runs, $20 the input an edge wrote is the output as it is.
-- Every table is read by the members' run ids (`run_id = ANY($1)`, with sequential scans off:
-- group_commit.rs `BEGIN_SET`): the sets' sizes are unknown to the planner, and it must never scan
-- a table. Not by node ids too: an index scan over two arrays probes every pair (runs × node ids; a
-- fan-out's start touches 50 successors) and made the fan-out 0.6× one statement per member.
-- Returns per member applied: sql/commit.sql's columns, then the member's ordinal.
WITH m AS (
  SELECT m.*, m.output::jsonb AS value
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bool[], $8::int[])
    WITH ORDINALITY AS m(run_id, node_id, output, route, sets, deletes, writes, iteration, i)
), lk AS (
  -- locked in run order, as every group takes its runs' locks
  SELECT m.i, s.pending, COALESCE(s.arrivals, '{}'::jsonb) AS arrivals FROM m JOIN {st} s ON s.run_id = m.run_id
  WHERE s.run_id = ANY($1::text[]) AND {not_final} AND s.pending IS NOT NULL ORDER BY s.run_id FOR UPDATE OF s
), touched AS (
  SELECT * FROM unnest($9::int[], $10::text[], $11::bool[], $12::int[], $13::bool[], $14::bool[], $15::bool[],
    $16::bool[], $17::text[], $18::bool[], $19::bool[], $20::bool[])
    AS t(i, id, ready, expected, is_any, fire, self, writes, input, binds, deferred, passes)
), me AS (
  UPDATE {nodes} n SET state = 'done', output = m.value, route = m.route::text[], wake_at = NULL,
    joined = n.joined || ARRAY(SELECT t.id FROM touched t WHERE t.i = m.i AND t.self)
  FROM m JOIN lk ON lk.i = m.i
  WHERE n.run_id = ANY($1::text[]) AND n.run_id = m.run_id AND n.node_id = m.node_id AND n.state IN ('queued', 'sleeping', 'woken')
    AND n.iteration = m.iteration
  RETURNING m.i, n.input
), x AS (
  SELECT t.*, m.run_id, m.node_id AS by, m.value AS by_output, c.cur + c.new AS after, t.fire AND t.expected > 0
      AND ((t.is_any AND c.cur = 0 AND c.new > 0) OR (NOT t.is_any AND c.cur + c.new >= t.expected)) AS completes
  FROM touched t JOIN me ON me.i = t.i JOIN lk ON lk.i = t.i JOIN m ON m.i = t.i,
    LATERAL (SELECT COALESCE((lk.arrivals ->> t.id)::int, 0) AS cur, (CASE WHEN t.self THEN 1 ELSE 0 END) AS new) c
), upd AS (
  -- as in sql/commit.sql: a touched row is written only when it changes
  UPDATE {nodes} n SET
    state = CASE WHEN n.state = 'idle' AND (x.ready OR x.completes) THEN 'queued' ELSE n.state END,
    fired_by = CASE WHEN n.state = 'idle' AND (x.ready OR x.completes) THEN x.by ELSE n.fired_by END,
    bound = n.bound OR x.binds,
    input = CASE WHEN x.writes AND x.passes THEN x.by_output WHEN x.writes THEN x.input::jsonb ELSE n.input END
  FROM x WHERE n.run_id = ANY($1::text[]) AND n.run_id = x.run_id AND n.node_id = x.id
    AND (x.ready OR x.completes OR NOT (x.deferred AND x.expected > 0 AND NOT x.is_any))
  RETURNING x.i, n.node_id, n.state = 'queued' AND n.fired_by = x.by AS fired, n.state, n.output, n.input, n.iteration
), nx AS (
  SELECT lk.i, m.run_id, m.node_id, lk.pending - 1 + (SELECT count(*) FROM upd WHERE upd.i = lk.i AND upd.fired) AS pending
  FROM lk JOIN me ON me.i = lk.i JOIN m ON m.i = lk.i
), own AS (
  -- what this statement wrote to a member's node rows, as context keys (the fold reads the others),
  -- and the keys an undefined output removes
  SELECT nx.i, CASE WHEN m.value IS NULL THEN '{}'::jsonb
      ELSE jsonb_build_object('_outputs.' || m.node_id, m.value, m.node_id, m.value) END
    || CASE WHEN me.input IS NOT NULL THEN jsonb_build_object('_inputs.' || m.node_id, me.input) ELSE '{}'::jsonb END
    || COALESCE((SELECT jsonb_object_agg(e.k, e.v) FROM upd r,
         LATERAL (SELECT '_outputs.' || r.node_id, r.output WHERE {has_output(r)}
                  UNION ALL SELECT r.node_id, r.output WHERE {has_output(r)}
                  UNION ALL SELECT '_inputs.' || r.node_id, r.input WHERE r.input IS NOT NULL) e(k, v)
         WHERE r.i = nx.i), '{}'::jsonb) AS keys,
    CASE WHEN m.value IS NULL THEN ARRAY['_outputs.' || m.node_id, m.node_id] ELSE '{}'::text[] END AS gone
  FROM nx JOIN m ON m.i = nx.i JOIN me ON me.i = nx.i
), c AS (
  UPDATE {ctx} t SET context_data = CASE WHEN nx.pending = 0
      THEN ((t.context_data - m.deletes::text[] - own.gone) || m.sets::jsonb) || {fold} || own.keys
      ELSE (t.context_data - m.deletes::text[] - own.gone) || m.sets::jsonb END
  FROM nx JOIN own ON own.i = nx.i JOIN m ON m.i = nx.i
  WHERE t.run_id = ANY($1::text[]) AND t.run_id = nx.run_id
    AND (m.writes OR nx.pending = 0 OR (cardinality(own.gone) > 0 AND t.context_data ?| own.gone))
  RETURNING nx.i, t.context_data
), u AS (
  UPDATE {st} AS s SET pending = nx.pending, updated_at = now(),
    arrivals = (COALESCE(s.arrivals, '{}'::jsonb) || COALESCE((SELECT jsonb_object_agg(x.id, x.after) FROM x
        WHERE x.i = nx.i AND x.expected > 0 AND (x.is_any OR NOT x.completes)), '{}'::jsonb))
      - ARRAY(SELECT x.id FROM x WHERE x.i = nx.i AND x.completes AND NOT x.is_any),
    status = CASE WHEN nx.pending = 0 AND s.status = 'running' THEN {ended_status} ELSE s.status END,
    status_data = CASE WHEN nx.pending = 0 AND s.status = 'running' THEN {ended_context} ELSE s.status_data END
  FROM nx LEFT JOIN c ON c.i = nx.i WHERE s.run_id = ANY($1::text[]) AND s.run_id = nx.run_id
  RETURNING nx.i, s.run_id, s.status, s.error, nx.pending = 0 AS drained
), f AS (
  SELECT upd.i, upd.node_id AS id, upd.iteration FROM upd WHERE upd.fired
)
SELECT ARRAY(SELECT f.id FROM f WHERE f.i = u.i ORDER BY f.id),
  ARRAY(SELECT f.iteration FROM f WHERE f.i = u.i ORDER BY f.id),
  CASE WHEN u.drained AND u.status IN ('completed', 'failed', 'awaiting') THEN u.status END,
  CASE WHEN u.drained AND u.status IN ('completed', 'failed') THEN {notify_u} END,
  u.error, u.i
FROM u
