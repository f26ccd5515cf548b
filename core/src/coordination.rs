//! `RedisCoordinationStore`, and the worker's node locks and delivery counters
//! (fan-in joins live in the run's status row, see run_store.rs). One multiplexed,
//! self-reconnecting connection per Redis target per process.

use crate::error::{CoreError, CoreResult};
use crate::timings::Timings;
use crate::tls::{self, TlsSettings, Verify};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct RedisTarget {
    pub url: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: Option<i64>,
    /// TLS as ioredis' `tls` option gives it; a `rediss://` URL implies it.
    pub tls: Option<TlsSettings>,
    /// Prepended to every key, as ioredis' `keyPrefix` does.
    pub key_prefix: Option<String>,
    /// Connect and response timeouts (the adapter's `timings`).
    #[serde(skip)]
    pub timings: Timings,
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl RedisTarget {
    pub fn from_url(url: &str) -> RedisTarget {
        RedisTarget { url: Some(url.to_string()), ..Default::default() }
    }

    fn tls(&self) -> Option<TlsSettings> {
        let secure_url =
            self.url.as_deref().is_some_and(|u| u.get(..7).is_some_and(|s| s.eq_ignore_ascii_case("rediss:")));
        self.tls.clone().or_else(|| secure_url.then(TlsSettings::default))
    }

    /// The URL the redis crate connects to; `rediss://` when TLS is on, with
    /// its `#insecure` marker when verification was turned off.
    fn url(&self) -> CoreResult<String> {
        let url = self.plain_url();
        let Some(tls) = self.tls() else { return Ok(url) };
        if tls.verify == Verify::Chain {
            return Err(CoreError::Unsupported(
                "TLS to Redis verifies the certificate fully, or not at all (rejectUnauthorized: false)".into(),
            ));
        }
        let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
        let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
        Ok(match tls.verify {
            Verify::None => format!("rediss://{rest}#insecure"),
            _ => format!("rediss://{rest}"),
        })
    }

    fn plain_url(&self) -> String {
        if let Some(u) = &self.url {
            return u.clone();
        }
        let auth = match (&self.username, &self.password) {
            (Some(u), Some(p)) => format!("{}:{}@", encode(u), encode(p)),
            (None, Some(p)) => format!(":{}@", encode(p)),
            (Some(u), None) => format!("{}@", encode(u)),
            (None, None) => String::new(),
        };
        let host = self.host.as_deref().unwrap_or("127.0.0.1");
        let host = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
        format!("redis://{auth}{host}:{}/{}", self.port.unwrap_or(6379), self.db.unwrap_or(0))
    }

    /// A client for this target, with the user's CA and client certificate.
    fn client(&self) -> CoreResult<redis::Client> {
        let url = self.url()?;
        let invalid = |e: redis::RedisError| CoreError::InvalidArgument(format!("invalid Redis URL: {e}"));
        let Some(tls) = self.tls() else { return redis::Client::open(url.as_str()).map_err(invalid) };
        if let Some(name) = &tls.server_name {
            let host = redis::IntoConnectionInfo::into_connection_info(url.as_str()).map_err(invalid)?;
            if !host.addr().to_string().starts_with(&format!("{name}:")) {
                return Err(CoreError::Unsupported(format!(
                    "TLS to Redis checks the certificate against the host connected to; servername {name:?} differs from it"
                )));
            }
        }
        // Builds the rustls configuration once to report bad PEM before connecting.
        tls::client_config(&tls, "Redis")?;
        let client_tls = match (&tls.cert, &tls.key) {
            (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                client_cert: cert.clone().into_bytes(),
                client_key: key.clone().into_bytes(),
            }),
            _ => None,
        };
        let root_cert = tls::root_bundle_pem(&tls)?;
        redis::Client::build_with_tls(url.as_str(), redis::TlsCertificates { client_tls, root_cert }).map_err(invalid)
    }

    /// `host:port` for messages; never the password.
    pub fn label(&self) -> String {
        let u = self.plain_url();
        let rest = u.split_once("://").map_or(u.as_str(), |(_, r)| r);
        let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
        rest.split('/').next().unwrap_or(rest).to_string()
    }
}

const INCREMENT_SCRIPT: &str = r#"
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return n
"#;

