-- Creates a run: its status row (running, its start nodes pending), a row per node, its context row.
-- Nothing is written when a run with this id or idempotency key exists.
-- $1 run id, $2 blueprint id, $3 context (JSON text), $4 all node ids, $5 start node ids, $6 idempotency key.
WITH s AS (
  INSERT INTO {st} (run_id, status, status_data, updated_at, blueprint_id, pending, idempotency_key)
  VALUES ($1, 'running', '{"status":"running"}'::jsonb, now(), $2, cardinality($5::text[]), $6)
  ON CONFLICT DO NOTHING RETURNING run_id
), n AS (
  INSERT INTO {nodes} (run_id, node_id, state)
  SELECT s.run_id, id, CASE WHEN id = ANY($5::text[]) THEN 'queued' ELSE 'idle' END FROM s, unnest($4::text[]) id
  ON CONFLICT (run_id, node_id) DO NOTHING
)
INSERT INTO {ctx} AS t (run_id, context_data) SELECT run_id, $3::text::jsonb FROM s
ON CONFLICT (run_id) DO UPDATE SET context_data = COALESCE(t.context_data, '{}'::jsonb) || EXCLUDED.context_data
RETURNING run_id
