//! The userfaultfd engine's files: a memfd page cache over a `BlockSource`, its block states,
//! dirty pages, views.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::block::{Block, BlockState, Waiter};
use crate::dirty::{add_range, DirtyBlock, PageSet};
use crate::mapping::{Mapping, Scan};
use crate::memfd::Memfd;
use crate::pager::{Pager, Shared};
use crate::readahead::Readahead;
use crate::stats::Counters;
use crate::sys;
use crate::view::ViewReg;
use crate::{BlockSource, PagerError, PAGE};

/// Mutable state of a file, under one mutex (held only briefly, never across a source call or
/// a page-cache syscall).
#[derive(Debug, Default)]
pub(crate) struct FileState {
    pub size: u64,
    pub blocks: HashMap<u64, Block>,
    /// Dirty pages known so far (harvested from views, or recorded by synchronous WP faults).
    pub dirty: BTreeMap<u64, PageSet>,
    pub views: Vec<Arc<ViewReg>>,
    pub memfd_len: u64,
}

impl FileState {
    fn covering(&self, blk: u64) -> Vec<Arc<ViewReg>> {
        self.views.iter().filter(|v| v.block_addr(blk).is_some()).cloned().collect()
    }
}

/// The shared part of a file handle.
pub(crate) struct FileInner {
    pub id: u64,
    pub pager: Arc<Pager>,
    pub memfd: Memfd,
    pub blksize: u64,
    pub source: Arc<dyn BlockSource>,
    /// What bytes beyond the logical size read as (`None`: zeros).
    pub fill: Option<crate::FillPattern>,
    pub state: Mutex<FileState>,
    /// Orders dirty scans against evictions: a scan that re-protects written pages
    /// (`PM_SCAN_WP_MATCHING`) holds it shared until its findings are merged into the dirty map;
    /// an eviction holds it exclusively from its first scan to the punch. Otherwise a scan could
    /// re-protect a page written during an eviction, which would then drop it.
    pub scan_lock: parking_lot::RwLock<()>,
}

impl std::fmt::Debug for FileInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileInner").field("id", &self.id).field("blksize", &self.blksize).finish()
    }
}

type PresentRuns = (Arc<ViewReg>, u64, Vec<(u64, u64)>);

const WRITTEN_PRESENT: u64 = sys::PAGE_IS_WRITTEN | sys::PAGE_IS_PRESENT;

/// Outcome of an eviction attempt.
enum Evict {
    Done,
    Busy,
    Skipped,
}

impl FileInner {
    pub fn shared(&self) -> &Arc<Shared> {
        self.pager.shared()
    }

    pub fn unpin(&self, blk: u64) {
        if let Some(b) = self.state.lock().blocks.get_mut(&blk) {
            b.pins = b.pins.saturating_sub(1);
        }
    }

    pub fn dirty_bytes(&self) -> u64 {
        self.state.lock().dirty.len() as u64 * self.blksize
    }

