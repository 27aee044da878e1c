//! Shared helpers of the pager's integration tests: an in-memory block source that logs its
//! calls, and volatile accessors for view memory.

#![allow(unsafe_code, dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use outcore_pager::{BlockSource, Pager, PagerConfig, SourceError, View};
use parking_lot::{Condvar, Mutex};

pub const MIB: usize = 1 << 20;
pub const BS: usize = 2 * MIB;

/// The byte a `MemSource` puts at `off` of block `blk`, generation `gen`.
pub fn pattern(blk: u64, off: usize, gen: u64) -> u8 {
    (blk.wrapping_mul(31).wrapping_add(off as u64 / 4096).wrapping_add(gen.wrapping_mul(7)) % 251) as u8 + 1
}

/// An in-memory source: block `b` holds `pattern(b, off, generation)` (never zero), unless
/// overridden with `set_block`. Logs every call; can be slowed down or made to fail.
#[derive(Default)]
pub struct MemSource {
    pub log: Mutex<Vec<u64>>,
    pub calls: AtomicUsize,
    pub generation: AtomicU64,
    pub overrides: Mutex<HashMap<u64, u8>>,
    pub delay: Mutex<Option<Duration>>,
    /// Remaining transient failures per block.
    pub transient: Mutex<HashMap<u64, u32>>,
    pub permanent: Mutex<HashSet<u64>>,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    /// Blocks whose load waits until `gate_open` (or times out after 10 s).
    pub gated: Mutex<HashSet<u64>>,
    pub gate_open: Mutex<bool>,
    pub gate_cv: Condvar,
    /// If set, every load waits (up to 10 s) until this many loads are in flight at once.
    pub rendezvous: Mutex<Option<usize>>,
    pub rv_cv: Condvar,
    /// Fill only the first 8 bytes of each page (fast, for big scans).
    pub sparse: bool,
}

impl MemSource {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn sparse() -> Arc<Self> {
        Arc::new(Self { sparse: true, ..Self::default() })
    }

    pub fn log(&self) -> Vec<u64> {
        self.log.lock().clone()
    }

    pub fn count(&self, blk: u64) -> usize {
        self.log.lock().iter().filter(|b| **b == blk).count()
    }

    pub fn expected(&self, blk: u64, off: usize) -> u8 {
        if let Some(v) = self.overrides.lock().get(&blk) {
            return *v;
        }
        pattern(blk, off, self.generation.load(Ordering::SeqCst))
    }

    pub fn open_gate(&self) {
        *self.gate_open.lock() = true;
        self.gate_cv.notify_all();
    }
}

/// The u64 a sparse source puts at the start of page `page` of block `blk`.
pub fn sparse_word(blk: u64, page: usize) -> u64 {
    (blk << 20) | page as u64 | 0xA5A5_0000_0000_0000
}

impl BlockSource for MemSource {
    fn load(&self, blk: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        self.log.lock().push(blk);
        self.calls.fetch_add(1, Ordering::SeqCst);
        let n = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(n, Ordering::SeqCst);
        let _guard = scopeguard(|| {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
        });
        let rendezvous = *self.rendezvous.lock();
        if let Some(k) = rendezvous {
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut g = self.rendezvous.lock();
            self.rv_cv.notify_all();
            while self.max_in_flight.load(Ordering::SeqCst) < k && Instant::now() < deadline {
                self.rv_cv.wait_for(&mut g, Duration::from_millis(10));
            }
        }
        let gated = self.gated.lock().contains(&blk);
        if gated {
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut g = self.gate_open.lock();
            while !*g && Instant::now() < deadline {
                self.gate_cv.wait_for(&mut g, Duration::from_millis(10));
            }
        }
        let delay = *self.delay.lock();
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
        if self.permanent.lock().contains(&blk) {
            return Err(SourceError::permanent(format!("block {blk} is corrupt (checksum mismatch)")));
        }
        let fail = match self.transient.lock().get_mut(&blk) {
            Some(left) if *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        };
        if fail {
            return Err(SourceError::transient(format!("block {blk}: connection reset")));
        }
        if self.sparse {
            buf.fill(0);
            for p in 0..buf.len() / 4096 {
                buf[p * 4096..p * 4096 + 8].copy_from_slice(&sparse_word(blk, p).to_le_bytes());
            }
            return Ok(());
        }
        let over = self.overrides.lock().get(&blk).copied();
        if let Some(v) = over {
            buf.fill(v);
            return Ok(());
        }
        let gen = self.generation.load(Ordering::SeqCst);
        for (p, chunk) in buf.chunks_mut(4096).enumerate() {
            chunk.fill(pattern(blk, p * 4096, gen));
        }
        Ok(())
    }
}

