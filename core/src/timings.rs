//! The one home of every retry, backoff and timeout of the worker and the run
//! API: the `Timings` setting (defaults below, overridable through the
//! adapter's `timings` option, in milliseconds), the `Backoff` policy every
//! retry loop uses, and the tracker of service calls in progress that the
//! worker's stall warning reads.
//!
//! Defaults are chosen so that a dead link to any service (a connection that
//! stays open while no byte flows) is noticed and replaced within 30 s, and a
//! call stuck for more than 10 s while jobs are in flight is logged.

use serde::{Deserialize, Deserializer};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A delivery goes on with at most this many successors in a row under its own
/// message (`Disposition::Continue`); the next one gets a message of its own.
pub const INLINE_CHAIN_MAX: usize = 64;

/// Nor past this age of the delivery: its message stays unacked for the whole
/// chain, and a broker's `consumer_timeout` (30 min by default) closes the
/// channel of a delivery held too long.
pub const INLINE_WINDOW: Duration = Duration::from_secs(10);

/// Every timeout and interval, with its default. JSON field names are the
/// adapter option's: `amqpHeartbeatMs`, `pgQueryTimeoutMs`, ...
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Timings {
    /// AMQP heartbeat proposed to the broker (rounded to whole seconds; a URL
    /// with its own `?heartbeat=` wins). lapin and the broker declare the link
    /// dead after two missed heartbeats. Default 10 s.
    #[serde(rename = "amqpHeartbeatMs", deserialize_with = "ms")]
    pub amqp_heartbeat: Duration,
    /// TCP connect, TLS and AMQP handshake, queue declarations. Default 10 s.
    #[serde(rename = "amqpConnectTimeoutMs", deserialize_with = "ms")]
    pub amqp_connect_timeout: Duration,
    /// How long the broker may take to confirm published jobs (and dead
    /// letters); past it the publish is a service error, retried. Default 15 s.
    #[serde(rename = "publishConfirmTimeoutMs", deserialize_with = "ms")]
    pub publish_confirm_timeout: Duration,
    /// How long the run API (startRun, reconcile) keeps retrying a publish
    /// through a broker moment (a cluster node lost, a quorum queue electing
    /// its leader), with the commit-retry backoff. Default 30 s.
    #[serde(rename = "publishPatienceMs", deserialize_with = "ms")]
    pub publish_patience: Duration,
    /// The whole PostgreSQL connect: TCP, TLS, startup and authentication. Default 10 s.
    #[serde(rename = "pgConnectTimeoutMs", deserialize_with = "ms")]
    pub pg_connect_timeout: Duration,
    /// One PostgreSQL statement, client side: past it the connection is taken
    /// out of the pool and closed, and the call fails as a service error
    /// (retried). Default 20 s.
    #[serde(rename = "pgQueryTimeoutMs", deserialize_with = "ms")]
    pub pg_query_timeout: Duration,
    /// TCP keepalive on PostgreSQL sockets: idle time before the first probe. Default 5 s.
    #[serde(rename = "pgKeepaliveIdleMs", deserialize_with = "ms")]
    pub pg_keepalive_idle: Duration,
    /// Between keepalive probes. Default 2 s.
    #[serde(rename = "pgKeepaliveIntervalMs", deserialize_with = "ms")]
    pub pg_keepalive_interval: Duration,
    /// Unanswered probes before the kernel drops the connection. Default 3.
    #[serde(rename = "pgKeepaliveRetries")]
    pub pg_keepalive_retries: u32,
    /// Linux `TCP_USER_TIMEOUT` on PostgreSQL sockets: sent data unacknowledged
    /// this long drops the connection. Default 15 s.
    #[serde(rename = "pgTcpUserTimeoutMs", deserialize_with = "ms")]
    pub pg_tcp_user_timeout: Duration,
    /// The LISTEN connection (waitForRun, cancellations) runs no query of its
    /// own: it is pinged this often, and replaced when a ping times out. Default 10 s.
    #[serde(rename = "pgListenPingMs", deserialize_with = "ms")]
    pub pg_listen_ping: Duration,
    /// Redis connect. Default 5 s.
    #[serde(rename = "redisConnectTimeoutMs", deserialize_with = "ms")]
    pub redis_connect_timeout: Duration,
    /// One Redis command. Default 10 s.
    #[serde(rename = "redisResponseTimeoutMs", deserialize_with = "ms")]
    pub redis_response_timeout: Duration,
    /// A job that failed on a service error is retried in place, its message
    /// held unacked, from this delay doubling up to `jobRetryMaxMs`. Default 200 ms.
    #[serde(rename = "jobRetryMinMs", deserialize_with = "ms")]
    pub job_retry_min: Duration,
    /// Default 5 s.
    #[serde(rename = "jobRetryMaxMs", deserialize_with = "ms")]
    pub job_retry_max: Duration,
    /// Once a node has run, its commit is retried in place (never the node) for
    /// as long as the broker connection that delivered the job is open, from
    /// this delay doubling up to `commitRetryMaxMs`. Default 100 ms.
    #[serde(rename = "commitRetryMinMs", deserialize_with = "ms")]
    pub commit_retry_min: Duration,
    /// Default 2 s.
    #[serde(rename = "commitRetryMaxMs", deserialize_with = "ms")]
    pub commit_retry_max: Duration,
    /// Reconnecting to RabbitMQ and the LISTEN connection: from this delay,
    /// doubling up to `reconnectMaxMs`. Default 200 ms.
    #[serde(rename = "reconnectMinMs", deserialize_with = "ms")]
    pub reconnect_min: Duration,
    /// Default 10 s.
    #[serde(rename = "reconnectMaxMs", deserialize_with = "ms")]
    pub reconnect_max: Duration,
    /// After `stop()`'s timeout, how long aborted nodes have to hand their jobs
    /// back while the channel is still open. Default 2 s.
    #[serde(rename = "stopGraceMs", deserialize_with = "ms")]
    pub stop_grace: Duration,
    /// A service call (or an in-place retry) with jobs in flight that has not
    /// finished after this long is logged as a warning naming the service. Default 10 s.
    #[serde(rename = "stallWarningMs", deserialize_with = "ms")]
    pub stall_warning: Duration,
    /// How often `updated_at` of runs with nodes running here is touched, so
    /// long nodes do not look stalled to reconcilers. Default 10 s.
    #[serde(rename = "runHeartbeatMs", deserialize_with = "ms")]
    pub run_heartbeat: Duration,
    /// A dead letter the broker refused is requeued after this delay. Default 1 s.
    #[serde(rename = "deadLetterRetryMs", deserialize_with = "ms")]
    pub dead_letter_retry: Duration,
    /// How often each worker looks for sleeping nodes whose wake-up time has
    /// come (a `sleep` node wakes up to this much late). Default 1 s.
    #[serde(rename = "sleepSweepMs", deserialize_with = "ms")]
    pub sleep_sweep: Duration,
    /// A woken node whose job has not completed it after this long is
    /// enqueued again (its job was lost). Default 60 s.
    #[serde(rename = "sleepLeaseMs", deserialize_with = "ms")]
    pub sleep_lease: Duration,
    /// How long `start()` retries a failure that may heal (a refused or
    /// dropped connection, a server starting up), from 500 ms doubling to 5 s.
    /// The loop is the adapter's (`lib/adapter.js` `_startWithRetries`); the
    /// value lives here with the others. 0: no retry. Default 30 s.
    #[serde(rename = "startRetryMs", deserialize_with = "ms")]
    pub start_retry: Duration,
    /// Most PostgreSQL connections the process's pool for one server and user
    /// opens (`pg.rs` `PgPool`); the LISTEN connection and transactions come on
    /// top. Each connection pipelines many statements, so a few serve a large
    /// `concurrency`; lower it when many workers share a server's
    /// `max_connections`. Default 8.
    #[serde(rename = "pgPoolSize")]
    pub pg_pool_size: u32,
}

