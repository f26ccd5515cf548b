-- Everything stored about a run (getRun, reconcile, resume). $1 run id. The last column: the text of
-- a completed payload's context stored with a null `serializedContext` (too big), else NULL.
SELECT s.status, s.status_data::text, c.context_data::text,
  EXTRACT(EPOCH FROM (now() - s.updated_at))::float8, s.blueprint_id, s.error,
  to_char(s.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
  (SELECT COALESCE(json_agg({node_json})::text, '[]')
   FROM {nodes} n WHERE n.run_id = $1),
  {missing_serialized_context}
FROM (SELECT $1::text AS run_id) k
LEFT JOIN {st} s ON s.run_id = k.run_id
LEFT JOIN {ctx} c ON c.run_id = k.run_id
