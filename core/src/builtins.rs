//! Flowcraft's built-in nodes that the core runs itself, distributed and
//! durable (a user's registry entry of the same name wins, as in FlowRuntime):
//! - `sleep`: the node's row sleeps until its wake-up time in PostgreSQL; no
//!   worker slot is held meanwhile; the sleep sweep (`worker.rs`,
//!   `sql/wake.sql`) enqueues it then, and it completes with its input
//!   (FlowRuntime's `SleepNode` output: its `prep` result).
//! - `loop-controller`: evaluates `params.condition` over the context;
//!   `continue` sends the loop's body round again (its rows reset, their
//!   iteration + 1, so a job of an earlier iteration changes nothing), `break`
//!   leaves with a `null` output. A loop that goes round more often than
//!   FlowRuntime's traversal allows fails the run as FlowRuntime does.
//!
//! - `batch-scatter` / `batch-gather` (`createFlow().batch()`): the scatter adds
//!   one node row per item of its input array (`spec`: the worker's `uses`, the
//!   gather, the item's index and the batch size; the item is its bound input),
//!   queued in the scatter's commit and spread over workers like any job; each
//!   item's commit arrives at the gather, which waits for the scatter and every
//!   item, then collects the items' outputs in item order under `outputKey`.
//!
//! - `subflow`: the node's job starts the child run `<run id>/<node id>` (its
//!   own rows, spread over workers like any run) and its row waits (`subflow`);
//!   the subflow sweep (`sql/subflow_wake.sql`) enqueues it when the child has
//!   ended, and its job completes it with the child's result (FlowRuntime's
//!   `outputs` mapping or terminal outputs) or fails it with the child's error
//!   (its fallback applies). Cancelling the parent cancels the child (`runs.rs`).
//!
//! `wait` is in `job.rs` (it only marks the run awaiting).

use crate::blueprint::{Blueprint, NodeDef, LOOP_CONTROLLER};
use crate::context_store::PatchOp;
use crate::error::CoreResult;
use crate::evaluator::truthy;
use crate::executor::Level;
use crate::job::{Disposition, Executed, Facts, JobRunner, NodeFailure};
use crate::json_text::JsonText;
use crate::queue::{Broker, JobMessage};
use crate::run_store::{NodeRow, RunSnapshot, Spawned};
use serde_json::{json, Map, Value};
use std::collections::HashSet;

/// FlowRuntime's `DefaultOrchestrator` stops a traversal after this many steps.
pub const MAX_TRAVERSAL_STEPS: usize = 10_000;

/// FlowRuntime's message for a loop that does not stop.
pub const RUNAWAY_LOOP: &str = "Traversal exceeded maximum iterations, possible infinite loop";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    Sleep,
    LoopController,
    BatchScatter,
    BatchGather,
    Subflow,
}

/// What a built-in's commit does beside a node's.
#[derive(Debug)]
pub enum BuiltinEffect {
    /// A loop controller going round again: its body (`Effect::again`).
    Again(Vec<String>),
    /// A batch scatter: the items it adds, and the gather that waits for them.
    Scatter { gather: String, items: Vec<Spawned> },
    /// A batch item: it arrives at its gather, which waits for `count` items and the scatter.
    Item { gather: String, count: usize },
}

/// A batch item's definition, kept in its row.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ItemSpec {
    pub uses: String,
    pub gather: String,
    /// Its index in the batch (results are gathered in this order).
    pub i: usize,
    /// How many items the batch has.
    pub count: usize,
}

fn item_spec(row: Option<&NodeRow>) -> Option<ItemSpec> {
    serde_json::from_value(row?.spec.clone()?).ok()
}

/// The node a batch item's row defines (None: the row is not a batch item's).
pub fn item_node(id: &str, row: Option<&NodeRow>) -> Option<NodeDef> {
    let spec = item_spec(row)?;
    Some(NodeDef { id: id.to_string(), uses: spec.uses, params: None, inputs: None, config: None })
}

