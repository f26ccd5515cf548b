//! Group read: the reads of the jobs that start at the same moment, of any runs, are
//! one statement (`sql/load.sql` over arrays: a row per read, in order) instead of one
//! each, so they share one round trip and one executor start-up. PostgreSQL's cost per
//! statement, not per row, was most of a read's (`perf`: the executor's start-up of the
//! plan, the protocol, the implicit transaction).
//!
//! A read alone is its own statement, as before (nothing is added when idle), and one
//! group statement at a time is in flight (`LEADERS`): the reads that arrive meanwhile wait
//! for the next one, which is how groups form. A group whose statement fails is read
//! again one by one, so that a read failing (a context row that is not an object,
//! say) fails only itself; a failure of the service (a lost connection, a deadline) is
//! every read's, as a transient error, retried as a read alone would be.

use crate::error::{CoreError, CoreResult};
use crate::pg::PgPool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use tokio_postgres::Row;

/// Group statements in flight at once: one (two measured 3 % more CPU per job on the
/// diamond, their groups half as big).
const LEADERS: usize = 1;
/// Reads per group at most.
const GROUP: usize = 64;

/// What one read asks for: `sql/load.sql`'s parameters.
#[derive(Debug, Clone)]
pub struct Read {
    pub run_id: String,
    /// The node rows it reads ($2).
    pub needed: Vec<String>,
    /// The context keys kept whatever their size ($3).
    pub keys: Vec<String>,
    /// The job's node ($4; "" for none).
    pub node_id: String,
}

/// The statement a group of reads is, made from the single read's text (`single`):
/// its parameters become the columns of one row per read, and the reads' rows come
/// back in the order of the arrays. Each read's lists travel as array literals
/// (`array_literal`): one text per read, whatever its length.
pub fn grouped(single: &str) -> String {
    let inner = single
        .replace("$1::text", "j.run_id")
        .replace("$1", "j.run_id")
        .replace("$2::text[]", "j.needed")
        .replace("$3::text[]", "j.keys")
        .replace("$4::text", "j.node_id");
    format!(
        "SELECT r.* FROM (SELECT u.i, u.run_id, u.needed::text[] AS needed, u.keys::text[] AS keys, u.node_id \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS u(run_id, needed, keys, node_id, i)) j \
         CROSS JOIN LATERAL (\n{inner}\n) r ORDER BY j.i"
    )
}

/// A PostgreSQL array literal of `items` (every element quoted, `"` and `\` escaped).
pub fn array_literal(items: &[String]) -> String {
    let mut s = String::with_capacity(2 + items.iter().map(|i| i.len() + 3).sum::<usize>());
    s.push('{');
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            s.push(',');
        }
        s.push('"');
        for ch in item.chars() {
            if ch == '"' || ch == '\\' {
                s.push('\\');
            }
            s.push(ch);
        }
        s.push('"');
    }
    s.push('}');
    s
}

struct Member {
    /// Which of the statements it reads with.
    statement: usize,
    read: Read,
    answer: oneshot::Sender<CoreResult<Row>>,
}

#[derive(Default)]
struct State {
    waiting: Vec<Member>,
    leaders: usize,
}

/// How many statements the reads took (`reads` ÷ `statements`: the mean group).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReadCounts {
    pub reads: u64,
    pub statements: u64,
}

pub struct ReadGroup {
    pool: Arc<PgPool>,
    /// false: every read is its own statement, at once (`FLOWCRAFT_GROUP_READ=0`, to compare).
    grouping: bool,
    /// Per statement: the single read's text, and the group's (`grouped`).
    statements: Vec<(String, String)>,
    state: Mutex<State>,
    reads: AtomicU64,
    sent: AtomicU64,
}

impl ReadGroup {
    /// A group reader for `statements` (each a single read's text, `sql/load.sql`'s form);
    /// without `grouping`, one that sends each read alone.
    pub fn new(pool: Arc<PgPool>, statements: &[&str], grouping: bool) -> Arc<ReadGroup> {
        let statements = statements.iter().map(|s| (s.to_string(), grouped(s))).collect();
        Arc::new(ReadGroup {
            pool,
            grouping,
            statements,
            state: Mutex::default(),
            reads: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        })
    }

