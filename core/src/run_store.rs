//! The worker's view of a run in PostgreSQL: its context row and its status
//! row. Each job reads the run once and commits once: the node's output, its
//! context writes, the inputs of its successors and the run's bookkeeping in a
//! single statement, so a redelivered job can never apply its effect twice.
//!
//! A run is stored as three kinds of rows, so that a job's cost does not grow
//! with the run's width (see `docs/architecture.md`, Storage):
//! - its context row: the user's keys (and `blueprintId`, `_awaitingNodeIds`, ...);
//!   when the run ends, every node's output (`_outputs.<id>`, `<id>`) and bound
//!   input (`_inputs.<id>`) is folded into it, so it then holds what
//!   FlowRuntime's serialised context holds;
//! - one row per node (`<context table>_nodes`): its state (`idle`, `queued`,
//!   `done`, `failed`, `awaiting`), output, route, bound input, join arrivals,
//!   and which node's commit enqueued it;
//! - its status row: status, first error, and `pending` (nodes queued and not
//!   settled; the run ends when it reaches 0).
//!
//! Every statement that changes node rows locks the status row first, so the
//! commits of one run are serialised and each sees the others' effects.
//! The SQL is in `core/sql/`, one statement per file.

use crate::commit_params::{refs, CommitParams, FullParams, Touched};
use crate::error::{CoreError, CoreResult};
use crate::group_commit::{CommitCounts, CommitGroup, SetCommit};
use crate::group_read::{Read, ReadCounts, ReadGroup};
use crate::json_text::JsonText;
use crate::pg::{quote_table, PgPool, PgTarget};
use crate::schema::{Installed, Schema};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub const FINAL_STATUSES: [&str; 3] = ["completed", "failed", "cancelled"];

pub struct RunStore {
    pool: Arc<PgPool>,
    /// Commits of jobs ready together share a transaction (`group_commit`); None:
    /// one statement each (`FLOWCRAFT_GROUP_COMMIT=0`, to compare).
    group: Option<Arc<CommitGroup>>,
    /// Every read of a run: those of jobs starting together are one statement
    /// (`group_read`; `FLOWCRAFT_GROUP_READ=0`: one statement each, to compare).
    reads: Arc<ReadGroup>,
    /// The status table's name as the user gave it (NOTIFY payloads carry it).
    status_table: String,
    schema: Schema,
    sql: Sql,
}

/// The channel on which a run's end (and a move to `awaiting`) is announced;
/// the payload is `<status table>\n<run id>`.
pub const RUN_CHANNEL: &str = "flowcraft_run_finished";

/// The name of the node rows' table of a context table.
pub fn nodes_table(context_table: &str) -> String {
    format!("{context_table}_nodes")
}

/// When a commit enqueues a touched successor (`n` its row as it is now, `x`
/// what the commit brings it): an idle node that is ready, or a join whose
/// arrival fires it (`any`: the first arrival; `all`: every predecessor arrived).
/// A node of a loop's body that a continuing controller sends round again
/// (`$20`) counts as idle.
const FIRES: &str =
    "(n.state = 'idle' OR (n.node_id = ANY($20::text[]) AND n.state = 'done')) AND (x.ready OR x.completes)";

/// A partial `load` sends another node's output or input only when the job's inputs name it
/// (`$3`) or it is small: a big value the job does not use is not even read (`merge_rows` counts
/// the node completed; node code reads the value on demand). (`pg_column_size` is the stored
/// size: a value sent anyway is left out by `merge_rows` when its text is over the limit.)
fn partial_value(column: &str, prefix: &str) -> (String, String) {
    let keep = format!(
        "(n.node_id = $4::text OR n.node_id = ANY($3::text[]) OR '{prefix}' || n.node_id = ANY($3::text[]) \
         OR pg_column_size(n.{column}) <= {LAZY_VALUE_BYTES})"
    );
    (format!("CASE WHEN {keep} THEN n.{column} END"), format!("COALESCE(NOT {keep}, false)"))
}

/// `NODE_JSON` of a load that sends every value, or of a partial load.
fn node_json(route: &str, partial: bool) -> String {
    let json = NODE_JSON.replace("{route}", route);
    if !partial {
        return json.replace("{output}", "n.output").replace("{input}", "n.input").replace("{left} ", "");
    }
    let (output, output_left) = partial_value("output", "_outputs.");
    let (input, input_left) = partial_value("input", "_inputs.");
    json.replace("{output}", &output)
        .replace("{input}", &input)
        .replace("{left} ", &format!("'outputLeft', {output_left}, 'inputLeft', {input_left}, "))
}

/// `load`'s route of a row: the job's own node's only (`$4`).
const OWN_ROUTE: &str = "CASE WHEN n.node_id = $4::text THEN n.route END";

/// A node row as `load` and `view` return it (`NodeRow`); `{route}` its route (`load` reads
/// only its own node's: a predecessor's route is as long as its fan-out, and every one of its
/// successors' jobs would carry it).
///
/// `{output}` and `{input}` are the values sent (`n.output`, `n.input`, or in a partial `load`
/// those `partial_value` keeps), and `{left}` says which ones a partial load left out.
const NODE_JSON: &str = "json_build_object('id', n.node_id, 'state', n.state, 'has', n.output IS NOT NULL, \
     'output', {output}, 'bound', n.bound, 'hasInput', n.input IS NOT NULL, 'input', {input}, 'route', {route}, {left} \
     'iteration', n.iteration, 'due', COALESCE(n.wake_at <= now(), false), 'spec', n.spec, \
     'wakeAt', to_char(n.wake_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'))";

/// The run id of the child run a `subflow` node starts: `<run id>/<node id>`, `#<iteration>`
/// inside a loop, and `~<attempt>` for a retry after a failed child (the same in SQL, over the
/// row `n`, below).
pub fn child_run_id(run_id: &str, node_id: &str, iteration: i32, attempt: i32) -> String {
    let mut id = format!("{run_id}/{node_id}");
    if iteration > 0 {
        id.push_str(&format!("#{iteration}"));
    }
    if attempt > 1 {
        id.push_str(&format!("~{attempt}"));
    }
    id
}
/// `child_run_id` in SQL, over the node row `n` (its attempt: `NodeRow::subflow_attempt`).
const CHILD_RUN_ID_SQL: &str =
    "(n.run_id || '/' || n.node_id || CASE WHEN n.iteration > 0 THEN '#' || n.iteration ELSE '' END \
     || CASE WHEN (n.spec ->> 'iteration')::int = n.iteration AND (n.spec ->> 'attempt')::int > 1 \
     THEN '~' || (n.spec ->> 'attempt') ELSE '' END)";

/// Whether a node row's output is a context key (`NodeRow::has_output`), in SQL over the row `alias`.
fn has_output(alias: &str) -> String {
    format!("{alias}.output IS NOT NULL AND ({alias}.state = 'done' OR {alias}.iteration > 0)")
}

/// A value larger than this (bytes) is left out of a partial read when node code does not
/// need it at once: the context row's user keys the node's inputs do not name (`KEPT`), and
/// other nodes' keys (`JobRunner::execute`). Node code reads them on first use.
pub const LAZY_VALUE_BYTES: usize = 2048;

