//! Blueprint model and the graph facts every job needs (predecessors, outgoing
//! edges, start nodes, fallbacks), computed once when the worker starts.

use crate::error::{CoreError, CoreResult};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

#[derive(Debug, Clone, Deserialize)]
pub struct NodeDef {
    pub id: String,
    pub uses: String,
    #[serde(default)]
    pub params: Option<Value>,
    #[serde(default)]
    pub inputs: Option<Inputs>,
    #[serde(default)]
    pub config: Option<NodeConfig>,
}

impl NodeDef {
    /// `params.<key>`, when the node has one.
    pub fn param(&self, key: &str) -> Option<&Value> {
        self.params.as_ref()?.get(key)
    }
}

/// A node's `inputs`, in any shape a blueprint may give it: FlowRuntime reads
/// a non-empty string as one reference, an object (or array) as a mapping of
/// references, and ignores anything else.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Inputs {
    Key(String),
    Map(serde_json::Map<String, Value>),
    List(Vec<Value>),
    Other(Value),
}

/// A node's `config`: the fields the core and the node runner read, serialised
/// for the runner (`NodeRequest::config`) with the absent ones left out.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_delay: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_strategy: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EdgeDef {
    pub source: String,
    pub target: String,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub condition: Option<String>,
    #[serde(default)]
    pub transform: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct RawBlueprint {
    id: String,
    nodes: Vec<NodeDef>,
    #[serde(default)]
    edges: Vec<EdgeDef>,
    #[serde(default)]
    metadata: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinStrategy {
    All,
    Any,
}

/// A blueprint with its graph analysed.
#[derive(Debug)]
pub struct Blueprint {
    pub id: String,
    /// `metadata.version`, or null when absent or falsy (as Flowcraft compares it).
    pub version: Value,
    pub nodes: Vec<NodeDef>,
    pub edges: Vec<EdgeDef>,
    index: HashMap<String, usize>,
    /// Distinct sources of the edges into each node.
    predecessors: HashMap<String, BTreeSet<String>>,
    /// Indices into `edges` of each node's outgoing edges.
    outgoing: HashMap<String, Vec<usize>>,
    /// node id -> nodes whose `config.fallback` names it.
    fallback_for: HashMap<String, Vec<String>>,
    start_nodes: Vec<String>,
    /// Nodes reached through at least one edge with a `transform`.
    transformed_targets: BTreeSet<String>,
    /// Each `loop-controller`'s body: the target of its `continue` edge and every
    /// node reached from there without passing a loop controller (FlowRuntime's
    /// nodes in the loop, sent round again when the controller continues).
    loop_bodies: HashMap<String, Vec<String>>,
}

pub use crate::joins::Adopted;

/// The built-in node that decides whether a loop goes round again.
pub const LOOP_CONTROLLER: &str = "loop-controller";

impl Blueprint {
    pub fn from_value(value: Value) -> CoreResult<Blueprint> {
        let id_hint = value.get("id").and_then(Value::as_str).unwrap_or("<missing id>").to_string();
        let raw: RawBlueprint = serde_json::from_value(value).map_err(|e| CoreError::InvalidBlueprint {
            id: id_hint.clone(),
            reason: format!("{e} (a blueprint is {{ id, nodes: [{{ id, uses, params?, inputs?, config? }}], edges: [{{ source, target, action?, condition?, transform? }}] }})"),
        })?;
        Blueprint::analyse(raw)
    }

    fn analyse(raw: RawBlueprint) -> CoreResult<Blueprint> {
        let bad = |reason: String| CoreError::InvalidBlueprint { id: raw.id.clone(), reason };
        let mut index = HashMap::new();
        for (i, n) in raw.nodes.iter().enumerate() {
            if index.insert(n.id.clone(), i).is_some() {
                return Err(bad(format!("node id '{}' appears twice", n.id)));
            }
        }
        let mut predecessors: HashMap<String, BTreeSet<String>> = HashMap::new();
        let mut outgoing: HashMap<String, Vec<usize>> = HashMap::new();
        let mut transformed_targets = BTreeSet::new();
        for (i, e) in raw.edges.iter().enumerate() {
            for end in [&e.source, &e.target] {
                if !index.contains_key(end) {
                    return Err(bad(format!(
                        "edge {} -> {} names node '{}', which is not in the blueprint",
                        e.source, e.target, end
                    )));
                }
            }
            predecessors.entry(e.target.clone()).or_default().insert(e.source.clone());
            outgoing.entry(e.source.clone()).or_default().push(i);
            if e.transform.is_some() {
                transformed_targets.insert(e.target.clone());
            }
        }
        let mut fallback_for: HashMap<String, Vec<String>> = HashMap::new();
        for n in &raw.nodes {
            if let Some(f) = n.config.as_ref().and_then(|c| c.fallback.as_ref()) {
                if index.contains_key(f) {
                    fallback_for.entry(f.clone()).or_default().push(n.id.clone());
                }
            }
        }
        let start_nodes: Vec<String> = raw
            .nodes
            .iter()
            .filter(|n| !predecessors.contains_key(&n.id) && !fallback_for.contains_key(&n.id))
            .map(|n| n.id.clone())
            .collect();
        let mut loop_bodies = HashMap::new();
        for n in raw.nodes.iter().filter(|n| n.uses == LOOP_CONTROLLER) {
            let Some(first) = raw.edges.iter().find(|e| e.source == n.id && e.action.as_deref() == Some("continue"))
            else {
                continue;
            };
            let mut body = vec![first.target.clone()];
            let mut i = 0;
            while i < body.len() {
                for &e in outgoing.get(&body[i]).into_iter().flatten() {
                    let t = &raw.edges[e].target;
                    let is_controller = raw.nodes[index[t]].uses == LOOP_CONTROLLER;
                    if !is_controller && !body.contains(t) {
                        body.push(t.clone());
                    }
                }
                i += 1;
            }
            loop_bodies.insert(n.id.clone(), body);
        }
        let version = match raw.metadata.as_ref().and_then(|m| m.get("version")) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => Value::Null,
            Some(Value::String(s)) if s.is_empty() => Value::Null,
            Some(Value::Number(n)) if n.as_f64() == Some(0.0) => Value::Null,
            Some(v) => v.clone(),
        };
        Ok(Blueprint {
            id: raw.id,
            version,
            nodes: raw.nodes,
            edges: raw.edges,
            index,
            predecessors,
            outgoing,
            fallback_for,
            start_nodes,
            transformed_targets,
            loop_bodies,
        })
    }

    pub fn node(&self, id: &str) -> Option<&NodeDef> {
        self.index.get(id).map(|&i| &self.nodes[i])
    }

    pub fn predecessors(&self, id: &str) -> usize {
        self.predecessors.get(id).map_or(0, BTreeSet::len)
    }

    pub fn predecessor_ids(&self, id: &str) -> impl Iterator<Item = &String> {
        self.predecessors.get(id).into_iter().flatten()
    }

    pub fn start_nodes(&self) -> &[String] {
        &self.start_nodes
    }

    pub fn join_strategy(&self, id: &str) -> JoinStrategy {
        match self.node(id).and_then(|n| n.config.as_ref()).and_then(|c| c.join_strategy.as_deref()) {
            Some("any") => JoinStrategy::Any,
            _ => JoinStrategy::All,
        }
    }

    /// The edges a completed node may follow: its own, and those of the nodes it
    /// is the fallback for (Flowcraft lets a fallback continue its owner's path).
    /// Duplicates (same source, target, action and condition) are dropped.
    pub fn candidate_edges(&self, id: &str) -> Vec<&EdgeDef> {
        let mut out: Vec<&EdgeDef> = Vec::new();
        let owners = self.fallback_for.get(id).into_iter().flatten().map(String::as_str);
        for source in std::iter::once(id).chain(owners) {
            for &i in self.outgoing.get(source).into_iter().flatten() {
                let e = &self.edges[i];
                let dup = out.iter().any(|o| {
                    o.source == e.source && o.target == e.target && o.action == e.action && o.condition == e.condition
                });
                if !dup {
                    out.push(e);
                }
            }
        }
        out
    }

    /// What the nodes with an output (`has_output`) have done of a run (see
    /// [`Adopted`], computed in `joins.rs`).
    pub fn adopted(&self, has_output: impl Fn(&str) -> bool) -> Adopted {
        crate::joins::adopted(self, has_output)
    }

    /// Nodes without outgoing edges (FlowRuntime's `terminalNodeIds`), in blueprint order.
    pub fn terminal_nodes(&self) -> Vec<&str> {
        self.nodes.iter().filter(|n| !self.outgoing.contains_key(&n.id)).map(|n| n.id.as_str()).collect()
    }

    /// Whether any node is a loop controller (the blueprint has loops).
    pub fn has_loops(&self) -> bool {
        self.nodes.iter().any(|n| n.uses == LOOP_CONTROLLER)
    }

    /// Whether `id` is a loop controller (run on every arrival, not once as a join).
    pub fn is_loop_controller(&self, id: &str) -> bool {
        self.node(id).is_some_and(|n| n.uses == LOOP_CONTROLLER)
    }

    /// The body of the loop controller `id` (None: no `continue` edge).
    pub fn loop_body(&self, id: &str) -> Option<&[String]> {
        self.loop_bodies.get(id).map(Vec::as_slice)
    }

    /// Whether any edge into `id` carries a condition.
    pub fn has_conditional_inbound(&self, id: &str) -> bool {
        self.edges.iter().any(|e| e.target == id && e.condition.is_some())
    }

    /// Whether routing `id`'s completion reads the run's context: one of its
    /// edges (or those it inherits as a fallback) has a condition or a transform.
    pub fn routing_reads_context(&self, id: &str) -> bool {
        self.candidate_edges(id).iter().any(|e| e.condition.is_some() || e.transform.is_some())
    }

    pub fn has_transformed_inbound(&self, id: &str) -> bool {
        self.transformed_targets.contains(id)
    }

    /// The node to run when `id` fails: a node id of this blueprint (Flowcraft's
    /// meaning of `config.fallback`).
    pub fn fallback_node(&self, id: &str) -> Option<&NodeDef> {
        let f = self.node(id)?.config.as_ref()?.fallback.as_ref()?;
        self.node(f)
    }

    /// The nodes whose `config.fallback` names `id`.
    pub fn fallback_owners(&self, id: &str) -> impl Iterator<Item = &String> {
        self.fallback_for.get(id).into_iter().flatten()
    }

    /// The node rows a job of `id` reads, so that its cost does not grow with
    /// the run's width: its own, its predecessors' and those its `inputs`
    /// names; `true` for all of them when its routing evaluates conditions or
    /// transforms (they may read any key of the context). Node code reads
    /// other nodes' keys on demand (`lib/context-view.js`).
    pub fn reads(&self, id: &str) -> (Vec<String>, bool) {
        let all = self.candidate_edges(id).iter().any(|e| e.condition.is_some() || e.transform.is_some())
            || self.fallback_owners(id).next().is_some()
            || self.is_loop_controller(id)
            || self.node(id).is_some_and(|n| n.uses == "subflow")
            || self.edges.iter().any(|e| e.target == id && e.transform.is_some());
        let mut nodes: BTreeSet<String> = std::iter::once(id.to_string()).collect();
        nodes.extend(self.predecessor_ids(id).cloned());
        let mut named = |r: &str| {
            let r = r.strip_prefix("_outputs.").or_else(|| r.strip_prefix("_inputs.")).unwrap_or(r);
            if self.node(r).is_some() {
                nodes.insert(r.to_string());
            }
        };
        match self.node(id).and_then(|n| n.inputs.as_ref()) {
            Some(Inputs::Key(k)) => named(k),
            Some(Inputs::Map(m)) => m.values().filter_map(Value::as_str).for_each(&mut named),
            Some(Inputs::List(l)) => l.iter().filter_map(Value::as_str).for_each(&mut named),
            _ => {}
        }
        (nodes.into_iter().collect(), all)
    }

    /// The references a node's `inputs` names (context keys or node ids): a job of it
    /// reads them whatever their size.
    pub fn input_keys(&self, id: &str) -> Vec<String> {
        match self.node(id).and_then(|n| n.inputs.as_ref()) {
            Some(Inputs::Key(k)) => vec![k.clone()],
            Some(Inputs::Map(m)) => m.values().filter_map(Value::as_str).map(String::from).collect(),
            Some(Inputs::List(l)) => l.iter().filter_map(Value::as_str).map(String::from).collect(),
            _ => vec![],
        }
    }

    /// Every node id, in blueprint order (a run has a row for each).
    pub fn node_ids(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.id.clone()).collect()
    }

    pub fn fallback_key(&self, id: &str) -> Option<&str> {
        self.node(id)?.config.as_ref()?.fallback.as_deref()
    }
}