/// The Redis client's own reconnect after a socket error: this many
/// attempts, at most `REDIS_RECONNECT_MAX_DELAY` apart. Fixed, not a
/// `Timings` setting: the callers' retry loops (`jobRetry*`, `commitRetry*`)
/// own the policy, and a longer inner retry would only hide a dead Redis from
/// the stall warning (docs/architecture.md §6).
const REDIS_RECONNECT_RETRIES: usize = 2;
const REDIS_RECONNECT_MAX_DELAY: Duration = Duration::from_secs(2);

/// One connection attempt to a TLS target before the self-reconnecting
/// manager takes over, so a TLS failure is reported at once (the manager would
/// retry it). A server that does not speak TLS never answers a handshake: a
/// timeout is then told apart by a plaintext PING that it does answer.
async fn check_tls(client: &redis::Client, label: &str, timings: &Timings) -> CoreResult<()> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timings.redis_connect_timeout))
        .set_response_timeout(Some(timings.redis_connect_timeout));
    let Err(source) = client.get_multiplexed_async_connection_with_config(&config).await else { return Ok(()) };
    let tls_error = |reason: String| CoreError::Tls { service: "Redis", target: label.to_string(), reason };
    if let Some(reason) = tls::tls_failure(&source) {
        return Err(tls_error(reason));
    }
    if let redis::ConnectionAddr::TcpTls { host, port, .. } = client.get_connection_info().addr() {
        if source.is_timeout() && answers_plaintext(host, *port).await {
            return Err(tls_error("the server does not speak TLS on this port (it answers in plaintext)".into()));
        }
    }
    Err(CoreError::RedisConnect { target: label.to_string(), source })
}

/// Whether a plaintext Redis answers `PING` at `host:port` within a second.
async fn answers_plaintext(host: &str, port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let probe = async {
        let mut socket = tokio::net::TcpStream::connect((host, port)).await.ok()?;
        socket.write_all(b"PING\r\n").await.ok()?;
        let mut reply = [0u8; 1];
        socket.read_exact(&mut reply).await.ok()?;
        Some(matches!(reply[0], b'+' | b'-'))
    };
    tokio::time::timeout(Duration::from_secs(1), probe).await.ok().flatten().unwrap_or(false)
}

#[derive(Clone)]
pub struct Coordination {
    target: RedisTarget,
    /// The connection and its generation; dropped when a command times out.
    conn: Arc<tokio::sync::Mutex<Option<(u64, ConnectionManager)>>>,
    increment: Arc<redis::Script>,
    arrive_all: Arc<redis::Script>,
    arrive_any: Arc<redis::Script>,
}

/// TTL of the worker's own keys (node locks, delivery counters).
pub const KEY_TTL_SECONDS: u64 = 3600;

/// What the worker needs from a coordination store: delivery counters and
/// node locks. Redis natively; any JS `ICoordinationStore` through callbacks.
pub trait CoordinationStore: Send + Sync + 'static {
    fn increment<'a>(&'a self, key: &'a str, ttl_seconds: u64) -> crate::executor::BoxFuture<'a, CoreResult<i64>>;
    fn set_if_not_exist<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        ttl_seconds: u64,
    ) -> crate::executor::BoxFuture<'a, CoreResult<bool>>;

    /// One arrival at an `'all'` join counted in the TypeScript adapter's counter
    /// (`typescriptCompat`, see compat.rs): `counter` incremented once per `marker`
    /// (a replay answers the count the first call got), deleted when it reaches
    /// `expected` (as the TypeScript adapter deletes it when its join fires). Returns
    /// the count. Here from the two calls every store has: a replay after a crash
    /// between them, or after the marker, answers 0 (the arrival is not counted twice).
    fn arrive_all<'a>(
        &'a self,
        counter: &'a str,
        marker: &'a str,
        expected: i64,
        ttl_seconds: u64,
    ) -> crate::executor::BoxFuture<'a, CoreResult<i64>> {
        let _ = expected;
        Box::pin(async move {
            if !self.set_if_not_exist(marker, "1", ttl_seconds).await? {
                return Ok(0);
            }
            self.increment(counter, ttl_seconds).await
        })
    }

    /// The first arrival at an `'any'` join takes its lock (`lock`, with `value`
    /// naming the arrival); true for the arrival holding it (again on a replay,
    /// where the store can tell: natively).
    fn arrive_any<'a>(
        &'a self,
        lock: &'a str,
        value: &'a str,
        ttl_seconds: u64,
    ) -> crate::executor::BoxFuture<'a, CoreResult<bool>> {
        self.set_if_not_exist(lock, value, ttl_seconds)
    }
}

