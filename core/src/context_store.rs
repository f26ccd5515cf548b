//! `PostgresContext`: one run's key/value state as one JSONB row. Every
//! operation is one statement, so concurrent writers never lose each other's
//! keys (no read-modify-write on the client).

use crate::error::{CoreError, CoreResult};
use crate::pg::{quote_table, PgPool, PgTarget};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::sync::Arc;

pub struct ContextStore {
    pool: Arc<PgPool>,
    run_id: String,
    sql: Sql,
}

struct Sql {
    get: String,
    set: String,
    has: String,
    delete: String,
    to_json: String,
    patch: String,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum PatchOp {
    Set {
        key: String,
        #[serde(default)]
        value: Value,
    },
    Delete {
        key: String,
    },
}

/// The net effect of a list of operations: the last operation on a key wins.
pub fn net_effect(ops: Vec<PatchOp>) -> (Map<String, Value>, Vec<String>) {
    let mut sets = Map::new();
    let mut deletes: Vec<String> = Vec::new();
    for op in ops {
        match op {
            PatchOp::Set { key, value } => {
                deletes.retain(|k| k != &key);
                sets.insert(key, value);
            }
            PatchOp::Delete { key } => {
                sets.remove(&key);
                if !deletes.contains(&key) {
                    deletes.push(key);
                }
            }
        }
    }
    (sets, deletes)
}

impl ContextStore {
    pub fn new(target: &PgTarget, table: &str, run_id: &str) -> CoreResult<ContextStore> {
        let t = quote_table(table)?;
        let pool = PgPool::shared(target)?;
        Ok(ContextStore {
            pool,
            run_id: run_id.to_string(),
            sql: Sql {
                get: format!("SELECT (context_data -> $2::text)::text FROM {t} WHERE run_id = $1"),
                set: format!(
                    "INSERT INTO {t} AS t (run_id, context_data) VALUES ($1, jsonb_build_object($2::text, $3::text::jsonb)) \
                     ON CONFLICT (run_id) DO UPDATE SET context_data = COALESCE(t.context_data, '{{}}'::jsonb) || EXCLUDED.context_data"
                ),
                has: format!("SELECT context_data ? $2::text FROM {t} WHERE run_id = $1"),
                delete: format!("UPDATE {t} SET context_data = context_data - $2::text WHERE run_id = $1 AND context_data ? $2::text RETURNING 1"),
                to_json: format!("SELECT context_data::text FROM {t} WHERE run_id = $1"),
                patch: format!(
                    "INSERT INTO {t} AS t (run_id, context_data) VALUES ($1, $2::text::jsonb) \
                     ON CONFLICT (run_id) DO UPDATE SET context_data = (COALESCE(t.context_data, '{{}}'::jsonb) - $3::text[]) || EXCLUDED.context_data"
                ),
            },
        })
    }

    /// The value's JSON text, or `None` when the key is missing.
    pub async fn get(&self, key: &str) -> CoreResult<Option<String>> {
        let rows = self.pool.query("reading a context key", &self.sql.get, &[&self.run_id, &key]).await?;
        Ok(rows.first().and_then(|r| r.get::<_, Option<String>>(0)))
    }

    pub async fn set(&self, key: &str, value_json: &str) -> CoreResult<()> {
        check_json(value_json, key)?;
        self.pool.query("writing a context key", &self.sql.set, &[&self.run_id, &key, &value_json]).await?;
        Ok(())
    }

    pub async fn has(&self, key: &str) -> CoreResult<bool> {
        let rows = self.pool.query("checking a context key", &self.sql.has, &[&self.run_id, &key]).await?;
        Ok(rows.first().is_some_and(|r| r.get::<_, bool>(0)))
    }

    pub async fn delete(&self, key: &str) -> CoreResult<bool> {
        let rows = self.pool.query("deleting a context key", &self.sql.delete, &[&self.run_id, &key]).await?;
        Ok(!rows.is_empty())
    }

    pub async fn to_json(&self) -> CoreResult<String> {
        let rows = self.pool.query("reading a context", &self.sql.to_json, &[&self.run_id]).await?;
        Ok(rows.first().map(|r| r.get::<_, String>(0)).unwrap_or_else(|| "{}".into()))
    }

    pub async fn patch(&self, ops_json: &str) -> CoreResult<()> {
        let ops: Vec<PatchOp> = serde_json::from_str(ops_json).map_err(|e| {
            CoreError::InvalidArgument(format!(
                "patch operations must be an array of {{ op: 'set', key, value }} or {{ op: 'delete', key }}: {e}"
            ))
        })?;
        let (sets, deletes) = net_effect(ops);
        let sets = Value::Object(sets).to_string();
        self.pool.query("patching a context", &self.sql.patch, &[&self.run_id, &sets, &deletes]).await?;
        Ok(())
    }
}

fn check_json(value_json: &str, key: &str) -> CoreResult<()> {
    serde_json::from_str::<serde::de::IgnoredAny>(value_json)
        .map(|_| ())
        .map_err(|e| CoreError::json(format!("the value for context key {key:?}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(key: &str, value: Value) -> PatchOp {
        PatchOp::Set { key: key.into(), value }
    }
    fn delete(key: &str) -> PatchOp {
        PatchOp::Delete { key: key.into() }
    }

    #[test]
    fn net_effect_keeps_the_last_op_on_each_key() {
        let ops = vec![
            set("a", json!(1)),
            set("a", json!(2)),
            delete("b"),
            set("b", json!("back")),
            set("c", json!(3)),
            delete("c"),
            delete("d"),
            delete("d"),
        ];
        let (sets, deletes) = net_effect(ops);
        assert_eq!(Value::Object(sets), json!({"a": 2, "b": "back"}));
        assert_eq!(deletes, ["c", "d"], "each deleted key once; a key set again is not deleted");
        assert_eq!(net_effect(vec![]), (Map::new(), vec![]));
    }
}
