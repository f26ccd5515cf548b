-- A `subflow` node whose child run failed, with attempts left (`config.maxRetries`, attempts in
-- all): it waits for the next attempt's child run, `<child>~<attempt>` (`run_store::child_run_id`;
-- started by the same job before this statement), as it waited for the first. The attempt is kept
-- in the row's `spec` with its iteration (a loop's next iteration starts again at 1).
-- $1 run id, $2 node id, $3 the job's iteration, $4 the attempt (2, 3, ...).
-- Returns a row when the node now waits; none when it was not woken in this iteration.
WITH lk AS (
  SELECT 1 FROM {st} s WHERE s.run_id = $1 AND {not_final} FOR UPDATE
)
UPDATE {nodes} n SET state = 'subflow', wake_at = 'infinity',
  spec = jsonb_build_object('attempt', $4::int, 'iteration', $3::int)
FROM lk WHERE n.run_id = $1 AND n.node_id = $2 AND n.state = 'woken' AND n.iteration = $3
RETURNING 1
