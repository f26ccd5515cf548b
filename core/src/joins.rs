//! Join, frontier and node-state arithmetic, as FlowRuntime counts them: what
//! a completed or failed node makes ready and records at its joins, what a
//! run advanced by workers without our bookkeeping has done (adoption), what
//! `reconcile` enqueues and the node states `getRun` shows. Pure functions of
//! a blueprint and what was read of a run: no I/O (the statements that apply
//! them are in `run_store.rs`).

use crate::blueprint::{Blueprint, JoinStrategy};
use crate::run_store::{Enqueued, JoinArrival, RunView};
use crate::runs::NodeReport;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// What a run advanced by workers without our bookkeeping (the TypeScript
/// adapter) has done, read from its context: the nodes with an output, and the
/// arrivals they made at the joins not yet done (each at every join it has an
/// edge into: their routes were not recorded).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Adopted {
    pub done: Vec<String>,
    pub arrivals: BTreeMap<String, usize>,
    /// The nodes those workers must have enqueued: not done, reached from a done node by an
    /// edge without condition or action, their join complete (`'any'`: one arrival).
    pub frontier: Vec<String>,
}

/// What the nodes with an output (`has_output`) have done of a run (see [`Adopted`]).
pub fn adopted(bp: &Blueprint, has_output: impl Fn(&str) -> bool) -> Adopted {
    let done: Vec<String> = bp.nodes.iter().filter(|n| has_output(&n.id)).map(|n| n.id.clone()).collect();
    let mut arrivals = BTreeMap::new();
    for n in &bp.nodes {
        if bp.predecessors(&n.id) > 1 && !done.contains(&n.id) && !bp.is_loop_controller(&n.id) {
            let arrived = bp.predecessor_ids(&n.id).filter(|p| done.contains(p)).count();
            if arrived > 0 {
                arrivals.insert(n.id.clone(), arrived);
            }
        }
    }
    let certain = |p: &str, t: &str| {
        bp.edges.iter().any(|e| e.source == p && e.target == t && e.condition.is_none() && e.action.is_none())
    };
    let frontier = bp
        .nodes
        .iter()
        .filter(|n| !done.contains(&n.id))
        .filter(|n| {
            let preds: Vec<&String> = bp.predecessor_ids(&n.id).collect();
            let arrived = preds.iter().filter(|p| done.contains(p) && certain(p, &n.id)).count();
            arrived > 0
                && (bp.join_strategy(&n.id) == JoinStrategy::Any
                    || bp.is_loop_controller(&n.id)
                    || arrived == preds.len())
        })
        .map(|n| n.id.clone())
        .collect();
    Adopted { done, arrivals, frontier }
}

/// The predecessors that arrive at the join `target` when `node` completes
/// and routes to it, as FlowRuntime counts them: the node itself when it is a
/// predecessor and, for an 'all' join, the nodes it is the fallback for (they
/// completed when they failed into it). An 'any' join fires only for a
/// predecessor of its own (a fallback inheriting an edge into it does not).
pub fn join_members(bp: &Blueprint, node: &str, target: &str, any: bool) -> Vec<String> {
    let mut out = Vec::new();
    if bp.predecessor_ids(target).any(|p| p == node) {
        out.push(node.to_string());
    }
    if !any {
        for owner in bp.fallback_owners(node) {
            if bp.predecessor_ids(target).any(|p| p == owner) && !out.contains(owner) {
                out.push(owner.clone());
            }
        }
    }
    out
}

/// What a completed node's route does: the successors enqueued at once, and
/// its arrivals at joins.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Arrivals {
    /// Successors with one predecessor, and loop controllers (FlowRuntime
    /// re-enters a controller on every arrival).
    pub ready: Vec<String>,
    pub joins: Vec<JoinArrival>,
}

