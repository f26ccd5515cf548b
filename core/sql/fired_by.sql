-- The successors a node's commit enqueued that are still pending (a redelivered job re-publishes them).
-- $1 run id, $2 node id. Returns each one's id and iteration.
SELECT n.node_id, n.iteration FROM {nodes} n WHERE n.run_id = $1 AND n.fired_by = $2 AND n.state = 'queued'
