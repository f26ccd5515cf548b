//! The worker's view of a run in PostgreSQL: its context row and its status
//! row. Each job reads the run once and commits once: the node's output, its
//! context writes, the inputs of its successors and the run's bookkeeping in a
//! single statement, so a redelivered job can never apply its effect twice.
//!
//! Bookkeeping columns added to the status table:
//! - `queued`: the set of node ids enqueued and not yet settled. The run is
//!   finished when it drains, whichever branches were taken.
//! - `routes`: per completed node, the successors it chose, so a redelivered
//!   job re-publishes the same successors without re-running the node.
//! - `error`: the first node failure; a drained run with an error is `failed`.
//! - `joins`: per join node, the predecessors that arrived, in arrival order.
//!   Kept in the same statement as the output, so a redelivered job can
//!   neither count twice nor be lost, and the node whose arrival completed a
//!   join is the one that enqueues it (the first arrival, for 'any').
//! - `bound_inputs`: the nodes whose input an edge bound to `_inputs.<id>`
//!   (FlowRuntime's `applyEdgeTransform`; see `routing`).
//!
//! - `undefined_outputs`: the nodes that completed with an `undefined` output:
//!   they have no `_outputs.<id>` key (as in FlowRuntime's serialised context),
//!   so a node is completed when it has that key or is listed here.

use crate::error::{CoreError, CoreResult};
use crate::pg::{quote_table, PgPool, PgTarget};
use crate::schema::{Installed, Schema};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::sync::Arc;

pub const FINAL_STATUSES: [&str; 3] = ["completed", "failed", "cancelled"];

pub struct RunStore {
    pool: Arc<PgPool>,
    /// The status table's name as the user gave it (NOTIFY payloads carry it).
    status_table: String,
    schema: Schema,
    sql: Sql,
}

/// The channel on which a run's end (and a move to `awaiting`) is announced;
/// the payload is `<status table>\n<run id>`.
pub const RUN_CHANNEL: &str = "flowcraft_run_finished";

struct Sql {
    load: String,
    init_run: String,
    heartbeat: String,
    count_delivery: String,
    deliveries: String,
    commit: String,
    fail_node: String,
    finalize: String,
    fail_run: String,
    start_run: String,
    find_idempotent: String,
    cancel: String,
    final_status: String,
    view: String,
    list: String,
    stale: String,
    add_queued: String,
    mark_awaiting: String,
    resume: String,
    delete_run: String,
}

/// What a job reads about its run before doing anything.
#[derive(Debug)]
pub struct RunSnapshot {
    /// None when the run has no context row yet.
    pub context: Option<Map<String, Value>>,
    /// The raw JSON text of the context (handed to JS without re-serialising).
    pub context_text: Option<String>,
    pub status: Option<String>,
    /// Whether the status row carries our bookkeeping.
    pub tracked: bool,
    /// The successors this node chose, when it already completed.
    pub route: Option<Vec<String>>,
    /// Arrivals at join nodes: node id -> predecessors in arrival order.
    pub joins: Map<String, Value>,
    /// Nodes that completed with an `undefined` output (no `_outputs.<id>` key).
    pub completed: BTreeSet<String>,
    /// Nodes whose input is bound to `_inputs.<id>`.
    pub bound: BTreeSet<String>,
}

/// A set of node ids as stored in `queued`: a JSON object `{ "<id>": true }`.
fn node_set(nodes: &[String]) -> String {
    Value::Object(nodes.iter().map(|n| (n.clone(), Value::Bool(true))).collect()).to_string()
}

/// Everything stored about a run, for `getRun`, reconcile and resume.
#[derive(Debug)]
pub struct RunView {
    pub status: Option<String>,
    pub status_data: Value,
    pub context: Option<Map<String, Value>>,
    pub queued: Vec<String>,
    pub routes: Map<String, Value>,
    pub idle_seconds: Option<f64>,
    pub blueprint_id: Option<String>,
    pub error: Option<String>,
    pub updated_at: Option<String>,
    /// Nodes that completed with an `undefined` output.
    pub undefined_outputs: Vec<String>,
}

