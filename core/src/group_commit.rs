//! Group commit: the commits of the jobs that are ready at the same moment, of any
//! runs, are sent together in one transaction on a connection of their own, so they
//! share one WAL flush and one round trip instead of paying one each. Each job's
//! effect is still one statement, all-or-nothing: a member whose statement fails is
//! answered with its error and the others are committed without it (their statements
//! run again in a new transaction: nothing of the failed one was kept).
//!
//! The group's plain commits of distinct runs are one statement (`sql/commit_set.sql`,
//! through `commit_params`): a statement's start-up costs more than a plain commit's
//! rows, and the set pays it once. A set whose statement fails is sent again as one
//! statement per member, so only the member whose effect fails fails.
//!
//! Members are ordered by run id, so every group takes the runs' status-row locks in
//! the same order (no two groups wait for each other); the commits of one run share
//! that lock within a group (a batch of one run's items commits at the pace of one
//! flush per group, not one per item). A run with a commit in a group in flight is
//! left out of the next group until that one ends: its status-row lock is held until
//! that group's COMMIT, and the whole next group would wait behind it (a diamond's
//! two branches, committing at once, made 1 commit in 10 wait 1–300 ms).

use crate::commit_params::{refs, set_params, CommitParams};
use crate::error::{CoreError, CoreResult};
use crate::pg::{PgConn, PgPool, Reserved};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use tokio_postgres::Row;

/// Groups committing at once (each on its own connection).
const LEADERS: usize = 2;
/// Members per group at most.
const GROUP: usize = 64;

/// When a group's plain commits are one statement (`FLOWCRAFT_SET_COMMIT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetCommit {
    /// Never (`0`: one statement per member, to compare).
    Off,
    /// For two or more plain members (the default).
    Groups,
    /// For every plain commit, even alone (`always`: runs every test through it).
    Always,
}

impl SetCommit {
    pub fn from_env() -> SetCommit {
        match std::env::var("FLOWCRAFT_SET_COMMIT").as_deref() {
            Ok("0") => SetCommit::Off,
            Ok("always") => SetCommit::Always,
            _ => SetCommit::Groups,
        }
    }
}

struct Member {
    commit: CommitParams,
    answer: oneshot::Sender<CoreResult<Vec<Row>>>,
}

impl Member {
    fn run_id(&self) -> &str {
        &self.commit.run_id
    }
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
            if group.len() < GROUP && !self.busy.contains(m.run_id()) {
                group.push(m);
            } else {
                left.push(m);
            }
        }
        self.waiting = left;
        for m in &group {
            self.busy.insert(m.run_id().to_string());
        }
        group
    }
}

/// A statement of a group's transaction: one member's, or a set of plain members'.
#[derive(Debug, PartialEq, Eq)]
enum Unit {
    One(usize),
    Set(Vec<usize>),
}

/// The statements for the members `live` (indices, in run order): with `set`, the plain
/// members of distinct runs (at least `least` of them) are one statement, first; each
/// other member is one statement, after it (a run's second commit sees its first's effect).
fn plan(group: &[Member], live: &[usize], set: bool, least: usize) -> Vec<Unit> {
    let mut members = Vec::new();
    let mut others = Vec::new();
    let mut runs = HashSet::new();
    for &i in live {
        let c = &group[i].commit;
        if set && c.in_set() && runs.insert(c.run_id.as_str()) {
            members.push(i);
        } else {
            others.push(i);
        }
    }
    if members.len() < least.max(1) {
        others = live.to_vec();
        members.clear();
    }
    let mut units = Vec::with_capacity(others.len() + 1);
    if !members.is_empty() {
        units.push(Unit::Set(members));
    }
    units.extend(others.into_iter().map(Unit::One));
    units
}

/// How many commits a group committer took, and in how many statements (the sets'
/// effect, for tests and the bench).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitCounts {
    pub commits: u64,
    pub statements: u64,
}

pub struct CommitGroup {
    pool: Arc<PgPool>,
    /// `sql/commit.sql`'s full and plain statements (`CommitParams::statement`).
    statements: [String; 2],
    /// `sql/commit_set.sql`.
    set_statement: String,
    set: SetCommit,
    state: Mutex<State>,
    commits: AtomicU64,
    /// Statements sent, failed ones included.
    sent: AtomicU64,
}

impl CommitGroup {
    pub fn new(pool: Arc<PgPool>, statements: [String; 2], set_statement: String, set: SetCommit) -> Arc<CommitGroup> {
        let (commits, sent) = (AtomicU64::new(0), AtomicU64::new(0));
        Arc::new(CommitGroup { pool, statements, set_statement, set, state: Mutex::default(), commits, sent })
    }

    pub fn counts(&self) -> CommitCounts {
        CommitCounts { commits: self.commits.load(Ordering::Relaxed), statements: self.sent.load(Ordering::Relaxed) }
    }

