//! Reading ahead of sequential scans of page-cache views.
//!
//! A cold scan of a mapping pays, on the scanning thread, for every fault: page-cache folios
//! allocated, reads submitted and waited for, page tables filled. numpy.memmap pays the same.
//! A second thread that reads the view a little ahead of the scanner (`MADV_POPULATE_READ`)
//! takes that work off it and keeps the disk busy while the scanner computes: 1.08-1.14x
//! numpy.memmap's cold scan at 1 GiB where the plain mapping is level with it
//! (`docs/design/008-cold-scan.md`, `docs/design/experiments/ahead_thread.py`).
//!
//! The engine sees no faults, so the scanner's position is inferred from tripwires. The view is
//! read in chunks of [`CHUNK`] bytes (aligned in memory); the first [`TRIP`] bytes of each chunk
//! (one whole page-table page, so that populating the rest of the chunk never maps them, not
//! even as a 2 MiB folio) are left alone, and `PAGEMAP_SCAN` tells when all of their pages are
//! mapped: a scanner went through. Random reads map a page and the few around it (the kernel's
//! fault-around), so they do not trip a wire, while a scan maps every page it passes. The thread keeps at most `ahead` bytes read beyond the last
//! tripwire crossed, so only a view that is scanned is read ahead, and never by more than that.
//! A view is watched from its first page on: a scan that starts elsewhere, or walks backwards,
//! or jumps, gets the kernel's readahead only.
//!
//! Populating reads exactly what the scanner would read next, into the same mapping (file pages
//! for extents, the zero page for holes), and never writes: it cannot change what any view
//! reads or what a commit finds written. A view being remapped meanwhile only makes a populate
//! fail or read the new extent; a failed populate ends that view's watch.
//!
//! One thread per pager, started by the first long view. A forked child gets no thread (its
//! scans get the kernel's readahead only): the parent's lock may have been held at the fork.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::{scanner, MappedFile, Scanner};
use crate::mapping::Scan;
use crate::stats::Counters;
use crate::sys;

/// Bytes read per step (memory-aligned chunks).
const CHUNK: u64 = 16 << 20;

/// Bytes left unread at the start of each chunk as its tripwire (a page-table page).
const TRIP: u64 = 2 << 20;

/// Views shorter than this are not watched (two chunks: a shorter scan gains little).
const MIN_VIEW: u64 = 2 * CHUNK;

/// Most watched views; views mapped beyond it get the kernel's readahead only.
const MAX_WATCHES: usize = 64;

/// Polling interval right after progress; it doubles while nothing moves, up to [`MAX_POLL`].
const MIN_POLL: Duration = Duration::from_micros(500);

/// Longest polling interval while views are watched (the delay before a scan is noticed).
const MAX_POLL: Duration = Duration::from_millis(16);

