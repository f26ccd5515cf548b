//! The consumer loop: many jobs in flight, acks only after a job's effects are
//! committed and its successors confirmed, reconnects with backoff, and a
//! graceful stop that drains in-flight jobs.

use crate::amqp::QueueTarget;
use crate::error::{CoreError, CoreResult};
use crate::executor::Level;
use crate::job::{Disposition, JobRunner};
use crate::queue::{header_depth, Broker, JobMessage, MAX_HEADER_DEPTH};
use crate::timings::{INLINE_CHAIN_MAX, INLINE_WINDOW};
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicNackOptions};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The broker and the job queue.
    pub target: QueueTarget,
    /// Jobs in flight at once (also the prefetch).
    pub concurrency: usize,
    pub create_tables: bool,
    /// Deliveries of one job (counting redeliveries after a worker died or
    /// lost its connection) before it is dead-lettered as poison.
    pub max_deliveries: u32,
}

#[derive(Debug, Default)]
pub struct Counters {
    pub processed: AtomicU64,
    pub failed: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub retried: AtomicU64,
    /// Jobs run under their predecessor's delivery (`Disposition::Continue`).
    pub continued: AtomicU64,
    pub in_flight: AtomicU64,
    /// The last job durations in ms, for percentiles.
    durations: Mutex<std::collections::VecDeque<f64>>,
}

impl Counters {
    fn record(&self, ms: f64) {
        let mut d = self.durations.lock().unwrap();
        if d.len() == 4096 {
            d.pop_front();
        }
        d.push_back(ms);
    }

    /// `(p50, p99)` of recent job durations in ms.
    pub fn percentiles(&self) -> (f64, f64) {
        let mut v: Vec<f64> = self.durations.lock().unwrap().iter().copied().collect();
        if v.is_empty() {
            return (0.0, 0.0);
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
        (at(0.5), at(0.99))
    }
}

pub struct Worker {
    config: WorkerConfig,
    runner: Mutex<Option<Arc<JobRunner>>>,
    shutdown: watch::Sender<bool>,
    /// How long a stop waits for jobs in flight; set by `stop()`.
    drain_timeout: Arc<Mutex<Duration>>,
    task: Mutex<Option<JoinHandle<()>>>,
    pub counters: Arc<Counters>,
}

impl Worker {
    pub fn new(runner: JobRunner, config: WorkerConfig) -> Worker {
        let (shutdown, _) = watch::channel(false);
        Worker {
            config,
            runner: Mutex::new(Some(Arc::new(runner))),
            shutdown,
            // Set by stop() before it signals the consumer loop.
            drain_timeout: Arc::new(Mutex::new(Duration::ZERO)),
            task: Mutex::new(None),
            counters: Arc::default(),
        }
    }

    /// Prepares the tables, connects, and starts consuming. Errors here (bad
    /// URL, refused connection) are returned; later connection losses are
    /// retried in the background.
    pub async fn start(&self) -> CoreResult<()> {
        if self.task.lock().unwrap().is_some() {
            return Err(CoreError::WorkerState("the worker is already started".into()));
        }
        let runner = self.runner.lock().unwrap().clone().ok_or_else(|| {
            CoreError::WorkerState("the worker was stopped; create a new adapter to start again".into())
        })?;
        if self.config.concurrency == 0 || self.config.concurrency > 10_000 {
            return Err(CoreError::InvalidArgument(format!(
                "concurrency must be between 1 and 10000, got {}",
                self.config.concurrency
            )));
        }
        let installed = runner.store.prepare_tables(self.config.create_tables).await?;
        if !installed.notify || !installed.keep_final {
            runner.executor.log(
                Level::Warn,
                "The status table lacks the adapter's triggers: waitForRun polls every second for statuses other processes write, and a final status is guarded only against this adapter's writes. `npx flowcraft-rabbitmq sql` prints them",
                json!({ "notifyTrigger": installed.notify, "keepFinalTrigger": installed.keep_final }),
            );
        }
        let (broker, channel, consumer) = connect_consumer(&self.config).await?;
        runner.executor.log(
            Level::Info,
            "Worker started",
            json!({ "queue": self.config.target.queue, "concurrency": self.config.concurrency }),
        );
        tokio::spawn(watch_cancellations(runner.clone(), self.shutdown.subscribe()));
        let timings = self.config.target.timings.clone();
        tokio::spawn(heartbeat(runner.clone(), timings.run_heartbeat, self.shutdown.subscribe()));
        tokio::spawn(watch_stalls(runner.clone(), self.counters.clone(), timings, self.shutdown.subscribe()));
        tokio::spawn(wake_sleepers(runner.clone(), self.config.clone(), self.shutdown.subscribe()));
        let stop = Stop { signal: self.shutdown.subscribe(), drain_timeout: self.drain_timeout.clone() };
        let task = tokio::spawn(supervise(
            runner,
            self.config.clone(),
            broker,
            channel,
            consumer,
            stop,
            self.counters.clone(),
        ));
        *self.task.lock().unwrap() = Some(task);
        Ok(())
    }

