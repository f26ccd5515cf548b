//! `typescriptCompat`: working beside the TypeScript adapter's workers (Flowcraft's
//! `BaseDistributedAdapter`) on one queue and one set of tables, during a rolling
//! upgrade or after a rollback. Those workers read every node's output and input
//! from the context row, and count join arrivals in the coordination store. With
//! the setting on:
//!
//! - every commit also writes the node's `_outputs.<id>` / `<id>` and the inputs
//!   its edges wrote (`_inputs.<target>`) into the context row (`sql/commit.sql`,
//!   `$27`), so they read what ours did at any time;
//! - an arrival at a join counts in their keys, and those keys decide when the
//!   join fires, whichever kind of worker brings each arrival: `'all'`:
//!   `flowcraft:fanin:<run>:<join>` (incremented once per arriving predecessor,
//!   firing at the number of edges into the join, then deleted, as they do);
//!   `'any'`: the first arrival takes `flowcraft:joinlock:<run>:<join>` (see
//!   `take_decided` for what the commit still fires). The commit holds the run open
//!   for each such arrival (pending + 1, kept in the node row's `joined_now`), and
//!   `sql/compat_settle.sql` then enqueues what the counters fired, releases the hold
//!   and ends the run when nothing is pending;
//! - the same statement takes node rows still `queued` whose `_outputs.<id>` is in
//!   the context row as done: the TypeScript adapter's workers ran them.
//!
//! Every step after the commit is idempotent (a per-arrival marker in Redis, an
//! idle row enqueued once), and is done again by a redelivered job.

use crate::blueprint::{Blueprint, JoinStrategy};
use crate::coordination::{CoordinationStore, KEY_TTL_SECONDS};
use crate::error::CoreResult;
use crate::run_store::JoinArrival;

/// The TypeScript adapter's arrival counter of an `'all'` join.
pub fn fanin_key(run_id: &str, join: &str) -> String {
    format!("flowcraft:fanin:{run_id}:{join}")
}

/// The TypeScript adapter's lock of an `'any'` join (held by the arrival that fires it).
pub fn join_lock_key(run_id: &str, join: &str) -> String {
    format!("flowcraft:joinlock:{run_id}:{join}")
}

/// Our marker of one arrival counted in `fanin_key` (a replay is not counted again).
pub fn arrival_key(run_id: &str, join: &str, member: &str, iteration: i32) -> String {
    format!("flowcraft:compat:arrival:{run_id}:{join}:{member}:{iteration}")
}

/// How many arrivals fire an `'all'` join for the TypeScript adapter: the edges into it.
pub fn expected_arrivals(bp: &Blueprint, join: &str) -> usize {
    bp.edges.iter().filter(|e| e.target == join).count()
}

/// Whether the coordination store decides when this arrival fires its join: a join of
/// the blueprint (not a batch's gather, not a loop controller) reached by routing.
pub fn decided_by_store(bp: &Blueprint, arrival: &JoinArrival) -> bool {
    arrival.fire
        && arrival.expected > 0
        && bp.node(&arrival.target).is_some_and(|n| n.uses != "batch-gather")
        && !bp.is_loop_controller(&arrival.target)
        && bp.predecessors(&arrival.target) > 1
}

/// The arrivals the store decides, returned for `arrive`. The commit still counts
/// them in the status row: an `'all'` join whose every arrival was counted there (all
/// of them ours, some maybe from before the setting was on) fires in the commit, and
/// its counter, short of those, never does. An `'any'` join's first arrival may have
/// come from an old worker, which fired it: the commit records these (`fire` false).
/// Either way a join row goes from idle to queued once, and only that publishes it.
pub fn take_decided(bp: &Blueprint, joins: &mut [JoinArrival]) -> Vec<JoinArrival> {
    let mut decided = Vec::new();
    for j in joins.iter_mut() {
        if decided_by_store(bp, j) {
            decided.push(j.clone());
            if j.any {
                j.fire = false;
            }
        }
    }
    decided
}

/// Counts `arrivals` (decided by the store) in the TypeScript adapter's keys; returns the
/// joins they fired. Idempotent: a replay answers what the first call did.
pub async fn arrive(
    store: &dyn CoordinationStore,
    bp: &Blueprint,
    run_id: &str,
    iteration: i32,
    arrivals: &[JoinArrival],
) -> CoreResult<Vec<String>> {
    let mut fired = Vec::new();
    for j in arrivals {
        let fires = match bp.join_strategy(&j.target) {
            JoinStrategy::Any => {
                let mut won = false;
                for m in &j.members {
                    let value = format!("locked-by:{m}:{iteration}");
                    won |= store.arrive_any(&join_lock_key(run_id, &j.target), &value, KEY_TTL_SECONDS).await?;
                }
                won
            }
            _ => {
                let expected = expected_arrivals(bp, &j.target) as i64;
                let mut fires = false;
                for m in &j.members {
                    let marker = arrival_key(run_id, &j.target, m, iteration);
                    let n = store.arrive_all(&fanin_key(run_id, &j.target), &marker, expected, KEY_TTL_SECONDS).await?;
                    fires |= n >= expected;
                }
                fires
            }
        };
        if fires && !fired.contains(&j.target) {
            fired.push(j.target.clone());
        }
    }
    Ok(fired)
}