impl RunView {
    /// The run's blueprint id: recorded in its status row, else in its context.
    pub fn blueprint(&self) -> Option<String> {
        self.blueprint_id.clone().or_else(|| self.context.as_ref()?.get("blueprintId")?.as_str().map(String::from))
    }
}

/// One line of the runs list.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub run_id: String,
    pub status: Option<String>,
    pub blueprint_id: Option<String>,
    pub idle_seconds: Option<f64>,
    pub done_nodes: i64,
    pub reason: Option<String>,
}

/// Outcome of a commit.
#[derive(Debug, PartialEq, Eq)]
pub enum Commit {
    /// This job's effect was applied. `ready`: the successors to publish;
    /// `finished`: the run's final status when this commit ended it.
    Applied { ready: Vec<String>, finished: Option<String> },
    /// The node's output was already committed (by another delivery), or the
    /// run has ended.
    AlreadyDone,
}

/// An arrival at a join node.
#[derive(Debug, Clone)]
pub struct JoinArrival {
    pub target: String,
    /// The predecessors that arrive: the node, and the nodes it is the fallback for.
    pub members: Vec<String>,
    pub expected: usize,
    pub any: bool,
    /// Whether this arrival may enqueue the join (a node routing to it), or
    /// only records its members as completed (a node that failed into its
    /// fallback: FlowRuntime counts it completed, but it routes to its fallback).
    pub fire: bool,
}

/// Everything one completed node changes.
#[derive(Debug, Default)]
pub struct Effect {
    pub sets: Map<String, Value>,
    pub deletes: Vec<String>,
    /// The successors it chose (for reconcile and inspection).
    pub route: Vec<String>,
    /// Chosen successors with a single predecessor: ready now.
    pub ready: Vec<String>,
    pub joins: Vec<JoinArrival>,
    /// Successors whose input this node's edges bound to `_inputs.<id>`.
    pub bound: Vec<String>,
    /// The node's output is `undefined` (no `_outputs.<id>` key is written).
    pub undefined_output: bool,
}

