//! Group commit (`group_commit.rs`) against the real PostgreSQL: statements sent together
//! share a transaction, each still all-or-nothing; a member whose statement fails gets its
//! own error and its neighbours are committed without it. Each test has its own table.

use flowcraft_core::group_commit::{CommitGroup, Param};
use flowcraft_core::pg::{PgPool, PgTarget};

fn pg() -> PgTarget {
    PgTarget::from_url(
        &std::env::var("POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
    )
}

fn unique(label: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("gc_{label}_{}_{}", std::process::id(), nanos % 1_000_000_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_member_gets_its_error_and_its_neighbours_are_committed() {
    let pool = PgPool::shared(&pg()).unwrap();
    let table = unique("members");
    pool.batch("creating", &format!("CREATE TABLE {table} (id INT PRIMARY KEY, run TEXT NOT NULL)")).await.unwrap();
    // ids repeat 7: the second insert of it violates the key, in whichever group it lands
    let sql = format!("INSERT INTO {table} (id, run) VALUES ($1::int, $2::text) RETURNING id");
    let group = CommitGroup::new(pool.clone(), vec![sql]);
    let members: Vec<(i32, String)> =
        (0..40).map(|i| (if i == 39 { 7 } else { i }, format!("run-{}", i % 5))).collect();
    let calls = members.iter().map(|(id, run)| {
        let params: Vec<Param> = vec![Box::new(*id), Box::new(run.clone())];
        let group = group.clone();
        let run = run.clone();
        async move { group.query(&run, 0, params, false).await }
    });
    let results = futures_util::future::join_all(calls).await;
    let failed: Vec<usize> = results.iter().enumerate().filter(|(_, r)| r.is_err()).map(|(i, _)| i).collect();
    // exactly one of the two inserts of 7 failed, with the key violation as its own error
    assert_eq!(failed.len(), 1, "{results:?}");
    assert!(members[failed[0]].0 == 7);
    let err = results[failed[0]].as_ref().unwrap_err().to_string();
    assert!(err.contains("duplicate key") || err.contains("23505"), "{err}");
    let rows =
        pool.query("counting", &format!("SELECT count(*)::int, count(DISTINCT id)::int FROM {table}"), &[]).await;
    let row = &rows.unwrap()[0];
    assert_eq!((row.get::<_, i32>(0), row.get::<_, i32>(1)), (39, 39), "every other member was committed");
    pool.batch("dropping", &format!("DROP TABLE {table}")).await.unwrap();
}