/// A value's JSON text, or None when it is longer than `limit` bytes (found without writing
/// more than that: a big value left out is never serialised whole).
pub fn json_text_within(value: &Value, limit: usize) -> Option<String> {
    struct Capped(Vec<u8>, usize);
    impl std::io::Write for Capped {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            if self.0.len() + bytes.len() > self.1 {
                return Err(std::io::ErrorKind::FileTooLarge.into());
            }
            self.0.extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut out = Capped(Vec::new(), limit);
    serde_json::to_writer(&mut out, value).ok()?;
    String::from_utf8(out.0).ok()
}

/// The context row keys a partial load keeps (`e` a key and value of it): bookkeeping and
/// `_`-keys, the keys the node's inputs name (`$3`), and small values.
fn kept() -> String {
    format!(
        "left(e.key, 1) = '_' OR e.key IN ('blueprintId', 'blueprintVersion') \
         OR e.key = ANY($3::text[]) OR pg_column_size(e.value) <= {LAZY_VALUE_BYTES}"
    )
}

/// A completed run's status data repeats its context as `serializedContext` text only when that
/// text is at most this long (bytes): jsonb holds at most 255 MB, and the context of a run whose
/// node returned a big output holds it three times (`<id>`, `_outputs.<id>`, `_inputs.<next>`).
/// Above it the stored payload's `serializedContext` is `null` (another writer's payload without
/// one is read as it is), and `waitForRun`/`getRun` put the text back when they read it
/// (`with_serialized_context`).
pub const SERIALIZED_CONTEXT_BYTES: usize = 64 << 20;

/// The status data read as `status_data_text`, with the `serializedContext` of a completed
/// payload that was stored as `null` (`SERIALIZED_CONTEXT_BYTES`) put back: `context_text`, the
/// context's text as PostgreSQL writes it (what a stored `serializedContext` is).
fn with_serialized_context(status_data_text: Option<String>, context_text: Option<String>) -> Option<String> {
    let (Some(data), Some(context_text)) = (&status_data_text, context_text) else { return status_data_text };
    let Ok(mut data) = serde_json::from_str::<Value>(data) else { return status_data_text };
    match data.get_mut("payload").and_then(Value::as_object_mut) {
        Some(payload) => payload.insert("serializedContext".into(), Value::String(context_text)),
        None => return status_data_text,
    };
    Some(data.to_string())
}

/// In SQL over the status row `s`: the text of a completed payload's context stored with a `null`
/// `serializedContext` (NULL otherwise), for `with_serialized_context`.
const MISSING_SERIALIZED_CONTEXT: &str = "CASE WHEN s.status_data -> 'payload' ? 'context' \
     AND jsonb_typeof(s.status_data -> 'payload' -> 'serializedContext') = 'null' \
     THEN (s.status_data -> 'payload' -> 'context')::text END";

/// Every statement, with the tables' names in place.
struct Sql {
    load: String,
    load_all: String,
    init_run: String,
    heartbeat: String,
    count_delivery: String,
    deliveries: String,
    /// `sql/commit.sql` made whole (`[0]`) and without what most jobs' commits do not
    /// need (`[1]`, `Effect::plain`): indexed by `usize::from(plain)`, here and in the group.
    commit: [String; 2],
    /// `sql/commit_set.sql`: the plain commits of a group's distinct runs in one statement.
    commit_set: String,
    fail_node: String,
    finalize: String,
    fail_run: String,
    start_run: String,
    find_idempotent: String,
    cancel: String,
    final_status: String,
    /// A run's status alone (`run_status`).
    status_only: String,
    view: String,
    list: String,
    stale: String,
    add_queued: String,
    mark_awaiting: String,
    resume: String,
    delete_run: String,
    fired_by: String,
    sleep: String,
    wake: String,
    gathered: String,
    subflow: String,
    subflow_wake: String,
    subflow_await: String,
    subflow_resume: String,
    subflow_retry: String,
    children: String,
    compat_settle: String,
}

/// One of the two statements a SQL text with `--[full` / `--full]` and `--[plain` /
/// `--plain]` blocks makes (`sql/commit.sql`): the full one, or the plain one.
fn variant(text: &str, full: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut keep = true;
    for line in text.lines() {
        match line.trim() {
            "--[full" => keep = full,
            "--[plain" => keep = !full,
            "--full]" | "--plain]" => keep = true,
            _ if keep => {
                out.push_str(line);
                out.push('\n');
            }
            _ => {}
        }
    }
    out
}

impl Sql {
    fn new(ctx: &str, st: &str, nodes: &str, status_table: &str) -> Sql {
        // Safe inside a literal: quote_table accepted only word characters and a dot.
        let notify = |row: &str| format!("pg_notify('{RUN_CHANNEL}', '{status_table}' || chr(10) || {row}.run_id)");
        let not_final = "(s.status IS NULL OR s.status NOT IN ('completed', 'failed', 'cancelled'))";
        // The status data of a run that ended (`s` its status row, `c` its
        // context row): the whole final context when it completed, the first
        // node failure when it failed. A context whose text is over
        // `SERIALIZED_CONTEXT_BYTES` is not repeated as `serializedContext`
        // (`with_serialized_context` gives it back to our readers).
        let ended_context = format!(
            "CASE WHEN s.error IS NULL THEN (SELECT jsonb_build_object('status', 'completed', 'payload', \
               jsonb_build_object('context', c.context_data, \
                 'serializedContext', CASE WHEN octet_length(x.t) <= {SERIALIZED_CONTEXT_BYTES} THEN x.t END, \
                 'status', 'completed')) \
               FROM (SELECT c.context_data::text AS t) x) \
             ELSE jsonb_build_object('status', 'failed', 'reason', s.error) END"
        );
        let ended_status = "CASE WHEN s.error IS NULL THEN 'completed' ELSE 'failed' END";
        let fold = |exclude: &str| include_str!("../sql/fold.sql").trim_end().replace("{exclude}", exclude);
        let fill = |text: &str, fold_exclude: &str| -> String {
            text.replace("{fold}", &fold(fold_exclude))
                .replace("{node_json}", &node_json("n.route", false))
                .replace("{has_output(f)}", &has_output("f"))
                .replace("{has_output(r)}", &has_output("r"))
                .replace("{child_run_id(n)}", CHILD_RUN_ID_SQL)
                .replace("{ctx}", ctx)
                .replace("{st}", st)
                .replace("{nodes}", nodes)
                .replace("{not_final}", not_final)
                .replace("{ended_context}", &ended_context)
                .replace("{ended_status}", ended_status)
                .replace("{missing_serialized_context}", MISSING_SERIALIZED_CONTEXT)
                .replace("{notify_u}", &notify("u"))
                .replace("{notify}", &notify("s"))
        };
        let plain = |text: &str| fill(text, "false");
        Sql {
            load: plain(
                &include_str!("../sql/load.sql")
                    .replace("{node_json}", &node_json(OWN_ROUTE, true))
                    .replace("{which}", "n.node_id = ANY($2::text[])")
                    .replace("{context_text}", &format!(
                        "CASE WHEN c.context_data IS NOT NULL THEN COALESCE((SELECT jsonb_object_agg(e.key, e.value) \
                         FROM jsonb_each(c.context_data) e WHERE {kept}), '{{}}'::jsonb)::text END", kept = kept()
                    ))
                    .replace("{omitted}", &format!(
                        "ARRAY(SELECT e.key FROM jsonb_each(COALESCE(c.context_data, '{{}}'::jsonb)) e WHERE NOT ({kept}))", kept = kept()
                    )),
            ),
            load_all: plain(
                &include_str!("../sql/load.sql")
                    .replace("{node_json}", &node_json(OWN_ROUTE, false))
                    .replace("{which}", "cardinality($2::text[]) >= 0")
                    .replace("{context_text}", "c.context_data::text")
                    .replace("{omitted}", "ARRAY(SELECT unnest($3::text[]) LIMIT 0)"),
            ),
            init_run: plain(include_str!("../sql/init_run.sql")),
            heartbeat: plain(include_str!("../sql/heartbeat.sql")),
            count_delivery: plain(include_str!("../sql/count_delivery.sql")),
            deliveries: plain(include_str!("../sql/deliveries.sql")),
            // the rows this statement changes are read from its own results, not locked again
            commit: [
                fill(
                    &variant(include_str!("../sql/commit.sql"), true).replace("{fires}", FIRES),
                    "n.node_id = $2 OR n.node_id IN (SELECT u.node_id FROM upd u UNION ALL SELECT o.node_id FROM ow o)",
                ),
                fill(
                    &variant(include_str!("../sql/commit.sql"), false).replace("{fires}", FIRES),
                    "n.node_id = $2 OR n.node_id IN (SELECT u.node_id FROM upd u)",
                ),
            ],
            // a member's run and node are its `nx` row's
            commit_set: fill(
                &include_str!("../sql/commit_set.sql").replace(
                    "{fold}",
                    &fold("n.node_id = nx.node_id OR n.node_id IN (SELECT u.node_id FROM upd u WHERE u.i = nx.i)")
                        .replace("$1", "nx.run_id"),
                ),
                "false",
            ),
            fail_node: fill(include_str!("../sql/fail_node.sql"), "false"),
            finalize: plain(include_str!("../sql/finalize.sql")),
            fail_run: plain(include_str!("../sql/fail_run.sql")),
            start_run: plain(include_str!("../sql/start_run.sql")),
            find_idempotent: plain(include_str!("../sql/find_idempotent.sql")),
            // sleeping rows are let go by the same statement: not locked again
            cancel: fill(include_str!("../sql/cancel.sql"), "n.state IN ('sleeping', 'woken', 'subflow')"),
            final_status: plain(include_str!("../sql/final_status.sql")),
            status_only: plain("SELECT s.status FROM {st} s WHERE s.run_id = $1"),
            view: plain(include_str!("../sql/view.sql")),
            list: plain(include_str!("../sql/list.sql")),
            stale: plain(include_str!("../sql/stale.sql")),
            add_queued: plain(include_str!("../sql/add_queued.sql")),
            mark_awaiting: plain(include_str!("../sql/mark_awaiting.sql")),
            resume: plain(include_str!("../sql/resume.sql")),
            delete_run: plain(include_str!("../sql/delete_run.sql")),
            fired_by: plain(include_str!("../sql/fired_by.sql")),
            sleep: plain(include_str!("../sql/sleep.sql")),
            wake: plain(include_str!("../sql/wake.sql")),
            gathered: plain(include_str!("../sql/gathered.sql")),
            subflow: plain(include_str!("../sql/subflow.sql")),
            subflow_wake: plain(include_str!("../sql/subflow_wake.sql")),
            subflow_await: plain(include_str!("../sql/subflow_await.sql")),
            subflow_resume: plain(include_str!("../sql/subflow_resume.sql")),
            subflow_retry: plain(include_str!("../sql/subflow_retry.sql")),
            children: plain(include_str!("../sql/children.sql")),
            compat_settle: plain(include_str!("../sql/compat_settle.sql")),
        }
    }
}

/// One node row, as `load` and `view` read it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct NodeRow {
    pub id: String,
    pub state: String,
    /// The output is not `undefined` (SQL NULL).
    pub has: bool,
    /// Its JSON text as read (parsed only when a job's context needs it: `merge_rows`).
    #[serde(default)]
    pub output: Option<Box<RawValue>>,
    pub bound: bool,
    /// The bound input is not `undefined` (SQL NULL).
    #[serde(rename = "hasInput")]
    pub has_input: bool,
    /// Its JSON text as read (kept as that text when it is a job's own big input: `merge_rows`).
    #[serde(default)]
    pub input: Option<JsonText>,
    /// A partial load left its big output (input) out: it is not `null`, only not read.
    #[serde(default, rename = "outputLeft")]
    pub output_left: bool,
    #[serde(default, rename = "inputLeft")]
    pub input_left: bool,
    #[serde(default)]
    pub route: Option<Vec<String>>,
    /// How many times a loop sent the node round again.
    #[serde(default)]
    pub iteration: i32,
    /// A sleeping (or woken) node's wake-up time, ISO 8601.
    #[serde(default, rename = "wakeAt")]
    pub wake_at: Option<String>,
    /// Its wake-up time has come.
    #[serde(default)]
    pub due: bool,
    /// A node the run added (a batch item): its definition (`builtins::ItemSpec`).
    #[serde(default)]
    pub spec: Option<Value>,
}