/// `arrive_all` in one step: GET the marker (a replay), else INCR + EXPIRE the
/// counter, SET the marker to the count, DEL the counter once it reached ARGV[2].
const ARRIVE_ALL_SCRIPT: &str = r#"
local seen = redis.call('GET', KEYS[2])
if seen then return tonumber(seen) end
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], n, 'EX', ARGV[1])
if n >= tonumber(ARGV[2]) then redis.call('DEL', KEYS[1]) end
return n
"#;

/// `arrive_any` in one step: SET NX, or the lock already holds this value.
const ARRIVE_ANY_SCRIPT: &str = r#"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
"#;

impl CoordinationStore for Coordination {
    fn arrive_all<'a>(
        &'a self,
        counter: &'a str,
        marker: &'a str,
        expected: i64,
        ttl_seconds: u64,
    ) -> crate::executor::BoxFuture<'a, CoreResult<i64>> {
        let script = &self.arrive_all;
        Box::pin(async move {
            let (counter, marker) = (self.key(counter), self.key(marker));
            let mut invocation = script.key(&counter);
            invocation.key(&marker).arg(ttl_seconds).arg(expected);
            self.script(format!("counting a join arrival at {counter:?}"), invocation).await
        })
    }
    fn arrive_any<'a>(
        &'a self,
        lock: &'a str,
        value: &'a str,
        ttl_seconds: u64,
    ) -> crate::executor::BoxFuture<'a, CoreResult<bool>> {
        let script = &self.arrive_any;
        Box::pin(async move {
            let lock = self.key(lock);
            let mut invocation = script.key(&lock);
            invocation.arg(value).arg(ttl_seconds);
            let n: i64 = self.script(format!("taking the join lock {lock:?}"), invocation).await?;
            Ok(n == 1)
        })
    }
    fn increment<'a>(&'a self, key: &'a str, ttl_seconds: u64) -> crate::executor::BoxFuture<'a, CoreResult<i64>> {
        Box::pin(Coordination::increment(self, key, ttl_seconds))
    }
    fn set_if_not_exist<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        ttl_seconds: u64,
    ) -> crate::executor::BoxFuture<'a, CoreResult<bool>> {
        Box::pin(Coordination::set_if_not_exist(self, key, value, ttl_seconds))
    }
}

impl Coordination {
    /// The process-wide store for `target`; it connects on first use.
    pub fn shared(target: &RedisTarget) -> CoreResult<Coordination> {
        target.url()?;
        static STORES: OnceLock<Mutex<HashMap<RedisTarget, Coordination>>> = OnceLock::new();
        let mut stores = STORES.get_or_init(Default::default).lock().unwrap();
        Ok(stores
            .entry(target.clone())
            .or_insert_with(|| Coordination {
                target: target.clone(),
                conn: Arc::new(tokio::sync::Mutex::new(None)),
                increment: Arc::new(redis::Script::new(INCREMENT_SCRIPT)),
                arrive_all: Arc::new(redis::Script::new(ARRIVE_ALL_SCRIPT)),
                arrive_any: Arc::new(redis::Script::new(ARRIVE_ANY_SCRIPT)),
            })
            .clone())
    }

    pub fn label(&self) -> String {
        self.target.label()
    }

