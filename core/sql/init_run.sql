-- First sight of a run started over the wire protocol (no bookkeeping yet): the context row gets
-- `initial` keys (existing keys win), every node a row, the status row is tracked.
-- $1 run id, $2 initial context (JSON text), $3 blueprint id, $4 all node ids, $5 the node ids queued.
WITH c AS (
  INSERT INTO {ctx} AS t (run_id, context_data) VALUES ($1, $2::text::jsonb)
  ON CONFLICT (run_id) DO UPDATE SET context_data = EXCLUDED.context_data || COALESCE(t.context_data, '{}'::jsonb)
  RETURNING 1
), n AS (
  INSERT INTO {nodes} (run_id, node_id, state)
  SELECT $1, id, CASE WHEN id = ANY($5::text[]) THEN 'queued' ELSE 'idle' END FROM unnest($4::text[]) id, c
  ON CONFLICT (run_id, node_id) DO NOTHING
  RETURNING state
)
INSERT INTO {st} AS s (run_id, status, status_data, updated_at, blueprint_id, pending)
SELECT $1, 'running', '{"status":"running"}'::jsonb, now(), $3, (SELECT count(*) FROM n WHERE n.state = 'queued') FROM c
ON CONFLICT (run_id) DO UPDATE SET status = COALESCE(s.status, 'running'),
  status_data = COALESCE(s.status_data, EXCLUDED.status_data), blueprint_id = COALESCE(s.blueprint_id, EXCLUDED.blueprint_id),
  pending = COALESCE(s.pending, EXCLUDED.pending), updated_at = now()
WHERE {not_final}