/// The nodes of a run with nothing of ours pending that are nonetheless ready: not done,
/// and reached from done nodes (their stored route, or for a node the TypeScript adapter's
/// workers ran, an edge without condition or action), their join complete. Their jobs are
/// in flight (those workers enqueue without our bookkeeping): the run has not ended.
pub fn open_frontier(bp: &Blueprint, view: &crate::run_store::RunView) -> Vec<String> {
    let empty = serde_json::Map::new();
    let context = view.context.as_ref().unwrap_or(&empty);
    let done =
        |id: &str| context.contains_key(&format!("_outputs.{id}")) || view.undefined_outputs.iter().any(|u| u == id);
    let routed = |p: &str, t: &str| match view.routes.get(p).and_then(|r| r.as_array()) {
        Some(route) => route.iter().any(|r| r == t),
        None => bp.edges.iter().any(|e| e.source == p && e.target == t && e.condition.is_none() && e.action.is_none()),
    };
    bp.nodes
        .iter()
        .filter(|n| !done(&n.id))
        .filter(|n| {
            let preds: Vec<&String> = bp.predecessor_ids(&n.id).collect();
            let arrived = preds.iter().filter(|p| done(p) && routed(p, &n.id)).count();
            arrived > 0
                && (bp.join_strategy(&n.id) == JoinStrategy::Any
                    || bp.is_loop_controller(&n.id)
                    || arrived == preds.len())
        })
        .map(|n| n.id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::BoxFuture;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// A store with only the two calls every store has (the default `arrive_*`).
    #[derive(Default)]
    struct Plain(Mutex<HashMap<String, i64>>);

    impl CoordinationStore for Plain {
        fn increment<'a>(&'a self, key: &'a str, _ttl: u64) -> BoxFuture<'a, CoreResult<i64>> {
            let mut m = self.0.lock().unwrap();
            let n = m.entry(key.to_string()).or_insert(0);
            *n += 1;
            let n = *n;
            Box::pin(async move { Ok(n) })
        }
        fn set_if_not_exist<'a>(&'a self, key: &'a str, _v: &'a str, _ttl: u64) -> BoxFuture<'a, CoreResult<bool>> {
            let mut m = self.0.lock().unwrap();
            let fresh = !m.contains_key(key);
            m.entry(key.to_string()).or_insert(0);
            Box::pin(async move { Ok(fresh) })
        }
    }

    fn fan(strategy: &str) -> Blueprint {
        let bp = serde_json::json!({
            "id": "b", "nodes": [
                {"id": "a", "uses": "x"}, {"id": "b", "uses": "x"}, {"id": "c", "uses": "x"},
                {"id": "j", "uses": "x", "config": {"joinStrategy": strategy}}],
            "edges": [{"source": "a", "target": "j"}, {"source": "b", "target": "j"}, {"source": "c", "target": "j"}]
        });
        Blueprint::from_value(bp).unwrap()
    }

    fn arrival(bp: &Blueprint, member: &str) -> Vec<JoinArrival> {
        crate::joins::arrivals(bp, member, &["j".to_string()], None).joins
    }

    #[tokio::test]
    async fn an_all_join_fires_once_at_the_last_edge_and_a_replay_is_not_counted_again() {
        let bp = fan("all");
        let store = Plain::default();
        assert!(arrive(&store, &bp, "r", 0, &arrival(&bp, "a")).await.unwrap().is_empty());
        assert!(arrive(&store, &bp, "r", 0, &arrival(&bp, "a")).await.unwrap().is_empty()); // replay
        store.0.lock().unwrap().insert(fanin_key("r", "j"), 2); // another kind's arrival (INCR)
        assert_eq!(arrive(&store, &bp, "r", 0, &arrival(&bp, "b")).await.unwrap(), vec!["j".to_string()]);
    }

    #[tokio::test]
    async fn an_any_join_fires_for_the_first_arrival_only() {
        let bp = fan("any");
        let store = Plain::default();
        assert_eq!(arrive(&store, &bp, "r", 0, &arrival(&bp, "a")).await.unwrap(), vec!["j".to_string()]);
        assert!(arrive(&store, &bp, "r", 0, &arrival(&bp, "b")).await.unwrap().is_empty());
    }

    #[test]
    fn the_commit_records_decided_arrivals_without_firing_them() {
        let bp = fan("all");
        let mut joins = arrival(&bp, "a");
        let decided = take_decided(&bp, &mut joins);
        assert_eq!(decided.len(), 1);
        assert!(joins[0].fire && decided[0].fire);
        let bp = fan("any");
        let mut joins = arrival(&bp, "a");
        let decided = take_decided(&bp, &mut joins);
        assert!(!joins[0].fire && decided[0].fire);
    }
}