/// A node row's keys as `read_context` needs them, borrowed from the text read (`NodeRow`
/// owns its values' texts: a value read on demand would be copied once more on its way).
#[derive(serde::Deserialize)]
struct BorrowedNodeRow<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    state: std::borrow::Cow<'a, str>,
    has: bool,
    #[serde(default, borrow)]
    output: Option<&'a RawValue>,
    #[serde(rename = "hasInput")]
    has_input: bool,
    #[serde(default, borrow)]
    input: Option<&'a RawValue>,
    #[serde(default)]
    iteration: i32,
}

impl NodeRow {
    /// A `subflow` node's attempt in its iteration (`config.maxRetries`: a failed child run
    /// is followed by another, `~<attempt>`), kept in its row's `spec`; 1 when none is kept.
    pub fn subflow_attempt(&self) -> i32 {
        let spec = self.spec.as_ref();
        let field = |k: &str| spec.and_then(|s| s.get(k)).and_then(Value::as_i64);
        match (field("attempt"), field("iteration")) {
            (Some(a), Some(i)) if i == i64::from(self.iteration) => a as i32,
            _ => 1,
        }
    }

    /// Its output is in the run's context: it completed, or completed in an
    /// earlier iteration of a loop (FlowRuntime keeps it until overwritten).
    pub fn has_output(&self) -> bool {
        output_in_context(self.has, &self.state, self.iteration)
    }
}

/// `NodeRow::has_output` over a row's fields (`BorrowedNodeRow` reads the same rule).
fn output_in_context(has: bool, state: &str, iteration: i32) -> bool {
    has && (state == "done" || iteration > 0)
}

/// What node rows add to a context, as FlowRuntime's context holds it.
#[derive(Debug, Default)]
pub struct Merged {
    /// Nodes that completed with an `undefined` output (no `_outputs.<id>` key), or whose
    /// large output a partial read left out.
    pub undefined: BTreeSet<String>,
    /// Nodes whose input an edge bound to `_inputs.<id>`.
    pub bound: BTreeSet<String>,
    /// In a partial read, the job's own bound input when its text is over `LAZY_VALUE_BYTES`:
    /// kept as that text, out of the context (it travels as the request's input; node code
    /// reads `_inputs.<id>` on demand), so a big input is never parsed on its way (issue 12).
    pub own_input: Option<JsonText>,
}

/// Adds the keys node rows stand for to `context`: `_outputs.<id>` and `<id>`
/// of done nodes with an output, `_inputs.<id>` of bound nodes. The values move
/// out of the rows (parsed from their text; a JSON `null` is `None`).
///
/// `partial`: a job's partial read (`RunStore::load_keeping`) of `own`'s job, whose inputs
/// name `keys`. Another node's value whose text is over `LAZY_VALUE_BYTES`, that `keys` does
/// not name, is not parsed and stays out of the context: node code reads it on first use
/// (`JobRunner::execute` would leave it out of the request anyway), and such a node counts in
/// `Merged::undefined` (its `_outputs.<id>` exists; only the node's inputs read values).
pub fn merge_rows(
    context: &mut Map<String, Value>,
    rows: &mut [NodeRow],
    partial: Option<(&str, &[String])>,
) -> Merged {
    let mut merged = Merged::default();
    let parse = |raw: Option<&str>| -> Value { raw.and_then(|r| serde_json::from_str(r).ok()).unwrap_or(Value::Null) };
    let big = |raw: Option<&str>| raw.is_some_and(|v| v.len() > LAZY_VALUE_BYTES);
    let lazy = |r: &NodeRow, raw: Option<&str>, left: bool, key: &str| match partial {
        Some((own, keys)) => left || (r.id != own && big(raw) && !keys.iter().any(|k| k == &r.id || k == key)),
        None => false,
    };
    for r in rows {
        if r.has_output() {
            let key = format!("_outputs.{}", r.id);
            if lazy(r, r.output.as_deref().map(RawValue::get), r.output_left, &key) {
                merged.undefined.insert(r.id.clone());
            } else {
                let output = parse(r.output.take().as_deref().map(RawValue::get));
                context.insert(key, output.clone());
                context.insert(r.id.clone(), output);
            }
        } else if r.state == "done" {
            merged.undefined.insert(r.id.clone());
        }
        if r.bound {
            merged.bound.insert(r.id.clone());
        }
        if r.has_input {
            let key = format!("_inputs.{}", r.id);
            let input = r.input.as_ref().map(JsonText::as_str);
            let own_big = partial.is_some_and(|(own, _)| r.id == own) && r.bound && big(input);
            if own_big {
                merged.own_input = r.input.take();
            } else if !lazy(r, input, r.input_left, &key) {
                context.insert(key, parse(input));
                r.input = None;
            }
        }
    }
    merged
}

