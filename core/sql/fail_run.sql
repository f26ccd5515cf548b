-- Fails a run at once (unknown blueprint, node not in blueprint); never overwrites a final status.
-- $1 run id, $2 reason. Returns the NOTIFY when this call wrote it.
INSERT INTO {st} AS s (run_id, status, status_data, updated_at, error, pending)
VALUES ($1, 'failed', jsonb_build_object('status', 'failed', 'reason', $2::text), now(), $2, 0)
ON CONFLICT (run_id) DO UPDATE SET status = 'failed', status_data = EXCLUDED.status_data,
  error = COALESCE(s.error, EXCLUDED.error), updated_at = now()
WHERE {not_final} RETURNING {notify}
