//! Waiting for a condition on a replica without polling: every change applied to the
//! replica wakes the waiters, who re-evaluate their condition.

use std::time::Duration;

use ovsdb::Replica;
use tokio::sync::watch;

/// Wakes waiters on every change of one replica. Dropping it stops the forwarding task.
#[derive(Debug)]
pub struct ChangeSignal {
    replica: Replica,
    generation: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl ChangeSignal {
    /// Starts following `replica` (must be called inside a tokio runtime).
    pub fn follow(replica: Replica) -> Self {
        let mut events = replica.subscribe();
        let (sender, generation) = watch::channel(0u64);
        let task = tokio::spawn(async move {
            while events.recv().await.is_some() {
                sender.send_modify(|g| *g = g.wrapping_add(1));
            }
        });
        ChangeSignal {
            replica,
            generation,
            task,
        }
    }

    /// The replica followed.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// Evaluates `probe` now and after every change until it returns `Some`, for at most
    /// `timeout`; `None` on time-out.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        probe: impl Fn(&Replica) -> Option<T>,
    ) -> Option<T> {
        let mut generation = self.generation.clone();
        let wait = async {
            loop {
                generation.borrow_and_update();
                if let Some(found) = probe(&self.replica) {
                    return Some(found);
                }
                if generation.changed().await.is_err() {
                    return None;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }
}

impl Drop for ChangeSignal {
    fn drop(&mut self) {
        self.task.abort();
    }
}
