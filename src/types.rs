//! The binding's typed boundary: the JS callbacks the core calls (one alias
//! per callback shape), the configuration both native classes are built
//! from, and what the run API resolves with. `napi build` turns these and
//! their doc comments into `native.d.ts`, the binding's documentation.
//!
//! JSON text crosses only where it pays: the hot node-call path (`RunNodeFn`)
//! and user values (contexts, status data, outputs, blueprints), which may be
//! big or hold what napi's value conversion would change (`__proto__` keys,
//! integers past 2^53, more than 128 levels).

use flowcraft_core::json_text::JsonText;
use flowcraft_core::run_store::RunSummary as CoreRunSummary;
use flowcraft_core::runs::{NodeReport, RunReport as CoreRunReport};
use napi::bindgen_prelude::{Either3, Promise, ToNapiValue, TypeName, ValueType};
use napi::threadsafe_function::ThreadsafeFunction;
use napi::Status;
use napi_derive::napi;
use serde_json::Value;
use std::collections::HashMap;

use crate::{PgTargetJs, RedisTargetJs, TlsJs};

/// `runNode` (lib/node-runner.js): runs one node's code. Called with
/// `[requestJson, inputJson, key1, value1Json, key2, value2Json, ...]`: the
/// request without its input and context, the input's JSON text (`''`:
/// `undefined`), then each context key and its value's JSON text (neither the
/// input nor the context is serialised again or parsed on its way to node code).
///
/// Request: `{ runId, blueprintId, nodeId, uses, params, config: { maxRetries,
/// retryDelay, timeout, ... }, inputFromMapping?, attempt, traceparent? }`.
/// `inputFromMapping: true` says the input was built from the node's object
/// (or array) `inputs` mapping, its fields that resolved to `undefined`
/// missing. `uses` may differ from the blueprint node's when the core runs a
/// fallback.
///
/// Resolves with JSON text, never rejects (every failure is `ok: false`):
/// `{ ok: true, result: { output?, action? }, writes: [{ op: 'set', key, value } | { op: 'delete', key }] }`
/// or `{ ok: false, error: { message, name, fatal? }, writes }`. `output` absent
/// is `undefined` (no `_outputs.<id>` key), `null` is `null`; a failure's
/// `writes` (the node's, its `recover()`'s, middleware's) are committed with
/// it; `fatal: true` (Flowcraft's `isFatal`) runs no fallback. Strings
/// PostgreSQL cannot store (U+0000, lone surrogates) in the output or a write
/// fail the node on the JS side. The JS side runs middleware, retries
/// (`config.maxRetries` attempts in all), the per-attempt `config.timeout` and
/// the class lifecycle; the core decides blueprint fallbacks and routing.
#[napi]
pub type RunNodeFn = ThreadsafeFunction<Vec<CallText>, Promise<String>, Vec<CallText>, Status, false>;

/// A string the binding hands to JS (a `runNode` call, a `readContext` answer): its own,
/// or a value's JSON text the core shares. A big one goes to V8 as an external string
/// over the core's bytes (`external_text`): V8 copies nothing, and the bytes go when V8
/// collects the string. (V8's `JSON.parse` makes the parsed value's strings slices of
/// the text, so a copy would live as long as the value does.)
pub enum CallText {
    Owned(String),
    Json(JsonText),
}

/// What `native.d.ts` calls a `CallText`: JavaScript sees a string.
#[allow(dead_code)]
mod call_text_in_typescript {
    use napi_derive::napi;

    /// A string of a `runNode` call (`RunNodeFn`) or a `readContext` answer.
    #[napi]
    pub type CallText = String;
}

impl TypeName for CallText {
    fn type_name() -> &'static str {
        "string"
    }

    fn value_type() -> ValueType {
        ValueType::String
    }
}

impl ToNapiValue for CallText {
    unsafe fn to_napi_value(env: napi::sys::napi_env, val: Self) -> napi::Result<napi::sys::napi_value> {
        let text = match &val {
            CallText::Owned(s) => s.as_str(),
            CallText::Json(j) => {
                // SAFETY: on the JS thread with its env (as below)
                if let Some(value) = unsafe { crate::external_text::external(env, j) } {
                    return Ok(value);
                }
                j.as_str()
            }
        };
        // SAFETY: called by napi on the JS thread with its env, as `&str`'s own conversion is.
        unsafe { <&str as ToNapiValue>::to_napi_value(env, text) }
    }
}

/// `evaluate` (lib/callbacks.js), only when the user passed
/// `runtimeOptions.evaluator`: called with JSON text `{ expression, data }`,
/// resolves with JSON text `{ value }` (`{}` for undefined).
#[napi]
pub type EvaluateFn = ThreadsafeFunction<String, Promise<String>, String, Status, false>;

