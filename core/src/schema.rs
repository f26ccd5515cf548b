//! The schema the worker needs, as one idempotent script (`npx flowcraft-rabbitmq
//! sql` prints it, `createTables: true` applies it), and the check of an existing
//! schema (`createTables: false` alters nothing: what is missing is an error that
//! names it).
//!
//! Besides the tables, their columns and unique indexes, the status table gets
//! two kinds of triggers, so that statuses written by any process (an older
//! worker, a script) behave like ours:
//! - `flowcraft_status_notify_insert` / `_update` announce a status that becomes
//!   anything but `running` on [`RUN_CHANNEL`] with our payload
//!   (`<status table>\n<run id>`). Our own statements announce theirs too; in one
//!   transaction PostgreSQL delivers identical notifications once, so a waiter
//!   is woken once either way.
//! - `flowcraft_status_keep_final` keeps a final status (`completed`, `failed`,
//!   `cancelled`) and its `status_data` once written: a later UPDATE changing
//!   them writes the old values back (its other columns still change). Our own
//!   writes never change a final status (their WHERE clauses say so), so they
//!   are unaffected.

use crate::error::{CoreError, CoreResult};
use crate::pg::{quote_table, PgPool};
use crate::run_store::{FINAL_STATUSES, RUN_CHANNEL};

/// Columns of the context table: name and type (with constraints).
const CONTEXT_COLUMNS: [(&str, &str); 2] =
    [("run_id", "TEXT PRIMARY KEY"), ("context_data", "JSONB NOT NULL DEFAULT '{}'::jsonb")];

/// Columns of the status table: name and type. The first four are the README's
/// (and Flowcraft's) table; the others are the worker's bookkeeping.
const STATUS_COLUMNS: [(&str, &str); 10] = [
    ("run_id", "TEXT PRIMARY KEY"),
    ("status", "TEXT"),
    ("status_data", "JSONB"),
    ("updated_at", "TIMESTAMPTZ NOT NULL DEFAULT now()"),
    ("blueprint_id", "TEXT"),
    ("error", "TEXT"),
    ("idempotency_key", "TEXT"),
    ("deliveries", "JSONB"),
    ("pending", "INTEGER"),
    ("arrivals", "JSONB"),
];

/// Columns of the node rows' table (`<context table>_nodes`, see `run_store`):
/// one row per node of a run.
const NODE_COLUMNS: [(&str, &str); 13] = [
    ("run_id", "TEXT NOT NULL"),
    ("node_id", "TEXT NOT NULL"),
    ("state", "TEXT NOT NULL DEFAULT 'idle'"),
    ("output", "JSONB"),
    ("route", "TEXT[]"),
    ("bound", "BOOLEAN NOT NULL DEFAULT false"),
    ("input", "JSONB"),
    ("joined", "TEXT[] NOT NULL DEFAULT '{}'"),
    ("joined_now", "TEXT[]"),
    ("fired_by", "TEXT"),
    // how many times a loop sent the node round again: a job carries the number it was queued with
    ("iteration", "INTEGER NOT NULL DEFAULT 0"),
    // a `sleep` node's wake-up time (state `sleeping`)
    ("wake_at", "TIMESTAMPTZ"),
    // a node the run added (a batch item): { uses, gather, i, count }; NULL for the blueprint's nodes
    ("spec", "JSONB"),
];

const NOTIFY_FUNCTION: &str = "flowcraft_status_notify";
const KEEP_FINAL_FUNCTION: &str = "flowcraft_status_keep_final";
const NOTIFY_INSERT_TRIGGER: &str = "flowcraft_status_notify_insert";
const NOTIFY_UPDATE_TRIGGER: &str = "flowcraft_status_notify_update";
const KEEP_FINAL_TRIGGER: &str = "flowcraft_status_keep_final";

/// The node table's index of the rows that wait: `<nodes>_waiting`.
const WAKE_INDEX: &str = "waiting";

/// The advisory lock that serialises our DDL (workers starting together).
const DDL_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext('flowcraft-rabbitmq-adapter ddl'));";

/// A NOTIFY payload must stay under 8000 bytes; a longer one (a huge run id) is
/// not sent by the trigger (waitForRun's poll still sees the status).
const MAX_PAYLOAD_BYTES: usize = 7999;

