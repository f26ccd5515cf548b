//! The default expression evaluator (Flowcraft's property-path evaluator) and
//! node input resolution. Both read the run's context, a flat JSON object
//! whose keys may contain dots: a dot in a key is part of the key.

use crate::blueprint::{Inputs, NodeDef};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeSet;

/// A root name of an expression (its first path segment) in scope.
pub enum Root<'a> {
    Value(&'a Value),
    /// An object held as a map (the run's context), walked without copying it.
    Object(&'a Map<String, Value>),
}

/// Looks up a root name for an expression: the first path segment.
pub trait Scope: Sync {
    fn root(&self, name: &str) -> Option<Root<'_>>;
}

impl Scope for Map<String, Value> {
    fn root(&self, name: &str) -> Option<Root<'_>> {
        self.get(name).map(Root::Value)
    }
}

/// `{ ...context, result }` without copying the context.
pub struct ConditionScope<'a> {
    pub context: &'a Map<String, Value>,
    pub result: &'a Value,
}

impl Scope for ConditionScope<'_> {
    fn root(&self, name: &str) -> Option<Root<'_>> {
        if name == "result" {
            Some(Root::Value(self.result))
        } else {
            self.context.get(name).map(Root::Value)
        }
    }
}

/// `{ input, context }` for edge transforms; `input: None` is `undefined`.
pub struct TransformScope<'a> {
    pub input: Option<&'a Value>,
    pub context: &'a Map<String, Value>,
}

impl Scope for TransformScope<'_> {
    fn root(&self, name: &str) -> Option<Root<'_>> {
        match name {
            "input" => self.input.map(Root::Value),
            "context" => Some(Root::Object(self.context)),
            _ => None,
        }
    }
}

/// Evaluates a property path like `result.output.ok`. Anything else (operators,
/// calls, brackets) yields `None`, i.e. `undefined`, exactly as Flowcraft's
/// default evaluator does; users who need more pass their own evaluator.
pub fn evaluate_path(expression: &str, scope: &(dyn Scope + Sync)) -> Option<Value> {
    if expression.is_empty()
        || !expression.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == '.')
    {
        return None;
    }
    let mut parts = expression.split('.');
    let mut current: &Value = match scope.root(parts.next()?)? {
        Root::Value(v) => v,
        Root::Object(m) => match parts.next() {
            None => return Some(Value::Object(m.clone())),
            Some(part) => m.get(part)?,
        },
    };
    let mut parts = parts.peekable();
    while let Some(part) = parts.next() {
        current = match current {
            Value::Object(m) => m.get(part)?,
            // `.length` gives a number; nothing is reachable below a number
            Value::Array(a) if part == "length" => return parts.peek().is_none().then(|| Value::from(a.len())),
            Value::String(s) if part == "length" => {
                return parts.peek().is_none().then(|| Value::from(s.encode_utf16().count()))
            }
            Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current.clone())
}

/// JavaScript truthiness of an evaluated value (`None` is `undefined`).
pub fn truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

/// What a job knows of its run when it resolves inputs: the context, the
/// nodes that completed without output (`undefined`: they have no
/// `_outputs.<id>` key but are completed all the same), and the nodes
/// whose input FlowRuntime has bound to `_inputs.<id>` (see `routing`).
pub struct RunState<'a> {
    pub context: &'a Map<String, Value>,
    pub completed: &'a BTreeSet<String>,
    pub bound: &'a BTreeSet<String>,
}

impl<'a> RunState<'a> {
    /// FlowRuntime's `context.has(key)`: `_outputs.<id>` of a completed node
    /// exists even when its value is `undefined`.
    pub fn has(&self, key: &str) -> bool {
        self.context.contains_key(key) || key.strip_prefix("_outputs.").is_some_and(|id| self.completed.contains(id))
    }

    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.context.get(key)
    }
}

/// Reads one `inputs` reference as FlowRuntime does: a reference starting with
/// `_` is that context key; otherwise `_outputs.<ref>` when that node has an
/// output (or completed without one: `undefined`), else the plain context key
/// `<ref>`. A dot is part of the key, never a path.
fn resolve_reference<'a>(reference: &str, state: &RunState<'a>) -> Option<&'a Value> {
    if reference.starts_with('_') {
        return state.get(reference);
    }
    let output_key = format!("_outputs.{reference}");
    if state.has(&output_key) {
        return state.get(&output_key);
    }
    state.get(reference)
}

/// The input of a node. `value: None` is `undefined`. A plain or single-reference input is
/// borrowed from the context: a big input is not copied before it is sent (issue 12).
#[derive(Debug, PartialEq)]
pub struct ResolvedInput<'a> {
    pub value: Option<Cow<'a, Value>>,
    /// From an object (or array) `inputs` mapping: its undefined fields are
    /// absent from `value`.
    pub from_mapping: bool,
}

