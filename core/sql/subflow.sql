-- A `subflow` node waits for its child run (started by the same job): its row is `subflow` until
-- the subflow sweep (`subflow_wake.sql`) sees the child ended. It stays pending. Nothing happens
-- when the node is not queued in this iteration or the run has ended. Its `wake_at` is 'infinity': the
-- sweeps find the rows that wait through the index of rows with a `wake_at` (schema.rs).
-- $1 run id, $2 node id, $3 the job's iteration. Returns a row when the node now waits.
WITH lk AS (
  SELECT 1 FROM {st} s WHERE s.run_id = $1 AND {not_final} FOR UPDATE
)
UPDATE {nodes} n SET state = 'subflow', wake_at = 'infinity' FROM lk
WHERE n.run_id = $1 AND n.node_id = $2 AND n.state = 'queued' AND n.iteration = $3
RETURNING 1