/// Held by a view: its watch ends when the view is dropped.
#[derive(Debug)]
pub(crate) struct Armed(#[allow(dead_code)] Arc<()>);

/// The scan-ahead state of one pager.
pub(crate) struct Ahead {
    /// Bytes read ahead of a scanner (0: off).
    bytes: u64,
    /// The process that may use `inner` (0: not started).
    pid: AtomicU32,
    inner: Mutex<Option<Arc<Inner>>>,
}

struct Inner {
    watches: Mutex<Vec<Watch>>,
    wake: Condvar,
}

/// One watched view.
struct Watch {
    file: Weak<MappedFile>,
    view: Weak<()>,
    /// Memory range of the view.
    start: u64,
    end: u64,
    /// Where the next chunk starts.
    next: u64,
    /// Tripwires not crossed yet, ascending (addresses of chunk starts).
    trips: VecDeque<u64>,
    /// The last tripwire crossed.
    crossed: Option<u64>,
}

/// What a step of a watch did.
enum Step {
    /// Read a chunk.
    Read,
    /// Waits for the scanner.
    Idle,
    /// Over: the view or its file is gone, all of it was read, or a read failed.
    Done,
}

impl Ahead {
    /// Scan-ahead of `bytes` (0: off).
    pub fn new(bytes: u64) -> Self {
        Self { bytes, pid: AtomicU32::new(0), inner: Mutex::new(None) }
    }

    /// Watches the view `[start, start+len)` of `file`, if it is long enough, scan-ahead is on,
    /// `PAGEMAP_SCAN` can tell mapped pages, and this process started the thread (or may now).
    pub fn arm(&self, file: &Arc<MappedFile>, start: u64, len: u64) -> Option<Armed> {
        if self.bytes == 0 || len < MIN_VIEW || !matches!(scanner(), Ok(Scanner::Scan(_))) {
            return None;
        }
        let pid = std::process::id();
        match self.pid.compare_exchange(0, pid, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {}
            Err(p) if p == pid => {}
            Err(_) => return None, // a forked child: the parent's locks may be held
        }
        let inner = {
            let mut g = self.inner.lock();
            match &*g {
                Some(i) => i.clone(),
                None => {
                    let i = Arc::new(Inner { watches: Mutex::new(Vec::new()), wake: Condvar::new() });
                    let (weak, bytes) = (Arc::downgrade(&i), self.bytes);
                    let spawned =
                        std::thread::Builder::new().name("outcore-ahead".into()).spawn(move || run(&weak, bytes));
                    if let Err(e) = spawned {
                        tracing::debug!("no scan-ahead thread: {e}");
                        return None;
                    }
                    *g = Some(i.clone());
                    i
                }
            }
        };
        let token = Arc::new(());
        let mut ws = inner.watches.lock();
        if ws.len() >= MAX_WATCHES {
            return None;
        }
        ws.push(Watch {
            file: Arc::downgrade(file),
            view: Arc::downgrade(&token),
            start,
            end: start + len,
            next: start,
            trips: VecDeque::from([start]),
            crossed: None,
        });
        inner.wake.notify_one();
        Some(Armed(token))
    }
}

/// The thread: steps every watch, sleeps while none moves, ends with the pager.
fn run(inner: &Weak<Inner>, bytes: u64) {
    let mut poll = MIN_POLL;
    loop {
        let Some(me) = inner.upgrade() else { return };
        let mut ws = std::mem::take(&mut *me.watches.lock());
        let mut moved = false;
        ws.retain_mut(|w| match w.step(bytes) {
            Step::Read => {
                moved = true;
                true
            }
            Step::Idle => true,
            Step::Done => false,
        });
        let mut g = me.watches.lock();
        g.append(&mut ws);
        if moved {
            poll = MIN_POLL;
            continue;
        }
        if g.is_empty() {
            // Nothing to watch: wait for a view (or for the pager to go, checked each second).
            me.wake.wait_for(&mut g, Duration::from_secs(1));
            poll = MIN_POLL;
        } else {
            me.wake.wait_for(&mut g, poll);
            poll = (poll * 2).min(MAX_POLL);
        }
    }
}

impl Watch {
    fn step(&mut self, ahead: u64) -> Step {
        if self.view.strong_count() == 0 {
            return Step::Done;
        }
        let Some(file) = self.file.upgrade() else { return Step::Done };
        while let Some(&t) = self.trips.front() {
            match mapped_all(t, (t + TRIP).min(self.end)) {
                Ok(true) => {
                    self.crossed = Some(t);
                    self.trips.pop_front();
                }
                Ok(false) => break,
                Err(_) => return Step::Done,
            }
        }
        let Some(crossed) = self.crossed else { return Step::Idle };
        if self.next >= self.end {
            return if self.trips.is_empty() { Step::Done } else { Step::Idle };
        }
        if self.next >= crossed.saturating_add(ahead) {
            return Step::Idle;
        }
        let chunk_end = (self.next + 1).next_multiple_of(CHUNK).min(self.end);
        // The view's first chunk is read whole (the scanner is in it); later ones leave their
        // tripwire.
        let from = if self.next == self.start { self.next } else { (self.next + TRIP).min(chunk_end) };
        if from < chunk_end {
            let base = file.res.base();
            if let Err(e) = file.res.populate_read(from - base, chunk_end - from) {
                tracing::debug!("scan-ahead of {} stopped: {e}", file.label);
                return Step::Done;
            }
            Counters::add(&file.shared.counters.scan_ahead_bytes, chunk_end - from);
        }
        if self.next != self.start {
            self.trips.push_back(self.next);
        }
        self.next = chunk_end;
        Step::Read
    }
}

/// Whether every page of `[start, end)` is mapped (`PAGEMAP_SCAN` finds none that is not).
fn mapped_all(start: u64, end: u64) -> std::io::Result<bool> {
    let Ok(Scanner::Scan(pm)) = scanner() else { return Ok(false) };
    let spec = Scan { none_of: sys::PAGE_IS_PRESENT, report: sys::PAGE_IS_PRESENT, ..Scan::default() };
    let mut missing = false;
    pm.scan(start, end, spec, |_| missing = true)?;
    Ok(!missing)
}
