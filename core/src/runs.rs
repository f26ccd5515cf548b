//! Runs as a user handles them: start, await, inspect, reconcile, resume,
//! cancel. Needs no consumer: a client process can use it alone.

use crate::amqp::QueueTarget;
use crate::blueprint::{Blueprint, Blueprints};
use crate::error::{CoreError, CoreResult};
use crate::executor::NodeExecutor;
use crate::joins::{done_set, frontier, node_states};
use crate::notify::Listener;
use crate::pg::PgTarget;
use crate::queue::{Broker, JobMessage};
use crate::run_store::{RunStore, RunSummary, FINAL_STATUSES};
use crate::schema::Installed;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// How often `wait_for_run` reads the status when the status table has no
/// notify trigger (a status written by another process is seen this late).
pub const FALLBACK_POLL: Duration = Duration::from_secs(1);
/// How often it reads it anyway (a notification lost with a connection, a
/// payload too long to send).
pub const SAFETY_POLL: Duration = Duration::from_secs(10);

pub struct RunClient {
    pub store: Arc<RunStore>,
    pub blueprints: Arc<Blueprints>,
    coordination: Arc<dyn crate::coordination::CoordinationStore>,
    listener: Arc<Listener>,
    target: QueueTarget,
    create_tables: bool,
    broker: tokio::sync::Mutex<Option<Arc<Broker>>>,
    prepared: OnceCell<Installed>,
}

/// A run's state as `getRun` reports it.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    pub run_id: String,
    pub status: Option<String>,
    pub status_data: Value,
    pub blueprint_id: Option<String>,
    pub updated_at: Option<String>,
    pub context: Value,
    pub nodes: Vec<NodeReport>,
}

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeReport {
    pub id: String,
    pub uses: String,
    /// done | running | sleeping | waiting | awaiting | failed | not_reached
    pub state: &'static str,
    /// A sleeping node's wake-up time (ISO 8601, UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wake_up_at: Option<String>,
    /// The child run a running `subflow` node waits for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub child_run_id: Option<String>,
}

impl RunClient {
    pub fn new(
        pg: &PgTarget,
        context_table: &str,
        status_table: &str,
        blueprints: Arc<Blueprints>,
        coordination: Arc<dyn crate::coordination::CoordinationStore>,
        target: QueueTarget,
        create_tables: bool,
    ) -> CoreResult<RunClient> {
        Ok(RunClient {
            store: Arc::new(RunStore::new(pg, context_table, status_table)?),
            blueprints,
            coordination,
            listener: Listener::shared(pg),
            target,
            create_tables,
            broker: tokio::sync::Mutex::new(None),
            prepared: OnceCell::new(),
        })
    }

    async fn prepare(&self) -> CoreResult<Installed> {
        self.prepared.get_or_try_init(|| async { self.store.prepare_tables(self.create_tables).await }).await.copied()
    }

    async fn broker(&self) -> CoreResult<Arc<Broker>> {
        let mut slot = self.broker.lock().await;
        if let Some(b) = slot.as_ref() {
            if b.is_connected() {
                return Ok(b.clone());
            }
        }
        let b = Arc::new(Broker::connect(&self.target).await?);
        *slot = Some(b.clone());
        Ok(b)
    }

    /// Publishes jobs, riding out a broker moment: a lost node of a cluster (the
    /// next connect goes to another), a quorum queue electing its leader (the
    /// publish is nacked). Gives up after `Timings::publish_patience`.
    async fn publish(&self, jobs: &[JobMessage]) -> CoreResult<()> {
        let timings = &self.target.timings;
        let deadline = tokio::time::Instant::now() + timings.publish_patience;
        let mut backoff = timings.commit_retry();
        loop {
            let delay = backoff.next_delay();
            let result = match self.broker().await {
                Ok(b) => b.publish_jobs(jobs).await,
                Err(e) => Err(e),
            };
            match result {
                Err(e) if e.is_transient() && tokio::time::Instant::now() + delay < deadline => {
                    self.broker.lock().await.take();
                    tokio::time::sleep(delay).await;
                }
                other => return other,
            }
        }
    }

    fn blueprint(&self, id: &str) -> CoreResult<Arc<Blueprint>> {
        self.blueprints.get(id).ok_or_else(|| {
            CoreError::InvalidArgument(format!("unknown blueprint '{id}': add it to runtimeOptions.blueprints"))
        })
    }

