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

use crate::error::{CoreError, CoreResult};
use crate::pg::{quote_table, PgPool, PgTarget};
use serde_json::{Map, Value};
use std::sync::Arc;

pub const FINAL_STATUSES: [&str; 3] = ["completed", "failed", "cancelled"];

pub struct RunStore {
    pool: Arc<PgPool>,
    ctx: String,
    st: String,
    sql: Sql,
}

struct Sql {
    load: String,
    init_context: String,
    init_status: String,
    commit: String,
    settle: String,
    fail_node: String,
    finalize: String,
    fail_run: String,
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
}

/// Outcome of a commit or settle.
#[derive(Debug, PartialEq, Eq)]
pub enum Commit {
    /// This job's effect was applied. `drained` = nothing of the run remains queued.
    Applied { drained: bool },
    /// The node's output was already committed by another delivery.
    AlreadyDone,
}

impl RunStore {
    pub fn new(target: &PgTarget, context_table: &str, status_table: &str) -> CoreResult<RunStore> {
        let ctx = quote_table(context_table)?;
        let st = quote_table(status_table)?;
        let pool = PgPool::shared(target)?;
        let sql = Sql {
            load: format!(
                "SELECT c.context_data::text, s.status, s.queued IS NOT NULL, (s.routes -> $2::text)::text \
                 FROM (SELECT $1::text AS run_id) k LEFT JOIN {ctx} c ON c.run_id = k.run_id LEFT JOIN {st} s ON s.run_id = k.run_id"
            ),
            init_context: format!(
                "INSERT INTO {ctx} AS t (run_id, context_data) VALUES ($1, $2::text::jsonb) \
                 ON CONFLICT (run_id) DO UPDATE SET context_data = EXCLUDED.context_data || COALESCE(t.context_data, '{{}}'::jsonb)"
            ),
            init_status: format!(
                "INSERT INTO {st} AS s (run_id, status, status_data, updated_at, blueprint_id, queued, routes) \
                 VALUES ($1, 'running', '{{\"status\":\"running\"}}'::jsonb, now(), $2, $3::text::jsonb, '{{}}'::jsonb) \
                 ON CONFLICT (run_id) DO UPDATE SET status = COALESCE(s.status, 'running'), \
                   status_data = COALESCE(s.status_data, EXCLUDED.status_data), blueprint_id = COALESCE(s.blueprint_id, EXCLUDED.blueprint_id), \
                   queued = COALESCE(s.queued, EXCLUDED.queued), routes = COALESCE(s.routes, '{{}}'::jsonb), updated_at = now()"
            ),
            commit: format!(
                "WITH c AS ( \
                   UPDATE {ctx} SET context_data = (context_data - $4::text[]) || $3::text::jsonb \
                   WHERE run_id = $1 AND NOT (context_data ? $5::text) RETURNING context_data \
                 ), r AS ( \
                   SELECT COALESCE(jsonb_object_agg(t, true), '{{}}'::jsonb) AS add \
                   FROM c, unnest($7::text[]) AS t WHERE NOT (c.context_data ? ('_outputs.' || t)) \
                 ) \
                 UPDATE {st} AS s SET routes = COALESCE(s.routes, '{{}}'::jsonb) || jsonb_build_object($2::text, to_jsonb($6::text[])), \
                   queued = CASE WHEN $8::bool THEN (COALESCE(s.queued, '{{}}'::jsonb) - $2::text) || r.add ELSE s.queued END, \
                   updated_at = now() \
                 FROM r, c WHERE s.run_id = $1 RETURNING s.queued = '{{}}'::jsonb"
            ),
            settle: format!(
                "UPDATE {st} AS s SET queued = (COALESCE(s.queued, '{{}}'::jsonb) - $2::text) || COALESCE(( \
                   SELECT jsonb_object_agg(t, true) FROM {ctx} c, unnest($3::text[]) AS t \
                   WHERE c.run_id = $1 AND NOT (c.context_data ? ('_outputs.' || t))), '{{}}'::jsonb), updated_at = now() \
                 WHERE s.run_id = $1 RETURNING s.queued = '{{}}'::jsonb"
            ),
            fail_node: format!(
                "UPDATE {st} SET queued = COALESCE(queued, '{{}}'::jsonb) - $2::text, error = COALESCE(error, $3), updated_at = now() \
                 WHERE run_id = $1 RETURNING queued = '{{}}'::jsonb"
            ),
            finalize: format!(
                "UPDATE {st} AS s SET status = CASE WHEN s.error IS NULL THEN 'completed' ELSE 'failed' END, \
                   status_data = CASE WHEN s.error IS NULL THEN jsonb_build_object('status', 'completed', 'payload', \
                     jsonb_build_object('context', c.context_data, 'serializedContext', c.context_data::text, 'status', 'completed')) \
                     ELSE jsonb_build_object('status', 'failed', 'reason', s.error) END, \
                   updated_at = now() \
                 FROM {ctx} c WHERE s.run_id = $1 AND c.run_id = $1 AND s.status = 'running' AND s.queued = '{{}}'::jsonb \
                 RETURNING s.status"
            ),
            fail_run: format!(
                "INSERT INTO {st} AS s (run_id, status, status_data, updated_at, error, queued, routes) \
                 VALUES ($1, 'failed', jsonb_build_object('status', 'failed', 'reason', $2::text), now(), $2, '{{}}'::jsonb, '{{}}'::jsonb) \
                 ON CONFLICT (run_id) DO UPDATE SET status = 'failed', status_data = EXCLUDED.status_data, error = COALESCE(s.error, EXCLUDED.error), updated_at = now() \
                 WHERE s.status IS NULL OR s.status NOT IN ('completed', 'failed', 'cancelled') RETURNING 1"
            ),
        };
        Ok(RunStore { pool, ctx, st, sql })
    }

