//! napi binding: converts JS values, holds the threadsafe functions into JS,
//! and maps core errors to JS errors. No business logic here.
//!
//! napi-rs async functions can only reject with a generic status, so a core
//! error crosses as `[CODE] message`; the JS layer (lib/load-native.js) moves
//! the code to `error.code`. The typed boundary (callbacks, config, results)
//! is in `types.rs`; `napi build` writes all of it, with these doc comments,
//! to `native.d.ts`.

mod external_text;
mod types;

use flowcraft_core::amqp::{QueueTarget, QueueType};
use flowcraft_core::blueprint::Blueprints;
use flowcraft_core::context_store::ContextStore;
use flowcraft_core::coordination::{Coordination, RedisTarget};
use flowcraft_core::error::CoreError;
use flowcraft_core::executor::{BoxFuture, Level, NodeExecutor, NodeRequest, NodeResponse};
use flowcraft_core::job::JobRunner;
use flowcraft_core::pg::{PgTarget, PgTls};
use flowcraft_core::run_store::RunStore;
use flowcraft_core::runs::RunClient;
use flowcraft_core::timings::Timings;
use flowcraft_core::tls::{TlsSettings, Verify};
use flowcraft_core::worker::{Worker, WorkerConfig};
use napi::bindgen_prelude::{Either3, Promise};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use napi_derive::napi;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use types::{
    json_number, CallText, CoordinateFn, DeadLetter, EvaluateFn, FinishedRun, NativeConfig, NotifyFn, RunNodeFn,
    RunReport, RunSummary, StartedRun, WeakCoordinateFn, WorkerCounters,
};

/// Runs when Node loads the addon, before any thread of ours exists: every
/// thread (tokio's and lapin's I/O thread) gets a stack deep enough for any
/// header table a broker frame can hold (see amqp::THREAD_STACK_BYTES).
#[napi_derive::module_init]
fn init() {
    flowcraft_core::amqp::size_io_threads();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(flowcraft_core::amqp::THREAD_STACK_BYTES)
        .build()
        .expect("the tokio runtime starts");
    napi::bindgen_prelude::create_custom_tokio_runtime(runtime);
}

/// `[CODE] message`, or `[CODE,transient] message` for a failure that may heal
/// (lib/load-native.js turns these into `error.code` and `error.transient`).
fn js_error(e: CoreError) -> napi::Error {
    let transient = if e.is_transient() { ",transient" } else { "" };
    napi::Error::new(Status::GenericFailure, format!("[{}{transient}] {}", e.code(), e))
}

fn invalid(message: String) -> napi::Error {
    js_error(CoreError::InvalidArgument(message))
}

/// Where a PostgreSQL server is (lib/targets.js `toPgTarget`). All optional:
/// missing fields fall back to libpq's defaults. One pool per distinct target
/// per process, shared by every context, store and worker.
#[napi(object)]
#[derive(Clone, Default)]
pub struct PgTargetJs {
    /// `postgres://user:pass@host:port/db?...`, or libpq's `host=a,b ...` (several hosts).
    pub connection_string: Option<String>,
    pub host: Option<String>,
    pub port: Option<u32>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub database: Option<String>,
    /// true: TLS, fully verified (node-pg's `ssl: true`).
    pub ssl: Option<bool>,
    pub tls: Option<TlsJs>,
}

/// TLS settings of one service (PEM text, not file names).
#[napi(object)]
#[derive(Clone, Default)]
pub struct TlsJs {
    /// Extra CAs to trust, beside the system's and NODE_EXTRA_CA_CERTS.
    pub ca: Option<String>,
    /// Client certificate chain.
    pub cert: Option<String>,
    /// Client private key.
    pub key: Option<String>,
    /// The name to verify and send as SNI, when it is not the host.
    pub server_name: Option<String>,
    /// 'full' (default), 'chain' (not the host name) or 'none'.
    #[napi(ts_type = "'full' | 'chain' | 'none'")]
    pub verify: Option<String>,
    /// PostgreSQL only: a server without TLS may be used in plaintext (libpq's prefer).
    pub optional: Option<bool>,
}