/// The arrivals of `node_id` along `route` (its successors, in route order).
/// `scattered`: the node is a batch scatter whose gather (in its route) waits
/// for it and that many items.
pub fn arrivals(bp: &Blueprint, node_id: &str, route: &[String], scattered: Option<(&str, usize)>) -> Arrivals {
    let mut out = Arrivals::default();
    for target in route {
        if let Some((gather, items)) = scattered.filter(|(g, _)| *g == target.as_str()) {
            out.joins.push(gather_arrival(gather, node_id, items));
            continue;
        }
        let preds = bp.predecessors(target);
        // a loop controller runs on every arrival (FlowRuntime re-enters it each time round)
        if preds <= 1 || bp.is_loop_controller(target) {
            out.ready.push(target.clone());
            continue;
        }
        let any = bp.join_strategy(target) == JoinStrategy::Any;
        let members = join_members(bp, node_id, target, any);
        if !members.is_empty() {
            out.joins.push(JoinArrival { target: target.clone(), members, expected: preds, any, fire: true });
        }
    }
    out
}

/// An arrival at a batch's gather, which waits for the scatter and each of its `items`.
pub fn gather_arrival(gather: &str, member: &str, items: usize) -> JoinArrival {
    JoinArrival {
        target: gather.to_string(),
        members: vec![member.to_string()],
        expected: items + 1,
        any: false,
        fire: true,
    }
}

/// A node that failed into its fallback node: FlowRuntime counts it completed
/// at its 'all' joins (its fallback, inheriting its edges, is what routes to
/// them), so it records itself there without firing them.
pub fn failed_arrivals(bp: &Blueprint, failed: &str) -> Vec<JoinArrival> {
    bp.edges
        .iter()
        .filter(|e| e.source == failed)
        .map(|e| e.target.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|t| bp.predecessors(t) > 1 && bp.join_strategy(t) == JoinStrategy::All)
        .map(|t| JoinArrival {
            target: t.to_string(),
            members: vec![failed.to_string()],
            expected: bp.predecessors(t),
            any: false,
            fire: false,
        })
        .collect()
}

/// Whether a successor a commit enqueued still needs its job published: not
/// when it has already completed (`completed`, or its output in `context`),
/// unless a loop sent it round again (its earlier output stays in the context).
pub fn needs_job(t: &Enqueued, context: &Map<String, Value>, completed: &BTreeSet<String>) -> bool {
    t.iteration > 0 || (!completed.contains(&t.node_id) && !context.contains_key(&format!("_outputs.{}", t.node_id)))
}

/// The node a run's error names: its failure is recorded as `Node '<id>' ...`.
pub fn failed_node(error: &str) -> Option<&str> {
    error.strip_prefix("Node '").and_then(|r| r.split_once('\'')).map(|(n, _)| n)
}

/// The nodes that completed: those with an output, and those that completed
/// with an `undefined` one (which leaves no `_outputs.<id>` key).
pub fn done_set(view: &RunView) -> BTreeSet<String> {
    let mut done: BTreeSet<String> = view
        .context
        .as_ref()
        .map(|c| c.keys().filter_map(|k| k.strip_prefix("_outputs.")).map(String::from).collect())
        .unwrap_or_default();
    done.extend(view.undefined_outputs.iter().cloned());
    done
}

/// The successors a completed node chose: its recorded route, else (completed
/// without our bookkeeping, e.g. by another adapter) every unconditional successor.
pub fn route_of(bp: &Blueprint, view: &RunView, node: &str) -> Vec<String> {
    match view.routes.get(node).and_then(Value::as_array) {
        Some(r) => r.iter().filter_map(|v| v.as_str().map(String::from)).collect(),
        None => {
            bp.edges.iter().filter(|e| e.source == node && e.condition.is_none()).map(|e| e.target.clone()).collect()
        }
    }
}

