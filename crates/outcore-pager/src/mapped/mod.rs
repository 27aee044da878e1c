//! The page-cache engine: blocks whose committed bytes lie, uncompressed and page aligned, in
//! data files owned by the layer above are mapped `MAP_PRIVATE` at fixed addresses of one
//! reservation per file. Reads are page-cache hits; writes become private copy-on-write pages,
//! found with `PAGEMAP_SCAN`; nothing here ever writes a data file.

mod ahead;
mod os;
pub(crate) mod sigbus;

pub(crate) use ahead::{Ahead, Armed};

use std::collections::BTreeMap;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::dirty::{add_range, DirtyBlock, PageSet};
use crate::mapping::{Pagemap, Scan};
use crate::pager::Shared;
use crate::stats::Counters;
use crate::{sys, PagerError, SourceError, PAGE};

use os::Reservation;

/// Where a block's committed bytes are. The pager maps them read/write `MAP_PRIVATE` and never
/// writes the file.
#[derive(Clone, Debug)]
pub enum Extent {
    /// Never written: reads zeros (anonymous memory).
    Hole,
    /// `blksize` bytes of `file` at `offset` (a multiple of the page size; the file is at least
    /// `offset + blksize` long).
    File {
        /// The data file (only its descriptor is used, to map it).
        file: Arc<std::fs::File>,
        /// Byte offset of the block in it.
        offset: u64,
    },
}

/// Tells the page-cache engine where blocks are. Implemented above the pager (by the core, over
/// the store).
///
/// # Calling context
/// Called by [`Pager::open_mapped_file`](crate::Pager::open_mapped_file), `mark_clean`,
/// `invalidate` and `discard`, on the calling thread, with the file's mutex held (so it must not
/// call back into the same file).
pub trait ExtentSource: Send + Sync + 'static {
    /// The extents of the stored blocks in `blks`, ascending; blocks not listed are holes.
    fn extents(&self, blks: Range<u64>) -> Result<Vec<(u64, Extent)>, SourceError>;
}

/// Runs of blocks in file order at least this long (bytes) are mapped without `MADV_HUGEPAGE`
/// (see `MappedFile::map_blocks`): the kernel's sequential readahead reaches 2 MiB folios within
/// them by itself.
const HUGE_RUN: u64 = 16 << 20;

/// ... or at least this many blocks, if that is shorter: every remap asks the extent source for
/// this many blocks on each side, which stays cheap for small blocks.
const HUGE_RUN_BLOCKS: u64 = 16;

/// Blocks in a run in file order from which on it is mapped without `MADV_HUGEPAGE`.
fn huge_run_blocks(blksize: u64) -> u64 {
    HUGE_RUN.div_ceil(blksize).clamp(1, HUGE_RUN_BLOCKS)
}

/// Smallest reservation tried first: 1 TiB of addresses (`MAP_NORESERVE` memory is not charged).
const MIN_RESERVATION: u64 = 1 << 40;

/// Mutable state of a page-cache file (under its mutex).
#[derive(Debug)]
struct State {
    size: u64,
    /// High-water mark of the size and of view ends, in bytes (a multiple of the block size):
    /// dirty scans cover `[0, scan_end)`.
    scan_end: u64,
    /// Blocks a shrink replaced by anonymous zeros (as `start -> end` block ranges): `discard`
    /// maps the source's extents there again.
    replaced: BTreeMap<u64, u64>,
}

/// A file of the page-cache engine.
pub(crate) struct MappedFile {
    shared: Arc<Shared>,
    source: Arc<dyn ExtentSource>,
    pub blksize: u64,
    label: String,
    state: Mutex<State>,
    sigbus: sigbus::Registration,
    res: Reservation,
}

impl std::fmt::Debug for MappedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedFile")
            .field("label", &self.label)
            .field("blksize", &self.blksize)
            .field("base", &format_args!("{:#x}", self.res.base()))
            .field("reserved", &self.res.len())
            .finish()
    }
}

/// How written pages are found: `PAGEMAP_SCAN`, or `/proc/self/pagemap` where it is missing.
enum Scanner {
    Scan(Pagemap),
    Read(std::fs::File),
}

