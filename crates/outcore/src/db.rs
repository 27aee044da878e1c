//! `Db`: a store plus the pager that caches its arrays in memory.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

use outcore_pager::{Pager, PagerConfig};
use outcore_store::{Codec, Store, Subscription, Tid, DEFAULT_BLKSIZE};

use crate::connection::{ConnShared, Connection};
use crate::error::{Error, Result};
pub(crate) use crate::shape::check_blksize;

/// How [`Db::open`] treats the location, as h5py and zarr define their modes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OpenMode {
    /// `"r"`: the database must exist; every connection is read-only (views refuse writes,
    /// commits fail with [`Error::ReadOnly`]) and still moves to the newest snapshot at its
    /// transaction boundaries.
    Read,
    /// `"r+"`: the database must exist; read-write.
    ReadWrite,
    /// `"a"`: read-write, created if missing (the default).
    #[default]
    Append,
    /// `"w"`: created if missing; every existing array is deleted (one commit, history kept
    /// until garbage collected) before the database is returned.
    Truncate,
    /// `"w-"` (also `"x"`): created; fails with [`Error::StoreExists`] if it exists.
    Create,
}

impl OpenMode {
    /// The mode of an h5py/zarr mode string: `"r"`, `"r+"`, `"a"`, `"w"`, `"w-"` or `"x"`.
    pub fn parse(mode: &str) -> Result<OpenMode> {
        Ok(match mode {
            "r" => OpenMode::Read,
            "r+" => OpenMode::ReadWrite,
            "a" => OpenMode::Append,
            "w" => OpenMode::Truncate,
            "w-" | "x" => OpenMode::Create,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "mode {mode:?} is not one of 'r', 'r+', 'a', 'w', 'w-' (or 'x')"
                )))
            }
        })
    }

    /// True if this mode only reads.
    pub fn is_read_only(self) -> bool {
        self == OpenMode::Read
    }
}

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
    /// How the location is opened (default [`OpenMode::Append`]: created if missing).
    pub mode: OpenMode,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            cache_budget: None,
            blksize: DEFAULT_BLKSIZE,
            codec: Codec::None,
            pager: None,
            mode: OpenMode::default(),
        }
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

    /// Sets the open mode.
    pub fn mode(mut self, mode: OpenMode) -> Self {
        self.mode = mode;
        self
    }
}

/// The file path of a local store's location (`None` for a PostgreSQL URL).
fn local_path(url: &str) -> Option<&std::path::Path> {
    if outcore_store::is_postgres_url(url) {
        return None;
    }
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
    Some(std::path::Path::new(path))
}

/// Checks what `mode` requires of a local store's path before the store opens (and creates)
/// it: an existing database for `r`/`r+`, none for `w-`, and an existing directory to create
/// it in, named when missing.
fn check_local(path: &std::path::Path, mode: OpenMode) -> Result<()> {
    if path.as_os_str().is_empty() {
        return Ok(()); // the store reports it
    }
    let exists = path.exists();
    match mode {
        OpenMode::Read | OpenMode::ReadWrite if !exists => {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists());
            return Err(Error::NotFound(match dir {
                Some(d) => format!("no database at {}: directory {} does not exist", path.display(), d.display()),
                None => format!("no database at {} (mode 'r' and 'r+' open existing databases only)", path.display()),
            }));
        }
        OpenMode::Create if exists => {
            return Err(Error::StoreExists(format!(
                "a database exists at {} (mode 'w-' only creates; 'a' opens it, 'w' empties it)",
                path.display()
            )));
        }
        _ => {}
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            let what = if dir.exists() { "is not a directory" } else { "does not exist" };
            return Err(Error::NotFound(format!(
                "cannot create a database at {}: {} {what}",
                path.display(),
                dir.display()
            )));
        }
    }
    Ok(())
}