    /// Ends a transition of `blk` for the parked waiters: maps the block into each waiting view,
    /// or makes the accesses fail when the load failed. The block is pinned; the caller unpins
    /// it and then wakes the returned ranges (so that woken threads never find it pinned).
    /// `mapped_view`: a view in which the block is already mapped (filled by `UFFDIO_COPY`).
    #[must_use]
    pub fn serve(
        &self,
        blk: u64,
        waiters: Vec<Waiter>,
        res: &crate::error::LoadResult,
        mapped_view: Option<u64>,
    ) -> Vec<(u64, u64)> {
        let engine = &self.shared().engine;
        // Views the block was mapped into, and the ranges of blocked threads to wake.
        let mut done: Vec<u64> = Vec::new();
        let mut wake = Vec::new();
        for w in waiters {
            match w {
                Waiter::Fault { view, addr, wp, ptid } => {
                    let Some(baddr) = view.block_addr(blk) else { continue };
                    // A view being unmapped: its address range may be reused by a new view.
                    let alive = view.alive.read();
                    if !*alive {
                        continue;
                    }
                    match res {
                        Ok(()) => {
                            if !wake.contains(&(baddr, self.blksize)) {
                                wake.push((baddr, self.blksize));
                            }
                            if done.contains(&view.id) || mapped_view == Some(view.id) {
                                continue;
                            }
                            done.push(view.id);
                            if let Err(e) = engine.resolve(baddr, self.blksize, addr) {
                                tracing::debug!("mapping block {blk} at {baddr:#x}: {e}");
                            }
                        }
                        Err(e) if !wp => {
                            // The access can only fail with a signal: say why first, whether or
                            // not a log subscriber listens (the process may die of it).
                            eprintln!("outcore: {e}; the access at {addr:#x} gets SIGBUS");
                            tracing::error!(
                                blk,
                                addr = format_args!("{addr:#x}"),
                                "block could not be loaded ({e}); the access gets SIGBUS"
                            );
                            let page = addr & !(PAGE as u64 - 1);
                            if let Err(e) = engine.fail(page, PAGE as u64, ptid) {
                                tracing::error!("failing the access at {addr:#x}: {e}");
                            }
                        }
                        Err(_) => {
                            let _ = engine.wake(baddr, self.blksize);
                        }
                    }
                }
                Waiter::Notify(tx) => {
                    let _ = tx.send(res.clone());
                }
                Waiter::Map { view } => {
                    if res.is_err() || done.contains(&view.id) || mapped_view == Some(view.id) {
                        continue;
                    }
                    let Some(baddr) = view.block_addr(blk) else { continue };
                    let alive = view.alive.read();
                    if !*alive {
                        continue;
                    }
                    done.push(view.id);
                    if let Err(e) = engine.resolve(baddr, self.blksize, baddr) {
                        tracing::debug!("mapping block {blk} ahead at {baddr:#x}: {e}");
                    }
                }
            }
        }
        wake
    }

    /// Wakes threads blocked on faults in the given ranges.
    pub fn wake(&self, ranges: &[(u64, u64)]) {
        for &(a, l) in ranges {
            let _ = self.shared().engine.wake(a, l);
        }
    }

    /// Scans views for pages written since they were last protected (async dirty tracking).
    /// With `reprotect`, the written pages are write-protected again (`PM_SCAN_WP_MATCHING`).
    fn scan_written(
        &self,
        views: &[Arc<ViewReg>],
        blocks: Option<&[u64]>,
        reprotect: bool,
    ) -> Result<BTreeMap<u64, PageSet>, PagerError> {
        let mut out = BTreeMap::new();
        let shared = self.shared();
        let Some(pm) = &shared.pagemap else { return Ok(out) };
        let mut flags = sys::PM_SCAN_CHECK_WPASYNC;
        if reprotect {
            flags |= sys::PM_SCAN_WP_MATCHING;
        }
        for v in views {
            let alive = v.alive.read();
            if !*alive {
                continue;
            }
            let mut ranges = Vec::new();
            match blocks {
                None => ranges.push((v.start, v.start + v.len)),
                Some(bl) => {
                    for &b in bl {
                        if let Some(a) = v.block_addr(b) {
                            ranges.push((a, a + self.blksize));
                        }
                    }
                }
            }
            for (a, e) in ranges {
                // Unpopulated entries count as "written" for the kernel; every entry of a view is
                // installed write-protected by the pager, so a written page is a present one.
                let spec = Scan { flags, all_of: WRITTEN_PRESENT, report: sys::PAGE_IS_WRITTEN, ..Scan::default() };
                pm.scan(a, e, spec, |r| add_range(&mut out, v.start, v.first_blk, self.blksize, r.start, r.end))
                    .map_err(|e| PagerError::io("PAGEMAP_SCAN", e))?;
            }
        }
        Ok(out)
    }

    /// Records written pages as dirty (blocks become Dirty, leave the LRU).
    fn merge_dirty(&self, st: &mut FileState, found: BTreeMap<u64, PageSet>) {
        let shared = self.shared();
        for (blk, pages) in found {
            if let Some(b) = st.blocks.get_mut(&blk) {
                if b.state == BlockState::Loaded {
                    b.state = BlockState::Dirty;
                }
            }
            shared.lru.lock().remove((self.id, blk));
            st.dirty.entry(blk).or_default().union(&pages);
        }
    }

