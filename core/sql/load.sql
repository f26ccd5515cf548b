-- What a job reads of its run before running its node.
-- $1 run id, $2 the node ids whose rows it needs (or every row: the node's routing reads the whole
-- context; then `{which}` is true, one statement each so that each has a plan of its own), $3 the
-- context keys its `inputs` name, $4 the job's node id (only its row's route is read).
-- Returns: context row text, status, tracked (has our bookkeeping), the node rows as a JSON array,
-- the context row's keys left out. When only some rows are read, a user key whose value is large
-- (over 2 KB stored: a batch's input array, say) and that the node's inputs do not name is left
-- out too, and node code reads it on demand: a job's cost does not grow with what the run holds.
SELECT {context_text}, s.status, s.pending IS NOT NULL,
  (SELECT COALESCE(json_agg({node_json})::text, '[]')
   FROM {nodes} n WHERE n.run_id = $1 AND {which}),
  {omitted}
FROM (SELECT $1::text AS run_id) k
LEFT JOIN {ctx} c ON c.run_id = k.run_id
LEFT JOIN {st} s ON s.run_id = k.run_id