/// The body of the notify trigger function; its one argument is the status
/// table's name as the workers are configured with it.
fn notify_body() -> String {
    format!(
        "\nDECLARE\n  payload text := TG_ARGV[0] || chr(10) || NEW.run_id;\nBEGIN\n  \
         IF octet_length(payload) <= {MAX_PAYLOAD_BYTES} THEN\n    PERFORM pg_notify('{RUN_CHANNEL}', payload);\n  END IF;\n  \
         RETURN NULL;\nEND\n"
    )
}

/// The body of the trigger function that keeps a final status.
fn keep_final_body() -> String {
    "\nBEGIN\n  NEW.status := OLD.status;\n  NEW.status_data := OLD.status_data;\n  RETURN NEW;\nEND\n".to_string()
}

fn final_list() -> String {
    FINAL_STATUSES.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ")
}

/// The schema of one pair of tables.
pub struct Schema {
    context_table: String,
    status_table: String,
    nodes_table: String,
    ctx: String,
    st: String,
    nodes: String,
    /// Where the trigger functions live: the status table's schema, or the
    /// search path's first schema for an unqualified table.
    function_prefix: String,
}

/// What a check found: which tables, columns and indexes are missing, and which
/// triggers are in place.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Inspection {
    pub missing_tables: Vec<String>,
    /// `table.column`.
    pub missing_columns: Vec<String>,
    /// e.g. `flowcraft_statuses (idempotency_key)`.
    pub missing_indexes: Vec<String>,
    /// The notify triggers exist and announce our table name.
    pub notify: bool,
    pub keep_final: bool,
    /// The trigger functions have this version's bodies.
    pub functions_current: bool,
}

impl Inspection {
    fn complete(&self) -> bool {
        self.missing_tables.is_empty()
            && self.missing_columns.is_empty()
            && self.missing_indexes.is_empty()
            && self.notify
            && self.keep_final
            && self.functions_current
    }
}

/// What waitForRun and the worker need to know about the installed schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Installed {
    /// A status written by anyone is announced (else waitForRun polls).
    pub notify: bool,
    /// A final status cannot be overwritten by others.
    pub keep_final: bool,
}

impl Schema {
    pub fn new(context_table: &str, status_table: &str) -> CoreResult<Schema> {
        let ctx = quote_table(context_table)?;
        let st = quote_table(status_table)?;
        let nodes_table = crate::run_store::nodes_table(context_table);
        let nodes = quote_table(&nodes_table)?;
        let function_prefix = match st.rsplit_once('.') {
            Some((schema, _)) => format!("{schema}."),
            None => String::new(),
        };
        Ok(Schema {
            context_table: context_table.to_string(),
            status_table: status_table.to_string(),
            nodes_table,
            ctx,
            st,
            nodes,
            function_prefix,
        })
    }

    /// The name of the status table's unique index on `idempotency_key` (the
    /// name earlier versions gave it).
    fn idempotency_index(&self) -> String {
        format!("{}_idempotency_key", self.status_table.rsplit('.').next().unwrap_or("flowcraft"))
            .chars()
            .take(63)
            .collect()
    }

    /// The node table's index of the rows that wait (`wake_at` set: sleeping, woken,
    /// subflow), and the name earlier versions gave an index over `state` instead.
    fn wake_index(&self, suffix: &str) -> String {
        format!("{}_{suffix}", self.nodes_table.rsplit('.').next().unwrap_or("flowcraft_nodes"))
            .chars()
            .take(63)
            .collect()
    }

    /// `name`, an index of the node table, qualified with its schema and quoted.
    fn node_index(&self, name: &str) -> String {
        match self.nodes.rsplit_once('.') {
            Some((schema, _)) => format!("{schema}.\"{name}\""),
            None => format!("\"{name}\""),
        }
    }

    /// The CLI command that prints [`Schema::ddl`] for these tables.
    pub fn command(&self) -> String {
        format!(
            "npx flowcraft-rabbitmq sql --context-table {} --status-table {}",
            self.context_table, self.status_table
        )
    }