impl TlsJs {
    fn core(&self) -> napi::Result<TlsSettings> {
        let verify = match self.verify.as_deref() {
            None | Some("full") => Verify::Full,
            Some("chain") => Verify::Chain,
            Some("none") => Verify::None,
            Some(other) => return Err(invalid(format!("tls.verify {other:?} must be 'full', 'chain' or 'none'"))),
        };
        Ok(TlsSettings {
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            server_name: self.server_name.clone(),
            verify,
        })
    }
}

/// A TCP port from JS, refused when out of range.
fn tcp_port(port: Option<u32>, service: &str) -> napi::Result<Option<u16>> {
    match port {
        Some(p) if p == 0 || p > 65535 => Err(invalid(format!("{service} port {p} is out of range (1 to 65535)"))),
        p => Ok(p.map(|p| p as u16)),
    }
}

impl PgTargetJs {
    fn core(&self) -> napi::Result<PgTarget> {
        let port = tcp_port(self.port, "PostgreSQL")?;
        Ok(PgTarget {
            connection_string: self.connection_string.clone(),
            host: self.host.clone(),
            port,
            user: self.user.clone(),
            password: self.password.clone(),
            database: self.database.clone(),
            ssl: self.ssl,
            tls: match &self.tls {
                Some(t) => Some(PgTls { settings: t.core()?, optional: t.optional.unwrap_or(false) }),
                None => None,
            },
            timings: Timings::default(),
        })
    }
}

/// Where a Redis server is (lib/targets.js `toRedisTarget`). One multiplexed
/// connection per distinct target per process.
#[napi(object)]
#[derive(Clone, Default)]
pub struct RedisTargetJs {
    /// `redis://`, `rediss://` or `redis+unix://`.
    pub url: Option<String>,
    pub host: Option<String>,
    pub port: Option<u32>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: Option<u32>,
    pub tls: Option<TlsJs>,
    /// ioredis' `keyPrefix`, prepended to the keys the core writes (in
    /// `NativeConfig.redis`; `NativeRedisStore` ignores it: the JS store
    /// prefixes its keys itself).
    pub key_prefix: Option<String>,
}

impl RedisTargetJs {
    fn core(&self) -> napi::Result<RedisTarget> {
        let port = tcp_port(self.port, "Redis")?;
        Ok(RedisTarget {
            url: self.url.clone(),
            host: self.host.clone(),
            port,
            username: self.username.clone(),
            password: self.password.clone(),
            db: self.db.map(i64::from),
            tls: self.tls.as_ref().map(TlsJs::core).transpose()?,
            key_prefix: self.key_prefix.clone(),
            timings: Timings::default(),
        })
    }
}

/// One run's context row (PostgresContext's engine). Values cross as JSON
/// text; every call is one statement. The constructor throws
/// `[ERR_INVALID_TABLE_NAME]` synchronously.
#[napi]
pub struct NativeContext {
    inner: Arc<ContextStore>,
}

#[napi]
impl NativeContext {
    #[napi(constructor)]
    pub fn new(pg: PgTargetJs, table_name: String, run_id: String) -> napi::Result<Self> {
        let store = ContextStore::new(&pg.core()?, &table_name, &run_id).map_err(js_error)?;
        Ok(NativeContext { inner: Arc::new(store) })
    }

    /// JSON text of the value, or null when the key is missing.
    #[napi]
    pub async fn get(&self, key: String) -> napi::Result<Option<String>> {
        self.inner.get(&key).await.map_err(js_error)
    }

    /// Sets `key` to the value whose JSON text is `valueJson`.
    #[napi]
    pub async fn set(&self, key: String, value_json: String) -> napi::Result<()> {
        self.inner.set(&key, &value_json).await.map_err(js_error)
    }

    #[napi]
    pub async fn has(&self, key: String) -> napi::Result<bool> {
        self.inner.has(&key).await.map_err(js_error)
    }

    /// True only when the key existed.
    #[napi]
    pub async fn delete(&self, key: String) -> napi::Result<bool> {
        self.inner.delete(&key).await.map_err(js_error)
    }

    /// JSON text of the whole context (`{}` when the run has no row).
    #[napi]
    pub async fn to_json(&self) -> napi::Result<String> {
        self.inner.to_json().await.map_err(js_error)
    }

