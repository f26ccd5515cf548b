//! RabbitMQ: the durable job queue, its dead-letter queue, confirmed
//! persistent publishes and a manual-ack consumer.

use crate::error::{CoreError, CoreResult};
use crate::tls::{self, TlsSettings, Verify};
use futures_util::future::try_join_all;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The wire format shared with Flowcraft's TypeScript adapter.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct JobMessage {
    pub run_id: String,
    pub blueprint_id: String,
    pub node_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_last_attempt: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
}

impl JobMessage {
    pub fn new(run_id: &str, blueprint_id: &str, node_id: &str) -> JobMessage {
        JobMessage {
            run_id: run_id.into(),
            blueprint_id: blueprint_id.into(),
            node_id: node_id.into(),
            is_last_attempt: None,
            attempt: None,
        }
    }

    /// Parses a queue message, saying precisely what is wrong with a bad one.
    pub fn parse(body: &[u8]) -> Result<JobMessage, String> {
        let text = std::str::from_utf8(body).map_err(|_| "the message is not UTF-8 text".to_string())?;
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("the message is not JSON ({e})"))?;
        let obj = value.as_object().ok_or("the message is JSON but not an object")?;
        for field in ["runId", "blueprintId", "nodeId"] {
            match obj.get(field) {
                Some(serde_json::Value::String(s)) if !s.is_empty() => {}
                Some(serde_json::Value::String(_)) => return Err(format!("the job field '{field}' is empty")),
                Some(other) => return Err(format!("the job field '{field}' must be a string, got {other}")),
                None => {
                    return Err(format!("the job has no '{field}' field (a job is {{ runId, blueprintId, nodeId }})"))
                }
            }
        }
        serde_json::from_value(value).map_err(|e| format!("the job has a field of the wrong type ({e})"))
    }
}

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

/// Where jobs go: the broker URL, the job queue's name and, for `amqps://`,
/// TLS settings beside those in the URL's query (`cacertfile`, `certfile`,
/// `keyfile`, `verify`, `server_name_indication`, RabbitMQ's URI parameters).
#[derive(Debug, Clone, Default)]
pub struct QueueTarget {
    pub url: String,
    pub queue: String,
    pub tls: Option<TlsSettings>,
}

impl QueueTarget {
    pub fn new(url: &str, queue: &str) -> QueueTarget {
        QueueTarget { url: url.to_string(), queue: queue.to_string(), tls: None }
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

/// Header tables nesting deeper than this are refused: no job of ours needs
/// them, and a consumer of the dead-letter queue may not survive them.
pub const MAX_HEADER_DEPTH: usize = 32;

/// How deep a header table nests (1 for a flat table), counted without recursion.
pub fn header_depth(table: &FieldTable) -> usize {
    let mut deepest = 0;
    let mut pending: Vec<(&AMQPValue, usize)> = table.inner().values().map(|v| (v, 1)).collect();
    deepest = deepest.max(usize::from(!table.inner().is_empty()));
    while let Some((value, depth)) = pending.pop() {
        deepest = deepest.max(depth);
        match value {
            AMQPValue::FieldTable(t) => pending.extend(t.inner().values().map(|v| (v, depth + 1))),
            AMQPValue::FieldArray(a) => pending.extend(a.as_slice().iter().map(|v| (v, depth + 1))),
            _ => {}
        }
    }
    deepest
}

/// A parsed broker URL and, when it is `amqps://`, the TLS to speak.
struct Endpoint {
    uri: AMQPUri,
    tls: Option<(Arc<rustls::ClientConfig>, String, TlsSettings)>,
}

/// The URL's TLS query parameters, which lapin ignores, are read here.
fn endpoint(target: &QueueTarget) -> CoreResult<Endpoint> {
    let bad = |why: String| CoreError::InvalidArgument(format!("invalid RabbitMQ URL {}: {why}", redact(&target.url)));
    let parsed = url::Url::parse(&target.url).map_err(|e| bad(e.to_string()))?;
    let mut uri: AMQPUri = target.url.parse().map_err(bad)?;
    // amqplib reads `amqp://host/` as vhost "/"; so do we (RabbitMQ has no empty vhost).
    if uri.vhost.is_empty() {
        uri.vhost = "/".into();
    }
    uri.query.frame_max = Some(uri.query.frame_max.filter(|f| *f > 0).map_or(FRAME_MAX, |f| f.min(FRAME_MAX)));
    let secure = parsed.scheme().eq_ignore_ascii_case("amqps");
    let mut tls = target.tls.clone().unwrap_or_default();
    let mut asked_for_tls = target.tls.is_some();
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
                redact(&target.url)
            )));
        }
        return Ok(Endpoint { uri, tls: None });
    }
    let config = tls::client_config(&tls, "RabbitMQ")?;
    let name = tls::server_name(&tls, &uri.authority.host, "RabbitMQ")?.to_str().into_owned();
    Ok(Endpoint { uri, tls: Some((Arc::new(config), name, tls)) })
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

