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
//! flush per group, not one per item). A run with a commit in a group in flight is
//! left out of the next group until that one ends: its status-row lock is held until
//! that group's COMMIT, and the whole next group would wait behind it (a diamond's
//! two branches, committing at once, made 1 commit in 10 wait 1–300 ms).

use crate::error::{CoreError, CoreResult};
use crate::pg::{PgConn, PgPool, Reserved};
use std::collections::HashSet;
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
    /// Which of the group's statements it runs.
    statement: usize,
    params: Vec<Param>,
    /// Its parameters are over `pg::BIG_MESSAGE_BYTES`: the connection retires after it.
    big: bool,
    answer: oneshot::Sender<CoreResult<Vec<Row>>>,
}

#[derive(Default)]
struct State {
    waiting: Vec<Member>,
    leaders: usize,
    /// Connections of leaders that finished, kept for the next ones.
    idle: Vec<Reserved>,
    /// Runs with a commit in a group in flight.
    busy: HashSet<String>,
}

/// The runs of a group in flight, no longer busy once it ends (however it ends).
struct Busy<'a> {
    state: &'a Mutex<State>,
    runs: Vec<String>,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for r in &self.runs {
            s.busy.remove(r);
        }
    }
}

impl State {
    /// The next group: waiting members of runs without a commit in flight, in order
    /// of arrival, at most GROUP; their runs are busy until `release`.
    fn take_group(&mut self) -> Vec<Member> {
        let mut group = Vec::new();
        let mut left = Vec::new();
        for m in self.waiting.drain(..) {
            if group.len() < GROUP && !self.busy.contains(&m.run_id) {
                group.push(m);
            } else {
                left.push(m);
            }
        }
        self.waiting = left;
        for m in &group {
            self.busy.insert(m.run_id.clone());
        }
        group
    }
}

pub struct CommitGroup {
    pool: Arc<PgPool>,
    statements: Vec<String>,
    state: Mutex<State>,
}

impl CommitGroup {
    /// A group committer sending one of `statements` for each member.
    pub fn new(pool: Arc<PgPool>, statements: Vec<String>) -> Arc<CommitGroup> {
        Arc::new(CommitGroup { pool, statements, state: Mutex::default() })
    }

    /// Runs statement `statement` with `params` in the next group; its rows, or its error.
    /// `big`: the parameters are over `pg::BIG_MESSAGE_BYTES`.
    pub async fn query(
        self: &Arc<Self>,
        run_id: &str,
        statement: usize,
        params: Vec<Param>,
        big: bool,
    ) -> CoreResult<Vec<Row>> {
        let (answer, answered) = oneshot::channel();
        let lead = {
            let mut s = self.state.lock().unwrap();
            s.waiting.push(Member { run_id: run_id.to_string(), statement, params, big, answer });
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
                let group = s.take_group();
                if group.is_empty() {
                    // nothing, or only runs in the other leader's group: it takes them next
                    s.leaders -= 1;
                    return;
                }
                (group, s.idle.pop())
            };
            group.sort_by(|a, b| a.run_id.cmp(&b.run_id));
            let _busy = Busy { state: &self.state, runs: group.iter().map(|m| m.run_id.clone()).collect() };
            self.lead_group(group, conn).await;
        }
    }

    /// Commits one group (on `conn`, an idle group connection, when there is one).
    async fn lead_group(&self, group: Vec<Member>, conn: Option<Reserved>) {
        if group.len() == 1 {
            // alone: one autocommit statement (no BEGIN/COMMIT round trips when idle)
            if let Some(c) = conn {
                self.state.lock().unwrap().idle.push(c);
            }
            self.one_by_one(group).await;
            return;
        }
        let conn = match conn {
            Some(c) if self.pool.current(&c.conn) => c,
            _ => match self.pool.connect_reserved().await {
                Ok(Some(c)) => c,
                // the pool size leaves no connection to spare: one statement each
                Ok(None) => {
                    self.one_by_one(group).await;
                    return;
                }
                Err(e) => {
                    let message = e.to_string();
                    for m in group {
                        let _ = m
                            .answer
                            .send(Err(CoreError::Timeout(format!("no connection for the group commit: {message}"))));
                    }
                    return;
                }
            },
        };
        if group.iter().any(|m| m.big) {
            conn.conn.retire();
        }
        self.commit(&conn.conn, group).await;
        if self.pool.current(&conn.conn) {
            self.state.lock().unwrap().idle.push(conn);
        }
    }

    /// Each member's statement on its own, on the pool.
    async fn one_by_one(&self, group: Vec<Member>) {
        for m in group {
            let params = refs(&m.params);
            let r = self
                .pool
                .query_sized("committing a node's output", &self.statements[m.statement], &params, m.big)
                .await;
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
                async move { conn.query(&self.statements[m.statement], &params).await }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn member(run: &str) -> Member {
        Member { run_id: run.into(), statement: 0, params: Vec::new(), big: false, answer: oneshot::channel().0 }
    }

    #[test]
    fn a_run_with_a_commit_in_flight_waits_for_the_next_group() {
        let mut s = State { waiting: vec![member("a"), member("b"), member("a")], ..Default::default() };
        let first: Vec<String> = s.take_group().into_iter().map(|m| m.run_id).collect();
        assert_eq!(first, ["a", "b", "a"]);
        s.waiting = vec![member("b"), member("c"), member("a")];
        let second: Vec<String> = s.take_group().into_iter().map(|m| m.run_id).collect();
        assert_eq!(second, ["c"], "a and b are in the first group, still in flight");
        assert_eq!(s.waiting.iter().map(|m| m.run_id.as_str()).collect::<Vec<_>>(), ["b", "a"]);
        let state = Mutex::new(s);
        drop(Busy { state: &state, runs: vec!["a".into(), "b".into(), "a".into()] });
        let mut s = state.into_inner().unwrap();
        let third: Vec<String> = s.take_group().into_iter().map(|m| m.run_id).collect();
        assert_eq!(third, ["b", "a"]);
    }

    #[test]
    fn a_group_has_at_most_group_members() {
        let mut s = State { waiting: (0..GROUP + 3).map(|i| member(&format!("r{i}"))).collect(), ..Default::default() };
        assert_eq!(s.take_group().len(), GROUP);
        assert_eq!(s.waiting.len(), 3);
    }
}