    /// Stops taking jobs, waits up to `timeout` for jobs in flight, closes the
    /// connection and releases the executor (so JS callbacks are freed).
    pub async fn stop(&self, timeout: Duration) -> CoreResult<()> {
        // A short grace past the timeout lets nodes aborted at the timeout hand
        // their jobs back while the channel is still open; another one closes it.
        let grace = self.config.target.timings.stop_grace;
        *self.drain_timeout.lock().unwrap() = timeout + grace;
        let _ = self.shutdown.send(true);
        let task = self.task.lock().unwrap().take();
        if let Some(task) = task {
            if tokio::time::timeout(timeout + grace * 2 + Duration::from_secs(1), task).await.is_err() {
                self.runner.lock().unwrap().take();
                return Err(CoreError::Timeout(format!(
                    "jobs still running after {} ms; they will be redelivered",
                    timeout.as_millis()
                )));
            }
        }
        self.runner.lock().unwrap().take();
        Ok(())
    }
}

/// Touches `updated_at` of the runs with nodes running here, every `every`.
async fn heartbeat(runner: Arc<JobRunner>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if let Err(e) = runner.store.heartbeat(&runner.in_flight.runs()).await {
            runner.executor.log(Level::Debug, &format!("Heartbeat failed: {e}"), json!({}));
        }
    }
}

/// The sweeps of nodes that wait (`sleep`, `subflow`): every `sleepSweep`,
/// enqueues the sleeping nodes whose wake-up time has come and the subflow
/// nodes whose child run ended (of the blueprints this worker serves), on a
/// broker connection of its own opened when there is something to publish. A
/// failure is logged and tried again at the next sweep; a woken node whose job
/// is lost is enqueued again when its lease (`sleepLease`) ends.
async fn wake_sleepers(runner: Arc<JobRunner>, config: WorkerConfig, mut shutdown: watch::Receiver<bool>) {
    let timings = config.target.timings.clone();
    // only blueprints with a sleep or subflow the core runs (none: no sweep at all)
    let core_runs = |uses: &str| if runner.registry.contains(uses) { vec![] } else { runner.blueprints.using(uses) };
    let subflows = core_runs("subflow");
    let mut waiting = core_runs("sleep");
    waiting.extend(subflows.iter().filter(|b| !waiting.contains(b)).cloned().collect::<Vec<_>>());
    if waiting.is_empty() {
        return;
    }
    let mut broker: Option<Broker> = None;
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tokio::time::sleep(timings.sleep_sweep) => {}
        }
        for (children, blueprints) in [(false, &waiting), (true, &subflows)] {
            if !blueprints.is_empty() && !sweep(&runner, &config, children, blueprints, &mut broker).await {
                broker = None;
            }
        }
        if !subflows.is_empty() {
            await_children(&runner, &subflows).await;
        }
    }
    if let Some(b) = broker {
        b.close().await;
    }
}

/// Runs whose subflow's child stopped at a wait node become `awaiting` themselves (a
/// `workflow:finish` with status `awaiting` each, as FlowRuntime ends such a run).
async fn await_children(runner: &JobRunner, blueprints: &[String]) {
    match runner.store.await_children(blueprints, 500).await {
        Ok(marked) => {
            for w in marked {
                runner.log(
                    Level::Info,
                    "Run is awaiting resumeWithAction (its subflow's child run is)",
                    json!({ "runId": w.run_id, "nodeId": w.node_id }),
                );
                runner.finished(&JobMessage::new(&w.run_id, &w.blueprint_id, &w.node_id), "awaiting", None);
            }
        }
        Err(e) => runner.executor.log(Level::Warn, &format!("Sweep of awaiting subflows failed: {e}"), json!({})),
    }
}