/// A completed batch item's arrival at its gather.
pub fn item_arrival(row: Option<&NodeRow>) -> Option<BuiltinEffect> {
    item_spec(row).map(|s| BuiltinEffect::Item { gather: s.gather, count: s.count })
}

/// A batch id: unique per scatter (FlowRuntime uses a random UUID), in UUID form.
fn batch_id(run_id: &str, node_id: &str, iteration: i32) -> String {
    use std::hash::BuildHasher;
    let random = std::collections::hash_map::RandomState::new();
    let half = |salt: u8| random.hash_one((run_id, node_id, iteration, salt, std::time::SystemTime::now()));
    let (a, b) = (half(1), half(2));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    )
}

impl Builtin {
    /// The built-in the core runs for `node`, unless the registry has its own.
    pub fn of(node: &NodeDef, registry: &HashSet<String>) -> Option<Builtin> {
        let builtin = match node.uses.as_str() {
            "sleep" => Builtin::Sleep,
            LOOP_CONTROLLER => Builtin::LoopController,
            "batch-scatter" => Builtin::BatchScatter,
            "batch-gather" => Builtin::BatchGather,
            "subflow" => Builtin::Subflow,
            _ => return None,
        };
        (!registry.contains(&node.uses)).then_some(builtin)
    }
}

/// A sleep node's duration in milliseconds, as FlowRuntime's `SleepNode` reads
/// `params.duration`: a number, or a string like `'10s'`, `'5m'`, `'1h'`, `'2d'`.
pub fn sleep_duration(node: &NodeDef) -> Result<f64, String> {
    let id = &node.id;
    let ms = match node.param("duration") {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(Value::String(s)) => {
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (digits, unit) = s.split_at(split);
            let scale = match unit {
                "s" => 1_000.0,
                "m" => 60_000.0,
                "h" => 3_600_000.0,
                "d" => 86_400_000.0,
                _ => 0.0,
            };
            match digits.parse::<f64>() {
                Ok(n) if scale > 0.0 => n * scale,
                _ => {
                    return Err(format!(
                        "SleepNode '{id}' received an invalid duration string: '{s}'. Expected format: '5m', '10s', '1h', '2d'"
                    ))
                }
            }
        }
        other => {
            // JavaScript's `typeof`
            let kind = match other {
                None => "undefined",
                Some(Value::Bool(_)) => "boolean",
                _ => "object",
            };
            return Err(format!("SleepNode '{id}' received an invalid duration type: {kind}"));
        }
    };
    if ms < 0.0 {
        return Err(format!("SleepNode '{id}' received a negative duration."));
    }
    Ok(ms)
}

/// How many times a loop with a body of `body_len` nodes may go round: each
/// time round is `body_len + 1` traversal steps of FlowRuntime's.
pub fn loop_limit(body_len: usize) -> i32 {
    (MAX_TRAVERSAL_STEPS / (body_len + 1)).min(i32::MAX as usize) as i32
}

impl JobRunner {
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn run_builtin(
        &self,
        builtin: Builtin,
        bp: &Blueprint,
        node: &NodeDef,
        job: &JobMessage,
        snapshot: &RunSnapshot,
        context: Map<String, Value>,
        facts: &Facts,
        broker: &Broker,
    ) -> CoreResult<Disposition> {
        let outcome = match builtin {
            Builtin::Sleep => match self.sleep(node, job, snapshot, &context, facts).await? {
                Some(outcome) => outcome,
                None => return Ok(Disposition::Ack),
            },
            Builtin::LoopController => self.loop_controller(bp, node, job, &context).await,
            Builtin::BatchScatter => scatter(node, job, &context, facts),
            Builtin::BatchGather => self.gather(node, job).await?,
            Builtin::Subflow => match self.subflow(node, job, snapshot, &context, facts, broker).await? {
                Some(outcome) => outcome,
                None => return Ok(Disposition::Ack),
            },
        };
        match outcome {
            Ok(done) => self.complete(bp, job, &node.id, done, context, facts, broker).await,
            Err(failure) => self.node_failed(bp, job, node, failure, context, facts, broker).await,
        }
    }

