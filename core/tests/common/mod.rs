//! What the tests over the run store share: one runtime, the PostgreSQL target, unique
//! table names, and tables of their own dropped when a test ends.

use flowcraft_core::pg::PgTarget;
use flowcraft_core::run_store::RunStore;

/// One runtime for every test: the pool's connections live on the runtime that opened them.
pub fn rt() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap())
}

fn url() -> String {
    std::env::var("POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn pg() -> PgTarget {
    PgTarget::from_url(&url())
}

pub fn unique(label: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{label}_{}_{}", std::process::id(), nanos % 1_000_000_000)
}

/// A run store over tables of its own.
pub struct Tables {
    pub store: RunStore,
    pub ctx: String,
    pub st: String,
}

impl Tables {
    pub async fn new(label: &str) -> Tables {
        let (ctx, st) = (unique(&format!("{label}_ctx")), unique(&format!("{label}_st")));
        let store = RunStore::new(&pg(), &ctx, &st).unwrap();
        store.prepare_tables(true).await.unwrap();
        Tables { store, ctx, st }
    }

    /// Writes `run_id`'s context row as `json` (SQL text), past the store: a row the store
    /// would never write, to make a statement over it fail in PostgreSQL.
    pub async fn break_context(&self, run_id: &str, json: &str) {
        let sql = format!("UPDATE \"{}\" SET context_data = '{json}'::jsonb WHERE run_id = '{run_id}'", self.ctx);
        self.store.pool().batch("breaking a row", &sql).await.unwrap();
    }
}

/// Drops the tables when the test ends, passed or failed (a connection of its own, on a
/// thread of its own: the test's runtime may be unwinding).
impl Drop for Tables {
    fn drop(&mut self) {
        let sql = format!(
            "DROP TABLE IF EXISTS \"{c}\"; DROP TABLE IF EXISTS \"{c}_nodes\"; DROP TABLE IF EXISTS \"{s}\"",
            c = self.ctx,
            s = self.st
        );
        let url = url();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok((client, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                    tokio::spawn(conn);
                    let _ = client.batch_execute(&sql).await;
                }
            });
        })
        .join();
    }
}