/// One sweep (`children`: of subflow nodes); false when its broker connection failed.
async fn sweep(
    runner: &JobRunner,
    config: &WorkerConfig,
    children: bool,
    blueprints: &[String],
    broker: &mut Option<Broker>,
) -> bool {
    const BATCH: i64 = 500;
    let timings = &config.target.timings;
    loop {
        let woken = match runner.store.wake(children, blueprints, BATCH, timings.sleep_lease).await {
            Ok(w) => w,
            Err(e) => {
                runner.executor.log(Level::Warn, &format!("Sweep of waiting nodes failed: {e}"), json!({}));
                return true;
            }
        };
        if woken.is_empty() {
            return true;
        }
        let jobs: Vec<JobMessage> = woken
            .iter()
            .map(|w| JobMessage::new(&w.run_id, &w.blueprint_id, &w.node_id).in_iteration(w.iteration))
            .collect();
        let published = match broker.as_ref() {
            Some(b) if b.is_connected() => b.publish_jobs(&jobs).await,
            _ => match Broker::connect(&config.target).await {
                Ok(b) => broker.insert(b).publish_jobs(&jobs).await,
                Err(e) => Err(e),
            },
        };
        if let Err(e) = published {
            runner.executor.log(
                Level::Warn,
                &format!(
                    "Sweep could not enqueue {} woken nodes (tried again in {} s): {e}",
                    jobs.len(),
                    timings.sleep_lease.as_secs()
                ),
                json!({ "queue": config.target.queue }),
            );
            return false;
        }
        if woken.len() < BATCH as usize {
            return true;
        }
    }
}

