//! The lifecycle of one block of a file's page cache.
//!
//! ```text
//!            fault / readahead / prefetch
//!   (absent) ---------------------------> Loading --load ok--> Loaded <--mark_clean-- Dirty
//!      ^                                   |  ^                  |  \--written (scan/WP fault)--^
//!      |<------------- load failed --------+  | invalidated:      |
//!      |                                      | reload            | evict (LRU, budget)
//!      |<------------- punched -------------- Evicting <----------+
//! ```
//! A block absent from the map is Empty: not in the memfd (a hole). Threads faulting on a block
//! that is Loading or Evicting are parked as waiters and served when the transition ends.

use std::sync::Arc;

use crate::view::ViewReg;

/// State of a block present in a file's block map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockState {
    /// A loader thread is filling it. `invalidated`: the content being loaded is stale
    /// (invalidate/discard came meanwhile) and will be reloaded instead of installed.
    Loading { invalidated: bool },
    /// In the memfd, not known to be written since the last load or mark-clean.
    Loaded,
    /// In the memfd with written pages (recorded in the file's dirty map). Never evicted.
    Dirty,
    /// Being dropped from the memfd (eviction, invalidate, discard).
    Evicting,
}

/// Someone waiting for a block transition.
#[derive(Debug)]
pub(crate) enum Waiter {
    /// A thread blocked on a fault at `addr` in `view` (`wp`: a synchronous write fault).
    Fault { view: Arc<ViewReg>, addr: u64, wp: bool, ptid: u32 },
    /// A synchronous caller (prefetch, read_block) waiting for the load result.
    Notify(crossbeam_channel::Sender<crate::error::LoadResult>),
    /// Readahead: map the block into `view` once loaded (no thread waits).
    Map { view: Arc<ViewReg> },
}

/// One block entry.
#[derive(Debug)]
pub(crate) struct Block {
    pub state: BlockState,
    pub waiters: Vec<Waiter>,
    /// Operations in flight that need the block to stay in the memfd (mapping it into views,
    /// reading it); eviction skips pinned blocks.
    pub pins: u32,
}

impl Block {
    pub fn loading() -> Self {
        Self { state: BlockState::Loading { invalidated: false }, waiters: Vec::new(), pins: 0 }
    }

    pub fn is_resident(&self) -> bool {
        matches!(self.state, BlockState::Loaded | BlockState::Dirty)
    }
}
