-- The sleep sweep: sleeping nodes whose wake-up time has come, of running runs of these blueprints,
-- become `woken` (a job for a woken node completes it) with a lease of $3 seconds: their wake-up
-- time moves on by that much, so one sweeper publishes each, and a job lost before it completed the
-- node is published again at the lease's end. Rows of ended runs are let go.
-- $1 the blueprint ids this worker serves, $2 how many at most, $3 lease (seconds).
-- Returns: run id, blueprint id, node id, iteration of each node to enqueue.
WITH due AS (
  SELECT n.run_id, n.node_id FROM {nodes} n
  WHERE n.state IN ('sleeping', 'woken') AND n.wake_at <= now() AND n.wake_at IS NOT NULL
  ORDER BY n.wake_at LIMIT $2 FOR UPDATE OF n SKIP LOCKED
), seen AS (
  SELECT d.run_id, d.node_id, s.blueprint_id, s.status FROM due d LEFT JOIN {st} s ON s.run_id = d.run_id
), ended AS (
  UPDATE {nodes} n SET state = 'idle', wake_at = NULL FROM seen
  WHERE n.run_id = seen.run_id AND n.node_id = seen.node_id AND (seen.status IS NULL OR seen.status IN ('completed', 'failed', 'cancelled'))
  RETURNING 1
)
UPDATE {nodes} n SET state = 'woken', wake_at = now() + make_interval(secs => $3::float8) FROM seen
WHERE n.run_id = seen.run_id AND n.node_id = seen.node_id AND seen.blueprint_id = ANY($1::text[])
  AND seen.status NOT IN ('completed', 'failed', 'cancelled')
RETURNING n.run_id, seen.blueprint_id, n.node_id, n.iteration