fn parse_rows(text: Option<&str>) -> CoreResult<Vec<NodeRow>> {
    match text {
        Some(t) => serde_json::from_str(t).map_err(|e| CoreError::json("node rows", e)),
        None => Ok(vec![]),
    }
}

/// Context keys read on demand (`RunStore::read_context`), each with its value's text
/// (`None`: JSON `null`).
pub type ContextRead = Vec<(String, Option<JsonText>)>;

/// What a job reads about its run before doing anything.
#[derive(Debug)]
pub struct RunSnapshot {
    /// The context row with the keys of the node rows read (None when the run
    /// has no context row yet).
    pub context: Option<Map<String, Value>>,
    pub status: Option<String>,
    /// Whether the status row carries our bookkeeping.
    pub tracked: bool,
    /// The node's own row, when it has one.
    pub node: Option<NodeRow>,
    /// Among the rows read: nodes that completed with an `undefined` output, or with a large
    /// one a partial read left out (`merge_rows`).
    pub completed: BTreeSet<String>,
    /// Among the rows read: nodes whose input is bound to `_inputs.<id>`.
    pub bound: BTreeSet<String>,
    /// Context row keys left out of `context` (large values node code reads on demand).
    pub omitted: Vec<String>,
    /// The node's own big bound input, as its text (`Merged::own_input`).
    pub own_input: Option<JsonText>,
}

impl RunSnapshot {
    /// The node completed (its row is done): a job for it only re-publishes.
    pub fn node_done(&self) -> bool {
        self.node.as_ref().is_some_and(|n| n.state == "done")
    }
}

/// Everything stored about a run, for `getRun`, reconcile and resume.
#[derive(Debug, Default)]
pub struct RunView {
    pub status: Option<String>,
    pub status_data: Value,
    /// The context row with every node row's keys.
    pub context: Option<Map<String, Value>>,
    pub queued: Vec<String>,
    /// Each node row's iteration (how many times a loop sent it round), when not 0.
    pub iterations: std::collections::HashMap<String, i32>,
    /// Subflow nodes waiting for their child run, and its run id.
    pub children: std::collections::BTreeMap<String, String>,
    /// Sleeping nodes and their wake-up times (ISO 8601).
    pub sleeping: Vec<(String, String)>,
    pub routes: Map<String, Value>,
    pub idle_seconds: Option<f64>,
    pub blueprint_id: Option<String>,
    pub error: Option<String>,
    pub updated_at: Option<String>,
    /// Nodes that completed with an `undefined` output.
    pub undefined_outputs: Vec<String>,
    /// The run has node rows (else it was written by another adapter).
    pub has_rows: bool,
}

impl RunView {
    /// The run's blueprint id: recorded in its status row, else in its context.
    pub fn blueprint(&self) -> Option<String> {
        self.blueprint_id.clone().or_else(|| self.context.as_ref()?.get("blueprintId")?.as_str().map(String::from))
    }
}

/// One line of the runs list.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub run_id: String,
    pub status: Option<String>,
    pub blueprint_id: Option<String>,
    pub idle_seconds: Option<f64>,
    pub done_nodes: i64,
    pub reason: Option<String>,
}

/// Outcome of a commit.
#[derive(Debug, PartialEq, Eq)]
pub enum Commit {
    /// This job's effect was applied. `ready`: the successors to publish;
    /// `finished`: the run's status when nothing of it remains pending (final,
    /// or `awaiting`), with its first error.
    Applied { ready: Vec<Enqueued>, finished: Option<(String, Option<String>)> },
    /// The node was not pending (another delivery committed it), or the run
    /// has ended.
    AlreadyDone,
}

/// A node a statement enqueued, with the iteration its job must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    pub node_id: String,
    pub iteration: i32,
}

fn enqueued(ids: Vec<String>, iterations: Vec<i32>) -> Vec<Enqueued> {
    ids.into_iter().zip(iterations).map(|(node_id, iteration)| Enqueued { node_id, iteration }).collect()
}

/// A sleeping node whose wake-up time has come.
#[derive(Debug, Clone)]
pub struct Woken {
    pub run_id: String,
    pub blueprint_id: String,
    pub node_id: String,
    pub iteration: i32,
}

/// An arrival at a join node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinArrival {
    pub target: String,
    /// The predecessors that arrive: the node, and the nodes it is the fallback for.
    pub members: Vec<String>,
    pub expected: usize,
    pub any: bool,
    /// Whether this arrival may enqueue the join (a node routing to it), or
    /// only records its members as completed (a node that failed into its
    /// fallback: FlowRuntime counts it completed, but it routes to its fallback).
    pub fire: bool,
}

/// Everything one completed node changes.
#[derive(Debug, Default)]
pub struct Effect {
    /// The node's output; None: `undefined` (no `_outputs.<id>` key). As node code's
    /// response carried it: sent to PostgreSQL as that text.
    pub output: Option<JsonText>,
    /// The node's own context writes (net effect).
    pub sets: Map<String, Value>,
    pub deletes: Vec<String>,
    /// The successors it chose (for reconcile and inspection).
    pub route: Vec<String>,
    /// Chosen successors with a single predecessor: ready now.
    pub ready: Vec<String>,
    pub joins: Vec<JoinArrival>,
    /// Successors whose input this node's edges wrote to `_inputs.<id>`, and
    /// that input (the output as it is, or a value; None: `undefined`).
    pub inputs: Vec<(String, crate::routing::EdgeInput)>,
    /// Successors whose input is bound to `_inputs.<id>` from now on (`routing`).
    pub bound: Vec<String>,
    /// Successors whose input no edge transform reads before they run: an
    /// 'all' join's `_inputs.<id>` is then written by its completing arrival
    /// only (the last writer), not by every arrival.
    pub deferred_inputs: Vec<String>,
    /// A loop controller going round again: its body's rows reset for the
    /// next iteration (`Blueprint::loop_body`), and its own row back to idle.
    pub again: Vec<String>,
    /// The job's iteration (its commit changes nothing once the node moved on).
    pub iteration: i32,
    /// Nodes this commit adds to the run, queued (a batch's items).
    pub spawn: Vec<Spawned>,
    /// `typescriptCompat` (compat.rs): the node's keys also go to the context row.
    pub compat: bool,
    /// `typescriptCompat`: the joins whose firing the coordination store decides for this
    /// arrival; each holds the run open until `compat_settle`.
    pub held: Vec<String>,
}

impl Effect {
    /// Whether the plain commit statement does it all: no loop going round, no batch
    /// items, not `typescriptCompat` (the caller checks there are no fallback owners,
    /// the members of its join arrivals other than the node).
    fn plain(&self) -> bool {
        self.again.is_empty() && self.spawn.is_empty() && !self.compat && self.held.is_empty()
    }
}

/// A node a commit adds to its run (a batch item), queued with its input.
#[derive(Debug, Clone)]
pub struct Spawned {
    pub id: String,
    /// Its input (`_inputs.<id>`, bound); None: `undefined`.
    pub input: Option<Value>,
    /// Its definition, kept in its row (`spec`).
    pub spec: Value,
}

