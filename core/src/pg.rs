//! PostgreSQL connection targets and a small shared pool. tokio-postgres
//! pipelines concurrent queries on one connection, and every statement we run
//! is a single autocommit statement, so a pool here is a set of shared
//! connections with a prepared-statement cache each. A query goes to the least
//! busy open connection; a new one (up to `Timings::pg_pool_size`, 8 by
//! default) is opened only when all are busy, so an idle or lightly loaded
//! process holds one or two.

use crate::error::{self, CoreError, CoreResult};
use crate::timings::{self, Timings};
use crate::tls::{self, TlsSettings};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio_postgres::config::SslMode;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, Row, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

/// Where a PostgreSQL server is, as read from the user's `pg` object or URL.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct PgTarget {
    pub connection_string: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub database: Option<String>,
    /// `true`: TLS with full verification (node-pg's `ssl: true`).
    pub ssl: Option<bool>,
    /// TLS as the JS layer read it from pg's `ssl` option, `sslmode` or `PGSSLMODE`.
    pub tls: Option<PgTls>,
    /// Keepalives, connect and query timeouts (the adapter's `timings`).
    #[serde(skip)]
    pub timings: Timings,
}

/// TLS to PostgreSQL: what to verify, and whether a server without TLS may be
/// used in plaintext (libpq's `sslmode=prefer`; node-pg never falls back).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct PgTls {
    #[serde(flatten)]
    pub settings: TlsSettings,
    #[serde(default)]
    pub optional: bool,
}

/// A connection to PostgreSQL, encrypted or not.
pub type PgConnection = tokio_postgres::Connection<
    tokio_postgres::Socket,
    <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>>::Stream,
>;

impl PgTarget {
    pub fn from_url(url: &str) -> PgTarget {
        PgTarget { connection_string: Some(url.to_string()), ..Default::default() }
    }

    /// The TLS to speak: the explicit settings, else `ssl: true`, else the
    /// connection string's own `sslmode` (prefer and require verify fully, as
    /// node-pg does), else none.
    fn tls(&self, config: &Config) -> Option<PgTls> {
        if let Some(t) = &self.tls {
            return Some(t.clone());
        }
        let mode_in_string = self.connection_string.as_deref().is_some_and(|s| s.contains("sslmode"));
        let wanted = self.ssl == Some(true) || (mode_in_string && config.get_ssl_mode() != SslMode::Disable);
        wanted.then(PgTls::default)
    }

    pub(crate) fn config(&self) -> CoreResult<Config> {
        let mut config = match &self.connection_string {
            Some(s) => s
                .parse()
                .map_err(|e| CoreError::InvalidArgument(format!("invalid PostgreSQL connection string: {e}")))?,
            None => Config::new(),
        };
        config.ssl_mode(match self.tls(&config) {
            None => SslMode::Disable,
            Some(PgTls { optional: true, .. }) => SslMode::Prefer,
            Some(_) => SslMode::Require,
        });
        if let Some(h) = &self.host {
            config.host(h);
        }
        if config.get_hosts().is_empty() {
            config.host("localhost");
        }
        if let Some(p) = self.port {
            config.port(p);
        }
        if let Some(u) = &self.user {
            config.user(u);
        }
        if config.get_user().is_none() {
            config.user(std::env::var("USER").as_deref().unwrap_or("postgres"));
        }
        if let Some(p) = &self.password {
            config.password(p);
        }
        if let Some(d) = &self.database {
            config.dbname(d);
        }
        // A dead link is noticed by the kernel: keepalive probes on an idle
        // socket, TCP_USER_TIMEOUT on unacknowledged data (see timings.rs).
        let t = &self.timings;
        config.connect_timeout(t.pg_connect_timeout);
        config.keepalives(true);
        config.keepalives_idle(t.pg_keepalive_idle);
        config.keepalives_interval(t.pg_keepalive_interval);
        config.keepalives_retries(t.pg_keepalive_retries);
        config.tcp_user_timeout(t.pg_tcp_user_timeout);
        config.application_name("flowcraft-rabbitmq-adapter");
        Ok(config)
    }

