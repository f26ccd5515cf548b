-- The subflow sweep: `subflow` nodes of running runs (of these blueprints) whose child run has
-- ended become `woken`, leased for $3 seconds like a sleep's wake-up (`wake.sql` enqueues them
-- again when the lease ends), and are returned to be enqueued; their job reads the child's result.
-- $1 blueprint ids, $2 how many at most, $3 lease (seconds).
-- Returns: run id, blueprint id, node id, iteration of each node to enqueue.
WITH due AS (
  SELECT n.run_id, n.node_id, p.blueprint_id FROM {nodes} n
  JOIN {st} p ON p.run_id = n.run_id AND p.status = 'running' AND p.blueprint_id = ANY($1::text[])
  JOIN {st} c ON c.run_id = {child_run_id(n)} AND c.status IN ('completed', 'failed', 'cancelled')
  WHERE n.state = 'subflow' AND n.wake_at = 'infinity'
  LIMIT $2 FOR UPDATE OF n SKIP LOCKED
)
UPDATE {nodes} n SET state = 'woken', wake_at = now() + make_interval(secs => $3::float8)
FROM due WHERE n.run_id = due.run_id AND n.node_id = due.node_id
RETURNING n.run_id, due.blueprint_id, n.node_id, n.iteration
