//! Fault handling that needs no broker: waitForRun's waiters, the PostgreSQL
//! query deadline. Against the real PostgreSQL; each test has its own tables.

use flowcraft_core::amqp::QueueTarget;
use flowcraft_core::blueprint::Blueprints;
use flowcraft_core::coordination::{Coordination, RedisTarget};
use flowcraft_core::pg::{PgPool, PgTarget};
use flowcraft_core::runs::RunClient;
use std::sync::Arc;
use std::time::Duration;

fn pg() -> PgTarget {
    PgTarget::from_url(
        &std::env::var("POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
    )
}

fn unique(label: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("faults_{label}_{}_{}", std::process::id(), nanos % 1_000_000_000)
}

/// Drops the tables even when the test fails.
struct Tables(Vec<String>);

impl Drop for Tables {
    fn drop(&mut self) {
        let names = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let pool = PgPool::shared(&pg()).unwrap();
                for t in names {
                    let _ = pool.batch("dropping a test table", &format!("DROP TABLE IF EXISTS \"{t}\"")).await;
                }
            });
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_run_leaves_no_waiter_behind() {
    let (ctx, st) = (unique("c"), unique("s"));
    let _tables = Tables(vec![ctx.clone(), format!("{ctx}_nodes"), st.clone()]);
    let client = RunClient::new(
        &pg(),
        &ctx,
        &st,
        Arc::new(Blueprints::from_value(serde_json::json!({})).unwrap()),
        Arc::new(Coordination::shared(&RedisTarget::from_url("redis://127.0.0.1:6379")).unwrap()),
        QueueTarget::new("amqp://guest:guest@127.0.0.1:5672", "unused-faults-queue"),
        true,
    )
    .unwrap();
    // Prepares the tables (a run that does not exist times out at once).
    assert!(client.wait_for_run("nothing", Duration::from_millis(1)).await.is_err());
    assert_eq!(client.waiting(), 0, "a wait that timed out left its waiter");
    client
        .store
        .pool()
        .batch(
            "inserting a finished run",
            &format!("INSERT INTO \"{st}\" (run_id, status, status_data) VALUES ('done', 'completed', '{{\"status\":\"completed\"}}')"),
        )
        .await
        .unwrap();
    for _ in 0..200 {
        let v = client.wait_for_run("done", Duration::from_secs(5)).await.unwrap();
        assert_eq!(v["status"], "completed");
    }
    assert_eq!(client.waiting(), 0, "waits that returned at once left their waiters registered");
}

/// A transaction whose link died keeps its row locks on the server for as long as the
/// server sees the socket open (a black hole), and every later commit of its runs waits
/// behind them. The worker's transaction connections tell the server to end such a
/// transaction once it has been idle longer than the query deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_cut_off_mid_way_releases_its_locks_after_the_query_deadline() {
    let table = unique("locks");
    let _tables = Tables(vec![table.clone()]);
    let mut target = pg();
    target.timings.pg_query_timeout = Duration::from_millis(1500);
    let pool = PgPool::shared(&target).unwrap();
    pool.batch(
        "creating a test table",
        &format!("CREATE TABLE \"{table}\" (id int PRIMARY KEY); INSERT INTO \"{table}\" VALUES (1)"),
    )
    .await
    .unwrap();
    // a group's transaction that took its lock, then heard nothing more from its worker
    let cut_off = pool.connect().await.unwrap();
    cut_off
        .client()
        .batch_execute(&format!("BEGIN; SELECT id FROM \"{table}\" WHERE id = 1 FOR UPDATE"))
        .await
        .unwrap();
    let next = pool.connect().await.unwrap();
    let started = std::time::Instant::now();
    let sql = format!("SELECT id FROM \"{table}\" WHERE id = 1 FOR UPDATE");
    let locking = next.client().batch_execute(&sql);
    tokio::time::timeout(Duration::from_secs(10), locking)
        .await
        .expect("the lock of the transaction cut off is still held after 10 s")
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(1000), "the lock was not held at all: {:?}", started.elapsed());
}