fn json_text(v: &Option<Value>) -> Option<String> {
    v.as_ref().map(Value::to_string)
}

impl RunStore {
    pub fn new(target: &PgTarget, context_table: &str, status_table: &str) -> CoreResult<RunStore> {
        let ctx = quote_table(context_table)?;
        let st = quote_table(status_table)?;
        let nodes = quote_table(&nodes_table(context_table))?;
        let pool = PgPool::shared(target)?;
        let sql = Sql::new(&ctx, &st, &nodes, status_table);
        let schema = Schema::new(context_table, status_table)?;
        let grouped = std::env::var("FLOWCRAFT_GROUP_COMMIT").map_or(true, |v| v != "0");
        let group = grouped
            .then(|| CommitGroup::new(pool.clone(), sql.commit.clone(), sql.commit_set.clone(), SetCommit::from_env()));
        let grouped_reads = std::env::var("FLOWCRAFT_GROUP_READ").map_or(true, |v| v != "0");
        let reads = ReadGroup::new(pool.clone(), &[&sql.load, &sql.load_all], grouped_reads);
        Ok(RunStore { pool, group, reads, status_table: status_table.to_string(), schema, sql })
    }

    pub fn pool(&self) -> &Arc<PgPool> {
        &self.pool
    }

    /// Creates what is missing of the tables, columns, indexes and triggers
    /// (`create`), or only checks that the tables have what the worker needs
    /// (see `schema.rs`). Idempotent and safe when several workers start at
    /// once (serialised by an advisory lock).
    pub async fn prepare_tables(&self, create: bool) -> CoreResult<Installed> {
        self.schema.prepare(&self.pool, create).await
    }

    /// Reads the run for a job of `node_id`: its context row, status, and the
    /// rows of `needed` nodes (all of them with `all`), merged into the context.
    pub async fn load(&self, run_id: &str, node_id: &str, needed: &[String], all: bool) -> CoreResult<RunSnapshot> {
        self.load_keeping(run_id, node_id, needed, all, &[]).await
    }

    /// The row `sql/load.sql` reads for a job of `node_id` (none: `""`), every node row with
    /// `all`, else those of `needed`, keeping the context keys `keys` whatever their size.
    async fn read_run(
        &self,
        run_id: &str,
        node_id: &str,
        needed: &[String],
        all: bool,
        keys: &[String],
    ) -> CoreResult<tokio_postgres::Row> {
        let read = Read {
            run_id: run_id.to_string(),
            needed: needed.to_vec(),
            keys: keys.to_vec(),
            node_id: node_id.to_string(),
        };
        // (statement 1 is `load_all`: `new`)
        self.reads.read(usize::from(all), read).await
    }

    /// How many commits this store's group committer took, in how many statements (None:
    /// `FLOWCRAFT_GROUP_COMMIT=0`, one statement each).
    pub fn commit_counts(&self) -> Option<CommitCounts> {
        self.group.as_ref().map(|g| g.counts())
    }

    /// How many statements this store's reads of runs took.
    pub fn read_counts(&self) -> ReadCounts {
        self.reads.counts()
    }

    /// `load`, keeping the context keys `keys` whatever their size.
    pub async fn load_keeping(
        &self,
        run_id: &str,
        node_id: &str,
        needed: &[String],
        all: bool,
        keys: &[String],
    ) -> CoreResult<RunSnapshot> {
        let row = Arc::new(self.read_run(run_id, node_id, needed, all, keys).await?);
        // (the texts are borrowed from the row read: a big value is not copied out of it first)
        let context_text: Option<&str> = row.get(0);
        let mut context = match context_text {
            Some(t) => match serde_json::from_str::<Value>(t).map_err(|e| CoreError::json("a context row", e))? {
                Value::Object(m) => Some(m),
                _ => Some(Map::new()),
            },
            None => None,
        };
        // (a big bound input stays in the row: `Merged::own_input`)
        let mut nodes = JsonText::reading(&row, || parse_rows(row.get(3)))?;
        let merged = match context.as_mut() {
            Some(c) => merge_rows(c, &mut nodes, (!all).then_some((node_id, keys))),
            None => Merged::default(),
        };
        Ok(RunSnapshot {
            context,
            status: row.get(1),
            tracked: row.get(2),
            node: nodes.into_iter().find(|n| n.id == node_id),
            completed: merged.undefined,
            bound: merged.bound,
            omitted: row.get::<_, Option<Vec<String>>>(4).unwrap_or_default(),
            own_input: merged.own_input,
        })
    }

    /// The run's context as node code reads it on demand, as the JSON text of an object: the
    /// context row and the node rows `keys` stand for (`_outputs.<id>`, `<id>`, `_inputs.<id>`),
    /// or every row when `keys` is None. Only the asked keys are in it. Each value is the text read,
    /// never parsed; a big one stays in the row read (`JsonText::in_row`, issue 12).
    pub async fn read_context(&self, run_id: &str, keys: Option<&[String]>) -> CoreResult<ContextRead> {
        let keys_given = keys.unwrap_or_default();
        let ids: Vec<String> = keys_given
            .iter()
            .map(|k| k.strip_prefix("_outputs.").or_else(|| k.strip_prefix("_inputs.")).unwrap_or(k).to_string())
            .collect();
        let row = Arc::new(self.read_run(run_id, "", &ids, keys.is_none(), keys_given).await?);
        let Some(context_text) = row.get::<_, Option<&str>>(0) else { return Ok(Vec::new()) };
        let mut context: BTreeMap<String, Option<&RawValue>> =
            serde_json::from_str(context_text).map_err(|e| CoreError::json("a context row", e))?;
        let nodes: Vec<BorrowedNodeRow> = match row.get::<_, Option<&str>>(3) {
            Some(t) => serde_json::from_str(t).map_err(|e| CoreError::json("node rows", e))?,
            None => vec![],
        };
        // the keys node rows stand for, over the context row's (as `merge_rows`)
        for r in &nodes {
            if output_in_context(r.has, &r.state, r.iteration) {
                context.insert(format!("_outputs.{}", r.id), r.output);
                context.insert(r.id.to_string(), r.output);
            }
            if r.has_input {
                context.insert(format!("_inputs.{}", r.id), r.input);
            }
        }
        if let Some(keys) = keys {
            context.retain(|k, _| keys.contains(k));
        }
        Ok(context.into_iter().map(|(k, v)| (k, v.map(|raw| JsonText::in_row(&row, raw.get())))).collect())
    }

    /// Makes sure the run has a context row carrying `initial` keys (kept when
    /// already present), a row per node (`queued` ones pending) and a tracked
    /// status row.
    pub async fn init_run(
        &self,
        run_id: &str,
        blueprint_id: &str,
        initial: &Map<String, Value>,
        nodes: &[String],
        queued: &[String],
        adopted: &crate::joins::Adopted,
    ) -> CoreResult<()> {
        let initial = Value::Object(initial.clone()).to_string();
        let arrivals = serde_json::to_string(&adopted.arrivals).map_err(|e| CoreError::json("join arrivals", e))?;
        let queued: Vec<&String> = queued.iter().filter(|q| !adopted.done.contains(q)).collect();
        self.pool
            .query(
                "creating a run",
                &self.sql.init_run,
                &[&run_id, &initial, &blueprint_id, &nodes, &queued, &adopted.done, &arrivals],
            )
            .await?;
        Ok(())
    }

    /// Counts, durably, one more redelivered start of `node_id`'s code
    /// (`deliveries[node]`); returns the new count (1 when the run has no status row).
    pub async fn count_delivery(&self, run_id: &str, node_id: &str) -> CoreResult<i64> {
        let rows = self.pool.query("counting a redelivery", &self.sql.count_delivery, &[&run_id, &node_id]).await?;
        Ok(rows.first().map_or(1, |r| r.get::<_, i64>(0)))
    }

