-- Running runs whose last change is older than $1 seconds, oldest first, at most $2. At $1 = 0
-- (reconcile "now", e.g. `reconcile --stalled-seconds 0` to adopt every run in flight at an
-- upgrade) also the runs with a context row and no status row: the TypeScript adapter writes
-- none before a run ends, so they have no last change to judge by (first, in run id order).
SELECT r.run_id FROM (
  SELECT s.run_id, s.updated_at FROM {st} s WHERE (s.status IS NULL OR s.status = 'running')
    AND s.updated_at < now() - make_interval(secs => $1::float8)
  UNION ALL
  SELECT c.run_id, NULL FROM {ctx} c WHERE $1::float8 = 0
    AND NOT EXISTS (SELECT 1 FROM {st} s WHERE s.run_id = c.run_id)
) r ORDER BY r.updated_at NULLS FIRST, r.run_id LIMIT $2
