-- A subflow node whose child run was resumed (`runs.rs` `resume_with_action` on the parent): it
-- leaves the parent's `_awaitingNodeIds`, and the parent is `running` again when no other node of
-- it awaits (the child's end then wakes the node, `subflow_wake.sql`).
-- $1 the parent's run id, $2 the subflow node's id.
WITH lk AS (
  SELECT 1 FROM {st} s WHERE s.run_id = $1 AND s.status = 'awaiting' FOR UPDATE
), c AS (
  UPDATE {ctx} t SET context_data = t.context_data || jsonb_build_object('_awaitingNodeIds',
    COALESCE(t.context_data -> '_awaitingNodeIds', '[]'::jsonb) - $2::text)
  FROM lk WHERE t.run_id = $1
  RETURNING jsonb_array_length(t.context_data -> '_awaitingNodeIds') AS left
)
UPDATE {st} AS s SET status = 'running', status_data = jsonb_build_object('status', 'running'), updated_at = now()
FROM c WHERE s.run_id = $1 AND c.left = 0
RETURNING 1
