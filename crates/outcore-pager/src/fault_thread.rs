//! The fault-reading thread: turns userfaultfd messages into block loads and mappings.
//!
//! Runs on its own thread; never calls a `BlockSource` and never touches view memory, so it
//! cannot fault itself. Lock order everywhere: a file's state, then the LRU.

use std::collections::hash_map::Entry;
use std::sync::Arc;

use crate::block::{Block, BlockState, Waiter};
use crate::engine::Fault;
use crate::pager::Shared;
use crate::readahead::Plan;
use crate::stats::Counters;
use crate::uffd_file::{FileInner, FileState};
use crate::view::ViewReg;
use crate::PAGE;

pub(crate) fn run(shared: &Arc<Shared>) {
    let mut faults = Vec::with_capacity(64);
    loop {
        faults.clear();
        match shared.engine.wait_faults(&mut faults) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::error!("userfaultfd read failed, the fault thread stops: {e}");
                return;
            }
        }
        for f in &faults {
            handle(shared, *f);
        }
    }
}

fn page_of(addr: u64) -> u64 {
    addr & !(PAGE as u64 - 1)
}

fn handle(shared: &Arc<Shared>, f: Fault) {
    Counters::inc(&shared.counters.faults);
    let Some(fault) = BlockFault::new(shared, f) else {
        // Not in a view of a live file: let the access go on (it faults again or fails).
        let _ = shared.engine.wake(page_of(f.addr), PAGE as u64);
        return;
    };
    if f.wp {
        fault.record_write();
    } else {
        fault.load_or_map();
    }
}

/// A fault in block `blk` of a view of a live file.
struct BlockFault<'a> {
    shared: &'a Arc<Shared>,
    f: Fault,
    view: Arc<ViewReg>,
    file: Arc<FileInner>,
    blk: u64,
    /// Address of the block in the view.
    baddr: u64,
}

impl<'a> BlockFault<'a> {
    /// The view and block of fault `f` (`None`: in no view, or its file is gone).
    fn new(shared: &'a Arc<Shared>, f: Fault) -> Option<Self> {
        let view = {
            let views = shared.views.read();
            views.range(..=f.addr).next_back().map(|(_, v)| v.clone())
        };
        let view = view.filter(|v| f.addr < v.start + v.len)?;
        let file = view.file.upgrade()?;
        let bs = file.blksize;
        let blk = view.first_blk + (f.addr - view.start) / bs;
        let baddr = view.start + (blk - view.first_blk) * bs;
        Some(BlockFault { shared, f, view, file, blk, baddr })
    }

    /// What waits for the block when it is not in yet: this access.
    fn waiter(&self) -> Waiter {
        Waiter::Fault { view: self.view.clone(), addr: self.f.addr, wp: self.f.wp, ptid: self.f.ptid }
    }

    /// A write-protect fault (synchronous dirty tracking): records the page, then lets the
    /// write through.
    fn record_write(&self) {
        let (shared, addr, blk) = (self.shared, self.f.addr, self.blk);
        let page = ((addr - self.baddr) / PAGE as u64) as u32;
        let mut st = self.file.state.lock();
        match st.blocks.get_mut(&blk) {
            Some(b) if b.is_resident() => {
                b.state = BlockState::Dirty;
                st.dirty.entry(blk).or_default().insert(page);
                shared.lru.lock().remove((self.file.id, blk));
                drop(st);
                let alive = self.view.alive.read();
                let r = if *alive { shared.engine.unprotect(page_of(addr), PAGE as u64) } else { Ok(()) };
                drop(alive);
                if let Err(e) = r {
                    tracing::debug!("un-protecting {addr:#x}: {e}");
                    let _ = shared.engine.wake(page_of(addr), PAGE as u64);
                }
            }
            Some(b) => b.waiters.push(self.waiter()),
            None => {
                drop(st);
                let _ = shared.engine.wake(page_of(addr), PAGE as u64);
            }
        }
    }

    /// A missing-page fault: maps the block now if it is in, else has it loaded (this access
    /// waits for it); and starts the readahead the fault pattern asks for.
    fn load_or_map(&self) {
        let (shared, file, blk) = (self.shared, &self.file, self.blk);
        let bs = file.blksize;
        let mut st = file.state.lock();
        let nblocks_in_size = st.size.div_ceil(bs);
        let window = shared.readahead_blocks.min(shared.budget.load(std::sync::atomic::Ordering::Relaxed) / bs / 4);
        let ra =
            self.view.ra.lock().on_fault(blk, window, nblocks_in_size.min(self.view.first_blk + self.view.len / bs));
        let mut enqueue = Vec::new();
        let mut resolve_now = false;
        match st.blocks.get_mut(&blk) {
            None => {
                let mut b = Block::loading();
                b.waiters.push(self.waiter());
                st.blocks.insert(blk, b);
                enqueue.push(blk);
            }
            Some(b) if b.is_resident() => {
                b.pins += 1;
                resolve_now = true;
                if b.state == BlockState::Loaded {
                    shared.lru.lock().touch((file.id, blk));
                }
            }
            Some(b) => b.waiters.push(self.waiter()),
        }
        let map_ahead = self.claim_ahead(&mut st, &ra, &mut enqueue);
        drop(st);
        if resolve_now {
            self.map(blk, self.baddr, self.f.addr);
            let _ = shared.engine.wake(self.baddr, bs);
        }
        for b in enqueue {
            shared.enqueue(file, b);
        }
        for rb in map_ahead {
            if let Some(a) = self.view.block_addr(rb) {
                self.map(rb, a, a);
            } else {
                file.unpin(rb);
            }
        }
    }

    /// The blocks of readahead plan `ra`: those not cached are added to `enqueue` (and mapped
    /// into the view once they are in); the cached ones are pinned and returned, to be mapped
    /// now (e.g. a second view over loaded data). The marker block is only loaded.
    fn claim_ahead(&self, st: &mut FileState, ra: &Plan, enqueue: &mut Vec<u64>) -> Vec<u64> {
        let mut map_ahead = Vec::new();
        for rb in ra.blocks.clone() {
            match st.blocks.entry(rb) {
                Entry::Vacant(e) => {
                    let mut b = Block::loading();
                    if ra.marker != Some(rb) {
                        b.waiters.push(Waiter::Map { view: self.view.clone() });
                    }
                    e.insert(b);
                    Counters::inc(&self.shared.counters.readahead_loads);
                    enqueue.push(rb);
                }
                Entry::Occupied(mut e) => {
                    let b = e.get_mut();
                    if ra.marker != Some(rb) {
                        if b.is_resident() {
                            b.pins += 1;
                            map_ahead.push(rb);
                        } else {
                            // Loading (or being evicted): map it here too once it is in.
                            b.waiters.push(Waiter::Map { view: self.view.clone() });
                        }
                    }
                }
            }
        }
        map_ahead
    }

    /// Maps pinned block `blk` at `baddr` of the view (if the view is still mapped; `addr` is
    /// the faulting address or `baddr`), then unpins it.
    fn map(&self, blk: u64, baddr: u64, addr: u64) {
        let alive = self.view.alive.read();
        if *alive {
            if let Err(e) = self.shared.engine.resolve(baddr, self.file.blksize, addr) {
                tracing::debug!("mapping block {blk} at {baddr:#x}: {e}");
            }
        }
        drop(alive);
        self.file.unpin(blk);
    }
}