fn scanner() -> Result<&'static Scanner, PagerError> {
    // One per process: a `/proc/self/pagemap` opened before a `fork` keeps describing the
    // parent, so a forked child (dask's and multiprocessing's fork workers) opens its own, or
    // it would find none of its own writes. (One small leak per process that scans.)
    type Opened = Result<Scanner, String>;
    static SCANNER: Mutex<Option<(u32, &'static Opened)>> = Mutex::new(None);
    let pid = std::process::id();
    let mut cur = SCANNER.lock();
    let opened: &'static Opened = match *cur {
        Some((p, s)) if p == pid => s,
        _ => {
            let s: &'static Opened = Box::leak(Box::new(open_scanner()));
            *cur = Some((pid, s));
            s
        }
    };
    opened.as_ref().map_err(|e| PagerError::io("finding written pages", std::io::Error::other(e.clone())))
}

fn open_scanner() -> Result<Scanner, String> {
    let pm = Pagemap::open().map_err(|e| format!("opening /proc/self/pagemap: {e}"))?;
    if pm.supported() {
        return Ok(Scanner::Scan(pm));
    }
    tracing::debug!("PAGEMAP_SCAN unsupported: dirty pages of page-cache files come from /proc/self/pagemap");
    std::fs::File::open("/proc/self/pagemap").map(Scanner::Read).map_err(|e| format!("opening /proc/self/pagemap: {e}"))
}

/// Written pages of `[start, end)` with `PAGEMAP_SCAN`: present or swapped, neither file pages
/// nor the shared zero page. Calls `f(start, end)` per run.
fn scan_written_ioctl(pm: &Pagemap, start: u64, end: u64, mut f: impl FnMut(u64, u64)) -> std::io::Result<()> {
    let spec = Scan {
        flags: 0,
        all_of: 0,
        none_of: sys::PAGE_IS_FILE | sys::PAGE_IS_PFNZERO,
        any_of: sys::PAGE_IS_PRESENT | sys::PAGE_IS_SWAPPED,
        report: sys::PAGE_IS_PRESENT | sys::PAGE_IS_SWAPPED,
    };
    pm.scan(start, end, spec, |r| f(r.start, r.end))
}

/// Written pages of `[start, end)` from `/proc/self/pagemap` entries: present (bit 63) or
/// swapped (bit 62) and not a file page (bit 61). The zero page cannot be told apart without
/// PFNs: an anonymous page only read counts as written.
fn scan_written_read(file: &std::fs::File, start: u64, end: u64, mut f: impl FnMut(u64, u64)) -> std::io::Result<()> {
    const CHUNK: usize = 32 * 1024;
    let page = PAGE as u64;
    let mut buf = vec![0u8; CHUNK * 8];
    let mut run: Option<(u64, u64)> = None;
    let mut a = start;
    while a < end {
        let n = (((end - a) / page) as usize).min(CHUNK);
        let bytes = &mut buf[..n * 8];
        file.read_exact_at(bytes, a / page * 8)?;
        for (i, e) in bytes.chunks_exact(8).enumerate() {
            let e = u64::from_le_bytes(e.try_into().expect("8 bytes"));
            let written = e & (3 << 62) != 0 && e & (1 << 61) == 0;
            let p = a + i as u64 * page;
            match (written, &mut run) {
                (true, Some((_, re))) if *re == p => *re = p + page,
                (true, _) => {
                    if let Some((s, e)) = run.take() {
                        f(s, e);
                    }
                    run = Some((p, p + page));
                }
                (false, _) => {}
            }
        }
        a += n as u64 * page;
    }
    if let Some((s, e)) = run {
        f(s, e);
    }
    Ok(())
}

/// A run of consecutive blocks mapped by one `mmap`: from a file (same descriptor, consecutive
/// offsets) or anonymous.
struct Segment {
    first: u64,
    n: u64,
    file: Option<(Arc<std::fs::File>, u64)>,
}

