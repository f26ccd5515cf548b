-- Running runs whose last change is older than $1 seconds, oldest first, at most $2.
SELECT s.run_id FROM {st} s WHERE (s.status IS NULL OR s.status = 'running')
  AND s.updated_at < now() - make_interval(secs => $1::float8) ORDER BY s.updated_at LIMIT $2
