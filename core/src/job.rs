//! The life of one job: DESIGN.md's "What one job does". Read the run once,
//! run the node (unless its output is already committed), commit once, join,
//! publish the successors, and finish the run when nothing of it remains.

use crate::blueprint::{Blueprint, Blueprints, NodeDef};
use crate::builtins::BuiltinEffect;
use crate::context_store::PatchOp;
use crate::error::{CoreError, CoreResult};
use crate::evaluator::{resolve_input, RunState};
use crate::executor::{Cancelled, Level, NodeError, NodeExecutor, NodeRequest, NodeResponse};
use crate::joins;
use crate::json_text::JsonText;
use crate::locks::{InFlight, NodeLocks};
use crate::queue::{Broker, JobMessage};
use crate::run_store::{Commit, Effect, Enqueued, RunStore, FINAL_STATUSES};
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// What to do with the message once the job is handled.
#[derive(Debug)]
pub enum Disposition {
    Ack,
    /// Cannot ever be processed: move it to the dead-letter queue with this reason.
    DeadLetter(String),
    /// A service failed (connection lost...): try again later.
    Retry(CoreError),
    /// The worker is stopping and interrupted the node: give the job back.
    Requeue,
    /// The node committed, and the one successor its commit enqueued runs next in
    /// this process, under the same delivery (`worker.rs` `handle_delivery`),
    /// without a message of its own: the delivery is acked once the chain ends.
    /// Should this worker die first, the delivery comes back redelivered and
    /// walks the chain again (`publish_committed`), so nothing is lost.
    Continue(Box<JobMessage>),
}

impl Disposition {
    /// Ack, or go on with the successor this delivery keeps (`JobRunner::pick_inline`).
    fn then(kept: Option<JobMessage>) -> Disposition {
        kept.map_or(Disposition::Ack, |job| Disposition::Continue(Box::new(job)))
    }
}

#[derive(Clone, Copy)]
struct Redelivery {
    redelivered: bool,
    max_deliveries: u32,
}

pub struct JobRunner {
    pub(crate) in_flight: InFlight,
    pub(crate) node_locks: NodeLocks,
    pub blueprints: Blueprints,
    pub registry: HashSet<String>,
    pub store: RunStore,
    pub coordination: std::sync::Arc<dyn crate::coordination::CoordinationStore>,
    pub executor: Arc<dyn NodeExecutor>,
    /// `typescriptCompat`: work beside the TypeScript adapter's workers (compat.rs).
    pub compat: bool,
    /// A committed node's delivery goes on with the successor it enqueued, when it
    /// enqueued one (`pick_inline`, `Disposition::Continue`); `FLOWCRAFT_INLINE=0`
    /// publishes it, to compare.
    pub inline: bool,
}

impl JobRunner {
    /// The one way to make a runner (its lock maps start empty): the binding's
    /// `NativeWorker` and the Rust integration tests both build it here.
    pub fn new(
        blueprints: Blueprints,
        registry: HashSet<String>,
        store: RunStore,
        coordination: Arc<dyn crate::coordination::CoordinationStore>,
        executor: Arc<dyn NodeExecutor>,
    ) -> JobRunner {
        JobRunner {
            in_flight: InFlight::default(),
            node_locks: NodeLocks::default(),
            blueprints,
            registry,
            store,
            coordination,
            executor,
            compat: false,
            inline: std::env::var("FLOWCRAFT_INLINE").map_or(true, |v| v != "0"),
        }
    }

    /// With `typescriptCompat` on (`on`) or off (the default).
    pub fn with_compat(mut self, on: bool) -> JobRunner {
        self.compat = on;
        self
    }
}

pub(crate) enum Failure {
    Failed(NodeFailure),
    /// The worker is stopping: the job goes back to the queue.
    Interrupted,
    /// The run was cancelled while the node ran: nothing more to do.
    RunCancelled,
}

/// A node that failed: its error, and the context writes it made (FlowRuntime
/// keeps them: a class node's `recover()`, middleware around it).
pub(crate) struct NodeFailure {
    pub(crate) message: String,
    /// A `FlowcraftError` with `isFatal: true`, or an input FlowRuntime cannot
    /// resolve: no fallback runs.
    pub(crate) fatal: bool,
    pub(crate) writes: Vec<PatchOp>,
}

impl NodeFailure {
    pub(crate) fn failed(message: impl Into<String>) -> Failure {
        Failure::Failed(NodeFailure { message: message.into(), fatal: false, writes: vec![] })
    }
}

#[derive(Default)]
pub(crate) struct Executed {
    /// `None`: the node returned no output (`undefined`).
    pub(crate) output: Option<JsonText>,
    pub(crate) action: Option<String>,
    pub(crate) writes: Vec<PatchOp>,
    /// What a built-in's commit does beside a node's (a loop going round, a batch).
    pub(crate) builtin: Option<crate::builtins::BuiltinEffect>,
}

/// What a job knows of its run beside the context (see `RunSnapshot`):
/// `completed` lists the nodes that completed without output.
pub(crate) struct Facts {
    pub(crate) completed: BTreeSet<String>,
    pub(crate) bound: BTreeSet<String>,
    /// Only some node rows were read (`Blueprint::reads`): node code reads the others on demand.
    pub(crate) partial: bool,
    /// Context row keys not read (large values): node code reads them on demand.
    pub(crate) omitted: Vec<String>,
    /// The node's big bound input as its text, not in the context (`Merged::own_input`).
    pub(crate) own_input: Option<JsonText>,
}