    /// How many redelivered starts of `node_id`'s code were counted (0 when none).
    pub async fn deliveries(&self, run_id: &str, node_id: &str) -> CoreResult<i64> {
        let rows = self.pool.query("reading a delivery count", &self.sql.deliveries, &[&run_id, &node_id]).await?;
        Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0)))
    }

    /// Keeps `updated_at` of running runs fresh while their nodes run, so a
    /// long node does not look stalled to the reconciler.
    pub async fn heartbeat(&self, run_ids: &[String]) -> CoreResult<()> {
        if !run_ids.is_empty() {
            self.pool.query("refreshing running runs", &self.sql.heartbeat, &[&run_ids]).await?;
        }
        Ok(())
    }

    /// Commits a node's effect once, in one statement (`sql/commit.sql`).
    pub async fn commit(&self, run_id: &str, node_id: &str, effect: &Effect) -> CoreResult<Commit> {
        let sets = Value::Object(effect.sets.clone()).to_string();
        let writes = !effect.sets.is_empty() || !effect.deletes.is_empty();
        let big = effect.output.as_ref().map_or(0, |o| o.as_str().len()) + sets.len() > crate::pg::BIG_MESSAGE_BYTES;
        // Every successor the commit touches, with what it brings each.
        let mut ids: Vec<&str> = Vec::new();
        let touched = effect.ready.iter().chain(effect.joins.iter().map(|j| &j.target));
        for t in touched.chain(effect.inputs.iter().map(|(t, _)| t)) {
            if !ids.contains(&t.as_str()) {
                ids.push(t);
            }
        }
        let arrival = |t: &str| effect.joins.iter().find(|j| j.target == t);
        let input = |t: &str| effect.inputs.iter().rev().find(|(i, _)| i == t);
        use crate::routing::EdgeInput;
        let touched = Touched {
            ready: ids.iter().map(|t| effect.ready.iter().any(|r| r == t)).collect(),
            expected: ids.iter().map(|t| arrival(t).map_or(0, |j| j.expected as i32)).collect(),
            any: ids.iter().map(|t| arrival(t).is_some_and(|j| j.any)).collect(),
            fire: ids.iter().map(|t| arrival(t).is_some_and(|j| j.fire)).collect(),
            arrives: ids.iter().map(|t| arrival(t).is_some_and(|j| j.members.iter().any(|m| m == node_id))).collect(),
            wrote: ids.iter().map(|t| input(t).is_some()).collect(),
            // an input that is the output as it is is bound to the output in SQL: its text is sent once
            passes: ids.iter().map(|t| input(t).is_some_and(|(_, v)| *v == EdgeInput::Output)).collect(),
            inputs: ids
                .iter()
                .map(|t| match input(t) {
                    Some((_, EdgeInput::Value(v))) => json_text(v),
                    _ => None,
                })
                .collect(),
            binds: ids.iter().map(|t| effect.bound.iter().any(|b| b == t)).collect(),
            deferred: ids.iter().map(|t| effect.deferred_inputs.iter().any(|d| d == t)).collect(),
            ids: ids.iter().map(|t| t.to_string()).collect(),
        };
        // The nodes this fallback arrives for, at each join (counted once each: `joined`).
        let (owners, owner_joins): (Vec<String>, Vec<String>) = effect
            .joins
            .iter()
            .flat_map(|j| j.members.iter().filter(|m| *m != node_id).map(move |m| (m.clone(), j.target.clone())))
            .unzip();
        let full = (!effect.plain() || !owners.is_empty()).then(|| FullParams {
            owners,
            owner_joins,
            again: effect.again.clone(),
            spawn_ids: effect.spawn.iter().map(|s| s.id.clone()).collect(),
            spawn_inputs: effect.spawn.iter().map(|s| json_text(&s.input)).collect(),
            spawn_specs: effect.spawn.iter().map(|s| s.spec.to_string()).collect(),
            compat: effect.compat,
            held: effect.held.clone(),
        });
        let commit = CommitParams {
            run_id: run_id.to_string(),
            node_id: node_id.to_string(),
            output: effect.output.clone(),
            route: effect.route.clone(),
            touched,
            sets,
            deletes: effect.deletes.clone(),
            writes,
            iteration: effect.iteration,
            full,
            big,
        };
        let rows = match &self.group {
            Some(group) => group.query(commit).await?,
            None => {
                let sql = &self.sql.commit[commit.statement()];
                self.pool.query_sized("committing a node's output", sql, &refs(&commit.single()), big).await?
            }
        };
        Ok(match rows.first() {
            Some(r) => {
                let finished: Option<String> = r.get(2);
                let ids = r.get::<_, Option<Vec<String>>>(0).unwrap_or_default();
                let iterations = r.get::<_, Option<Vec<i32>>>(1).unwrap_or_default();
                Commit::Applied { ready: enqueued(ids, iterations), finished: finished.map(|s| (s, r.get(4))) }
            }
            None => Commit::AlreadyDone,
        })
    }

    /// `typescriptCompat`, after a commit of `node_id` (`sql/compat_settle.sql`): rows the
    /// TypeScript adapter's workers completed are done, the joins `fired` are enqueued, the
    /// node's holds released. Returns what it enqueued, and whether nothing of the running
    /// run is pending (it ends no run: `JobRunner::compat_after` does).
    pub async fn compat_settle(
        &self,
        run_id: &str,
        node_id: &str,
        fired: &[String],
    ) -> CoreResult<(Vec<Enqueued>, bool)> {
        let rows = self
            .pool
            .query(
                "settling a run beside the TypeScript adapter",
                &self.sql.compat_settle,
                &[&run_id, &node_id, &fired],
            )
            .await?;
        Ok(match rows.first() {
            Some(r) => {
                let ids = r.get::<_, Option<Vec<String>>>(0).unwrap_or_default();
                let iterations = r.get::<_, Option<Vec<i32>>>(1).unwrap_or_default();
                (enqueued(ids, iterations), r.get::<_, Option<bool>>(2).unwrap_or(false))
            }
            None => (Vec::new(), false),
        })
    }

    /// The successors an earlier commit of `node_id` enqueued, each with its state
    /// now (`queued`: still pending).
    pub async fn fired_by(&self, run_id: &str, node_id: &str) -> CoreResult<Vec<(Enqueued, String)>> {
        let rows = self.pool.query("reading what a node enqueued", &self.sql.fired_by, &[&run_id, &node_id]).await?;
        Ok(rows.iter().map(|r| (Enqueued { node_id: r.get(0), iteration: r.get(1) }, r.get(2))).collect())
    }

    /// The outputs of a batch's items, in item order (`sql/gathered.sql`).
    pub async fn gathered(&self, run_id: &str, gather: &str) -> CoreResult<Vec<Value>> {
        let rows = self.pool.query("reading a batch's results", &self.sql.gathered, &[&run_id, &gather]).await?;
        rows.iter()
            .map(|r| serde_json::from_str(r.get::<_, &str>(0)).map_err(|e| CoreError::json("a batch item's output", e)))
            .collect()
    }

    /// Puts a `sleep` node to sleep for `ms` (see `sql/sleep.sql`). Returns its
    /// wake-up time, or None when the node was not queued in this iteration.
    pub async fn sleep(&self, run_id: &str, node_id: &str, ms: f64, iteration: i32) -> CoreResult<Option<String>> {
        let rows =
            self.pool.query("putting a node to sleep", &self.sql.sleep, &[&run_id, &node_id, &ms, &iteration]).await?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    /// A `subflow` node now waits for its child run (`sql/subflow.sql`); false when it was not queued.
    pub async fn await_child(&self, run_id: &str, node_id: &str, iteration: i32) -> CoreResult<bool> {
        let rows = self.pool.query("marking a subflow", &self.sql.subflow, &[&run_id, &node_id, &iteration]).await?;
        Ok(!rows.is_empty())
    }

    /// The child runs this run's `subflow` nodes wait for.
    pub async fn children(&self, run_id: &str) -> CoreResult<Vec<String>> {
        let rows = self.pool.query("reading a run's child runs", &self.sql.children, &[&run_id]).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Sleeping nodes due now (`subflows`: subflow nodes whose child ended), leased to this
    /// caller for `lease` (`sql/wake.sql`, `sql/subflow_wake.sql`).
    pub async fn wake(
        &self,
        subflows: bool,
        blueprints: &[String],
        limit: i64,
        lease: std::time::Duration,
    ) -> CoreResult<Vec<Woken>> {
        let lease = lease.as_secs_f64();
        let sql = if subflows { &self.sql.subflow_wake } else { &self.sql.wake };
        let rows = self.pool.query("waking waiting nodes", sql, &[&blueprints, &limit, &lease]).await?;
        Ok(rows
            .iter()
            .map(|r| Woken { run_id: r.get(0), blueprint_id: r.get(1), node_id: r.get(2), iteration: r.get(3) })
            .collect())
    }

    /// Parents of child runs stopped at a wait node become `awaiting` at their subflow node
    /// (`sql/subflow_await.sql`); returns each one's run id, blueprint id and node id.
    pub async fn await_children(&self, blueprints: &[String], limit: i64) -> CoreResult<Vec<Woken>> {
        let rows = self
            .pool
            .query("marking runs awaiting their child", &self.sql.subflow_await, &[&blueprints, &limit])
            .await?;
        Ok(rows
            .iter()
            .map(|r| Woken { run_id: r.get(0), blueprint_id: r.get(1), node_id: r.get(2), iteration: 0 })
            .collect())
    }

    /// A `subflow` node whose child run failed waits for its next attempt's child run
    /// (`sql/subflow_retry.sql`); false when the node was not woken in this iteration.
    pub async fn retry_child(&self, run_id: &str, node_id: &str, iteration: i32, attempt: i32) -> CoreResult<bool> {
        let rows = self
            .pool
            .query("retrying a subflow", &self.sql.subflow_retry, &[&run_id, &node_id, &iteration, &attempt])
            .await?;
        Ok(!rows.is_empty())
    }

    /// A subflow node whose child was resumed no longer awaits: it leaves `_awaitingNodeIds`,
    /// and the run is `running` again when no other node awaits (`sql/subflow_resume.sql`).
    pub async fn child_resumed(&self, run_id: &str, node_id: &str) -> CoreResult<()> {
        self.pool.query("resuming a run's subflow", &self.sql.subflow_resume, &[&run_id, &node_id]).await?;
        Ok(())
    }

    /// Records a node failure (the first one becomes the run's reason),
    /// removes the node from the pending count, and fails the run when nothing
    /// of it remains. `Some(first error)` when this call ended the run.
    pub async fn fail_node(&self, run_id: &str, node_id: &str, reason: &str) -> CoreResult<Option<String>> {
        self.fail_node_with_writes(run_id, node_id, reason, &Map::new(), &[]).await
    }

    /// `fail_node`, and the context writes the failed node made (FlowRuntime
    /// keeps them), in the same statement.
    pub async fn fail_node_with_writes(
        &self,
        run_id: &str,
        node_id: &str,
        reason: &str,
        sets: &Map<String, Value>,
        deletes: &[String],
    ) -> CoreResult<Option<String>> {
        let sets = Value::Object(sets.clone()).to_string();
        let rows = self
            .pool
            .query("recording a node failure", &self.sql.fail_node, &[&run_id, &node_id, &reason, &deletes, &sets])
            .await?;
        Ok(rows
            .first()
            .filter(|r| r.get::<_, Option<bool>>(1).unwrap_or(false))
            .map(|r| r.get::<_, Option<String>>(2).unwrap_or_else(|| reason.to_string())))
    }

    /// Writes the final status of a drained run, once. Returns it when this
    /// call wrote it.
    pub async fn finalize(&self, run_id: &str) -> CoreResult<Option<String>> {
        let rows = self.pool.query("finishing a run", &self.sql.finalize, &[&run_id]).await?;
        Ok(rows.first().map(|r| r.get::<_, String>(0)))
    }

    pub fn status_table(&self) -> &str {
        &self.status_table
    }

    /// Creates a run: its status row (running, its start nodes pending), a
    /// row per node and its context row, in one statement. False when a run
    /// with this id or idempotency key already exists (nothing is written then).
    pub async fn start_run(
        &self,
        run_id: &str,
        blueprint_id: &str,
        context: &Map<String, Value>,
        nodes: &[String],
        start_nodes: &[String],
        idempotency_key: Option<&str>,
    ) -> CoreResult<bool> {
        let context = Value::Object(context.clone()).to_string();
        let rows = self
            .pool
            .query(
                "starting a run",
                &self.sql.start_run,
                &[&run_id, &blueprint_id, &context, &nodes, &start_nodes, &idempotency_key],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    pub async fn find_idempotent(&self, key: &str) -> CoreResult<Option<String>> {
        let rows = self.pool.query("finding a run by idempotency key", &self.sql.find_idempotent, &[&key]).await?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    /// Undoes a start whose jobs could not be published.
    pub async fn delete_run(&self, run_id: &str) -> CoreResult<()> {
        self.pool.query("removing a run", &self.sql.delete_run, &[&run_id]).await?;
        Ok(())
    }

    pub async fn cancel(&self, run_id: &str, reason: &str) -> CoreResult<bool> {
        let rows = self.pool.query("cancelling a run", &self.sql.cancel, &[&run_id, &reason]).await?;
        Ok(!rows.is_empty())
    }

    /// A run's status, if it has a status row. Not its status data: a completed run's payload
    /// holds its whole context (the cancellation watch asks at each run's end).
    pub async fn run_status(&self, run_id: &str) -> CoreResult<Option<String>> {
        let rows = self.pool.query("reading a run's status", &self.sql.status_only, &[&run_id]).await?;
        Ok(rows.first().and_then(|r| r.get(0)))
    }

    /// `(status, status_data)` of a run, if it has a status row.
    pub async fn status(&self, run_id: &str) -> CoreResult<Option<(Option<String>, Option<String>)>> {
        let rows = self.pool.query("reading a run's status", &self.sql.final_status, &[&run_id]).await?;
        Ok(rows.first().map(|r| (r.get(0), with_serialized_context(r.get(1), r.get(2)))))
    }

    pub async fn view(&self, run_id: &str) -> CoreResult<RunView> {
        let rows = self.pool.query("reading a run", &self.sql.view, &[&run_id]).await?;
        let r = rows.first().ok_or_else(|| CoreError::NoRow { doing: "reading a run" })?;
        let parse = |i: usize| -> Value {
            let text = match i {
                1 => with_serialized_context(r.get(1), r.get(8)),
                _ => r.get::<_, Option<String>>(i),
            };
            text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null)
        };
        let mut nodes = parse_rows(r.get(7))?;
        let mut context = match parse(2) {
            Value::Object(m) => Some(m),
            _ => None,
        };
        let merged = match context.as_mut() {
            Some(c) => merge_rows(c, &mut nodes, None),
            None => Merged::default(),
        };
        let routes: Map<String, Value> = nodes
            .iter()
            .filter(|n| n.state == "done")
            .filter_map(|n| Some((n.id.clone(), Value::from(n.route.clone()?))))
            .collect();
        Ok(RunView {
            status: r.get(0),
            status_data: parse(1),
            context,
            queued: nodes
                .iter()
                .filter(|n| ["queued", "woken", "subflow"].contains(&n.state.as_str()))
                .map(|n| n.id.clone())
                .collect(),
            children: nodes
                .iter()
                .filter(|n| n.state == "subflow")
                .map(|n| (n.id.clone(), child_run_id(run_id, &n.id, n.iteration, n.subflow_attempt())))
                .collect(),
            iterations: nodes.iter().filter(|n| n.iteration != 0).map(|n| (n.id.clone(), n.iteration)).collect(),
            sleeping: nodes
                .iter()
                .filter(|n| n.state == "sleeping")
                .map(|n| (n.id.clone(), n.wake_at.clone().unwrap_or_default()))
                .collect(),
            routes,
            idle_seconds: r.get(3),
            blueprint_id: r.get(4),
            error: r.get(5),
            updated_at: r.get(6),
            undefined_outputs: merged.undefined.into_iter().collect(),
            has_rows: !nodes.is_empty(),
        })
    }

    pub async fn list(&self, limit: i64, status: Option<&str>) -> CoreResult<Vec<RunSummary>> {
        let rows = self.pool.query("listing runs", &self.sql.list, &[&limit, &status]).await?;
        Ok(rows
            .iter()
            .map(|r| RunSummary {
                run_id: r.get(0),
                status: r.get(1),
                blueprint_id: r.get(2),
                idle_seconds: r.get(3),
                done_nodes: r.get(4),
                reason: r.get::<_, Option<String>>(6).or(r.get(5)),
            })
            .collect())
    }

    /// Runs still running whose last change is older than `seconds`.
    pub async fn stale_runs(&self, seconds: f64, limit: i64) -> CoreResult<Vec<String>> {
        let rows = self.pool.query("finding stalled runs", &self.sql.stale, &[&seconds, &limit]).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Reconcile enqueues `nodes`. False when the run is final.
    pub async fn add_queued(&self, run_id: &str, nodes: &[String]) -> CoreResult<bool> {
        let rows = self.pool.query("queueing nodes", &self.sql.add_queued, &[&run_id, &nodes]).await?;
        Ok(!rows.is_empty())
    }

    /// A `wait` node: the run waits for `resumeWithAction`. True when nothing
    /// else of the run is pending (the run has stopped).
    pub async fn mark_awaiting(&self, run_id: &str, node_id: &str) -> CoreResult<bool> {
        let rows = self.pool.query("marking a run awaiting", &self.sql.mark_awaiting, &[&run_id, &node_id]).await?;
        Ok(rows.first().is_some_and(|r| r.get::<_, Option<bool>>(1).unwrap_or(false)))
    }

    /// Completes the awaiting nodes (`outputs`: node → output, `routes`: node →
    /// successors), binds `inputs`, writes the resume keys `sets`, and sets the
    /// run running again. False when the run was not awaiting.
    pub async fn resume(
        &self,
        run_id: &str,
        sets: &Map<String, Value>,
        outputs: &[(String, Value)],
        routes: &Map<String, Value>,
        inputs: &[(String, Option<Value>)],
        bound: &[String],
    ) -> CoreResult<bool> {
        let sets = Value::Object(sets.clone()).to_string();
        let ids: Vec<&str> = outputs.iter().map(|(n, _)| n.as_str()).collect();
        let values: Vec<String> = outputs.iter().map(|(_, v)| v.to_string()).collect();
        let route_list: Vec<String> = outputs
            .iter()
            .map(|(n, _)| routes.get(n).cloned().unwrap_or_else(|| Value::Array(vec![])).to_string())
            .collect();
        let targets: Vec<&str> = inputs.iter().map(|(t, _)| t.as_str()).collect();
        let input_values: Vec<Option<String>> = inputs.iter().map(|(_, v)| json_text(v)).collect();
        let rows = self
            .pool
            .query(
                "resuming a run",
                &self.sql.resume,
                &[&run_id, &sets, &ids, &values, &route_list, &targets, &input_values, &bound],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    /// Fails a run at once (unknown blueprint, node not in blueprint). Never
    /// overwrites a final status. True when this call wrote it.
    pub async fn fail_run(&self, run_id: &str, reason: &str) -> CoreResult<bool> {
        let rows = self.pool.query("failing a run", &self.sql.fail_run, &[&run_id, &reason]).await?;
        Ok(!rows.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::with_serialized_context;
    use serde_json::json;

    #[test]
    fn a_value_over_the_limit_is_not_written_out() {
        let small = json!({"a": [1, 2, 3], "b": "é"});
        assert_eq!(super::json_text_within(&small, 64).as_deref(), Some(small.to_string().as_str()));
        let text_len = small.to_string().len();
        assert_eq!(super::json_text_within(&small, text_len).as_deref(), Some(small.to_string().as_str()));
        assert_eq!(super::json_text_within(&small, text_len - 1), None);
        let big = json!(vec!["x".repeat(100); 1000]);
        assert_eq!(super::json_text_within(&big, super::LAZY_VALUE_BYTES), None);
    }

    #[test]
    fn a_partial_load_sends_only_the_values_the_job_needs_and_says_which_it_left() {
        let full = super::node_json("n.route", false);
        assert!(full.contains("'output', n.output") && full.contains("'input', n.input"));
        assert!(!full.contains("Left") && !full.contains("{"), "{full}");
        let partial = super::node_json("n.route", true);
        for needle in [
            "'outputLeft', COALESCE(NOT",
            "'inputLeft', COALESCE(NOT",
            "'_outputs.' || n.node_id",
            "n.node_id = $4::text",
        ] {
            assert!(partial.contains(needle), "{needle} in {partial}");
        }
        assert!(!partial.contains("{"), "{partial}");
    }

    /// The parameters `$n` a statement reads.
    fn params(sql: &str) -> std::collections::BTreeSet<u32> {
        let mut found = std::collections::BTreeSet::new();
        let body: String = sql.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
        let mut rest = body.as_str();
        while let Some(i) = rest.find('$') {
            rest = &rest[i + 1..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(n) = digits.parse() {
                found.insert(n);
            }
        }
        found
    }

    #[test]
    fn the_plain_commit_drops_the_full_blocks_and_still_reads_every_parameter() {
        let sql = super::Sql::new("\"c\"", "\"s\"", "\"c_nodes\"", "s");
        let [full, plain] = &sql.commit;
        for cte in ["ow AS (", "rs AS (", "sp AS (", "ck AS ("] {
            assert!(full.contains(cte), "{cte}");
            assert!(!plain.contains(cte), "{cte}");
        }
        assert!(!full.contains("AS unused"));
        assert!(plain.contains("AS unused"));
        // PostgreSQL infers each parameter's type from its use: both must read all 28
        let all: std::collections::BTreeSet<u32> = (1..=28).collect();
        assert_eq!(params(full), all);
        assert_eq!(params(plain), all);
        let markers = ["--[full", "--full]", "--[plain", "--plain]"];
        for statement in [full, plain] {
            assert!(!statement.lines().any(|l| markers.contains(&l.trim())));
        }
    }

    #[test]
    fn the_grouped_reads_take_every_parameter_from_their_arrays() {
        let sql = super::Sql::new("\"c\"", "\"s\"", "\"c_nodes\"", "s");
        for single in [&sql.load, &sql.load_all] {
            let (one, four) = (params(single), (1..=4).collect::<std::collections::BTreeSet<u32>>());
            assert_eq!(one, four);
            let grouped = crate::group_read::grouped(single);
            let inner = grouped.split("CROSS JOIN LATERAL").nth(1).unwrap();
            assert!(params(inner).is_empty(), "{inner}");
        }
    }

    #[test]
    fn a_payload_stored_without_its_serialized_context_gets_it_back() {
        let stored = json!({ "status": "completed", "payload": { "status": "completed", "context": { "a": 1 }, "serializedContext": null } });
        let text = with_serialized_context(Some(stored.to_string()), Some(r#"{"a": 1}"#.into())).unwrap();
        let data: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(data["payload"]["serializedContext"], r#"{"a": 1}"#);
        assert_eq!(data["payload"]["context"], json!({ "a": 1 }));
        // nothing to add: the text is returned as it was read
        let failed = r#"{"reason": "boom", "status": "failed"}"#.to_string();
        assert_eq!(with_serialized_context(Some(failed.clone()), None), Some(failed));
        assert_eq!(with_serialized_context(None, None), None);
    }
}
