//! The counters this process keeps for `/metrics` and the dashboard (they
//! start at 0 with it, as Prometheus expects of counters).

use std::sync::atomic::{AtomicU64, Ordering};

use super::locks::KeyLocks;

/// A dataset's counters.
#[derive(Debug, Default)]
pub struct DatasetCounters {
    pub origin_calls: AtomicU64,
    pub rate_limited: AtomicU64,
    pub watch_checks: AtomicU64,
    pub overdue: AtomicU64,
    pub alerts: AtomicU64,
}

/// Records seen since the process started, by what became of them, and the
/// objects being applied.
#[derive(Debug, Default)]
pub struct EventCounters {
    pub applied: AtomicU64,
    pub ignored: AtomicU64,
    pub unchanged: AtomicU64,
    /// Records that could not be applied (the sender was told to retry).
    pub failed: AtomicU64,
    /// The objects whose records are being applied.
    pub locks: KeyLocks,
}

pub fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}
