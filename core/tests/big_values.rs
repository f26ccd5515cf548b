//! Big values against the real PostgreSQL (issue 12): a connection that moved a big
//! message is closed rather than kept (tokio-postgres keeps its buffers as large as the
//! largest message), and a big value read stays in the row that brought it.

use flowcraft_core::json_text::JsonText;
use flowcraft_core::pg::{PgPool, PgTarget, BIG_MESSAGE_BYTES};
use std::sync::Arc;

fn pg() -> PgTarget {
    PgTarget::from_url(
        &std::env::var("POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
    )
}

/// One runtime for the file: the pool is per process, and a connection's task lives on
/// the runtime that opened it.
fn rt() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap())
}

fn within(part: &str, whole: &str) -> bool {
    whole.as_bytes().as_ptr_range().contains(&part.as_ptr())
}

#[test]
fn a_connection_that_moved_a_big_message_is_not_handed_out_again() {
    rt().block_on(async {
        let pool = PgPool::shared(&pg()).unwrap();
        let big = BIG_MESSAGE_BYTES + 1000;
        let conn = pool.conn().await.unwrap();
        // small rows: the same connection next time
        let rows = conn.query("SELECT repeat('x', 1000)", &[]).await.unwrap();
        assert_eq!(rows[0].get::<_, &str>(0).len(), 1000);
        let again = pool.conn().await.unwrap();
        assert!(Arc::ptr_eq(&conn, &again), "an idle connection that moved small rows is reused");
        drop(again);
        // a big row: read whole, then the connection retires
        let sql = format!("SELECT repeat('x', {big})");
        let rows = conn.query(&sql, &[]).await.unwrap();
        assert_eq!(rows[0].get::<_, &str>(0).len(), big);
        let next = pool.conn().await.unwrap();
        assert!(!Arc::ptr_eq(&conn, &next), "a connection that read a big row is not handed out");
        // big parameters the caller names retire it too
        let text = "y".repeat(big);
        let rows = pool.query_sized("echoing", "SELECT length($1::text)", &[&text], true).await.unwrap();
        assert_eq!(rows[0].get::<_, i32>(0) as usize, big);
        let last = pool.conn().await.unwrap();
        assert!(!Arc::ptr_eq(&next, &last), "a connection that sent big parameters is not handed out");
    })
}

#[test]
fn a_big_value_read_stays_in_its_row_and_a_small_one_is_copied() {
    rt().block_on(async {
        let pool = PgPool::shared(&pg()).unwrap();
        let sql = "SELECT json_build_array(repeat('a', 2000000), json_build_object('k', 'small'))::text";
        let row = Arc::new(pool.query("reading", sql, &[]).await.unwrap().remove(0));
        let texts: Vec<JsonText> =
            JsonText::reading(&row, || serde_json::from_str(row.get::<_, &str>(0))).expect("a JSON array");
        let whole: &str = row.get(0);
        assert_eq!(texts[0].as_str().len(), 2_000_002, "the string with its quotes");
        assert!(within(texts[0].as_str(), whole), "the big value is the row's own text");
        assert_eq!(texts[1].parse(), serde_json::json!({"k": "small"}));
        assert!(!within(texts[1].as_str(), whole), "a small value is copied out");
        // outside `reading`, a text is always copied; a part that is not the row's is too
        let copied: Vec<JsonText> = serde_json::from_str(whole).unwrap();
        assert!(!within(copied[0].as_str(), whole));
        let elsewhere = "b".repeat(2_000_000);
        assert!(!within(JsonText::in_row(&row, &elsewhere).as_str(), whole));
        assert_eq!(copied[0], texts[0]);
    })
}
