//! Reaching RabbitMQ: the broker URLs (one node or a cluster's), TLS for
//! `amqps://`, the frame and thread-stack limits, and how the job queue and its
//! dead-letter queue are declared (classic or quorum, or used as they exist).

use crate::error::{CoreError, CoreResult};
use crate::timings::Timings;
use crate::tls::{self, TlsSettings, Verify};
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties};
use serde::Deserialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Hides the password of an AMQP URL.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..s + 3], user, &url[at..])
        }
        _ => url.to_string(),
    }
}

/// The kind of queue to declare when it does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    Classic,
    Quorum,
}

/// Where jobs go: the broker (several URLs for a cluster's nodes), the job
/// queue and how to declare it, and TLS beside the URL's own query parameters
/// (`cacertfile`, `certfile`, `keyfile`, `verify`, `server_name_indication`).
#[derive(Debug, Clone, Default)]
pub struct QueueTarget {
    pub url: String,
    /// Other nodes of the same cluster, tried in turn when one is unreachable.
    pub alternates: Vec<String>,
    pub queue: String,
    pub tls: Option<TlsSettings>,
    /// Set: declare missing queues of this type (and refuse existing ones of
    /// another). Unset: use the queues as they exist, declaring missing ones as
    /// Flowcraft's TypeScript adapter does (durable, classic, no arguments).
    pub queue_type: Option<QueueType>,
    /// Extra arguments for both queues (`x-max-length`, …), with `queue_type`'s rule.
    pub queue_arguments: Option<serde_json::Map<String, serde_json::Value>>,
    /// false: never declare; a missing queue is `ERR_QUEUE_NOT_FOUND` (read-only tools).
    pub declare: bool,
    /// Heartbeat, connect and confirm timeouts (the adapter's `timings`).
    pub timings: Timings,
}

impl QueueTarget {
    pub fn new(url: &str, queue: &str) -> QueueTarget {
        QueueTarget { url: url.to_string(), queue: queue.to_string(), declare: true, ..Default::default() }
    }

    /// Every broker URL, starting at a different one on each call so that
    /// reconnects move on to another node and workers spread over the cluster.
    fn urls(&self) -> Vec<&str> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let all: Vec<&str> =
            std::iter::once(self.url.as_str()).chain(self.alternates.iter().map(String::as_str)).collect();
        let start = NEXT.fetch_add(1, Ordering::Relaxed) % all.len();
        all[start..].iter().chain(all[..start].iter()).copied().collect()
    }

    /// The broker URL(s) for messages, without passwords.
    pub fn label(&self) -> String {
        std::iter::once(&self.url).chain(&self.alternates).map(|u| redact(u)).collect::<Vec<_>>().join(", ")
    }
}

/// The largest frame we accept from the broker (RabbitMQ's default). It bounds
/// how deep a message's header tables can nest (5 bytes a level at least).
pub const FRAME_MAX: u32 = 131_072;

/// Stack for every thread of ours and lapin's I/O thread. lapin parses (and
/// Rust drops) header tables recursively, about 1.9 KB of stack a level
/// (measured): a 131,072-byte header frame nests at most 26,214 levels, about
/// 50 MB. With the 2 MiB default, one message 1,100 levels deep killed every
/// worker that received it. Reserved, not committed: pages are used as touched.
pub const THREAD_STACK_BYTES: usize = 128 * 1024 * 1024;

/// Sets the stack size of threads that lapin spawns (it takes the default,
/// which `RUST_MIN_STACK` sets). Call before the first connection, before any
/// other thread of this library starts; a value the user set is kept.
pub fn size_io_threads() {
    if std::env::var_os("RUST_MIN_STACK").is_none() {
        // SAFETY: called once at load, before this library starts a thread.
        unsafe { std::env::set_var("RUST_MIN_STACK", THREAD_STACK_BYTES.to_string()) };
    }
}

/// A parsed broker URL and, when it is `amqps://`, the TLS to speak.
struct Endpoint {
    uri: AMQPUri,
    tls: Option<(Arc<rustls::ClientConfig>, String)>,
}

