-- Keeps `updated_at` of running runs with nodes running here fresh (a long node is not stalled).
-- $1 run ids.
UPDATE {st} SET updated_at = now() WHERE run_id = ANY($1::text[]) AND status = 'running'