    /// A first job of a sleep node puts its row to sleep (`None`: nothing more
    /// to do now); a job at or after its wake-up time completes it with its input.
    async fn sleep(
        &self,
        node: &NodeDef,
        job: &JobMessage,
        snapshot: &RunSnapshot,
        context: &Map<String, Value>,
        facts: &Facts,
    ) -> CoreResult<Option<Result<Executed, NodeFailure>>> {
        let row = snapshot.node.as_ref();
        let woken = row.is_some_and(|r| r.state == "woken" || (r.state == "sleeping" && r.due));
        let asleep = row.is_some_and(|r| r.state == "sleeping" && !r.due);
        if asleep {
            // early (a reconcile, a duplicate): the sweep enqueues it at its time
            return Ok(None);
        }
        // (its output is its input: a big bound one as the text read)
        let input = match facts.input_text(node, context) {
            Ok((input, _)) => input,
            Err(message) => return Ok(Some(Err(NodeFailure { message, fatal: true, writes: vec![] }))),
        };
        let done = Executed { output: input, ..Default::default() };
        if woken {
            return Ok(Some(Ok(done)));
        }
        let ms = match sleep_duration(node) {
            Ok(ms) => ms,
            Err(message) => return Ok(Some(Err(NodeFailure { message, fatal: false, writes: vec![] }))),
        };
        if ms == 0.0 {
            return Ok(Some(Ok(done)));
        }
        let meta = json!({ "runId": job.run_id, "nodeId": node.id });
        match self.store.sleep(&job.run_id, &node.id, ms, job.iteration).await? {
            Some(wake_at) => self.log(Level::Info, &format!("Node sleeps until {wake_at}"), meta),
            None => self.log(Level::Debug, "Sleep node was not queued; nothing to do", meta),
        }
        Ok(None)
    }

    /// FlowRuntime's loop controller: `continue` while the condition holds
    /// over the context, else `break` with a null output.
    async fn loop_controller(
        &self,
        bp: &Blueprint,
        node: &NodeDef,
        job: &JobMessage,
        context: &Map<String, Value>,
    ) -> Result<Executed, NodeFailure> {
        let Some(body) = bp.loop_body(&node.id) else {
            return Err(NodeFailure {
                message: format!(
                    "Loop '{}' has no continue edge to start node. Ensure edges are wired inside the loop and incoming/breaking edges point to the loop controller.",
                    node.id
                ),
                fatal: true,
                writes: vec![],
            });
        };
        if job.iteration >= loop_limit(body.len()) {
            return Err(NodeFailure { message: RUNAWAY_LOOP.into(), fatal: true, writes: vec![] });
        }
        let condition = node.param("condition").and_then(Value::as_str);
        let holds = match condition {
            Some(c) => {
                let data = || Value::Object(context.clone());
                let value = crate::routing::evaluate(Some(self.executor.as_ref()), c, data, context).await;
                truthy(value.as_ref())
            }
            None => false,
        };
        Ok(if holds {
            let again = Some(BuiltinEffect::Again(body.to_vec()));
            Executed { output: None, action: Some("continue".into()), builtin: again, ..Default::default() }
        } else {
            Executed { output: Some(JsonText::of(&Value::Null)), action: Some("break".into()), ..Default::default() }
        })
    }
}