    /// Opens a connection, over TLS when the target asks for it. A TLS failure
    /// (a certificate that does not verify, a server without TLS) is `ERR_TLS`.
    pub(crate) async fn open(&self) -> CoreResult<(Client, PgConnection)> {
        let config = self.config()?;
        let settings = self.tls(&config).map(|t| t.settings).unwrap_or_default();
        let connector = MakeRustlsConnect::new(tls::client_config(&settings, "PostgreSQL")?);
        // `connect_timeout` covers the TCP connect only; a server (or a link)
        // that accepts and then says nothing must not hang us.
        let limit = self.timings.pg_connect_timeout;
        let connecting = tokio::time::timeout(limit, config.connect(connector));
        let Ok(connected) = connecting.await else {
            return Err(CoreError::Timeout(format!(
                "connecting to PostgreSQL at {} took longer than {} ms",
                self.label(),
                limit.as_millis()
            )));
        };
        connected.map_err(|source| {
            let no_tls = error::chain(&source).contains("server does not support TLS");
            match tls::tls_failure(&source) {
                Some(reason) => CoreError::Tls { service: "PostgreSQL", target: self.label(), reason },
                None if no_tls => CoreError::Tls {
                    service: "PostgreSQL",
                    target: self.label(),
                    reason: "the server does not support TLS (its ssl setting is off)".into(),
                },
                None => CoreError::PgConnect { target: self.label(), source },
            }
        })
    }

    /// `host:port/db` for messages; never the password.
    pub fn label(&self) -> String {
        match self.config() {
            Ok(c) => {
                let host = match c.get_hosts().first() {
                    Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
                    Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
                    None => "localhost".into(),
                };
                let port = c.get_ports().first().copied().unwrap_or(5432);
                format!("{host}:{port}/{}", c.get_dbname().or(c.get_user()).unwrap_or(""))
            }
            Err(_) => "<invalid target>".into(),
        }
    }
}

/// Validates and quotes `name` or `schema.name`. Table names are identifiers,
/// never SQL.
pub fn quote_table(name: &str) -> CoreResult<String> {
    let parts: Vec<&str> = name.split('.').collect();
    let valid_part = |p: &str| {
        !p.is_empty()
            && p.len() <= 63
            && !p.starts_with(|c: char| c.is_ascii_digit())
            && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if parts.is_empty() || parts.len() > 2 || !parts.iter().all(|p| valid_part(p)) {
        return Err(CoreError::InvalidTableName { name: name.to_string() });
    }
    Ok(parts.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join("."))
}

pub struct PgConn {
    client: Client,
    statements: Mutex<HashMap<String, Statement>>,
    /// Queries in progress on this connection.
    busy: AtomicUsize,
    /// Set when a query outlived its deadline: the pool no longer hands it out.
    dead: AtomicBool,
    /// It moved a message over `BIG_MESSAGE_BYTES`: the pool no longer hands it out, and
    /// it closes once its statements in progress end.
    retired: AtomicBool,
    /// The task driving the socket, aborted (closing it) when the connection is dead.
    driver: tokio::task::AbortHandle,
    /// The pool's `epoch` when it was opened (`PgPool::current`).
    born: u64,
}

impl Drop for PgConn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Counts a query in progress for as long as it lives.
struct Busy<'a>(&'a AtomicUsize);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PgConn {
    async fn statement(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.statements.lock().unwrap().get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).await?;
        self.statements.lock().unwrap().insert(sql.to_string(), s.clone());
        Ok(s)
    }

    pub async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, tokio_postgres::Error> {
        self.busy.fetch_add(1, Ordering::Relaxed);
        let _busy = Busy(&self.busy);
        let stmt = self.statement(sql).await?;
        let rows = match self.client.query(&stmt, params).await {
            // A table altered under a cached plan: prepare again once.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::FEATURE_NOT_SUPPORTED) => {
                self.statements.lock().unwrap().remove(sql);
                let stmt = self.statement(sql).await?;
                self.client.query(&stmt, params).await
            }
            other => other,
        }?;
        if rows.iter().any(big_row) {
            self.retire();
        }
        Ok(rows)
    }

    /// Out of service once its statements in progress end (then closed, its buffers freed).
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn usable(&self) -> bool {
        !self.client.is_closed() && !self.dead.load(Ordering::Relaxed) && !self.retired.load(Ordering::Relaxed)
    }

    /// Takes the connection out of service and closes its socket.
    fn kill(&self) {
        self.dead.store(true, Ordering::Relaxed);
        self.driver.abort();
    }
}

/// A message this big retires the connection that moved it (`PgConn::retire`):
/// tokio-postgres keeps a connection's read and write buffers as large as the
/// largest message it moved, so each connection that once carried a big value
/// would hold that much memory for good (issue 12).
pub const BIG_MESSAGE_BYTES: usize = 8 << 20;

