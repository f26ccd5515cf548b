-- First sight of a run started over the wire protocol, or advanced by workers without our
-- bookkeeping (the TypeScript adapter): the context row gets `initial` keys (existing keys win),
-- every node a row (those with an output in the context `done`, with it), the status row is tracked,
-- with the join arrivals those done nodes made.
-- $1 run id, $2 initial context (JSON text), $3 blueprint id, $4 all node ids, $5 the node ids queued,
-- $6 the node ids done (adopted), $7 join arrivals (JSON object text: join id -> count).
WITH c AS (
  INSERT INTO {ctx} AS t (run_id, context_data) VALUES ($1, $2::text::jsonb)
  ON CONFLICT (run_id) DO UPDATE SET context_data = EXCLUDED.context_data || COALESCE(t.context_data, '{}'::jsonb)
  RETURNING t.context_data
), n AS (
  INSERT INTO {nodes} (run_id, node_id, state, output)
  SELECT $1, id, CASE WHEN id = ANY($6::text[]) THEN 'done' WHEN id = ANY($5::text[]) THEN 'queued' ELSE 'idle' END,
    CASE WHEN id = ANY($6::text[]) THEN c.context_data -> ('_outputs.' || id) END
  FROM unnest($4::text[]) id, c
  ON CONFLICT (run_id, node_id) DO NOTHING
  RETURNING state
)
INSERT INTO {st} AS s (run_id, status, status_data, updated_at, blueprint_id, pending, arrivals)
SELECT $1, 'running', '{"status":"running"}'::jsonb, now(), $3, (SELECT count(*) FROM n WHERE n.state = 'queued'),
  $7::text::jsonb FROM c
ON CONFLICT (run_id) DO UPDATE SET status = COALESCE(s.status, 'running'),
  status_data = COALESCE(s.status_data, EXCLUDED.status_data), blueprint_id = COALESCE(s.blueprint_id, EXCLUDED.blueprint_id),
  pending = COALESCE(s.pending, EXCLUDED.pending), arrivals = COALESCE(s.arrivals, EXCLUDED.arrivals), updated_at = now()
WHERE {not_final}