/// FlowRuntime's `BatchScatterNode`: one item node per element of its input
/// array (all of them: see the README on `chunkSize`), each with the item as its
/// input; output `{ gatherNodeId, hasMore: false }`.
fn scatter(
    node: &NodeDef,
    job: &JobMessage,
    context: &Map<String, Value>,
    facts: &Facts,
) -> Result<Executed, NodeFailure> {
    let fail = |message: String| NodeFailure { message, fatal: false, writes: vec![] };
    let input = facts.input(node, context).map_err(|message| NodeFailure { message, fatal: true, writes: vec![] })?;
    let items = match input.value.map(std::borrow::Cow::into_owned) {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(items)) => items,
        Some(_) => return Err(fail(format!("Input for batch-scatter node '{}' must be an array.", node.id))),
    };
    let param = |k: &str| node.param(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let (Some(uses), Some(gather)) = (param("workerUsesKey"), param("gatherNodeId")) else {
        return Err(fail("BatchScatterNode requires 'workerUsesKey' and 'gatherNodeId' parameters.".into()));
    };
    let batch = batch_id(&job.run_id, &node.id, job.iteration);
    let count = items.len();
    let items: Vec<Spawned> = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| Spawned {
            id: format!("{uses}_{batch}_{i}"),
            input: Some(item),
            spec: json!(ItemSpec { uses: uses.to_string(), gather: gather.to_string(), i, count }),
        })
        .collect();
    // FlowRuntime's bookkeeping keys (`<gather>_allWorkerIds` is not kept: README)
    let writes = vec![
        PatchOp::Set { key: format!("{}_currentIndex", node.id), value: json!(count) },
        PatchOp::Set { key: format!("{gather}_hasMore"), value: json!(false) },
    ];
    Ok(Executed {
        output: Some(JsonText::of(&json!({ "gatherNodeId": gather, "hasMore": false }))),
        writes,
        builtin: Some(BuiltinEffect::Scatter { gather: gather.to_string(), items }),
        ..Default::default()
    })
}

/// A node's attempts in all (`config.maxRetries`, FlowRuntime's meaning; default 1).
fn attempts(node: &NodeDef) -> i32 {
    node.config.as_ref().and_then(|c| c.max_retries.as_ref()).and_then(Value::as_f64).map_or(1, |n| n.max(1.0) as i32)
}

/// FlowRuntime's subflow input: `params.inputs` maps child keys to parent keys
/// (a key, else that node's output); without it, the node's input goes to every
/// start node of the child as `_inputs.<id>`.
fn child_context(
    node: &NodeDef,
    child: &Blueprint,
    input: Option<Value>,
    context: &Map<String, Value>,
) -> Map<String, Value> {
    let mut out = Map::new();
    match node.param("inputs").and_then(Value::as_object) {
        Some(inputs) => {
            for (target, source) in inputs {
                let Some(source) = source.as_str() else { continue };
                let value = context.get(source).or_else(|| context.get(&format!("_outputs.{source}")));
                if let Some(v) = value {
                    out.insert(target.clone(), v.clone());
                }
            }
        }
        None => {
            if let Some(input) = input {
                for start in child.start_nodes() {
                    out.insert(format!("_inputs.{start}"), input.clone());
                }
            }
        }
    }
    out
}

/// FlowRuntime's subflow result: with `params.outputs`, the parent keys it maps
/// (child `_outputs.<key>`, else the child's key) and the child's whole context as
/// output; else the single terminal node's output, or each terminal node's.
fn child_result(node: &NodeDef, child: &Blueprint, mut ctx: Map<String, Value>) -> Executed {
    ctx.remove("blueprintId");
    ctx.remove("blueprintVersion");
    let out = |id: &str| ctx.get(&format!("_outputs.{id}")).cloned();
    if let Some(outputs) = node.param("outputs").and_then(Value::as_object) {
        let mut writes = vec![];
        for (parent_key, sub_key) in outputs {
            let Some(sub_key) = sub_key.as_str() else { continue };
            let value = out(sub_key).filter(|v| !v.is_null()).or_else(|| ctx.get(sub_key).cloned());
            if let Some(value) = value {
                writes.push(PatchOp::Set { key: parent_key.clone(), value });
            }
        }
        return Executed { output: Some(JsonText::of(&Value::Object(ctx))), writes, ..Default::default() };
    }
    let terminals = child.terminal_nodes();
    let output = match terminals.as_slice() {
        [one] => out(one),
        many => Some(Value::Object(many.iter().filter_map(|t| out(t).map(|v| (t.to_string(), v))).collect())),
    };
    Executed { output: output.as_ref().map(JsonText::of), ..Default::default() }
}

