-- Resumes an awaiting run: the awaiting nodes complete (output, route), their successors' inputs are
-- bound, the resume keys are written, the run is `running` again (reconcile then enqueues successors).
-- $1 run id, $2 context sets (JSON object text), $3 awaiting node ids, $4 their outputs (JSON text),
-- $5 their routes (JSON arrays), $6 targets whose input the edges wrote, $7 those inputs (JSON text;
-- NULL: undefined), $8 targets whose input is bound from now on.
WITH lk AS (
  SELECT 1 FROM {st} s WHERE s.run_id = $1 AND s.status = 'awaiting' FOR UPDATE
), aw AS (
  UPDATE {nodes} n SET state = 'done', output = a.output::jsonb,
    route = ARRAY(SELECT jsonb_array_elements_text(a.route::jsonb))
  FROM lk, unnest($3::text[], $4::text[], $5::text[]) AS a(id, output, route)
  WHERE n.run_id = $1 AND n.node_id = ANY($3::text[]) AND n.node_id = a.id RETURNING 1
), bd AS (
  UPDATE {nodes} n SET bound = n.bound OR n.node_id = ANY($8::text[]), input = b.value::jsonb
  FROM lk, unnest($6::text[], $7::text[]) AS b(target, value)
  WHERE n.run_id = $1 AND n.node_id = ANY($6::text[]) AND n.node_id = b.target AND NOT (n.node_id = ANY($3::text[])) RETURNING 1
), c AS (
  UPDATE {ctx} SET context_data = (context_data - ARRAY['_awaitingNodeIds', '_awaitingDetails']) || $2::text::jsonb
  FROM lk WHERE run_id = $1 RETURNING 1
)
UPDATE {st} AS s SET status = 'running', status_data = jsonb_build_object('status', 'running'), updated_at = now()
FROM c, (SELECT count(*) FROM aw) a, (SELECT count(*) FROM bd) b WHERE s.run_id = $1 AND s.status = 'awaiting'
RETURNING 1