impl MappedFile {
    pub fn open(
        shared: Arc<Shared>,
        source: Arc<dyn ExtentSource>,
        blksize: u64,
        size: u64,
        label: &str,
    ) -> Result<Arc<Self>, PagerError> {
        // Room to grow: 4x the size, at least 1 TiB of addresses (views keep their addresses,
        // so the file can never move: growing past the reservation needs a new connection).
        // Addresses cost nothing until used (`MAP_NORESERVE`, page tables on demand); when the
        // address space is short, smaller reservations are tried, down to the size itself.
        let too_big =
            || PagerError::io(format!("reserving {size} bytes for {label}"), std::io::ErrorKind::OutOfMemory.into());
        let needed = size.max(1).checked_next_multiple_of(blksize).ok_or_else(too_big)?;
        let mut want = size
            .checked_mul(4)
            .map(|w| w.max(MIN_RESERVATION))
            .and_then(|w| w.checked_next_multiple_of(blksize))
            .unwrap_or(needed);
        let res = loop {
            match Reservation::new(want) {
                Ok(r) => break r,
                Err(e) if want <= needed => {
                    return Err(PagerError::io(format!("reserving {needed} bytes for {label}"), e));
                }
                Err(_) => want = (want / 2).next_multiple_of(blksize).max(needed),
            }
        };
        let sigbus = sigbus::register(res.base(), res.base() + res.len(), blksize, label);
        let f = Arc::new(Self {
            shared,
            source,
            blksize,
            label: label.to_string(),
            state: Mutex::new(State { size, scan_end: size.next_multiple_of(blksize), replaced: BTreeMap::new() }),
            sigbus,
            res,
        });
        let n = size.div_ceil(blksize);
        if n > 0 {
            let _st = f.state.lock();
            f.map_blocks(0..n, false)?;
        }
        Ok(f)
    }

    fn nblocks_reserved(&self) -> u64 {
        self.res.len() / self.blksize
    }

    /// Makes the reservation cover `bytes`, growing it in place if needed. State lock held.
    fn ensure_reserved(&self, bytes: u64) -> Result<(), PagerError> {
        if bytes <= self.res.len() {
            return Ok(());
        }
        let Some(needed) = bytes.checked_next_multiple_of(self.blksize) else {
            return Err(PagerError::ReservationExceeded {
                label: self.label.clone(),
                reserved: self.res.len(),
                needed: bytes,
            });
        };
        let generous = needed.checked_mul(2).unwrap_or(needed);
        let r = self.res.extend(generous).or_else(|_| self.res.extend(needed));
        if let Err(e) = r {
            tracing::debug!("extending the reservation of {}: {e}", self.label);
            return Err(PagerError::ReservationExceeded {
                label: self.label.clone(),
                reserved: self.res.len(),
                needed: bytes,
            });
        }
        self.sigbus.set_end(self.res.base() + self.res.len());
        Ok(())
    }

