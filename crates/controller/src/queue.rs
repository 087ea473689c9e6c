//! A work queue of string keys (router or object names) for event-driven
//! reconcilers: a key added several times before a worker takes it is
//! processed once, a key is never processed by two workers at the same time,
//! and a key added while it is processed is processed again afterwards.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// Deduplicating work queue shared by producers and workers.
#[derive(Default)]
pub struct WorkQueue {
    state: Mutex<State>,
    notify: Notify,
}

#[derive(Default)]
struct State {
    ready: VecDeque<String>,
    queued: HashSet<String>,
    active: HashSet<String>,
    again: HashSet<String>,
    failures: HashMap<String, u32>,
}

/// Delay before the first retry of a failed key; doubled per failure.
const RETRY_BASE: Duration = Duration::from_millis(250);
/// Longest delay between retries of a failed key.
const RETRY_MAX: Duration = Duration::from_secs(30);

impl WorkQueue {
    /// An empty queue.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `key` unless it is already waiting.
    pub fn add(&self, key: &str) {
        let mut state = self.lock();
        if state.queued.contains(key) {
            return;
        }
        if state.active.contains(key) {
            state.again.insert(key.to_string());
            return;
        }
        state.queued.insert(key.to_string());
        state.ready.push_back(key.to_string());
        drop(state);
        self.notify.notify_one();
    }

    /// Number of keys waiting (not counting keys being processed).
    pub fn len(&self) -> usize {
        self.lock().ready.len()
    }

    /// Whether no key is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits for the next key; the caller must call [`WorkQueue::done`] or
    /// [`WorkQueue::failed`] with it.
    pub async fn next(&self) -> String {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if let Some(key) = state.ready.pop_front() {
                    state.queued.remove(&key);
                    state.active.insert(key.clone());
                    let more = !state.ready.is_empty();
                    drop(state);
                    if more {
                        // Another worker may be waiting for the rest.
                        self.notify.notify_one();
                    }
                    return key;
                }
            }
            notified.await;
        }
    }

    /// Marks `key` processed successfully (re-queued if added meanwhile).
    pub fn done(&self, key: &str) {
        let again = {
            let mut state = self.lock();
            state.failures.remove(key);
            state.active.remove(key);
            state.again.remove(key)
        };
        if again {
            self.add(key);
        }
    }

    /// Marks `key` failed: it is retried after an exponential backoff.
    pub fn failed(self: &Arc<Self>, key: &str) {
        let delay = {
            let mut state = self.lock();
            state.active.remove(key);
            state.again.remove(key);
            let failures = state.failures.entry(key.to_string()).or_default();
            *failures = failures.saturating_add(1);
            RETRY_BASE
                .saturating_mul(1 << (*failures - 1).min(16))
                .min(RETRY_MAX)
        };
        let queue = Arc::clone(self);
        let key = key.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(&key);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_are_deduplicated_and_never_processed_twice_at_once() {
        let queue = WorkQueue::new();
        queue.add("a");
        queue.add("b");
        queue.add("a");
        assert_eq!(queue.len(), 2);
        let first = queue.next().await;
        assert_eq!(first, "a");
        // Added while active: not handed out again until done.
        queue.add("a");
        assert_eq!(queue.next().await, "b");
        assert!(queue.is_empty());
        queue.done("b");
        queue.done("a");
        assert_eq!(queue.next().await, "a");
        queue.done("a");
        assert!(queue.is_empty());
    }

    #[tokio::test]
    async fn failed_keys_come_back() {
        let queue = WorkQueue::new();
        queue.add("x");
        let key = queue.next().await;
        queue.failed(&key);
        let again = tokio::time::timeout(Duration::from_secs(10), queue.next())
            .await
            .expect("retried key");
        assert_eq!(again, "x");
    }
}
