-- The successors a node's commit enqueued, and their states now (a redelivered job re-publishes those
-- still queued, and walks on from the one its delivery ran next itself: JobRunner::publish_committed).
-- $1 run id, $2 node id. Returns each one's id, iteration and state.
SELECT n.node_id, n.iteration, n.state FROM {nodes} n WHERE n.run_id = $1 AND n.fired_by = $2
