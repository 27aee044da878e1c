//! The process-wide pager: the fault engine, its threads, the cache budget and the registries.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use parking_lot::{Mutex, RwLock};

use crate::cache::Lru;
use crate::engine::{self, Capabilities, FaultEngine, UffdEngine};
use crate::file::FileHandle;
use crate::mapped::{Ahead, ExtentSource, MappedFile};
use crate::mapping::Pagemap;
use crate::stats::{Counters, Stats};
use crate::uffd_file::{FileInner, UffdFile};
use crate::view::ViewReg;
use crate::{fault_thread, loader, BlockSource, PagerError, PAGE};

/// Settings of a [`Pager`].
#[derive(Debug, Clone)]
pub struct PagerConfig {
    /// Bytes of clean cached blocks kept before the least recently used are evicted
    /// (dirty blocks are never evicted and may exceed it). Default 1 GiB.
    pub cache_budget: u64,
    /// Blocks loaded in the background ahead of a sequential scan (capped to a quarter of the
    /// budget). 0 disables readahead. Default 4.
    pub readahead_blocks: u32,
    /// Loader threads calling `BlockSource::load` in parallel. Default 4.
    pub loader_threads: usize,
    /// Retries of a transient source error at least, before it is treated as permanent.
    /// Default 5.
    pub max_retries: u32,
    /// How long a transient source error (a server restarting, a dropped connection) is retried,
    /// with backoff from 10 ms to 1 s, before it is treated as permanent (the access then fails
    /// with SIGBUS, its cause on stderr). Default 60 s, or `OUTCORE_LOAD_RETRY_SECONDS`.
    pub retry_for: std::time::Duration,
    /// Accept `UFFD_USER_MODE_ONLY` when nothing better is available. Default true.
    pub allow_user_mode_only: bool,
    /// Use `UFFD_USER_MODE_ONLY` even when a full userfaultfd is available (for tests).
    pub force_user_mode_only: bool,
    /// Use synchronous write-protect faults even when `WP_ASYNC` is available (for tests).
    pub force_sync_dirty_tracking: bool,
    /// How a loaded block enters the page cache (see [`FillMode`]). Default `Pwrite`.
    pub fill_mode: FillMode,
    /// Page-cache engine: bytes a background thread reads ahead of a sequential scan of a view
    /// of at least 32 MiB, from its start (`MADV_POPULATE_READ`, the scanner's position found
    /// with tripwires). 0 disables it. Default 128 MiB, or `OUTCORE_SCAN_AHEAD_MIB`.
    pub scan_ahead: u64,
}

/// How a loaded block enters the page cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FillMode {
    /// `pwrite` into the memfd, then `UFFDIO_CONTINUE(MODE_WP)` in each waiting view.
    #[default]
    Pwrite,
    /// `UFFDIO_COPY(MODE_WP)` into the first faulting view (one step: allocate, copy, map), then
    /// `UFFDIO_CONTINUE` in the other views; `pwrite` for loads nobody waits for.
    Copy,
}

impl Default for PagerConfig {
    fn default() -> Self {
        Self {
            cache_budget: 1 << 30,
            readahead_blocks: 4,
            loader_threads: 4,
            max_retries: 5,
            retry_for: std::env::var("OUTCORE_LOAD_RETRY_SECONDS")
                .ok()
                .and_then(|s| s.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map_or(std::time::Duration::from_secs(60), std::time::Duration::from_secs_f64),
            allow_user_mode_only: true,
            force_user_mode_only: false,
            force_sync_dirty_tracking: false,
            fill_mode: FillMode::Pwrite,
            scan_ahead: std::env::var("OUTCORE_SCAN_AHEAD_MIB")
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map_or(128 << 20, |mib| mib.saturating_mul(1 << 20)),
        }
    }
}

/// Work for loader threads.
pub(crate) enum Job {
    Load { file: Arc<FileInner>, blk: u64 },
    Shutdown,
}

/// State shared by the pager's threads, files and views.
pub(crate) struct Shared {
    /// The fault engine (userfaultfd today; the trait leaves room for a SIGSEGV engine).
    pub engine: Box<dyn FaultEngine>,
    pub caps: Capabilities,
    pub pagemap: Option<Pagemap>,
    /// Registered views by start address.
    pub views: RwLock<BTreeMap<u64, Arc<ViewReg>>>,
    pub files: Mutex<HashMap<u64, Weak<FileInner>>>,
    pub lru: Mutex<Lru>,
    /// Serializes evictions: threads over budget wait for the running eviction pass, which
    /// throttles loads to the speed of evictions (bounded overshoot).
    pub evict_lock: Mutex<()>,
    pub budget: AtomicU64,
    pub readahead_blocks: u64,
    pub max_retries: u32,
    pub retry_for: std::time::Duration,
    pub fill_mode: FillMode,
    pub counters: Counters,
    pub jobs: crossbeam_channel::Sender<Job>,
    pub next_id: AtomicU64,
    /// Page-cache engine: reading ahead of scans.
    pub ahead: Ahead,
}

impl Shared {
    pub fn async_dirty(&self) -> bool {
        self.caps.async_dirty_tracking
    }