impl RunStore {
    pub fn new(target: &PgTarget, context_table: &str, status_table: &str) -> CoreResult<RunStore> {
        let ctx = quote_table(context_table)?;
        let st = quote_table(status_table)?;
        let pool = PgPool::shared(target)?;
        // Safe inside a literal: quote_table accepted only word characters and a dot.
        let notify = format!("pg_notify('{RUN_CHANNEL}', '{status_table}' || chr(10) || s.run_id)");
        let not_final = "(s.status IS NULL OR s.status NOT IN ('completed', 'failed', 'cancelled'))";
        // The status data of a run that ended (`s` its status row, `c` its
        // context row): the whole final context when it completed, the first
        // node failure when it failed.
        let ended_context = "CASE WHEN s.error IS NULL THEN jsonb_build_object('status', 'completed', 'payload', \
               jsonb_build_object('context', c.context_data, 'serializedContext', c.context_data::text, 'status', 'completed')) \
             ELSE jsonb_build_object('status', 'failed', 'reason', s.error) END";
        let ended_status = "CASE WHEN s.error IS NULL THEN 'completed' ELSE 'failed' END";
        let sql = Sql {
            load: format!(
                "SELECT c.context_data::text, s.status, s.queued IS NOT NULL, (s.routes -> $2::text)::text, s.joins::text, \
                   ARRAY(SELECT jsonb_object_keys(COALESCE(s.undefined_outputs, '{{}}'::jsonb))), s.bound_inputs::text \
                 FROM (SELECT $1::text AS run_id) k LEFT JOIN {ctx} c ON c.run_id = k.run_id LEFT JOIN {st} s ON s.run_id = k.run_id"
            ),
            init_run: format!(
                "WITH c AS ( \
                   INSERT INTO {ctx} AS t (run_id, context_data) VALUES ($1, $2::text::jsonb) \
                   ON CONFLICT (run_id) DO UPDATE SET context_data = EXCLUDED.context_data || COALESCE(t.context_data, '{{}}'::jsonb) RETURNING 1 \
                 ) INSERT INTO {st} AS s (run_id, status, status_data, updated_at, blueprint_id, queued, routes) \
                 SELECT $1, 'running', '{{\"status\":\"running\"}}'::jsonb, now(), $3, $4::text::jsonb, '{{}}'::jsonb FROM c \
                 ON CONFLICT (run_id) DO UPDATE SET status = COALESCE(s.status, 'running'), \
                   status_data = COALESCE(s.status_data, EXCLUDED.status_data), blueprint_id = COALESCE(s.blueprint_id, EXCLUDED.blueprint_id), \
                   queued = COALESCE(s.queued, EXCLUDED.queued), routes = COALESCE(s.routes, '{{}}'::jsonb), updated_at = now() \
                 WHERE {not_final}"
            ),
            count_delivery: format!(
                "UPDATE {st} SET deliveries = jsonb_set(COALESCE(deliveries, '{{}}'::jsonb), ARRAY[$2::text], \
                   to_jsonb(COALESCE((deliveries ->> $2::text)::bigint, 0) + 1)) \
                 WHERE run_id = $1 RETURNING (deliveries ->> $2::text)::bigint"
            ),
            deliveries: format!("SELECT COALESCE((deliveries ->> $2::text)::bigint, 0) FROM {st} WHERE run_id = $1"),
            heartbeat: format!(
                "UPDATE {st} SET updated_at = now() WHERE run_id = ANY($1::text[]) AND status = 'running'"
            ),
            commit: format!(
                "WITH lk AS ( \
                   SELECT COALESCE(s.joins, '{{}}'::jsonb) AS joins, COALESCE(s.queued, '{{}}'::jsonb) AS queued, \
                     COALESCE(s.undefined_outputs, '{{}}'::jsonb) AS undef \
                   FROM {st} s WHERE s.run_id = $1 AND {not_final} FOR UPDATE \
                 ), c AS ( \
                   UPDATE {ctx} SET context_data = (context_data - $4::text[]) || $3::text::jsonb \
                   WHERE run_id = $1 AND NOT (context_data ? $5::text) AND EXISTS (SELECT 1 FROM lk WHERE NOT (lk.undef ? $2::text)) \
                   RETURNING context_data \
                 ), j AS ( \
                   SELECT t.target, t.members::jsonb AS members, t.expected, t.is_any, t.fire, \
                     COALESCE(lk.joins -> t.target, '[]'::jsonb) AS before \
                   FROM lk, c, unnest($8::text[], $9::text[], $10::int[], $11::bool[], $12::bool[]) AS t(target, members, expected, is_any, fire) \
                 ), ja AS ( \
                   SELECT j.*, j.before || COALESCE((SELECT jsonb_agg(m) FROM jsonb_array_elements_text(j.members) m \
                     WHERE NOT (j.before ? m)), '[]'::jsonb) AS after FROM j \
                 ), fired AS ( \
                   SELECT ja.target FROM ja, lk, c WHERE ja.fire AND ( \
                     (ja.is_any AND jsonb_array_length(ja.before) = 0 AND jsonb_array_length(ja.after) > 0) \
                     OR (NOT ja.is_any AND jsonb_array_length(ja.after) >= ja.expected \
                       AND NOT (lk.queued ? ja.target) AND NOT (c.context_data ? ('_outputs.' || ja.target)) \
                       AND NOT (lk.undef ? ja.target))) \
                   UNION SELECT unnest($7::text[]) FROM c \
                 ), ready AS ( \
                   SELECT COALESCE(jsonb_object_agg(f.target, true), '{{}}'::jsonb) AS add, COALESCE(array_agg(f.target), '{{}}'::text[]) AS list \
                   FROM fired f, c, lk WHERE NOT (c.context_data ? ('_outputs.' || f.target)) AND NOT (lk.undef ? f.target) \
                 ), nx AS ( \
                   SELECT lk.joins || COALESCE((SELECT jsonb_object_agg(ja.target, ja.after) FROM ja), '{{}}'::jsonb) AS joins, \
                     (lk.queued - $2::text) || ready.add AS queued, ready.list \
                   FROM lk, ready \
                 ), u AS ( \
                   UPDATE {st} AS s SET joins = nx.joins, queued = nx.queued, \
                     routes = COALESCE(s.routes, '{{}}'::jsonb) || jsonb_build_object($2::text, to_jsonb($6::text[])), \
                     bound_inputs = COALESCE(s.bound_inputs, '{{}}'::jsonb) || $13::text::jsonb, \
                     undefined_outputs = CASE WHEN $14::bool THEN COALESCE(s.undefined_outputs, '{{}}'::jsonb) || jsonb_build_object($2::text, true) \
                       ELSE s.undefined_outputs END, \
                     status = CASE WHEN nx.queued = '{{}}'::jsonb AND s.status = 'running' THEN {ended_status} ELSE s.status END, \
                     status_data = CASE WHEN nx.queued = '{{}}'::jsonb AND s.status = 'running' \
                       THEN {ended_context} ELSE s.status_data END, \
                     updated_at = now() \
                   FROM nx, c WHERE s.run_id = $1 \
                   RETURNING s.run_id, s.status, nx.queued = '{{}}'::jsonb AS drained, nx.list \
                 ) \
                 SELECT u.list, CASE WHEN u.drained AND u.status IN ('completed', 'failed') THEN u.status END, \
                   CASE WHEN u.drained AND u.status IN ('completed', 'failed') THEN pg_notify('{RUN_CHANNEL}', '{status_table}' || chr(10) || u.run_id) END \
                 FROM u"
            ),
            // `FROM (... c)`: the context write (and the lock it takes on the
            // status row first) runs before the status row is updated; a CTE
            // no one reads would run after it, and find the row locked by itself.
            fail_node: format!(
                "WITH lk AS (SELECT 1 FROM {st} s WHERE s.run_id = $1 AND {not_final} FOR UPDATE), \
                 c AS ( \
                   UPDATE {ctx} SET context_data = (context_data - $4::text[]) || $5::text::jsonb \
                   WHERE run_id = $1 AND ($5::text <> '{{}}' OR cardinality($4::text[]) > 0) AND EXISTS (SELECT 1 FROM lk) RETURNING 1 \
                 ) \
                 UPDATE {st} AS s SET queued = COALESCE(s.queued, '{{}}'::jsonb) - $2::text, error = COALESCE(s.error, $3), \
                   status = CASE WHEN COALESCE(s.queued, '{{}}'::jsonb) - $2::text = '{{}}'::jsonb AND s.status = 'running' THEN 'failed' ELSE s.status END, \
                   status_data = CASE WHEN COALESCE(s.queued, '{{}}'::jsonb) - $2::text = '{{}}'::jsonb AND s.status = 'running' \
                     THEN jsonb_build_object('status', 'failed', 'reason', COALESCE(s.error, $3)) ELSE s.status_data END, \
                   updated_at = now() \
                 FROM (SELECT count(*) FROM c) w WHERE s.run_id = $1 AND {not_final} \
                 RETURNING CASE WHEN s.status = 'failed' THEN {notify} END, s.status = 'failed'"
            ),
            finalize: format!(
                "UPDATE {st} AS s SET status = {ended_status}, status_data = {ended_context}, updated_at = now() \
                 FROM {ctx} c WHERE s.run_id = $1 AND c.run_id = $1 AND s.status = 'running' AND s.queued = '{{}}'::jsonb \
                 RETURNING s.status, {notify}"
            ),
            fail_run: format!(
                "INSERT INTO {st} AS s (run_id, status, status_data, updated_at, error, queued, routes) \
                 VALUES ($1, 'failed', jsonb_build_object('status', 'failed', 'reason', $2::text), now(), $2, '{{}}'::jsonb, '{{}}'::jsonb) \
                 ON CONFLICT (run_id) DO UPDATE SET status = 'failed', status_data = EXCLUDED.status_data, error = COALESCE(s.error, EXCLUDED.error), updated_at = now() \
                 WHERE {not_final} RETURNING {notify}"
            ),
            start_run: format!(
                "WITH s AS ( \
                   INSERT INTO {st} (run_id, status, status_data, updated_at, blueprint_id, queued, routes, idempotency_key) \
                   VALUES ($1, 'running', '{{\"status\":\"running\"}}'::jsonb, now(), $2, $4::text::jsonb, '{{}}'::jsonb, $5) \
                   ON CONFLICT DO NOTHING RETURNING run_id \
                 ) INSERT INTO {ctx} AS t (run_id, context_data) SELECT run_id, $3::text::jsonb FROM s \
                   ON CONFLICT (run_id) DO UPDATE SET context_data = COALESCE(t.context_data, '{{}}'::jsonb) || EXCLUDED.context_data \
                 RETURNING run_id"
            ),
            find_idempotent: format!("SELECT run_id FROM {st} WHERE idempotency_key = $1"),
            cancel: format!(
                "UPDATE {st} AS s SET status = 'cancelled', status_data = jsonb_build_object('status', 'cancelled', 'reason', $2::text), \
                   updated_at = now() WHERE s.run_id = $1 AND {not_final} RETURNING {notify}"
            ),
            final_status: format!("SELECT s.status, s.status_data::text FROM {st} s WHERE s.run_id = $1"),
            view: format!(
                "SELECT s.status, s.status_data::text, c.context_data::text, s.queued::text, s.routes::text, \
                   EXTRACT(EPOCH FROM (now() - s.updated_at))::float8, s.blueprint_id, s.error, \
                   to_char(s.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), s.undefined_outputs::text \
                 FROM (SELECT $1::text AS run_id) k LEFT JOIN {st} s ON s.run_id = k.run_id LEFT JOIN {ctx} c ON c.run_id = k.run_id"
            ),
            list: format!(
                "SELECT s.run_id, s.status, COALESCE(s.blueprint_id, c.context_data ->> 'blueprintId'), \
                   EXTRACT(EPOCH FROM (now() - s.updated_at))::float8, \
                   (SELECT count(*) FROM (SELECT substr(k, 10) FROM jsonb_object_keys(COALESCE(c.context_data, '{{}}'::jsonb)) k \
                     WHERE k LIKE '\\_outputs.%' UNION SELECT jsonb_object_keys(COALESCE(s.undefined_outputs, '{{}}'::jsonb))) d), s.error, \
                   s.status_data ->> 'reason' \
                 FROM {st} s LEFT JOIN {ctx} c ON c.run_id = s.run_id \
                 WHERE ($2::text IS NULL OR s.status = $2) ORDER BY s.updated_at DESC LIMIT $1"
            ),
            stale: format!(
                "SELECT s.run_id FROM {st} s WHERE (s.status IS NULL OR s.status = 'running') \
                   AND s.updated_at < now() - make_interval(secs => $1::float8) ORDER BY s.updated_at LIMIT $2"
            ),
            add_queued: format!(
                "UPDATE {st} AS s SET queued = COALESCE(s.queued, '{{}}'::jsonb) || $2::text::jsonb, updated_at = now() \
                 WHERE s.run_id = $1 AND {not_final} RETURNING 1"
            ),
            mark_awaiting: format!(
                "WITH c AS ( \
                   UPDATE {ctx} SET context_data = context_data || jsonb_build_object('_awaitingNodeIds', \
                     COALESCE(context_data -> '_awaitingNodeIds', '[]'::jsonb) || to_jsonb($2::text)) \
                   WHERE run_id = $1 AND NOT (COALESCE(context_data -> '_awaitingNodeIds', '[]'::jsonb) ? $2::text) RETURNING 1 \
                 ) UPDATE {st} AS s SET status = 'awaiting', status_data = jsonb_build_object('status', 'awaiting'), \
                   queued = COALESCE(s.queued, '{{}}'::jsonb) - $2::text, updated_at = now() \
                 WHERE s.run_id = $1 AND {not_final} RETURNING {notify}"
            ),
            resume: format!(
                "WITH c AS ( \
                   UPDATE {ctx} SET context_data = (context_data - ARRAY['_awaitingNodeIds', '_awaitingDetails']) || $2::text::jsonb \
                   WHERE run_id = $1 RETURNING 1 \
                 ) UPDATE {st} AS s SET status = 'running', status_data = jsonb_build_object('status', 'running'), \
                   routes = COALESCE(s.routes, '{{}}'::jsonb) || $3::text::jsonb, \
                   bound_inputs = COALESCE(s.bound_inputs, '{{}}'::jsonb) || $4::text::jsonb, updated_at = now() \
                 FROM c WHERE s.run_id = $1 AND s.status = 'awaiting' RETURNING 1"
            ),
            delete_run: format!("WITH s AS (DELETE FROM {st} WHERE run_id = $1) DELETE FROM {ctx} WHERE run_id = $1"),
        };
        let schema = Schema::new(context_table, status_table)?;
        Ok(RunStore { pool, status_table: status_table.to_string(), schema, sql })
    }

