-- A run's status and status data. $1 run id.
SELECT s.status, s.status_data::text FROM {st} s WHERE s.run_id = $1