/// `notify` (lib/callbacks.js), fire and forget, with JSON text:
/// `{ kind: 'log', level, message, meta }`, `{ kind: 'event', type, payload }`
/// (`job:*`, `workflow:finish`, ...), or `{ kind: 'cancel', runId }` when a
/// run with nodes running in this worker was cancelled (abort their `signal`).
#[napi]
pub type NotifyFn = ThreadsafeFunction<String, (), String, Status, false>;

/// `coordinate` (lib/adapter.js `createCoordinate`): a user's own
/// `ICoordinationStore`, used when `config.redis` is absent. Called with JSON
/// text `{ op: 'increment', key, ttlSeconds }` or `{ op: 'setIfNotExist', key,
/// value, ttlSeconds }`, resolves with JSON text `{ value: number | boolean }`.
/// The core uses it for delivery counters and reconcile's node locks only.
#[napi]
pub type CoordinateFn = ThreadsafeFunction<String, Promise<String>, String, Status, false>;

/// `CoordinateFn` as `NativeRuns` holds it: weakly, so it never keeps Node alive.
#[napi]
pub type WeakCoordinateFn = ThreadsafeFunction<String, Promise<String>, String, Status, false, true>;

/// What `NativeWorker` and `NativeRuns` are built from (lib/adapter.js
/// `buildConfig`). Every option is validated by the JS layer first.
#[napi(object)]
pub struct NativeConfig {
    /// `amqp://` or `amqps://` URL of the broker (of one node of a cluster).
    pub amqp_url: String,
    /// TLS for `amqps://` beside the URL's own parameters (e.g. the CA of an
    /// amqplib connection, which keeps no socket options).
    pub amqp_tls: Option<TlsJs>,
    /// The other nodes of the broker's cluster, tried in turn.
    pub amqp_alternate_urls: Option<Vec<String>>,
    /// Declare a missing job queue as this type, refuse an existing one of another.
    #[napi(ts_type = "'classic' | 'quorum'")]
    pub queue_type: Option<String>,
    /// Arguments of the job queue's declaration (`{ 'x-max-length': 100000 }`).
    #[napi(ts_type = "Record<string, string | number | boolean>")]
    pub queue_arguments: Option<HashMap<String, Either3<String, f64, bool>>>,
    /// false: never declare queues (read-only tools); a missing one is an error. Default true.
    pub declare_queues: Option<bool>,
    pub pg: PgTargetJs,
    /// Our RedisCoordinationStore's target; absent for a user's own store,
    /// whose methods are called through the `coordinate` callback.
    pub redis: Option<RedisTargetJs>,
    pub queue_name: String,
    pub context_table_name: String,
    pub status_table_name: String,
    // These have their defaults in JS (lib/options.js), which always sends them:
    // no second set of defaults here that could disagree.
    /// Jobs run at once (prefetch).
    pub concurrency: u32,
    /// Deliveries of one job before it is dead-lettered as poison.
    pub max_deliveries: u32,
    /// Create or migrate the tables at start (false: check them only).
    pub create_tables: bool,
    /// Work beside the TypeScript adapter's workers (the adapter's `typescriptCompat`):
    /// outputs and inputs also in the context row, join arrivals counted in their
    /// coordination-store keys (core/src/compat.rs). Absent: off.
    pub typescript_compat: Option<bool>,
    /// JSON text of `{ "<blueprint id>": { id, nodes, edges, ... } }`.
    pub blueprints_json: String,
    /// The registry's `uses` keys: `'function'` or `'class'` each.
    #[napi(ts_type = "Record<string, 'function' | 'class'>")]
    pub registry: HashMap<String, String>,
    /// true: conditions and transforms go through the `evaluate` callback.
    pub custom_evaluator: Option<bool>,
    /// false: no event bus listens, so the core sends no events to `notify` (one
    /// crossing into JavaScript less per job and per successor). Absent: true.
    pub emit_events: Option<bool>,
    /// Any key of core/src/timings.rs `Timings` (`pgQueryTimeoutMs`, ...), in ms;
    /// absent keys keep their defaults, unknown keys are refused.
    pub timings: Option<HashMap<String, f64>>,
}

/// What `startRun` resolves with.
#[napi(object)]
pub struct StartedRun {
    /// The run's id: the one asked for, or the first run's for a repeated
    /// idempotency key.
    pub run_id: String,
    /// false when the run id or idempotency key was already used (no new run).
    pub created: bool,
}

/// What `waitForRun` resolves with once the run is completed, failed,
/// cancelled or awaiting.
#[napi(object)]
pub struct FinishedRun {
    /// The status data's `status`.
    pub status: Option<String>,
    /// JSON text of the status row's data, as its writer stored it:
    /// `{ status, payload?: { context, serializedContext, status }, reason? }`.
    pub status_data_json: String,
}

