//! The default expression evaluator (Flowcraft's property-path evaluator) and
//! node input resolution. Both read the run's context, a flat JSON object
//! whose keys may contain dots: a dot in a key is part of the key.

use crate::blueprint::{Blueprint, Inputs, NodeDef};
use serde_json::{Map, Value};

/// Looks up a root name for an expression: the first path segment.
pub trait Scope: Sync {
    fn root(&self, name: &str) -> Option<&Value>;
}

impl Scope for Map<String, Value> {
    fn root(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }
}

/// `{ ...context, result }` without copying the context.
pub struct ConditionScope<'a> {
    pub context: &'a Map<String, Value>,
    pub result: &'a Value,
}

impl Scope for ConditionScope<'_> {
    fn root(&self, name: &str) -> Option<&Value> {
        if name == "result" {
            Some(self.result)
        } else {
            self.context.get(name)
        }
    }
}

/// `{ input, context }` for edge transforms.
pub struct TransformScope<'a> {
    pub input: &'a Value,
    pub context: &'a Value,
}

impl Scope for TransformScope<'_> {
    fn root(&self, name: &str) -> Option<&Value> {
        match name {
            "input" => Some(self.input),
            "context" => Some(self.context),
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
    let mut current = scope.root(parts.next()?)?.clone();
    for part in parts {
        current = match &current {
            Value::Object(m) => m.get(part).cloned()?,
            Value::Array(a) if part == "length" => Value::from(a.len()),
            Value::Array(a) => a.get(part.parse::<usize>().ok()?).cloned()?,
            Value::String(s) if part == "length" => Value::from(s.encode_utf16().count()),
            _ => return None,
        };
    }
    Some(current)
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

/// Reads one `inputs` reference the way Flowcraft does: `_key` is a context key;
/// otherwise `_outputs.<ref>` when that node has an output, else the plain
/// context key. As an extension, `node.path.x` reads a path inside
/// `_outputs.node` when no flat key of that name exists.
fn resolve_reference(reference: &str, context: &Map<String, Value>) -> Option<Value> {
    if reference.starts_with('_') {
        return context.get(reference).cloned();
    }
    if let Some(v) = context.get(&format!("_outputs.{reference}")) {
        return Some(v.clone());
    }
    if let Some(v) = context.get(reference) {
        return Some(v.clone());
    }
    let (head, rest) = reference.split_once('.')?;
    let mut current = context.get(&format!("_outputs.{head}"))?;
    for part in rest.split('.') {
        current = match current {
            Value::Object(m) => m.get(part)?,
            Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current.clone())
}

/// The input a node receives. `None` means `undefined`.
pub fn resolve_input(blueprint: &Blueprint, node: &NodeDef, context: &Map<String, Value>) -> Option<Value> {
    let inputs_key = format!("_inputs.{}", node.id);
    // Flowcraft routes a transformed edge's value through `_inputs.<node>` even
    // when the node declares `inputs`.
    if blueprint.has_transformed_inbound(&node.id) && context.contains_key(&inputs_key) {
        return context.get(&inputs_key).cloned();
    }
    match &node.inputs {
        Some(Inputs::Key(k)) if !k.is_empty() => resolve_reference(k, context),
        Some(Inputs::Map(m)) => {
            let mut out = Map::new();
            for (field, reference) in m {
                let value = reference.as_str().and_then(|r| resolve_reference(r, context));
                // An undefined field is absent from the object, as JSON would have it.
                if let Some(v) = value {
                    out.insert(field.clone(), v);
                }
            }
            Some(Value::Object(out))
        }
        _ => context.get(&inputs_key).cloned(),
    }
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
        let bp = Blueprint::from_value(json!({"id": "b", "nodes": [
            {"id": "a", "uses": "x"},
            {"id": "s", "uses": "x", "inputs": "a"},
            {"id": "o", "uses": "x", "inputs": {"first": "a", "raw": "_k", "deep": "a.v.w", "plain": "user", "none": "nope"}},
            {"id": "d", "uses": "x"}
        ], "edges": []}))
        .unwrap();
        let c = ctx(json!({"_outputs.a": {"v": {"w": 5}}, "_k": 1, "user": "u", "_inputs.d": [1]}));
        assert_eq!(resolve_input(&bp, bp.node("s").unwrap(), &c), Some(json!({"v": {"w": 5}})));
        assert_eq!(
            resolve_input(&bp, bp.node("o").unwrap(), &c),
            Some(json!({"first": {"v": {"w": 5}}, "raw": 1, "deep": 5, "plain": "u"}))
        );
        assert_eq!(resolve_input(&bp, bp.node("d").unwrap(), &c), Some(json!([1])));
        assert_eq!(resolve_input(&bp, bp.node("a").unwrap(), &c), None);
    }
}