    /// Asks the source where blocks `blks` are and maps them (holes: anonymous memory only when
    /// `holes_too`, i.e. when the range may hold other mappings). State lock held.
    ///
    /// Runs of blocks in file order of at least [`HUGE_RUN`] bytes (or [`HUGE_RUN_BLOCKS`]
    /// blocks) are mapped with the kernel's default page policy, as `numpy.memmap` maps a file:
    /// sequential faults grow the readahead to 2 MiB folios. Shorter runs get `MADV_HUGEPAGE`,
    /// which gives them 2 MiB folios in any order; on a long run it made cold scans slower
    /// (`docs/design/008-cold-scan.md`). A run is measured with as many blocks around `blks` as
    /// that threshold has, so a block remapped alone gets the advice its whole run got, and its
    /// mapping merges with the run's.
    fn map_blocks(&self, blks: Range<u64>, holes_too: bool) -> Result<(), PagerError> {
        let blks = blks.start..blks.end.min(self.nblocks_reserved());
        if blks.is_empty() {
            return Ok(());
        }
        let reach = huge_run_blocks(self.blksize);
        let asked = blks.start.saturating_sub(reach)..blks.end.saturating_add(reach).min(self.nblocks_reserved());
        let listed = self.source.extents(asked.clone()).map_err(|error| PagerError::Extents {
            label: self.label.clone(),
            blks: asked.clone(),
            error,
        })?;
        let mut segs: Vec<Segment> = Vec::new();
        let bs = self.blksize;
        let joins = |a: &Option<(Arc<std::fs::File>, u64)>, n: u64, b: &Option<(Arc<std::fs::File>, u64)>| match (a, b)
        {
            (None, None) => true,
            (Some((af, ao)), Some((bf, bo))) => af.as_raw_fd() == bf.as_raw_fd() && ao + n * bs == *bo,
            _ => false,
        };
        let mut push = |blk: u64, file: Option<(Arc<std::fs::File>, u64)>| {
            if let Some(last) = segs.last_mut() {
                if last.first + last.n == blk && joins(&last.file, last.n, &file) {
                    last.n += 1;
                    return;
                }
            }
            segs.push(Segment { first: blk, n: 1, file });
        };
        // The extents of the stored blocks around `blks`.
        let mut around: BTreeMap<u64, (Arc<std::fs::File>, u64)> = BTreeMap::new();
        let mut next = asked.start;
        let mut next_in = blks.start;
        for (blk, ext) in listed {
            if blk < next || blk >= asked.end {
                return Err(PagerError::InvalidArgument(format!(
                    "the extent source of {} listed block {blk} for blocks {asked:?} (out of range or order)",
                    self.label
                )));
            }
            next = blk + 1;
            let file = match ext {
                Extent::Hole => None,
                Extent::File { file, offset } => {
                    if offset % PAGE as u64 != 0 {
                        return Err(PagerError::InvalidArgument(format!(
                            "extent of block {blk} of {} at offset {offset}, not a multiple of {PAGE}",
                            self.label
                        )));
                    }
                    Some((file, offset))
                }
            };
            if blk < blks.start || blk >= blks.end {
                if let Some(f) = file {
                    around.insert(blk, f);
                }
                continue;
            }
            if holes_too {
                for b in next_in..blk {
                    push(b, None);
                }
            }
            if file.is_some() || holes_too {
                push(blk, file);
            }
            next_in = blk + 1;
        }
        if holes_too {
            for b in next_in..blks.end {
                push(b, None);
            }
        }
        for s in segs {
            let (off, len) = (s.first * bs, s.n * bs);
            let r = match &s.file {
                Some((file, foff)) => {
                    let flen = file
                        .metadata()
                        .map_err(|e| PagerError::io(format!("fstat of the data file of {}", self.label), e))?
                        .len();
                    if flen < foff + len {
                        return Err(PagerError::InvalidArgument(format!(
                            "blocks {}..{} of {} lie at {foff}..{} of a data file of {flen} bytes",
                            s.first,
                            s.first + s.n,
                            self.label,
                            foff + len
                        )));
                    }
                    // The whole run in file order this segment is part of (segments inside
                    // `blks` are maximal: only the blocks around can continue it).
                    let same = |b: u64, o: u64| {
                        around.get(&b).is_some_and(|(f, fo)| f.as_raw_fd() == file.as_raw_fd() && *fo == o)
                    };
                    let mut run = len;
                    let (mut b, mut o) = (s.first, *foff);
                    while b > 0 && o >= bs && same(b - 1, o - bs) {
                        (b, o, run) = (b - 1, o - bs, run + bs);
                    }
                    let (mut b, mut o) = (s.first + s.n, foff + len);
                    while same(b, o) {
                        (b, o, run) = (b + 1, o + bs, run + bs);
                    }
                    let huge = run < reach * bs;
                    self.res.map_file(off, len, file.as_raw_fd(), *foff, huge)
                }
                None => self.res.map_anon(off, len),
            };
            r.map_err(|e| {
                PagerError::io(format!("mapping blocks {}..{} of {}", s.first, s.first + s.n, self.label), e)
            })?;
            Counters::inc(&self.shared.counters.extent_mmaps);
        }
        Ok(())
    }

    /// A view's address range: the blocks' place in the reservation.
    pub fn map(&self, blocks: Range<u64>) -> Result<(u64, u64), PagerError> {
        let bs = self.blksize;
        let (len, end) = crate::view::span(&blocks, bs)?;
        let mut st = self.state.lock();
        self.ensure_reserved(end)?;
        st.scan_end = st.scan_end.max(end);
        Ok((self.res.base() + blocks.start * bs, len))
    }

    /// Starts reading ahead of a scan of the view `[start, start+len)` (addresses from
    /// [`map`](Self::map)), if it is long enough; the watch ends with the token.
    pub fn watch_scans(self: &Arc<Self>, start: u64, len: u64) -> Option<Armed> {
        self.shared.ahead.arm(self, start, len)
    }

    pub fn size(&self) -> u64 {
        self.state.lock().size
    }