impl From<Value> for FinishedRun {
    fn from(data: Value) -> Self {
        let status = data.get("status").and_then(Value::as_str).map(String::from);
        FinishedRun { status, status_data_json: data.to_string() }
    }
}

/// What `getRun` resolves with (null when there is no such run).
#[napi(object)]
pub struct RunReport {
    pub run_id: String,
    /// Absent for a run with a context row but no status row (started over the wire).
    pub status: Option<String>,
    pub blueprint_id: Option<String>,
    /// When the status row last changed (ISO 8601).
    pub updated_at: Option<String>,
    /// JSON text of the status row's data (`null` when there is none).
    pub status_data_json: String,
    /// JSON text of the run's context (every key, node rows merged in).
    pub context_json: String,
    /// Each node of the run's blueprint (empty when the blueprint is unknown here).
    pub nodes: Vec<NodeState>,
}

impl From<CoreRunReport> for RunReport {
    fn from(r: CoreRunReport) -> Self {
        RunReport {
            run_id: r.run_id,
            status: r.status,
            blueprint_id: r.blueprint_id,
            updated_at: r.updated_at,
            status_data_json: r.status_data.to_string(),
            context_json: r.context.to_string(),
            nodes: r.nodes.into_iter().map(NodeState::from).collect(),
        }
    }
}

/// One node of a `RunReport`.
#[napi(object)]
pub struct NodeState {
    pub id: String,
    pub uses: String,
    #[napi(ts_type = "'done' | 'running' | 'sleeping' | 'waiting' | 'awaiting' | 'failed' | 'not_reached'")]
    pub state: String,
    /// A sleeping node's wake-up time (ISO 8601, UTC).
    pub wake_up_at: Option<String>,
    /// The child run a running `subflow` node waits for.
    pub child_run_id: Option<String>,
}

impl From<NodeReport> for NodeState {
    fn from(n: NodeReport) -> Self {
        NodeState {
            id: n.id,
            uses: n.uses,
            state: n.state.to_string(),
            wake_up_at: n.wake_up_at,
            child_run_id: n.child_run_id,
        }
    }
}

/// One line of `listRuns`, newest first.
#[napi(object)]
pub struct RunSummary {
    pub run_id: String,
    pub status: Option<String>,
    pub blueprint_id: Option<String>,
    /// Seconds since the status row last changed.
    pub idle_seconds: Option<f64>,
    /// Nodes done (for a run without node rows: its `_outputs.*` keys).
    pub done_nodes: i64,
    /// A failed or cancelled run's reason.
    pub reason: Option<String>,
}

impl From<CoreRunSummary> for RunSummary {
    fn from(r: CoreRunSummary) -> Self {
        RunSummary {
            run_id: r.run_id,
            status: r.status,
            blueprint_id: r.blueprint_id,
            idle_seconds: r.idle_seconds,
            done_nodes: r.done_nodes,
            reason: r.reason,
        }
    }
}

/// A worker's counters since `start()` (`stats()`).
#[napi(object)]
pub struct WorkerCounters {
    /// Jobs acknowledged (done, or nothing left to do).
    pub processed: i64,
    /// Jobs refused and sent to the dead-letter queue (bad job, poison, failed run).
    pub failed: i64,
    /// Of those, the ones the dead-letter queue confirmed.
    pub dead_lettered: i64,
    /// In-place retries after service errors (not redeliveries).
    pub retried: i64,
    /// Jobs run under their predecessor's delivery, without a message of their own.
    pub continued: i64,
    /// Jobs running now.
    pub in_flight: i64,
    /// Median of recent job times (the last 4096), in ms.
    pub p50_ms: f64,
    /// 99th percentile of recent job times, in ms.
    pub p99_ms: f64,
}

/// A message of the dead-letter queue `<queueName>.dead`, left in place.
#[napi(object)]
pub struct DeadLetter {
    /// The message body as text (a job's JSON, or whatever was published).
    pub body: String,
    /// Why it was dead-lettered (its `x-flowcraft-reason` header).
    pub reason: String,
    /// When, in ms since the epoch (0 when unknown).
    pub dead_at: i64,
}

impl From<(String, String, i64)> for DeadLetter {
    fn from((body, reason, dead_at): (String, String, i64)) -> Self {
        DeadLetter { body, reason, dead_at }
    }
}

/// A JS number as JSON has it (what `JSON.stringify` then serde would make):
/// whole numbers as integers, others as floats, non-finite ones as null.
pub(crate) fn json_number(n: f64) -> Value {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63
    if n.fract() == 0.0 && n.abs() < LIMIT {
        if n >= 0.0 {
            Value::from(n as u64)
        } else {
            Value::from(n as i64)
        }
    } else {
        serde_json::Number::from_f64(n).map(Value::Number).unwrap_or(Value::Null)
    }
}