/// Warns when a service call (or an in-place retry on a service) has been in
/// progress for longer than `stall_warning` while jobs are in flight, once per
/// stall, naming the service; and says when it answers again.
async fn watch_stalls(
    runner: Arc<JobRunner>,
    counters: Arc<Counters>,
    timings: crate::timings::Timings,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut warned: std::collections::HashMap<(&'static str, String), std::time::Instant> = Default::default();
    let tick = (timings.stall_warning / 10).clamp(Duration::from_millis(100), Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        let in_flight = counters.in_flight.load(Ordering::Relaxed);
        let stalls = crate::timings::stalls();
        for (p, calls) in &stalls {
            let waited = p.since.elapsed();
            let key = (p.service, p.target.clone());
            if in_flight == 0 || waited < timings.stall_warning || warned.get(&key) == Some(&p.since) {
                continue;
            }
            warned.insert(key, p.since);
            runner.executor.log(
                Level::Warn,
                &format!(
                    "{} at {} has not answered for {} s ({}); {calls} call(s) waiting, {in_flight} job(s) in flight",
                    p.service,
                    p.target,
                    waited.as_secs(),
                    p.doing
                ),
                json!({ "service": p.service, "target": p.target, "waitedMs": waited.as_millis() as u64 }),
            );
        }
        warned.retain(|key, since| {
            let still = stalls.iter().any(|(p, _)| (p.service, &p.target) == (key.0, &key.1) && p.since == *since);
            if !still {
                runner.executor.log(
                    Level::Info,
                    &format!("{} at {} answered again after {} s", key.0, key.1, since.elapsed().as_secs()),
                    json!({ "service": key.0, "target": key.1 }),
                );
            }
            still
        });
    }
}

/// Aborts the nodes of runs cancelled while they run here (LISTEN/NOTIFY).
async fn watch_cancellations(runner: Arc<JobRunner>, mut shutdown: watch::Receiver<bool>) {
    let listener = crate::notify::Listener::shared(runner.store.pool().target());
    if let Err(e) = listener.ensure().await {
        runner.executor.log(Level::Warn, &format!("Cancellations will not reach running nodes: {e}"), json!({}));
        return;
    }
    let mut events = listener.subscribe();
    loop {
        let key = tokio::select! {
            _ = shutdown.changed() => return,
            k = events.recv() => match k {
                Ok(k) => k,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            },
        };
        if key.0 != runner.store.status_table() || !runner.in_flight.contains(&key.1) {
            continue;
        }
        if let Ok(Some(status)) = runner.store.run_status(&key.1).await {
            if status == "cancelled" {
                runner.executor.cancel(&key.1);
            }
        }
    }
}

/// How the consumer loop learns it must stop, and how long it may drain.
struct Stop {
    signal: watch::Receiver<bool>,
    drain_timeout: Arc<Mutex<Duration>>,
}

fn consumer_tag() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("flowcraft-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

async fn supervise(
    runner: Arc<JobRunner>,
    config: WorkerConfig,
    mut broker: Arc<Broker>,
    mut channel: lapin::Channel,
    mut consumer: lapin::Consumer,
    stop: Stop,
    counters: Arc<Counters>,
) {
    let mut shutdown = stop.signal;
    let slots = Arc::new(Semaphore::new(config.concurrency));
    loop {
        // Consume until shutdown or until the connection drops.
        let stopping = loop {
            let next = tokio::select! {
                _ = shutdown.changed() => break true,
                next = consumer.next() => next,
            };
            let delivery = match next {
                Some(Ok(d)) => d,
                Some(Err(e)) => {
                    runner.executor.log(
                        Level::Warn,
                        &format!("RabbitMQ consumer failed: {e}; reconnecting"),
                        json!({ "queue": config.target.queue }),
                    );
                    break false;
                }
                None => {
                    runner.executor.log(
                        Level::Warn,
                        "RabbitMQ consumer was cancelled; reconnecting",
                        json!({ "queue": config.target.queue }),
                    );
                    break false;
                }
            };
            let permit = slots.clone().acquire_owned().await.expect("semaphore is never closed");
            let (runner, broker, counters, stop) = (runner.clone(), broker.clone(), counters.clone(), shutdown.clone());
            let (max_deliveries, slots, concurrency) = (config.max_deliveries, slots.clone(), config.concurrency);
            tokio::spawn(async move {
                // Every job in flight when a worker died or lost its connection
                // comes back redelivered: those run at full concurrency. A job
                // whose node already started on an earlier redelivery (counted
                // in PostgreSQL) may be what kills workers: it runs alone, so no
                // other job is in flight to be blamed with it.
                let mut permit = permit;
                if delivery.redelivered && runner.suspect(&delivery.data).await {
                    drop(permit);
                    permit = slots.acquire_many_owned(concurrency as u32).await.expect("semaphore is never closed");
                }
                handle_delivery(&runner, &broker, delivery, &counters, stop, max_deliveries).await;
                drop(permit);
            });
        };
        if stopping || *shutdown.borrow() {
            let _ = channel.basic_cancel(consumer.tag(), BasicCancelOptions::default()).await;
            // Wait for jobs in flight (up to the stop timeout): their acks need the channel open.
            let drain_timeout = *stop.drain_timeout.lock().unwrap();
            let _ = tokio::time::timeout(drain_timeout, slots.acquire_many(config.concurrency as u32)).await;
            let _ = channel.close(200, "stopping".into()).await;
            broker.close().await;
            runner.executor.log(Level::Info, "Worker stopped", json!({ "queue": config.target.queue }));
            return;
        }
        // Reconnect with capped exponential backoff until it works or we stop.
        let mut backoff = config.target.timings.reconnect();
        loop {
            if *shutdown.borrow() {
                return;
            }
            match connect_consumer(&config).await {
                Ok((b, c, k)) => {
                    broker = b;
                    channel = c;
                    consumer = k;
                    runner.executor.log(
                        Level::Info,
                        "Reconnected to RabbitMQ",
                        json!({ "queue": config.target.queue }),
                    );
                    break;
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    runner.executor.log(
                        Level::Warn,
                        &format!(
                            "Cannot reach RabbitMQ at {}: {e}; retrying in {} ms",
                            config.target.label(),
                            delay.as_millis()
                        ),
                        json!({ "queue": config.target.queue }),
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        }
    }
}

async fn connect_consumer(config: &WorkerConfig) -> CoreResult<(Arc<Broker>, lapin::Channel, lapin::Consumer)> {
    let broker = Arc::new(Broker::connect(&config.target).await?);
    let (channel, consumer) = broker.consume(config.concurrency.min(u16::MAX as usize) as u16, &consumer_tag()).await?;
    Ok((broker, channel, consumer))
}

async fn handle_delivery(
    runner: &JobRunner,
    broker: &Broker,
    delivery: lapin::message::Delivery,
    counters: &Counters,
    stop: watch::Receiver<bool>,
    max_deliveries: u32,
) {
    // A service outage is retried in place, with the message held unacked: if
    // this worker dies meanwhile, the broker hands the job to another one.
    let started = std::time::Instant::now();
    counters.in_flight.fetch_add(1, Ordering::Relaxed);
    let mut backoff = broker.timings.job_retry();
    let depth = delivery.properties.headers().as_ref().map_or(0, header_depth);
    let mut retried = false;
    // The successor this delivery went on with (`Disposition::Continue`), once it has.
    let mut current: Option<JobMessage> = None;
    let mut chain = 0usize;
    let disposition = loop {
        if depth > MAX_HEADER_DEPTH {
            break Disposition::DeadLetter(format!(
                "the message's AMQP headers nest {depth} tables deep (at most {MAX_HEADER_DEPTH}); \
                 they were removed from the dead letter"
            ));
        }
        let outcome = match &current {
            None => runner.handle(&delivery.data, delivery.redelivered, retried, max_deliveries, broker).await,
            Some(job) => {
                // Walking a redelivered chain to where its last holder stopped, the job counts as
                // redelivered (toward poison); past it (enqueued by this delivery's own commit), not.
                let redelivered = delivery.redelivered && job.seen_before;
                let job = JobMessage { seen_before: job.seen_before || retried, ..job.clone() };
                runner.handle_job(job, redelivered, max_deliveries, broker).await
            }
        };
        match outcome {
            Disposition::Retry(e) if broker.is_connected() && !*stop.borrow() => {
                retried = true;
                counters.retried.fetch_add(1, Ordering::Relaxed);
                let delay = backoff.next_delay();
                runner.executor.log(
                    Level::Warn,
                    &format!("Job failed on a service error, retrying in {} ms: {e}", delay.as_millis()),
                    json!({ "code": e.code() }),
                );
                tokio::time::sleep(delay).await;
            }
            Disposition::Continue(next) => {
                runner.enqueued(&next);
                chain += 1;
                let connected = broker.is_connected();
                // A stopping worker, a long chain or an old delivery gives the successor a
                // message of its own (it has not run: a fresh job is all it needs).
                let hand_off = *stop.borrow() || chain >= INLINE_CHAIN_MAX || started.elapsed() >= INLINE_WINDOW;
                if !connected || !hand_off {
                    // (a job whose successor is handed off is counted with the delivery's ack)
                    counters.processed.fetch_add(1, Ordering::Relaxed);
                }
                // The delivery is gone with its connection: its redelivery walks the chain from
                // here (going on would run the successor beside that walk).
                if !connected {
                    break Disposition::Retry(CoreError::WorkerState(
                        "the connection that delivered the job closed; its redelivery goes on from here".into(),
                    ));
                }
                if hand_off {
                    match broker.publish_jobs(std::slice::from_ref(&*next)).await {
                        Ok(()) => break Disposition::Ack,
                        Err(e) => break Disposition::Retry(e),
                    }
                }
                counters.continued.fetch_add(1, Ordering::Relaxed);
                current = Some(*next);
                retried = false;
                backoff = broker.timings.job_retry();
            }
            other => break other,
        }
    };
    // The job's work is done; only its acknowledgement remains. Counted here,
    // before the counters below, so stats never show a job both finished and
    // in flight.
    counters.in_flight.fetch_sub(1, Ordering::Relaxed);
    counters.record(started.elapsed().as_secs_f64() * 1000.0);
    let outcome = match disposition {
        // (a `Continue` never ends the loop above)
        Disposition::Ack | Disposition::Continue(_) => {
            counters.processed.fetch_add(1, Ordering::Relaxed);
            delivery.acker.ack(BasicAckOptions::default()).await
        }
        Disposition::DeadLetter(reason) => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            // A successor run under this delivery has no message of its own: its dead letter
            // carries its job. (Any other end but an ack gives the delivery back, and its
            // redelivery walks the chain to it again: `JobRunner::publish_committed`.)
            let successor = current.as_ref().map(|job| serde_json::to_vec(job).expect("a job serialises"));
            let no_properties = lapin::BasicProperties::default();
            let (body, properties) = match &successor {
                Some(body) => (body.as_slice(), &no_properties),
                None => (delivery.data.as_slice(), &delivery.properties),
            };
            match broker.dead_letter(body, &reason, properties).await {
                Ok(()) => {
                    counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    runner.executor.log(
                        Level::Warn,
                        &format!("Message dead-lettered to {}: {reason}", broker.dead_queue),
                        json!({ "queue": broker.queue }),
                    );
                    delivery.acker.ack(BasicAckOptions::default()).await
                }
                Err(e) => {
                    runner.executor.log(
                        Level::Error,
                        &format!("Cannot dead-letter a message ({e}); requeueing it"),
                        json!({ "queue": broker.queue }),
                    );
                    tokio::time::sleep(broker.timings.dead_letter_retry).await;
                    delivery.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await
                }
            }
        }
        Disposition::Requeue => delivery.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await,
        Disposition::Retry(e) => {
            // Stopping or disconnected: give the job back to the broker.
            runner.executor.log(
                Level::Warn,
                &format!("Job handed back to the queue: {e}"),
                json!({ "code": e.code() }),
            );
            delivery.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await
        }
    };
    if let Err(e) = outcome {
        // The channel is gone; the broker redelivers the message to someone.
        runner.executor.log(
            Level::Warn,
            &format!("Cannot acknowledge a message ({e}); it will be redelivered"),
            json!({ "queue": broker.queue }),
        );
    }
}