impl JobRunner {
    /// A first job of a subflow node starts its child run and leaves the node
    /// waiting (`None`); the job the subflow sweep enqueues once the child has
    /// ended completes or fails it with the child's outcome.
    async fn subflow(
        &self,
        node: &NodeDef,
        job: &JobMessage,
        snapshot: &RunSnapshot,
        context: &Map<String, Value>,
        facts: &Facts,
        broker: &Broker,
    ) -> CoreResult<Option<Result<Executed, NodeFailure>>> {
        let fatal = |message: String| Ok(Some(Err(NodeFailure { message, fatal: true, writes: vec![] })));
        let Some(bp_id) = node.param("blueprintId").and_then(Value::as_str) else {
            return fatal(format!("Subflow node '{}' is missing 'blueprintId' parameter.", node.id));
        };
        let Some(child) = self.blueprints.get(bp_id) else {
            return fatal(format!("Sub-blueprint '{bp_id}' not found in runtime registry."));
        };
        let attempt = snapshot.node.as_ref().map_or(1, NodeRow::subflow_attempt);
        let child_id = crate::run_store::child_run_id(&job.run_id, &node.id, job.iteration, attempt);
        if snapshot.node.as_ref().is_some_and(|r| r.state == "subflow") {
            return Ok(None); // still waiting (a reconcile's or a duplicate's job)
        }
        if snapshot.node.as_ref().is_some_and(|r| r.state == "woken") {
            let Some((status, data)) = self.store.status(&child_id).await? else {
                return fatal(format!("Sub-workflow '{bp_id}' run '{child_id}' has no status"));
            };
            let data: Value = data.and_then(|d| serde_json::from_str(&d).ok()).unwrap_or(Value::Null);
            if status.as_deref() == Some("completed") {
                let ctx = data.pointer("/payload/context").and_then(Value::as_object).cloned().unwrap_or_default();
                return Ok(Some(Ok(child_result(node, &child, ctx))));
            }
            let error = data.get("reason").and_then(Value::as_str).unwrap_or("Unknown error");
            let status = status.unwrap_or_default();
            // FlowRuntime retries a failed subflow's exec, which runs the child again: here a
            // child run of the next attempt (a cancelled child is not retried).
            if status == "failed" && attempt < attempts(node) {
                let next = crate::run_store::child_run_id(&job.run_id, &node.id, job.iteration, attempt + 1);
                self.log(
                    Level::Warn,
                    &format!("Subflow run '{child_id}' failed ({error}); starting attempt {} as '{next}'", attempt + 1),
                    json!({ "runId": job.run_id, "nodeId": node.id }),
                );
                if let Err(message) = self.start_child(node, &child, &next, job, context, facts, broker).await? {
                    return fatal(message);
                }
                self.store.retry_child(&job.run_id, &node.id, job.iteration, attempt + 1).await?;
                return Ok(None);
            }
            let message =
                format!("Sub-workflow '{bp_id}' did not complete successfully. Status: {status}. Error: {error}");
            return Ok(Some(Err(NodeFailure { message, fatal: false, writes: vec![] })));
        }
        if child.start_nodes().is_empty() {
            return fatal(format!("Sub-blueprint '{bp_id}' has no start node."));
        }
        if let Err(message) = self.start_child(node, &child, &child_id, job, context, facts, broker).await? {
            return fatal(message);
        }
        if self.store.await_child(&job.run_id, &node.id, job.iteration).await? {
            self.log(
                Level::Info,
                &format!("Node waits for its subflow run '{child_id}'"),
                json!({ "runId": job.run_id, "nodeId": node.id }),
            );
        }
        Ok(None)
    }

