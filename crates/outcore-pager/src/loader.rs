//! Loader threads: call the `BlockSource`, fill the page cache, serve the waiting faults.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use crate::block::{BlockState, Waiter};
use crate::error::{LoadResult, SourceError};
use crate::pager::{FillMode, Job, Shared};
use crate::stats::Counters;
use crate::uffd_file::FileInner;

pub(crate) fn run(shared: &Arc<Shared>, rx: &crossbeam_channel::Receiver<Job>) {
    let mut buf = Vec::new();
    while let Ok(job) = rx.recv() {
        match job {
            Job::Load { file, blk } => load(shared, &file, blk, &mut buf),
            Job::Shutdown => return,
        }
    }
}

/// Calls the source with retries of transient errors; a panic counts as a permanent error.
fn fetch(shared: &Shared, file: &FileInner, blk: u64, buf: &mut [u8]) -> LoadResult {
    let mut attempt = 0u32;
    let start = std::time::Instant::now();
    loop {
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| file.source.load(blk, buf)));
        match r {
            Ok(Ok(())) => {
                if attempt > 0 {
                    tracing::warn!(
                        blk,
                        attempt,
                        "block loaded after {:.1} s of retries",
                        start.elapsed().as_secs_f64()
                    );
                }
                return Ok(());
            }
            Ok(Err(e)) if e.is_transient() && (attempt < shared.max_retries || start.elapsed() < shared.retry_for) => {
                attempt += 1;
                Counters::inc(&shared.counters.load_retries);
                if attempt == 1 || attempt.is_power_of_two() {
                    tracing::warn!(blk, attempt, "retrying block load: {e}");
                }
                std::thread::sleep(Duration::from_millis((10u64 << attempt.min(7)).min(1000)));
            }
            Ok(Err(e)) => return Err(Arc::new(e)),
            Err(_) => return Err(Arc::new(SourceError::permanent("the block source panicked"))),
        }
    }
}

pub(crate) fn load(shared: &Arc<Shared>, file: &Arc<FileInner>, blk: u64, buf: &mut Vec<u8>) {
    let bs = file.blksize;
    buf.resize(bs as usize, 0);
    let size = file.state.lock().size;
    let start = blk * bs;
    let mut res = if start >= size {
        match &file.fill {
            None => buf.fill(0),
            Some(p) => p.write(buf, start),
        }
        Ok(())
    } else {
        let r = fetch(shared, file, blk, buf);
        if r.is_ok() && start + bs > size {
            let tail = &mut buf[(size - start) as usize..];
            match &file.fill {
                None => tail.fill(0),
                Some(p) => p.write(tail, size),
            }
        }
        r
    };
    let mut mapped_view = None;
    if res.is_ok() && shared.fill_mode == FillMode::Copy {
        mapped_view = copy_into_waiting_view(shared, file, blk, buf);
    }
    if res.is_ok() && mapped_view.is_none() {
        res = file
            .memfd
            .write_all_at(buf, start)
            .map_err(|e| Arc::new(SourceError::permanent("writing the page cache").with_cause(e)));
    }
    let mut st = file.state.lock();
    let Some(b) = st.blocks.get_mut(&blk) else {
        drop(st);
        let _ = file.memfd.punch_hole(start, bs);
        return;
    };
    if b.state == (BlockState::Loading { invalidated: true }) {
        b.state = BlockState::Loading { invalidated: false };
        drop(st);
        let _ = file.memfd.punch_hole(start, bs);
        shared.enqueue(file, blk);
        return;
    }
    let waiters = std::mem::take(&mut b.waiters);
    let thread_waits = waiters.iter().any(|w| matches!(w, Waiter::Fault { .. }));
    match &res {
        Ok(()) => {
            b.state = BlockState::Loaded;
            b.pins += 1;
            Counters::inc(&shared.counters.loads);
            shared.counters.resident.fetch_add(bs, std::sync::atomic::Ordering::Relaxed);
            shared.lru.lock().touch((file.id, blk));
        }
        Err(e) => {
            st.blocks.remove(&blk);
            Counters::inc(&shared.counters.load_failures);
            tracing::error!(blk, "block load failed for good: {e}");
        }
    }
    drop(st);
    if res.is_err() {
        let _ = file.memfd.punch_hole(start, bs);
    }
    let wake = file.serve(blk, waiters, &res, mapped_view);
    if res.is_ok() {
        file.unpin(blk);
    }
    file.wake(&wake);
    if res.is_ok() {
        // Spare the block a thread is about to retry its access on.
        shared.enforce_budget_sparing(thread_waits.then_some((file.id, blk)));
    }
}

/// `FillMode::Copy`: fills the block through the first view waiting for it (a faulting thread,
/// or readahead mapping ahead). Returns that view's
/// id on success; on failure the caller falls back to `pwrite` (which rewrites any page copied).
fn copy_into_waiting_view(shared: &Shared, file: &FileInner, blk: u64, buf: &[u8]) -> Option<u64> {
    let view = {
        let st = file.state.lock();
        st.blocks.get(&blk)?.waiters.iter().find_map(|w| match w {
            Waiter::Fault { view, wp: false, .. } | Waiter::Map { view } => Some(view.clone()),
            _ => None,
        })?
    };
    let addr = view.block_addr(blk)?;
    // Hold the view alive: copying into an address reused by another mapping would be wrong.
    let alive = view.alive.read();
    if !*alive {
        return None;
    }
    match shared.engine.fill(addr, buf) {
        Ok(()) => Some(view.id),
        Err(e) => {
            tracing::debug!("UFFDIO_COPY of block {blk}: {e}; falling back to pwrite");
            None
        }
    }
}
