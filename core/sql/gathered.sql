-- A batch's results, for its gather node: the outputs of its items, in item order (an item that
-- returned `undefined` has none). $1 run id, $2 the gather node's id.
SELECT n.output::text FROM {nodes} n
WHERE n.run_id = $1 AND n.spec ->> 'gather' = $2 AND n.state = 'done' AND n.output IS NOT NULL
ORDER BY (n.spec ->> 'i')::int
