//! Group commit (`group_commit.rs`, `sql/commit_set.sql`) against the real PostgreSQL:
//! the plain commits of jobs of many runs made at the same moment take few statements, and
//! each still applies its own effect once (its node row, its successor's, its context
//! writes, its run's end); a commit that fails fails only itself. Each test has its own tables.

mod common;

use common::{rt, Tables};
use flowcraft_core::joins::Adopted;
use flowcraft_core::json_text::JsonText;
use flowcraft_core::routing::EdgeInput;
use flowcraft_core::run_store::{Commit, Effect};
use serde_json::{json, Map, Value};

/// Node ids that an array literal must quote.
const FIRST: &str = "fi\"rst";
const THEN: &str = "then, {x}";

/// `count` runs, `run-0`, `run-1`, ..., each with FIRST queued and THEN idle.
async fn runs(t: &Tables, count: usize) -> Vec<String> {
    let runs: Vec<String> = (0..count).map(|i| format!("run-{i}")).collect();
    let nodes = [FIRST.to_string(), THEN.to_string()];
    for r in &runs {
        let mut initial = Map::new();
        initial.insert("who".into(), json!(r));
        initial.insert("gone".into(), json!(true));
        t.store.init_run(r, "bp", &initial, &nodes, &nodes[..1], &Adopted::default()).await.unwrap();
    }
    runs
}

/// FIRST's effect in run `i`: an even run goes on to THEN (its input the output), an odd one ends.
fn effect(i: usize) -> Effect {
    let mut sets = Map::new();
    sets.insert("seen".into(), json!(i));
    let on = i.is_multiple_of(2);
    let next = || if on { vec![THEN.to_string()] } else { Vec::new() };
    Effect {
        output: Some(JsonText::of(&json!({ "n": i }))),
        sets,
        deletes: vec!["gone".into()],
        route: next(),
        ready: next(),
        inputs: next().into_iter().map(|t| (t, EdgeInput::Output)).collect(),
        bound: next(),
        ..Default::default()
    }
}

#[test]
fn commits_made_together_are_few_statements_and_each_applies_its_own_effect() {
    rt().block_on(commits_made_together());
}

async fn commits_made_together() {
    let t = Tables::new("gc_own").await;
    let runs = runs(&t, 40).await;
    let effects: Vec<Effect> = (0..runs.len()).map(effect).collect();
    let before = t.store.commit_counts().unwrap();
    let calls = runs.iter().zip(&effects).map(|(r, e)| t.store.commit(r, FIRST, e));
    let commits = futures_util::future::join_all(calls).await;
    let after = t.store.commit_counts().unwrap();
    for (i, (r, c)) in runs.iter().zip(commits).enumerate() {
        match c.unwrap() {
            Commit::Applied { ready, finished } if i.is_multiple_of(2) => {
                assert_eq!(ready.iter().map(|e| e.node_id.as_str()).collect::<Vec<_>>(), [THEN], "run {i}");
                assert_eq!(finished, None, "run {i}");
            }
            Commit::Applied { ready, finished } => {
                assert!(ready.is_empty(), "run {i}: {ready:?}");
                assert_eq!(finished, Some(("completed".to_string(), None)), "run {i}");
            }
            Commit::AlreadyDone => panic!("run {i} was not applied"),
        }
        let s = t.store.load(r, THEN, &[FIRST.to_string()], true).await.unwrap();
        let context = s.context.unwrap();
        assert_eq!(context.get("who"), Some(&Value::from(r.as_str())), "run {i} has its own context");
        assert_eq!(context.get("seen"), Some(&json!(i)));
        assert!(!context.contains_key("gone"), "run {i}: {context:?}");
        assert_eq!(context.get(&format!("_outputs.{FIRST}")), Some(&json!({ "n": i })));
        let node = s.node.unwrap();
        if i.is_multiple_of(2) {
            assert_eq!(s.status.as_deref(), Some("running"));
            assert_eq!(node.state, "queued");
            assert!(node.bound);
            let input = context.get(&format!("_inputs.{THEN}"));
            assert_eq!(input, Some(&json!({ "n": i })), "THEN's input is FIRST's output");
        } else {
            assert_eq!(s.status.as_deref(), Some("completed"));
            assert_eq!(node.state, "idle");
        }
    }
    let (commits, statements) = (after.commits - before.commits, after.statements - before.statements);
    assert_eq!(commits, 40);
    assert!(statements <= 20, "40 commits made at once took {statements} statements");
    // a redelivered job's commit changes nothing, in a group or alone
    let again = runs.iter().zip(&effects).map(|(r, e)| t.store.commit(r, FIRST, e));
    for c in futures_util::future::join_all(again).await {
        assert!(matches!(c.unwrap(), Commit::AlreadyDone));
    }
    let s = t.store.load("run-0", THEN, &[], true).await.unwrap();
    assert_eq!(s.context.unwrap().get("seen"), Some(&json!(0)));
}

#[test]
fn a_commit_that_fails_fails_only_itself() {
    rt().block_on(a_failing_commit());
}

async fn a_failing_commit() {
    let t = Tables::new("gc_fail").await;
    let runs = runs(&t, 12).await;
    // a context row that is a scalar: a commit's context writes fail in PostgreSQL
    t.break_context("run-5", "5").await;
    let effects: Vec<Effect> = (0..runs.len()).map(|_| effect(0)).collect();
    let calls = runs.iter().zip(&effects).map(|(r, e)| t.store.commit(r, FIRST, e));
    let commits = futures_util::future::join_all(calls).await;
    for (r, c) in runs.iter().zip(commits) {
        if r == "run-5" {
            let e = c.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("scalar") || e.contains("22023"), "{e}");
        } else {
            assert!(matches!(c.unwrap(), Commit::Applied { .. }), "{r}");
            let s = t.store.load(r, THEN, &[], true).await.unwrap();
            assert_eq!(s.node.unwrap().state, "queued", "{r}");
        }
    }
    // nothing of the failed commit was kept
    let s = t.store.load("run-5", FIRST, &[], true).await.unwrap();
    assert_eq!(s.node.unwrap().state, "queued");
}
