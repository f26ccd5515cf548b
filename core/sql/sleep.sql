-- A `sleep` node starts sleeping: its row waits for its wake-up time (it stays pending, so the run
-- does not end), and the sweep (`wake.sql`) enqueues it then. Nothing happens when the node is not
-- queued in this iteration or the run has ended.
-- $1 run id, $2 node id, $3 milliseconds to sleep, $4 the job's iteration.
-- Returns: the wake-up time (ISO 8601, UTC) when the node was put to sleep.
WITH lk AS (
  SELECT 1 FROM {st} s WHERE s.run_id = $1 AND {not_final} FOR UPDATE
)
UPDATE {nodes} n SET state = 'sleeping', wake_at = now() + make_interval(secs => $3::float8 / 1000)
FROM lk WHERE n.run_id = $1 AND n.node_id = $2 AND n.state = 'queued' AND n.iteration = $4
RETURNING to_char(n.wake_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