/// The URL's TLS query parameters, which lapin ignores, are read here.
fn endpoint(url: &str, extra_tls: Option<&TlsSettings>, heartbeat: u16) -> CoreResult<Endpoint> {
    let bad = |why: String| CoreError::InvalidArgument(format!("invalid RabbitMQ URL {}: {why}", redact(url)));
    let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
    let mut uri: AMQPUri = url.parse().map_err(bad)?;
    // amqplib reads `amqp://host/` as vhost "/"; so do we (RabbitMQ has no empty vhost).
    if uri.vhost.is_empty() {
        uri.vhost = "/".into();
    }
    // A dead link is declared after two missed heartbeats; the broker's own
    // default (60 s) would take two minutes. A heartbeat in the URL wins.
    if uri.query.heartbeat.is_none() && !parsed.query_pairs().any(|(k, _)| k == "heartbeat") {
        uri.query.heartbeat = Some(heartbeat);
    }
    uri.query.frame_max = Some(uri.query.frame_max.filter(|f| *f > 0).map_or(FRAME_MAX, |f| f.min(FRAME_MAX)));
    let secure = parsed.scheme().eq_ignore_ascii_case("amqps");
    let mut tls = extra_tls.cloned().unwrap_or_default();
    let mut asked_for_tls = extra_tls.is_some();
    for (key, value) in parsed.query_pairs() {
        match key.as_ref() {
            "cacertfile" => tls.ca = Some(tls::read_pem_file(&value, "cacertfile")?),
            "certfile" => tls.cert = Some(tls::read_pem_file(&value, "certfile")?),
            "keyfile" => tls.key = Some(tls::read_pem_file(&value, "keyfile")?),
            "verify" => {
                tls.verify = match value.as_ref() {
                    "verify_peer" => Verify::Full,
                    "verify_none" => Verify::None,
                    other => return Err(bad(format!("verify={other} (use verify_peer or verify_none)"))),
                }
            }
            "server_name_indication" if value != "disable" => tls.server_name = Some(value.into_owned()),
            "server_name_indication" => {}
            _ => continue,
        }
        asked_for_tls = true;
    }
    if !secure {
        if asked_for_tls {
            return Err(CoreError::InvalidArgument(format!(
                "TLS settings were given for the plain amqp:// URL {}: use amqps:// so the connection is encrypted",
                redact(url)
            )));
        }
        return Ok(Endpoint { uri, tls: None });
    }
    let config = tls::client_config(&tls, "RabbitMQ")?;
    let name = tls::server_name(&tls, &uri.authority.host, "RabbitMQ")?.to_str().into_owned();
    Ok(Endpoint { uri, tls: Some((Arc::new(config), name)) })
}

/// The error for a failed connect: TLS failures (a certificate that does not
/// verify, a server that does not speak TLS) are told apart, since retrying
/// cannot heal them.
fn connect_error(url: &str, source: lapin::Error) -> CoreError {
    match tls::tls_failure(&source) {
        Some(reason) => CoreError::Tls { service: "RabbitMQ", target: redact(url), reason },
        None => CoreError::AmqpConnect { target: redact(url), source },
    }
}

/// Connects to one of the target's brokers: each URL in turn (from a rotating
/// start) until one answers. A failure no retry can heal (TLS, a bad URL)
/// stops at once.
pub async fn connect(target: &QueueTarget) -> CoreResult<Connection> {
    let mut last = None;
    for url in target.urls() {
        // The TCP connect, TLS and AMQP handshakes, bounded: a host that
        // accepts and then says nothing must not hang the worker.
        let limit = target.timings.amqp_connect_timeout;
        let attempt = tokio::time::timeout(limit, connect_one(url, target.tls.as_ref(), &target.timings));
        let attempt = attempt.await.unwrap_or_else(|_| {
            Err(CoreError::Timeout(format!(
                "connecting to RabbitMQ at {} took longer than {} ms",
                redact(url),
                limit.as_millis()
            )))
        });
        match attempt {
            Ok(c) => return Ok(c),
            Err(e) if e.is_transient() => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.expect("a target has at least one URL"))
}

async fn connect_one(url: &str, extra_tls: Option<&TlsSettings>, timings: &Timings) -> CoreResult<Connection> {
    let Endpoint { uri, tls } = endpoint(url, extra_tls, timings.amqp_heartbeat_seconds())?;
    let properties = ConnectionProperties::default().with_connection_name("flowcraft-rabbitmq-adapter".into());
    match tls {
        None => Connection::connect_uri(uri, properties).await,
        Some((config, name)) => {
            let runtime = lapin::runtime::default_runtime().map_err(|e| connect_error(url, e))?;
            let connector = lapin::tcp::RustlsConnector::from(config);
            Connection::connector(
                uri,
                runtime,
                async move |uri, runtime| {
                    let addrs: Vec<std::net::SocketAddr> =
                        tokio::net::lookup_host((uri.authority.host.as_str(), uri.authority.port)).await?.collect();
                    let plain = lapin::AsyncTcpStream::connect(&runtime, addrs).await?;
                    Ok(plain.into_rustls(&connector, &name).await?)
                },
                properties,
            )
            .await
        }
    }
    .map_err(|source| connect_error(url, source))
}

/// The broker's reply code for a refused operation (404 not found, 406
/// precondition failed, …), if that is what the error is.
fn reply_code(e: &lapin::Error) -> Option<u16> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => Some(amqp.get_id()),
        _ => None,
    }
}

