//! One LISTEN connection per PostgreSQL target per process, so `waitForRun`
//! is woken by the status write itself (NOTIFY) instead of polling, and
//! workers learn of cancellations.

use crate::error::{CoreError, CoreResult};
use crate::pg::PgTarget;
use crate::run_store::RUN_CHANNEL;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::{broadcast, oneshot, watch};
use tokio_postgres::AsyncMessage;

/// `(status table, run id)`.
pub type RunKey = (String, String);

type Waiters = HashMap<RunKey, Vec<(u64, oneshot::Sender<()>)>>;

pub struct Listener {
    target: PgTarget,
    waiters: Mutex<Waiters>,
    next_waiter: std::sync::atomic::AtomicU64,
    events: broadcast::Sender<RunKey>,
    /// Some(true) once LISTEN is active; Some(false) while reconnecting.
    ready: watch::Sender<Option<Result<(), String>>>,
    started: Mutex<bool>,
}

impl Listener {
    pub fn shared(target: &PgTarget) -> Arc<Listener> {
        static LISTENERS: OnceLock<Mutex<HashMap<PgTarget, Arc<Listener>>>> = OnceLock::new();
        let mut all = LISTENERS.get_or_init(Default::default).lock().unwrap();
        all.entry(target.clone())
            .or_insert_with(|| {
                Arc::new(Listener {
                    target: target.clone(),
                    waiters: Mutex::new(HashMap::new()),
                    next_waiter: Default::default(),
                    events: broadcast::channel(1024).0,
                    ready: watch::channel(None).0,
                    started: Mutex::new(false),
                })
            })
            .clone()
    }

    /// Starts listening (once) and waits until LISTEN is active or the first
    /// connection attempt failed.
    pub async fn ensure(self: &Arc<Self>) -> CoreResult<()> {
        {
            let mut started = self.started.lock().unwrap();
            if !*started {
                *started = true;
                let me = self.clone();
                tokio::spawn(async move { me.run().await });
            }
        }
        let mut rx = self.ready.subscribe();
        let state =
            rx.wait_for(|s| s.is_some()).await.map_err(|_| CoreError::Listener("listener stopped".into()))?.clone();
        match state {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => {
                // Let a later call try again.
                *self.started.lock().unwrap() = false;
                let _ = self.ready.send(None);
                Err(CoreError::Listener(format!("cannot listen for run updates: {e}")))
            }
            None => unreachable!(),
        }
    }

    /// A waiter woken at the next announcement for this run (or when the
    /// listener reconnected, since announcements may have been missed). It is
    /// unregistered when dropped, woken or not.
    pub fn wait(self: &Arc<Self>, key: RunKey) -> Waiter {
        let (tx, rx) = oneshot::channel();
        let id = self.next_waiter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.waiters.lock().unwrap().entry(key.clone()).or_default().push((id, tx));
        Waiter { listener: self.clone(), key, id, rx }
    }

    /// Waiters registered and not yet woken or dropped.
    pub fn waiting(&self) -> usize {
        self.waiters.lock().unwrap().values().map(Vec::len).sum()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<RunKey> {
        self.events.subscribe()
    }

    fn wake_all(&self) {
        let all: Vec<_> = self.waiters.lock().unwrap().drain().collect();
        for (_, senders) in all {
            for (_, s) in senders {
                let _ = s.send(());
            }
        }
    }

    async fn run(self: Arc<Self>) {
        let mut backoff = self.target.timings.reconnect();
        let mut first = true;
        loop {
            match self.listen_once(&mut first).await {
                Ok(()) => backoff.reset(),
                Err(e) => {
                    if first {
                        let _ = self.ready.send(Some(Err(e)));
                        return;
                    }
                }
            }
            // Connection lost: waiters re-check the database themselves.
            self.wake_all();
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    async fn listen_once(&self, first: &mut bool) -> Result<(), String> {
        let (client, mut connection) = self.target.open().await.map_err(|e| e.to_string())?;
        let (msg_tx, mut msg_rx) = tokio::sync::mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            let mut stream = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(m) = stream.next().await {
                match m {
                    Ok(AsyncMessage::Notification(n)) => {
                        let _ = msg_tx.send(n.payload().to_string());
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        client.batch_execute(&format!("LISTEN {RUN_CHANNEL}")).await.map_err(|e| crate::error::chain(&e))?;
        *first = false;
        let _ = self.ready.send(Some(Ok(())));
        // Anything announced while we were not listening is re-checked.
        self.wake_all();
        // LISTEN sends nothing of its own: a link that died silently is found
        // by a ping that gets no answer (keepalives cannot see a dead proxy).
        let (ping_every, ping_limit) = (self.target.timings.pg_listen_ping, self.target.timings.pg_query_timeout);
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
        loop {
            let payload = tokio::select! {
                p = msg_rx.recv() => match p {
                    Some(p) => p,
                    None => break,
                },
                _ = ping.tick() => {
                    match tokio::time::timeout(ping_limit, client.simple_query("SELECT 1")).await {
                        Ok(Ok(_)) => continue,
                        _ => break,
                    }
                }
            };
            let Some((table, run_id)) = payload.split_once('\n') else { continue };
            let key = (table.to_string(), run_id.to_string());
            if let Some(senders) = self.waiters.lock().unwrap().remove(&key) {
                for (_, s) in senders {
                    let _ = s.send(());
                }
            }
            let _ = self.events.send(key);
        }
        driver.abort();
        drop(client);
        Ok(())
    }
}

/// A registration for one run's next announcement (see `Listener::wait`).
pub struct Waiter {
    listener: Arc<Listener>,
    key: RunKey,
    id: u64,
    rx: oneshot::Receiver<()>,
}

impl Waiter {
    /// Resolves when woken.
    pub async fn woken(&mut self) {
        let _ = (&mut self.rx).await;
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut all = self.listener.waiters.lock().unwrap();
        if let Some(list) = all.get_mut(&self.key) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                all.remove(&self.key);
            }
        }
    }
}