    /// Applies JSON text `[{ op: 'set', key, value } | { op: 'delete', key }]`
    /// in one statement.
    #[napi]
    pub async fn patch(&self, operations_json: String) -> napi::Result<()> {
        self.inner.patch(&operations_json).await.map_err(js_error)
    }
}

/// RedisCoordinationStore's engine (keys as given: the JS store prefixes them).
#[napi]
pub struct NativeRedisStore {
    inner: Coordination,
}

#[napi]
impl NativeRedisStore {
    #[napi(constructor)]
    pub fn new(target: RedisTargetJs) -> napi::Result<Self> {
        // The JS store prefixes its keys itself.
        let target = RedisTarget { key_prefix: None, ..target.core()? };
        Ok(NativeRedisStore { inner: Coordination::shared(&target).map_err(js_error)? })
    }

    #[napi]
    pub async fn increment(&self, key: String, ttl_seconds: u32) -> napi::Result<i64> {
        self.inner.increment(&key, u64::from(ttl_seconds)).await.map_err(js_error)
    }

    #[napi]
    pub async fn set_if_not_exist(&self, key: String, value: String, ttl_seconds: u32) -> napi::Result<bool> {
        self.inner.set_if_not_exist(&key, &value, u64::from(ttl_seconds)).await.map_err(js_error)
    }

    #[napi]
    pub async fn delete(&self, key: String) -> napi::Result<()> {
        self.inner.delete(&key).await.map(|_| ()).map_err(js_error)
    }

    #[napi]
    pub async fn extend_ttl(&self, key: String, ttl_seconds: u32) -> napi::Result<bool> {
        self.inner.extend_ttl(&key, u64::from(ttl_seconds)).await.map_err(js_error)
    }

    #[napi]
    pub async fn get(&self, key: String) -> napi::Result<Option<String>> {
        self.inner.get(&key).await.map_err(js_error)
    }
}

/// `NativeConfig` read into the core's types.
struct Config {
    amqp_url: String,
    amqp_tls: Option<TlsSettings>,
    amqp_alternate_urls: Vec<String>,
    queue_type: Option<QueueType>,
    queue_arguments: Option<serde_json::Map<String, Value>>,
    declare_queues: bool,
    pg: PgTarget,
    redis: Option<RedisTarget>,
    // The options below have their defaults in JS (lib/options.js), which always
    // sends them: no second set of defaults here that could disagree.
    queue_name: String,
    context_table_name: String,
    status_table_name: String,
    concurrency: usize,
    create_tables: bool,
    /// `typescriptCompat` (core/src/compat.rs).
    typescript_compat: bool,
    blueprints: Value,
    registry: HashSet<String>,
    custom_evaluator: bool,
    emit_events: bool,
    max_deliveries: u32,
    timings: Timings,
}

impl Config {
    fn read(c: NativeConfig, what: &str) -> napi::Result<Config> {
        let json = |e| js_error(CoreError::json(what, e));
        let queue_type = match c.queue_type.as_deref() {
            None => None,
            Some("classic") => Some(QueueType::Classic),
            Some("quorum") => Some(QueueType::Quorum),
            Some(other) => return Err(invalid(format!("queueType {other:?} must be 'classic' or 'quorum'"))),
        };
        let queue_arguments = c.queue_arguments.map(|args| {
            args.into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        Either3::A(s) => Value::String(s),
                        Either3::B(n) => json_number(n),
                        Either3::C(b) => Value::Bool(b),
                    };
                    (k, v)
                })
                .collect()
        });
        let timings: Timings = match c.timings {
            Some(t) => serde_json::from_value(Value::Object(t.into_iter().map(|(k, v)| (k, json_number(v))).collect()))
                .map_err(json)?,
            None => Timings::default(),
        };
        // The timings travel with each service's target.
        let pg = PgTarget { timings: timings.clone(), ..c.pg.core()? };
        let redis = match c.redis {
            Some(r) => Some(RedisTarget { timings: timings.clone(), ..r.core()? }),
            None => None,
        };
        Ok(Config {
            amqp_url: c.amqp_url,
            amqp_tls: c.amqp_tls.as_ref().map(TlsJs::core).transpose()?,
            amqp_alternate_urls: c.amqp_alternate_urls.unwrap_or_default(),
            queue_type,
            queue_arguments,
            declare_queues: c.declare_queues.unwrap_or(true),
            pg,
            redis,
            queue_name: c.queue_name,
            context_table_name: c.context_table_name,
            status_table_name: c.status_table_name,
            concurrency: c.concurrency as usize,
            create_tables: c.create_tables,
            typescript_compat: c.typescript_compat.unwrap_or(false),
            blueprints: serde_json::from_str(&c.blueprints_json).map_err(json)?,
            registry: c.registry.into_keys().collect(),
            custom_evaluator: c.custom_evaluator.unwrap_or(false),
            emit_events: c.emit_events.unwrap_or(true),
            max_deliveries: c.max_deliveries,
            timings,
        })
    }

    fn queue_target(&self) -> QueueTarget {
        QueueTarget {
            url: self.amqp_url.clone(),
            alternates: self.amqp_alternate_urls.clone(),
            queue: self.queue_name.clone(),
            tls: self.amqp_tls.clone(),
            queue_type: self.queue_type,
            queue_arguments: self.queue_arguments.clone(),
            declare: self.declare_queues,
            timings: self.timings.clone(),
        }
    }
}

