//! The start-up sync of the pod reconciler: every key known at start-up
//! (pods, our ports, IP resources, IPAM owners) is processed once before the
//! reconciler reports itself synced.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys still to process since start-up.
#[derive(Default)]
pub struct Startup {
    pending: Mutex<Option<(HashSet<String>, Instant)>>,
}

impl Startup {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(HashSet<String>, Instant)>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts waiting for `keys`; returns how long the sync took when there
    /// is nothing to wait for.
    pub fn begin(&self, keys: HashSet<String>) -> Option<Duration> {
        let started = Instant::now();
        if keys.is_empty() {
            return Some(started.elapsed());
        }
        *self.lock() = Some((keys, started));
        None
    }

    /// Marks `key` processed; returns how long the sync took when it was the
    /// last one.
    pub fn processed(&self, key: &str) -> Option<Duration> {
        let mut pending = self.lock();
        let (keys, started) = pending.as_mut()?;
        if !(keys.remove(key) && keys.is_empty()) {
            return None;
        }
        let elapsed = started.elapsed();
        *pending = None;
        Some(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sync_ends_with_the_last_key() {
        let startup = Startup::default();
        assert!(
            startup.begin(HashSet::new()).is_some(),
            "nothing to wait for"
        );
        let startup = Startup::default();
        assert!(startup.processed("a").is_none(), "not started");
        assert!(startup.begin(["a".into(), "b".into()].into()).is_none());
        assert!(startup.processed("a").is_none());
        assert!(
            startup.processed("x").is_none(),
            "unknown keys do not count"
        );
        assert!(startup.processed("b").is_some());
        assert!(startup.processed("b").is_none(), "reported once");
    }
}