pub struct Broker {
    connection: Connection,
    publisher: Channel,
    pub queue: String,
    pub dead_queue: String,
}

impl Broker {
    /// Connects and declares the job queue and its dead-letter queue (both
    /// durable, without arguments, so they match queues that Flowcraft's
    /// TypeScript adapter declares).
    pub async fn connect(target: &QueueTarget) -> CoreResult<Broker> {
        let (url, queue) = (target.url.as_str(), target.queue.as_str());
        if queue.is_empty() || queue.len() > 200 {
            return Err(CoreError::InvalidArgument(format!("queueName {queue:?} must be 1 to 200 characters")));
        }
        let Endpoint { uri, tls } = endpoint(target)?;
        let properties = ConnectionProperties::default().with_connection_name("flowcraft-rabbitmq-adapter".into());
        let connection = match tls {
            None => Connection::connect_uri(uri, properties).await,
            Some((config, name, _)) => {
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
        .map_err(|source| connect_error(url, source))?;
        let publisher = connection.create_channel().await.map_err(|e| CoreError::amqp("opening a channel", e))?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| CoreError::amqp("enabling publisher confirms", e))?;
        let dead_queue = format!("{queue}.dead");
        for q in [queue, dead_queue.as_str()] {
            publisher
                .queue_declare(
                    q.into(),
                    QueueDeclareOptions { durable: true, ..Default::default() },
                    FieldTable::default(),
                )
                .await
                .map_err(|e| CoreError::amqp(format!("declaring queue {q:?}"), e))?;
        }
        Ok(Broker { connection, publisher, queue: queue.to_string(), dead_queue })
    }

    pub fn is_connected(&self) -> bool {
        self.connection.status().connected() && self.publisher.status().connected()
    }

    /// A consumer with manual acks and at most `prefetch` unacked messages.
    pub async fn consume(&self, prefetch: u16, tag: &str) -> CoreResult<(Channel, Consumer)> {
        let channel = self.connection.create_channel().await.map_err(|e| CoreError::amqp("opening a channel", e))?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| CoreError::amqp("setting the prefetch", e))?;
        let consumer = channel
            .basic_consume(
                self.queue.as_str().into(),
                tag.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| CoreError::amqp(format!("consuming from {:?}", self.queue), e))?;
        Ok((channel, consumer))
    }

    fn persistent() -> BasicProperties {
        BasicProperties::default().with_delivery_mode(2).with_content_type(ShortString::from("application/json"))
    }

    /// Publishes jobs persistently and waits until the broker confirms all of
    /// them (they are pipelined, not one round trip each).
    pub async fn publish_jobs(&self, jobs: &[JobMessage]) -> CoreResult<()> {
        let mut confirms = Vec::with_capacity(jobs.len());
        for job in jobs {
            let body = serde_json::to_vec(job).expect("a job serialises");
            let confirm = self
                .publisher
                .basic_publish(
                    "".into(),
                    self.queue.as_str().into(),
                    BasicPublishOptions::default(),
                    &body,
                    Self::persistent(),
                )
                .await
                .map_err(|e| CoreError::amqp("publishing a job", e))?;
            confirms.push(confirm);
        }
        let results = try_join_all(confirms).await.map_err(|e| CoreError::amqp("waiting for a publish confirm", e))?;
        if results.iter().any(|c| !c.is_ack()) {
            return Err(CoreError::WorkerState("RabbitMQ refused (nacked) a published job".into()));
        }
        Ok(())
    }

