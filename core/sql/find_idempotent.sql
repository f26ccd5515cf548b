-- The run started with an idempotency key. $1 key.
SELECT run_id FROM {st} WHERE idempotency_key = $1