    /// Commits `commit` in the next group: its rows, or its error.
    pub async fn query(self: &Arc<Self>, commit: CommitParams) -> CoreResult<Vec<Row>> {
        let (answer, answered) = oneshot::channel();
        self.commits.fetch_add(1, Ordering::Relaxed);
        let lead = {
            let mut s = self.state.lock().unwrap();
            s.waiting.push(Member { commit, answer });
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
            group.sort_by(|a, b| a.run_id().cmp(b.run_id()));
            let _busy = Busy { state: &self.state, runs: group.iter().map(|m| m.run_id().to_string()).collect() };
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
        if group.iter().any(|m| m.commit.big) {
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
            self.sent.fetch_add(1, Ordering::Relaxed);
            let c = &m.commit;
            let r = if self.set == SetCommit::Always && c.in_set() {
                let params = set_params(&[c]);
                self.pool.query_sized(COMMITTING, &self.set_statement, &refs(&params), false).await
            } else {
                let params = c.single();
                self.pool.query_sized(COMMITTING, &self.statements[c.statement()], &refs(&params), c.big).await
            };
            let _ = m.answer.send(r);
        }
    }

    /// One transaction of the group's statements, again without any that fails (a set
    /// that fails goes again as one statement per member).
    async fn commit(&self, conn: &PgConn, group: Vec<Member>) {
        let mut live: Vec<usize> = (0..group.len()).collect();
        let mut set = self.set != SetCommit::Off;
        let least = if self.set == SetCommit::Always { 1 } else { 2 };
        let mut answers: Vec<Option<CoreResult<Vec<Row>>>> = group.iter().map(|_| None).collect();
        while !live.is_empty() {
            let units = plan(&group, &live, set, least);
            match self.attempt(conn, &group, &units).await {
                Ok(rows) => {
                    for (i, r) in rows {
                        answers[i] = Some(Ok(r));
                    }
                    break;
                }
                Err((Some(u), e)) => match &units[u] {
                    Unit::Set(_) => set = false,
                    // that member's own statement failed: it gets its error, the others go again
                    Unit::One(i) => {
                        answers[*i] = Some(Err(e));
                        live.retain(|l| l != i);
                    }
                },
                Err((None, e)) => {
                    let message = e.to_string();
                    for &i in &live {
                        answers[i] = Some(Err(CoreError::Timeout(format!("the group commit failed: {message}"))));
                    }
                    break;
                }
            }
        }
        for (m, a) in group.into_iter().zip(answers) {
            // (every member is answered above; an unanswered one is retried, never taken as done)
            let unanswered = || Err(CoreError::Timeout("the group commit left this commit unanswered".into()));
            let _ = m.answer.send(a.unwrap_or_else(unanswered));
        }
    }

    /// BEGIN, every unit's statement (pipelined), COMMIT: each member's rows. Err: the
    /// failing unit (None: the transaction itself failed) and the error.
    async fn attempt(
        &self,
        conn: &PgConn,
        group: &[Member],
        units: &[Unit],
    ) -> Result<Vec<(usize, Vec<Row>)>, (Option<usize>, CoreError)> {
        let doing = "committing a group of node effects";
        let whole = |e| (None, e);
        let run = async {
            let begin = if units.iter().any(|u| matches!(u, Unit::Set(_))) { BEGIN_SET } else { "BEGIN" };
            conn.client().batch_execute(begin).await.map_err(|e| whole(CoreError::pg(doing, e)))?;
            let calls = units.iter().map(|u| async move {
                match u {
                    Unit::One(i) => {
                        let c = &group[*i].commit;
                        let params = c.single();
                        conn.query(&self.statements[c.statement()], &refs(&params)).await
                    }
                    Unit::Set(members) => {
                        let commits: Vec<&CommitParams> = members.iter().map(|&i| &group[i].commit).collect();
                        let params = set_params(&commits);
                        conn.query(&self.set_statement, &refs(&params)).await
                    }
                }
            });
            let results = futures_util::future::join_all(calls).await;
            self.sent.fetch_add(units.len() as u64, Ordering::Relaxed);
            // the first failure is the unit's own; those after it only saw the aborted transaction
            if let Some(u) = results.iter().position(Result::is_err) {
                let _ = conn.client().batch_execute("ROLLBACK").await;
                let e = results.into_iter().nth(u).and_then(Result::err).expect("a failed result");
                return Err((Some(u), CoreError::pg(COMMITTING, e)));
            }
            conn.client().batch_execute("COMMIT").await.map_err(|e| whole(CoreError::pg(doing, e)))?;
            let mut rows = Vec::new();
            for (u, r) in units.iter().zip(results) {
                let r = r.expect("no failed result");
                match u {
                    Unit::One(i) => rows.push((*i, r)),
                    Unit::Set(members) => rows.extend(set_rows(members, r)),
                }
            }
            Ok(rows)
        };
        match self.pool.deadline(conn, doing, async { Ok::<_, tokio_postgres::Error>(run.await) }).await {
            Ok(r) => r,
            Err(e) => Err((None, e)),
        }
    }
}

const COMMITTING: &str = "committing a node's output";

/// A transaction with a set statement reads every table through an index. The planner does
/// not know a set's size, and with the statistics of small tables (a new table, or one that
/// grew since it was last analyzed, for as long as a connection keeps its cached plan) it
/// chose sequential scans, which cost the set 3× a statement per member as the tables grew
/// (bench, diamond). With them off, every table is read through its key's index, by the
/// members' run ids (`run_id = ANY($1)` in `sql/commit_set.sql`); joins between the statement's own
/// CTEs stay free to hash (turning hash joins off too made a set of 32 cost 1.6× as much:
/// pgbench). The plans built under it are cached per connection and used only in these
/// transactions: a group connection runs nothing else.
const BEGIN_SET: &str = "BEGIN; SET LOCAL enable_seqscan = off";

/// A set statement's rows given to its members (`members[i - 1]` by the ordinal `i`, the
/// last column); a member without a row was not applied (not pending, or its run ended).
fn set_rows(members: &[usize], rows: Vec<Row>) -> Vec<(usize, Vec<Row>)> {
    let mut out: Vec<(usize, Vec<Row>)> = members.iter().map(|&i| (i, Vec::new())).collect();
    for r in rows {
        let i: i64 = r.get(r.len() - 1);
        if let Some(slot) = usize::try_from(i - 1).ok().and_then(|k| out.get_mut(k)) {
            slot.1.push(r);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(run: &str, full: bool, big: bool) -> Member {
        let commit = CommitParams {
            run_id: run.into(),
            node_id: "n".into(),
            output: None,
            route: Vec::new(),
            touched: Default::default(),
            sets: "{}".into(),
            deletes: Vec::new(),
            writes: false,
            iteration: 0,
            full: full.then(Default::default),
            big,
        };
        Member { commit, answer: oneshot::channel().0 }
    }

    fn member(run: &str) -> Member {
        commit(run, false, false)
    }

    #[test]
    fn a_set_takes_the_plain_commits_of_distinct_runs_first() {
        // in run order: a plain, a plain again, b full, c plain, d big, e plain
        let group = [
            commit("a", false, false),
            commit("a", false, false),
            commit("b", true, false),
            commit("c", false, false),
            commit("d", false, true),
            commit("e", false, false),
        ];
        let live: Vec<usize> = (0..group.len()).collect();
        assert_eq!(plan(&group, &live, true, 2), [Unit::Set(vec![0, 3, 5]), Unit::One(1), Unit::One(2), Unit::One(4)]);
        assert_eq!(plan(&group, &live, false, 2), live.iter().map(|&i| Unit::One(i)).collect::<Vec<_>>());
        // too few for a set: one statement each, in run order
        assert_eq!(plan(&group, &[2, 3, 4], true, 2), [Unit::One(2), Unit::One(3), Unit::One(4)]);
        assert_eq!(plan(&group, &[2, 3, 4], true, 1), [Unit::Set(vec![3]), Unit::One(2), Unit::One(4)]);
    }

    #[test]
    fn a_run_with_a_commit_in_flight_waits_for_the_next_group() {
        let mut s = State { waiting: vec![member("a"), member("b"), member("a")], ..Default::default() };
        let first: Vec<String> = s.take_group().into_iter().map(|m| m.commit.run_id).collect();
        assert_eq!(first, ["a", "b", "a"]);
        s.waiting = vec![member("b"), member("c"), member("a")];
        let second: Vec<String> = s.take_group().into_iter().map(|m| m.commit.run_id).collect();
        assert_eq!(second, ["c"], "a and b are in the first group, still in flight");
        assert_eq!(s.waiting.iter().map(|m| m.run_id()).collect::<Vec<_>>(), ["b", "a"]);
        let state = Mutex::new(s);
        drop(Busy { state: &state, runs: vec!["a".into(), "b".into(), "a".into()] });
        let mut s = state.into_inner().unwrap();
        let third: Vec<String> = s.take_group().into_iter().map(|m| m.commit.run_id).collect();
        assert_eq!(third, ["b", "a"]);
    }

    #[test]
    fn a_group_has_at_most_group_members() {
        let mut s = State { waiting: (0..GROUP + 3).map(|i| member(&format!("r{i}"))).collect(), ..Default::default() };
        assert_eq!(s.take_group().len(), GROUP);
        assert_eq!(s.waiting.len(), 3);
    }
}
