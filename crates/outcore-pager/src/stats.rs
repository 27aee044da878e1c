//! Counters of one pager.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a pager's counters (all since the pager was created).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Blocks loaded (source calls that succeeded, plus zero-filled blocks beyond the size).
    pub loads: u64,
    /// Source calls that failed and were retried.
    pub load_retries: u64,
    /// Loads that failed for good (the faulting accesses got SIGBUS / an error).
    pub load_failures: u64,
    /// Loads started by readahead.
    pub readahead_loads: u64,
    /// Clean blocks evicted to stay within the budget.
    pub evictions: u64,
    /// Page-fault messages handled.
    pub faults: u64,
    /// Bytes of the page caches that hold loaded blocks (clean and dirty).
    pub bytes_resident: u64,
    /// Bytes of blocks known to be dirty (as of the last dirty scan or write fault).
    pub bytes_dirty: u64,
    /// The cache budget in bytes.
    pub cache_budget: u64,
    /// Page-cache engine: `mmap` calls that mapped extents or holes (at open, remap, shrink).
    pub extent_mmaps: u64,
    /// Page-cache engine: blocks re-mapped by `mark_clean`, `invalidate` and `discard`.
    pub blocks_remapped: u64,
    /// Page-cache engine: written pages dropped by `discard`.
    pub pages_discarded: u64,
    /// Page-cache engine: bytes of views read ahead of sequential scans (`PagerConfig::scan_ahead`).
    pub scan_ahead_bytes: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub loads: AtomicU64,
    pub load_retries: AtomicU64,
    pub load_failures: AtomicU64,
    pub readahead_loads: AtomicU64,
    pub evictions: AtomicU64,
    pub faults: AtomicU64,
    pub resident: AtomicU64,
    pub extent_mmaps: AtomicU64,
    pub blocks_remapped: AtomicU64,
    pub pages_discarded: AtomicU64,
    pub scan_ahead_bytes: AtomicU64,
}

impl Counters {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}