    pub fn set_size(&self, bytes: u64) -> Result<(), PagerError> {
        let bs = self.blksize;
        let mut st = self.state.lock();
        let old = st.size;
        if bytes > old {
            self.ensure_reserved(bytes)?;
            st.size = bytes;
            st.scan_end = st.scan_end.max(bytes.next_multiple_of(bs));
            return Ok(());
        }
        if bytes == old {
            return Ok(());
        }
        // Blocks wholly beyond the new size: fresh zeros (whatever was mapped or written there).
        let first_beyond = bytes.div_ceil(bs);
        let end = (st.scan_end / bs).min(self.nblocks_reserved());
        if first_beyond < end {
            self.res
                .map_anon(first_beyond * bs, (end - first_beyond) * bs)
                .map_err(|e| PagerError::io(format!("zeroing blocks {first_beyond}..{end} of {}", self.label), e))?;
            Counters::inc(&self.shared.counters.extent_mmaps);
            insert_range(&mut st.replaced, first_beyond, end);
        }
        // The tail of the boundary block.
        if bytes % bs != 0 {
            let tail_end = (bytes / bs + 1) * bs;
            self.res.zero(bytes, tail_end - bytes).map_err(|e| {
                PagerError::io(format!("zeroing the tail of block {} of {}", bytes / bs, self.label), e)
            })?;
        }
        st.size = bytes;
        Ok(())
    }

    /// Written pages of the whole scanned range, per block.
    fn written(&self, st: &State) -> Result<BTreeMap<u64, PageSet>, PagerError> {
        let base = self.res.base();
        let end = base + st.scan_end.min(self.res.len());
        let mut out = BTreeMap::new();
        let bs = self.blksize;
        let add = |out: &mut BTreeMap<u64, PageSet>, s: u64, e: u64| add_range(out, base, 0, bs, s, e);
        let r = match scanner()? {
            Scanner::Scan(pm) => scan_written_ioctl(pm, base, end, |s, e| add(&mut out, s, e)),
            Scanner::Read(file) => scan_written_read(file, base, end, |s, e| add(&mut out, s, e)),
        };
        r.map_err(|e| PagerError::io(format!("finding the written pages of {}", self.label), e))?;
        Ok(out)
    }

    /// Whether any page of `blocks` was written (a scan of just those blocks).
    pub fn has_written(&self, blocks: Range<u64>) -> Result<bool, PagerError> {
        let _st = self.state.lock();
        let base = self.res.base();
        let bs = self.blksize;
        let start = base + (blocks.start * bs).min(self.res.len());
        let end = base + (blocks.end.saturating_mul(bs)).min(self.res.len());
        if start >= end {
            return Ok(false);
        }
        let mut any = false;
        let r = match scanner()? {
            Scanner::Scan(pm) => scan_written_ioctl(pm, start, end, |_, _| any = true),
            Scanner::Read(file) => scan_written_read(file, start, end, |_, _| any = true),
        };
        r.map_err(|e| PagerError::io(format!("finding the written pages of {}", self.label), e))?;
        Ok(any)
    }

    pub fn dirty(&self) -> Result<Vec<DirtyBlock>, PagerError> {
        let st = self.state.lock();
        Ok(self.written(&st)?.into_iter().map(|(blk, pages)| DirtyBlock { blk, pages }).collect())
    }

    fn check_buf(&self, buf: &[u8], pages: &[u32]) -> Result<(), PagerError> {
        if buf.len() as u64 != self.blksize || pages.iter().any(|p| (u64::from(*p) + 1) * PAGE as u64 > self.blksize) {
            return Err(PagerError::InvalidArgument(format!(
                "pages {pages:?} into a buffer of {} bytes for blocks of {}",
                buf.len(),
                self.blksize
            )));
        }
        Ok(())
    }

    /// Copies `buf.len()` bytes at byte `off` of the file (zeros beyond the reservation).
    fn copy(&self, off: u64, buf: &mut [u8]) -> Result<(), PagerError> {
        if off + buf.len() as u64 > self.res.len() {
            // Beyond the reservation means beyond the size: zeros.
            buf.fill(0);
            return Ok(());
        }
        self.res.copy_out(off, buf).map_err(|e| PagerError::io(format!("copying from {}", self.label), e))
    }

