-- Keeps `updated_at` of running runs with nodes running here fresh (a long node is not stalled).
-- The rows are locked in run id order, as group commits lock them (group_commit.rs): no deadlock.
-- $1 run ids.
UPDATE {st} s SET updated_at = now()
FROM (SELECT run_id FROM {st} WHERE run_id = ANY($1::text[]) AND status = 'running' ORDER BY run_id FOR UPDATE) o
WHERE s.run_id = o.run_id
