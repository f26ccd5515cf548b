//! The job protocol tested from Rust against the real RabbitMQ, PostgreSQL and
//! Redis, with node implementations written as Rust closures (no Node.js).

use flowcraft_core::amqp::QueueTarget;
use flowcraft_core::blueprint::Blueprints;
use flowcraft_core::context_store::PatchOp;
use flowcraft_core::coordination::{Coordination, RedisTarget};
use flowcraft_core::executor::{BoxFuture, NodeExecutor, NodeRequest, NodeResponse};
use flowcraft_core::job::JobRunner;
use flowcraft_core::pg::{PgPool, PgTarget};
use flowcraft_core::queue::{Broker, JobMessage};
use flowcraft_core::run_store::RunStore;
use flowcraft_core::runs::RunClient;
use flowcraft_core::worker::{Worker, WorkerConfig};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap())
}

fn pg() -> PgTarget {
    PgTarget::from_url(
        &std::env::var("POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
    )
}
fn redis() -> RedisTarget {
    RedisTarget::from_url(&std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()))
}
fn amqp() -> String {
    std::env::var("RABBITMQ_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("t_{prefix}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

type NodeFn = Arc<dyn Fn(&NodeRequest) -> NodeResponse + Send + Sync>;

/// A registry of Rust node functions that counts executions per (run, node).
#[derive(Default)]
struct RustNodes {
    fns: HashMap<String, NodeFn>,
    executions: Mutex<HashMap<(String, String), usize>>,
}

impl RustNodes {
    fn with(mut self, uses: &str, f: impl Fn(&NodeRequest) -> NodeResponse + Send + Sync + 'static) -> Self {
        self.fns.insert(uses.into(), Arc::new(f));
        self
    }
    fn runs_of(&self, run: &str, node: &str) -> usize {
        *self.executions.lock().unwrap().get(&(run.to_string(), node.to_string())).unwrap_or(&0)
    }
}

struct Shared(Arc<RustNodes>);

impl NodeExecutor for Shared {
    fn log(&self, level: flowcraft_core::executor::Level, message: &str, meta: Value) {
        if matches!(level, flowcraft_core::executor::Level::Warn | flowcraft_core::executor::Level::Error)
            && std::env::var("TEST_LOG").is_ok()
        {
            eprintln!("[{level:?}] {message} {meta}");
        }
    }

    fn run(&self, request: NodeRequest) -> BoxFuture<'_, NodeResponse> {
        Box::pin(async move {
            *self.0.executions.lock().unwrap().entry((request.run_id.clone(), request.node_id.clone())).or_default() +=
                1;
            if let Some(ms) = request.params.get("sleepMs").and_then(Value::as_u64) {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            match self.0.fns.get(&request.uses) {
                Some(f) => f(&request),
                None => NodeResponse::failure("no such node"),
            }
        })
    }
}

fn ok(output: Value) -> NodeResponse {
    NodeResponse::success(Some(output), None, vec![])
}

struct Harness {
    /// Prefix of this test's run ids: join keys in Redis live for an hour.
    runs: String,
    queue: String,
    ctx: String,
    st: String,
    worker: Worker,
    nodes: Arc<RustNodes>,
    broker: Broker,
}

impl Harness {
    async fn start(blueprints: Value, nodes: RustNodes) -> Harness {
        let (queue, ctx, st) = (unique("q"), unique("ctx"), unique("st"));
        let nodes = Arc::new(nodes);
        let runner = JobRunner::new(
            Blueprints::from_value(blueprints).unwrap(),
            nodes.fns.keys().cloned().collect::<HashSet<_>>(),
            RunStore::new(&pg(), &ctx, &st).unwrap(),
            Arc::new(Coordination::shared(&redis()).unwrap()),
            Arc::new(Shared(nodes.clone())),
        );
        let worker = Worker::new(
            runner,
            WorkerConfig {
                target: QueueTarget::new(&amqp(), &queue),
                concurrency: std::env::var("CORE_BENCH_CONCURRENCY").ok().and_then(|v| v.parse().ok()).unwrap_or(16),
                create_tables: true,
                max_deliveries: 5,
            },
        );
        worker.start().await.unwrap();
        let broker = Broker::connect(&QueueTarget::new(&amqp(), &queue)).await.unwrap();
        Harness { runs: unique("run"), queue, ctx, st, worker, nodes, broker }
    }

    fn run(&self, run_id: &str) -> String {
        format!("{}-{run_id}", self.runs)
    }

    fn runs_of(&self, run_id: &str, node: &str) -> usize {
        self.nodes.runs_of(&self.run(run_id), node)
    }

    async fn start_run(&self, run_id: &str, blueprint_id: &str, nodes: &[&str]) {
        let run_id = self.run(run_id);
        let jobs: Vec<JobMessage> = nodes.iter().map(|n| JobMessage::new(&run_id, blueprint_id, n)).collect();
        self.broker.publish_jobs(&jobs).await.unwrap();
    }

    async fn query(&self, sql: &str, run_id: &str) -> Vec<tokio_postgres::Row> {
        let pool = PgPool::shared(&pg()).unwrap();
        pool.query("test", sql, &[&self.run(run_id)]).await.unwrap()
    }

    /// Waits for a final status; returns (status, status_data, context).
    async fn wait(&self, run_id: &str) -> (String, Value, Value) {
        for _ in 0..400 {
            let rows = self
                .query(&format!("SELECT s.status, s.status_data::text, COALESCE(c.context_data::text, '{{}}') FROM \"{}\" s LEFT JOIN \"{}\" c USING (run_id) WHERE run_id = $1", self.st, self.ctx), run_id)
                .await;
            if let Some(r) = rows.first() {
                let status: Option<String> = r.get(0);
                if let Some(s) = status.filter(|s| s == "completed" || s == "failed") {
                    let data: String = r.get(1);
                    let ctx: String = r.get(2);
                    return (s, serde_json::from_str(&data).unwrap(), serde_json::from_str(&ctx).unwrap());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("run {run_id} did not finish");
    }

    async fn dead_letters(&self) -> Vec<(String, String)> {
        let conn = lapin::Connection::connect(&amqp(), Default::default()).await.unwrap();
        let ch = conn.create_channel().await.unwrap();
        let mut out = Vec::new();
        while let Some(m) = ch
            .basic_get(format!("{}.dead", self.queue).as_str().into(), lapin::options::BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            let reason = m
                .delivery
                .properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get("x-flowcraft-reason").cloned())
                .map(|v| match v {
                    lapin::types::AMQPValue::LongString(s) => s.to_string(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            out.push((String::from_utf8_lossy(&m.delivery.data).to_string(), reason));
        }
        let _ = conn.close(200, "bye".into()).await;
        out
    }

    async fn finish(self) {
        self.worker.stop(Duration::from_secs(10)).await.unwrap();
        self.broker.close().await;
        // Drop cleans up.
    }
}

/// Drops the test's tables and queues whether it passed or panicked.
async fn remove_resources(ctx: &str, st: &str, queue: &str) {
    let pool = PgPool::shared(&pg()).unwrap();
    let _ = pool
        .batch(
            "cleanup",
            &format!(
                "DROP TABLE IF EXISTS \"{ctx}\"; DROP TABLE IF EXISTS \"{ctx}_nodes\"; DROP TABLE IF EXISTS \"{st}\""
            ),
        )
        .await;
    if let Ok(conn) = lapin::Connection::connect(&amqp(), Default::default()).await {
        if let Ok(ch) = conn.create_channel().await {
            for q in [queue.to_string(), format!("{queue}.dead")] {
                let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
            }
        }
        let _ = conn.close(200, "bye".into()).await;
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let (ctx, st, queue) = (self.ctx.clone(), self.st.clone(), self.queue.clone());
        // Inside the test's block_on: clean up on a thread with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(remove_resources(&ctx, &st, &queue));
        })
        .join();
    }
}

fn diamond() -> Value {
    json!({ "diamond": { "id": "diamond", "nodes": [
        { "id": "start", "uses": "emit" },
        { "id": "b", "uses": "double" }, { "id": "c", "uses": "double" }, { "id": "d", "uses": "double" },
        { "id": "join", "uses": "sum", "inputs": { "b": "b", "c": "c", "d": "d" } },
        { "id": "end", "uses": "double" }
    ], "edges": [
        { "source": "start", "target": "b" }, { "source": "start", "target": "c" }, { "source": "start", "target": "d" },
        { "source": "b", "target": "join" }, { "source": "c", "target": "join" }, { "source": "d", "target": "join" },
        { "source": "join", "target": "end" }
    ] } })
}

fn diamond_nodes() -> RustNodes {
    RustNodes::default()
        .with("emit", |_| ok(json!(2)))
        .with("double", |r| ok(json!(r.input_value().as_ref().and_then(Value::as_i64).unwrap_or(0) * 2)))
        .with("sum", |r| {
            let i = r.input_value().unwrap_or_default();
            ok(json!(["b", "c", "d"].iter().map(|k| i[k].as_i64().unwrap_or(0)).sum::<i64>()))
        })
}

#[test]
fn diamond_runs_every_node_once_and_completes_with_the_whole_context() {
    rt().block_on(async {
        let h = Harness::start(diamond(), diamond_nodes()).await;
        let runs: Vec<String> = (0..20).map(|i| format!("run-{i}")).collect();
        for r in &runs {
            h.start_run(r, "diamond", &["start"]).await;
        }
        for r in &runs {
            let (status, data, ctx) = h.wait(r).await;
            assert_eq!(status, "completed", "{data}");
            assert_eq!(ctx["_outputs.join"], json!(12));
            assert_eq!(ctx["_outputs.end"], json!(24));
            assert_eq!(ctx["blueprintId"], json!("diamond"));
            assert_eq!(data["payload"]["context"]["_outputs.end"], json!(24));
            assert_eq!(data["payload"]["status"], json!("completed"));
            for n in ["start", "b", "c", "d", "join", "end"] {
                assert_eq!(h.runs_of(r, n), 1, "node {n} of {r}");
            }
        }
        h.finish().await;
    });
}

#[test]
fn a_failing_node_fails_the_run_with_its_own_message_after_other_branches_finish() {
    rt().block_on(async {
        let bp = json!({ "bp": { "id": "bp", "nodes": [
            { "id": "a", "uses": "ok" }, { "id": "bad", "uses": "boom", "config": { "maxRetries": 2 } }, { "id": "side", "uses": "ok" },
            { "id": "j", "uses": "ok" }
        ], "edges": [
            { "source": "a", "target": "bad" }, { "source": "a", "target": "side" },
            { "source": "bad", "target": "j" }, { "source": "side", "target": "j" }
        ] } });
        let nodes = RustNodes::default().with("ok", |_| ok(json!("fine"))).with("boom", |_| NodeResponse::failure("disk on fire"));
        let h = Harness::start(bp, nodes).await;
        h.start_run("r1", "bp", &["a"]).await;
        let (status, data, ctx) = h.wait("r1").await;
        assert_eq!(status, "failed");
        assert!(data["reason"].as_str().unwrap().contains("disk on fire"), "{data}");
        assert!(data["reason"].as_str().unwrap().contains("bad"), "{data}");
        assert_eq!(ctx["_outputs.side"], json!("fine"));
        assert!(ctx.get("_outputs.j").is_none(), "the join waits for the failed node forever, so it never runs");
        h.finish().await;
    });
}

#[test]
fn conditions_actions_transforms_and_fallbacks() {
    rt().block_on(async {
        let bp = json!({ "bp": { "id": "bp", "metadata": { "version": "v2" }, "nodes": [
            { "id": "check", "uses": "check" },
            { "id": "yes", "uses": "echo" }, { "id": "no", "uses": "echo" },
            { "id": "approve", "uses": "echo" }, { "id": "reject", "uses": "echo" },
            { "id": "risky", "uses": "boom", "config": { "fallback": "safe" } }, { "id": "safe", "uses": "safe" },
            { "id": "after", "uses": "echo" }
        ], "edges": [
            { "source": "check", "target": "yes", "condition": "result.output.ok", "transform": "input.value" },
            { "source": "check", "target": "no", "condition": "result.output.nope" },
            { "source": "yes", "target": "approve", "action": "approve" },
            { "source": "yes", "target": "reject", "action": "reject" },
            { "source": "approve", "target": "risky" },
            { "source": "risky", "target": "after" }
        ] } });
        let nodes = RustNodes::default()
            .with("check", |_| ok(json!({ "ok": true, "nope": false, "value": 41 })))
            .with("echo", |r| {
                let writes = vec![PatchOp::Set { key: format!("seen.{}", r.node_id), value: json!(true) }];
                let action = if r.node_id == "yes" { Some("approve".to_string()) } else { None };
                NodeResponse::success(Some(json!({ "from": r.node_id, "input": r.input_value() })), action, writes)
            })
            .with("boom", |_| NodeResponse::failure("nope"))
            .with("safe", |_| ok(json!("recovered")));
        let h = Harness::start(bp, nodes).await;
        h.start_run("r1", "bp", &["check"]).await;
        let (status, data, ctx) = h.wait("r1").await;
        assert_eq!(status, "completed", "{data}");
        assert_eq!(ctx["_inputs.yes"], json!(41));
        assert_eq!(ctx["_outputs.yes"], json!({ "from": "yes", "input": 41 }));
        assert!(ctx.get("_outputs.no").is_none());
        assert!(ctx.get("_outputs.reject").is_none());
        assert_eq!(ctx["seen.approve"], json!(true));
        assert_eq!(ctx["_outputs.risky"], Value::Null);
        assert_eq!(ctx["_outputs.safe"], json!("recovered"));
        assert_eq!(ctx["_outputs.after"]["input"], json!("recovered"));
        assert_eq!(ctx["blueprintVersion"], json!("v2"));
        h.finish().await;
    });
}

#[test]
fn redelivered_and_duplicated_jobs_have_no_second_effect() {
    rt().block_on(async {
        let h = Harness::start(diamond(), diamond_nodes()).await;
        h.start_run("r1", "diamond", &["start"]).await;
        let (status, ..) = h.wait("r1").await;
        assert_eq!(status, "completed");
        // Replaying every job of a finished run changes nothing.
        h.start_run("r1", "diamond", &["start", "b", "c", "d", "join", "end"]).await;
        // Duplicates of a start job of a fresh run, published together.
        h.start_run("r2", "diamond", &["start", "start", "start"]).await;
        let (status, _, ctx) = h.wait("r2").await;
        assert_eq!(status, "completed");
        assert_eq!(ctx["_outputs.end"], json!(24));
        tokio::time::sleep(Duration::from_millis(500)).await;
        for n in ["start", "b", "c", "d", "join", "end"] {
            assert_eq!(h.runs_of("r1", n), 1, "node {n} of r1 ran again");
        }
        // Concurrent duplicates may run user code twice but commit once; the join still fires once.
        assert_eq!(h.runs_of("r2", "join"), 1);
        assert_eq!(h.runs_of("r2", "end"), 1);
        h.finish().await;
    });
}

#[test]
fn bad_messages_are_dead_lettered_with_a_reason_and_the_worker_keeps_serving() {
    rt().block_on(async {
        let h = Harness::start(diamond(), diamond_nodes()).await;
        let conn = lapin::Connection::connect(&amqp(), Default::default()).await.unwrap();
        let ch = conn.create_channel().await.unwrap();
        for body in [&b"not json"[..], br#"{"runId":"r9"}"#, json!({"runId": h.run("r8"), "blueprintId": "nope", "nodeId": "x"}).to_string().as_bytes(), json!({"runId": h.run("r7"), "blueprintId": "diamond", "nodeId": "ghost"}).to_string().as_bytes()] {
            ch.basic_publish("".into(), h.queue.as_str().into(), Default::default(), body, Default::default()).await.unwrap();
        }
        // A run whose stored version differs from the worker's blueprint.
        let pool = PgPool::shared(&pg()).unwrap();
        pool.query("seed", &format!("INSERT INTO \"{}\" (run_id, context_data) VALUES ($1, '{{\"blueprintId\":\"diamond\",\"blueprintVersion\":\"old\"}}')", h.ctx), &[&h.run("r6")]).await.unwrap();
        h.start_run("r6", "diamond", &["start"]).await;
        h.start_run("ok", "diamond", &["start"]).await;
        let (status, ..) = h.wait("ok").await;
        assert_eq!(status, "completed");
        let (status, data, _) = h.wait("r8").await;
        assert_eq!(status, "failed");
        assert!(data["reason"].as_str().unwrap().contains("'nope'"));
        let (status, data, _) = h.wait("r7").await;
        assert_eq!(status, "failed");
        assert!(data["reason"].as_str().unwrap().contains("'ghost'"));
        let mut dead = Vec::new();
        for _ in 0..50 {
            dead.extend(h.dead_letters().await);
            if dead.len() >= 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let reasons: Vec<&str> = dead.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(dead.len(), 5, "{reasons:?}");
        assert!(reasons.iter().any(|r| r.contains("not JSON")), "{reasons:?}");
        assert!(reasons.iter().any(|r| r.contains("'blueprintId'")), "{reasons:?}");
        assert!(reasons.iter().any(|r| r.contains("version mismatch")), "{reasons:?}");
        // The refused run is untouched: no status, no outputs.
        let rows = h.query(&format!("SELECT context_data::text FROM \"{}\" WHERE run_id = $1", h.ctx), "r6").await;
        let ctx: Value = serde_json::from_str(&rows[0].get::<_, String>(0)).unwrap();
        assert!(ctx.get("_outputs.start").is_none());
        assert_eq!(h.runs_of("r6", "start"), 0);
        let _ = conn.close(200, "bye".into()).await;
        h.finish().await;
    });
}

#[test]
fn any_join_fires_once_and_late_arrivals_do_not_fail_the_run() {
    rt().block_on(async {
        let bp = json!({ "bp": { "id": "bp", "nodes": [
            { "id": "s", "uses": "ok" }, { "id": "a", "uses": "ok" }, { "id": "b", "uses": "ok" }, { "id": "c", "uses": "ok" },
            { "id": "first", "uses": "ok", "config": { "joinStrategy": "any" } }
        ], "edges": [
            { "source": "s", "target": "a" }, { "source": "s", "target": "b" }, { "source": "s", "target": "c" },
            { "source": "a", "target": "first" }, { "source": "b", "target": "first" }, { "source": "c", "target": "first" }
        ] } });
        let h = Harness::start(bp, RustNodes::default().with("ok", |r| ok(json!(r.node_id)))).await;
        for i in 0..10 {
            h.start_run(&format!("r{i}"), "bp", &["s"]).await;
        }
        for i in 0..10 {
            let (status, _, ctx) = h.wait(&format!("r{i}")).await;
            assert_eq!(status, "completed");
            assert_eq!(ctx["_outputs.first"], json!("first"));
            assert_eq!(h.runs_of(&format!("r{i}"), "first"), 1);
        }
        h.finish().await;
    });
}

#[test]
fn stop_drains_and_releases_the_worker() {
    rt().block_on(async {
        let h = Harness::start(diamond(), diamond_nodes()).await;
        h.start_run("r1", "diamond", &["start"]).await;
        h.wait("r1").await;
        h.worker.stop(Duration::from_secs(5)).await.unwrap();
        // A stopped worker takes no more jobs: this one stays queued.
        h.start_run("r2", "diamond", &["start"]).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(h.runs_of("r2", "start"), 0);
        let conn = lapin::Connection::connect(&amqp(), Default::default()).await.unwrap();
        let ch = conn.create_channel().await.unwrap();
        let q = ch
            .queue_declare(
                h.queue.as_str().into(),
                lapin::options::QueueDeclareOptions { passive: true, ..Default::default() },
                Default::default(),
            )
            .await
            .unwrap();
        assert_eq!(q.message_count(), 1);
        let _ = conn.close(200, "bye".into()).await;
        h.finish().await;
    });
}

impl Harness {
    fn client(&self, blueprints: Value) -> RunClient {
        RunClient::new(
            &pg(),
            &self.ctx,
            &self.st,
            Arc::new(Blueprints::from_value(blueprints).unwrap()),
            Arc::new(Coordination::shared(&redis()).unwrap()),
            QueueTarget::new(&amqp(), &self.queue),
            true,
        )
        .unwrap()
    }
}

#[test]
fn start_run_is_idempotent_and_wait_for_run_is_woken_by_notify() {
    rt().block_on(async {
        let h = Harness::start(diamond(), diamond_nodes()).await;
        let client = h.client(diamond());
        let key = h.run("key");
        let (x1, x2) = (h.run("x1"), h.run("x2"));
        let (a, b) = tokio::join!(
            client.start_run("diamond", serde_json::Map::new(), &x1, Some(&key)),
            client.start_run("diamond", serde_json::Map::new(), &x2, Some(&key)),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.0, b.0, "one idempotency key, one run");
        assert!(a.1 ^ b.1, "exactly one call created it");
        let started = std::time::Instant::now();
        let data = client.wait_for_run(&a.0, Duration::from_secs(20)).await.unwrap();
        assert_eq!(data["status"], json!("completed"));
        assert_eq!(data["payload"]["context"]["_outputs.end"], json!(24));
        assert!(started.elapsed() < Duration::from_secs(10));
        let run = a.0.strip_prefix(&format!("{}-", h.runs)).unwrap().to_string();
        assert_eq!(h.runs_of(&run, "start"), 1, "the start job was published once");
        let report = client.get_run(&a.0).await.unwrap().unwrap();
        assert!(report.nodes.iter().all(|n| n.state == "done"), "{:?}", report.nodes);
        let err = client.wait_for_run(&h.run("never"), Duration::from_millis(300)).await.unwrap_err();
        assert_eq!(err.code(), "ERR_TIMEOUT");
        client.close().await;
        h.finish().await;
    });
}

#[test]
fn reconcile_enqueues_a_lost_join_once_and_leaves_healthy_runs_alone() {
    rt().block_on(async {
        let h = Harness::start(diamond(), diamond_nodes()).await;
        let client = h.client(diamond());
        let (run, _) = client.start_run("diamond", serde_json::Map::new(), &h.run("r1"), None).await.unwrap();
        client.wait_for_run(&run, Duration::from_secs(20)).await.unwrap();
        assert!(client.reconcile(&run, Duration::ZERO).await.unwrap().is_empty(), "a finished run needs nothing");
        // Simulate a lost join: the join's arrival state and the end are gone.
        let pool = PgPool::shared(&pg()).unwrap();
        pool.query("t", &format!("UPDATE \"{}\" SET context_data = context_data - ARRAY['_outputs.join', 'join', '_outputs.end', 'end'] WHERE run_id = $1", h.ctx), &[&run]).await.unwrap();
        // A final status is kept by the status table's trigger: rewinding it on purpose means disabling it.
        let keep_final = |on: &str| format!("ALTER TABLE \"{}\" {on} TRIGGER flowcraft_status_keep_final", h.st);
        pool.batch("t", &keep_final("DISABLE")).await.unwrap();
        pool.query("t", &format!("UPDATE \"{}\" SET status = 'running', status_data = NULL, pending = 0 WHERE run_id = $1", h.st), &[&run]).await.unwrap();
        pool.query("t", &format!("UPDATE \"{}_nodes\" SET state = 'idle', output = NULL, route = NULL WHERE run_id = $1 AND node_id IN ('join', 'end')", h.ctx), &[&run]).await.unwrap();
        pool.batch("t", &keep_final("ENABLE")).await.unwrap();
        let first = client.reconcile(&run, Duration::from_secs(60)).await.unwrap();
        assert_eq!(first, vec!["join".to_string()]);
        let second = client.reconcile(&run, Duration::from_secs(60)).await.unwrap();
        assert!(second.is_empty(), "the node lock stops a second enqueue: {second:?}");
        let data = client.wait_for_run(&run, Duration::from_secs(20)).await.unwrap();
        assert_eq!(data["status"], json!("completed"));
        assert_eq!(data["payload"]["context"]["_outputs.end"], json!(24));
        client.close().await;
        h.finish().await;
    });
}

#[test]
fn cancel_and_resume() {
    rt().block_on(async {
        let bp = json!({ "bp": { "id": "bp", "nodes": [
            { "id": "a", "uses": "ok" }, { "id": "ask", "uses": "wait" },
            { "id": "yes", "uses": "ok" }, { "id": "no", "uses": "ok" }
        ], "edges": [
            { "source": "a", "target": "ask" },
            { "source": "ask", "target": "yes", "action": "approve" },
            { "source": "ask", "target": "no", "action": "deny" }
        ] }, "slow": { "id": "slow", "nodes": [ { "id": "s", "uses": "ok", "params": { "sleepMs": 1000 } }, { "id": "t", "uses": "ok" } ], "edges": [ { "source": "s", "target": "t" } ] } });
        let nodes = RustNodes::default().with("ok", |r| ok(json!(r.node_id)));
        let h = Harness::start(bp.clone(), nodes).await;
        let client = h.client(bp);
        let (run, _) = client.start_run("bp", serde_json::Map::new(), &h.run("hitl"), None).await.unwrap();
        let data = client.wait_for_run(&run, Duration::from_secs(20)).await.unwrap();
        assert_eq!(data["status"], json!("awaiting"));
        let report = client.get_run(&run).await.unwrap().unwrap();
        assert_eq!(report.nodes.iter().find(|n| n.id == "ask").unwrap().state, "awaiting");
        assert!(client.reconcile(&run, Duration::ZERO).await.unwrap().is_empty(), "an awaiting run is not stalled");
        let enqueued = client.resume_with_action(&run, "approve", Some(json!({ "by": "ann" })), None).await.unwrap();
        assert_eq!(enqueued, vec!["yes".to_string()]);
        let data = client.wait_for_run(&run, Duration::from_secs(20)).await.unwrap();
        assert_eq!(data["status"], json!("completed"), "{data}");
        let ctx = &data["payload"]["context"];
        assert_eq!(ctx["_resume.action"], json!("approve"));
        assert_eq!(ctx["_outputs.ask"], json!({ "by": "ann" }));
        assert!(ctx.get("_outputs.no").is_none());
        assert!(ctx.get("_awaitingNodeIds").is_none());

        let (run, _) = client.start_run("slow", serde_json::Map::new(), &h.run("c1"), None).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = client.get_run(&run).await.unwrap().map(|r| (r.status, r.nodes));
        assert!(client.cancel_run(&run, "operator said stop").await.unwrap(), "{before:?}");
        let data = client.wait_for_run(&run, Duration::from_secs(20)).await.unwrap();
        assert_eq!(data["status"], json!("cancelled"));
        assert_eq!(data["reason"], json!("operator said stop"));
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let rows = h.query(&format!("SELECT context_data::text FROM \"{}\" WHERE run_id = $1", h.ctx), "c1").await;
        let ctx: Value = serde_json::from_str(&rows[0].get::<_, String>(0)).unwrap();
        assert!(ctx.get("_outputs.s").is_none(), "a cancelled run takes no more commits");
        assert_eq!(h.runs_of("c1", "t"), 0);
        assert!(!client.cancel_run(&run, "again").await.unwrap(), "a final status never flips");
        client.close().await;
        h.finish().await;
    });
}

/// Raw protocol throughput without Node.js: `cargo test --release -p flowcraft-core --test lifecycle -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput_of_the_core_alone() {
    rt().block_on(async {
        let runs: usize = std::env::var("CORE_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
        let h = Harness::start(diamond(), diamond_nodes()).await;
        let client = h.client(diamond());
        let started = std::time::Instant::now();
        let names: Vec<String> = (0..runs).map(|i| h.run(&format!("b{i}"))).collect();
        let mut ids = Vec::new();
        for chunk in names.chunks(64) {
            let started = futures_util::future::join_all(
                chunk.iter().map(|n| client.start_run("diamond", serde_json::Map::new(), n, None)),
            )
            .await;
            ids.extend(started.into_iter().map(|r| r.unwrap().0));
        }
        for id in &ids {
            let d = client.wait_for_run(id, Duration::from_secs(120)).await.unwrap();
            assert_eq!(d["status"], json!("completed"));
        }
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "{runs} diamond runs in {secs:.2}s: {:.0} runs/s, {:.0} node jobs/s",
            runs as f64 / secs,
            runs as f64 * 6.0 / secs
        );
        client.close().await;
        h.finish().await;
    });
}

#[test]
fn a_job_republished_after_its_commit_while_its_successor_runs_changes_nothing() {
    rt().block_on(async {
        let bp = json!({ "bp": { "id": "bp", "nodes": [
            { "id": "a", "uses": "ok" }, { "id": "b", "uses": "ok", "params": { "sleepMs": 600 } }
        ], "edges": [ { "source": "a", "target": "b" } ] } });
        let h = Harness::start(bp.clone(), RustNodes::default().with("ok", |r| ok(json!(r.node_id)))).await;
        h.start_run("r1", "bp", &["a"]).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
        h.start_run("r1", "bp", &["a"]).await;
        let (status, data, ctx) = h.wait("r1").await;
        assert_eq!(status, "completed", "{data}");
        assert_eq!(ctx["_outputs.b"], json!("b"));
        assert_eq!(h.runs_of("r1", "a"), 1);
        assert!(h.runs_of("r1", "b") <= 2);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(h.dead_letters().await.is_empty());
        h.finish().await;
    });
}

#[test]
fn an_effect_postgresql_refuses_fails_the_run_and_dead_letters_the_job() {
    rt().block_on(async {
        let bp = json!({ "bp": { "id": "bp", "nodes": [ { "id": "a", "uses": "nul" } ], "edges": [] } });
        // JSONB cannot hold U+0000: the commit is refused by the server, every time.
        let h = Harness::start(bp, RustNodes::default().with("nul", |_| ok(json!("a\u{0}b")))).await;
        h.start_run("r1", "bp", &["a"]).await;
        let (status, data, _) = h.wait("r1").await;
        assert_eq!(status, "failed");
        assert!(data["reason"].as_str().unwrap().contains("node 'a'"), "{data}");
        let mut dead = Vec::new();
        for _ in 0..50 {
            dead.extend(h.dead_letters().await);
            if !dead.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(dead.len(), 1);
        assert!(dead[0].1.contains("PostgreSQL"), "{:?}", dead[0]);
        h.finish().await;
    });
}

#[test]
fn stop_waits_for_jobs_in_flight_only_as_long_as_its_timeout() {
    rt().block_on(async {
        let bp = json!({ "bp": { "id": "bp", "nodes": [ { "id": "slow", "uses": "ok", "params": { "sleepMs": 8000 } } ], "edges": [] } });
        let h = Harness::start(bp, RustNodes::default().with("ok", |r| ok(json!(r.node_id)))).await;
        h.start_run("r1", "bp", &["slow"]).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(h.runs_of("r1", "slow"), 1);
        let started = std::time::Instant::now();
        h.worker.stop(Duration::from_millis(500)).await.unwrap();
        // The 500 ms timeout plus a 2 s grace for aborted nodes, not a fixed drain.
        assert!(started.elapsed() < Duration::from_secs(4), "stop took {:?}", started.elapsed());
        // The unfinished job went back to the queue for another worker.
        let mut waiting = 0;
        for _ in 0..50 {
            let conn = lapin::Connection::connect(&amqp(), Default::default()).await.unwrap();
            let ch = conn.create_channel().await.unwrap();
            let q = ch.queue_declare(h.queue.as_str().into(), lapin::options::QueueDeclareOptions { passive: true, ..Default::default() }, Default::default()).await.unwrap();
            waiting = q.message_count();
            let _ = conn.close(200, "bye".into()).await;
            if waiting == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(waiting, 1);
        h.finish().await;
    });
}
