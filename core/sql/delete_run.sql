-- Undoes a start whose jobs could not be published. $1 run id.
WITH s AS (DELETE FROM {st} WHERE run_id = $1), n AS (DELETE FROM {nodes} WHERE run_id = $1)
DELETE FROM {ctx} WHERE run_id = $1
