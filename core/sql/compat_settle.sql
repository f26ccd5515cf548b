-- typescriptCompat (core/src/compat.rs), after a commit of node $2 (or a redelivery of it): what the
-- TypeScript adapter's workers did and what the coordination store's join counters decided, under
-- the status row's lock. Node rows still `queued` whose `_outputs.<id>` is in the context row are
-- done (those workers ran them: ours writes that key with its row `done`); the joins $3 that the
-- arrivals of $2 fired become `queued` (fired_by $2); the run is no longer held open by those
-- arrivals (the commit's $28, kept in the row's `joined_now`: released once). It ends no run:
-- with nothing pending, JobRunner::compat_after ends it (sql/finalize.sql) unless a node is
-- ready that an old worker must have enqueued (compat::open_frontier).
-- $1 run id, $2 node id, $3 joins to enqueue.
-- Returns: the nodes it enqueued and their iterations, whether nothing of the running run is pending.
WITH lk AS (
  SELECT s.pending FROM {st} s WHERE s.run_id = $1 AND {not_final} AND s.pending IS NOT NULL FOR UPDATE
), h0 AS (
  -- (locked: read as it is now, not as of the statement's start)
  SELECT COALESCE(cardinality(n.joined_now), 0) AS held FROM {nodes} n, lk
  WHERE n.run_id = $1 AND n.node_id = $2 AND n.state = 'done' FOR UPDATE OF n
), h AS (
  UPDATE {nodes} n SET joined_now = NULL FROM h0
  WHERE n.run_id = $1 AND n.node_id = $2 AND h0.held > 0
  RETURNING h0.held
), d AS (
  UPDATE {nodes} n SET state = 'done', output = t.context_data -> ('_outputs.' || n.node_id), wake_at = NULL
  FROM lk, {ctx} t WHERE t.run_id = $1 AND n.run_id = $1 AND n.state = 'queued' AND n.iteration = 0
    AND NOT n.node_id = ANY($3::text[]) AND t.context_data ? ('_outputs.' || n.node_id)
  RETURNING n.node_id
), q AS (
  UPDATE {nodes} n SET state = 'queued', fired_by = $2 FROM lk
  WHERE n.run_id = $1 AND n.node_id = ANY($3::text[]) AND n.state = 'idle'
  RETURNING n.node_id, n.iteration
), nx AS (
  SELECT lk.pending - COALESCE((SELECT sum(h.held) FROM h), 0) - (SELECT count(*) FROM d) + (SELECT count(*) FROM q)
    AS pending FROM lk
), u AS (
  UPDATE {st} AS s SET pending = nx.pending, updated_at = now() FROM nx WHERE s.run_id = $1
  RETURNING s.status, nx.pending = 0 AND s.status = 'running' AS drained
)
SELECT ARRAY(SELECT q.node_id FROM q ORDER BY q.node_id), ARRAY(SELECT q.iteration FROM q ORDER BY q.node_id),
  u.drained
FROM u