    /// Starts a run: context row, `running` status with its start nodes queued,
    /// then the start jobs. Starting twice with one run id or idempotency key
    /// starts one run. Returns `(run id, created)`.
    pub async fn start_run(
        &self,
        blueprint_id: &str,
        initial: Map<String, Value>,
        run_id: &str,
        idempotency_key: Option<&str>,
    ) -> CoreResult<(String, bool)> {
        self.start_run_traced(blueprint_id, initial, run_id, idempotency_key, None).await
    }

    /// `start_run`, its jobs carrying the W3C trace context `traceparent`.
    pub async fn start_run_traced(
        &self,
        blueprint_id: &str,
        initial: Map<String, Value>,
        run_id: &str,
        idempotency_key: Option<&str>,
        traceparent: Option<&str>,
    ) -> CoreResult<(String, bool)> {
        self.prepare().await?;
        let bp = self.blueprint(blueprint_id)?;
        if bp.start_nodes().is_empty() {
            return Err(CoreError::InvalidBlueprint {
                id: bp.id.clone(),
                reason: "it has no start node (a node without incoming edges)".into(),
            });
        }
        let mut context = initial;
        context.insert("blueprintId".into(), Value::String(bp.id.clone()));
        context.insert("blueprintVersion".into(), bp.version.clone());
        let created =
            self.store.start_run(run_id, &bp.id, &context, &bp.node_ids(), bp.start_nodes(), idempotency_key).await?;
        if !created {
            let existing = match idempotency_key {
                Some(k) => self.store.find_idempotent(k).await?.unwrap_or_else(|| run_id.to_string()),
                None => run_id.to_string(),
            };
            return Ok((existing, false));
        }
        let jobs: Vec<JobMessage> =
            bp.start_nodes().iter().map(|n| JobMessage::new(run_id, &bp.id, n).with_trace(traceparent)).collect();
        if let Err(e) = self.publish(&jobs).await {
            // All or nothing: a run without its start jobs would never move.
            let _ = self.store.delete_run(run_id).await;
            return Err(e);
        }
        Ok((run_id.to_string(), true))
    }

