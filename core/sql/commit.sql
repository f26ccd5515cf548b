-- Commits a completed node's effect once, in one statement: its row (output, route), the rows of the
-- successors it touches (their inputs, join arrivals, and those it enqueues), its context writes, the
-- run's pending count, and, when nothing of the run remains pending, the run's outputs folded into
-- its context row and its final status. No row returned: the node was not pending (another delivery
-- committed it) or the run has ended.
-- $1 run id, $2 node id, $3 output (JSON text; NULL: undefined), $4 route (chosen successors),
-- $5 successors with one predecessor, $6..$10 join arrivals (target, members as a JSON array,
-- expected count, is 'any', may fire), $11 targets whose input its edges wrote (`_inputs.<target>`),
-- $12 those inputs (JSON text; NULL: undefined), $13 context sets (JSON object text), $14 context
-- deletes, $15 has context writes, $16 targets whose input is bound from now on (see routing.rs).
-- Returns: the successors it enqueued, the final status when it ended the run, the NOTIFY.
WITH lk AS (
  SELECT s.pending FROM {st} s WHERE s.run_id = $1 AND {not_final} AND s.pending IS NOT NULL FOR UPDATE
), me AS (
  UPDATE {nodes} n SET state = 'done', output = $3::text::jsonb, route = $4::text[]
  FROM lk WHERE n.run_id = $1 AND n.node_id = $2 AND n.state = 'queued'
  RETURNING n.bound, n.input
), tg AS (
  -- locked, so these are the rows as they are now, not as this statement's snapshot saw them
  SELECT n.node_id, n.state, n.arrived FROM {nodes} n
  WHERE n.run_id = $1 AND EXISTS (SELECT 1 FROM me)
    AND (n.node_id = ANY($5::text[]) OR n.node_id = ANY($6::text[]) OR n.node_id = ANY($11::text[]))
  FOR UPDATE
), j AS (
  SELECT t.target, t.expected, t.is_any, t.fire, tg.state, tg.arrived AS before,
    tg.arrived || COALESCE((SELECT jsonb_object_agg(m, true) FROM jsonb_array_elements_text(t.members::jsonb) m),
      '{}'::jsonb) AS after
  FROM unnest($6::text[], $7::text[], $8::int[], $9::bool[], $10::bool[]) AS t(target, members, expected, is_any, fire)
  JOIN tg ON tg.node_id = t.target
), fired AS (
  SELECT j.target AS node_id FROM j WHERE j.fire AND j.state = 'idle' AND (
    (j.is_any AND j.before = '{}'::jsonb AND j.after <> '{}'::jsonb)
    OR (NOT j.is_any AND (SELECT count(*) FROM jsonb_object_keys(j.after)) >= j.expected))
  UNION SELECT tg.node_id FROM tg WHERE tg.node_id = ANY($5::text[]) AND tg.state = 'idle'
), upd AS (
  UPDATE {nodes} n SET
    state = CASE WHEN x.fired THEN 'queued' ELSE n.state END,
    fired_by = CASE WHEN x.fired THEN $2 ELSE n.fired_by END,
    arrived = COALESCE(x.after, n.arrived),
    bound = n.bound OR n.node_id = ANY($16::text[]),
    input = CASE WHEN x.binds THEN x.value::jsonb ELSE n.input END
  FROM (
    SELECT tg.node_id, j.after, f.node_id IS NOT NULL AS fired, b.target IS NOT NULL AS binds, b.value
    FROM tg LEFT JOIN j ON j.target = tg.node_id LEFT JOIN fired f ON f.node_id = tg.node_id
    LEFT JOIN unnest($11::text[], $12::text[]) AS b(target, value) ON b.target = tg.node_id
  ) x
  WHERE n.run_id = $1 AND n.node_id = x.node_id
  RETURNING n.node_id, x.fired, n.state, n.output, n.input
), nx AS (
  SELECT lk.pending - 1 + (SELECT count(*) FROM upd WHERE upd.fired) AS pending FROM lk, me
), own AS (
  -- what this statement wrote to node rows, as context keys (the fold below reads the others)
  SELECT CASE WHEN $3::text IS NULL THEN '{}'::jsonb
      ELSE jsonb_build_object('_outputs.' || $2, $3::text::jsonb, $2::text, $3::text::jsonb) END
    || COALESCE((SELECT jsonb_object_agg('_inputs.' || $2, me.input) FROM me WHERE me.input IS NOT NULL), '{}'::jsonb)
    || COALESCE((SELECT jsonb_object_agg(e.k, e.v) FROM upd r,
         LATERAL (SELECT '_outputs.' || r.node_id, r.output WHERE r.state = 'done' AND r.output IS NOT NULL
                  UNION ALL SELECT r.node_id, r.output WHERE r.state = 'done' AND r.output IS NOT NULL
                  UNION ALL SELECT '_inputs.' || r.node_id, r.input WHERE r.input IS NOT NULL) e(k, v)), '{}'::jsonb) AS keys
), gone AS (
  -- an undefined output removes the node's keys (FlowRuntime deletes them), e.g. an initial key named like it
  SELECT CASE WHEN $3::text IS NULL THEN ARRAY['_outputs.' || $2, $2::text] ELSE '{}'::text[] END AS keys
), c AS (
  UPDATE {ctx} t SET context_data = CASE WHEN nx.pending = 0
      THEN ((t.context_data - $14::text[] - gone.keys) || $13::text::jsonb) || {fold} || own.keys
      ELSE (t.context_data - $14::text[] - gone.keys) || $13::text::jsonb END
  FROM nx, own, gone WHERE t.run_id = $1 AND ($15 OR nx.pending = 0 OR t.context_data ?| gone.keys)
  RETURNING t.context_data
), u AS (
  UPDATE {st} AS s SET pending = nx.pending, updated_at = now(),
    status = CASE WHEN nx.pending = 0 AND s.status = 'running' THEN {ended_status} ELSE s.status END,
    status_data = CASE WHEN nx.pending = 0 AND s.status = 'running' THEN {ended_context} ELSE s.status_data END
  FROM nx LEFT JOIN c ON true WHERE s.run_id = $1
  RETURNING s.run_id, s.status, nx.pending = 0 AS drained
)
SELECT ARRAY(SELECT upd.node_id FROM upd WHERE upd.fired),
  CASE WHEN u.drained AND u.status IN ('completed', 'failed') THEN u.status END,
  CASE WHEN u.drained AND u.status IN ('completed', 'failed') THEN {notify_u} END
FROM u
