//! `Db`: a store plus the pager that caches its arrays in memory.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

use outcore_pager::{Pager, PagerConfig};
use outcore_store::{Codec, Store, Subscription, Tid, DEFAULT_BLKSIZE};

use crate::connection::Connection;
use crate::error::{Error, Result};

/// Settings of a [`Db`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DbOptions {
    /// Bytes of clean cached blocks kept in memory before the least recently used are evicted.
    /// `None` shares the process-wide pager ([`Pager::global`], 1 GiB); `Some` gives this `Db`
    /// its own pager with this budget.
    pub cache_budget: Option<u64>,
    /// Block size of new arrays unless given at creation (a power of two, 4 KiB..=256 MiB).
    pub blksize: u64,
    /// Compression of new arrays' stored blocks.
    pub codec: Codec,
    /// A pager to use instead of the one `cache_budget` selects (e.g. one with custom
    /// [`PagerConfig`] settings, or shared by several `Db`s).
    pub pager: Option<Arc<Pager>>,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions { cache_budget: None, blksize: DEFAULT_BLKSIZE, codec: Codec::None, pager: None }
    }
}

impl DbOptions {
    /// Sets the cache budget (bytes).
    pub fn cache_budget(mut self, bytes: u64) -> Self {
        self.cache_budget = Some(bytes);
        self
    }

    /// Sets the default block size of new arrays.
    pub fn blksize(mut self, blksize: u64) -> Self {
        self.blksize = blksize;
        self
    }

    /// Uses `pager` for this database's arrays (its budget then applies, not `cache_budget`).
    pub fn pager(mut self, pager: Arc<Pager>) -> Self {
        self.pager = Some(pager);
        self
    }

    /// Sets the compression of new arrays.
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }
}

pub(crate) struct DbInner {
    pub store: Arc<dyn Store>,
    pub pager: Arc<Pager>,
    pub options: DbOptions,
    /// New-commit notifications, opened on first use.
    pub subscription: Mutex<Option<Box<dyn Subscription>>>,
}

/// An open database: a versioned store and the pager caching its arrays. Cheap to clone; any
/// number of `Db`s (on the same or different stores) and connections may exist in a process.
#[derive(Clone)]
pub struct Db {
    pub(crate) inner: Arc<DbInner>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("location", &self.inner.store.location()).finish()
    }
}

impl Db {
    /// Opens (creating if needed) the database at `url`: a file path (SQLite, optionally
    /// prefixed by `sqlite:`) or a `postgresql://` URL.
    pub fn open(url: &str, options: DbOptions) -> Result<Db> {
        let store = outcore_store::open(url)?;
        Db::with_store(store, options)
    }

    /// A database over an already open store.
    pub fn with_store(store: Arc<dyn Store>, options: DbOptions) -> Result<Db> {
        check_blksize(options.blksize)?;
        let pager = match (&options.pager, options.cache_budget) {
            (Some(p), _) => p.clone(),
            (None, None) => Pager::global()?,
            (None, Some(b)) => Pager::new(PagerConfig { cache_budget: b, ..PagerConfig::default() })?,
        };
        Ok(Db { inner: Arc::new(DbInner { store, pager, options, subscription: Mutex::new(None) }) })
    }

    /// A warning for the user when the arrays of this database (a remote store) will be served
    /// by the userfaultfd engine while only user-mode faults are handled (`vm.unprivileged_userfaultfd=0`
    /// and no access to `/dev/userfaultfd`): system calls that read such views before they were
    /// touched (`np.save`, `os.write`, sockets) then fail with EFAULT. Local stores serve their
    /// uncompressed arrays through the page cache and are not affected.
    pub fn engine_warning(&self) -> Option<String> {
        let caps = self.inner.pager.capabilities();
        if caps.kernel_mode_faults {
            return None;
        }
        let raw = outcore_store::ArrayMeta::new("|u1", vec![0], outcore_store::Order::C, 0);
        if self.inner.store.can_locate(&raw) {
            // A local store: its uncompressed arrays go through the page cache; compressed
            // arrays are an explicit choice, documented.
            return None;
        }
        Some(format!(
            "{}: arrays load through userfaultfd, which serves only user-mode faults for this \
             user: system calls reading views not touched yet (np.save, file.write, sockets) fail \
             with EFAULT. Touch or `A.load()` the data first, or allow kernel-mode faults: \
             `sysctl vm.unprivileged_userfaultfd=1`, or read/write access to /dev/userfaultfd",
            self.inner.store.location()
        ))
    }

    /// A connection reading the newest snapshot, ready for a read-write transaction.
    pub fn connect(&self) -> Result<Connection> {
        let snapshot = self.inner.store.snapshot(None)?;
        Connection::new(self.clone(), snapshot, false)
    }

    /// A read-only connection to the historical snapshot at `tid`.
    pub fn connect_at(&self, tid: Tid) -> Result<Connection> {
        let store = &self.inner.store;
        let head = store.head()?;
        if tid > head {
            return Err(outcore_store::Error::FutureTid { at: tid, head }.into());
        }
        let horizon = store.gc_horizon()?;
        if tid < horizon {
            return Err(outcore_store::Error::SnapshotGone { at: tid, horizon }.into());
        }
        Connection::new(self.clone(), store.snapshot(Some(tid))?, true)
    }

    /// A read-only connection to the snapshot that was newest at `time`.
    pub fn connect_at_time(&self, time: SystemTime) -> Result<Connection> {
        let tid = self.inner.store.tid_at(time)?;
        self.connect_at(tid)
    }

    /// The newest committed tid.
    pub fn head(&self) -> Result<Tid> {
        Ok(self.inner.store.head()?)
    }

    /// Waits up to `timeout` for a commit newer than `after` (by any connection or process) and
    /// returns the newest tid, or `None` on timeout. PostgreSQL announces commits with
    /// `NOTIFY`; SQLite is polled. Waiters of one `Db` take turns.
    pub fn wait_for_commit(&self, after: Tid, timeout: Duration) -> Result<Option<Tid>> {
        let deadline = Instant::now() + timeout;
        let mut sub = self.inner.subscription.lock();
        let sub = match &mut *sub {
            Some(s) => s,
            empty => empty.insert(self.inner.store.subscribe()?),
        };
        let head = self.inner.store.head()?;
        if head > after {
            return Ok(Some(head));
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match sub.wait(left)? {
                Some(t) if t > after => return Ok(Some(t)),
                Some(_) if !left.is_zero() => {}
                _ => return Ok(None),
            }
        }
    }

    /// The underlying store (history, gc, statistics).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The pager caching this database's arrays.
    pub fn pager(&self) -> &Arc<Pager> {
        &self.inner.pager
    }

    /// The options this database was opened with.
    pub fn options(&self) -> &DbOptions {
        &self.inner.options
    }
}

/// Checks a block size for the store and the pager.
pub(crate) fn check_blksize(blksize: u64) -> Result<()> {
    use outcore_store::{MAX_BLKSIZE, MIN_BLKSIZE};
    if !blksize.is_power_of_two() || !(MIN_BLKSIZE..=MAX_BLKSIZE).contains(&blksize) {
        return Err(Error::InvalidArgument(format!(
            "block size {blksize} must be a power of two in {MIN_BLKSIZE}..={MAX_BLKSIZE}"
        )));
    }
    Ok(())
}