/// The core's way into JavaScript: node code, the user's evaluator, and the
/// logger / event bus (one `notify` callback).
struct JsBridge {
    run_node: RunNodeFn,
    evaluate: Option<EvaluateFn>,
    notify: NotifyFn,
    /// An event bus listens (`NativeConfig::emit_events`).
    events: bool,
}

impl JsBridge {
    fn send(&self, message: Value) {
        let _ = self.notify.call(message.to_string(), ThreadsafeFunctionCallMode::NonBlocking);
    }
}

async fn call_js<T: 'static + napi::bindgen_prelude::ToNapiValue + Send>(
    f: &ThreadsafeFunction<T, Promise<String>, T, Status, false>,
    arg: T,
) -> Result<String, String> {
    match f.call_async_catch(arg).await {
        Ok(promise) => promise.await.map_err(|e| e.reason.clone()),
        Err(e) => Err(e.reason.clone()),
    }
}

/// What `runNode` is called with (`RunNodeFn`): the request's JSON without its input
/// and context, the input's JSON text, then each context key and its value's JSON
/// text. The core serialised each value once; the JS side parses a value only when
/// the node reads it, so a big input or context is not copied more than once on its
/// way to node code (issue 12, item 10); the request is dropped before the node runs.
fn node_call(mut request: NodeRequest) -> Result<Vec<CallText>, String> {
    let context = std::mem::take(&mut request.context);
    let input = request.input.take();
    let head = serde_json::to_string(&request).map_err(|e| e.to_string())?;
    drop(request);
    let mut call = Vec::with_capacity(2 + 2 * context.len());
    call.push(CallText::Owned(head));
    call.push(input.map_or(CallText::Owned(String::new()), CallText::Json));
    for (key, value) in context {
        call.push(CallText::Owned(key));
        call.push(CallText::Owned(value));
    }
    Ok(call)
}

impl NodeExecutor for JsBridge {
    fn run(&self, request: NodeRequest) -> BoxFuture<'_, NodeResponse> {
        Box::pin(async move {
            let node_id = request.node_id.clone();
            let call = match node_call(request) {
                Ok(c) => c,
                Err(e) => {
                    return NodeResponse::failure(format!("cannot serialise the request for node '{node_id}': {e}"))
                }
            };
            match call_js(&self.run_node, call).await {
                Ok(text) => NodeResponse::read(text).unwrap_or_else(|e| {
                    NodeResponse::failure(format!("node '{node_id}' returned an unreadable response: {e}"))
                }),
                Err(reason) => NodeResponse::failure(reason),
            }
        })
    }

    fn has_evaluator(&self) -> bool {
        self.evaluate.is_some()
    }

    fn evaluate(&self, expression: &str, data: Value) -> BoxFuture<'_, Option<Value>> {
        let arg = json!({ "expression": expression, "data": data }).to_string();
        Box::pin(async move {
            let f = self.evaluate.as_ref()?;
            let text = call_js(f, arg).await.ok()?;
            let mut v: Value = serde_json::from_str(&text).ok()?;
            v.get_mut("value").map(Value::take)
        })
    }

    fn log(&self, level: Level, message: &str, meta: Value) {
        self.send(json!({ "kind": "log", "level": level, "message": message, "meta": meta }));
    }

    fn event(&self, kind: &str, payload: Value) {
        if self.events {
            self.send(json!({ "kind": "event", "type": kind, "payload": payload }));
        }
    }

    fn cancel(&self, run_id: &str) {
        self.send(json!({ "kind": "cancel", "runId": run_id }));
    }
}