/// Makes sure `queue` exists as the target asks (see `QueueTarget`). Each
/// attempt has a channel of its own: a refused declare closes its channel.
pub async fn ensure_queue(connection: &Connection, target: &QueueTarget, queue: &str) -> CoreResult<()> {
    let explicit = target.queue_type.is_some() || target.queue_arguments.is_some();
    if !explicit || !target.declare {
        let channel = connection.create_channel().await.map_err(|e| CoreError::amqp("opening a channel", e))?;
        let passive = QueueDeclareOptions { passive: true, durable: true, ..Default::default() };
        match channel.queue_declare(queue.into(), passive, FieldTable::default()).await {
            Ok(_) => {
                let _ = channel.close(200, "declared".into()).await;
                return Ok(());
            }
            Err(e) if reply_code(&e) == Some(404) && target.declare => {}
            Err(e) if reply_code(&e) == Some(404) => {
                return Err(CoreError::QueueNotFound { queue: queue.to_string(), broker: target.label() });
            }
            Err(e) => return Err(CoreError::amqp(format!("checking queue {queue:?}"), e)),
        }
    }
    let channel = connection.create_channel().await.map_err(|e| CoreError::amqp("opening a channel", e))?;
    let arguments = queue_arguments(target)?;
    let options = QueueDeclareOptions { durable: true, ..Default::default() };
    match channel.queue_declare(queue.into(), options, arguments).await {
        Ok(_) => {
            let _ = channel.close(200, "declared".into()).await;
            Ok(())
        }
        Err(e) if reply_code(&e) == Some(406) => {
            Err(CoreError::QueueMismatch { queue: queue.to_string(), reason: crate::error::chain(&e) })
        }
        Err(e) => Err(CoreError::amqp(format!("declaring queue {queue:?}"), e)),
    }
}

/// The declare arguments: `x-queue-type` and the user's extra arguments.
fn queue_arguments(target: &QueueTarget) -> CoreResult<FieldTable> {
    let mut table = FieldTable::default();
    if let Some(kind) = target.queue_type {
        let name = match kind {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        };
        table.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from(name)));
    }
    for (key, value) in target.queue_arguments.iter().flatten() {
        let value = match value {
            serde_json::Value::String(s) => AMQPValue::LongString(LongString::from(s.as_str())),
            serde_json::Value::Bool(b) => AMQPValue::Boolean(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => AMQPValue::LongLongInt(i),
                None => AMQPValue::Double(n.as_f64().unwrap_or_default()),
            },
            other => {
                return Err(CoreError::InvalidArgument(format!(
                    "queue argument {key:?} must be a string, number or boolean; got {other}"
                )))
            }
        };
        if key == "x-queue-type" && target.queue_type.is_some() {
            return Err(CoreError::InvalidArgument(
                "give the queue type once: as queueType, or as the x-queue-type argument".into(),
            ));
        }
        table.insert(key.as_str().into(), value);
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("amqp://u:secret@h:5672/v"), "amqp://u:***@h:5672/v");
        assert_eq!(redact("amqp://h"), "amqp://h");
    }

    #[test]
    fn rotates_over_the_cluster_nodes() {
        let mut t = QueueTarget::new("amqp://a", "q");
        t.alternates = vec!["amqp://b".into(), "amqp://c".into()];
        let firsts: std::collections::HashSet<_> = (0..3).map(|_| t.urls()[0].to_string()).collect();
        assert_eq!(firsts.len(), 3);
        assert!((0..3).all(|_| t.urls().len() == 3));
    }

    #[test]
    fn builds_queue_arguments() {
        let mut t = QueueTarget::new("amqp://a", "q");
        t.queue_type = Some(QueueType::Quorum);
        t.queue_arguments = serde_json::from_str(r#"{"x-max-length": 10, "x-overflow": "reject-publish"}"#).unwrap();
        let table = queue_arguments(&t).unwrap();
        assert_eq!(table.inner().get("x-max-length"), Some(&AMQPValue::LongLongInt(10)));
        assert!(
            matches!(table.inner().get("x-queue-type"), Some(AMQPValue::LongString(s)) if s.to_string() == "quorum")
        );
        t.queue_arguments = serde_json::from_str(r#"{"x-queue-type": "classic"}"#).unwrap();
        assert!(queue_arguments(&t).is_err());
    }

    #[test]
    fn reads_the_empty_vhost_as_slash_and_caps_frames() {
        let e = endpoint("amqp://guest:guest@localhost:5672/", None, 10).unwrap();
        assert_eq!(e.uri.vhost, "/");
        assert_eq!(e.uri.query.frame_max, Some(FRAME_MAX));
        assert!(endpoint("amqp://h/?cacertfile=/x", None, 10).is_err());
    }
}
