-- Records a node failure: the node leaves the pending count, the first failure becomes the run's
-- reason, the node's context writes are kept, and the run fails when nothing of it remains pending
-- (its outputs folded into the context row first). Nothing happens when the node was not pending.
-- $1 run id, $2 node id, $3 reason, $4 context deletes, $5 context sets (JSON object text).
-- Returns: the NOTIFY, whether this call ended the run, the run's first error.
WITH lk AS (
  SELECT s.pending FROM {st} s WHERE s.run_id = $1 AND {not_final} FOR UPDATE
), me AS (
  UPDATE {nodes} n SET state = 'failed', wake_at = NULL FROM lk
  WHERE n.run_id = $1 AND n.node_id = $2 AND n.state IN ('queued', 'woken') RETURNING 1
), nx AS (
  SELECT COALESCE(lk.pending, 1) - 1 AS pending FROM lk, me
), c AS (
  UPDATE {ctx} t SET context_data = CASE WHEN nx.pending = 0
      THEN ((t.context_data - $4::text[]) || $5::text::jsonb) || {fold}
      ELSE (t.context_data - $4::text[]) || $5::text::jsonb END
  FROM nx WHERE t.run_id = $1 AND ($5::text <> '{}' OR cardinality($4::text[]) > 0 OR nx.pending = 0)
  RETURNING 1
)
UPDATE {st} AS s SET pending = nx.pending, error = COALESCE(s.error, $3),
  status = CASE WHEN nx.pending = 0 AND s.status = 'running' THEN 'failed' ELSE s.status END,
  status_data = CASE WHEN nx.pending = 0 AND s.status = 'running'
    THEN jsonb_build_object('status', 'failed', 'reason', COALESCE(s.error, $3)) ELSE s.status_data END,
  updated_at = now()
FROM nx, (SELECT count(*) FROM c) w WHERE s.run_id = $1
RETURNING CASE WHEN s.status = 'failed' THEN {notify} END, s.status = 'failed', s.error
