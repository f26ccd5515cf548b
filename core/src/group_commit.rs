//! Group commit: the commits of the jobs that are ready at the same moment, of any
//! runs, are sent together in one transaction on a connection of their own, so they
//! share one WAL flush and one round trip instead of paying one each. Each job's
//! effect is still one statement, all-or-nothing: a member whose statement fails is
//! answered with its error and the others are committed without it (their statements
//! run again in a new transaction: nothing of the failed one was kept).
//!
//! Members are ordered by run id, so every group takes the runs' status-row locks in
//! the same order (no two groups wait for each other); the commits of one run share
//! that lock within a group (a batch of one run's items commits at the pace of one
//! flush per group, not one per item).

use crate::error::{CoreError, CoreResult};
use crate::pg::{PgConn, PgPool, Reserved};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

/// Groups committing at once (each on its own connection).
const LEADERS: usize = 2;
/// Members per group at most.
const GROUP: usize = 64;

/// A statement parameter that the group owns until it runs.
pub type Param = Box<dyn ToSql + Sync + Send>;

/// Owned parameters as the driver takes them.
pub fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect()
}

struct Member {
    run_id: String,
    params: Vec<Param>,
    answer: oneshot::Sender<CoreResult<Vec<Row>>>,
}

#[derive(Default)]
struct State {
    waiting: Vec<Member>,
    leaders: usize,
    /// Connections of leaders that finished, kept for the next ones.
    idle: Vec<Reserved>,
}

pub struct CommitGroup {
    pool: Arc<PgPool>,
    sql: String,
    state: Mutex<State>,
}

impl CommitGroup {
    pub fn new(pool: Arc<PgPool>, sql: String) -> Arc<CommitGroup> {
        Arc::new(CommitGroup { pool, sql, state: Mutex::default() })
    }

    /// Runs the statement with `params` in the next group; its rows, or its error.
    pub async fn query(self: &Arc<Self>, run_id: &str, params: Vec<Param>) -> CoreResult<Vec<Row>> {
        let (answer, answered) = oneshot::channel();
        let lead = {
            let mut s = self.state.lock().unwrap();
            s.waiting.push(Member { run_id: run_id.to_string(), params, answer });
            let lead = s.leaders < LEADERS;
            if lead {
                s.leaders += 1;
            }
            lead
        };
        if lead {
            tokio::spawn(self.clone().lead());
        }
        answered.await.map_err(|_| CoreError::Timeout("the group commit was dropped".into()))?
    }

    /// Commits groups while members wait, then leaves.
    async fn lead(self: Arc<Self>) {
        loop {
            let (mut group, conn) = {
                let mut s = self.state.lock().unwrap();
                if s.waiting.is_empty() {
                    s.leaders -= 1;
                    return;
                }
                let n = s.waiting.len().min(GROUP);
                let group: Vec<Member> = s.waiting.drain(..n).collect();
                (group, s.idle.pop())
            };
            group.sort_by(|a, b| a.run_id.cmp(&b.run_id));
            if group.len() == 1 {
                // alone: one autocommit statement (no BEGIN/COMMIT round trips when idle)
                if let Some(c) = conn {
                    self.state.lock().unwrap().idle.push(c);
                }
                self.one_by_one(group).await;
                continue;
            }
            let conn = match conn {
                Some(c) if self.pool.current(&c.conn) => c,
                _ => match self.pool.connect_reserved().await {
                    Ok(Some(c)) => c,
                    // the pool size leaves no connection to spare: one statement each
                    Ok(None) => {
                        self.one_by_one(group).await;
                        continue;
                    }
                    Err(e) => {
                        let message = e.to_string();
                        for m in group {
                            let _ = m.answer.send(Err(CoreError::Timeout(format!(
                                "no connection for the group commit: {message}"
                            ))));
                        }
                        continue;
                    }
                },
            };
            self.commit(&conn.conn, group).await;
            if self.pool.current(&conn.conn) {
                self.state.lock().unwrap().idle.push(conn);
            }
        }
    }

    /// Each member's statement on its own, on the pool.
    async fn one_by_one(&self, group: Vec<Member>) {
        for m in group {
            let params = refs(&m.params);
            let r = self.pool.query("committing a node's output", &self.sql, &params).await;
            let _ = m.answer.send(r);
        }
    }

    /// One transaction of the group's statements, again without any that fails.
    async fn commit(&self, conn: &PgConn, mut group: Vec<Member>) {
        while !group.is_empty() {
            match self.attempt(conn, &group).await {
                Ok(rows) => {
                    for (m, r) in group.into_iter().zip(rows) {
                        let _ = m.answer.send(Ok(r));
                    }
                    return;
                }
                // that member's own statement failed: it gets its error, the others go again
                Err((Some(i), e)) => {
                    let failed = group.remove(i);
                    let _ = failed.answer.send(Err(e));
                }
                Err((None, e)) => {
                    let message = e.to_string();
                    for m in group {
                        let _ = m.answer.send(Err(CoreError::Timeout(format!("the group commit failed: {message}"))));
                    }
                    return;
                }
            }
        }
    }

    /// BEGIN, every statement (pipelined), COMMIT. Err: the failing member (None:
    /// the transaction itself failed) and the error.
    async fn attempt(&self, conn: &PgConn, group: &[Member]) -> Result<Vec<Vec<Row>>, (Option<usize>, CoreError)> {
        let doing = "committing a group of node effects";
        let whole = |e| (None, e);
        let run = async {
            conn.client().batch_execute("BEGIN").await.map_err(|e| whole(CoreError::pg(doing, e)))?;
            let calls = group.iter().map(|m| {
                let params = refs(&m.params);
                async move { conn.query(&self.sql, &params).await }
            });
            let results = futures_util::future::join_all(calls).await;
            // the first failure is the member's own; those after it only saw the aborted transaction
            if let Some(i) = results.iter().position(Result::is_err) {
                let _ = conn.client().batch_execute("ROLLBACK").await;
                let e = results.into_iter().nth(i).and_then(Result::err).expect("a failed result");
                return Err((Some(i), CoreError::pg("committing a node's output", e)));
            }
            conn.client().batch_execute("COMMIT").await.map_err(|e| whole(CoreError::pg(doing, e)))?;
            Ok(results.into_iter().map(|r| r.expect("no failed result")).collect())
        };
        match self.pool.deadline(conn, doing, async { Ok::<_, tokio_postgres::Error>(run.await) }).await {
            Ok(r) => r,
            Err(e) => Err((None, e)),
        }
    }
}
