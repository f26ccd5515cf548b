-- A run's status and status data. $1 run id. Returns: the status, the status data, and the text of a
-- completed payload's context when its `serializedContext` was stored as null (too big).
SELECT s.status, s.status_data::text, {missing_serialized_context} FROM {st} s WHERE s.run_id = $1