    /// Collects written pages of every view into the dirty map; `reprotect` re-arms them.
    fn harvest(&self, reprotect: bool) -> Result<(), PagerError> {
        if !self.shared().async_dirty() {
            return Ok(());
        }
        let _scan = self.scan_lock.read();
        let views = self.state.lock().views.clone();
        let found = self.scan_written(&views, None, reprotect)?;
        let mut st = self.state.lock();
        self.merge_dirty(&mut st, found);
        Ok(())
    }

    /// Removes a view from the file, keeping what was written through it.
    pub fn detach_view(&self, reg: &Arc<ViewReg>) {
        self.shared().views.write().remove(&reg.start);
        let _scan = self.scan_lock.read();
        let found = self.scan_written(std::slice::from_ref(reg), None, false);
        *reg.alive.write() = false;
        let mut st = self.state.lock();
        st.views.retain(|v| v.id != reg.id);
        match found {
            Ok(found) => self.merge_dirty(&mut st, found),
            Err(e) => tracing::error!("recording dirty pages of a dropped view: {e}"),
        }
    }

    /// Marks a block written between two scans as dirty instead of evicting it.
    fn abort_eviction(&self, blk: u64, pages: BTreeMap<u64, PageSet>) {
        let mut st = self.state.lock();
        let Some(b) = st.blocks.get_mut(&blk) else { return };
        b.state = BlockState::Dirty;
        b.pins += 1;
        let waiters = std::mem::take(&mut b.waiters);
        self.merge_dirty(&mut st, pages);
        drop(st);
        let wake = self.serve(blk, waiters, &Ok(()), None);
        self.unpin(blk);
        self.wake(&wake);
    }

    /// Tries to evict a clean block (LRU victim). Never drops a written page: views are scanned
    /// before and after their entries are zapped, so a write racing with the eviction keeps the
    /// block (as Dirty).
    fn try_evict_inner(self: &Arc<Self>, blk: u64) -> Evict {
        let shared = self.shared();
        let Some(_scan) = self.scan_lock.try_write() else { return Evict::Busy };
        let views = {
            let mut st = self.state.lock();
            let Some(b) = st.blocks.get_mut(&blk) else { return Evict::Skipped };
            if b.state != BlockState::Loaded {
                return Evict::Skipped;
            }
            if b.pins > 0 || !b.waiters.is_empty() {
                return Evict::Busy;
            }
            b.state = BlockState::Evicting;
            st.covering(blk)
        };
        if let Some(pm) = shared.pagemap.as_ref().filter(|_| shared.async_dirty()) {
            let mut written = BTreeMap::new();
            // (view, block address in it, runs of present pages)
            let mut present: Vec<PresentRuns> = Vec::new();
            for v in &views {
                let Some(a) = v.block_addr(blk) else { continue };
                let alive = v.alive.read();
                if !*alive {
                    continue;
                }
                let mut p = Vec::new();
                let r = pm.scan(
                    a,
                    a + self.blksize,
                    Scan {
                        flags: sys::PM_SCAN_CHECK_WPASYNC,
                        all_of: sys::PAGE_IS_PRESENT,
                        report: sys::PAGE_IS_PRESENT | sys::PAGE_IS_WRITTEN,
                        ..Scan::default()
                    },
                    |r| {
                        if r.categories & sys::PAGE_IS_WRITTEN != 0 {
                            add_range(&mut written, v.start, v.first_blk, self.blksize, r.start, r.end);
                        } else if r.categories & sys::PAGE_IS_PRESENT != 0 {
                            p.push((r.start, r.end));
                        }
                    },
                );
                drop(alive);
                if let Err(e) = r {
                    tracing::error!("PAGEMAP_SCAN before eviction: {e}");
                    self.abort_eviction(blk, BTreeMap::new());
                    return Evict::Skipped;
                }
                if !p.is_empty() {
                    present.push((v.clone(), a, p));
                }
            }
            if !written.is_empty() {
                self.abort_eviction(blk, written);
                return Evict::Skipped;
            }
            // Zap, then check every protected present page left a uffd-wp marker behind: a
            // missing marker means the page was written after the first scan.
            for (v, a, p) in &present {
                let alive = v.alive.read();
                if !*alive {
                    continue;
                }
                let _ = crate::mapping::zap_raw(*a, self.blksize, v.start, v.len);
                let mut markers: Vec<(u64, u64)> = Vec::new();
                let markers_only =
                    Scan { all_of: sys::PAGE_IS_SWAPPED, report: sys::PAGE_IS_SWAPPED, ..Scan::default() };
                let _ = pm.scan(*a, *a + self.blksize, markers_only, |r| markers.push((r.start, r.end)));
                let mut raced = BTreeMap::new();
                for &(s, e) in p {
                    let mut x = s;
                    while x < e {
                        if !markers.iter().any(|&(ms, me)| x >= ms && x < me) {
                            add_range(&mut raced, v.start, v.first_blk, self.blksize, x, x + PAGE as u64);
                        }
                        x += PAGE as u64;
                    }
                }
                drop(alive);
                if !raced.is_empty() {
                    self.abort_eviction(blk, raced);
                    return Evict::Skipped;
                }
            }
        }
        if let Err(e) = self.memfd.punch_hole(blk * self.blksize, self.blksize) {
            tracing::error!("punching block {blk}: {e}");
            self.abort_eviction(blk, BTreeMap::new());
            return Evict::Skipped;
        }
        Counters::inc(&shared.counters.evictions);
        if self.finish_drop(blk) {
            shared.enqueue(self, blk);
        }
        Evict::Done
    }