impl Default for Timings {
    fn default() -> Timings {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        Timings {
            amqp_heartbeat: s(10),
            amqp_connect_timeout: s(10),
            publish_confirm_timeout: s(15),
            publish_patience: s(30),
            pg_connect_timeout: s(10),
            pg_query_timeout: s(20),
            pg_keepalive_idle: s(5),
            pg_keepalive_interval: s(2),
            pg_keepalive_retries: 3,
            pg_tcp_user_timeout: s(15),
            pg_listen_ping: s(10),
            redis_connect_timeout: s(5),
            redis_response_timeout: s(10),
            job_retry_min: ms(200),
            job_retry_max: s(5),
            commit_retry_min: ms(100),
            commit_retry_max: s(2),
            reconnect_min: ms(200),
            reconnect_max: s(10),
            stop_grace: s(2),
            stall_warning: s(10),
            run_heartbeat: s(10),
            dead_letter_retry: s(1),
            sleep_sweep: s(1),
            sleep_lease: s(60),
            start_retry: s(30),
            pg_pool_size: 8,
        }
    }
}

fn ms<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let n = f64::deserialize(d)?;
    if !n.is_finite() || n < 0.0 || n > u32::MAX as f64 {
        return Err(serde::de::Error::custom(format!("{n} is not a number of milliseconds from 0 to 2^32 - 1")));
    }
    Ok(Duration::from_millis(n.ceil() as u64))
}