    pub fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn enqueue(&self, file: &Arc<FileInner>, blk: u64) {
        // The receivers live as long as the pager, which outlives every file.
        let _ = self.jobs.send(Job::Load { file: file.clone(), blk });
    }

    /// Evicts least recently used clean blocks until the resident bytes fit the budget.
    pub fn enforce_budget(&self) {
        self.enforce_budget_sparing(None);
    }

    /// Same, but never evicts `spare` (a block just loaded for a waiting access: evicting it
    /// before the woken thread runs would only make it fault again).
    pub fn enforce_budget_sparing(&self, spare: Option<crate::cache::Key>) {
        if Counters::get(&self.counters.resident) <= self.budget.load(Ordering::Relaxed) {
            return;
        }
        let _one_at_a_time = self.evict_lock.lock();
        // Busy blocks (pinned for a moment, or their file in a dirty scan) are retried a few
        // times after a short pause.
        for round in 0..4 {
            if round > 0 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let mut busy = false;
            let mut tries = self.lru.lock().len();
            while tries > 0 && Counters::get(&self.counters.resident) > self.budget.load(Ordering::Relaxed) {
                tries -= 1;
                let Some((fid, blk)) = self.lru.lock().pop() else { break };
                if spare == Some((fid, blk)) {
                    self.lru.lock().touch((fid, blk));
                    continue;
                }
                let file = self.files.lock().get(&fid).and_then(Weak::upgrade);
                if let Some(file) = file {
                    busy |= !file.try_evict(blk);
                }
            }
            if !busy || Counters::get(&self.counters.resident) <= self.budget.load(Ordering::Relaxed) {
                return;
            }
        }
    }
}

/// The process-wide pager: one userfaultfd, a fault-reading thread, loader threads, and a cache
/// budget shared by all its files. Most programs use [`Pager::global`].
pub struct Pager {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The process that started it: its userfaultfd serves that process's memory, and its
    /// threads live there (a child forked from it has neither).
    pid: u32,
}

impl std::fmt::Debug for Pager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pager").field("caps", &self.shared.caps).finish()
    }
}

static GLOBAL: Mutex<Option<Arc<Pager>>> = Mutex::new(None);