pub struct Guard<F: FnMut()>(F);
impl<F: FnMut()> Drop for Guard<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}
pub fn scopeguard<F: FnMut()>(f: F) -> Guard<F> {
    Guard(f)
}

pub fn pager(budget: u64) -> Arc<Pager> {
    pager_with(PagerConfig { cache_budget: budget, ..PagerConfig::default() })
}

/// A pager with `cfg`; `OUTCORE_PAGER_FILL=copy` runs the suite with `FillMode::Copy`.
pub fn pager_with(mut cfg: PagerConfig) -> Arc<Pager> {
    if std::env::var("OUTCORE_PAGER_FILL").is_ok_and(|v| v == "copy") {
        cfg.fill_mode = outcore_pager::FillMode::Copy;
    }
    Pager::new(cfg).expect("pager")
}

/// Reads byte `off` of a view.
pub fn rd(v: &View, off: usize) -> u8 {
    assert!(off < v.len());
    // SAFETY: `off` is inside the live view.
    unsafe { std::ptr::read_volatile(v.as_ptr().add(off)) }
}

/// Reads the u64 at `off` of a view.
pub fn rd64(v: &View, off: usize) -> u64 {
    assert!(off + 8 <= v.len());
    // SAFETY: `off..off+8` is inside the live view; views are page aligned so `off` multiple
    // of 8 is aligned.
    unsafe { std::ptr::read_volatile(v.as_ptr().add(off).cast::<u64>()) }
}

/// Writes byte `off` of a view.
pub fn wr(v: &View, off: usize, val: u8) {
    assert!(off < v.len());
    // SAFETY: `off` is inside the live view.
    unsafe { std::ptr::write_volatile(v.as_ptr().add(off), val) }
}

/// Waits until `f` holds (polling), up to 20 s; returns whether it did.
pub fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    f()
}

/// `(blk, pages)` pairs of a file's dirty set.
pub fn dirty_list(f: &outcore_pager::FileHandle) -> Vec<(u64, Vec<u32>)> {
    f.dirty().expect("dirty").into_iter().map(|d| (d.blk, d.pages.iter().collect())).collect()
}

/// A file of `nblk` blocks of a new [`MemSource`] (its content the [`pattern`]) in pager `p`.
pub fn open(p: &Arc<Pager>, nblk: u64) -> (Arc<MemSource>, outcore_pager::FileHandle) {
    let src = MemSource::new();
    let f = p.open_file(src.clone(), BS, nblk * BS as u64).expect("open_file");
    (src, f)
}

/// `write(2)` of `len` bytes of view `v` from offset `off` into a new temporary file (the
/// kernel reads the view, as any system call would): the call's result, its `errno` if it
/// failed, and what the file holds.
pub fn write_from_view(v: &View, off: usize, len: usize) -> (isize, Option<i32>, Vec<u8>) {
    use std::os::fd::AsRawFd;
    static N: AtomicUsize = AtomicUsize::new(0);
    assert!(off + len <= v.len());
    let k = N.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("outcore-pager-write-{}-{k}", std::process::id()));
    let file = std::fs::File::create(&path).expect("temporary file");
    // SAFETY: `off..off + len` is inside the live view.
    let n = unsafe { libc::write(file.as_raw_fd(), v.as_ptr().add(off).cast(), len) };
    let errno = (n < 0).then(|| std::io::Error::last_os_error().raw_os_error()).flatten();
    let data = std::fs::read(&path).expect("read back");
    std::fs::remove_file(&path).expect("remove");
    (n, errno, data)
}