    /// Resolves with `status_data` once the run is completed, failed,
    /// cancelled or awaiting. Woken by NOTIFY: from our own statements, and
    /// from any writer's when the status table has the notify trigger; without
    /// it, the status is read again every `FALLBACK_POLL`.
    pub async fn wait_for_run(&self, run_id: &str, timeout: Duration) -> CoreResult<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = |last: Option<&CoreError>| {
            let last = last.map(|e| format!("; the last attempt to read it failed: {e}")).unwrap_or_default();
            CoreError::Timeout(format!(
                "run '{run_id}' did not finish within {} ms (it may still finish: wait again or inspect it with getRun){last}",
                timeout.as_millis()
            ))
        };
        let mut backoff = self.store.pool().target().timings.reconnect();
        // A PostgreSQL restart (or a dead link) is waited out, not reported:
        // only the caller's own timeout ends the wait early.
        loop {
            let error = match self.wait_once(run_id, deadline).await {
                Ok(Some(data)) => return Ok(data),
                Ok(None) => return Err(timed_out(None)),
                Err(e) if e.is_transient() => e,
                Err(e) => return Err(e),
            };
            let delay = backoff.next_delay();
            if tokio::time::Instant::now() + delay >= deadline {
                return Err(timed_out(Some(&error)));
            }
            tokio::time::sleep(delay).await;
        }
    }

    /// The run's status data once it is final or awaiting; `None` at `deadline`.
    async fn wait_once(&self, run_id: &str, deadline: tokio::time::Instant) -> CoreResult<Option<Value>> {
        let installed = self.prepare().await?;
        self.listener.ensure().await?;
        let poll = if installed.notify { SAFETY_POLL } else { FALLBACK_POLL };
        let key = (self.store.status_table().to_string(), run_id.to_string());
        loop {
            // Registered before the read, so an announcement in between is not
            // missed; unregistered when dropped, on every path out.
            let mut woken = self.listener.wait(key.clone());
            if let Some((Some(status), data)) = self.store.status(run_id).await? {
                if FINAL_STATUSES.contains(&status.as_str()) || status == "awaiting" {
                    let data =
                        data.and_then(|d| serde_json::from_str(&d).ok()).unwrap_or_else(|| json!({ "status": status }));
                    return Ok(Some(data));
                }
            }
            // Woken, or time to read the status again (a writer without the
            // notify trigger), or the caller's deadline.
            let tick = (tokio::time::Instant::now() + poll).min(deadline);
            if tokio::time::timeout_at(tick, woken.woken()).await.is_err() && tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    /// Waiters of `waitForRun` registered on this client's listener (for tests).
    pub fn waiting(&self) -> usize {
        self.listener.waiting()
    }

    pub async fn get_run(&self, run_id: &str) -> CoreResult<Option<RunReport>> {
        self.prepare().await?;
        let view = self.store.view(run_id).await?;
        if view.status.is_none() && view.context.is_none() {
            return Ok(None);
        }
        let context = view.context.clone().unwrap_or_default();
        let bp_id = view.blueprint();
        let nodes = match bp_id.as_deref().and_then(|id| self.blueprints.get(id)) {
            Some(bp) => node_states(&bp, &view),
            None => vec![],
        };
        Ok(Some(RunReport {
            run_id: run_id.to_string(),
            status: view.status,
            status_data: view.status_data,
            blueprint_id: bp_id,
            updated_at: view.updated_at,
            context: Value::Object(context),
            nodes,
        }))
    }

    pub async fn list_runs(&self, limit: i64, status: Option<&str>) -> CoreResult<Vec<RunSummary>> {
        self.prepare().await?;
        self.store.list(limit, status).await
    }

    /// Enqueues what a run needs to move on: nodes queued but idle for longer
    /// than `stale_after` (their message may be lost), and nodes whose
    /// predecessors are done but that were never queued (e.g. nodes completed
    /// by another adapter, without this worker's bookkeeping). A node lock keeps two reconcilers from both
    /// enqueueing it. Returns the enqueued node ids.
    pub async fn reconcile(&self, run_id: &str, stale_after: Duration) -> CoreResult<Vec<String>> {
        self.prepare().await?;
        let view = self.store.view(run_id).await?;
        if view.context.is_none() {
            return Err(CoreError::InvalidArgument(format!("cannot reconcile run '{run_id}': it has no context row")));
        }
        let status = view.status.clone().unwrap_or_else(|| "running".into());
        if FINAL_STATUSES.contains(&status.as_str()) || status == "awaiting" {
            return Ok(vec![]);
        }
        let bp_id = view.blueprint().ok_or_else(|| {
            CoreError::InvalidArgument(format!("cannot reconcile run '{run_id}': its blueprint is unknown"))
        })?;
        let bp = self.blueprint(&bp_id)?;
        let frontier = frontier(&bp, &view, stale_after);
        let mut enqueue = Vec::new();
        let ttl = stale_after.as_secs().max(30);
        for node in frontier {
            if self
                .coordination
                .set_if_not_exist(&format!("flowcraft:nodelock:{run_id}:{node}"), "reconcile", ttl)
                .await?
            {
                enqueue.push(node);
            }
        }
        if enqueue.is_empty() {
            return Ok(enqueue);
        }
        if view.status.is_none() || !view.has_rows {
            // A run written by another adapter: it gets its node rows first.
            let context = view.context.clone().unwrap_or_default();
            let adopted = bp.adopted(|id| context.contains_key(&format!("_outputs.{id}")));
            self.store.init_run(run_id, &bp.id, &Map::new(), &bp.node_ids(), &[], &adopted).await?;
        }
        if !self.store.add_queued(run_id, &enqueue).await? {
            return Ok(vec![]);
        }
        let iteration = |n: &String| view.iterations.get(n).copied().unwrap_or(0);
        let jobs: Vec<JobMessage> =
            enqueue.iter().map(|n| JobMessage::new(run_id, &bp.id, n).in_iteration(iteration(n))).collect();
        self.publish(&jobs).await?;
        Ok(enqueue)
    }

    /// Runs still running with no change for `threshold`.
    pub async fn stale_runs(&self, threshold: Duration, limit: i64) -> CoreResult<Vec<String>> {
        self.prepare().await?;
        self.store.stale_runs(threshold.as_secs_f64(), limit).await
    }

    /// Resumes a run waiting for a human: `_resume.action` / `_resume.output`,
    /// the awaiting nodes complete with `output`, then their successors run.
    pub async fn resume_with_action(
        &self,
        run_id: &str,
        action: &str,
        output: Option<Value>,
        evaluator: Option<&dyn NodeExecutor>,
    ) -> CoreResult<Vec<String>> {
        self.prepare().await?;
        let view = self.store.view(run_id).await?;
        if view.status.as_deref() != Some("awaiting") {
            return Err(CoreError::RunState(format!(
                "run '{run_id}' is not awaiting (status: {}); only a run stopped at a wait node can be resumed",
                view.status.as_deref().unwrap_or("unknown")
            )));
        }
        let mut context = view.context.clone().unwrap_or_default();
        let bp_id = view.blueprint().unwrap_or_default();
        let bp = self.blueprint(&bp_id)?;
        let awaiting: Vec<String> = context
            .get("_awaitingNodeIds")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
            .unwrap_or_default();
        // A subflow node awaits because its child run stopped at a wait node: the resume is the
        // child's (and its child's, when nested). The node completes when the child ends. Its
        // parent's own wait nodes, if any, wait for a resume of their own.
        let (children, awaiting): (Vec<String>, Vec<String>) =
            awaiting.into_iter().partition(|n| view.children.contains_key(n));
        if !children.is_empty() {
            let mut enqueued = Vec::new();
            for node in &children {
                let child = &view.children[node];
                enqueued.extend(Box::pin(self.resume_with_action(child, action, output.clone(), evaluator)).await?);
                self.store.child_resumed(run_id, node).await?;
            }
            return Ok(enqueued);
        }
        let mut sets = Map::new();
        sets.insert("_resume.action".into(), Value::String(action.to_string()));
        sets.insert("_resume.output".into(), output.clone().unwrap_or(Value::Null));
        let mut routes = Map::new();
        let mut outputs: Vec<(String, Value)> = Vec::new();
        let mut inputs: Vec<(String, Option<Value>)> = Vec::new();
        let mut bound_all: Vec<String> = Vec::new();
        let mut completed = done_set(&view);
        let bound = BTreeSet::new();
        for node in &awaiting {
            let out =
                output.clone().or_else(|| context.get(&format!("_outputs.{node}")).cloned()).unwrap_or(Value::Null);
            outputs.push((node.clone(), out.clone()));
            context.insert(format!("_outputs.{node}"), out.clone());
            context.insert(node.clone(), out.clone());
            context.insert("_resume.action".into(), Value::String(action.to_string()));
            completed.insert(node.clone());
            let facts = crate::routing::RunFacts { completed: &completed, bound: &bound };
            let routed =
                crate::routing::route(&bp, node, Some(&out), Some(action), &mut context, facts, evaluator).await;
            for (k, v) in routed.inputs {
                if v == crate::routing::EdgeInput::Output {
                    // (routing left it out of the context; a later wait node's edge transform may read it)
                    context.insert(k.clone(), out.clone());
                }
                let v = v.resolve(Some(&out));
                if let Some(t) = k.strip_prefix("_inputs.") {
                    inputs.retain(|(o, _)| o != t);
                    inputs.push((t.to_string(), v));
                }
            }
            bound_all.extend(routed.bound);
            routes.insert(node.clone(), json!(routed.route));
        }
        if !self.store.resume(run_id, &sets, &outputs, &routes, &inputs, &bound_all).await? {
            return Err(CoreError::RunState(format!("run '{run_id}' was resumed or changed by someone else")));
        }
        let enqueued = self.reconcile(run_id, Duration::from_secs(3600)).await?;
        if enqueued.is_empty() {
            // Nothing follows the wait node: finish the run if nothing else runs.
            self.store.finalize(run_id).await?;
        }
        Ok(enqueued)
    }

    /// Cancels a run, and the child runs its subflow nodes wait for (and theirs).
    pub async fn cancel_run(&self, run_id: &str, reason: &str) -> CoreResult<bool> {
        self.prepare().await?;
        let children = self.store.children(run_id).await?;
        let cancelled = self.store.cancel(run_id, reason).await?;
        for child in children {
            Box::pin(self.cancel_run(&child, reason)).await?;
        }
        Ok(cancelled)
    }

    pub async fn dead_letters(&self, limit: usize) -> CoreResult<Vec<(String, String, i64)>> {
        self.broker().await?.peek_dead(limit).await
    }

    pub async fn requeue_dead_letters(&self, limit: usize) -> CoreResult<usize> {
        self.broker().await?.requeue_dead(limit).await
    }

    pub async fn close(&self) {
        if let Some(b) = self.broker.lock().await.take() {
            b.close().await;
        }
    }
}