    /// `FileHandle::write_at`: copies `data` into the reservation at `offset` (within the size).
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), PagerError> {
        let st = self.state.lock();
        let end = crate::file::write_end(offset, data.len(), st.size)?;
        self.ensure_reserved(end)?;
        self.res.copy_in(offset, data).map_err(|e| PagerError::io(format!("writing into {}", self.label), e))
    }

    pub fn read_block(&self, blk: u64, buf: &mut [u8]) -> Result<(), PagerError> {
        self.check_buf(buf, &[])?;
        let _st = self.state.lock();
        let off = blk
            .checked_mul(self.blksize)
            .ok_or_else(|| PagerError::InvalidArgument(format!("block {blk} out of range")))?;
        self.copy(off, buf)
    }

    pub fn read_pages(&self, blk: u64, pages: &[u32], buf: &mut [u8]) -> Result<(), PagerError> {
        self.check_buf(buf, pages)?;
        let _st = self.state.lock();
        let off = blk
            .checked_mul(self.blksize)
            .ok_or_else(|| PagerError::InvalidArgument(format!("block {blk} out of range")))?;
        for &p in pages {
            let o = p as usize * PAGE;
            self.copy(off + o as u64, &mut buf[o..o + PAGE])?;
        }
        Ok(())
    }

    /// `mark_clean` and `invalidate`: maps the blocks' current extents (or zeros) over them,
    /// which drops their private pages. Consecutive blocks are asked for and mapped together.
    pub fn remap(&self, blks: &[u64]) -> Result<(), PagerError> {
        let mut blks = blks.to_vec();
        blks.sort_unstable();
        blks.dedup();
        let mut st = self.state.lock();
        let mut i = 0;
        while i < blks.len() {
            let mut j = i + 1;
            while j < blks.len() && blks[j] == blks[j - 1] + 1 {
                j += 1;
            }
            let run = blks[i]..blks[j - 1] + 1;
            self.map_blocks(run.clone(), true)?;
            remove_range(&mut st.replaced, run.start, run.end);
            Counters::add(&self.shared.counters.blocks_remapped, run.end - run.start);
            i = j;
        }
        Ok(())
    }

    pub fn discard(&self) -> Result<(), PagerError> {
        let mut st = self.state.lock();
        let base = self.res.base();
        let end = base + st.scan_end.min(self.res.len());
        let mut runs: Vec<(u64, u64)> = Vec::new();
        let r = match scanner()? {
            Scanner::Scan(pm) => scan_written_ioctl(pm, base, end, |s, e| push_run(&mut runs, s, e)),
            Scanner::Read(file) => scan_written_read(file, base, end, |s, e| push_run(&mut runs, s, e)),
        };
        r.map_err(|e| PagerError::io(format!("finding the written pages of {}", self.label), e))?;
        let mut pages = 0;
        for (s, e) in runs {
            self.res
                .dontneed(s - base, e - s)
                .map_err(|e| PagerError::io(format!("dropping the written pages of {}", self.label), e))?;
            pages += (e - s) / PAGE as u64;
        }
        Counters::add(&self.shared.counters.pages_discarded, pages);
        let replaced = std::mem::take(&mut st.replaced);
        for (&a, &b) in &replaced {
            if let Err(e) = self.map_blocks(a..b, false) {
                st.replaced = replaced;
                return Err(e);
            }
            Counters::add(&self.shared.counters.blocks_remapped, b - a);
        }
        Ok(())
    }

    pub fn prefetch(&self, blocks: Range<u64>) -> Result<(), PagerError> {
        let _st = self.state.lock();
        let end = blocks.end.min(self.nblocks_reserved());
        if blocks.start >= end {
            return Ok(());
        }
        let bs = self.blksize;
        self.res
            .populate(blocks.start * bs, (end - blocks.start) * bs)
            .map_err(|e| PagerError::io(format!("reading blocks {}..{end} of {} in", blocks.start, self.label), e))
    }
}

/// Appends `[s, e)` to runs, merging with the last run if adjacent.
fn push_run(runs: &mut Vec<(u64, u64)>, s: u64, e: u64) {
    if let Some(last) = runs.last_mut() {
        if last.1 == s {
            last.1 = e;
            return;
        }
    }
    runs.push((s, e));
}