impl Facts {
    /// The node's input by FlowRuntime's rules, over the context and these facts.
    pub(crate) fn input<'a>(
        &'a self,
        node: &NodeDef,
        context: &'a Map<String, Value>,
    ) -> Result<crate::evaluator::ResolvedInput<'a>, String> {
        if let Some(text) = self.own_bound_input(node) {
            return Ok(crate::evaluator::ResolvedInput { value: Some(Cow::Owned(text.parse())), from_mapping: false });
        }
        resolve_input(node, &RunState { context, completed: &self.completed, bound: &self.bound })
    }

    /// The node's input as the request carries it: its JSON text (`None`: `undefined`), and
    /// whether it came from an `inputs` mapping. A big bound input goes as the text read.
    pub(crate) fn input_text(
        &self,
        node: &NodeDef,
        context: &Map<String, Value>,
    ) -> Result<(Option<JsonText>, bool), String> {
        if let Some(text) = self.own_bound_input(node) {
            return Ok((Some(text.clone()), false));
        }
        let input = self.input(node, context)?;
        Ok((input.value.as_deref().map(JsonText::of), input.from_mapping))
    }

    /// `own_input`, when it is this node's bound input.
    fn own_bound_input(&self, node: &NodeDef) -> Option<&JsonText> {
        self.own_input.as_ref().filter(|_| self.bound.contains(&node.id))
    }
}

impl JobRunner {
    pub(crate) fn log(&self, level: Level, message: &str, meta: Value) {
        self.executor.log(level, message, meta);
    }

    /// Handles one delivery of a job (`redelivered` by the broker, or `retried`
    /// in place by this worker after a service error). Errors from services
    /// become `Retry`; problems of the message itself become `DeadLetter`;
    /// nothing panics.
    pub async fn handle(
        &self,
        body: &[u8],
        redelivered: bool,
        retried: bool,
        max_deliveries: u32,
        broker: &Broker,
    ) -> Disposition {
        match JobMessage::parse(body) {
            Ok(j) => {
                self.handle_job(
                    JobMessage { seen_before: redelivered || retried, ..j },
                    redelivered,
                    max_deliveries,
                    broker,
                )
                .await
            }
            Err(reason) => {
                let reason = format!("Not a Flowcraft job: {reason}");
                self.log(Level::Error, &reason, json!({ "queue": broker.queue }));
                Disposition::DeadLetter(reason)
            }
        }
    }

    /// Handles one job: a delivery's own (`handle`), or a successor a delivery
    /// goes on with (`Disposition::Continue`; `redelivered` and `seen_before` as the
    /// delivery's while a redelivery walks its chain again, counting toward poison).
    pub async fn handle_job(
        &self,
        job: JobMessage,
        redelivered: bool,
        max_deliveries: u32,
        broker: &Broker,
    ) -> Disposition {
        // One delivery of a node at a time in this process: after a lost
        // connection the broker hands the job to us again while the old copy
        // may still run; the second waits, then finds the output committed.
        let lock = self.node_locks.lock(&job.run_id, &job.node_id);
        let _held = lock.lock().await;
        self.in_flight.enter(&job.run_id);
        let outcome = self.process(&job, Redelivery { redelivered, max_deliveries }, broker).await;
        self.in_flight.leave(&job.run_id);
        match outcome {
            Ok(d) => d,
            Err(e) if e.is_transient() => Disposition::Retry(e),
            Err(e) => {
                let reason = format!("Job for node '{}' of run '{}' failed: {e}", job.node_id, job.run_id);
                self.log(
                    Level::Error,
                    &reason,
                    json!({ "runId": job.run_id, "nodeId": job.node_id, "code": e.code() }),
                );
                // The run cannot go on without this node: fail it with the reason
                // rather than leave it running forever.
                match self.store.fail_node(&job.run_id, &job.node_id, &reason).await {
                    Ok(Some(error)) => self.finished(&job, "failed", Some(&error)),
                    Ok(None) => {}
                    Err(e) if e.is_transient() => return Disposition::Retry(e),
                    Err(_) => {}
                }
                Disposition::DeadLetter(reason)
            }
        }
    }

    /// A job redelivered after its worker died: count the deliveries that
    /// reached node code, so a node that kills every worker ends up
    /// dead-lettered as poison. The worker runs such jobs alone, so jobs that
    /// merely ran beside the poison one are not blamed for its crashes.
    ///
    /// The count is kept in the run's status row (`deliveries`), so it
    /// survives a Redis flush or restart.
    async fn count_delivery(
        &self,
        job: &JobMessage,
        redelivery: Redelivery,
        broker: &Broker,
    ) -> CoreResult<Option<Disposition>> {
        if !redelivery.redelivered {
            return Ok(None);
        }
        let n = self.store.count_delivery(&job.run_id, &job.node_id).await?;
        if n < i64::from(redelivery.max_deliveries) {
            return Ok(None);
        }
        let reason = format!(
            "Node '{}' of run '{}' was started {} times and its worker died or lost its connection each time; its job was dead-lettered as poison",
            job.node_id, job.run_id, n
        );
        self.log(Level::Error, &reason, json!({ "runId": job.run_id, "nodeId": job.node_id }));
        // The run cannot complete without this node: it fails with the reason.
        let failing = || self.store.fail_node(&job.run_id, &job.node_id, &reason);
        if let Some(error) = self.retry_transient(broker, job, "failing a poison job's run", failing).await? {
            self.finished(job, "failed", Some(&error));
        }
        Ok(Some(Disposition::DeadLetter(reason)))
    }

