-- A `wait` node: the node waits (it leaves the pending count), the run is `awaiting`.
-- $1 run id, $2 node id. Nothing happens when the node was not pending.
-- Returns: the NOTIFY, whether nothing else of the run is pending.
WITH lk AS (
  SELECT s.pending FROM {st} s WHERE s.run_id = $1 AND {not_final} FOR UPDATE
), me AS (
  UPDATE {nodes} n SET state = 'awaiting' FROM lk WHERE n.run_id = $1 AND n.node_id = $2 AND n.state = 'queued' RETURNING 1
), c AS (
  UPDATE {ctx} SET context_data = context_data || jsonb_build_object('_awaitingNodeIds',
    COALESCE(context_data -> '_awaitingNodeIds', '[]'::jsonb) || to_jsonb($2::text))
  FROM me WHERE run_id = $1 AND NOT (COALESCE(context_data -> '_awaitingNodeIds', '[]'::jsonb) ? $2::text) RETURNING 1
)
UPDATE {st} AS s SET status = 'awaiting', status_data = jsonb_build_object('status', 'awaiting'),
  pending = s.pending - 1, updated_at = now()
FROM me, (SELECT count(*) FROM c) w WHERE s.run_id = $1 RETURNING {notify}, s.pending = 0