/// Adds `[a, b)` to a set of disjoint ranges (`start -> end`).
fn insert_range(set: &mut BTreeMap<u64, u64>, mut a: u64, mut b: u64) {
    let overlapping: Vec<(u64, u64)> = set.range(..=b).filter(|(_, &e)| e >= a).map(|(&s, &e)| (s, e)).collect();
    for (s, e) in overlapping {
        set.remove(&s);
        a = a.min(s);
        b = b.max(e);
    }
    set.insert(a, b);
}

/// Removes `[a, b)` from a set of disjoint ranges.
fn remove_range(set: &mut BTreeMap<u64, u64>, a: u64, b: u64) {
    let overlapping: Vec<(u64, u64)> = set.range(..b).filter(|(_, &e)| e > a).map(|(&s, &e)| (s, e)).collect();
    for (s, e) in overlapping {
        set.remove(&s);
        if s < a {
            set.insert(s, a);
        }
        if e > b {
            set.insert(b, e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_set() {
        let mut s = BTreeMap::new();
        insert_range(&mut s, 5, 10);
        insert_range(&mut s, 20, 30);
        insert_range(&mut s, 10, 12);
        assert_eq!(s.iter().map(|(a, b)| (*a, *b)).collect::<Vec<_>>(), vec![(5, 12), (20, 30)]);
        remove_range(&mut s, 7, 8);
        remove_range(&mut s, 25, 40);
        assert_eq!(s.iter().map(|(a, b)| (*a, *b)).collect::<Vec<_>>(), vec![(5, 7), (8, 12), (20, 25)]);
        remove_range(&mut s, 0, 100);
        assert!(s.is_empty());
    }

    /// Extents of one data file at the given offsets (`None`: a hole).
    struct At(Arc<std::fs::File>, Vec<Option<u64>>);

    impl ExtentSource for At {
        fn extents(&self, blks: Range<u64>) -> Result<Vec<(u64, Extent)>, SourceError> {
            Ok(blks
                .filter_map(|b| {
                    let off = (*self.1.get(b as usize)?)?;
                    Some((b, Extent::File { file: self.0.clone(), offset: off }))
                })
                .collect())
        }
    }

    /// The mappings of this process in `[start, end)`: (start, end, whether `MADV_HUGEPAGE`).
    fn vmas(start: u64, end: u64) -> Vec<(u64, u64, bool)> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut out: Vec<(u64, u64, bool)> = Vec::new();
        for line in smaps.lines() {
            if let Some(flags) = line.strip_prefix("VmFlags:") {
                if let Some(last) = out.last_mut() {
                    last.2 = flags.split_whitespace().any(|f| f == "hg");
                }
                continue;
            }
            let Some((range, _)) = line.split_once(' ') else { continue };
            let Some((a, b)) = range.split_once('-') else { continue };
            let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else { continue };
            out.push((a, b, false));
        }
        out.retain(|&(a, b, _)| a < end && b > start);
        out
    }

    /// Long runs in file order are mapped without `MADV_HUGEPAGE`, short or shuffled ones with
    /// it, and a block remapped alone gets its run's advice (so the run stays one mapping).
    #[test]
    fn huge_page_advice_follows_file_order() {
        let pager = crate::Pager::new(crate::PagerConfig::default()).unwrap();
        let path = std::env::temp_dir().join(format!("outcore-pager-huge-{}", std::process::id()));
        let file = std::fs::File::options().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let file = Arc::new(file);
        file.set_len(64 << 20).unwrap();
        let open = |bs: u64, offs: Vec<Option<u64>>| {
            let n = offs.len() as u64;
            let f = pager.open_mapped_file(Arc::new(At(file.clone(), offs)), bs as usize, n * bs, "test").unwrap();
            let v = f.map(0..n).unwrap();
            (f, v)
        };
        let range = |v: &crate::View| (v.as_ptr() as u64, v.as_ptr() as u64 + v.len() as u64);
        // 32 MiB in file order: one mapping, no advice; still so after remapping one block.
        let bs = 1 << 20;
        let (f, v) = open(bs, (0..32).map(|b| Some(b * bs)).collect());
        let (s, e) = range(&v);
        assert_eq!(vmas(s, e).iter().map(|m| m.2).collect::<Vec<_>>(), vec![false], "{:x?}", vmas(s, e));
        f.mark_clean(&[7]).unwrap();
        assert_eq!(vmas(s, e).iter().map(|m| m.2).collect::<Vec<_>>(), vec![false], "{:x?}", vmas(s, e));
        // 15 MiB in file order (shorter than HUGE_RUN): advised, also after a lone remap.
        let (f, v) = open(bs, (0..15).map(|b| Some(b * bs)).collect());
        let (s, e) = range(&v);
        assert_eq!(vmas(s, e).iter().map(|m| m.2).collect::<Vec<_>>(), vec![true], "{:x?}", vmas(s, e));
        f.mark_clean(&[5]).unwrap();
        assert_eq!(vmas(s, e).iter().map(|m| m.2).collect::<Vec<_>>(), vec![true], "{:x?}", vmas(s, e));
        // Small blocks: the threshold is HUGE_RUN_BLOCKS blocks (1 MiB of 64 KiB blocks).
        let bs = 64 << 10;
        for (n, want) in [(15, true), (64, false)] {
            let (f, v) = open(bs, (0..n).map(|b| Some(b * bs)).collect());
            let (s, e) = range(&v);
            for remapped in [None, Some(n - 1), Some(3)] {
                if let Some(b) = remapped {
                    f.mark_clean(&[b]).unwrap();
                }
                let got = vmas(s, e).iter().map(|m| m.2).collect::<Vec<_>>();
                assert_eq!(got, vec![want], "{n} blocks, after remapping {remapped:?}: {:x?}", vmas(s, e));
            }
        }
        // Shuffled blocks: one advised mapping each; a hole between two runs is anonymous.
        let bs = 1 << 20;
        let (_f, v) = open(bs, (0..8).map(|b| Some(((b * 5) % 8) * bs)).collect());
        let (s, e) = range(&v);
        assert!(vmas(s, e).iter().all(|m| m.2) && vmas(s, e).len() == 8, "{:x?}", vmas(s, e));
        let mut offs: Vec<Option<u64>> = (0..40).map(|b| Some(b * bs)).collect();
        offs[20] = None;
        let (_f, v) = open(bs, offs);
        let (s, e) = range(&v);
        assert_eq!(vmas(s, e).iter().map(|m| m.2).collect::<Vec<_>>(), vec![false, false, false], "{:x?}", vmas(s, e));
    }

    /// Both ways of finding written pages agree on written file and anonymous pages; only
    /// `PAGEMAP_SCAN` tells anonymous pages that were only read (the zero page) apart.
    #[test]
    fn scanners_agree() {
        let path = std::env::temp_dir().join(format!("outcore-pager-scan-{}", std::process::id()));
        let file = std::fs::File::options().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        file.write_all_at(&vec![7u8; 64 * PAGE], 0).unwrap();
        let res = Reservation::new(4 << 20).unwrap();
        res.map_file(0, 64 * PAGE as u64, file.as_raw_fd(), 0, true).unwrap();
        let mut b = [0u8; 1];
        let pg = PAGE as u64;
        for p in [0u64, 1, 2, 40, 70, 71] {
            res.copy_out(p * pg, &mut b).unwrap();
        }
        res.zero(pg, 3 * pg).unwrap(); // file pages 1..4 written (they held 7s)
        res.zero(70 * pg, 2 * pg).unwrap(); // anonymous zeros: nothing to write
        res.fill(63 * pg + 5, 1, 9); // a file page
        res.fill(64 * pg, 1, 9); // an anonymous page
        res.fill(100 * pg, 2 * pg, 9);
        let pm = Pagemap::open().unwrap();
        let (mut a, mut r) = (Vec::new(), Vec::new());
        let end = res.base() + res.len();
        scan_written_ioctl(&pm, res.base(), end, |s, e| push_run(&mut a, s, e)).unwrap();
        let f = std::fs::File::open("/proc/self/pagemap").unwrap();
        scan_written_read(&f, res.base(), end, |s, e| push_run(&mut r, s, e)).unwrap();
        let rel = |v: &[(u64, u64)]| {
            v.iter().map(|(s, e)| ((s - res.base()) / pg, (e - res.base()) / pg)).collect::<Vec<_>>()
        };
        assert_eq!(rel(&a), vec![(1, 4), (63, 65), (100, 102)]);
        assert_eq!(rel(&r), vec![(1, 4), (63, 65), (70, 72), (100, 102)]);
    }
}
