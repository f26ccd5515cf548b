//! One LISTEN connection per PostgreSQL target per process, so `waitForRun`
//! is woken by the status write itself (NOTIFY) instead of polling, and
//! workers learn of cancellations.

use crate::error::{CoreError, CoreResult};
use crate::pg::PgTarget;
use crate::run_store::RUN_CHANNEL;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{broadcast, oneshot, watch};
use tokio_postgres::AsyncMessage;

/// `(status table, run id)`.
pub type RunKey = (String, String);

pub struct Listener {
    target: PgTarget,
    waiters: Mutex<HashMap<RunKey, Vec<oneshot::Sender<()>>>>,
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
            rx.wait_for(|s| s.is_some()).await.map_err(|_| CoreError::WorkerState("listener stopped".into()))?.clone();
        match state {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => {
                // Let a later call try again.
                *self.started.lock().unwrap() = false;
                let _ = self.ready.send(None);
                Err(CoreError::WorkerState(format!("cannot listen for run updates: {e}")))
            }
            None => unreachable!(),
        }
    }

    /// A receiver that fires at the next announcement for this run (or when
    /// the listener reconnected, since announcements may have been missed).
    pub fn wait(&self, key: RunKey) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().unwrap().entry(key).or_default().push(tx);
        rx
    }

    /// Drops the senders of this run whose receivers are gone (a wait that
    /// ended without an announcement), so that waits leave nothing behind.
    pub fn forget(&self, key: &RunKey) {
        let mut waiters = self.waiters.lock().unwrap();
        if let Some(senders) = waiters.get_mut(key) {
            senders.retain(|s| !s.is_closed());
            if senders.is_empty() {
                waiters.remove(key);
            }
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<RunKey> {
        self.events.subscribe()
    }

    fn wake_all(&self) {
        let all: Vec<_> = self.waiters.lock().unwrap().drain().collect();
        for (_, senders) in all {
            for s in senders {
                let _ = s.send(());
            }
        }
    }

    async fn run(self: Arc<Self>) {
        let mut delay = Duration::from_millis(200);
        let mut first = true;
        loop {
            match self.listen_once(&mut first).await {
                Ok(()) => delay = Duration::from_millis(200),
                Err(e) => {
                    if first {
                        let _ = self.ready.send(Some(Err(e)));
                        return;
                    }
                }
            }
            // Connection lost: waiters re-check the database themselves.
            self.wake_all();
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
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
        while let Some(payload) = msg_rx.recv().await {
            let Some((table, run_id)) = payload.split_once('\n') else { continue };
            let key = (table.to_string(), run_id.to_string());
            if let Some(senders) = self.waiters.lock().unwrap().remove(&key) {
                for s in senders {
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