    async fn process(&self, job: &JobMessage, redelivery: Redelivery, broker: &Broker) -> CoreResult<Disposition> {
        let meta = json!({ "runId": job.run_id, "blueprintId": job.blueprint_id, "nodeId": job.node_id });
        let Some(bp) = self.blueprints.get(&job.blueprint_id) else {
            let reason = format!(
                "Blueprint with ID '{}' not found in the worker's runtime registry (runtimeOptions.blueprints).",
                job.blueprint_id
            );
            return self.refuse_run(job, &reason, broker).await;
        };
        let (node, mut snapshot, all) = match bp.node(&job.node_id) {
            Some(node) => {
                let (needed, all) = bp.reads(&node.id);
                let keys = bp.input_keys(&node.id);
                let snapshot = self.store.load_keeping(&job.run_id, &job.node_id, &needed, all, &keys).await?;
                (std::borrow::Cow::Borrowed(node), snapshot, all)
            }
            None => {
                // a node the run added (a batch item): its row says what it is
                let own = std::slice::from_ref(&job.node_id);
                let snapshot = self.store.load(&job.run_id, &job.node_id, own, false).await?;
                match crate::builtins::item_node(&job.node_id, snapshot.node.as_ref()) {
                    Some(node) => (std::borrow::Cow::Owned(node), snapshot, false),
                    None => {
                        let reason = format!("Node '{}' is not in blueprint '{}'.", job.node_id, bp.id);
                        return self.refuse_run(job, &reason, broker).await;
                    }
                }
            }
        };
        let node = node.as_ref();
        if let Some(status) = snapshot.status.as_deref() {
            if FINAL_STATUSES.contains(&status) {
                self.log(Level::Debug, &format!("Run is already {status}; job skipped"), meta);
                return Ok(Disposition::Ack);
            }
        }
        let mut context = snapshot.context.take().unwrap_or_default();
        if let Some(stored) = context.get("blueprintVersion") {
            if *stored != bp.version {
                let reason = format!(
                    "Blueprint version mismatch for run '{}': stored version {}, worker has version {}. Job refused to protect the run's state; run a worker with the matching blueprint.",
                    job.run_id, stored, bp.version
                );
                self.log(Level::Warn, &reason, meta);
                return Ok(Disposition::DeadLetter(reason));
            }
        }
        let first_sight = !context.contains_key("blueprintId") || !snapshot.tracked;
        if first_sight {
            let mut initial = Map::new();
            initial.insert("blueprintId".into(), Value::String(bp.id.clone()));
            initial.insert("blueprintVersion".into(), bp.version.clone());
            let mut queued: Vec<String> = bp.start_nodes().to_vec();
            if !queued.contains(&job.node_id) {
                queued.push(job.node_id.clone());
            }
            // nodes that workers without our bookkeeping completed stay done, with their join
            // arrivals, and the nodes they enqueued are pending (their jobs are in the queue)
            let adopted = bp.adopted(|id| context.contains_key(&format!("_outputs.{id}")));
            for n in &adopted.frontier {
                if !queued.contains(n) {
                    queued.push(n.clone());
                }
            }
            self.store.init_run(&job.run_id, &bp.id, &initial, &bp.node_ids(), &queued, &adopted).await?;
            for (k, v) in initial {
                context.entry(k).or_insert(v);
            }
        }

        let own = snapshot.node.as_ref();
        if own.is_some_and(|row| row.iteration > job.iteration) {
            // A job of an earlier time round a loop: that iteration has moved on. Redelivered
            // (or retried in place) just after its own commit sent the node round again (a
            // loop controller's `continue`), its worker may have died or failed before
            // publishing what that commit enqueued (the body's next iteration): publish it
            // again. (Not for a job that was never delivered before: a stale copy changes
            // nothing.)
            if job.seen_before && own.is_some_and(|row| row.iteration == job.iteration + 1) {
                self.log(
                    Level::Debug,
                    "Redelivered job of the last loop iteration; re-publishing its successors",
                    meta,
                );
                let kept = self.publish_committed(&bp, job, broker).await?;
                return Ok(Disposition::then(kept));
            }
            self.log(Level::Debug, "Job of an earlier loop iteration; skipped", meta);
            return Ok(Disposition::Ack);
        }
        let output_key = format!("_outputs.{}", job.node_id);
        // (inside a loop, an earlier iteration's output stays in the context: only the row tells)
        let done = match own {
            Some(row) if row.iteration > 0 => row.state == "done",
            _ => context.contains_key(&output_key) || snapshot.completed.contains(&job.node_id),
        };
        if !done && !first_sight && own.is_some_and(|row| row.state == "idle" && row.iteration == job.iteration) {
            // A job no commit of ours enqueued: published by a worker without our bookkeeping
            // (the TypeScript adapter, during an upgrade) or over the wire protocol. The
            // publisher decided the node runs: it counts as pending from now on.
            self.store.add_queued(&job.run_id, std::slice::from_ref(&job.node_id)).await?;
        }
        if done {
            if !job.seen_before {
                // A duplicate (two jobs for one node): the delivery that committed publishes.
                self.log(Level::Debug, "Node already completed; duplicate job skipped", meta);
                return Ok(Disposition::Ack);
            }
            // Redelivered after its commit: redo only what follows the commit.
            self.log(Level::Debug, "Node already completed; re-publishing its successors", meta);
            self.compat_replay(&bp, job, own, broker).await?;
            let kept = self.publish_committed(&bp, job, broker).await?;
            return Ok(Disposition::then(kept));
        }
        if let Some(status) = snapshot.status.as_deref() {
            if status == "awaiting"
                && context
                    .get("_awaitingNodeIds")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|v| v == job.node_id.as_str()))
            {
                return Ok(Disposition::Ack);
            }
        }

        if let Some(poison) = self.count_delivery(job, redelivery, broker).await? {
            return Ok(poison);
        }
        if node.uses == "wait" && !self.registry.contains("wait") {
            // Flowcraft's built-in wait node: the run stops for a human.
            let stopped = self.store.mark_awaiting(&job.run_id, &node.id).await?;
            self.log(Level::Info, "Run is awaiting resumeWithAction", meta);
            if stopped {
                // as FlowRuntime ends run() of a workflow stopped at a wait node
                self.finished(job, "awaiting", None);
            }
            return Ok(Disposition::Ack);
        }
        let facts = Facts {
            completed: snapshot.completed.clone(),
            bound: snapshot.bound.clone(),
            partial: !all,
            omitted: snapshot.omitted.clone(),
            own_input: snapshot.own_input.take(),
        };
        if let Some(builtin) = crate::builtins::Builtin::of(node, &self.registry) {
            return self.run_builtin(builtin, &bp, node, job, &snapshot, context, &facts, broker).await;
        }
        match self.execute(&bp, node, &node.uses, job, &context, &facts).await {
            Ok(mut done) => {
                // a batch item arrives at its gather
                done.builtin = crate::builtins::item_arrival(snapshot.node.as_ref());
                self.complete(&bp, job, &node.id, done, context, &facts, broker).await
            }
            Err(Failure::Interrupted) => Ok(Disposition::Requeue),
            Err(Failure::RunCancelled) => Ok(Disposition::Ack),
            Err(Failure::Failed(failure)) => self.node_failed(&bp, job, node, failure, context, &facts, broker).await,
        }
    }

    /// Unknown blueprint or node: the run fails with the reason, the message is dead-lettered.
    async fn refuse_run(&self, job: &JobMessage, reason: &str, _broker: &Broker) -> CoreResult<Disposition> {
        self.log(Level::Error, reason, json!({ "runId": job.run_id, "nodeId": job.node_id }));
        if self.store.fail_run(&job.run_id, reason).await? {
            self.finished(job, "failed", Some(reason));
        }
        Ok(Disposition::DeadLetter(reason.to_string()))
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn execute(
        &self,
        bp: &Blueprint,
        node: &NodeDef,
        uses: &str,
        job: &JobMessage,
        context: &Map<String, Value>,
        facts: &Facts,
    ) -> Result<Executed, Failure> {
        if !self.registry.contains(uses) {
            return Err(NodeFailure::failed(format!(
                "No implementation registered for '{uses}' (node '{}' of blueprint '{}'): add it to runtimeOptions.registry.",
                node.id, bp.id
            )));
        }
        // FlowRuntime resolves the input before the node's executor (and its
        // fallback handling) runs: an input it cannot resolve fails the node as is.
        let (input, input_from_mapping) = facts
            .input_text(node, context)
            .map_err(|message| Failure::Failed(NodeFailure { message, fatal: true, writes: vec![] }))?;
        // The context row and the node rows read (the node reads others on demand), each value's
        // text once: the whole context is never one more copy of itself.
        // In a partial read, a large value of another node's key (`<id>`, `_outputs.<id>`,
        // `_inputs.<id>`) stays behind too: node code reads it when it uses it, and the input
        // travels in the request anyway.
        let mut context_entries = Vec::with_capacity(context.len());
        for (k, v) in context {
            let node_key = k.strip_prefix("_outputs.").or_else(|| k.strip_prefix("_inputs.")).unwrap_or(k);
            let text = if facts.partial && bp.node(node_key).is_some() {
                match crate::run_store::json_text_within(v, crate::run_store::LAZY_VALUE_BYTES) {
                    Some(text) => text,
                    None => continue,
                }
            } else {
                v.to_string()
            };
            context_entries.push((k.clone(), text));
        }
        let request = NodeRequest {
            run_id: job.run_id.clone(),
            blueprint_id: bp.id.clone(),
            node_id: node.id.clone(),
            uses: uses.to_string(),
            params: node.params.clone().unwrap_or_else(|| json!({})),
            config: serde_json::to_value(&node.config).unwrap_or(Value::Null),
            input,
            input_from_mapping,
            context: context_entries,
            partial: facts.partial,
            lazy_keys: facts.omitted.clone(),
            traceparent: job.traceparent.clone(),
            attempt: job.attempt.unwrap_or(1),
        };
        let NodeResponse { ok, result, writes, error } = self.executor.run(request).await;
        if ok {
            let result = result.unwrap_or_default();
            return Ok(Executed { output: result.output, action: result.action, writes, builtin: None });
        }
        match error {
            Some(NodeError { cancelled: Some(Cancelled::WorkerStopping), .. }) => Err(Failure::Interrupted),
            Some(NodeError { cancelled: Some(Cancelled::RunCancelled), .. }) => Err(Failure::RunCancelled),
            Some(e) => Err(Failure::Failed(NodeFailure { message: e.message, fatal: e.fatal, writes })),
            None => Err(Failure::Failed(NodeFailure {
                message: "node failed without an error message".into(),
                fatal: false,
                writes,
            })),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn node_failed(
        &self,
        bp: &Blueprint,
        job: &JobMessage,
        node: &NodeDef,
        failure: NodeFailure,
        context: Map<String, Value>,
        facts: &Facts,
        broker: &Broker,
    ) -> CoreResult<Disposition> {
        let NodeFailure { message, fatal, writes } = failure;
        let meta = json!({ "runId": job.run_id, "nodeId": node.id, "error": message });
        // Flowcraft's `config.fallback` names another node: the failed node
        // completes with a null output and the fallback runs next. A fatal
        // error (FlowcraftError with isFatal) runs no fallback.
        if let Some(fallback) = bp.fallback_node(&node.id).filter(|_| !fatal) {
            self.log(
                Level::Warn,
                &format!("Node '{}' failed, running fallback '{}': {message}", node.id, fallback.id),
                meta,
            );
            // (`node:fallback` was emitted by the node runner, before its `node:error`)
            let (sets, deletes) = crate::context_store::net_effect(writes);
            // FlowRuntime counts the failed node completed at its 'all' joins
            // (its fallback, inheriting its edges, is what routes to them).
            let joins = joins::failed_arrivals(bp, &node.id);
            let effect = Effect {
                output: Some(JsonText::of(&Value::Null)),
                sets,
                deletes,
                route: vec![fallback.id.clone()],
                ready: vec![fallback.id.clone()],
                joins,
                iteration: job.iteration,
                compat: self.compat,
                ..Default::default()
            };
            let kept = match self.commit(broker, job, &node.id, &effect, "committing a failed node's fallback").await? {
                (Commit::Applied { ready, finished }, _) => {
                    let (ready, finished) = self.compat_after(bp, job, &node.id, &[], ready, finished, broker).await?;
                    let kept = self.publish(bp, job, &ready, &context, &facts.completed, broker).await?;
                    if let Some((status, error)) = finished {
                        self.finished(job, &status, error.as_deref());
                    }
                    kept
                }
                (Commit::AlreadyDone, retried) => self.republish(bp, job, retried, broker).await?,
            };
            return Ok(Disposition::then(kept));
        }
        // A fallback that is a registry key rather than a node: run it in place.
        let mut writes = writes;
        if let Some(key) = bp.fallback_key(&node.id).filter(|_| !fatal) {
            if self.registry.contains(key) {
                self.executor.event(
                    "node:fallback",
                    json!({ "nodeId": node.id, "executionId": job.run_id, "fallback": key, "blueprintId": bp.id }),
                );
                match self.execute(bp, node, key, job, &context, facts).await {
                    Ok(mut done) => {
                        // the failed attempt's writes first, then the fallback's
                        writes.append(&mut done.writes);
                        done.writes = writes;
                        return self.complete(bp, job, &node.id, done, context, facts, broker).await;
                    }
                    Err(Failure::Interrupted) => return Ok(Disposition::Requeue),
                    Err(Failure::RunCancelled) => return Ok(Disposition::Ack),
                    Err(Failure::Failed(mut second)) => writes.append(&mut second.writes),
                }
            }
        }
        let reason = format!("Node '{}' failed: {message}", node.id);
        self.log(Level::Error, &reason, meta);
        self.executor.event(
            "job:failed",
            json!({ "runId": job.run_id, "blueprintId": bp.id, "nodeId": node.id, "error": { "message": message } }),
        );
        // The failure and the node's context writes, in one statement.
        let (sets, deletes) = crate::context_store::net_effect(writes);
        let failing = || self.store.fail_node_with_writes(&job.run_id, &node.id, &reason, &sets, &deletes);
        if let Some(error) = self.retry_transient(broker, job, "recording a node failure", failing).await? {
            self.finished(job, "failed", Some(&error));
        } else if self.compat {
            // rows the TypeScript adapter's workers completed may be all that keeps the run open
            let (_, finished) = self.compat_after(bp, job, &node.id, &[], vec![], None, broker).await?;
            if let Some((status, error)) = finished {
                self.finished(job, &status, error.as_deref());
            }
        }
        Ok(Disposition::Ack)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn complete(
        &self,
        bp: &Blueprint,
        job: &JobMessage,
        node_id: &str,
        done: Executed,
        mut context: Map<String, Value>,
        facts: &Facts,
        broker: &Broker,
    ) -> CoreResult<Disposition> {
        let (sets, deletes) = crate::context_store::net_effect(done.writes);
        for (k, v) in &sets {
            context.insert(k.clone(), v.clone());
        }
        for k in &deletes {
            context.remove(k);
        }
        // Flowcraft records a completed node's output under both keys; an
        // undefined output leaves neither (as its serialised context does).
        // Only the routing reads them here, and only for conditions and
        // transforms: a big output is not copied for plain edges.
        // (the routing reads nothing else of the output: `None` stands for it otherwise)
        let output = done.output.as_ref().filter(|_| bp.routing_reads_context(node_id)).map(JsonText::parse);
        let keys = [format!("_outputs.{node_id}"), node_id.to_string()];
        for key in &keys {
            match &output {
                Some(v) => context.insert(key.clone(), v.clone()),
                None => context.remove(key),
            };
        }

        let routed = crate::routing::route(
            bp,
            node_id,
            output.as_ref(),
            done.action.as_deref(),
            &mut context,
            crate::routing::RunFacts { completed: &facts.completed, bound: &facts.bound },
            Some(self.executor.as_ref()),
        )
        .await;
        let inputs = routed
            .inputs
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix("_inputs.").map(|t| (t.to_string(), v)))
            .collect();
        let route = routed.route;
        let deferred_inputs = route.iter().filter(|t| !bp.has_transformed_inbound(t)).cloned().collect();
        let mut effect = Effect {
            output: done.output,
            sets,
            deletes,
            inputs,
            bound: routed.bound,
            deferred_inputs,
            iteration: job.iteration,
            ..Default::default()
        };
        let mut scattered = None;
        match done.builtin {
            Some(BuiltinEffect::Again(body)) => effect.again = body,
            Some(BuiltinEffect::Scatter { gather, items }) => {
                // its gather waits for the scatter and every item; the scatter's output is its input now
                effect.deferred_inputs.retain(|t| *t != gather);
                scattered = Some((gather, items.len()));
                effect.spawn = items;
            }
            Some(BuiltinEffect::Item { gather, count }) => {
                // (no edge writes the gather's input: its row is written by the completing arrival only)
                effect.deferred_inputs.push(gather.clone());
                effect.joins.push(joins::gather_arrival(&gather, node_id, count));
                effect.route.push(gather);
            }
            None => {}
        }
        let arrivals = joins::arrivals(bp, node_id, &route, scattered.as_ref().map(|(g, n)| (g.as_str(), *n)));
        effect.ready.extend(arrivals.ready);
        effect.joins.extend(arrivals.joins);
        effect.route.extend(route);
        // typescriptCompat: the coordination store's counters decide what the joins do
        let decided = if self.compat { crate::compat::take_decided(bp, &mut effect.joins) } else { Vec::new() };
        effect.compat = self.compat;
        effect.held = decided.iter().map(|j| j.target.clone()).collect();
        // The node has run: a lost connection retries the commit, not the node.
        let kept = match self.commit(broker, job, node_id, &effect, "committing a node's effect").await? {
            (Commit::AlreadyDone, retried) => {
                self.log(
                    Level::Debug,
                    "Node output was committed by another delivery",
                    json!({ "runId": job.run_id, "nodeId": node_id }),
                );
                self.republish(bp, job, retried, broker).await?
            }
            (Commit::Applied { ready, finished }, _) => {
                let (ready, finished) = self.compat_after(bp, job, node_id, &decided, ready, finished, broker).await?;
                let kept = self.publish(bp, job, &ready, &context, &facts.completed, broker).await?;
                if let Some((status, error)) = finished {
                    self.finished(job, &status, error.as_deref());
                }
                kept
            }
        };
        let duration = job.received.map_or(0, |t| t.elapsed().as_millis() as u64);
        self.executor.event(
            "job:processed",
            json!({ "runId": job.run_id, "blueprintId": bp.id, "nodeId": node_id, "duration": duration, "success": true }),
        );
        Ok(Disposition::then(kept))
    }

    /// Publishes the successors that an earlier commit of this node enqueued,
    /// re-read from the run (nothing when the run has ended), when that commit
    /// may have been this delivery's own: an earlier attempt of it (`seen_before`,
    /// or `commit_retried`: a commit whose answer was lost may have applied), whose
    /// worker may have died or failed before publishing. A fresh duplicate lost
    /// the race to a live delivery, which publishes before it acks: publishing
    /// too would run every successor twice.
    async fn republish(
        &self,
        bp: &Blueprint,
        job: &JobMessage,
        commit_retried: bool,
        broker: &Broker,
    ) -> CoreResult<Option<JobMessage>> {
        if !job.seen_before && !commit_retried {
            return Ok(None);
        }
        let snapshot = self.store.load(&job.run_id, &job.node_id, std::slice::from_ref(&job.node_id), false).await?;
        if snapshot.status.as_deref().is_some_and(|s| FINAL_STATUSES.contains(&s)) || !snapshot.node_done() {
            return Ok(None);
        }
        self.compat_replay(bp, job, snapshot.node.as_ref(), broker).await?;
        self.publish_committed(bp, job, broker).await
    }

    /// `typescriptCompat`, after this node's commit: its arrivals at the joins the
    /// coordination store decides (`decided`) are counted there, and `compat_settle`
    /// enqueues what they fired, takes the rows the TypeScript adapter's workers
    /// completed as done and ends the run when nothing is pending (the commit held
    /// its end). Returns the commit's ready successors with the fired joins, and the
    /// run's end. A failure here is retried by the job's redelivery (every step is
    /// idempotent: `compat_replay`). With the setting off: what the commit returned.
    #[allow(clippy::too_many_arguments)]
    async fn compat_after(
        &self,
        bp: &Blueprint,
        job: &JobMessage,
        node_id: &str,
        decided: &[crate::run_store::JoinArrival],
        mut ready: Vec<Enqueued>,
        finished: Option<(String, Option<String>)>,
        broker: &Broker,
    ) -> CoreResult<(Vec<Enqueued>, Option<(String, Option<String>)>)> {
        if !self.compat {
            return Ok((ready, finished));
        }
        let fired = crate::compat::arrive(self.coordination.as_ref(), bp, &job.run_id, job.iteration, decided).await?;
        let settling = || self.store.compat_settle(&job.run_id, node_id, &fired);
        let (more, drained) = self.retry_transient(broker, job, "settling a run (typescriptCompat)", settling).await?;
        ready.extend(more);
        let mut finished = finished;
        if drained {
            // nothing of ours is pending; a node ready after what old workers completed has its job in flight
            let view = self.store.view(&job.run_id).await?;
            let open = crate::compat::open_frontier(bp, &view);
            if open.is_empty() {
                if let Some(status) = self.store.finalize(&job.run_id).await? {
                    let error = view.error.clone();
                    finished = Some((status, error));
                }
            } else {
                self.log(
                    Level::Debug,
                    "Nothing of ours pending; waiting for nodes the TypeScript adapter's workers enqueued",
                    json!({ "runId": job.run_id, "nodes": open }),
                );
            }
        }
        Ok((ready, finished))
    }

    /// `typescriptCompat`, for a job whose node is already done: what `compat_after`
    /// did after its commit, again (the delivery that committed may have died before
    /// it). Its arrivals are those of its stored route; a row without one was
    /// completed by the TypeScript adapter's workers, which counted their own.
    async fn compat_replay(
        &self,
        bp: &Blueprint,
        job: &JobMessage,
        row: Option<&crate::run_store::NodeRow>,
        broker: &Broker,
    ) -> CoreResult<()> {
        if !self.compat {
            return Ok(());
        }
        let route = row.filter(|r| r.state == "done").and_then(|r| r.route.clone()).unwrap_or_default();
        let mut joins = joins::arrivals(bp, &job.node_id, &route, None).joins;
        let decided = crate::compat::take_decided(bp, &mut joins);
        let (_, finished) = self.compat_after(bp, job, &job.node_id, &decided, vec![], None, broker).await?;
        if let Some((status, error)) = finished {
            self.finished(job, &status, error.as_deref());
        }
        Ok(())
    }

    /// Publishes the successors the stored commit of this node enqueued (its
    /// single-predecessor successors, and the joins its arrival completed) that
    /// are still queued, and returns the one the delivery that committed went on
    /// with itself (`pick_inline`'s choice, over the same rows), queued or done:
    /// that delivery may have died anywhere in its chain, and this one walks it.
    async fn publish_committed(
        &self,
        bp: &Blueprint,
        job: &JobMessage,
        broker: &Broker,
    ) -> CoreResult<Option<JobMessage>> {
        let fired = self.store.fired_by(&job.run_id, &job.node_id).await?;
        let rows: Vec<&Enqueued> = fired.iter().map(|(t, _)| t).collect();
        if let Some(only) = self.pick_inline(bp, &rows) {
            // (the only row: `queued`, it runs; `done`, the walk goes on from it)
            let walk = matches!(fired[0].1.as_str(), "queued" | "done");
            return Ok(walk.then(|| JobMessage { seen_before: true, ..self.successor(bp, job, only) }));
        }
        let jobs: Vec<JobMessage> =
            fired.iter().filter(|(_, state)| state == "queued").map(|(t, _)| self.successor(bp, job, t)).collect();
        self.send(&jobs, broker).await?;
        Ok(None)
    }

    /// Publishes the successors a commit enqueued that still need a job, except
    /// the one this delivery goes on with (`pick_inline`), which it returns (not
    /// `seen_before`: it has not run before, and is not counted toward poison).
    async fn publish(
        &self,
        bp: &Blueprint,
        job: &JobMessage,
        ready: &[Enqueued],
        context: &Map<String, Value>,
        completed: &BTreeSet<String>,
        broker: &Broker,
    ) -> CoreResult<Option<JobMessage>> {
        // (a node sent round a loop again has its earlier output in the context)
        let ready: Vec<&Enqueued> = ready.iter().filter(|t| joins::needs_job(t, context, completed)).collect();
        if let Some(only) = self.pick_inline(bp, &ready) {
            // (fresh: this delivery's commit enqueued it just now, so nobody has committed it yet)
            return Ok(Some(self.successor(bp, job, only)));
        }
        let jobs: Vec<JobMessage> = ready.iter().map(|t| self.successor(bp, job, t)).collect();
        self.send(&jobs, broker).await?;
        Ok(None)
    }

    /// The job of successor `t` of `job`'s node.
    fn successor(&self, bp: &Blueprint, job: &JobMessage, t: &Enqueued) -> JobMessage {
        let next = JobMessage::new(&job.run_id, &bp.id, &t.node_id)
            .in_iteration(t.iteration)
            .with_trace(job.traceparent.as_deref());
        JobMessage { received: Some(std::time::Instant::now()), ..next }
    }

    /// The successor a commit's delivery runs next itself, if any
    /// (`Disposition::Continue`), saving that job's publish, delivery and ack: when
    /// the commit enqueued exactly one (a chain's next link, a join its last arrival
    /// fired) and it is a plain node of the blueprint (node code from the registry,
    /// not a built-in the core runs, not a batch item), outside loops, without
    /// `typescriptCompat` (old workers must see every job). Never beside siblings: a
    /// redelivery walking the chain (`publish_committed`, the same rule over the same
    /// rows) could not tell whether they had been published, and publishing them again
    /// would run the ones in flight twice.
    fn pick_inline<'a>(&self, bp: &Blueprint, ready: &[&'a Enqueued]) -> Option<&'a Enqueued> {
        if !self.inline || self.compat || bp.has_loops() {
            return None;
        }
        let [only] = ready else { return None };
        let plain = bp.node(&only.node_id).is_some_and(|n| {
            self.registry.contains(&n.uses) && crate::builtins::Builtin::of(n, &self.registry).is_none()
        });
        (only.iteration == 0 && plain).then_some(*only)
    }

    /// Publishes `jobs` (confirmed), each a `job:enqueued`.
    async fn send(&self, jobs: &[JobMessage], broker: &Broker) -> CoreResult<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        broker.publish_jobs(jobs).await?;
        for j in jobs {
            self.enqueued(j);
        }
        Ok(())
    }

    /// Flowcraft's `job:enqueued` for `job` (published, or kept to run here next).
    pub fn enqueued(&self, job: &JobMessage) {
        self.executor.event(
            "job:enqueued",
            json!({ "runId": job.run_id, "blueprintId": job.blueprint_id, "nodeId": job.node_id }),
        );
    }

    /// Whether a redelivered job may be what kills workers: its node already
    /// started on an earlier redelivery. Such a job runs alone; the others,
    /// typically every job in flight when a connection dropped, run at full
    /// concurrency. When the count cannot be read, no (node code cannot run
    /// without PostgreSQL either, and the count is taken again before it does).
    pub async fn suspect(&self, body: &[u8]) -> bool {
        let Ok(job) = JobMessage::parse(body) else { return false };
        self.store.deliveries(&job.run_id, &job.node_id).await.is_ok_and(|n| n >= 1)
    }

    /// Commits `effect` for `node_id` (`retry_transient`), and whether the commit was
    /// sent more than once: an attempt whose answer was lost may have applied, so an
    /// `AlreadyDone` after a retry may be this delivery's own commit (`republish`).
    async fn commit(
        &self,
        broker: &Broker,
        job: &JobMessage,
        node_id: &str,
        effect: &Effect,
        doing: &str,
    ) -> CoreResult<(Commit, bool)> {
        let tries = AtomicU32::new(0);
        let committing = || {
            tries.fetch_add(1, Ordering::Relaxed);
            self.store.commit(&job.run_id, node_id, effect)
        };
        let commit = self.retry_transient(broker, job, doing, committing).await?;
        Ok((commit, tries.into_inner() > 1))
    }

    /// Retries an idempotent step that follows a node's run (its commit, its
    /// failure) on service errors, for as long as the broker connection that
    /// delivered the job is open: the node is not run again because
    /// PostgreSQL was away, however long. When the connection is gone the
    /// error is returned, and the job goes back to the queue.
    async fn retry_transient<T, F, Fut>(
        &self,
        broker: &Broker,
        job: &JobMessage,
        doing: &str,
        mut step: F,
    ) -> CoreResult<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = CoreResult<T>>,
    {
        let timings = &broker.timings;
        let mut backoff = timings.commit_retry();
        let started = std::time::Instant::now();
        let mut logged: Option<std::time::Instant> = None;
        let retrying = async {
            loop {
                match step().await {
                    Err(e) if e.is_transient() && broker.is_connected() => {
                        let delay = backoff.next_delay();
                        if logged.is_none_or(|at| at.elapsed() >= timings.stall_warning) {
                            logged = Some(std::time::Instant::now());
                            self.log(
                                Level::Warn,
                                &format!(
                                    "{doing} failed on a service error for {} ms; retrying (the node is not run again): {e}",
                                    started.elapsed().as_millis()
                                ),
                                json!({ "runId": job.run_id, "nodeId": job.node_id, "code": e.code() }),
                            );
                        }
                        tokio::time::sleep(delay).await;
                    }
                    other => return other,
                }
            }
        };
        crate::timings::tracked("PostgreSQL", self.store.pool().label(), doing, retrying).await
    }

    /// Reports a run that a commit of this job ended (or stopped at a wait
    /// node): Flowcraft's `workflow:finish`, once per run, `executionId` = run id.
    pub(crate) fn finished(&self, job: &JobMessage, status: &str, error: Option<&str>) {
        self.log(
            Level::Info,
            &format!("Run {status}"),
            json!({ "runId": job.run_id, "blueprintId": job.blueprint_id, "status": status }),
        );
        let mut payload = json!({ "blueprintId": job.blueprint_id, "executionId": job.run_id, "status": status });
        if let Some(message) = error.filter(|_| status == "failed") {
            let node = joins::failed_node(message);
            payload["errors"] = json!([{ "message": message, "nodeId": node, "isFatal": false }]);
        }
        self.executor.event("workflow:finish", payload);
    }
}