    /// Tries to evict `blk`; a busy block goes back to the LRU (returns false).
    pub fn try_evict(self: &Arc<Self>, blk: u64) -> bool {
        if let Evict::Busy = self.try_evict_inner(blk) {
            self.shared().lru.lock().touch((self.id, blk));
            return false;
        }
        true
    }

    /// After the memfd range was punched: the block is Empty, or reloads for parked waiters.
    fn finish_drop(&self, blk: u64) -> bool {
        let shared = self.shared();
        shared.counters.resident.fetch_sub(self.blksize, Ordering::Relaxed);
        let mut st = self.state.lock();
        let reload = match st.blocks.get_mut(&blk) {
            Some(b) if !b.waiters.is_empty() => {
                b.state = BlockState::Loading { invalidated: false };
                true
            }
            _ => {
                st.blocks.remove(&blk);
                false
            }
        };
        drop(st);
        reload
    }

    /// Drops a block from the cache whatever its state (dirty pages are forgotten): the next
    /// touch reloads it from the source.
    pub fn drop_block(self: &Arc<Self>, blk: u64) -> Result<(), PagerError> {
        let shared = self.shared();
        let (views, resident) = {
            let mut st = self.state.lock();
            st.dirty.remove(&blk);
            let views = st.covering(blk);
            match st.blocks.get_mut(&blk) {
                None => (views, false),
                Some(b) => match b.state {
                    BlockState::Loading { .. } => {
                        b.state = BlockState::Loading { invalidated: true };
                        return Ok(());
                    }
                    BlockState::Evicting => return Ok(()),
                    BlockState::Loaded | BlockState::Dirty => {
                        b.state = BlockState::Evicting;
                        shared.lru.lock().remove((self.id, blk));
                        (views, true)
                    }
                },
            }
        };
        // Zapping also clears poison markers left by a failed load.
        for v in &views {
            if let Some(a) = v.block_addr(blk) {
                let _ = zap(v, a, self.blksize);
            }
        }
        if !resident {
            return Ok(());
        }
        let r = self
            .memfd
            .punch_hole(blk * self.blksize, self.blksize)
            .map_err(|e| PagerError::io(format!("punching block {blk}"), e));
        if self.finish_drop(blk) {
            shared.enqueue(self, blk);
        }
        r
    }

