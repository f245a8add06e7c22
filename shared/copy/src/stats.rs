//! Counters a progress display polls. Updated with relaxed atomics: they are for people, not
//! for decisions.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct CopyStats {
    pub edges_done: AtomicU64,
    pub edges_failed: AtomicU64,
    /// Blob bytes streamed through Ferry.
    pub bytes: Arc<AtomicU64>,
    pub blobs_streamed: AtomicU64,
    pub blobs_mounted: AtomicU64,
    /// Blobs the destination already had.
    pub blobs_present: AtomicU64,
    pub manifests_pushed: AtomicU64,
    pub tags_written: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub edges_done: u64,
    pub edges_failed: u64,
    pub bytes: u64,
    pub blobs_streamed: u64,
    pub blobs_mounted: u64,
    pub blobs_present: u64,
    pub manifests_pushed: u64,
    pub tags_written: u64,
}

impl CopyStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            edges_done: get(&self.edges_done),
            edges_failed: get(&self.edges_failed),
            bytes: get(&self.bytes),
            blobs_streamed: get(&self.blobs_streamed),
            blobs_mounted: get(&self.blobs_mounted),
            blobs_present: get(&self.blobs_present),
            manifests_pushed: get(&self.manifests_pushed),
            tags_written: get(&self.tags_written),
        }
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
