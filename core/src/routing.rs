//! Which successors a completed node chooses, as Flowcraft decides it: edges
//! with the result's action, else edges without one; an edge's condition must
//! be truthy over `{ ...context, result }`; a taken edge sets `_inputs.<target>`
//! to its transform (over `{ input, context }`) or to the output.

use crate::blueprint::Blueprint;
use crate::evaluator::{evaluate_path, truthy, ConditionScope, Scope, TransformScope};
use crate::executor::NodeExecutor;
use serde_json::{json, Map, Value};

/// Evaluates with the user's evaluator when there is one, else the built-in
/// property-path evaluator.
pub async fn evaluate(
    evaluator: Option<&dyn NodeExecutor>,
    expression: &str,
    data: impl FnOnce() -> Value,
    scope: &(dyn Scope + Sync),
) -> Option<Value> {
    match evaluator {
        Some(e) if e.has_evaluator() => e.evaluate(expression, data()).await,
        _ => evaluate_path(expression, scope),
    }
}

async fn condition_holds(
    evaluator: Option<&dyn NodeExecutor>,
    condition: Option<&str>,
    context: &Map<String, Value>,
    result: &Value,
) -> bool {
    let Some(condition) = condition else { return true };
    let scope = ConditionScope { context, result };
    let data = || {
        let mut d = context.clone();
        d.insert("result".into(), result.clone());
        Value::Object(d)
    };
    truthy(evaluate(evaluator, condition, data, &scope).await.as_ref())
}

pub struct Routed {
    /// Successor node ids, in edge order, without duplicates.
    pub route: Vec<String>,
    /// `_inputs.<target>` values for the taken edges.
    pub inputs: Map<String, Value>,
}

/// `context` must already hold the node's output and writes.
pub async fn route(
    bp: &Blueprint,
    node_id: &str,
    output: &Value,
    action: Option<&str>,
    context: &Map<String, Value>,
    evaluator: Option<&dyn NodeExecutor>,
) -> Routed {
    let mut result = Map::new();
    result.insert("output".into(), output.clone());
    if let Some(a) = action {
        result.insert("action".into(), Value::String(a.to_string()));
    }
    let result = Value::Object(result);
    let candidates = bp.candidate_edges(node_id);
    let mut matched = Vec::new();
    if let Some(action) = action {
        for e in candidates.iter().filter(|e| e.action.as_deref() == Some(action)) {
            if condition_holds(evaluator, e.condition.as_deref(), context, &result).await {
                matched.push(*e);
            }
        }
    }
    if matched.is_empty() {
        for e in candidates.iter().filter(|e| e.action.is_none()) {
            if condition_holds(evaluator, e.condition.as_deref(), context, &result).await {
                matched.push(*e);
            }
        }
    }
    let mut route: Vec<String> = Vec::new();
    let mut inputs = Map::new();
    let mut context_value: Option<Value> = None;
    for e in &matched {
        let input = match &e.transform {
            Some(t) => {
                let cv = context_value.get_or_insert_with(|| Value::Object(context.clone()));
                let scope = TransformScope { input: output, context: cv };
                let data = || json!({ "input": output, "context": cv });
                evaluate(evaluator, t, data, &scope).await.unwrap_or(Value::Null)
            }
            None => output.clone(),
        };
        inputs.insert(format!("_inputs.{}", e.target), input);
        if !route.contains(&e.target) {
            route.push(e.target.clone());
        }
    }
    if matched.is_empty() {
        // Flowcraft: a node that matched no edge still lets successors run
        // whose inbound edges carry no condition (once their joins allow).
        for e in bp.edges.iter().filter(|e| e.source == node_id) {
            if !route.contains(&e.target) && !bp.has_conditional_inbound(&e.target) {
                route.push(e.target.clone());
            }
        }
    }
    Routed { route, inputs }
}
