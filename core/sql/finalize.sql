-- Writes the final status of a running run with nothing pending, once (its outputs folded into the
-- context row). $1 run id. Returns: the status, the NOTIFY.
WITH lk AS (
  SELECT 1 FROM {st} s WHERE s.run_id = $1 AND s.status = 'running' AND s.pending = 0 FOR UPDATE
), c AS (
  UPDATE {ctx} t SET context_data = t.context_data || {fold} FROM lk WHERE t.run_id = $1 RETURNING t.context_data
)
UPDATE {st} AS s SET status = {ended_status}, status_data = {ended_context}, updated_at = now()
FROM c WHERE s.run_id = $1 RETURNING s.status, {notify}