    /// Every statement the worker needs, in one transaction; idempotent (apply
    /// it again after an upgrade: `IF NOT EXISTS`, `CREATE OR REPLACE`, and
    /// triggers dropped and created again).
    pub fn ddl(&self) -> String {
        let (ctx, st, nodes, f) = (&self.ctx, &self.st, &self.nodes, &self.function_prefix);
        let columns =
            |list: &[(&str, &str)]| list.iter().map(|(n, t)| format!("  {n} {t}")).collect::<Vec<_>>().join(",\n");
        let add_columns = STATUS_COLUMNS
            .iter()
            .filter(|(n, _)| *n != "run_id")
            .map(|(n, t)| format!("  ADD COLUMN IF NOT EXISTS {n} {t}"))
            .collect::<Vec<_>>()
            .join(",\n");
        let add_node_columns = NODE_COLUMNS
            .iter()
            .filter(|(n, _)| !["run_id", "node_id"].contains(n))
            .map(|(n, t)| format!("  ADD COLUMN IF NOT EXISTS {n} {t}"))
            .collect::<Vec<_>>()
            .join(",\n");
        let finals = final_list();
        format!(
            "-- Tables of @flowcraft/rabbitmq-adapter: context table {context_table}, status table {status_table},\n\
             -- node rows {nodes_table}.\n\
             -- Idempotent: apply it again after an upgrade. Needs PostgreSQL 11 or later.\n\
             BEGIN;\n\
             {DDL_LOCK}\n\
             \n\
             CREATE TABLE IF NOT EXISTS {ctx} (\n{ctx_columns}\n);\n\
             \n\
             -- fillfactor: room on each page for the updates of a row in place (HOT), so a run's rows,\n\
             -- updated by each of its jobs, do not leave a trail of index entries\n\
             CREATE TABLE IF NOT EXISTS {nodes} (\n{node_columns},\n  PRIMARY KEY (run_id, node_id)\n) WITH (fillfactor = 70);\n\
             ALTER TABLE {nodes}\n{add_node_columns};\n\
             -- the sweeps' lookups (sleep, subflow): only the rows that wait have a wake_at (a subflow's\n\
             -- is 'infinity'). Not over `state`: an index on a column a job's commit changes would keep\n\
             -- every row update from being made in place (HOT).\n\
             UPDATE {nodes} SET wake_at = 'infinity' WHERE state = 'subflow' AND wake_at IS NULL;\n\
             DROP INDEX IF EXISTS {old_wake_idx};\n\
             CREATE INDEX IF NOT EXISTS \"{wake_idx}\" ON {nodes} (wake_at) WHERE wake_at IS NOT NULL;\n\
             \n\
             CREATE TABLE IF NOT EXISTS {st} (\n{st_base}\n);\n\
             -- the worker's bookkeeping (and the base columns, for a table made otherwise)\n\
             ALTER TABLE {st}\n{add_columns};\n\
             -- the status row is updated by every job of its run: keep room for updates in place\n\
             ALTER TABLE {st} SET (fillfactor = 50);\n\
             -- startRun({{ idempotencyKey }})\n\
             CREATE UNIQUE INDEX IF NOT EXISTS \"{idx}\" ON {st} (idempotency_key);\n\
             \n\
             -- Announce a status written by anyone (waitForRun wakes at once), on the channel and\n\
             -- with the payload the worker's own statements use.\n\
             CREATE OR REPLACE FUNCTION {f}{NOTIFY_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $fn${notify_body}$fn$;\n\
             DROP TRIGGER IF EXISTS {NOTIFY_INSERT_TRIGGER} ON {st};\n\
             CREATE TRIGGER {NOTIFY_INSERT_TRIGGER} AFTER INSERT ON {st} FOR EACH ROW\n  \
               WHEN (NEW.status IS NOT NULL AND NEW.status <> 'running')\n  \
               EXECUTE FUNCTION {f}{NOTIFY_FUNCTION}('{status_table}');\n\
             DROP TRIGGER IF EXISTS {NOTIFY_UPDATE_TRIGGER} ON {st};\n\
             CREATE TRIGGER {NOTIFY_UPDATE_TRIGGER} AFTER UPDATE ON {st} FOR EACH ROW\n  \
               WHEN (NEW.status IS DISTINCT FROM OLD.status AND NEW.status IS NOT NULL AND NEW.status <> 'running')\n  \
               EXECUTE FUNCTION {f}{NOTIFY_FUNCTION}('{status_table}');\n\
             \n\
             -- A final status, once written, stays: an UPDATE changing it (or its status_data) keeps the old values.\n\
             CREATE OR REPLACE FUNCTION {f}{KEEP_FINAL_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $fn${keep_final_body}$fn$;\n\
             DROP TRIGGER IF EXISTS {KEEP_FINAL_TRIGGER} ON {st};\n\
             CREATE TRIGGER {KEEP_FINAL_TRIGGER} BEFORE UPDATE ON {st} FOR EACH ROW\n  \
               WHEN (OLD.status IN ({finals}) AND (NEW.status IS DISTINCT FROM OLD.status OR NEW.status_data IS DISTINCT FROM OLD.status_data))\n  \
               EXECUTE FUNCTION {f}{KEEP_FINAL_FUNCTION}();\n\
             COMMIT;\n",
            context_table = self.context_table,
            status_table = self.status_table,
            nodes_table = self.nodes_table,
            node_columns = columns(&NODE_COLUMNS),
            ctx_columns = columns(&CONTEXT_COLUMNS),
            st_base = columns(&STATUS_COLUMNS[..4]),
            idx = self.idempotency_index(),
            wake_idx = self.wake_index(WAKE_INDEX),
            old_wake_idx = self.node_index(&self.wake_index("waits")),
            notify_body = notify_body(),
            keep_final_body = keep_final_body(),
        )
    }