    /// Starts the child run `child_id` of a subflow node (idempotent: a redelivered job finds
    /// it started and publishes its start jobs again). Err: the node's input cannot be resolved.
    #[allow(clippy::too_many_arguments)]
    async fn start_child(
        &self,
        node: &NodeDef,
        child: &Blueprint,
        child_id: &str,
        job: &JobMessage,
        context: &Map<String, Value>,
        facts: &Facts,
        broker: &Broker,
    ) -> CoreResult<Result<(), String>> {
        let input = match facts.input(node, context) {
            Ok(input) => input.value.map(std::borrow::Cow::into_owned),
            Err(message) => return Ok(Err(message)),
        };
        let mut initial = child_context(node, child, input, context);
        initial.insert("blueprintId".into(), Value::String(child.id.clone()));
        initial.insert("blueprintVersion".into(), child.version.clone());
        let starts = child.start_nodes();
        self.store.start_run(child_id, &child.id, &initial, &child.node_ids(), starts, None).await?;
        let jobs: Vec<JobMessage> = starts
            .iter()
            .map(|n| JobMessage::new(child_id, &child.id, n).with_trace(job.traceparent.as_deref()))
            .collect();
        broker.publish_jobs(&jobs).await?;
        Ok(Ok(()))
    }

    /// FlowRuntime's `BatchGatherNode`: the items' outputs in item order (those
    /// that returned `undefined` left out), under `outputKey` and as its output.
    async fn gather(&self, node: &NodeDef, job: &JobMessage) -> CoreResult<Result<Executed, NodeFailure>> {
        let param = |k: &str| node.param(k).and_then(Value::as_str);
        let key = param("outputKey").unwrap_or(&node.id).to_string();
        let gather = param("gatherNodeId").unwrap_or(&node.id);
        let results = Value::Array(self.store.gathered(&job.run_id, gather).await?);
        let writes = vec![PatchOp::Set { key, value: results.clone() }];
        Ok(Ok(Executed { output: Some(JsonText::of(&results)), writes, ..Default::default() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleep(duration: Value) -> NodeDef {
        serde_json::from_value(json!({ "id": "zz", "uses": "sleep", "params": { "duration": duration } })).unwrap()
    }

    #[test]
    fn durations_as_flowruntime_reads_them() {
        assert_eq!(sleep_duration(&sleep(json!(250))), Ok(250.0));
        assert_eq!(sleep_duration(&sleep(json!("10s"))), Ok(10_000.0));
        assert_eq!(sleep_duration(&sleep(json!("5m"))), Ok(300_000.0));
        assert_eq!(sleep_duration(&sleep(json!("2h"))), Ok(7_200_000.0));
        assert_eq!(sleep_duration(&sleep(json!("1d"))), Ok(86_400_000.0));
        assert!(sleep_duration(&sleep(json!("5 m"))).unwrap_err().contains("invalid duration string: '5 m'"));
        assert!(sleep_duration(&sleep(json!("m"))).is_err());
        assert!(sleep_duration(&sleep(json!("1.5s"))).is_err());
        assert!(sleep_duration(&sleep(json!(-1))).unwrap_err().contains("negative duration"));
        assert!(sleep_duration(&sleep(json!(true))).unwrap_err().contains("invalid duration type: boolean"));
        let none: NodeDef = serde_json::from_value(json!({ "id": "zz", "uses": "sleep" })).unwrap();
        assert!(sleep_duration(&none).unwrap_err().contains("invalid duration type: undefined"));
    }

    #[test]
    fn loop_limit_counts_flowruntime_traversal_steps() {
        assert_eq!(loop_limit(1), 5_000);
        assert_eq!(loop_limit(2), 3_333);
        assert_eq!(loop_limit(9), 1_000);
    }

    #[test]
    fn a_registry_entry_wins_over_the_builtin() {
        let node = sleep(json!(1));
        assert_eq!(Builtin::of(&node, &HashSet::new()), Some(Builtin::Sleep));
        assert_eq!(Builtin::of(&node, &["sleep".to_string()].into_iter().collect()), None);
    }
}