/// All blueprints a worker knows, by id.
#[derive(Debug, Default)]
pub struct Blueprints(HashMap<String, std::sync::Arc<Blueprint>>);

impl Blueprints {
    pub fn from_value(value: Value) -> CoreResult<Blueprints> {
        let Value::Object(map) = value else {
            return Err(CoreError::InvalidArgument(
                "runtimeOptions.blueprints must be an object of blueprints keyed by id".into(),
            ));
        };
        let mut out = HashMap::new();
        for (key, v) in map {
            let bp = Blueprint::from_value(v)?;
            out.insert(key, std::sync::Arc::new(bp));
        }
        Ok(Blueprints(out))
    }

    pub fn get(&self, id: &str) -> Option<std::sync::Arc<Blueprint>> {
        self.0.get(id).cloned()
    }

    /// The ids of the blueprints with a node that `uses` this key.
    pub fn using(&self, uses: &str) -> Vec<String> {
        self.0.iter().filter(|(_, bp)| bp.nodes.iter().any(|n| n.uses == uses)).map(|(id, _)| id.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn adopts_what_other_workers_did_from_outputs() {
        let bp = Blueprint::from_value(json!({
            "id": "d", "nodes": [
                {"id": "a", "uses": "x"}, {"id": "b", "uses": "x"}, {"id": "c", "uses": "x"},
                {"id": "d", "uses": "x"}, {"id": "e", "uses": "x"}],
            "edges": [{"source": "a", "target": "b"}, {"source": "a", "target": "c"},
                {"source": "b", "target": "d"}, {"source": "c", "target": "d"}, {"source": "d", "target": "e"}]
        }))
        .unwrap();
        let adopted = bp.adopted(|id| ["a", "c"].contains(&id));
        assert_eq!(adopted.done, vec!["a", "c"]);
        assert_eq!(adopted.arrivals.into_iter().collect::<Vec<_>>(), vec![("d".to_string(), 1)]);
        assert_eq!(adopted.frontier, vec!["b"], "a's other successor b was enqueued by the old worker");
        let nothing = bp.adopted(|_| false);
        assert_eq!(nothing, Adopted::default());
    }

    #[test]
    fn loop_bodies_stop_at_controllers() {
        let bp = Blueprint::from_value(json!({
            "id": "l", "nodes": [
                {"id": "i", "uses": "x"}, {"id": "s", "uses": "x"}, {"id": "e", "uses": "x"},
                {"id": "L", "uses": "loop-controller"}, {"id": "out", "uses": "x"}],
            "edges": [{"source": "i", "target": "L"}, {"source": "s", "target": "e"}, {"source": "e", "target": "L"},
                {"source": "L", "target": "s", "action": "continue"}, {"source": "L", "target": "out", "action": "break"}]
        }))
        .unwrap();
        assert_eq!(bp.loop_body("L"), Some(&["s".to_string(), "e".to_string()][..]));
        assert!(bp.is_loop_controller("L") && !bp.is_loop_controller("s"));
        assert!(bp.reads("L").1, "a controller reads the whole context");
    }

    #[test]
    fn analyses_a_diamond() {
        let bp = Blueprint::from_value(json!({
            "id": "d", "nodes": [
                {"id": "a", "uses": "x"}, {"id": "b", "uses": "x"}, {"id": "c", "uses": "x"},
                {"id": "j", "uses": "x", "config": {"joinStrategy": "any"}}, {"id": "fb", "uses": "x"},
                {"id": "z", "uses": "x", "config": {"fallback": "fb"}}
            ],
            "edges": [
                {"source": "a", "target": "b"}, {"source": "a", "target": "c"},
                {"source": "b", "target": "j"}, {"source": "c", "target": "j", "transform": "input.v"},
                {"source": "z", "target": "j"}
            ]
        }))
        .unwrap();
        assert_eq!(bp.start_nodes(), ["a".to_string(), "z".to_string()]);
        assert_eq!(bp.predecessors("j"), 3);
        assert_eq!(bp.join_strategy("j"), JoinStrategy::Any);
        assert!(bp.has_transformed_inbound("j"));
        assert_eq!(bp.candidate_edges("fb").iter().map(|e| e.target.as_str()).collect::<Vec<_>>(), ["j"]);
        assert_eq!(bp.version, Value::Null);
    }

    /// `job.rs`'s hand-written `config_json`, as it was, the reference the derive must match.
    fn hand_written_config_json(c: &NodeConfig) -> Value {
        let mut m = serde_json::Map::new();
        for (k, v) in [("maxRetries", &c.max_retries), ("retryDelay", &c.retry_delay), ("timeout", &c.timeout)] {
            if let Some(v) = v {
                m.insert(k.into(), v.clone());
            }
        }
        if let Some(f) = &c.fallback {
            m.insert("fallback".into(), Value::String(f.clone()));
        }
        if let Some(j) = &c.join_strategy {
            m.insert("joinStrategy".into(), Value::String(j.clone()));
        }
        Value::Object(m)
    }

    #[test]
    fn node_config_serialises_as_the_hand_written_json() {
        let configs = [
            json!(null),
            json!({}),
            json!({"maxRetries": 3}),
            json!({"maxRetries": 3, "retryDelay": 250, "timeout": 1000, "fallback": "fb", "joinStrategy": "any"}),
            json!({"joinStrategy": "all", "timeout": "5s", "retryDelay": 1.5}),
            json!({"maxRetries": null, "fallback": "fb", "somethingElse": {"x": 1}}),
            json!({"maxRetries": {"odd": [1, 2]}, "retryDelay": false}),
        ];
        for config in configs {
            let node: NodeDef =
                serde_json::from_value(json!({"id": "n", "uses": "x", "config": config.clone()})).unwrap();
            let derived = serde_json::to_value(&node.config).unwrap();
            let hand = serde_json::to_value(node.config.as_ref().map(hand_written_config_json)).unwrap();
            assert_eq!(derived, hand, "config {config}");
            assert_eq!(derived.to_string(), hand.to_string(), "config {config}: same text");
        }
        let full: NodeDef = serde_json::from_value(
            json!({"id": "n", "uses": "x", "config": {"timeout": 9, "fallback": "f", "extra": 1}}),
        )
        .unwrap();
        assert_eq!(serde_json::to_value(&full.config).unwrap(), json!({"timeout": 9, "fallback": "f"}));
        let bare: NodeDef = serde_json::from_value(json!({"id": "n", "uses": "x"})).unwrap();
        assert_eq!(serde_json::to_value(&bare.config).unwrap(), Value::Null);
    }

    #[test]
    fn rejects_an_edge_to_nowhere() {
        let err = Blueprint::from_value(
            json!({"id": "b", "nodes": [{"id": "a", "uses": "x"}], "edges": [{"source": "a", "target": "q"}]}),
        )
        .unwrap_err();
        assert_eq!(err.code(), "ERR_INVALID_BLUEPRINT");
        assert!(err.to_string().contains("'q'"));
    }
}