    pub fn pool(&self) -> &Arc<PgPool> {
        &self.pool
    }

    /// Creates missing tables (when asked) and adds the columns the worker needs
    /// to tables made with the README's DDL. Idempotent and safe when several
    /// workers start at once (serialised by an advisory lock).
    pub async fn prepare_tables(&self, create: bool) -> CoreResult<()> {
        let (ctx, st) = (&self.ctx, &self.st);
        let create_sql = if create {
            format!(
                "CREATE TABLE IF NOT EXISTS {ctx} (run_id TEXT PRIMARY KEY, context_data JSONB NOT NULL DEFAULT '{{}}'::jsonb); \
                 CREATE TABLE IF NOT EXISTS {st} (run_id TEXT PRIMARY KEY, status TEXT, status_data JSONB, updated_at TIMESTAMPTZ NOT NULL DEFAULT now());"
            )
        } else {
            String::new()
        };
        let sql = format!(
            "BEGIN; SELECT pg_advisory_xact_lock(hashtext('flowcraft-rabbitmq-adapter ddl')); {create_sql} \
             ALTER TABLE {st} ADD COLUMN IF NOT EXISTS status TEXT, ADD COLUMN IF NOT EXISTS status_data JSONB, \
               ADD COLUMN IF NOT EXISTS updated_at TIMESTAMPTZ NOT NULL DEFAULT now(), ADD COLUMN IF NOT EXISTS blueprint_id TEXT, \
               ADD COLUMN IF NOT EXISTS queued JSONB, ADD COLUMN IF NOT EXISTS routes JSONB, ADD COLUMN IF NOT EXISTS error TEXT; \
             COMMIT;"
        );
        let conn = self.pool.connect().await?;
        if let Err(e) = conn.client().batch_execute(&sql).await {
            let _ = conn.client().batch_execute("ROLLBACK").await;
            return Err(CoreError::pg(format!("preparing the tables {ctx} and {st}"), e));
        }
        Ok(())
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
        Ok(RunSnapshot { context, context_text, status: row.get(1), tracked: row.get(2), route })
    }

    /// Makes sure the run has a context row carrying `initial` keys (kept when
    /// already present) and a tracked status row.
    pub async fn init_run(&self, run_id: &str, blueprint_id: &str, initial: &Map<String, Value>, queued: &[String]) -> CoreResult<()> {
        let initial = Value::Object(initial.clone()).to_string();
        self.pool.query("creating a run's context", &self.sql.init_context, &[&run_id, &initial]).await?;
        let queued: Map<String, Value> = queued.iter().map(|q| (q.clone(), Value::Bool(true))).collect();
        let queued = Value::Object(queued).to_string();
        self.pool.query("creating a run's status", &self.sql.init_status, &[&run_id, &blueprint_id, &queued]).await?;
        Ok(())
    }

    /// Commits a node's effect once. `settle` also removes the node from the
    /// queue and adds `ready`; without it the caller settles after its joins.
    #[allow(clippy::too_many_arguments)]
    pub async fn commit(
        &self,
        run_id: &str,
        node_id: &str,
        sets: &Map<String, Value>,
        deletes: &[String],
        route: &[String],
        ready: &[String],
        settle: bool,
    ) -> CoreResult<Commit> {
        let sets = Value::Object(sets.clone()).to_string();
        let output_key = format!("_outputs.{node_id}");
        let rows = self
            .pool
            .query(
                "committing a node's output",
                &self.sql.commit,
                &[&run_id, &node_id, &sets, &deletes, &output_key, &route, &ready, &settle],
            )
            .await?;
        Ok(match rows.first() {
            Some(r) => Commit::Applied { drained: r.get::<_, Option<bool>>(0).unwrap_or(false) },
            None => Commit::AlreadyDone,
        })
    }

    /// Removes a completed node from the queue and adds the successors it made
    /// ready (those without an output yet). Idempotent.
    pub async fn settle(&self, run_id: &str, node_id: &str, ready: &[String]) -> CoreResult<bool> {
        let rows = self.pool.query("settling a node", &self.sql.settle, &[&run_id, &node_id, &ready]).await?;
        Ok(rows.first().and_then(|r| r.get::<_, Option<bool>>(0)).unwrap_or(false))
    }

    /// Records a node failure (the first one becomes the run's reason) and
    /// removes the node from the queue.
    pub async fn fail_node(&self, run_id: &str, node_id: &str, reason: &str) -> CoreResult<bool> {
        let rows = self.pool.query("recording a node failure", &self.sql.fail_node, &[&run_id, &node_id, &reason]).await?;
        Ok(rows.first().and_then(|r| r.get::<_, Option<bool>>(0)).unwrap_or(false))
    }

    /// Writes the final status of a drained run, once. Returns it when this
    /// call wrote it.
    pub async fn finalize(&self, run_id: &str) -> CoreResult<Option<String>> {
        let rows = self.pool.query("finishing a run", &self.sql.finalize, &[&run_id]).await?;
        Ok(rows.first().map(|r| r.get::<_, String>(0)))
    }

    /// Fails a run at once (unknown blueprint, node not in blueprint). Never
    /// overwrites a final status. True when this call wrote it.
    pub async fn fail_run(&self, run_id: &str, reason: &str) -> CoreResult<bool> {
        let rows = self.pool.query("failing a run", &self.sql.fail_run, &[&run_id, &reason]).await?;
        Ok(!rows.is_empty())
    }
}
