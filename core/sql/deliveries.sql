-- The poison count of a node. $1 run id, $2 node id.
SELECT COALESCE((deliveries ->> $2::text)::bigint, 0) FROM {st} WHERE run_id = $1