    /// Reads with statement `statement` in the next group; its row, or its error.
    pub async fn read(self: &Arc<Self>, statement: usize, read: Read) -> CoreResult<Row> {
        if !self.grouping {
            self.reads.fetch_add(1, Ordering::Relaxed);
            return self.alone(statement, &read).await;
        }
        let (answer, answered) = oneshot::channel();
        let lead = {
            let mut s = self.state.lock().unwrap();
            s.waiting.push(Member { statement, read, answer });
            let lead = s.leaders < LEADERS;
            if lead {
                s.leaders += 1;
            }
            lead
        };
        if lead {
            tokio::spawn(self.clone().lead());
        }
        answered.await.map_err(|_| CoreError::Timeout("the group read was dropped".into()))?
    }

    pub fn counts(&self) -> ReadCounts {
        ReadCounts { reads: self.reads.load(Ordering::Relaxed), statements: self.sent.load(Ordering::Relaxed) }
    }

    /// Reads groups while reads wait, then leaves.
    async fn lead(self: Arc<Self>) {
        loop {
            let group: Vec<Member> = {
                let mut s = self.state.lock().unwrap();
                if s.waiting.is_empty() {
                    s.leaders -= 1;
                    return;
                }
                let n = s.waiting.len().min(GROUP);
                s.waiting.drain(..n).collect()
            };
            // (members of another statement, rare, are a group of their own)
            let mut by_statement: Vec<Vec<Member>> = (0..self.statements.len()).map(|_| Vec::new()).collect();
            for m in group {
                by_statement[m.statement].push(m);
            }
            let groups = by_statement.into_iter().enumerate().filter(|(_, g)| !g.is_empty());
            futures_util::future::join_all(groups.map(|(i, g)| self.read_group(i, g))).await;
        }
    }

    async fn read_group(&self, statement: usize, group: Vec<Member>) {
        self.reads.fetch_add(group.len() as u64, Ordering::Relaxed);
        if group.len() == 1 {
            self.one_by_one(statement, group).await;
            return;
        }
        let column = |f: fn(&Read) -> String| group.iter().map(|m| f(&m.read)).collect::<Vec<String>>();
        let run_ids = column(|r| r.run_id.clone());
        let needed = column(|r| array_literal(&r.needed));
        let keys = column(|r| array_literal(&r.keys));
        let node_ids = column(|r| r.node_id.clone());
        let rows = self
            .pool
            .query("reading runs", &self.statements[statement].1, &[&run_ids, &needed, &keys, &node_ids])
            .await;
        self.sent.fetch_add(1, Ordering::Relaxed);
        match rows {
            Ok(rows) if rows.len() == group.len() => {
                for (m, row) in group.into_iter().zip(rows) {
                    let _ = m.answer.send(Ok(row));
                }
            }
            // the service, not a read: every read gets the error (each is retried as it was)
            Err(e) if e.is_transient() => {
                let message = e.to_string();
                for m in group {
                    let _ = m.answer.send(Err(CoreError::Timeout(format!("the group read failed: {message}"))));
                }
            }
            // a read that fails fails only itself: each on its own
            _ => self.one_by_one(statement, group).await,
        }
    }

    /// Each read as its own statement, at once.
    async fn one_by_one(&self, statement: usize, group: Vec<Member>) {
        let calls = group.into_iter().map(|m| async move {
            let row = self.alone(statement, &m.read).await;
            let _ = m.answer.send(row);
        });
        futures_util::future::join_all(calls).await;
    }

    /// One read as the single statement.
    async fn alone(&self, statement: usize, r: &Read) -> CoreResult<Row> {
        self.sent.fetch_add(1, Ordering::Relaxed);
        let single = &self.statements[statement].0;
        let rows = self.pool.query("reading a run", single, &[&r.run_id, &r.needed, &r.keys, &r.node_id]).await?;
        rows.into_iter().next().ok_or(CoreError::NoRow { doing: "reading a run" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_array_literal_quotes_every_element() {
        let items =
            ["a".to_string(), "b,c".into(), "d\"e".into(), "f\\g".into(), "{h}".into(), "NULL".into(), "".into()];
        assert_eq!(array_literal(&items), r#"{"a","b,c","d\"e","f\\g","{h}","NULL",""}"#);
        assert_eq!(array_literal(&[]), "{}");
    }

    #[test]
    fn the_grouped_statement_takes_its_parameters_from_the_arrays_only() {
        let single =
            "SELECT $1::text, n.x = ANY($2::text[]), e.k = ANY($3::text[]), n.id = $4::text FROM t n WHERE n.r = $1";
        let g = grouped(single);
        let inner = g.split("CROSS JOIN LATERAL").nth(1).unwrap();
        assert!(!inner.contains('$'), "{inner}");
        assert!(g.contains("unnest($1::text[], $2::text[], $3::text[], $4::text[])"));
    }
}