    /// Makes `blk` resident (loading it through the loader threads if needed) and pins it.
    fn pin_resident(self: &Arc<Self>, blk: u64) -> Result<(), PagerError> {
        loop {
            let (tx, rx) = crossbeam_channel::bounded(1);
            {
                let mut st = self.state.lock();
                match st.blocks.get_mut(&blk) {
                    Some(b) if b.is_resident() => {
                        b.pins += 1;
                        return Ok(());
                    }
                    Some(b) => b.waiters.push(Waiter::Notify(tx)),
                    None => {
                        let mut b = Block::loading();
                        b.waiters.push(Waiter::Notify(tx));
                        st.blocks.insert(blk, b);
                        drop(st);
                        self.shared().enqueue(self, blk);
                    }
                }
            }
            match rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return Err(PagerError::Load { blk, error }),
                Err(_) => return Err(PagerError::ShuttingDown),
            }
        }
    }
}

impl FileInner {
    /// Makes the memfd at least `end` bytes long (views and writes reach only that far).
    fn grow_memfd(&self, st: &mut FileState, end: u64) -> Result<(), PagerError> {
        if end > st.memfd_len {
            self.memfd.set_len(end).map_err(|e| PagerError::io(format!("growing the page cache to {end} bytes"), e))?;
            st.memfd_len = end;
        }
        Ok(())
    }

    /// Pins `blk` for a write of its bytes without a fault: a cached block is pinned as it is; an
    /// absent block with `unstored` content (the source holds nothing for it) enters the cache
    /// as Dirty without a load, its bytes being the fill; any other block is loaded first.
    /// Returns whether the block entered the cache here (its memfd range is a hole).
    fn pin_for_write(self: &Arc<Self>, blk: u64, unstored: bool) -> Result<bool, PagerError> {
        {
            let mut st = self.state.lock();
            self.grow_memfd(&mut st, (blk + 1) * self.blksize)?;
            match st.blocks.get_mut(&blk) {
                Some(b) if b.is_resident() => {
                    b.pins += 1;
                    return Ok(false);
                }
                None if unstored => {
                    let mut b = Block::loading();
                    b.state = BlockState::Dirty;
                    b.pins = 1;
                    st.blocks.insert(blk, b);
                    self.shared().counters.resident.fetch_add(self.blksize, Ordering::Relaxed);
                    return Ok(true);
                }
                _ => {}
            }
        }
        // Loaded (or the transition in flight ended): resident and pinned.
        self.pin_resident(blk)?;
        Ok(false)
    }

    /// Writes `data` at `off` within block `blk` into the page cache (see
    /// [`UffdFile::write_at`]).
    fn write_block(self: &Arc<Self>, blk: u64, off: u64, data: &[u8], unstored: bool) -> Result<(), PagerError> {
        let bs = self.blksize;
        let fresh = self.pin_for_write(blk, unstored)?;
        let start = blk * bs;
        let r = match &self.fill {
            // A new block's other bytes are the fill: write them too (a hole reads zeros).
            Some(p) if fresh && data.len() as u64 != bs => {
                let mut buf = vec![0u8; bs as usize];
                p.write(&mut buf, start);
                buf[off as usize..off as usize + data.len()].copy_from_slice(data);
                self.memfd.write_all_at(&buf, start)
            }
            _ => self.memfd.write_all_at(data, start + off),
        };
        let first = (off / PAGE as u64) as u32;
        let end = (off + data.len() as u64).div_ceil(PAGE as u64) as u32;
        let mut st = self.state.lock();
        if let (Err(_), true) = (&r, fresh) {
            // Nothing of a new block is kept: it is absent (a hole) again.
            st.blocks.remove(&blk);
            drop(st);
            let _ = self.memfd.punch_hole(start, bs);
            self.shared().counters.resident.fetch_sub(bs, Ordering::Relaxed);
        } else {
            // A failed write may have changed part of the range: it counts as written.
            let mut pages = PageSet::default();
            pages.insert_range(first, end);
            self.merge_dirty(&mut st, BTreeMap::from([(blk, pages)]));
            if let Some(b) = st.blocks.get_mut(&blk) {
                b.state = BlockState::Dirty;
                b.pins = b.pins.saturating_sub(1);
            }
        }
        r.map_err(|e| PagerError::io(format!("writing block {blk} into the page cache"), e))
    }
}