pub(crate) struct DbInner {
    pub store: Arc<dyn Store>,
    pub pager: Arc<Pager>,
    pub options: DbOptions,
    /// New-commit notifications, opened on first use.
    pub subscription: Mutex<Option<Box<dyn Subscription>>>,
    /// [`Db::close`] was called: no more connections.
    pub closed: AtomicBool,
    /// The connections made, to close them with the database (dead ones are pruned).
    pub conns: Mutex<Vec<Weak<ConnShared>>>,
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
    /// Opens the database at `url`: a file path (SQLite, optionally prefixed by `sqlite:`) or
    /// a `postgresql://` URL, as `options.mode` says (default: created if needed). A missing
    /// database or directory is [`Error::NotFound`], naming it. For a PostgreSQL URL the
    /// server's database must exist; a database there "exists" for the modes once it has a
    /// commit.
    pub fn open(url: &str, options: DbOptions) -> Result<Db> {
        let mode = options.mode;
        if let Some(path) = local_path(url) {
            check_local(path, mode)?;
        }
        // Mode 'r' also opens stores this process may not write (read-only media, another
        // user's files), read-only.
        let store = match mode {
            OpenMode::Read if local_path(url).is_some() => outcore_store::open_for_reading(url)?,
            _ => outcore_store::open(url)?,
        };
        if local_path(url).is_none() {
            let head = store.head()?;
            match mode {
                OpenMode::Read | OpenMode::ReadWrite if head == 0 => {
                    return Err(Error::NotFound(format!(
                        "no outcore database at {} (nothing committed; mode 'r' and 'r+' open existing databases only)",
                        store.location()
                    )))
                }
                OpenMode::Create if head > 0 => {
                    return Err(Error::StoreExists(format!(
                        "an outcore database exists at {} (mode 'w-' only creates)",
                        store.location()
                    )))
                }
                _ => {}
            }
        }
        let db = Db::with_store(store, options)?;
        if mode == OpenMode::Truncate {
            let conn = db.connect()?;
            let names = conn.list()?;
            if !names.is_empty() {
                for name in &names {
                    conn.delete(name)?;
                }
                conn.commit_with(crate::CommitInfo::new(format!(
                    "opened with mode 'w': deleted {} arrays",
                    names.len()
                )))?;
            }
        }
        Ok(db)
    }

    /// A database over an already open store.
    pub fn with_store(store: Arc<dyn Store>, options: DbOptions) -> Result<Db> {
        check_blksize(options.blksize)?;
        let pager = match (&options.pager, options.cache_budget) {
            (Some(p), _) => p.clone(),
            (None, None) => Pager::global()?,
            (None, Some(b)) => Pager::new(PagerConfig { cache_budget: b, ..PagerConfig::default() })?,
        };
        Ok(Db {
            inner: Arc::new(DbInner {
                store,
                pager,
                options,
                subscription: Mutex::new(None),
                closed: AtomicBool::new(false),
                conns: Mutex::new(Vec::new()),
            }),
        })
    }

    /// True if this database was opened read-only ([`OpenMode::Read`]).
    pub fn is_read_only(&self) -> bool {
        self.inner.options.mode.is_read_only()
    }

    /// Closes the database: every connection made from it is [closed](Connection::close)
    /// (uncommitted changes discarded), and new connections fail with [`Error::Closed`]. Views
    /// taken before stay mapped and readable (at their snapshot); the store itself closes when
    /// the last handle, connection and view is dropped. Idempotent.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        let conns = std::mem::take(&mut *self.inner.conns.lock());
        for c in conns.iter().filter_map(Weak::upgrade) {
            c.close();
        }
    }

    /// True once [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// Registers a new connection so that [`close`](Self::close) closes it; fails once closed.
    fn register(&self, conn: Connection) -> Result<Connection> {
        let mut conns = self.inner.conns.lock();
        if self.is_closed() {
            return Err(Error::Closed);
        }
        conns.retain(|w| w.strong_count() > 0);
        conns.push(Arc::downgrade(&conn.shared));
        Ok(conn)
    }

    /// A warning for the user when the arrays of this database (a remote store) will be served
    /// by the userfaultfd engine while only user-mode faults are handled (`vm.unprivileged_userfaultfd=0`
    /// and no access to `/dev/userfaultfd`): system calls that read such views before they were
    /// touched (`np.save`, `os.write`, sockets) then fail with EFAULT. Local stores serve their
    /// uncompressed arrays through the page cache and are not affected (compressed arrays and
    /// arrays with a non-zero fill value are an explicit choice).
    pub fn engine_warning(&self) -> Option<String> {
        let caps = self.inner.pager.capabilities();
        if caps.kernel_mode_faults {
            return None;
        }
        let raw = outcore_store::ArrayMeta::new("|u1", vec![0], outcore_store::Order::C, 0);
        if self.inner.store.can_locate(&raw) {
            // A local store: its uncompressed arrays go through the page cache; compressed
            // arrays and non-zero fill values are an explicit choice, documented.
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

    /// A connection reading the newest snapshot, ready for a read-write transaction (read-only
    /// if the database was opened with [`OpenMode::Read`]).
    pub fn connect(&self) -> Result<Connection> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let snapshot = self.inner.store.snapshot(None)?;
        self.register(Connection::new(self.clone(), snapshot, self.is_read_only(), false)?)
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
        if self.is_closed() {
            return Err(Error::Closed);
        }
        self.register(Connection::new(self.clone(), store.snapshot(Some(tid))?, true, true)?)
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
