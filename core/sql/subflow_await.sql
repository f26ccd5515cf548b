-- The subflow sweep, for a child run stopped at a wait node: its parent becomes `awaiting` at the
-- subflow node (as FlowRuntime marks a subflow whose child awaits), so that `resumeWithAction` on
-- the parent reaches the child (`runs.rs` `resume_with_action`). The node stays `subflow` and
-- pending: the child's end wakes it as usual (`subflow_wake.sql`). Rows locked by a commit are
-- skipped, as is a second subflow node of one run (the next sweep sees them): the sweep never waits, so it cannot deadlock with a commit.
-- $1 blueprint ids, $2 how many at most.
-- Returns: the parent's run id, blueprint id and subflow node id, and the NOTIFY.
WITH due AS (
  SELECT n.run_id, n.node_id, p.blueprint_id FROM {nodes} n
  JOIN {st} p ON p.run_id = n.run_id AND p.status IN ('running', 'awaiting') AND p.blueprint_id = ANY($1::text[])
  JOIN {st} k ON k.run_id = {child_run_id(n)} AND k.status = 'awaiting'
  JOIN {ctx} x ON x.run_id = n.run_id AND NOT (COALESCE(x.context_data -> '_awaitingNodeIds', '[]'::jsonb) ? n.node_id)
  WHERE n.state = 'subflow' AND n.wake_at = 'infinity'
  ORDER BY n.run_id
  LIMIT $2 FOR UPDATE OF n, p, x SKIP LOCKED
), marked AS (
  UPDATE {ctx} t SET context_data = t.context_data || jsonb_build_object('_awaitingNodeIds',
    COALESCE(t.context_data -> '_awaitingNodeIds', '[]'::jsonb) || to_jsonb(due.node_id))
  FROM due WHERE t.run_id = due.run_id RETURNING t.run_id
)
UPDATE {st} AS s SET status = 'awaiting', status_data = jsonb_build_object('status', 'awaiting'), updated_at = now()
FROM due, marked WHERE s.run_id = due.run_id AND marked.run_id = due.run_id
RETURNING s.run_id, due.blueprint_id, due.node_id, {notify}
