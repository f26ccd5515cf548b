//! Group read (`group_read.rs`) against the real PostgreSQL: reads made at the same moment
//! are one statement, each read still gets its own run's snapshot (node ids and keys of
//! any spelling), and a read that fails fails only itself. Each test has its own tables.

mod common;

use common::{rt, Tables};
use flowcraft_core::joins::Adopted;
use serde_json::{json, Map, Value};

/// Node ids that an array literal must quote.
const NODES: [&str; 4] = ["plain", "quo\"te", "com,ma", "back\\slash {x}"];

/// A run whose context is its id and a big value; its first node queued.
async fn run(t: &Tables, run_id: &str) {
    let mut initial = Map::new();
    initial.insert("who".into(), json!(run_id));
    // over LAZY_VALUE_BYTES: left out unless the read names it
    initial.insert("big".into(), json!("x".repeat(4000)));
    let nodes: Vec<String> = NODES.iter().map(|n| n.to_string()).collect();
    t.store.init_run(run_id, "bp", &initial, &nodes, &nodes[..1], &Adopted::default()).await.unwrap();
}

/// `count` runs, `run-0`, `run-1`, ...
async fn runs(t: &Tables, count: usize) -> Vec<String> {
    let runs: Vec<String> = (0..count).map(|i| format!("run-{i}")).collect();
    for r in &runs {
        run(t, r).await;
    }
    runs
}

#[test]
fn reads_made_together_are_one_statement_and_each_gets_its_own_run() {
    rt().block_on(reads_made_together());
}

async fn reads_made_together() {
    let t = Tables::new("gr_own").await;
    let runs = runs(&t, 40).await;
    let before = t.store.read_counts();
    let calls = runs.iter().enumerate().map(|(i, r)| {
        let node = NODES[i % NODES.len()];
        let needed: Vec<String> = NODES.iter().map(|n| n.to_string()).collect();
        // every other read names the big key: it is kept for that read only
        let keys: Vec<String> = if i % 2 == 0 { vec!["big".into()] } else { vec![] };
        let store = &t.store;
        async move { store.load_keeping(r, node, &needed, false, &keys).await }
    });
    let snapshots = futures_util::future::join_all(calls).await;
    let after = t.store.read_counts();
    for (i, (r, s)) in runs.iter().zip(&snapshots).enumerate() {
        let s = s.as_ref().unwrap();
        let context = s.context.as_ref().unwrap();
        assert_eq!(context.get("who"), Some(&Value::from(r.as_str())), "read {i} got its own run");
        assert_eq!(s.node.as_ref().map(|n| n.id.as_str()), Some(NODES[i % NODES.len()]));
        assert_eq!(s.status.as_deref(), Some("running"));
        if i % 2 == 0 {
            assert_eq!(context.get("big").and_then(Value::as_str).map(str::len), Some(4000));
            assert!(s.omitted.is_empty(), "{:?}", s.omitted);
        } else {
            assert!(!context.contains_key("big"));
            assert_eq!(s.omitted, ["big"]);
        }
    }
    let (reads, statements) = (after.reads - before.reads, after.statements - before.statements);
    assert_eq!(reads, 40);
    assert!(statements <= 20, "40 reads made at once took {statements} statements");
    // every node row of a whole-run read, and a run that does not exist
    let all = t.store.load("run-3", "plain", &[], true).await.unwrap();
    assert_eq!(all.context.unwrap().get("big").and_then(Value::as_str).map(str::len), Some(4000));
    let none = t.store.load("no-such-run", "plain", &[], false).await.unwrap();
    assert!(none.context.is_none() && none.status.is_none());
}

#[test]
fn a_read_that_fails_fails_only_itself() {
    rt().block_on(a_failing_read());
}

async fn a_failing_read() {
    let t = Tables::new("gr_fail").await;
    let runs = runs(&t, 12).await;
    // a context row that is not an object: its partial read fails in PostgreSQL
    t.break_context("run-5", "[1]").await;
    let before = t.store.read_counts();
    let calls = runs.iter().map(|r| {
        let store = &t.store;
        async move { store.load(r, "plain", &["plain".to_string()], false).await }
    });
    let snapshots = futures_util::future::join_all(calls).await;
    for (r, s) in runs.iter().zip(&snapshots) {
        if r == "run-5" {
            let e = s.as_ref().err().map(ToString::to_string).unwrap_or_default();
            assert!(e.contains("non-object") || e.contains("22023"), "{e}");
        } else {
            let context = s.as_ref().unwrap().context.as_ref().unwrap();
            assert_eq!(context.get("who"), Some(&Value::from(r.as_str())));
        }
    }
    assert_eq!(t.store.read_counts().reads - before.reads, 12);
}
