-- One more redelivered start of a node's code (the poison count). $1 run id, $2 node id.
-- Returns the new count (no row: the run has no status row).
UPDATE {st} SET deliveries = jsonb_set(COALESCE(deliveries, '{}'::jsonb), ARRAY[$2::text],
  to_jsonb(COALESCE((deliveries ->> $2::text)::bigint, 0) + 1))
WHERE run_id = $1 RETURNING (deliveries ->> $2::text)::bigint
