//! The worker process's own bookkeeping of the jobs it runs: a lock per
//! `(run, node)` so one delivery of a node runs at a time here, and the runs
//! with jobs in flight (for the heartbeat and cancellations).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

/// Per-process locks on `(run, node)`, dropped when no one holds them.
type NodeLockMap = HashMap<(String, String), Weak<tokio::sync::Mutex<()>>>;

#[derive(Default)]
pub struct NodeLocks(Mutex<NodeLockMap>);

impl NodeLocks {
    /// The lock of `(run_id, node_id)`: the same one for every caller while
    /// anyone holds it, a new one otherwise.
    pub(crate) fn lock(&self, run_id: &str, node_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.0.lock().unwrap();
        let key = (run_id.to_string(), node_id.to_string());
        if let Some(l) = m.get(&key).and_then(Weak::upgrade) {
            return l;
        }
        m.retain(|_, w| w.strong_count() > 0);
        let l = Arc::new(tokio::sync::Mutex::new(()));
        m.insert(key, Arc::downgrade(&l));
        l
    }

    /// Locks still held (for tests).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.0.lock().unwrap().values().filter(|w| w.strong_count() > 0).count()
    }
}

/// Runs with jobs in progress in this worker (for cancellation).
#[derive(Default)]
pub struct InFlight(Mutex<HashMap<String, usize>>);

impl InFlight {
    pub fn runs(&self) -> Vec<String> {
        self.0.lock().unwrap().keys().cloned().collect()
    }
    pub fn contains(&self, run_id: &str) -> bool {
        self.0.lock().unwrap().contains_key(run_id)
    }
    pub(crate) fn enter(&self, run_id: &str) {
        *self.0.lock().unwrap().entry(run_id.to_string()).or_default() += 1;
    }
    pub(crate) fn leave(&self, run_id: &str) {
        let mut m = self.0.lock().unwrap();
        if let Some(n) = m.get_mut(run_id) {
            *n -= 1;
            if *n == 0 {
                m.remove(run_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_lock_per_node_while_held_then_dropped() {
        let locks = NodeLocks::default();
        let a = locks.lock("r", "n");
        let again = locks.lock("r", "n");
        assert!(Arc::ptr_eq(&a, &again), "a second delivery of the node waits on the same lock");
        let other = locks.lock("r", "m");
        assert!(!Arc::ptr_eq(&a, &other));
        let guard = a.try_lock().unwrap();
        assert!(again.try_lock().is_err(), "held by the first delivery");
        drop(guard);
        drop((a, again, other));
        assert_eq!(locks.held(), 0);
        // a lock no one holds is forgotten when the next one is made
        let _n = locks.lock("r", "x");
        assert_eq!(locks.0.lock().unwrap().len(), 1);
    }

    #[test]
    fn a_run_is_in_flight_until_its_last_job_leaves() {
        let runs = InFlight::default();
        runs.enter("r");
        runs.enter("r");
        runs.enter("s");
        runs.leave("r");
        assert!(runs.contains("r"));
        runs.leave("r");
        assert!(!runs.contains("r"));
        runs.leave("r"); // an unmatched leave changes nothing
        assert_eq!(runs.runs(), vec!["s".to_string()]);
    }
}
