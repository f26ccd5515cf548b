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
//! `wait` is in `job.rs` (it only marks the run awaiting).

use crate::blueprint::{Blueprint, NodeDef, LOOP_CONTROLLER};
use crate::error::CoreResult;
use crate::evaluator::{resolve_input, truthy, RunState};
use crate::executor::Level;
use crate::job::{Disposition, Executed, Facts, JobRunner, NodeFailure};
use crate::queue::{Broker, JobMessage};
use crate::run_store::RunSnapshot;
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
}

impl Builtin {
    /// The built-in the core runs for `node`, unless the registry has its own.
    pub fn of(node: &NodeDef, registry: &HashSet<String>) -> Option<Builtin> {
        let builtin = match node.uses.as_str() {
            "sleep" => Builtin::Sleep,
            LOOP_CONTROLLER => Builtin::LoopController,
            _ => return None,
        };
        (!registry.contains(&node.uses)).then_some(builtin)
    }
}

/// A sleep node's duration in milliseconds, as FlowRuntime's `SleepNode` reads
/// `params.duration`: a number, or a string like `'10s'`, `'5m'`, `'1h'`, `'2d'`.
pub fn sleep_duration(node: &NodeDef) -> Result<f64, String> {
    let id = &node.id;
    let ms = match node.params.as_ref().and_then(|p| p.get("duration")) {
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
        };
        match outcome {
            Ok(done) => self.complete(bp, job, &node.id, done, context, facts, broker).await,
            Err(failure) => {
                let text = Value::Object(context.clone()).to_string();
                self.node_failed(bp, job, node, failure, context, &text, facts, broker).await
            }
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
        let state = RunState { context, completed: &facts.completed, bound: &facts.bound };
        let input = match resolve_input(node, &state) {
            Ok(input) => input.value,
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
        let condition = node.params.as_ref().and_then(|p| p.get("condition")).and_then(Value::as_str);
        let holds = match condition {
            Some(c) => {
                let data = || Value::Object(context.clone());
                let value = crate::routing::evaluate(Some(self.executor.as_ref()), c, data, context).await;
                truthy(value.as_ref())
            }
            None => false,
        };
        Ok(if holds {
            Executed { output: None, action: Some("continue".into()), again: body.to_vec(), ..Default::default() }
        } else {
            Executed { output: Some(Value::Null), action: Some("break".into()), ..Default::default() }
        })
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
