-- Cancels a run that has not ended (its outputs folded into the context row). $1 run id, $2 reason.
-- Returns the NOTIFY when this call cancelled it.
WITH lk AS (
  SELECT 1 FROM {st} s WHERE s.run_id = $1 AND {not_final} FOR UPDATE
), zz AS (
  -- its sleeping nodes wake no more, its subflow nodes wait no more (runs.rs cancels their children)
  UPDATE {nodes} n SET state = 'idle', wake_at = NULL FROM lk
  WHERE n.run_id = $1 AND n.state IN ('sleeping', 'woken', 'subflow') RETURNING 1
), c AS (
  UPDATE {ctx} t SET context_data = t.context_data || {fold} FROM lk WHERE t.run_id = $1 RETURNING 1
)
UPDATE {st} AS s SET status = 'cancelled', status_data = jsonb_build_object('status', 'cancelled', 'reason', $2::text),
  updated_at = now()
FROM lk, (SELECT count(*) FROM c) w, (SELECT count(*) FROM zz) z WHERE s.run_id = $1 RETURNING {notify}