    /// The connection (made on first use; its connect is bounded by the
    /// connect timeout) and its generation, for `discard`.
    async fn conn(&self) -> CoreResult<(u64, ConnectionManager)> {
        let target = &self.target;
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let client = target.client()?;
        if target.tls().is_some() {
            check_tls(&client, &target.label(), &target.timings).await?;
        }
        // A command without an answer within the response timeout fails (a
        // service error, retried by the caller); the connection is then
        // replaced (`discard`): the manager itself reconnects only when the
        // socket reports an error, which a dead link never does.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(target.timings.redis_connect_timeout))
            .set_response_timeout(Some(target.timings.redis_response_timeout))
            .set_number_of_retries(REDIS_RECONNECT_RETRIES)
            .set_max_delay(REDIS_RECONNECT_MAX_DELAY);
        let manager =
            ConnectionManager::new_with_config(client, config).await.map_err(|source| {
                match tls::tls_failure(&source) {
                    Some(reason) => CoreError::Tls { service: "Redis", target: target.label(), reason },
                    None => CoreError::RedisConnect { target: target.label(), source },
                }
            })?;
        static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let c = (GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed), manager);
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Drops connection `generation` after a command on it timed out, so the
    /// next command connects afresh (unless another already did).
    async fn discard(&self, generation: u64, error: &redis::RedisError) {
        if error.is_timeout() {
            let mut slot = self.conn.lock().await;
            if slot.as_ref().is_some_and(|(g, _)| *g == generation) {
                *slot = None;
            }
        }
    }

    /// Runs one command, replacing the connection when it timed out.
    async fn command<T: redis::FromRedisValue>(&self, doing: String, cmd: redis::Cmd) -> CoreResult<T> {
        let (generation, mut c) = self.conn().await?;
        match cmd.query_async(&mut c).await {
            Ok(v) => Ok(v),
            Err(e) => {
                self.discard(generation, &e).await;
                Err(CoreError::redis(doing, e))
            }
        }
    }

    /// Runs a script, replacing the connection when it timed out.
    async fn script<T: redis::FromRedisValue>(
        &self,
        doing: String,
        invocation: redis::ScriptInvocation<'_>,
    ) -> CoreResult<T> {
        let call = async {
            let (generation, mut c) = self.conn().await?;
            match invocation.invoke_async(&mut c).await {
                Ok(v) => Ok(v),
                Err(e) => {
                    self.discard(generation, &e).await;
                    Err(CoreError::redis(doing, e))
                }
            }
        };
        crate::timings::tracked("Redis", self.label(), "counting a join arrival", call).await
    }

    fn key(&self, key: &str) -> String {
        match &self.target.key_prefix {
            Some(p) => format!("{p}{key}"),
            None => key.to_string(),
        }
    }

    pub async fn increment(&self, key: &str, ttl_seconds: u64) -> CoreResult<i64> {
        let key = &self.key(key);
        let call = async {
            let (generation, mut c) = self.conn().await?;
            match self.increment.key(key).arg(ttl_seconds).invoke_async(&mut c).await {
                Ok(n) => Ok(n),
                Err(e) => {
                    self.discard(generation, &e).await;
                    Err(CoreError::redis(format!("incrementing {key:?}"), e))
                }
            }
        };
        crate::timings::tracked("Redis", self.label(), "incrementing a counter", call).await
    }

    pub async fn set_if_not_exist(&self, key: &str, value: &str, ttl_seconds: u64) -> CoreResult<bool> {
        let key = &self.key(key);
        let call = async {
            let mut cmd = redis::cmd("SET");
            cmd.arg(key).arg(value).arg("NX").arg("EX").arg(ttl_seconds);
            let r: Option<String> = self.command(format!("setting {key:?}"), cmd).await?;
            Ok(r.is_some())
        };
        crate::timings::tracked("Redis", self.label(), "taking a node lock", call).await
    }

    pub async fn delete(&self, key: &str) -> CoreResult<bool> {
        let key = &self.key(key);
        let mut cmd = redis::cmd("DEL");
        cmd.arg(key);
        let n: i64 = self.command(format!("deleting {key:?}"), cmd).await?;
        Ok(n > 0)
    }

    pub async fn extend_ttl(&self, key: &str, ttl_seconds: u64) -> CoreResult<bool> {
        let key = &self.key(key);
        let mut cmd = redis::cmd("EXPIRE");
        cmd.arg(key).arg(ttl_seconds);
        let n: i64 = self.command(format!("extending the TTL of {key:?}"), cmd).await?;
        Ok(n == 1)
    }

    pub async fn get(&self, key: &str) -> CoreResult<Option<String>> {
        let key = &self.key(key);
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        self.command(format!("reading {key:?}"), cmd).await
    }
}