/// The input a node receives, by FlowRuntime's rules: `_inputs.<id>` once an
/// edge bound it there; else its `inputs` mapping (a non-empty string: one
/// reference; an object or array: each field a reference); else `_inputs.<id>`.
/// An object mapping with a field that is not a string fails the node before
/// it runs (FlowRuntime throws a TypeError there).
pub fn resolve_input<'a>(node: &NodeDef, state: &RunState<'a>) -> Result<ResolvedInput<'a>, String> {
    let inputs_key = format!("_inputs.{}", node.id);
    let plain = || ResolvedInput { value: state.get(&inputs_key).map(Cow::Borrowed), from_mapping: false };
    if state.bound.contains(&node.id) {
        return Ok(plain());
    }
    let fields: Vec<(String, &Value)> = match &node.inputs {
        Some(Inputs::Key(k)) if !k.is_empty() => {
            return Ok(ResolvedInput { value: resolve_reference(k, state).map(Cow::Borrowed), from_mapping: false })
        }
        Some(Inputs::Map(m)) => m.iter().map(|(k, v)| (k.clone(), v)).collect(),
        Some(Inputs::List(l)) => l.iter().enumerate().map(|(i, v)| (i.to_string(), v)).collect(),
        _ => return Ok(plain()),
    };
    let mut out = Map::new();
    for (field, reference) in fields {
        let Value::String(reference) = reference else {
            return Err(format!(
                "Node '{}': inputs field '{field}' is {reference}, not the name of a context key or node (a string)",
                node.id
            ));
        };
        // An undefined field is absent here; the JS side restores it.
        if let Some(v) = resolve_reference(reference, state) {
            out.insert(field, v.clone());
        }
    }
    Ok(ResolvedInput { value: Some(Cow::Owned(Value::Object(out))), from_mapping: true })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn paths_and_truthiness() {
        let c = ctx(json!({"user": {"isAdmin": true, "tags": ["a"]}, "a.b": 1}));
        let result = json!({"output": {"ok": 0, "list": [1, 2]}});
        let scope = ConditionScope { context: &c, result: &result };
        assert_eq!(evaluate_path("user.isAdmin", &scope), Some(json!(true)));
        assert_eq!(evaluate_path("result.output.ok", &scope), Some(json!(0)));
        assert!(!truthy(evaluate_path("result.output.ok", &scope).as_ref()));
        assert_eq!(evaluate_path("result.output.list.length", &scope), Some(json!(2)));
        assert_eq!(evaluate_path("result.output.list.1", &scope), Some(json!(2)));
        assert_eq!(evaluate_path("user.tags.0", &scope), Some(json!("a")));
        assert_eq!(evaluate_path("!result.output.ok", &scope), None);
        assert_eq!(evaluate_path("missing.x", &scope), None);
        // A dotted key is not reachable as a path: dots always descend.
        assert_eq!(evaluate_path("a.b", &scope), None);
    }

    #[test]
    fn inputs_mappings() {
        use crate::blueprint::Blueprint;
        let bp = Blueprint::from_value(json!({"id": "b", "nodes": [
            {"id": "a", "uses": "x"},
            {"id": "s", "uses": "x", "inputs": "a"},
            {"id": "o", "uses": "x", "inputs": {"first": "a", "raw": "_k", "deep": "a.v.w", "plain": "user", "none": "nope", "quiet": "q"}},
            {"id": "d", "uses": "x"},
            {"id": "l", "uses": "x", "inputs": ["a", "_k"]},
            {"id": "n", "uses": "x", "inputs": 5},
            {"id": "bad", "uses": "x", "inputs": {"f": 1}}
        ], "edges": []}))
        .unwrap();
        let c = ctx(
            json!({"_outputs.a": {"v": {"w": 5}}, "_k": 1, "user": "u", "_inputs.d": [1], "_inputs.n": 2, "q": "plain-q"}),
        );
        let completed: BTreeSet<String> = ["a".to_string(), "q".to_string()].into();
        let bound = BTreeSet::new();
        let state = RunState { context: &c, completed: &completed, bound: &bound };
        let value = |id: &str| resolve_input(bp.node(id).unwrap(), &state).unwrap().value.map(Cow::into_owned);
        assert_eq!(value("s"), Some(json!({"v": {"w": 5}})));
        // a dotted reference is a flat key, never a path into an output; `q`
        // completed without output, so its plain key is not read
        assert_eq!(value("o"), Some(json!({"first": {"v": {"w": 5}}, "raw": 1, "plain": "u"})));
        assert!(resolve_input(bp.node("o").unwrap(), &state).unwrap().from_mapping);
        assert_eq!(value("d"), Some(json!([1])));
        assert_eq!(value("a"), None);
        assert_eq!(value("l"), Some(json!({"0": {"v": {"w": 5}}, "1": 1})));
        assert_eq!(value("n"), Some(json!(2)));
        assert!(resolve_input(bp.node("bad").unwrap(), &state).unwrap_err().contains("inputs field 'f'"));
        // once an edge bound the input, `_inputs.<id>` is read whatever the mapping
        let bound: BTreeSet<String> = ["s".to_string()].into();
        let state = RunState { context: &c, completed: &completed, bound: &bound };
        assert_eq!(resolve_input(bp.node("s").unwrap(), &state).unwrap().value, None);
    }

    #[test]
    fn transform_scope_reads_the_context_map() {
        let c = ctx(json!({"a": {"b": [1, 2]}, "a.b": "flat", "s": "abc"}));
        let input = json!({"list": [1, 2, 3]});
        let scope = TransformScope { input: Some(&input), context: &c };
        assert_eq!(evaluate_path("context.a.b.1", &scope), Some(json!(2)));
        assert_eq!(evaluate_path("context.s.length", &scope), Some(json!(3)));
        assert_eq!(evaluate_path("input.list.length", &scope), Some(json!(3)));
        assert_eq!(evaluate_path("input.list.length.x", &scope), None);
        assert_eq!(evaluate_path("context", &scope), Some(Value::Object(c.clone())));
        let undefined = TransformScope { input: None, context: &c };
        assert_eq!(evaluate_path("input", &undefined), None);
        assert_eq!(evaluate_path("input.x", &undefined), None);
    }
}