    /// Moves a message that cannot be processed to `<queue>.dead`, with the
    /// reason in its headers, and waits for the broker's confirm.
    pub async fn dead_letter(&self, body: &[u8], reason: &str, original: &BasicProperties) -> CoreResult<()> {
        let mut headers = match original.headers() {
            Some(h) if header_depth(h) > MAX_HEADER_DEPTH => FieldTable::default(),
            Some(h) => h.clone(),
            None => FieldTable::default(),
        };
        headers.insert("x-flowcraft-reason".into(), AMQPValue::LongString(LongString::from(reason.to_string())));
        headers.insert("x-flowcraft-queue".into(), AMQPValue::LongString(LongString::from(self.queue.clone())));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        headers.insert("x-flowcraft-dead-at".into(), AMQPValue::LongLongInt(now));
        let props = Self::persistent().with_headers(headers);
        let confirm = self
            .publisher
            .basic_publish("".into(), self.dead_queue.as_str().into(), BasicPublishOptions::default(), body, props)
            .await
            .map_err(|e| CoreError::amqp("dead-lettering a message", e))?
            .await
            .map_err(|e| CoreError::amqp("waiting for a dead-letter confirm", e))?;
        if !confirm.is_ack() {
            return Err(CoreError::WorkerState("RabbitMQ refused (nacked) a dead-lettered message".into()));
        }
        Ok(())
    }

    /// Up to `limit` dead letters `(body, reason, dead_at_ms)`, left in place.
    pub async fn peek_dead(&self, limit: usize) -> CoreResult<Vec<(String, String, i64)>> {
        let channel = self.connection.create_channel().await.map_err(|e| CoreError::amqp("opening a channel", e))?;
        let mut out = Vec::new();
        while out.len() < limit {
            let got = channel
                .basic_get(self.dead_queue.as_str().into(), lapin::options::BasicGetOptions { no_ack: false })
                .await
                .map_err(|e| CoreError::amqp("reading dead letters", e))?;
            let Some(m) = got else { break };
            let headers = m.delivery.properties.headers().clone().unwrap_or_default();
            let text = |k: &str| match headers.inner().get(k) {
                Some(AMQPValue::LongString(s)) => s.to_string(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            let at = match headers.inner().get("x-flowcraft-dead-at") {
                Some(AMQPValue::LongLongInt(n)) => *n,
                _ => 0,
            };
            out.push((String::from_utf8_lossy(&m.delivery.data).into_owned(), text("x-flowcraft-reason"), at));
        }
        // Closing the channel returns the unacked messages to the queue, in order.
        let _ = channel.close(200, "peeked".into()).await;
        Ok(out)
    }

    /// Moves up to `limit` dead letters back to the job queue (confirmed
    /// before each is removed). Returns how many moved.
    pub async fn requeue_dead(&self, limit: usize) -> CoreResult<usize> {
        let channel = self.connection.create_channel().await.map_err(|e| CoreError::amqp("opening a channel", e))?;
        let mut moved = 0;
        while moved < limit {
            let got = channel
                .basic_get(self.dead_queue.as_str().into(), lapin::options::BasicGetOptions { no_ack: false })
                .await
                .map_err(|e| CoreError::amqp("reading dead letters", e))?;
            let Some(m) = got else { break };
            let confirm = self
                .publisher
                .basic_publish(
                    "".into(),
                    self.queue.as_str().into(),
                    BasicPublishOptions::default(),
                    &m.delivery.data,
                    Self::persistent(),
                )
                .await
                .map_err(|e| CoreError::amqp("requeueing a dead letter", e))?
                .await
                .map_err(|e| CoreError::amqp("waiting for a requeue confirm", e))?;
            if !confirm.is_ack() {
                break;
            }
            m.delivery
                .acker
                .ack(lapin::options::BasicAckOptions::default())
                .await
                .map_err(|e| CoreError::amqp("removing a dead letter", e))?;
            moved += 1;
        }
        let _ = channel.close(200, "requeued".into()).await;
        Ok(moved)
    }

    pub async fn close(&self) {
        let _ = self.publisher.close(200, "bye".into()).await;
        let _ = self.connection.close(200, "bye".into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_jobs_and_explains_bad_ones() {
        let j = JobMessage::parse(br#"{"runId":"r","blueprintId":"b","nodeId":"n","attempt":2}"#).unwrap();
        assert_eq!(j.attempt, Some(2));
        assert!(JobMessage::parse(b"nope").unwrap_err().contains("not JSON"));
        assert!(JobMessage::parse(b"[1]").unwrap_err().contains("not an object"));
        assert!(JobMessage::parse(br#"{"runId":"r","blueprintId":"b"}"#).unwrap_err().contains("'nodeId'"));
        assert!(JobMessage::parse(br#"{"runId":5,"blueprintId":"b","nodeId":"n"}"#)
            .unwrap_err()
            .contains("must be a string"));
        assert!(JobMessage::parse(&[0xff, 0xfe]).unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("amqp://u:secret@h:5672/v"), "amqp://u:***@h:5672/v");
        assert_eq!(redact("amqp://h"), "amqp://h");
    }
}