/// The nodes to enqueue to move a run on (`reconcile`): queued nodes when the
/// run has been idle for `stale_after`, routed successors not done or queued
/// whose join is satisfied, and the start nodes of a run with nothing done or queued.
pub fn frontier(bp: &Blueprint, view: &RunView, stale_after: Duration) -> Vec<String> {
    let done = done_set(view);
    let queued: BTreeSet<String> = view.queued.iter().cloned().collect();
    let stale = view.idle_seconds.unwrap_or(f64::MAX) >= stale_after.as_secs_f64();
    let mut out: Vec<String> = Vec::new();
    if stale {
        // (node rows say what is queued; a loop's node queued again keeps its earlier output)
        out.extend(queued.iter().filter(|n| (view.has_rows || !done.contains(*n)) && bp.node(n).is_some()).cloned());
    }
    for n in &done {
        for t in route_of(bp, view, n) {
            if done.contains(&t) || queued.contains(&t) || out.contains(&t) || bp.node(&t).is_none() {
                continue;
            }
            // a predecessor that failed into its fallback node counts as arrived
            // (FlowRuntime counts it completed; its fallback routes for it)
            let arrived: Vec<&String> = bp
                .predecessor_ids(&t)
                .filter(|p| {
                    let route = route_of(bp, view, p);
                    done.contains(*p)
                        && (route.contains(&t) || bp.fallback_node(p).is_some_and(|f| route.contains(&f.id)))
                })
                .collect();
            let ready = match bp.join_strategy(&t) {
                JoinStrategy::Any => !arrived.is_empty(),
                JoinStrategy::All => arrived.len() == bp.predecessors(&t),
            };
            if ready {
                out.push(t);
            }
        }
    }
    if done.is_empty() && queued.is_empty() {
        out.extend(bp.start_nodes().iter().cloned());
    }
    out
}