    /// Reads the catalog: what exists of the tables, columns, unique indexes,
    /// triggers and trigger functions. One statement; changes nothing.
    pub async fn inspect(&self, pool: &PgPool) -> CoreResult<Inspection> {
        let sql = "WITH t(role, rel) AS (VALUES ('status', to_regclass($1::text)), ('context', to_regclass($2::text)), \
               ('nodes', to_regclass($6::text))) \
             SELECT t.role, t.rel IS NOT NULL, \
               ARRAY(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = t.rel AND a.attnum > 0 AND NOT a.attisdropped), \
               ARRAY(SELECT (SELECT string_agg(a.attname::text, ',' ORDER BY k.ord) \
                       FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord) \
                       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum) \
                     FROM pg_index i WHERE i.indrelid = t.rel AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL), \
               ARRAY(SELECT g.tgname::text FROM pg_trigger g WHERE g.tgrelid = t.rel AND NOT g.tgisinternal AND g.tgenabled <> 'D' \
                     AND (g.tgnargs = 0 OR g.tgargs = convert_to($3::text, 'UTF8') || '\\x00'::bytea)), \
               (SELECT p.prosrc FROM pg_proc p WHERE p.oid = to_regprocedure($4::text)), \
               (SELECT p.prosrc FROM pg_proc p WHERE p.oid = to_regprocedure($5::text)), \
               EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
                       WHERE i.indrelid = t.rel AND c.relname = $7::text) \
             FROM t";
        let notify_fn = format!("{}{NOTIFY_FUNCTION}()", self.function_prefix);
        let keep_fn = format!("{}{KEEP_FINAL_FUNCTION}()", self.function_prefix);
        let rows = pool
            .query(
                "checking the tables",
                sql,
                &[
                    &self.st,
                    &self.ctx,
                    &self.status_table,
                    &notify_fn,
                    &keep_fn,
                    &self.nodes,
                    &self.wake_index(WAKE_INDEX),
                ],
            )
            .await?;
        let mut found = Inspection::default();
        for row in &rows {
            let role: String = row.get(0);
            let exists: bool = row.get(1);
            let columns: Vec<String> = row.get(2);
            let unique: Vec<Option<String>> = row.get(3);
            let triggers: Vec<String> = row.get(4);
            let (name, wanted): (&str, &[(&str, &str)]) = match role.as_str() {
                "status" => (&self.status_table, &STATUS_COLUMNS),
                "nodes" => (&self.nodes_table, &NODE_COLUMNS),
                _ => (&self.context_table, &CONTEXT_COLUMNS),
            };
            if !exists {
                found.missing_tables.push(name.to_string());
                continue;
            }
            for (col, _) in wanted {
                if !columns.iter().any(|c| c == col) {
                    found.missing_columns.push(format!("{name}.{col}"));
                }
            }
            let mut keys = vec![if role == "nodes" { "run_id,node_id" } else { "run_id" }];
            if role == "status" {
                keys.push("idempotency_key");
                found.notify =
                    [NOTIFY_INSERT_TRIGGER, NOTIFY_UPDATE_TRIGGER].iter().all(|t| triggers.iter().any(|g| g == t));
                found.keep_final = triggers.iter().any(|g| g == KEEP_FINAL_TRIGGER);
                let notify_src: Option<String> = row.get(5);
                let keep_src: Option<String> = row.get(6);
                found.functions_current = notify_src.as_deref() == Some(notify_body().as_str())
                    && keep_src.as_deref() == Some(keep_final_body().as_str());
            }
            if role == "nodes" && !row.get::<_, bool>(7) {
                found.missing_indexes.push(format!("{name} (wake_at) WHERE wake_at IS NOT NULL"));
            }
            for key in keys {
                let has_column = key.split(',').all(|k| columns.iter().any(|c| c == k));
                if has_column && !unique.iter().any(|u| u.as_deref() == Some(key)) {
                    found.missing_indexes.push(format!("{name} ({key})"));
                }
            }
        }
        Ok(found)
    }

    /// Makes the schema ready. With `create`, applies [`Schema::ddl`] when
    /// anything is missing or out of date (nothing runs, and nothing is locked,
    /// when all is in place). Without, changes nothing: a missing table, column
    /// or unique index is an error naming it and the command that prints the
    /// DDL; missing triggers only make waitForRun poll.
    pub async fn prepare(&self, pool: &PgPool, create: bool) -> CoreResult<Installed> {
        let mut found = self.inspect(pool).await?;
        if create && !found.complete() {
            let conn = pool.connect().await?;
            if let Err(e) = conn.client().batch_execute(&self.ddl()).await {
                let _ = conn.client().batch_execute("ROLLBACK").await;
                return Err(CoreError::pg(format!("preparing the tables {} and {}", self.ctx, self.st), e));
            }
            found = self.inspect(pool).await?;
        }
        if let Some(table) = found.missing_tables.first() {
            return Err(CoreError::TableNotFound { table: table.clone(), command: self.command() });
        }
        if !found.missing_columns.is_empty() {
            return Err(CoreError::ColumnNotFound {
                columns: found.missing_columns.join(", "),
                command: self.command(),
            });
        }
        if !found.missing_indexes.is_empty() {
            return Err(CoreError::IndexNotFound {
                indexes: found.missing_indexes.join(", "),
                command: self.command(),
            });
        }
        Ok(Installed { notify: found.notify, keep_final: found.keep_final })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ddl_names_the_tables_and_qualifies_the_functions_with_the_schema() {
        let s = Schema::new("app.ctx", "app.st").unwrap();
        let ddl = s.ddl();
        assert!(ddl.contains("CREATE TABLE IF NOT EXISTS \"app\".\"ctx\""));
        assert!(ddl.contains("ALTER TABLE \"app\".\"st\"\n  ADD COLUMN IF NOT EXISTS status TEXT"));
        assert!(ddl
            .contains("CREATE UNIQUE INDEX IF NOT EXISTS \"st_idempotency_key\" ON \"app\".\"st\" (idempotency_key)"));
        assert!(ddl.contains("CREATE OR REPLACE FUNCTION \"app\".flowcraft_status_notify()"));
        assert!(ddl.contains("EXECUTE FUNCTION \"app\".flowcraft_status_notify('app.st')"));
        assert!(ddl.contains("OLD.status IN ('completed', 'failed', 'cancelled')"));
        assert!(!ddl.contains("created_at"));
        let plain = Schema::new("c", "s").unwrap().ddl();
        assert!(plain.contains("CREATE OR REPLACE FUNCTION flowcraft_status_notify()"));
        assert_eq!(
            Schema::new("c", "s").unwrap().command(),
            "npx flowcraft-rabbitmq sql --context-table c --status-table s"
        );
    }

    #[test]
    fn every_column_is_created_or_added() {
        let ddl = Schema::new("c", "s").unwrap().ddl();
        for (name, ty) in STATUS_COLUMNS.iter().chain(CONTEXT_COLUMNS.iter()).chain(NODE_COLUMNS.iter()) {
            assert!(ddl.contains(&format!("{name} {ty}")), "{name}");
        }
    }
}