    pub fn pool(&self) -> &Arc<PgPool> {
        &self.pool
    }

    /// Creates what is missing of the tables, columns, indexes and triggers
    /// (`create`), or only checks that the tables have what the worker needs
    /// (see `schema.rs`). Idempotent and safe when several workers start at
    /// once (serialised by an advisory lock).
    pub async fn prepare_tables(&self, create: bool) -> CoreResult<Installed> {
        self.schema.prepare(&self.pool, create).await
    }

    pub async fn load(&self, run_id: &str, node_id: &str) -> CoreResult<RunSnapshot> {
        let rows = self.pool.query("reading a run", &self.sql.load, &[&run_id, &node_id]).await?;
        let row = rows.first().ok_or_else(|| CoreError::WorkerState("reading a run returned no row".into()))?;
        let context_text: Option<String> = row.get(0);
        let context = match &context_text {
            Some(t) => match serde_json::from_str::<Value>(t).map_err(|e| CoreError::json("a context row", e))? {
                Value::Object(m) => Some(m),
                _ => Some(Map::new()),
            },
            None => None,
        };
        let route: Option<String> = row.get(3);
        let route = route.and_then(|r| serde_json::from_str::<Vec<String>>(&r).ok());
        let joins: Option<String> = row.get(4);
        let joins = joins.and_then(|j| serde_json::from_str::<Map<String, Value>>(&j).ok()).unwrap_or_default();
        let completed: Vec<String> = row.get::<_, Option<Vec<String>>>(5).unwrap_or_default();
        let bound: Option<String> = row.get(6);
        let bound = bound
            .and_then(|b| serde_json::from_str::<Map<String, Value>>(&b).ok())
            .map(|m| m.into_iter().map(|(k, _)| k).collect())
            .unwrap_or_default();
        Ok(RunSnapshot {
            context,
            context_text,
            status: row.get(1),
            tracked: row.get(2),
            route,
            joins,
            completed: completed.into_iter().collect(),
            bound,
        })
    }

