-- The runs list, newest first. $1 limit, $2 status or NULL.
-- Done nodes: node rows done; for a run without node rows (another writer's), its `_outputs.*` keys.
SELECT s.run_id, s.status, COALESCE(s.blueprint_id, c.context_data ->> 'blueprintId'),
  EXTRACT(EPOCH FROM (now() - s.updated_at))::float8,
  COALESCE(NULLIF((SELECT count(*) FROM {nodes} n WHERE n.run_id = s.run_id AND n.state = 'done'), 0),
    (SELECT count(*) FROM jsonb_object_keys(COALESCE(c.context_data, '{}'::jsonb)) k WHERE k LIKE '\_outputs.%')),
  s.error, s.status_data ->> 'reason'
FROM {st} s LEFT JOIN {ctx} c ON c.run_id = s.run_id
WHERE ($2::text IS NULL OR s.status = $2) ORDER BY s.updated_at DESC LIMIT $1