/// A user's own `ICoordinationStore`, reached through one JS callback taking
/// `{ op: 'increment' | 'setIfNotExist', key, value?, ttlSeconds }` and
/// answering `{ value }`.
/// The worker holds it strongly, `NativeRuns` weakly.
enum JsCoordination {
    Strong(CoordinateFn),
    Weak(WeakCoordinateFn),
}

impl JsCoordination {
    async fn call(&self, request: Value) -> flowcraft_core::error::CoreResult<Value> {
        let fail = |m: String| CoreError::CoordinationStore(m);
        let called = match self {
            JsCoordination::Strong(f) => f.call_async_catch(request.to_string()).await,
            JsCoordination::Weak(f) => f.call_async_catch(request.to_string()).await,
        };
        let text = match called {
            Ok(p) => p.await.map_err(|e| fail(e.reason.clone()))?,
            Err(e) => return Err(fail(e.reason.clone())),
        };
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| CoreError::CoordinationAnswer(format!("the coordination store failed: {e}")))?;
        Ok(v.get("value").cloned().unwrap_or(Value::Null))
    }
}

impl flowcraft_core::coordination::CoordinationStore for JsCoordination {
    fn increment<'a>(
        &'a self,
        key: &'a str,
        ttl_seconds: u64,
    ) -> BoxFuture<'a, flowcraft_core::error::CoreResult<i64>> {
        Box::pin(async move {
            let v = self.call(json!({ "op": "increment", "key": key, "ttlSeconds": ttl_seconds })).await?;
            v.as_f64().map(|n| n as i64).ok_or_else(|| {
                CoreError::CoordinationAnswer(format!("the coordination store's increment returned {v}, not a number"))
            })
        })
    }
    fn set_if_not_exist<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        ttl_seconds: u64,
    ) -> BoxFuture<'a, flowcraft_core::error::CoreResult<bool>> {
        Box::pin(async move {
            let v = self
                .call(json!({ "op": "setIfNotExist", "key": key, "value": value, "ttlSeconds": ttl_seconds }))
                .await?;
            Ok(v.as_bool().unwrap_or(false))
        })
    }
}

fn coordination_of(
    redis: &Option<RedisTarget>,
    coordinate: Option<JsCoordination>,
) -> napi::Result<Arc<dyn flowcraft_core::coordination::CoordinationStore>> {
    match (redis, coordinate) {
        (Some(target), _) => Ok(Arc::new(Coordination::shared(target).map_err(js_error)?)),
        (None, Some(coordinate)) => Ok(Arc::new(coordinate)),
        (None, None) => Err(invalid("a coordination store is required: pass a RedisCoordinationStore or an object with increment() and setIfNotExist()".into())),
    }
}

/// Every statement the worker needs on these tables (tables, columns, indexes,
/// triggers), as one idempotent script: what `npx flowcraft-rabbitmq sql` prints.
#[napi]
pub fn tables_sql(context_table: String, status_table: String) -> napi::Result<String> {
    Ok(flowcraft_core::schema::Schema::new(&context_table, &status_table).map_err(js_error)?.ddl())
}

/// The RabbitMQ worker (RabbitMqAdapter's engine). A failing call throws
/// or rejects with `[CODE] message` (`[CODE,transient] message` for a
/// failure that may heal); lib/load-native.js makes it `error.code`.
#[napi]
pub struct NativeWorker {
    worker: Arc<Worker>,
    /// Reads context keys for node code (`readContext`).
    store: Arc<RunStore>,
}