    /// Makes sure the run has a context row carrying `initial` keys (kept when
    /// already present) and a tracked status row.
    pub async fn init_run(
        &self,
        run_id: &str,
        blueprint_id: &str,
        initial: &Map<String, Value>,
        queued: &[String],
    ) -> CoreResult<()> {
        let initial = Value::Object(initial.clone()).to_string();
        let queued = node_set(queued);
        self.pool.query("creating a run", &self.sql.init_run, &[&run_id, &initial, &blueprint_id, &queued]).await?;
        Ok(())
    }

    /// Counts, durably, one more redelivered start of `node_id`'s code
    /// (`deliveries[node]`); returns the new count (1 when the run has no status row).
    pub async fn count_delivery(&self, run_id: &str, node_id: &str) -> CoreResult<i64> {
        let rows = self.pool.query("counting a redelivery", &self.sql.count_delivery, &[&run_id, &node_id]).await?;
        Ok(rows.first().map_or(1, |r| r.get::<_, i64>(0)))
    }

    /// How many redelivered starts of `node_id`'s code were counted (0 when none).
    pub async fn deliveries(&self, run_id: &str, node_id: &str) -> CoreResult<i64> {
        let rows = self.pool.query("reading a delivery count", &self.sql.deliveries, &[&run_id, &node_id]).await?;
        Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0)))
    }

    /// Keeps `updated_at` of running runs fresh while their nodes run, so a
    /// long node does not look stalled to the reconciler.
    pub async fn heartbeat(&self, run_ids: &[String]) -> CoreResult<()> {
        if !run_ids.is_empty() {
            self.pool.query("refreshing running runs", &self.sql.heartbeat, &[&run_ids]).await?;
        }
        Ok(())
    }

    /// Commits a node's effect once, in one statement: its output and context
    /// writes, its successors' inputs, its arrivals at joins, the queue, and
    /// the run's final status when nothing of it remains.
    pub async fn commit(&self, run_id: &str, node_id: &str, effect: &Effect) -> CoreResult<Commit> {
        let sets = Value::Object(effect.sets.clone()).to_string();
        let output_key = format!("_outputs.{node_id}");
        let targets: Vec<&str> = effect.joins.iter().map(|j| j.target.as_str()).collect();
        let members: Vec<String> = effect.joins.iter().map(|j| Value::from(j.members.clone()).to_string()).collect();
        let expected: Vec<i32> = effect.joins.iter().map(|j| j.expected as i32).collect();
        let any: Vec<bool> = effect.joins.iter().map(|j| j.any).collect();
        let fire: Vec<bool> = effect.joins.iter().map(|j| j.fire).collect();
        let bound = node_set(&effect.bound);
        let rows = self
            .pool
            .query(
                "committing a node's output",
                &self.sql.commit,
                &[
                    &run_id,
                    &node_id,
                    &sets,
                    &effect.deletes,
                    &output_key,
                    &effect.route,
                    &effect.ready,
                    &targets,
                    &members,
                    &expected,
                    &any,
                    &fire,
                    &bound,
                    &effect.undefined_output,
                ],
            )
            .await?;
        Ok(match rows.first() {
            Some(r) => {
                Commit::Applied { ready: r.get::<_, Option<Vec<String>>>(0).unwrap_or_default(), finished: r.get(1) }
            }
            None => Commit::AlreadyDone,
        })
    }

    /// Records a node failure (the first one becomes the run's reason),
    /// removes the node from the queue, and fails the run when nothing of it
    /// remains. True when this call ended the run.
    pub async fn fail_node(&self, run_id: &str, node_id: &str, reason: &str) -> CoreResult<bool> {
        self.fail_node_with_writes(run_id, node_id, reason, &Map::new(), &[]).await
    }

    /// `fail_node`, and the context writes the failed node made (FlowRuntime
    /// keeps them), in the same statement.
    pub async fn fail_node_with_writes(
        &self,
        run_id: &str,
        node_id: &str,
        reason: &str,
        sets: &Map<String, Value>,
        deletes: &[String],
    ) -> CoreResult<bool> {
        let sets = Value::Object(sets.clone()).to_string();
        let rows = self
            .pool
            .query("recording a node failure", &self.sql.fail_node, &[&run_id, &node_id, &reason, &deletes, &sets])
            .await?;
        Ok(rows.first().and_then(|r| r.get::<_, Option<bool>>(1)).unwrap_or(false))
    }

    /// Writes the final status of a drained run, once. Returns it when this
    /// call wrote it.
    pub async fn finalize(&self, run_id: &str) -> CoreResult<Option<String>> {
        let rows = self.pool.query("finishing a run", &self.sql.finalize, &[&run_id]).await?;
        Ok(rows.first().map(|r| r.get::<_, String>(0)))
    }

    pub fn status_table(&self) -> &str {
        &self.status_table
    }

    /// Creates a run: its status row (running, with its start nodes queued)
    /// and its context row, in one statement. False when a run with this id
    /// or idempotency key already exists (nothing is written then).
    pub async fn start_run(
        &self,
        run_id: &str,
        blueprint_id: &str,
        context: &Map<String, Value>,
        start_nodes: &[String],
        idempotency_key: Option<&str>,
    ) -> CoreResult<bool> {
        let context = Value::Object(context.clone()).to_string();
        let queued = node_set(start_nodes);
        let rows = self
            .pool
            .query(
                "starting a run",
                &self.sql.start_run,
                &[&run_id, &blueprint_id, &context, &queued, &idempotency_key],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    pub async fn find_idempotent(&self, key: &str) -> CoreResult<Option<String>> {
        let rows = self.pool.query("finding a run by idempotency key", &self.sql.find_idempotent, &[&key]).await?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    /// Undoes a start whose jobs could not be published.
    pub async fn delete_run(&self, run_id: &str) -> CoreResult<()> {
        self.pool.query("removing a run", &self.sql.delete_run, &[&run_id]).await?;
        Ok(())
    }

    pub async fn cancel(&self, run_id: &str, reason: &str) -> CoreResult<bool> {
        let rows = self.pool.query("cancelling a run", &self.sql.cancel, &[&run_id, &reason]).await?;
        Ok(!rows.is_empty())
    }

    /// `(status, status_data)` of a run, if it has a status row.
    pub async fn status(&self, run_id: &str) -> CoreResult<Option<(Option<String>, Option<String>)>> {
        let rows = self.pool.query("reading a run's status", &self.sql.final_status, &[&run_id]).await?;
        Ok(rows.first().map(|r| (r.get(0), r.get(1))))
    }

    pub async fn view(&self, run_id: &str) -> CoreResult<RunView> {
        let rows = self.pool.query("reading a run", &self.sql.view, &[&run_id]).await?;
        let r = rows.first().ok_or_else(|| CoreError::WorkerState("reading a run returned no row".into()))?;
        let parse = |i: usize| -> Value {
            r.get::<_, Option<String>>(i).and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null)
        };
        Ok(RunView {
            status: r.get(0),
            status_data: parse(1),
            context: match parse(2) {
                Value::Object(m) => Some(m),
                _ => None,
            },
            queued: match parse(3) {
                Value::Object(m) => m.keys().cloned().collect(),
                _ => vec![],
            },
            routes: match parse(4) {
                Value::Object(m) => m,
                _ => Map::new(),
            },
            idle_seconds: r.get(5),
            blueprint_id: r.get(6),
            error: r.get(7),
            updated_at: r.get(8),
            undefined_outputs: match parse(9) {
                Value::Object(m) => m.keys().cloned().collect(),
                _ => vec![],
            },
        })
    }

    pub async fn list(&self, limit: i64, status: Option<&str>) -> CoreResult<Vec<RunSummary>> {
        let rows = self.pool.query("listing runs", &self.sql.list, &[&limit, &status]).await?;
        Ok(rows
            .iter()
            .map(|r| RunSummary {
                run_id: r.get(0),
                status: r.get(1),
                blueprint_id: r.get(2),
                idle_seconds: r.get(3),
                done_nodes: r.get(4),
                reason: r.get::<_, Option<String>>(6).or(r.get(5)),
            })
            .collect())
    }

    /// Runs still running whose last change is older than `seconds`.
    pub async fn stale_runs(&self, seconds: f64, limit: i64) -> CoreResult<Vec<String>> {
        let rows = self.pool.query("finding stalled runs", &self.sql.stale, &[&seconds, &limit]).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub async fn add_queued(&self, run_id: &str, nodes: &[String]) -> CoreResult<bool> {
        let queued = node_set(nodes);
        let rows = self.pool.query("queueing nodes", &self.sql.add_queued, &[&run_id, &queued]).await?;
        Ok(!rows.is_empty())
    }

    /// A `wait` node: the run waits for `resumeWithAction`.
    pub async fn mark_awaiting(&self, run_id: &str, node_id: &str) -> CoreResult<()> {
        self.pool.query("marking a run awaiting", &self.sql.mark_awaiting, &[&run_id, &node_id]).await?;
        Ok(())
    }

    /// Writes the resume keys and the awaiting nodes' outputs and routes, and
    /// sets the run running again. False when the run was not awaiting.
    pub async fn resume(
        &self,
        run_id: &str,
        sets: &Map<String, Value>,
        routes: &Map<String, Value>,
        bound: &[String],
    ) -> CoreResult<bool> {
        let sets = Value::Object(sets.clone()).to_string();
        let routes = Value::Object(routes.clone()).to_string();
        let bound = node_set(bound);
        let rows = self.pool.query("resuming a run", &self.sql.resume, &[&run_id, &sets, &routes, &bound]).await?;
        Ok(!rows.is_empty())
    }

    /// Fails a run at once (unknown blueprint, node not in blueprint). Never
    /// overwrites a final status. True when this call wrote it.
    pub async fn fail_run(&self, run_id: &str, reason: &str) -> CoreResult<bool> {
        let rows = self.pool.query("failing a run", &self.sql.fail_run, &[&run_id, &reason]).await?;
        Ok(!rows.is_empty())
    }
}