/// Each blueprint node's state in a run, as `getRun` shows it.
pub fn node_states(bp: &Blueprint, view: &RunView) -> Vec<NodeReport> {
    let done = done_set(view);
    let queued: BTreeSet<&String> = view.queued.iter().collect();
    let awaiting: BTreeSet<String> = view
        .context
        .as_ref()
        .and_then(|c| c.get("_awaitingNodeIds"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default();
    let failed_node = view.error.as_deref().and_then(failed_node);
    bp.nodes
        .iter()
        .map(|n| {
            let wake_up_at = view.sleeping.iter().find(|(id, _)| *id == n.id).map(|(_, at)| at.clone());
            // (a node sent round a loop again is running, though its earlier output is in the context)
            let state = if awaiting.contains(&n.id) {
                "awaiting"
            } else if wake_up_at.is_some() {
                "sleeping"
            } else if queued.contains(&n.id) {
                "running"
            } else if done.contains(&n.id) {
                "done"
            } else if failed_node == Some(n.id.as_str()) {
                "failed"
            } else if done.iter().any(|d| route_of(bp, view, d).contains(&n.id)) {
                "waiting"
            } else {
                "not_reached"
            };
            let child_run_id = view.children.get(&n.id).cloned();
            NodeReport { id: n.id.clone(), uses: n.uses.clone(), state, wake_up_at, child_run_id }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bp(v: Value) -> Blueprint {
        Blueprint::from_value(v).unwrap()
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn arrival(target: &str, members: &[&str], expected: usize, any: bool, fire: bool) -> JoinArrival {
        JoinArrival { target: target.into(), members: ids(members), expected, any, fire }
    }

    /// a → b, a → c, b → j, c → j, j → z; `j` joins with `strategy`.
    fn diamond(strategy: &str) -> Blueprint {
        bp(json!({"id": "d", "nodes": [
            {"id": "a", "uses": "x"}, {"id": "b", "uses": "x"}, {"id": "c", "uses": "x"},
            {"id": "j", "uses": "x", "config": {"joinStrategy": strategy}}, {"id": "z", "uses": "x"}
        ], "edges": [
            {"source": "a", "target": "b"}, {"source": "a", "target": "c"},
            {"source": "b", "target": "j"}, {"source": "c", "target": "j"}, {"source": "j", "target": "z"}
        ]}))
    }

    /// A view of a run with these nodes done (outputs in the context) and these routes.
    fn view(done: &[&str], routes: Value) -> RunView {
        let context: Map<String, Value> = done.iter().map(|d| (format!("_outputs.{d}"), json!(1))).collect();
        RunView {
            context: Some(context),
            routes: routes.as_object().cloned().unwrap_or_default(),
            idle_seconds: Some(0.0),
            has_rows: true,
            ..Default::default()
        }
    }

    #[test]
    fn single_predecessors_are_ready_and_joins_get_arrivals() {
        let all = diamond("all");
        let a = arrivals(&all, "a", &ids(&["b", "c"]), None);
        assert_eq!(a, Arrivals { ready: ids(&["b", "c"]), joins: vec![] });
        let b = arrivals(&all, "b", &ids(&["j"]), None);
        assert_eq!(b, Arrivals { ready: vec![], joins: vec![arrival("j", &["b"], 2, false, true)] });
        let any = diamond("any");
        let c = arrivals(&any, "c", &ids(&["j"]), None);
        assert_eq!(c.joins, vec![arrival("j", &["c"], 2, true, true)], "an 'any' join is told so");
        // an unknown strategy is 'all'
        assert!(!arrivals(&diamond("most"), "c", &ids(&["j"]), None).joins[0].any);
    }

    #[test]
    fn an_untaken_branch_leaves_an_all_join_waiting_and_fires_an_any_join() {
        // a routed to b only: c never runs
        let run = view(&["a", "b"], json!({"a": ["b"], "b": ["j"]}));
        let all = diamond("all");
        assert_eq!(frontier(&all, &run, Duration::from_secs(30)), Vec::<String>::new());
        let states: Vec<(String, &str)> = node_states(&all, &run).into_iter().map(|n| (n.id, n.state)).collect();
        let expected = [("a", "done"), ("b", "done"), ("c", "not_reached"), ("j", "waiting"), ("z", "not_reached")];
        assert_eq!(states, expected.map(|(i, s)| (i.to_string(), s)));
        assert_eq!(frontier(&diamond("any"), &run, Duration::from_secs(30)), ids(&["j"]));
        // both branches done: the 'all' join is due
        let both = view(&["a", "b", "c"], json!({"a": ["b", "c"], "b": ["j"], "c": ["j"]}));
        assert_eq!(frontier(&all, &both, Duration::from_secs(30)), ids(&["j"]));
        // a branch that completed but routed elsewhere does not arrive
        let elsewhere = view(&["a", "b", "c"], json!({"a": ["b", "c"], "b": ["j"], "c": []}));
        assert_eq!(frontier(&all, &elsewhere, Duration::from_secs(30)), Vec::<String>::new());
    }

    /// s → b (b falls back to fb), s → c, b → j, c → j.
    fn with_fallback(strategy: &str, fb_edge: bool) -> Blueprint {
        let mut edges = vec![
            json!({"source": "s", "target": "b"}),
            json!({"source": "s", "target": "c"}),
            json!({"source": "b", "target": "j"}),
            json!({"source": "c", "target": "j"}),
        ];
        if fb_edge {
            edges.push(json!({"source": "fb", "target": "j"}));
        }
        bp(json!({"id": "f", "nodes": [
            {"id": "s", "uses": "x"}, {"id": "b", "uses": "x", "config": {"fallback": "fb"}},
            {"id": "fb", "uses": "x"}, {"id": "c", "uses": "x"},
            {"id": "j", "uses": "x", "config": {"joinStrategy": strategy}}
        ], "edges": edges}))
    }

    #[test]
    fn a_fallback_arrives_for_the_node_it_stands_in_for() {
        let all = with_fallback("all", false);
        // b failed into fb: b is recorded at its 'all' join without firing it
        assert_eq!(failed_arrivals(&all, "b"), vec![arrival("j", &["b"], 2, false, false)]);
        assert_eq!(failed_arrivals(&all, "s"), vec![], "no join among s's successors");
        // fb, inheriting b's edge, arrives at the join as b
        assert_eq!(join_members(&all, "fb", "j", false), ids(&["b"]));
        assert_eq!(arrivals(&all, "fb", &ids(&["j"]), None).joins, vec![arrival("j", &["b"], 2, false, true)]);
        // an 'any' join fires only for a predecessor of its own
        let any = with_fallback("any", false);
        assert_eq!(join_members(&any, "fb", "j", true), Vec::<String>::new());
        assert_eq!(arrivals(&any, "fb", &ids(&["j"]), None), Arrivals::default());
        assert_eq!(failed_arrivals(&any, "b"), vec![], "nothing recorded at an 'any' join");
        // a fallback that is a predecessor too arrives as itself and as its owner
        let both = with_fallback("all", true);
        assert_eq!(join_members(&both, "fb", "j", false), ids(&["fb", "b"]));
        assert_eq!(arrivals(&both, "fb", &ids(&["j"]), None).joins, vec![arrival("j", &["fb", "b"], 3, false, true)]);
        // reconcile counts the failed node arrived when its fallback routed to the join
        let run = view(&["s", "b", "fb", "c"], json!({"s": ["b", "c"], "b": ["fb"], "fb": ["j"], "c": ["j"]}));
        assert_eq!(frontier(&all, &run, Duration::from_secs(30)), ids(&["j"]));
        let lost = view(&["s", "b", "c"], json!({"s": ["b", "c"], "b": [], "c": ["j"]}));
        assert_eq!(frontier(&all, &lost, Duration::from_secs(30)), Vec::<String>::new());
    }

    /// i → L, s → e, e → L, L -continue→ s, L -break→ out.
    fn a_loop() -> Blueprint {
        bp(json!({"id": "l", "nodes": [
            {"id": "i", "uses": "x"}, {"id": "s", "uses": "x"}, {"id": "e", "uses": "x"},
            {"id": "L", "uses": "loop-controller"}, {"id": "out", "uses": "x"}
        ], "edges": [
            {"source": "i", "target": "L"}, {"source": "s", "target": "e"}, {"source": "e", "target": "L"},
            {"source": "L", "target": "s", "action": "continue"}, {"source": "L", "target": "out", "action": "break"}
        ]}))
    }

    #[test]
    fn a_loop_controller_is_ready_on_every_arrival() {
        let l = a_loop();
        assert_eq!(l.predecessors("L"), 2);
        assert_eq!(arrivals(&l, "i", &ids(&["L"]), None), Arrivals { ready: ids(&["L"]), joins: vec![] });
        assert_eq!(arrivals(&l, "e", &ids(&["L"]), None), Arrivals { ready: ids(&["L"]), joins: vec![] });
        // adoption: a controller is no join (no arrivals), and one certain arrival enqueues it
        let adopted = adopted(&l, |id| id == "i");
        assert_eq!(adopted.arrivals, BTreeMap::new());
        assert_eq!(adopted.frontier, ids(&["L"]));
    }

    #[test]
    fn a_gather_waits_for_its_scatter_and_every_item() {
        let b = bp(json!({"id": "b", "nodes": [
            {"id": "sc", "uses": "batch-scatter"}, {"id": "g", "uses": "batch-gather"}, {"id": "n", "uses": "x"}
        ], "edges": [{"source": "sc", "target": "g"}, {"source": "sc", "target": "n"}]}));
        let a = arrivals(&b, "sc", &ids(&["g", "n"]), Some(("g", 3)));
        assert_eq!(a, Arrivals { ready: ids(&["n"]), joins: vec![arrival("g", &["sc"], 4, false, true)] });
        // without items the gather waits for the scatter alone
        assert_eq!(arrivals(&b, "sc", &ids(&["g"]), Some(("g", 0))).joins, vec![arrival("g", &["sc"], 1, false, true)]);
        // each item arrives at the same count
        assert_eq!(gather_arrival("g", "x_batch_2", 3), arrival("g", &["x_batch_2"], 4, false, true));
        // not a scatter: the gather is an ordinary single-predecessor successor
        assert_eq!(arrivals(&b, "sc", &ids(&["g"]), None).ready, ids(&["g"]));
    }

    #[test]
    fn adoption_reads_done_nodes_arrivals_and_what_old_workers_enqueued() {
        let d = bp(json!({"id": "d", "nodes": [
            {"id": "a", "uses": "x"}, {"id": "b", "uses": "x"}, {"id": "c", "uses": "x"},
            {"id": "d", "uses": "x"}, {"id": "e", "uses": "x"}, {"id": "k", "uses": "x"},
            {"id": "y", "uses": "x", "config": {"joinStrategy": "any"}}
        ], "edges": [
            {"source": "a", "target": "b"}, {"source": "a", "target": "c"},
            {"source": "b", "target": "d"}, {"source": "c", "target": "d"}, {"source": "d", "target": "e"},
            {"source": "a", "target": "k", "condition": "result.output.go"},
            {"source": "c", "target": "y"}, {"source": "e", "target": "y"}
        ]}));
        let adopted = adopted(&d, |id| ["a", "c"].contains(&id));
        assert_eq!(adopted.done, ids(&["a", "c"]));
        assert_eq!(adopted.arrivals, [("d".to_string(), 1), ("y".to_string(), 1)].into());
        // b: a's unconditional successor; y: an 'any' join with one arrival; not k
        // (its edge has a condition) nor d (an 'all' join missing b)
        assert_eq!(adopted.frontier, ids(&["b", "y"]));
        let later = adopted_all(&d, &["a", "b", "c"]);
        assert_eq!(later.frontier, ids(&["d", "y"]));
        assert_eq!(later.arrivals, [("d".to_string(), 2), ("y".to_string(), 1)].into());
        assert_eq!(adopted_all(&d, &[]), Adopted::default());
    }

    fn adopted_all(bp: &Blueprint, done: &[&str]) -> Adopted {
        adopted(bp, |id| done.contains(&id))
    }

    #[test]
    fn reconcile_enqueues_stale_queued_nodes_and_the_start_of_an_empty_run() {
        let all = diamond("all");
        let mut run = view(&["a"], json!({"a": ["b", "c"]}));
        run.queued = ids(&["b"]);
        // b is queued (not stale): only c, routed and never queued, is enqueued
        assert_eq!(frontier(&all, &run, Duration::from_secs(30)), ids(&["c"]));
        run.idle_seconds = Some(31.0);
        assert_eq!(frontier(&all, &run, Duration::from_secs(30)), ids(&["b", "c"]));
        let empty = RunView { context: Some(Map::new()), ..Default::default() };
        assert_eq!(frontier(&all, &empty, Duration::from_secs(30)), ids(&["a"]));
        // a run of another adapter (no routes): every unconditional successor was chosen
        let foreign = RunView { context: view(&["a", "b"], json!({})).context, ..Default::default() };
        assert_eq!(frontier(&all, &foreign, Duration::from_secs(30)), ids(&["c"]));
    }

    #[test]
    fn node_states_as_get_run_shows_them() {
        let all = diamond("all");
        let mut run = view(&["a", "b"], json!({"a": ["b", "c"], "b": ["j"]}));
        run.context.as_mut().unwrap().insert("_awaitingNodeIds".into(), json!(["z"]));
        run.sleeping = vec![("c".into(), "2030-01-01T00:00:00Z".into())];
        run.error = Some("Node 'j' failed: boom".into());
        run.children = [("b".to_string(), crate::run_store::child_run_id("r", "b", 2, 1))].into();
        run.iterations = [("b".to_string(), 2)].into();
        let states = node_states(&all, &run);
        let got: Vec<(&str, &str)> = states.iter().map(|n| (n.id.as_str(), n.state)).collect();
        assert_eq!(got, [("a", "done"), ("b", "done"), ("c", "sleeping"), ("j", "failed"), ("z", "awaiting")]);
        assert_eq!(states[2].wake_up_at.as_deref(), Some("2030-01-01T00:00:00Z"));
        assert_eq!(states[1].child_run_id.as_deref(), Some("r/b#2"));
        run.queued = ids(&["a"]);
        assert_eq!(node_states(&all, &run)[0].state, "running", "sent round again: running");
    }

    #[test]
    fn the_failed_node_is_read_from_the_error() {
        assert_eq!(failed_node("Node 'n 1' failed: it's broken"), Some("n 1"));
        assert_eq!(failed_node("Blueprint with ID 'x' not found"), None);
        assert_eq!(failed_node("Node 'unterminated"), None);
    }

    #[test]
    fn successors_already_completed_get_no_job_unless_sent_round_again() {
        let context: Map<String, Value> = [("_outputs.b".to_string(), json!(1))].into_iter().collect();
        let completed: BTreeSet<String> = ["c".to_string()].into();
        let job = |id: &str, iteration| Enqueued { node_id: id.into(), iteration };
        assert!(needs_job(&job("a", 0), &context, &completed));
        assert!(!needs_job(&job("b", 0), &context, &completed), "its output is in the context");
        assert!(!needs_job(&job("c", 0), &context, &completed), "it completed without output");
        assert!(needs_job(&job("b", 1), &context, &completed), "a loop sent it round again");
    }
}