#[napi]
impl NativeWorker {
    #[napi(constructor)]
    pub fn new(
        config: NativeConfig,
        run_node: RunNodeFn,
        evaluate: Option<EvaluateFn>,
        notify: NotifyFn,
        coordinate: Option<CoordinateFn>,
    ) -> napi::Result<Self> {
        let config = Config::read(config, "the worker configuration")?;
        let blueprints = Blueprints::from_value(config.blueprints.clone()).map_err(js_error)?;
        let registry = config.registry.clone();
        let store =
            RunStore::new(&config.pg, &config.context_table_name, &config.status_table_name).map_err(js_error)?;
        let reader =
            RunStore::new(&config.pg, &config.context_table_name, &config.status_table_name).map_err(js_error)?;
        let coordination = coordination_of(&config.redis, coordinate.map(JsCoordination::Strong))?;
        let evaluate = if config.custom_evaluator { evaluate } else { None };
        let bridge = JsBridge { run_node, evaluate, notify, events: config.emit_events };
        let runner = JobRunner::new(blueprints, registry, store, coordination, Arc::new(bridge))
            .with_compat(config.typescript_compat);
        let worker = Worker::new(
            runner,
            WorkerConfig {
                target: config.queue_target(),
                concurrency: config.concurrency,
                create_tables: config.create_tables,
                max_deliveries: config.max_deliveries,
            },
        );
        Ok(NativeWorker { worker: Arc::new(worker), store: Arc::new(reader) })
    }

    /// Context keys a node reads on demand (other nodes' `_outputs.<id>`,
    /// `<id>`, `_inputs.<id>`; all keys when `keys` is null), as
    /// `[key1, value1Json, key2, value2Json, ...]` (a big value's text goes to
    /// V8 from the row read, without a copy of its own).
    #[napi]
    pub async fn read_context(&self, run_id: String, keys: Option<Vec<String>>) -> napi::Result<Vec<CallText>> {
        let read = self.store.read_context(&run_id, keys.as_deref()).await.map_err(js_error)?;
        let mut texts = Vec::with_capacity(2 * read.len());
        for (key, value) in read {
            texts.push(CallText::Owned(key));
            texts.push(value.map_or(CallText::Owned("null".into()), CallText::Json));
        }
        Ok(texts)
    }

    /// Prepares tables, connects and starts consuming.
    #[napi]
    pub async fn start(&self) -> napi::Result<()> {
        self.worker.start().await.map_err(js_error)
    }

    /// Stops consuming, drains jobs in flight (up to `timeoutMs`), closes the
    /// connection and releases the JS callbacks.
    #[napi]
    pub async fn stop(&self, timeout_ms: u32) -> napi::Result<()> {
        self.worker.stop(Duration::from_millis(u64::from(timeout_ms))).await.map_err(js_error)
    }

    /// Counters since start.
    #[napi]
    pub fn counters(&self) -> WorkerCounters {
        let c = &self.worker.counters;
        let (p50, p99) = c.percentiles();
        let n = |a: &std::sync::atomic::AtomicU64| i64::try_from(a.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
        WorkerCounters {
            processed: n(&c.processed),
            failed: n(&c.failed),
            dead_lettered: n(&c.dead_lettered),
            retried: n(&c.retried),
            continued: n(&c.continued),
            in_flight: n(&c.in_flight),
            p50_ms: p50,
            p99_ms: p99,
        }
    }
}

/// Run handling without a consumer: start, await, inspect, reconcile,
/// resume, cancel, dead letters. Built from the same `NativeConfig` as the
/// worker; holds no JS callbacks (but a weak `coordinate`), so it never keeps
/// Node alive. Errors as `NativeWorker`'s.
#[napi]
pub struct NativeRuns {
    client: Arc<RunClient>,
}

fn parse_json(text: &str, what: &str) -> napi::Result<Value> {
    serde_json::from_str(text).map_err(|e| js_error(CoreError::json(what, e)))
}

#[napi]
impl NativeRuns {
    /// `coordinate` (a user's own coordination store) is held weakly: it never
    /// keeps Node alive.
    #[napi(constructor)]
    pub fn new(config: NativeConfig, coordinate: Option<WeakCoordinateFn>) -> napi::Result<Self> {
        let config = Config::read(config, "the adapter configuration")?;
        let blueprints = Arc::new(Blueprints::from_value(config.blueprints.clone()).map_err(js_error)?);
        let coordination = coordination_of(&config.redis, coordinate.map(JsCoordination::Weak))?;
        let client = RunClient::new(
            &config.pg,
            &config.context_table_name,
            &config.status_table_name,
            blueprints,
            coordination,
            config.queue_target(),
            config.create_tables,
        )
        .map_err(js_error)?;
        Ok(NativeRuns { client: Arc::new(client) })
    }

