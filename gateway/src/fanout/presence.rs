//! Who is connected to a batch on this gateway, for `/metrics` and the console.

use std::sync::atomic::Ordering;

use super::BatchHub;

impl BatchHub {
    /// Families with at least one connection on this gateway.
    pub fn families_online(&self) -> usize {
        self.families
            .lock()
            .values()
            .filter(|s| s.receiver_count() > 0)
            .count()
    }

    pub fn watcher_joined(&self) {
        self.watchers.fetch_add(1, Ordering::Relaxed);
    }

    pub fn watcher_left(&self) {
        self.watchers.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn watchers(&self) -> usize {
        self.watchers.load(Ordering::Relaxed)
    }
}
