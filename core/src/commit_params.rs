//! A node's commit as statement parameters: alone, as `sql/commit.sql`'s full or plain
//! statement; or, a plain commit, together with other runs' plain commits as one
//! `sql/commit_set.sql` statement (`group_commit`). One set of values, two renderings.

use crate::group_read::array_literal;
use crate::json_text::JsonText;
use tokio_postgres::types::ToSql;

/// A statement parameter that the group owns until it runs.
pub type Param = Box<dyn ToSql + Sync + Send>;

/// Owned parameters as the driver takes them.
pub fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect()
}

/// What a commit brings each successor it touches, one entry per successor
/// (`sql/commit.sql` $5..$13, $19, $26).
#[derive(Debug, Default, Clone)]
pub struct Touched {
    pub ids: Vec<String>,
    pub ready: Vec<bool>,
    pub expected: Vec<i32>,
    pub any: Vec<bool>,
    pub fire: Vec<bool>,
    pub arrives: Vec<bool>,
    pub wrote: Vec<bool>,
    pub inputs: Vec<Option<String>>,
    pub binds: Vec<bool>,
    pub deferred: Vec<bool>,
    pub passes: Vec<bool>,
}

/// What only the full statement reads: fallback owners, a loop going round, a batch's
/// items, `typescriptCompat` (`sql/commit.sql` $14/$15, $20/$21, $23..$25, $27/$28).
#[derive(Debug, Default, Clone)]
pub struct FullParams {
    pub owners: Vec<String>,
    pub owner_joins: Vec<String>,
    pub again: Vec<String>,
    pub spawn_ids: Vec<String>,
    pub spawn_inputs: Vec<Option<String>>,
    pub spawn_specs: Vec<String>,
    pub compat: bool,
    pub held: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct CommitParams {
    pub run_id: String,
    pub node_id: String,
    /// None: `undefined`.
    pub output: Option<JsonText>,
    pub route: Vec<String>,
    pub touched: Touched,
    /// Context sets, a JSON object's text.
    pub sets: String,
    pub deletes: Vec<String>,
    /// It has context writes.
    pub writes: bool,
    pub iteration: i32,
    /// None: the plain statement does it all.
    pub full: Option<FullParams>,
    /// Its values are over `pg::BIG_MESSAGE_BYTES`: the connection retires after it.
    pub big: bool,
}

impl CommitParams {
    /// Which of `sql/commit.sql`'s statements it takes alone: 0 full, 1 plain.
    pub fn statement(&self) -> usize {
        usize::from(self.full.is_none())
    }

    /// Whether it can be a member of a `sql/commit_set.sql` statement.
    pub fn in_set(&self) -> bool {
        self.full.is_none() && !self.big
    }

    /// `sql/commit.sql`'s 28 parameters.
    pub fn single(&self) -> Vec<Param> {
        let t = self.touched.clone();
        let f = self.full.clone().unwrap_or_default();
        let again = !f.again.is_empty();
        vec![
            Box::new(self.run_id.clone()),
            Box::new(self.node_id.clone()),
            Box::new(self.output.clone()),
            Box::new(self.route.clone()),
            Box::new(t.ids),
            Box::new(t.ready),
            Box::new(t.expected),
            Box::new(t.any),
            Box::new(t.fire),
            Box::new(t.arrives),
            Box::new(t.wrote),
            Box::new(t.inputs),
            Box::new(t.binds),
            Box::new(f.owners),
            Box::new(f.owner_joins),
            Box::new(self.sets.clone()),
            Box::new(self.deletes.clone()),
            Box::new(self.writes),
            Box::new(t.deferred),
            Box::new(f.again),
            Box::new(again),
            Box::new(self.iteration),
            Box::new(f.spawn_ids),
            Box::new(f.spawn_inputs),
            Box::new(f.spawn_specs),
            Box::new(t.passes),
            Box::new(f.compat),
            Box::new(f.held),
        ]
    }
}

/// `sql/commit_set.sql`'s 20 parameters for `members` (plain commits of distinct runs),
/// whose ordinals are their positions from 1.
pub fn set_params(members: &[&CommitParams]) -> Vec<Param> {
    let run_ids: Vec<String> = members.iter().map(|m| m.run_id.clone()).collect();
    let node_ids: Vec<String> = members.iter().map(|m| m.node_id.clone()).collect();
    let outputs: Vec<Option<JsonText>> = members.iter().map(|m| m.output.clone()).collect();
    let routes: Vec<String> = members.iter().map(|m| array_literal(&m.route)).collect();
    let sets: Vec<String> = members.iter().map(|m| m.sets.clone()).collect();
    let deletes: Vec<String> = members.iter().map(|m| array_literal(&m.deletes)).collect();
    let writes: Vec<bool> = members.iter().map(|m| m.writes).collect();
    let iterations: Vec<i32> = members.iter().map(|m| m.iteration).collect();
    let mut all = Touched::default();
    let mut of: Vec<i32> = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let t = &m.touched;
        of.extend(std::iter::repeat_n(i as i32 + 1, t.ids.len()));
        all.ids.extend(t.ids.iter().cloned());
        all.ready.extend(&t.ready);
        all.expected.extend(&t.expected);
        all.any.extend(&t.any);
        all.fire.extend(&t.fire);
        all.arrives.extend(&t.arrives);
        all.wrote.extend(&t.wrote);
        all.inputs.extend(t.inputs.iter().cloned());
        all.binds.extend(&t.binds);
        all.deferred.extend(&t.deferred);
        all.passes.extend(&t.passes);
    }
    vec![
        Box::new(run_ids),
        Box::new(node_ids),
        Box::new(outputs),
        Box::new(routes),
        Box::new(sets),
        Box::new(deletes),
        Box::new(writes),
        Box::new(iterations),
        Box::new(of),
        Box::new(all.ids),
        Box::new(all.ready),
        Box::new(all.expected),
        Box::new(all.any),
        Box::new(all.fire),
        Box::new(all.arrives),
        Box::new(all.wrote),
        Box::new(all.inputs),
        Box::new(all.binds),
        Box::new(all.deferred),
        Box::new(all.passes),
    ]
}