impl Drop for FileInner {
    fn drop(&mut self) {
        let shared = self.pager.shared();
        shared.files.lock().remove(&self.id);
        shared.lru.lock().remove_file(self.id);
        let st = self.state.get_mut();
        let resident = st.blocks.values().filter(|b| b.is_resident()).count() as u64;
        shared.counters.resident.fetch_sub(resident * self.blksize, Ordering::Relaxed);
    }
}

fn zap(v: &ViewReg, addr: u64, len: u64) -> std::io::Result<()> {
    let alive = v.alive.read();
    if !*alive {
        return Ok(());
    }
    crate::mapping::zap_raw(addr, len, v.start, v.len)
}

/// A file of the userfaultfd engine (the `FileHandle` methods of that engine).
#[derive(Debug, Clone)]
pub(crate) struct UffdFile {
    pub(crate) inner: Arc<FileInner>,
}

impl UffdFile {
    pub(crate) fn open(
        pager: Arc<Pager>,
        source: Arc<dyn BlockSource>,
        blksize: u64,
        size: u64,
        fill: Option<crate::FillPattern>,
    ) -> Result<Self, PagerError> {
        let id = pager.shared().id();
        let memfd = Memfd::create(&format!("outcore-{id}")).map_err(|e| PagerError::io("memfd_create", e))?;
        let inner = Arc::new(FileInner {
            id,
            pager: pager.clone(),
            memfd,
            blksize,
            source,
            fill,
            state: Mutex::new(FileState { size, ..FileState::default() }),
            scan_lock: parking_lot::RwLock::new(()),
        });
        pager.shared().files.lock().insert(id, Arc::downgrade(&inner));
        Ok(Self { inner })
    }

    /// Block size in bytes.
    pub fn blksize(&self) -> usize {
        self.inner.blksize as usize
    }

    /// Maps blocks `blocks` into a new view (registration and mapping; the caller makes the
    /// `View`). Nothing is loaded until the memory is touched. The range may extend beyond the
    /// logical size (that part reads zeros).
    pub fn map(&self, blocks: Range<u64>) -> Result<(Arc<ViewReg>, Mapping), PagerError> {
        let f = &self.inner;
        let shared = f.shared();
        let bs = f.blksize;
        let (len, end) = crate::view::span(&blocks, bs)?;
        {
            let mut st = f.state.lock();
            f.grow_memfd(&mut st, end)?;
        }
        let mapping = Mapping::shared(f.memfd.raw(), blocks.start * bs, len as usize)
            .map_err(|e| PagerError::io(format!("mmap of {len} bytes"), e))?;
        let start = mapping.addr() as u64;
        shared.engine.register(start, len).map_err(|e| PagerError::io("UFFDIO_REGISTER", e))?;
        let reg = Arc::new(ViewReg {
            id: shared.id(),
            start,
            len,
            first_blk: blocks.start,
            blksize: bs,
            file: Arc::downgrade(f),
            ra: Mutex::new(Readahead::default()),
            alive: parking_lot::RwLock::new(true),
        });
        shared.views.write().insert(start, reg.clone());
        f.state.lock().views.push(reg.clone());
        Ok((reg, mapping))
    }

    /// Logical size in bytes.
    pub fn size(&self) -> u64 {
        self.inner.state.lock().size
    }

