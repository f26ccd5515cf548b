-- Reconcile enqueues nodes: idle (or missing) rows become queued and count as pending.
-- $1 run id, $2 node ids. Returns a row when the run is not final.
WITH lk AS (
  SELECT 1 FROM {st} s WHERE s.run_id = $1 AND {not_final} FOR UPDATE
), q AS (
  INSERT INTO {nodes} AS n (run_id, node_id, state) SELECT $1, id, 'queued' FROM lk, unnest($2::text[]) id
  ON CONFLICT (run_id, node_id) DO UPDATE SET state = 'queued' WHERE n.state = 'idle'
  RETURNING 1
)
UPDATE {st} AS s SET pending = COALESCE(s.pending, 0) + (SELECT count(*) FROM q), updated_at = now()
FROM lk WHERE s.run_id = $1 RETURNING 1
