//! Which successors a completed node chooses, as Flowcraft decides it: edges
//! with the result's action, else edges without one; an edge's condition must
//! be truthy over `{ ...context, result }`; a taken edge sets `_inputs.<target>`
//! to its transform (over `{ input, context }`) or to the output.

use crate::blueprint::{Blueprint, Inputs};
use crate::evaluator::{evaluate_path, truthy, ConditionScope, Scope, TransformScope};
use crate::executor::NodeExecutor;
use serde_json::{Map, Value};
use std::collections::BTreeSet;

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

/// What a taken edge gives its target as `_inputs.<target>`.
#[derive(Debug, Clone, PartialEq)]
pub enum EdgeInput {
    /// The source's output as it is (no transform): not copied, a commit
    /// stores the output once and binds the input to it.
    Output,
    /// A value (`None` is `undefined`).
    Value(Option<Value>),
}

impl EdgeInput {
    /// The value, given the source's output.
    pub fn resolve(self, output: Option<&Value>) -> Option<Value> {
        match self {
            EdgeInput::Output => output.cloned(),
            EdgeInput::Value(v) => v,
        }
    }
}

pub struct Routed {
    /// Successor node ids, in edge order, without duplicates.
    pub route: Vec<String>,
    /// `_inputs.<target>` the taken edges set, in order. Applied to the
    /// context when an edge transform could read them (a value), not when
    /// every taken edge passes the output on as is (`EdgeInput::Output`).
    pub inputs: Vec<(String, EdgeInput)>,
    /// Targets whose input this routing bound to `_inputs.<target>`.
    pub bound: Vec<String>,
}

/// What the routing of one completed node reads of its run.
pub struct RunFacts<'a> {
    /// Nodes that completed without output (the others have `_outputs.<id>`).
    pub completed: &'a BTreeSet<String>,
    /// Nodes whose input an earlier edge bound to `_inputs.<id>`.
    pub bound: &'a BTreeSet<String>,
}

