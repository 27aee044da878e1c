//! The fault-reading thread: turns userfaultfd messages into block loads and mappings.
//!
//! Runs on its own thread; never calls a `BlockSource` and never touches view memory, so it
//! cannot fault itself. Lock order everywhere: a file's state, then the LRU.

use std::sync::Arc;

use crate::block::{Block, BlockState, Waiter};
use crate::engine::Fault;
use crate::pager::Shared;
use crate::stats::Counters;
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
    let view = {
        let views = shared.views.read();
        views.range(..=f.addr).next_back().map(|(_, v)| v.clone())
    };
    let Some(view) = view.filter(|v| f.addr < v.start + v.len) else {
        let _ = shared.engine.wake(page_of(f.addr), PAGE as u64);
        return;
    };
    let Some(file) = view.file.upgrade() else {
        let _ = shared.engine.wake(page_of(f.addr), PAGE as u64);
        return;
    };
    let bs = file.blksize;
    let blk = view.first_blk + (f.addr - view.start) / bs;
    let baddr = view.start + (blk - view.first_blk) * bs;
    let waiter = Waiter::Fault { view: view.clone(), addr: f.addr, wp: f.wp, ptid: f.ptid };
    let mut st = file.state.lock();

    if f.wp {
        // Synchronous dirty tracking: record the page, then let the write through.
        let page = ((f.addr - baddr) / PAGE as u64) as u32;
        match st.blocks.get_mut(&blk) {
            Some(b) if b.is_resident() => {
                b.state = BlockState::Dirty;
                st.dirty.entry(blk).or_default().insert(page);
                shared.lru.lock().remove((file.id, blk));
                drop(st);
                let alive = view.alive.read();
                let r = if *alive { shared.engine.unprotect(page_of(f.addr), PAGE as u64) } else { Ok(()) };
                drop(alive);
                if let Err(e) = r {
                    tracing::debug!("un-protecting {:#x}: {e}", f.addr);
                    let _ = shared.engine.wake(page_of(f.addr), PAGE as u64);
                }
            }
            Some(b) => b.waiters.push(waiter),
            None => {
                drop(st);
                let _ = shared.engine.wake(page_of(f.addr), PAGE as u64);
            }
        }
        return;
    }

    let nblocks_in_size = st.size.div_ceil(bs);
    let window = shared.readahead_blocks.min(shared.budget.load(std::sync::atomic::Ordering::Relaxed) / bs / 4);
    let ra = view.ra.lock().on_fault(blk, window, nblocks_in_size.min(view.first_blk + view.len / bs));
    let mut enqueue = Vec::new();
    let mut resolve_now = false;
    match st.blocks.get_mut(&blk) {
        None => {
            let mut b = Block::loading();
            b.waiters.push(waiter);
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
        Some(b) => b.waiters.push(waiter),
    }
    // Blocks ahead that are cached already (e.g. a second view over loaded data) are mapped now;
    // those being loaded are mapped when they are in.
    let mut map_ahead = Vec::new();
    for rb in ra.blocks {
        match st.blocks.entry(rb) {
            std::collections::hash_map::Entry::Vacant(e) => {
                let mut b = Block::loading();
                if ra.marker != Some(rb) {
                    b.waiters.push(Waiter::Map { view: view.clone() });
                }
                e.insert(b);
                Counters::inc(&shared.counters.readahead_loads);
                enqueue.push(rb);
            }
            std::collections::hash_map::Entry::Occupied(mut e) => {
                let b = e.get_mut();
                if ra.marker != Some(rb) {
                    if b.is_resident() {
                        b.pins += 1;
                        map_ahead.push(rb);
                    } else {
                        // Loading (or being evicted): map it here too once it is in.
                        b.waiters.push(Waiter::Map { view: view.clone() });
                    }
                }
            }
        }
    }
    drop(st);
    if resolve_now {
        let alive = view.alive.read();
        if *alive {
            if let Err(e) = shared.engine.resolve(baddr, bs, f.addr) {
                tracing::debug!("mapping block {blk} at {baddr:#x}: {e}");
            }
        }
        drop(alive);
        file.unpin(blk);
        let _ = shared.engine.wake(baddr, bs);
    }
    for b in enqueue {
        shared.enqueue(&file, b);
    }
    for rb in map_ahead {
        if let Some(a) = view.block_addr(rb) {
            let alive = view.alive.read();
            if *alive {
                if let Err(e) = shared.engine.resolve(a, bs, a) {
                    tracing::debug!("mapping block {rb} ahead at {a:#x}: {e}");
                }
            }
        }
        file.unpin(rb);
    }
}