    /// Changes the logical size. Bytes at or beyond the size read as zeros (or the file's fill
    /// pattern) and never reach the source. Shrinking drops the cached blocks wholly beyond the
    /// new size (dirty or not) and zeroes (fills) the cached tail of the boundary block. Growing
    /// drops the clean cached blocks that were (partly) beyond the old size, so their newly
    /// exposed bytes come from the source.
    pub fn set_size(&self, bytes: u64) -> Result<(), PagerError> {
        let f = &self.inner;
        let bs = f.blksize;
        let old = std::mem::replace(&mut f.state.lock().size, bytes);
        if bytes < old {
            let first_beyond = bytes.div_ceil(bs);
            let blks: Vec<u64> = {
                let st = f.state.lock();
                let mut v: Vec<u64> =
                    st.blocks.keys().chain(st.dirty.keys()).copied().filter(|b| *b >= first_beyond).collect();
                v.sort_unstable();
                v.dedup();
                v
            };
            for b in blks {
                f.drop_block(b)?;
            }
            if bytes % bs != 0 {
                let b = bytes / bs;
                let pinned = {
                    let mut st = f.state.lock();
                    match st.blocks.get_mut(&b) {
                        Some(blk) if blk.is_resident() => {
                            blk.pins += 1;
                            true
                        }
                        Some(_) => {
                            drop(st);
                            f.drop_block(b)?;
                            false
                        }
                        None => false,
                    }
                };
                if pinned {
                    let mut zeros = vec![0u8; ((b + 1) * bs - bytes) as usize];
                    if let Some(p) = &f.fill {
                        p.write(&mut zeros, bytes);
                    }
                    let r = f.memfd.write_all_at(&zeros, bytes);
                    f.unpin(b);
                    r.map_err(|e| PagerError::io("zeroing the tail of the boundary block", e))?;
                }
            }
        } else if bytes > old {
            f.harvest(false)?;
            let range = old / bs..bytes.div_ceil(bs);
            let blks: Vec<u64> = {
                let st = f.state.lock();
                st.blocks
                    .iter()
                    .filter(|(b, blk)| range.contains(b) && !st.dirty.contains_key(b) && blk.state != BlockState::Dirty)
                    .map(|(b, _)| *b)
                    .collect()
            };
            for b in blks {
                f.drop_block(b)?;
            }
        }
        Ok(())
    }

    /// The dirty blocks and their written 4 KiB pages, ascending. Includes pages written by
    /// system calls and through views dropped since. Write tracking of the reported pages is
    /// re-armed, so a later write is reported again even after `mark_clean`.
    pub fn dirty(&self) -> Result<Vec<DirtyBlock>, PagerError> {
        self.inner.harvest(true)?;
        let out = {
            let st = self.inner.state.lock();
            st.dirty.iter().map(|(b, p)| DirtyBlock { blk: *b, pages: p.clone() }).collect()
        };
        // Evictions skipped while the scan ran can proceed now.
        self.inner.shared().enforce_budget();
        Ok(out)
    }

    /// Copies the current cached content of block `blk` into `buf` (`blksize` bytes) without
    /// faulting; a block not cached is loaded from the source first.
    pub fn read_block(&self, blk: u64, buf: &mut [u8]) -> Result<(), PagerError> {
        let f = &self.inner;
        if buf.len() as u64 != f.blksize {
            return Err(PagerError::InvalidArgument(format!(
                "buffer of {} bytes for blocks of {}",
                buf.len(),
                f.blksize
            )));
        }
        f.pin_resident(blk)?;
        let r = f.memfd.read_mapped(buf, blk * f.blksize);
        f.unpin(blk);
        r.map_err(|e| PagerError::io(format!("reading block {blk} from the page cache"), e))
    }

    /// Copies the current cached content of the 4 KiB pages `pages` (indices within the block,
    /// ascending) of block `blk` into their places in `buf` (`blksize` bytes), leaving the rest of
    /// `buf` alone; a block not cached is loaded from the source first.
    pub fn read_pages(&self, blk: u64, pages: &[u32], buf: &mut [u8]) -> Result<(), PagerError> {
        let f = &self.inner;
        if buf.len() as u64 != f.blksize || pages.iter().any(|p| (u64::from(*p) + 1) * PAGE as u64 > f.blksize) {
            return Err(PagerError::InvalidArgument(format!(
                "pages {pages:?} into a buffer of {} bytes for blocks of {}",
                buf.len(),
                f.blksize
            )));
        }
        f.pin_resident(blk)?;
        let r = f.memfd.read_pages_mapped(buf, blk * f.blksize, pages, PAGE);
        f.unpin(blk);
        r.map_err(|e| PagerError::io(format!("reading block {blk} from the page cache"), e))
    }

