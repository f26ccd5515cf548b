//! RabbitMQ: the durable job queue, its dead-letter queue, confirmed
//! persistent publishes and a manual-ack consumer.

use crate::amqp::{self, QueueTarget};
use crate::error::{CoreError, CoreResult};
use crate::timings::Timings;
use futures_util::future::try_join_all;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, Consumer};
use serde::{Deserialize, Serialize};

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
    /// W3C trace context of the run (`startRun` in a traced process): every
    /// job of the run carries it, so node code runs in the run's trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Which time round a loop the node runs (0, and absent on the wire, outside loops):
    /// a job of an earlier iteration than its node's row changes nothing.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub iteration: i32,
    /// When this worker received it (not on the wire): `job:processed`'s duration.
    #[serde(skip)]
    pub received: Option<std::time::Instant>,
    /// This delivery may have committed the node's effect before (not on the wire):
    /// the broker redelivered it, or the worker retries it in place. Only such a
    /// delivery re-publishes what a commit it finds enqueued; a fresh duplicate
    /// leaves that to the delivery that committed, acked only after its publish.
    #[serde(skip)]
    pub seen_before: bool,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

impl JobMessage {
    pub fn new(run_id: &str, blueprint_id: &str, node_id: &str) -> JobMessage {
        JobMessage {
            run_id: run_id.into(),
            blueprint_id: blueprint_id.into(),
            node_id: node_id.into(),
            is_last_attempt: None,
            traceparent: None,
            received: None,
            seen_before: false,
            attempt: None,
            iteration: 0,
        }
    }

    /// The same job for the `iteration`-th time round a loop.
    pub fn in_iteration(mut self, iteration: i32) -> JobMessage {
        self.iteration = iteration;
        self
    }

    /// The same job in the trace `traceparent` (a W3C `traceparent` header;
    /// anything longer than 512 bytes is not carried).
    pub fn with_trace(mut self, traceparent: Option<&str>) -> JobMessage {
        self.traceparent = traceparent.filter(|t| t.len() <= 512).map(String::from);
        self
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
        if let Some(serde_json::Value::String(run_id)) = obj.get("runId") {
            check_run_id(run_id)?;
        }
        serde_json::from_value(value)
            .map(|job: JobMessage| {
                let traceparent = job.traceparent.clone();
                JobMessage { received: Some(std::time::Instant::now()), ..job }.with_trace(traceparent.as_deref())
            })
            .map_err(|e| format!("the job has a field of the wrong type ({e})"))
    }
}

/// Run ids longer than this are refused: the NOTIFY payload that announces a
/// run's end (`<status table>\n<run id>`, status table at most 127 bytes)
/// must stay under PostgreSQL's 8000 bytes.
pub const MAX_RUN_ID_BYTES: usize = 4096;

/// Queue names longer than this are refused: AMQP allows 255 bytes and the
/// dead-letter queue adds `.dead`.
pub const MAX_QUEUE_NAME_BYTES: usize = 250;

/// Why `run_id` cannot be a run id (empty, a NUL, too long), if it cannot.
pub fn check_run_id(run_id: &str) -> Result<(), String> {
    if run_id.is_empty() {
        return Err("the run id is empty".into());
    }
    if run_id.contains('\0') {
        return Err("the run id contains a NUL character, which PostgreSQL text cannot hold".into());
    }
    if run_id.len() > MAX_RUN_ID_BYTES {
        return Err(format!("the run id is {} bytes long; at most {MAX_RUN_ID_BYTES} are allowed", run_id.len()));
    }
    Ok(())
}

/// Why `queue` cannot be the job queue's name, if it cannot.
pub fn check_queue_name(queue: &str) -> Result<(), String> {
    if queue.is_empty() || queue.len() > MAX_QUEUE_NAME_BYTES {
        return Err(format!(
            "queueName {queue:?} must be a non-empty string of at most {MAX_QUEUE_NAME_BYTES} bytes (it is {})",
            queue.len()
        ));
    }
    if queue.starts_with("amq.") {
        return Err(format!("queueName {queue:?} starts with 'amq.', which RabbitMQ reserves for its own queues"));
    }
    Ok(())
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

pub struct Broker {
    connection: Connection,
    publisher: Channel,
    pub queue: String,
    pub dead_queue: String,
    pub timings: Timings,
    label: String,
}

impl Broker {
    /// Connects to one of the target's brokers and makes sure the job queue and
    /// its dead-letter queue exist (see `amqp::ensure_queue`).
    pub async fn connect(target: &QueueTarget) -> CoreResult<Broker> {
        let queue = target.queue.as_str();
        check_queue_name(queue).map_err(CoreError::InvalidArgument)?;
        let connection = amqp::connect(target).await?;
        let dead_queue = format!("{queue}.dead");
        for q in [queue, dead_queue.as_str()] {
            amqp::ensure_queue(&connection, target, q).await?;
        }
        let publisher = connection.create_channel().await.map_err(|e| CoreError::amqp("opening a channel", e))?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| CoreError::amqp("enabling publisher confirms", e))?;
        Ok(Broker {
            connection,
            publisher,
            queue: queue.to_string(),
            dead_queue,
            timings: target.timings.clone(),
            label: target.label(),
        })
    }

    /// Awaits broker confirms for at most the confirm timeout (a black-holed
    /// link never sends them), listed for the stall warning meanwhile.
    async fn confirmed<T>(&self, doing: &str, confirms: impl std::future::Future<Output = T>) -> CoreResult<T> {
        let limit = self.timings.publish_confirm_timeout;
        let waited = tokio::time::timeout(limit, confirms);
        crate::timings::tracked("RabbitMQ", self.label.clone(), doing, waited).await.map_err(|_| {
            CoreError::Timeout(format!("RabbitMQ at {} sent no confirm within {} ms", self.label, limit.as_millis()))
        })
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
        let results = self
            .confirmed("waiting for publish confirms", try_join_all(confirms))
            .await?
            .map_err(|e| CoreError::amqp("waiting for a publish confirm", e))?;
        if results.iter().any(|c| !c.is_ack()) {
            return Err(CoreError::Nacked { what: "a published job" });
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
            .map_err(|e| CoreError::amqp("dead-lettering a message", e))?;
        let confirm = self
            .confirmed("waiting for a dead-letter confirm", confirm)
            .await?
            .map_err(|e| CoreError::amqp("waiting for a dead-letter confirm", e))?;
        if !confirm.is_ack() {
            return Err(CoreError::Nacked { what: "a dead-lettered message" });
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
    fn refuses_run_ids_that_would_strand_their_run() {
        let job = |run: &str| serde_json::json!({ "runId": run, "blueprintId": "b", "nodeId": "n" }).to_string();
        assert!(JobMessage::parse(job(&"r".repeat(MAX_RUN_ID_BYTES)).as_bytes()).is_ok());
        let long = JobMessage::parse(job(&"r".repeat(9000)).as_bytes()).unwrap_err();
        assert!(long.contains("9000 bytes"), "{long}");
        assert!(JobMessage::parse(job("a\u{0}b").as_bytes()).unwrap_err().contains("NUL"));
    }

    #[test]
    fn one_queue_name_limit_and_no_reserved_prefix() {
        assert!(check_queue_name(&"q".repeat(250)).is_ok());
        assert!(check_queue_name(&"q".repeat(251)).is_err());
        assert!(check_queue_name("").is_err());
        assert!(check_queue_name("amq.jobs").unwrap_err().contains("reserves"));
    }
}