impl Timings {
    pub fn job_retry(&self) -> Backoff {
        Backoff::new(self.job_retry_min, self.job_retry_max)
    }
    pub fn commit_retry(&self) -> Backoff {
        Backoff::new(self.commit_retry_min, self.commit_retry_max)
    }
    pub fn reconnect(&self) -> Backoff {
        Backoff::new(self.reconnect_min, self.reconnect_max)
    }
    /// The AMQP heartbeat in whole seconds (at least 1; 0 would turn it off).
    pub fn amqp_heartbeat_seconds(&self) -> u16 {
        self.amqp_heartbeat.as_secs_f64().round().clamp(1.0, f64::from(u16::MAX)) as u16
    }
}

/// Capped exponential backoff: `min`, `2 min`, `4 min`, ... up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    min: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let min = min.max(Duration::from_millis(1));
        Backoff { next: min, max: max.max(min), min }
    }

    /// The delay to wait now; the next one doubles (up to the cap).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// Back to the first delay (after a success).
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// A service call in progress, for the stall warning.
#[derive(Debug, Clone)]
pub struct Pending {
    pub service: &'static str,
    pub target: String,
    pub doing: String,
    pub since: Instant,
}

fn pending() -> &'static Mutex<HashMap<u64, Pending>> {
    static PENDING: OnceLock<Mutex<HashMap<u64, Pending>>> = OnceLock::new();
    PENDING.get_or_init(Default::default)
}

/// Removes its entry from the tracker when the call ends (or is dropped).
struct Tracked(u64);

impl Drop for Tracked {
    fn drop(&mut self) {
        pending().lock().unwrap().remove(&self.0);
    }
}

/// Runs `call` while it is listed as in progress on `service` (`PostgreSQL`,
/// `RabbitMQ`, `Redis`) at `target`, so the worker can warn when it stalls.
pub async fn tracked<F: Future>(service: &'static str, target: String, doing: &str, call: F) -> F::Output {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    pending().lock().unwrap().insert(id, Pending { service, target, doing: doing.to_string(), since: Instant::now() });
    let _tracked = Tracked(id);
    call.await
}

/// The oldest call in progress per `(service, target)`, with how many there are.
pub fn stalls() -> Vec<(Pending, usize)> {
    let mut by: HashMap<(&'static str, String), (Pending, usize)> = HashMap::new();
    for p in pending().lock().unwrap().values() {
        let e = by.entry((p.service, p.target.clone())).or_insert_with(|| (p.clone(), 0));
        e.1 += 1;
        if p.since < e.0.since {
            e.0 = p.clone();
        }
    }
    by.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides_in_milliseconds() {
        let t: Timings = serde_json::from_str(r#"{"pgQueryTimeoutMs": 1500, "amqpHeartbeatMs": 4000}"#).unwrap();
        assert_eq!(t.pg_query_timeout, Duration::from_millis(1500));
        assert_eq!(t.amqp_heartbeat_seconds(), 4);
        assert_eq!(t.stall_warning, Duration::from_secs(10));
        let t: Timings = serde_json::from_str(r#"{"pgPoolSize": 3, "startRetryMs": 0}"#).unwrap();
        assert_eq!((t.pg_pool_size, t.start_retry), (3, Duration::ZERO));
        assert_eq!(Timings::default().pg_pool_size, 8);
        assert!(serde_json::from_str::<Timings>(r#"{"pgQueryTimeout": 1}"#).is_err());
        assert!(serde_json::from_str::<Timings>(r#"{"pgQueryTimeoutMs": -1}"#).is_err());
    }

    #[test]
    fn backoff_doubles_to_its_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let d: Vec<u128> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(d, [100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.next_delay().as_millis(), 100);
    }
}