    /// Starts a run: its rows (`contextJson`: the initial context, a JSON
    /// object), then its start jobs, all or nothing.
    #[napi]
    pub async fn start_run(
        &self,
        blueprint_id: String,
        context_json: String,
        run_id: String,
        idempotency_key: Option<String>,
        traceparent: Option<String>,
    ) -> napi::Result<StartedRun> {
        let context = match parse_json(&context_json, "the initial context")? {
            Value::Object(m) => m,
            Value::Null => serde_json::Map::new(),
            _ => return Err(invalid("the initial context must be an object".into())),
        };
        let (run_id, created) = self
            .client
            .start_run_traced(&blueprint_id, context, &run_id, idempotency_key.as_deref(), traceparent.as_deref())
            .await
            .map_err(js_error)?;
        Ok(StartedRun { run_id, created })
    }

    /// Resolves once the run is completed, failed, cancelled or awaiting;
    /// rejects with `[ERR_TIMEOUT,transient]` after `timeoutMs`.
    #[napi]
    pub async fn wait_for_run(&self, run_id: String, timeout_ms: u32) -> napi::Result<FinishedRun> {
        let v =
            self.client.wait_for_run(&run_id, Duration::from_millis(u64::from(timeout_ms))).await.map_err(js_error)?;
        Ok(FinishedRun::from(v))
    }

    /// A run's status, context and node states, or null when it does not exist.
    #[napi]
    pub async fn get_run(&self, run_id: String) -> napi::Result<Option<RunReport>> {
        Ok(self.client.get_run(&run_id).await.map_err(js_error)?.map(RunReport::from))
    }

    /// The most recently updated runs (of `status` only, when given), newest first.
    #[napi]
    pub async fn list_runs(&self, limit: u32, status: Option<String>) -> napi::Result<Vec<RunSummary>> {
        let rows = self.client.list_runs(i64::from(limit), status.as_deref()).await.map_err(js_error)?;
        Ok(rows.into_iter().map(RunSummary::from).collect())
    }

    /// Node ids enqueued to move the run on.
    #[napi]
    pub async fn reconcile(&self, run_id: String, stale_after_ms: u32) -> napi::Result<Vec<String>> {
        self.client.reconcile(&run_id, Duration::from_millis(u64::from(stale_after_ms))).await.map_err(js_error)
    }

    #[napi]
    pub async fn stale_runs(&self, threshold_ms: u32, limit: u32) -> napi::Result<Vec<String>> {
        self.client.stale_runs(Duration::from_millis(u64::from(threshold_ms)), i64::from(limit)).await.map_err(js_error)
    }

    #[napi]
    pub async fn resume_with_action(
        &self,
        run_id: String,
        action: String,
        output_json: Option<String>,
    ) -> napi::Result<Vec<String>> {
        let output = match output_json {
            Some(t) => Some(parse_json(&t, "the resume output")?),
            None => None,
        };
        self.client.resume_with_action(&run_id, &action, output, None).await.map_err(js_error)
    }

    /// True when this call cancelled the run (false: it had already ended).
    #[napi]
    pub async fn cancel_run(&self, run_id: String, reason: String) -> napi::Result<bool> {
        self.client.cancel_run(&run_id, &reason).await.map_err(js_error)
    }

    /// Up to `limit` dead letters, oldest first, left in the dead-letter queue.
    #[napi]
    pub async fn dead_letters(&self, limit: u32) -> napi::Result<Vec<DeadLetter>> {
        let list = self.client.dead_letters(limit as usize).await.map_err(js_error)?;
        Ok(list.into_iter().map(DeadLetter::from).collect())
    }

    /// Moves dead letters back to the job queue; returns how many.
    #[napi]
    pub async fn requeue_dead_letters(&self, limit: u32) -> napi::Result<u32> {
        Ok(self.client.requeue_dead_letters(limit as usize).await.map_err(js_error)? as u32)
    }

    #[napi]
    pub async fn close(&self) -> napi::Result<()> {
        self.client.close().await;
        Ok(())
    }
}