/// `context` must already hold the node's output and writes; the `_inputs`
/// of the taken edges are written into it as FlowRuntime writes them, one
/// edge after the other (a later edge's transform sees an earlier one's).
///
/// FlowRuntime's edge transform (`applyEdgeTransform`): when the target has a
/// string `inputs` and the edge a transform, the transform reads that
/// reference's value (`_outputs.<ref>`, or the `_`-key itself) instead of the
/// source's output, unless the reference is the source; a taken edge with a
/// transform, or into a target without `inputs`, binds the target's input to
/// `_inputs.<target>` for the rest of the run, so a later transformed edge
/// into it reads that key.
#[allow(clippy::too_many_arguments)]
pub async fn route(
    bp: &Blueprint,
    node_id: &str,
    output: Option<&Value>,
    action: Option<&str>,
    context: &mut Map<String, Value>,
    facts: RunFacts<'_>,
    evaluator: Option<&dyn NodeExecutor>,
) -> Routed {
    let candidates = bp.candidate_edges(node_id);
    // (a condition reads the result; a big output is not copied for edges that have none)
    let mut result = Map::new();
    if candidates.iter().any(|e| e.condition.is_some()) {
        if let Some(o) = output {
            result.insert("output".into(), o.clone());
        }
        if let Some(a) = action {
            result.insert("action".into(), Value::String(a.to_string()));
        }
    }
    let result = Value::Object(result);
    let mut matched = Vec::new();
    // A loop controller takes its edges with a condition that holds first, whatever their action.
    if bp.is_loop_controller(node_id) {
        for e in candidates.iter().filter(|e| e.condition.is_some()) {
            if condition_holds(evaluator, e.condition.as_deref(), context, &result).await {
                matched.push(*e);
            }
        }
    }
    if let (Some(action), true) = (action, matched.is_empty()) {
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
    let mut inputs = Vec::new();
    let mut bound: BTreeSet<String> = facts.bound.clone();
    let mut newly_bound = Vec::new();
    let has = |context: &Map<String, Value>, key: &str| {
        context.contains_key(key)
            || key.strip_prefix("_outputs.").is_some_and(|id| id == node_id || facts.completed.contains(id))
    };
    // Without a transform among the taken edges nothing reads `_inputs.<target>` here.
    let transforms = matched.iter().any(|e| e.transform.is_some());
    for e in &matched {
        let inputs_key = format!("_inputs.{}", e.target);
        let target_inputs = bp.node(&e.target).and_then(|n| n.inputs.as_ref());
        let is_bound = bound.contains(&e.target);
        let explicit = is_bound || target_inputs.is_some();
        if !transforms {
            inputs.push((inputs_key, EdgeInput::Output));
            if !explicit && bound.insert(e.target.clone()) {
                newly_bound.push(e.target.clone());
            }
            if !route.contains(&e.target) {
                route.push(e.target.clone());
            }
            continue;
        }
        let mut source: Option<Value> = output.cloned();
        if e.transform.is_some() {
            let reference = match target_inputs {
                _ if is_bound => Some(inputs_key.as_str()),
                Some(Inputs::Key(k)) => Some(k.as_str()),
                _ => None,
            };
            if let Some(reference) = reference {
                let key =
                    if reference.starts_with('_') { reference.to_string() } else { format!("_outputs.{reference}") };
                if reference != e.source && has(context, &key) {
                    source = context.get(&key).cloned();
                }
            }
        }
        let input = match &e.transform {
            Some(t) => {
                let scope = TransformScope { input: source.as_ref(), context };
                let data = || {
                    let mut d = Map::new();
                    if let Some(s) = &source {
                        d.insert("input".into(), s.clone());
                    }
                    d.insert("context".into(), Value::Object(context.clone()));
                    Value::Object(d)
                };
                evaluate(evaluator, t, data, &scope).await
            }
            None => source,
        };
        match &input {
            Some(v) => context.insert(inputs_key.clone(), v.clone()),
            None => context.remove(&inputs_key),
        };
        inputs.push((inputs_key, EdgeInput::Value(input)));
        if (!explicit || e.transform.is_some()) && bound.insert(e.target.clone()) {
            newly_bound.push(e.target.clone());
        }
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
    Routed { route, inputs, bound: newly_bound }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn transforms_follow_flowruntime_with_inputs_and_bound_targets() {
        let bp = Blueprint::from_value(json!({"id": "b", "nodes": [
            {"id": "other", "uses": "x"}, {"id": "src", "uses": "x"},
            {"id": "named", "uses": "x", "inputs": "other"},
            {"id": "self", "uses": "x", "inputs": "src"},
            {"id": "mapped", "uses": "x", "inputs": {"o": "other"}},
            {"id": "plain", "uses": "x"},
            {"id": "join", "uses": "x"}
        ], "edges": [
            {"source": "src", "target": "named", "transform": "input.v"},
            {"source": "src", "target": "self", "transform": "input.v"},
            {"source": "src", "target": "mapped", "transform": "input.v"},
            {"source": "src", "target": "plain"},
            {"source": "src", "target": "join", "transform": "input.v"},
            {"source": "other", "target": "join"}
        ]}))
        .unwrap();
        let output = json!({"v": "from-src"});
        let mut context =
            json!({"_outputs.other": {"v": "from-other"}, "_outputs.src": output, "_inputs.join": {"v": "bound"}})
                .as_object()
                .unwrap()
                .clone();
        let completed: BTreeSet<String> = ["other".to_string()].into();
        let bound: BTreeSet<String> = ["join".to_string()].into();
        let routed = run(route(
            &bp,
            "src",
            Some(&output),
            None,
            &mut context,
            RunFacts { completed: &completed, bound: &bound },
            None,
        ));
        let inputs: Map<String, Value> =
            routed.inputs.into_iter().map(|(k, v)| (k, v.resolve(Some(&output)).unwrap_or(Value::Null))).collect();
        // a named node's output, the source's own, the source's for a mapping,
        // and a bound join's `_inputs` value
        assert_eq!(inputs["_inputs.named"], json!("from-other"));
        assert_eq!(inputs["_inputs.self"], json!("from-src"));
        assert_eq!(inputs["_inputs.mapped"], json!("from-src"));
        assert_eq!(inputs["_inputs.plain"], json!({"v": "from-src"}));
        assert_eq!(inputs["_inputs.join"], json!("bound"));
        // transformed edges, and an edge into a node without inputs, bind
        assert_eq!(routed.bound, ["named", "self", "mapped", "plain"]);
        assert_eq!(context["_inputs.named"], json!("from-other"));
    }

    #[test]
    fn an_undefined_output_routes_undefined() {
        let bp = Blueprint::from_value(json!({"id": "b", "nodes": [
            {"id": "a", "uses": "x"}, {"id": "b", "uses": "x"}, {"id": "c", "uses": "x"}
        ], "edges": [
            {"source": "a", "target": "b"},
            {"source": "a", "target": "c", "transform": "input.x"}
        ]}))
        .unwrap();
        let mut context = json!({"_inputs.b": "stale"}).as_object().unwrap().clone();
        let none = BTreeSet::new();
        let routed = run(route(&bp, "a", None, None, &mut context, RunFacts { completed: &none, bound: &none }, None));
        let undefined = EdgeInput::Value(None);
        assert_eq!(
            routed.inputs,
            vec![("_inputs.b".to_string(), undefined.clone()), ("_inputs.c".to_string(), undefined)]
        );
        assert!(!context.contains_key("_inputs.b"));
    }

    #[test]
    fn edges_without_transforms_pass_the_output_on_uncopied() {
        let bp = Blueprint::from_value(json!({"id": "b", "nodes": [
            {"id": "a", "uses": "x"}, {"id": "b", "uses": "x"}, {"id": "c", "uses": "x", "inputs": "a"}
        ], "edges": [
            {"source": "a", "target": "b"},
            {"source": "a", "target": "c"}
        ]}))
        .unwrap();
        let mut context = Map::new();
        let none = BTreeSet::new();
        let output = json!({"big": "value"});
        let facts = RunFacts { completed: &none, bound: &none };
        let routed = run(route(&bp, "a", Some(&output), None, &mut context, facts, None));
        let output_on = EdgeInput::Output;
        assert_eq!(
            routed.inputs,
            vec![("_inputs.b".to_string(), output_on.clone()), ("_inputs.c".to_string(), output_on)]
        );
        assert_eq!(routed.route, ["b", "c"]);
        // a target without `inputs` is bound to `_inputs.<id>`; one with `inputs` is not
        assert_eq!(routed.bound, ["b"]);
        assert!(context.is_empty());
        assert_eq!(EdgeInput::Output.resolve(Some(&output)), Some(output));
    }
}