    /// After a successful commit of `blks`: forgets their dirty pages and re-arms write
    /// tracking in every view. Pages written since the last [`dirty`](Self::dirty) stay dirty.
    pub fn mark_clean(&self, blks: &[u64]) -> Result<(), PagerError> {
        let f = &self.inner;
        let shared = f.shared();
        let scan = f.scan_lock.read();
        let views = f.state.lock().views.clone();
        let newer = if shared.async_dirty() { f.scan_written(&views, Some(blks), true)? } else { BTreeMap::new() };
        let mut st = f.state.lock();
        if !shared.async_dirty() {
            // Synchronous tracking: re-protect under the state lock, so that a write fault that
            // follows is recorded after (not before) the dirty pages are forgotten.
            for v in &views {
                let alive = v.alive.read();
                if !*alive {
                    continue;
                }
                for &b in blks {
                    if let Some(a) = v.block_addr(b) {
                        shared.engine.protect(a, f.blksize).map_err(|e| PagerError::io("UFFDIO_WRITEPROTECT", e))?;
                    }
                }
            }
        }
        for &b in blks {
            st.dirty.remove(&b);
            if !newer.contains_key(&b) {
                if let Some(blk) = st.blocks.get_mut(&b) {
                    if blk.state == BlockState::Dirty {
                        blk.state = BlockState::Loaded;
                        shared.lru.lock().touch((f.id, b));
                    }
                }
            }
        }
        f.merge_dirty(&mut st, newer);
        drop(st);
        drop(scan);
        shared.enforce_budget();
        Ok(())
    }

    /// Reverts every dirty block to the source's content (abort): the blocks are dropped and
    /// reload on the next touch, in every view.
    pub fn discard(&self) -> Result<(), PagerError> {
        self.inner.harvest(false)?;
        let blks: Vec<u64> = {
            let st = self.inner.state.lock();
            let mut v: Vec<u64> = st.dirty.keys().copied().collect();
            v.extend(st.blocks.iter().filter(|(_, b)| b.state == BlockState::Dirty).map(|(k, _)| *k));
            v.sort_unstable();
            v.dedup();
            v
        };
        for b in blks {
            self.inner.drop_block(b)?;
        }
        Ok(())
    }

    /// Drops the given blocks (clean or dirty): the next touch reloads them from the source,
    /// which may now return new content. A load in flight is redone.
    pub fn invalidate(&self, blks: &[u64]) -> Result<(), PagerError> {
        for &b in blks {
            self.inner.drop_block(b)?;
        }
        Ok(())
    }

    /// Writes `data` at byte `offset` (the range within the logical size) into the page cache
    /// without faulting, as a write through a view would: the pages become dirty and every view
    /// sees the bytes. Blocks from `unstored_from` on have no content in the source (an append's
    /// new blocks): they are not loaded first. Other blocks not cached are loaded first.
    pub fn write_at(&self, offset: u64, data: &[u8], unstored_from: u64) -> Result<(), PagerError> {
        let f = &self.inner;
        let bs = f.blksize;
        let end = crate::file::write_end(offset, data.len(), f.state.lock().size)?;
        let mut pos = offset;
        while pos < end {
            let blk = pos / bs;
            let stop = ((blk + 1) * bs).min(end);
            let part = &data[(pos - offset) as usize..(stop - offset) as usize];
            f.write_block(blk, pos - blk * bs, part, blk >= unstored_from)?;
            pos = stop;
        }
        f.shared().enforce_budget();
        Ok(())
    }

    /// Loads the blocks of `blocks` now (waiting for them; a load error is returned) and maps
    /// them into every view, so that system calls work on them even under `USER_MODE_ONLY`.
    /// They stay subject to eviction like any clean block.
    pub fn prefetch(&self, blocks: Range<u64>) -> Result<(), PagerError> {
        let f = &self.inner;
        let shared = f.shared();
        let mut first_err = None;
        for b in blocks {
            if let Err(e) = f.pin_resident(b) {
                first_err.get_or_insert(e);
                continue;
            }
            let views = f.state.lock().covering(b);
            for v in views {
                let alive = v.alive.read();
                if !*alive {
                    continue;
                }
                if let Some(a) = v.block_addr(b) {
                    if let Err(e) = shared.engine.resolve(a, f.blksize, a) {
                        tracing::debug!("mapping block {b} at {a:#x}: {e}");
                    }
                    let _ = shared.engine.wake(a, f.blksize);
                }
            }
            f.unpin(b);
        }
        shared.enforce_budget();
        first_err.map_or(Ok(()), Err)
    }
}