impl Pager {
    /// Starts a pager: opens the userfaultfd (`userfaultfd(2)`, then `/dev/userfaultfd`, then
    /// `UFFD_USER_MODE_ONLY`), checks the kernel features, starts the threads.
    pub fn new(config: PagerConfig) -> Result<Arc<Pager>, PagerError> {
        let engine = UffdEngine::open(
            config.allow_user_mode_only,
            config.force_user_mode_only,
            config.force_sync_dirty_tracking,
        )?;
        let caps = engine.caps();
        let pagemap = if caps.async_dirty_tracking {
            Some(Pagemap::open().map_err(|e| PagerError::io("opening /proc/self/pagemap", e))?)
        } else {
            None
        };
        let (tx, rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            engine: Box::new(engine),
            caps,
            pagemap,
            views: RwLock::new(BTreeMap::new()),
            files: Mutex::new(HashMap::new()),
            lru: Mutex::new(Lru::default()),
            evict_lock: Mutex::new(()),
            budget: AtomicU64::new(config.cache_budget),
            readahead_blocks: u64::from(config.readahead_blocks),
            max_retries: config.max_retries,
            retry_for: config.retry_for,
            fill_mode: config.fill_mode,
            counters: Counters::default(),
            jobs: tx,
            next_id: AtomicU64::new(1),
            ahead: Ahead::new(config.scan_ahead),
        });
        let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new().name(name).spawn(f).map_err(|e| PagerError::io("spawning a pager thread", e))
        };
        // From here on, dropping `pager` (also on error) stops the threads started so far.
        let pager = Pager { shared: shared.clone(), threads: Mutex::new(Vec::new()), pid: std::process::id() };
        let s = shared.clone();
        pager.threads.lock().push(spawn("outcore-fault".into(), Box::new(move || fault_thread::run(&s)))?);
        for i in 0..config.loader_threads.max(1) {
            let s = shared.clone();
            let rx = rx.clone();
            pager.threads.lock().push(spawn(format!("outcore-load-{i}"), Box::new(move || loader::run(&s, &rx)))?);
        }
        tracing::debug!(caps = %caps.describe(), "pager started");
        Ok(Arc::new(pager))
    }

    /// The process's default pager, created on first use with [`PagerConfig::default`].
    pub fn global() -> Result<Arc<Pager>, PagerError> {
        let mut g = GLOBAL.lock();
        if let Some(p) = g.as_ref().filter(|p| p.pid == std::process::id()) {
            return Ok(p.clone());
        }
        // One inherited by a forked child is never dropped here (its drop would wait for
        // threads that exist only in the parent); this process starts its own.
        std::mem::forget(g.take());
        let p = Pager::new(PagerConfig::default())?;
        *g = Some(p.clone());
        Ok(p)
    }

    /// What this process would get from the kernel, without starting a pager (for diagnostics);
    /// the error says how to enable userfaultfd when it is unavailable.
    pub fn probe() -> Result<Capabilities, PagerError> {
        engine::probe(true)
    }

    /// What the running engine can do.
    pub fn capabilities(&self) -> Capabilities {
        self.shared.caps
    }

    /// Opens a file of `size` bytes made of blocks of `blksize` bytes (a multiple of 4 KiB)
    /// filled on demand by `source`. Its page cache is a fresh, empty memfd.
    pub fn open_file(
        self: &Arc<Self>,
        source: Arc<dyn BlockSource>,
        blksize: usize,
        size: u64,
    ) -> Result<FileHandle, PagerError> {
        self.open_file_filled(source, blksize, size, None)
    }

    /// Like [`open_file`](Self::open_file), but bytes beyond the file's logical size (where it
    /// would read zeros, never asking the source) read as `fill`, also in the boundary block's
    /// tail after a shrink. The source itself serves the content of blocks in their filled form.
    pub fn open_file_filled(
        self: &Arc<Self>,
        source: Arc<dyn BlockSource>,
        blksize: usize,
        size: u64,
        fill: Option<crate::FillPattern>,
    ) -> Result<FileHandle, PagerError> {
        if blksize == 0 || blksize % PAGE != 0 {
            return Err(PagerError::InvalidArgument(format!("blksize {blksize} is not a positive multiple of {PAGE}")));
        }
        if self.pid != std::process::id() {
            return Err(PagerError::OtherProcess { started_by: self.pid });
        }
        UffdFile::open(self.clone(), source, blksize as u64, size, fill).map(FileHandle::from)
    }

    /// Opens a file of `size` bytes made of blocks of `blksize` bytes (a multiple of 4 KiB) whose
    /// committed bytes already lie, uncompressed and page aligned, in data files: the page-cache
    /// engine ([`FileEngine::PageCache`](crate::FileEngine)). Views map the blocks' extents
    /// (asked from `source`) `MAP_PRIVATE`; the pager never writes the data files. `label` names
    /// the file in errors and SIGBUS reports (e.g. `array 'signal'`).
    pub fn open_mapped_file(
        &self,
        source: Arc<dyn ExtentSource>,
        blksize: usize,
        size: u64,
        label: &str,
    ) -> Result<FileHandle, PagerError> {
        if blksize == 0 || blksize % PAGE != 0 {
            return Err(PagerError::InvalidArgument(format!("blksize {blksize} is not a positive multiple of {PAGE}")));
        }
        MappedFile::open(self.shared.clone(), source, blksize as u64, size, label).map(FileHandle::from)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let files: Vec<Arc<FileInner>> = self.shared.files.lock().values().filter_map(Weak::upgrade).collect();
        let bytes_dirty = files.iter().map(|f| f.dirty_bytes()).sum();
        Stats {
            loads: Counters::get(&c.loads),
            load_retries: Counters::get(&c.load_retries),
            load_failures: Counters::get(&c.load_failures),
            readahead_loads: Counters::get(&c.readahead_loads),
            evictions: Counters::get(&c.evictions),
            faults: Counters::get(&c.faults),
            bytes_resident: Counters::get(&c.resident),
            bytes_dirty,
            cache_budget: self.shared.budget.load(Ordering::Relaxed),
            extent_mmaps: Counters::get(&c.extent_mmaps),
            blocks_remapped: Counters::get(&c.blocks_remapped),
            pages_discarded: Counters::get(&c.pages_discarded),
            scan_ahead_bytes: Counters::get(&c.scan_ahead_bytes),
        }
    }

    /// Changes the cache budget; evicts at once if over it.
    pub fn set_cache_budget(&self, bytes: u64) {
        self.shared.budget.store(bytes, Ordering::Relaxed);
        self.shared.enforce_budget();
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl Drop for Pager {
    fn drop(&mut self) {
        self.shared.engine.stop();
        let threads = std::mem::take(&mut *self.threads.lock());
        for _ in 0..threads.len() {
            let _ = self.shared.jobs.send(Job::Shutdown);
        }
        let me = std::thread::current().id();
        for t in threads {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}