/// A row over `BIG_MESSAGE_BYTES` (the sum of its columns' sizes, read without a copy).
fn big_row(row: &Row) -> bool {
    struct Size(usize);
    impl<'a> tokio_postgres::types::FromSql<'a> for Size {
        fn from_sql(
            _: &tokio_postgres::types::Type,
            raw: &'a [u8],
        ) -> Result<Size, Box<dyn std::error::Error + Sync + Send>> {
            Ok(Size(raw.len()))
        }
        fn accepts(_: &tokio_postgres::types::Type) -> bool {
            true
        }
    }
    let size =
        (0..row.len()).filter_map(|i| row.try_get::<_, Option<Size>>(i).ok().flatten()).map(|s| s.0).sum::<usize>();
    size > BIG_MESSAGE_BYTES
}

/// A connection held outside the pool (`PgPool::connect_reserved`).
pub struct Reserved {
    pub conn: PgConn,
    _reservation: Reservation,
}

struct Reservation(Arc<PgPool>);

impl Drop for Reservation {
    fn drop(&mut self) {
        self.0.reserved.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct PgPool {
    target: PgTarget,
    /// Open connections (closed ones are dropped when noticed).
    conns: Mutex<Vec<Arc<PgConn>>>,
    /// One connection attempt at a time, so a burst opens what it needs only.
    growing: tokio::sync::Mutex<()>,
    /// Connections of this target held outside the pool (group commits): they count
    /// against `pgPoolSize`, so a worker never opens more than it says.
    reserved: AtomicUsize,
    /// Bumped when a statement outlives its deadline: a link that stopped carrying bytes
    /// usually took the target's other connections with it, so those opened before are
    /// not handed out again (each would otherwise cost a deadline of its own to find out).
    epoch: std::sync::atomic::AtomicU64,
}

/// A connection with this many queries in progress counts as busy (the pool
/// then grows, up to `Timings::pg_pool_size`). Fixed: it only balances
/// statements over the connections; 2 lets a connection pipeline while another
/// is opened, and the bench found no gain in other values.
const BUSY_AT: usize = 2;

impl PgPool {
    /// The process-wide pool for `target`: one per distinct server and user.
    pub fn shared(target: &PgTarget) -> CoreResult<Arc<PgPool>> {
        target.config()?; // fail early on a bad target
        static POOLS: OnceLock<Mutex<HashMap<PgTarget, Arc<PgPool>>>> = OnceLock::new();
        let mut pools = POOLS.get_or_init(Default::default).lock().unwrap();
        Ok(pools
            .entry(target.clone())
            .or_insert_with(|| {
                Arc::new(PgPool {
                    target: target.clone(),
                    conns: Mutex::new(Vec::new()),
                    growing: tokio::sync::Mutex::new(()),
                    reserved: AtomicUsize::new(0),
                    epoch: std::sync::atomic::AtomicU64::new(0),
                })
            })
            .clone())
    }

    pub fn label(&self) -> String {
        self.target.label()
    }

    pub fn target(&self) -> &PgTarget {
        &self.target
    }

    /// The least busy open connection, and whether the pool should grow.
    fn pick(&self) -> (Option<Arc<PgConn>>, bool) {
        let mut conns = self.conns.lock().unwrap();
        conns.retain(|c| self.current(c));
        let best = conns.iter().min_by_key(|c| c.busy.load(Ordering::Relaxed)).cloned();
        let reserved = self.reserved.load(Ordering::Relaxed);
        let size = (self.target.timings.pg_pool_size as usize).saturating_sub(reserved).max(1);
        let grow = conns.len() < size && best.as_ref().is_none_or(|c| c.busy.load(Ordering::Relaxed) >= BUSY_AT);
        (best, grow)
    }

    /// A connection to run a statement on. Connects (bounded by the connect
    /// timeout) only when every open one is busy; a task that finds another
    /// connecting uses a busy connection rather than wait for it.
    pub async fn conn(&self) -> CoreResult<Arc<PgConn>> {
        let _growing = match self.pick() {
            (Some(c), false) => return Ok(c),
            (Some(c), true) => match self.growing.try_lock() {
                Ok(g) => g,
                Err(_) => return Ok(c),
            },
            (None, _) => self.growing.lock().await,
        };
        // Another task may have grown the pool while this one waited.
        match self.pick() {
            (Some(c), false) => Ok(c),
            (best, _) => match self.connect().await {
                Ok(c) => {
                    let c = Arc::new(c);
                    self.conns.lock().unwrap().push(c.clone());
                    Ok(c)
                }
                // A busy connection beats none when the server refuses more.
                Err(e) => best.ok_or(e),
            },
        }
    }

    /// A connection held outside the pool for as long as the returned guard lives,
    /// counted against the pool's size (`None` when the size leaves none to spare).
    pub async fn connect_reserved(self: &Arc<Self>) -> CoreResult<Option<Reserved>> {
        let size = self.target.timings.pg_pool_size as usize;
        // keep at least one pooled connection for loads and the rest
        let taken = self.reserved.fetch_add(1, Ordering::Relaxed);
        if taken + 1 >= size {
            self.reserved.fetch_sub(1, Ordering::Relaxed);
            return Ok(None);
        }
        let guard = Reservation(self.clone());
        let conn = self.connect().await?;
        Ok(Some(Reserved { conn, _reservation: guard }))
    }

    /// A new connection (the pool's, or one of its own for transactions).
    pub async fn connect(&self) -> CoreResult<PgConn> {
        let (client, connection) = self.target.open().await?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        })
        .abort_handle();
        // A transaction whose link died (a black hole: the server still sees the socket
        // open) would keep its row locks, and stall every later commit of its runs, until
        // the server noticed; the server ends it once it has waited longer than we would.
        let t = &self.target.timings;
        let limit = format!("SET idle_in_transaction_session_timeout = {}", t.pg_query_timeout.as_millis());
        let setting = tokio::time::timeout(t.pg_connect_timeout, client.batch_execute(&limit));
        match setting.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                driver.abort();
                return Err(CoreError::pg("configuring a connection", e));
            }
            Err(_) => {
                driver.abort();
                return Err(CoreError::Timeout(format!(
                    "PostgreSQL at {} did not answer within {} ms while configuring a connection",
                    self.target.label(),
                    t.pg_connect_timeout.as_millis()
                )));
            }
        }
        Ok(PgConn {
            client,
            statements: Mutex::new(HashMap::new()),
            busy: AtomicUsize::new(0),
            dead: AtomicBool::new(false),
            retired: AtomicBool::new(false),
            born: self.epoch.load(Ordering::Relaxed),
            driver,
        })
    }

    /// `conn` is open, and was opened since the last statement of this target that
    /// outlived its deadline.
    pub(crate) fn current(&self, conn: &PgConn) -> bool {
        conn.usable() && conn.born >= self.epoch.load(Ordering::Relaxed)
    }

    /// Runs `call` on `conn` within the query deadline; past it the connection
    /// is closed and dropped from the pool (a black-holed link never answers), and
    /// the target's other connections are not handed out again (`epoch`).
    pub(crate) async fn deadline<T, F>(&self, conn: &PgConn, doing: &str, call: F) -> CoreResult<T>
    where
        F: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let limit = self.target.timings.pg_query_timeout;
        let label = self.label();
        match timings::tracked("PostgreSQL", label.clone(), doing, tokio::time::timeout(limit, call)).await {
            Ok(r) => r.map_err(|e| CoreError::pg(doing, e)),
            Err(_) => {
                conn.kill();
                self.epoch.fetch_max(conn.born + 1, Ordering::Relaxed);
                Err(CoreError::Timeout(format!(
                    "PostgreSQL at {label} did not answer within {} ms while {doing}; the connection was closed and will be replaced",
                    limit.as_millis()
                )))
            }
        }
    }

    /// Runs one statement on a pooled connection.
    pub async fn query(&self, doing: &str, sql: &str, params: &[&(dyn ToSql + Sync)]) -> CoreResult<Vec<Row>> {
        self.query_sized(doing, sql, params, false).await
    }

    /// `query` with parameters the caller knows to be over `BIG_MESSAGE_BYTES` when
    /// `big`: the connection retires after it (results are checked by `PgConn::query`).
    pub async fn query_sized(
        &self,
        doing: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        big: bool,
    ) -> CoreResult<Vec<Row>> {
        let conn = self.conn().await?;
        let rows = self.deadline(&conn, doing, conn.query(sql, params)).await;
        if big {
            conn.retire();
        }
        self.put_back(conn);
        rows
    }

    pub async fn batch(&self, doing: &str, sql: &str) -> CoreResult<()> {
        let conn = self.conn().await?;
        let done = self.deadline(&conn, doing, conn.client.batch_execute(sql)).await;
        self.put_back(conn);
        done
    }

    /// A statement on `conn` ended: one out of service leaves the pool now, so it closes
    /// once its last statement in progress ends. (A retired connection's read buffer
    /// holds the big rows it read: their memory goes only with it, issue 12.)
    fn put_back(&self, conn: Arc<PgConn>) {
        if !self.current(&conn) {
            self.conns.lock().unwrap().retain(|c| !Arc::ptr_eq(c, &conn));
        }
    }
}
