//! `Connection`: one snapshot, a namespace of named arrays, and the transaction over them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use outcore_pager::{FileHandle, FillPattern};
use outcore_store::{ArrayId, ArrayInfo, ArrayMeta, Codec, Commit, Order, Snapshot, Tid};
use parking_lot::{Mutex, MutexGuard};

use crate::array::{nbytes_of, Array};
use crate::db::{check_blksize, Db};
use crate::dtype::{descr_itemsize, descr_of, Element};
use crate::error::{Error, Result};
use crate::source::StoreSource;

mod commit;
use commit::CommitPlan;

/// What a block source of a commit reports on failure.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a new array looks like: dtype, shape, order and block size.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArraySpec {
    /// NumPy dtype descr (`"<f8"`, or a structured descr such as `"[('x', '<f4'), ('y', '<i8')]"`).
    pub dtype: String,
    /// Bytes per element; must agree with `dtype`.
    pub itemsize: u64,
    /// Shape.
    pub shape: Vec<u64>,
    /// Memory layout.
    pub order: Order,
    /// Block size; `None` takes the database's default.
    pub blksize: Option<u64>,
    /// Compression of stored blocks; `None` takes the database's default.
    pub codec: Option<Codec>,
    /// User attributes (a JSON object) stored with the array.
    pub attrs: serde_json::Map<String, serde_json::Value>,
    /// The fill value: the bytes of one element (`itemsize` bytes) that elements never written
    /// read as, also after the array grows. Stored as metadata: unwritten blocks cost nothing
    /// whatever the value. `None` (or all zero bytes) is zeros; an array with another fill
    /// value is served by the userfaultfd engine (see `docs/design/004-fill-values.md`).
    pub fill: Option<Vec<u8>>,
}

impl ArraySpec {
    /// An array of dtype `dtype` (`itemsize` bytes per element) and shape `shape`, C order.
    pub fn new(dtype: impl Into<String>, itemsize: u64, shape: impl Into<Vec<u64>>) -> Self {
        ArraySpec {
            dtype: dtype.into(),
            itemsize,
            shape: shape.into(),
            order: Order::C,
            blksize: None,
            codec: None,
            attrs: serde_json::Map::new(),
            fill: None,
        }
    }

    /// An array of Rust element type `T` (e.g. `f64` -> `"<f8"`).
    pub fn of<T: Element>(shape: impl Into<Vec<u64>>) -> Self {
        ArraySpec::new(descr_of::<T>(), std::mem::size_of::<T>() as u64, shape)
    }

    /// Sets the memory layout.
    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// Sets the block size (a power of two, 4 KiB..=256 MiB).
    pub fn blksize(mut self, blksize: u64) -> Self {
        self.blksize = Some(blksize);
        self
    }

    /// Sets the compression of stored blocks.
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = Some(codec);
        self
    }

    /// Sets the user attributes.
    pub fn attrs(mut self, attrs: serde_json::Map<String, serde_json::Value>) -> Self {
        self.attrs = attrs;
        self
    }

    /// Sets the fill value (the bytes of one element).
    pub fn fill(mut self, fill: Vec<u8>) -> Self {
        self.fill = Some(fill);
        self
    }
}

/// Checks an array name: `/`-separated components (groups, as in h5py and zarr), none empty,
/// `.` or `..`; no leading or trailing `/`.
pub(crate) fn check_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidArgument("array name must not be empty".into()));
    }
    if name.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(Error::InvalidArgument(format!(
            "invalid array name '{name}': '/' separates group names, which must not be empty, '.' or '..'"
        )));
    }
    Ok(())
}

/// The stored form of a fill value (`None` for zeros, which is what never written bytes are).
pub(crate) fn fill_hex(fill: Option<&[u8]>, itemsize: u64, name: &str) -> Result<Option<String>> {
    let Some(fill) = fill else { return Ok(None) };
    if fill.len() as u64 != itemsize {
        return Err(Error::InvalidArgument(format!(
            "fill value of {} bytes for array '{name}' of {itemsize}-byte items",
            fill.len()
        )));
    }
    if fill.iter().all(|b| *b == 0) {
        return Ok(None);
    }
    Ok(Some(fill.iter().map(|b| format!("{b:02x}")).collect()))
}

/// The fill pattern of an array's metadata (`None` for zeros).
pub(crate) fn fill_pattern(meta: &ArrayMeta, name: &str) -> Result<Option<FillPattern>> {
    match &meta.fill {
        None => Ok(None),
        Some(hex) => crate::array::decode_hex(hex)
            .map(|b| FillPattern::new(&b))
            .ok_or_else(|| Error::Dtype(format!("array '{name}' has a malformed fill value '{hex}'"))),
    }
}

/// Who commits and why: recorded with the transaction in the store's history.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct CommitInfo {
    /// The committing user.
    pub user: String,
    /// Description (note) of the transaction.
    pub description: String,
    /// Free-form JSON extension (`null` when unused).
    pub extension: serde_json::Value,
}

impl CommitInfo {
    /// A commit described by `description`.
    pub fn new(description: impl Into<String>) -> Self {
        CommitInfo { description: description.into(), ..CommitInfo::default() }
    }

    /// Sets the user.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = user.into();
        self
    }

    /// Sets the JSON extension.
    pub fn extension(mut self, extension: serde_json::Value) -> Self {
        self.extension = extension;
        self
    }
}

/// A name/metadata change of an array in the current transaction.
#[derive(Clone, Debug)]
pub(crate) enum Change {
    Live { name: String, meta: ArrayMeta },
    Deleted,
}

/// An array opened in a connection: its page cache and its state at the snapshot.
pub(crate) struct OpenArray {
    pub file: FileHandle,
    pub source: Arc<StoreSource>,
    /// Name and metadata at the connection's snapshot (`None`: not in the snapshot).
    pub committed: Option<(String, ArrayMeta)>,
    pub itemsize: u64,
    /// The last name known, for error messages.
    pub last_name: String,
}

impl OpenArray {
    /// Size in bytes at the connection's snapshot (0 if the array is not in it).
    pub fn committed_nbytes(&self) -> u64 {
        self.committed.as_ref().map_or(0, |(_, m)| m.nbytes)
    }
}

/// Everything a connection knows, under one mutex.
pub(crate) struct ConnState {
    pub tid: Tid,
    /// The store's registration of the snapshot `tid` (a local store keeps the extents it maps
    /// in place while it lives).
    pub snapshot: Snapshot,
    pub read_only: bool,
    /// A historical connection: it stays at its snapshot (implies `read_only`).
    pub historical: bool,
    pub needs_abort: bool,
    /// The `Connection` was dropped: handles fail with `Closed`.
    pub closed: bool,
    /// Why the last move to a new snapshot failed (cleared by a successful `abort`).
    pub stale: Option<String>,
    pub open: HashMap<ArrayId, OpenArray>,
    /// Name and metadata changes of this transaction; every array here is in `open`.
    pub txn: BTreeMap<ArrayId, Change>,
    /// Arrays created in this transaction.
    pub created: BTreeSet<ArrayId>,
    /// The smallest size each array had in this transaction, if it shrank.
    pub truncated: HashMap<ArrayId, u64>,
    /// Counts transaction boundaries: savepoints of an ended transaction are refused.
    pub generation: u64,
}

impl ConnState {
    /// Name and metadata of an open array as the transaction sees it.
    pub fn current(&self, id: ArrayId) -> Option<(String, ArrayMeta)> {
        match self.txn.get(&id) {
            Some(Change::Live { name, meta }) => Some((name.clone(), meta.clone())),
            Some(Change::Deleted) => None,
            None => self.open.get(&id).and_then(|o| o.committed.clone()),
        }
    }

    /// Fails unless the connection may write.
    pub fn check_writable(&self, op: &'static str) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly { tid: self.tid, op, historical: self.historical });
        }
        self.check_usable()
    }

    /// Fails after a lost commit until `abort`.
    pub fn check_usable(&self) -> Result<()> {
        if self.closed {
            return Err(Error::Closed);
        }
        if let Some(cause) = &self.stale {
            return Err(Error::Stale(cause.clone()));
        }
        if self.needs_abort {
            return Err(Error::NeedsAbort);
        }
        Ok(())
    }
}

pub(crate) struct ConnShared {
    pub db: Db,
    /// A read-only connection (historical, or of a database opened read-only).
    pub read_only: bool,
    /// A historical connection: it stays at its snapshot, loading through userfaultfd.
    pub historical: bool,
    /// Mirrors `state.closed`, readable without the lock.
    pub closed: std::sync::atomic::AtomicBool,
    /// The snapshot the sources load at (equal to `state.tid`, readable without the lock).
    pub tid_cell: Arc<AtomicU64>,
    pub state: Mutex<ConnState>,
}

/// A connection's state, locked (with the fork gate held shared: see `fork.rs`).
pub(crate) struct ConnGuard<'a> {
    // Field order: the state unlocks before the gate is released.
    state: MutexGuard<'a, ConnState>,
    _fork: crate::fork::ForkGate,
}

impl std::ops::Deref for ConnGuard<'_> {
    type Target = ConnState;
    fn deref(&self) -> &ConnState {
        &self.state
    }
}

impl std::ops::DerefMut for ConnGuard<'_> {
    fn deref_mut(&mut self) -> &mut ConnState {
        &mut self.state
    }
}

impl ConnShared {
    pub fn lock(&self) -> ConnGuard<'_> {
        let fork = crate::fork::shared();
        ConnGuard { state: self.state.lock(), _fork: fork }
    }
}

/// A connection: reads one committed snapshot (a tid) and holds one transaction over a
/// namespace of named arrays.
///
/// Changes (writes through views, create, delete, rename, resize, append) stay private to the
/// connection until [`commit`](Self::commit) stores all of them atomically, or
/// [`abort`](Self::abort) discards them. Both then move the connection to the newest snapshot
/// and reload exactly the blocks and metadata that other transactions changed.
///
/// # Threads
/// A connection and its [`Array`] handles are meant to be used by one thread at a time and may
/// move between threads between transactions. Calls from several threads at once are
/// serialized by an internal lock (never corrupting state), but their interleaving inside one
/// transaction is then up to the caller. Each thread wanting its own transaction should use
/// its own connection.
pub struct Connection {
    pub(crate) shared: Arc<ConnShared>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("Connection").field("tid", &st.tid).field("read_only", &st.read_only).finish()
    }
}

impl Drop for Connection {
    /// Discards the transaction; the connection's [`Array`] handles then fail with
    /// [`Error::Closed`] (views taken from them stay mapped).
    fn drop(&mut self) {
        self.shared.close();
    }
}

impl ConnShared {
    /// See [`Connection::close`].
    pub(crate) fn close(&self) {
        let mut st = self.lock();
        if st.closed {
            return;
        }
        st.closed = true;
        self.closed.store(true, Ordering::SeqCst);
        st.txn.clear();
        st.created.clear();
        st.truncated.clear();
        for oa in st.open.values() {
            if let Err(e) = oa.file.discard() {
                tracing::warn!("discarding changes of a closed connection: {e}");
            }
            let blks: Vec<u64> = oa.source.staged_blocks().into_keys().collect();
            for (_, staged) in oa.source.take_staged(blks) {
                let _ = self.db.inner.store.release_staged(&staged);
            }
            oa.source.reset(oa.committed_nbytes());
            if let Err(e) = oa.file.set_size(oa.committed_nbytes()) {
                tracing::warn!("closing a connection: {e}");
            }
        }
    }
}

impl Connection {
    pub(crate) fn new(db: Db, snapshot: Snapshot, read_only: bool, historical: bool) -> Result<Connection> {
        let tid = snapshot.tid();
        let state = ConnState {
            tid,
            snapshot,
            read_only,
            historical,
            needs_abort: false,
            closed: false,
            stale: None,
            open: HashMap::new(),
            txn: BTreeMap::new(),
            created: BTreeSet::new(),
            truncated: HashMap::new(),
            generation: 0,
        };
        Ok(Connection {
            shared: Arc::new(ConnShared {
                db,
                read_only,
                historical,
                closed: std::sync::atomic::AtomicBool::new(false),
                tid_cell: Arc::new(AtomicU64::new(tid)),
                state: Mutex::new(state),
            }),
        })
    }

    /// The snapshot this connection reads.
    pub fn tid(&self) -> Tid {
        self.shared.lock().tid
    }

    /// True for a read-only connection: a historical one, or one of a database opened
    /// read-only.
    pub fn is_read_only(&self) -> bool {
        self.shared.read_only
    }

    /// True for a historical connection ([`Db::connect_at`]): it stays at its snapshot.
    pub fn is_historical(&self) -> bool {
        self.shared.historical
    }

    /// Closes the connection: discards its uncommitted changes (writes through views too);
    /// its [`Array`] handles then fail with [`Error::Closed`]. Views taken before stay mapped
    /// and readable and show the snapshot the connection read (it moves no more); writes
    /// through them stay private to this process and are never committed
    /// ([`has_changes`](Self::has_changes) still reports them). Idempotent; dropping the
    /// connection closes it too.
    pub fn close(&self) {
        self.shared.close();
    }

    /// True once the connection was closed (or its database was).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.shared.db
    }

    /// Waits up to `timeout` for a commit newer than this connection's snapshot; returns its
    /// tid (then [`sync`](Self::sync) or the next boundary moves there), or `None`.
    pub fn wait_for_commit(&self, timeout: std::time::Duration) -> Result<Option<Tid>> {
        let tid = self.tid();
        self.shared.db.wait_for_commit(tid, timeout)
    }

    /// Creates the array `name`, reading as its fill value (zeros by default). It exists for
    /// others once committed.
    pub fn create(&self, name: &str, spec: ArraySpec) -> Result<Array> {
        let mut st = self.shared.lock();
        st.check_writable("create")?;
        check_name(name)?;
        if self.lookup(&mut st, name)?.is_some() {
            return Err(Error::AlreadyExists(name.into()));
        }
        self.check_group_path(&mut st, name)?;
        let opts = &self.shared.db.inner.options;
        let blksize = spec.blksize.unwrap_or(opts.blksize);
        check_blksize(blksize)?;
        match descr_itemsize(&spec.dtype) {
            Some(n) if n == spec.itemsize && n > 0 => {}
            Some(n) => {
                return Err(Error::Dtype(format!(
                    "dtype '{}' has items of {n} bytes, not {} (array '{name}')",
                    spec.dtype, spec.itemsize
                )))
            }
            None => {
                return Err(Error::Dtype(format!(
                    "unsupported dtype descr '{}' for array '{name}' (object dtypes cannot be stored)",
                    spec.dtype
                )))
            }
        }
        let nbytes = nbytes_of(&spec.shape, spec.itemsize)?;
        let meta = ArrayMeta {
            dtype: spec.dtype,
            shape: spec.shape,
            order: spec.order,
            blksize,
            codec: spec.codec.unwrap_or(opts.codec),
            nbytes,
            fill: fill_hex(spec.fill.as_deref(), spec.itemsize, name)?,
            attrs: spec.attrs,
        };
        let id = ArrayId::random();
        // Nothing of a new array is stored: every block loads as zeros.
        let oa = self.open_file(id, name, None, &meta, spec.itemsize, 0)?;
        st.open.insert(id, oa);
        st.txn.insert(id, Change::Live { name: name.into(), meta });
        st.created.insert(id);
        Ok(Array::new(self.shared.clone(), id))
    }

    /// Opens the array `name`. Handles of one array in one connection share their memory.
    pub fn open(&self, name: &str) -> Result<Array> {
        let mut st = self.shared.lock();
        st.check_usable()?;
        match self.lookup(&mut st, name)? {
            Some(id) => Ok(Array::new(self.shared.clone(), id)),
            None => Err(Error::NoSuchArray(name.into())),
        }
    }

    /// Opens the array with the stable id `id` (see [`Array::id`]), whatever its name: a
    /// reference by id survives renames. Fails with [`Error::NoSuchArray`] (naming the id)
    /// if no such array exists in this transaction's view.
    pub fn open_by_id(&self, id: ArrayId) -> Result<Array> {
        let mut st = self.shared.lock();
        st.check_usable()?;
        let live = match st.txn.get(&id) {
            Some(Change::Live { .. }) => true,
            Some(Change::Deleted) => false,
            None => match st.open.get(&id) {
                Some(oa) => oa.committed.is_some(),
                None => match self.shared.db.inner.store.array_by_id(id, st.tid)? {
                    Some(info) => {
                        let oa = self.open_existing(&info)?;
                        st.open.insert(id, oa);
                        true
                    }
                    None => false,
                },
            },
        };
        if !live {
            return Err(Error::NoSuchArray(id.to_string()));
        }
        Ok(Array::new(self.shared.clone(), id))
    }

    /// True if an array named `name` exists in this transaction's view.
    pub fn contains(&self, name: &str) -> Result<bool> {
        let mut st = self.shared.lock();
        st.check_usable()?;
        Ok(self.lookup(&mut st, name)?.is_some())
    }

    /// Deletes the array `name` (on commit). Its handles and views then fail / read zeros.
    pub fn delete(&self, name: &str) -> Result<()> {
        let mut st = self.shared.lock();
        st.check_writable("delete")?;
        let id = self.lookup(&mut st, name)?.ok_or_else(|| Error::NoSuchArray(name.into()))?;
        if st.created.remove(&id) {
            st.txn.remove(&id);
        } else {
            st.txn.insert(id, Change::Deleted);
        }
        st.truncated.remove(&id);
        if let Some(oa) = st.open.get(&id) {
            oa.source.hide_from(0);
            oa.file.set_size(0)?;
        }
        Ok(())
    }

    /// Renames the array `from` to `to` (on commit).
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        let mut st = self.shared.lock();
        st.check_writable("rename")?;
        check_name(to)?;
        let id = self.lookup(&mut st, from)?.ok_or_else(|| Error::NoSuchArray(from.into()))?;
        if from == to {
            return Ok(());
        }
        if self.lookup(&mut st, to)?.is_some() {
            return Err(Error::AlreadyExists(to.into()));
        }
        self.check_group_path(&mut st, to)?;
        let (_, meta) = st.current(id).ok_or_else(|| Error::NoSuchArray(from.into()))?;
        st.txn.insert(id, Change::Live { name: to.into(), meta });
        if let Some(oa) = st.open.get_mut(&id) {
            oa.last_name = to.into();
        }
        Ok(())
    }

    /// Names of the arrays in this transaction's view, sorted.
    pub fn list(&self) -> Result<Vec<String>> {
        let st = self.shared.lock();
        st.check_usable()?;
        self.names(&st)
    }

    /// Names of the arrays in the group `group` (`""`: the root) and of the groups in it, each
    /// relative to it and sorted: `(arrays, groups)`. Groups exist implicitly while arrays
    /// are named in them (`"a/b/x"` is array `x` of group `b` of group `a`), as in h5py and
    /// zarr paths; [`Error::NoSuchArray`] if `group` is neither the root nor such a group.
    pub fn members(&self, group: &str) -> Result<(Vec<String>, Vec<String>)> {
        let st = self.shared.lock();
        st.check_usable()?;
        let prefix = if group.is_empty() { String::new() } else { format!("{}/", group.trim_end_matches('/')) };
        let (mut arrays, mut groups) = (Vec::new(), Vec::new());
        for name in self.names(&st)? {
            let Some(rest) = name.strip_prefix(&prefix) else { continue };
            match rest.split_once('/') {
                None => arrays.push(rest.to_string()),
                Some((g, _)) => {
                    if groups.last().map(String::as_str) != Some(g) {
                        groups.push(g.to_string());
                    }
                }
            }
        }
        if !prefix.is_empty() && arrays.is_empty() && groups.is_empty() {
            return Err(Error::NoSuchArray(format!("{group} (no array or group of that name)")));
        }
        groups.dedup();
        Ok((arrays, groups))
    }

    /// Fails if a group along `name`'s path is an array, or if `name` is a group.
    fn check_group_path(&self, st: &mut ConnState, name: &str) -> Result<()> {
        let mut at = 0;
        while let Some(i) = name[at..].find('/') {
            let group = &name[..at + i];
            if self.lookup(st, group)?.is_some() {
                return Err(Error::AlreadyExists(format!("{group} (an array, so it cannot be a group of '{name}')")));
            }
            at += i + 1;
        }
        let prefix = format!("{name}/");
        if self.names(st)?.iter().any(|n| n.starts_with(&prefix)) {
            return Err(Error::AlreadyExists(format!("{name} (a group)")));
        }
        Ok(())
    }

    fn names(&self, st: &ConnState) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .shared
            .db
            .inner
            .store
            .arrays(st.tid)?
            .into_iter()
            .filter(|a| !st.txn.contains_key(&a.id))
            .map(|a| a.name)
            .collect();
        names.extend(st.txn.values().filter_map(|c| match c {
            Change::Live { name, .. } => Some(name.clone()),
            Change::Deleted => None,
        }));
        names.sort();
        Ok(names)
    }

    /// True if this transaction has uncommitted changes: data written through views (also
    /// beyond an array's current size, which commit drops), or metadata changes (create,
    /// delete, rename, resize, append). When false, [`commit`](Self::commit) records no
    /// transaction and [`sync`](Self::sync) may move to the newest snapshot. Asks the pager
    /// for the written pages of every open array, loading and copying nothing. Also answers
    /// after a lost conflict (the changes stay until [`abort`](Self::abort)).
    pub fn has_changes(&self) -> Result<bool> {
        let st = self.shared.lock();
        if !st.txn.is_empty() || !st.truncated.is_empty() {
            return Ok(true);
        }
        for oa in st.open.values() {
            if !oa.file.dirty()?.is_empty() || !oa.source.staged_blocks().is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Commits every change of this transaction; see [`commit_with`](Self::commit_with).
    pub fn commit(&self) -> Result<Tid> {
        self.commit_with(CommitInfo::default())
    }

    /// Stores every change of this transaction (written blocks of all arrays, creations,
    /// deletions, renames, resizes) atomically in one store commit recorded with `info`, then
    /// moves to the newest snapshot. Returns the tid of the commit (the connection then reads
    /// it or a newer one). With nothing to store, no transaction is recorded: the connection
    /// just moves to the newest snapshot and returns its tid.
    ///
    /// On [`Error::Conflict`] nothing was stored, the error names what collided, and the
    /// connection refuses further work until [`abort`](Self::abort).
    pub fn commit_with(&self, info: CommitInfo) -> Result<Tid> {
        let mut st = self.shared.lock();
        st.check_writable("commit")?;
        let base = st.tid;
        let store = &*self.shared.db.inner.store;
        let mut plan = CommitPlan::new(&st, info);
        plan.add_blocks(&st, store)?;
        if plan.commit.is_empty() {
            plan.release_unused(&st, store);
            plan.drop_stray(&st)?;
            self.advance(&mut st, base, None)?;
            return Ok(st.tid);
        }
        let commit = std::mem::replace(&mut plan.commit, Commit::new());
        let tid = match store.commit(base, commit) {
            Ok(tid) => tid,
            Err(e) => {
                let e = Error::from(e);
                if e.is_conflict() {
                    st.needs_abort = true;
                }
                return Err(e);
            }
        };
        // Loads from now on see this commit (it hides nothing any more: truncations are stored).
        self.shared.tid_cell.store(tid, Ordering::SeqCst);
        plan.settle(&mut st, store, base, tid);
        // The sources now describe the committed state (the page-cache engine maps what they
        // list): only then are the written blocks marked clean (remapped).
        if let Err(e) = plan.remap(&st) {
            // The commit is durable, and the written pages still hold its bytes; the connection
            // keeps its old snapshot (so nothing it maps can be reused) until an abort retries
            // the move, which remaps every block this commit changed.
            tracing::warn!("committed tid {tid}, but remapping its blocks failed: {e}");
            st.stale = Some(format!("committed tid {tid}, but remapping its blocks failed: {e}"));
            return Ok(tid);
        }
        if let Err(e) = self.advance(&mut st, base, Some(tid)) {
            // The commit is durable; only the move to the new snapshot failed.
            tracing::warn!("committed tid {tid}, but moving to the newest snapshot failed: {e}");
            st.stale = Some(e.to_string());
        }
        Ok(tid)
    }

    /// Discards every change of this transaction (data and metadata, in every view), then
    /// moves to the newest snapshot. Views stay valid and show that snapshot's data.
    /// A historical connection stays at its snapshot.
    pub fn abort(&self) -> Result<()> {
        let mut st = self.shared.lock();
        if st.closed {
            return Ok(()); // nothing left to discard
        }
        for oa in st.open.values() {
            let blks: Vec<u64> = oa.source.staged_blocks().into_keys().collect();
            for (_, staged) in oa.source.take_staged(blks) {
                if let Err(e) = self.shared.db.inner.store.release_staged(&staged) {
                    tracing::warn!("releasing a staged extent: {e}");
                }
            }
        }
        for oa in st.open.values() {
            oa.source.reset(oa.committed_nbytes());
        }
        for (id, oa) in &st.open {
            oa.file.discard()?;
            let changed = st.txn.contains_key(id) || st.created.contains(id);
            if !changed && !st.truncated.contains_key(id) {
                continue;
            }
            let committed = oa.committed_nbytes();
            if let Some(t) = st.truncated.get(id) {
                // Blocks loaded or zeroed while the array was shorter reload from the store.
                let bs = oa.file.blksize() as u64;
                let end = oa.file.size().max(committed).div_ceil(bs);
                let blks: Vec<u64> = (t / bs..end).collect();
                oa.file.invalidate(&blks)?;
            }
            oa.file.set_size(committed)?;
        }
        st.txn.clear();
        st.created.clear();
        st.truncated.clear();
        st.generation += 1;
        st.needs_abort = false;
        st.stale = None;
        let base = st.tid;
        if !st.historical {
            if let Err(e) = self.advance(&mut st, base, None) {
                if self.shared.tid_cell.load(Ordering::SeqCst) == base {
                    // The store could not tell what is new (unreachable server): nothing moved.
                    // Abort is local: the transaction is discarded and the connection stays at
                    // its snapshot until the next boundary reaches the store.
                    tracing::warn!("abort: staying at snapshot {base} (the store did not answer: {e})");
                    return Ok(());
                }
                st.stale = Some(e.to_string());
                return Err(e);
            }
        }
        Ok(())
    }

    /// Moves to the newest snapshot without writing (a transaction boundary). Fails if the
    /// transaction has uncommitted changes. A historical connection stays at its snapshot.
    pub fn sync(&self) -> Result<Tid> {
        let mut st = self.shared.lock();
        st.check_usable()?;
        if st.historical {
            return Ok(st.tid);
        }
        if st.read_only {
            // Nothing of a read-only connection commits: pages written by code that ignored
            // the views' read-only flag are dropped at its boundaries.
            for oa in st.open.values() {
                oa.file.discard()?;
            }
        }
        if !st.txn.is_empty() || !st.truncated.is_empty() {
            return Err(Error::Uncommitted { op: "sync" });
        }
        for oa in st.open.values() {
            if !oa.file.dirty()?.is_empty() || !oa.source.staged_blocks().is_empty() {
                return Err(Error::Uncommitted { op: "sync" });
            }
        }
        let base = st.tid;
        self.advance(&mut st, base, None)?;
        Ok(st.tid)
    }

    /// Moves from snapshot `old` to the newest one and drops what others changed in between:
    /// the blocks they wrote, and the metadata (and file sizes) of arrays they changed. `mine`
    /// is the tid this connection just committed (its own changes are already in place).
    fn advance(&self, st: &mut ConnState, old: Tid, mine: Option<Tid>) -> Result<()> {
        st.generation += 1;
        let store = &self.shared.db.inner.store;
        // Registered before the old snapshot is released, so nothing either maps is reused.
        let (snapshot, changes) = store.advance(old, mine)?;
        let head = snapshot.tid();
        // `None`: history since `old` was collected: every open array may have changed.
        let everything = changes.is_none();
        let mut changes = changes.unwrap_or_default();
        if everything {
            changes.arrays.extend(st.open.keys().copied());
        }
        changes.arrays.sort_unstable();
        changes.arrays.dedup();
        let mut metas = Vec::new();
        for id in changes.arrays {
            if st.open.contains_key(&id) {
                metas.push((id, store.array_by_id(id, head)?));
            }
        }
        // Loads from now on read the new snapshot (with the new stored sizes); then drop what
        // is stale. A load still running at the old snapshot is redone by the invalidation.
        self.shared.tid_cell.store(head, Ordering::SeqCst);
        for (id, info) in metas {
            let Some(oa) = st.open.get_mut(&id) else { continue };
            oa.committed = info.map(|i| (i.name, i.meta));
            if let Some((name, _)) = &oa.committed {
                oa.last_name = name.clone();
            }
            oa.source.reset(oa.committed_nbytes());
            oa.file.set_size(oa.committed_nbytes())?;
        }
        if everything {
            // Every block of every open array, at its new size.
            for oa in st.open.values() {
                let bs = oa.file.blksize() as u64;
                let blks: Vec<u64> = (0..oa.file.size().div_ceil(bs)).collect();
                oa.file.invalidate(&blks)?;
            }
        }
        let mut by_array: HashMap<ArrayId, Vec<u64>> = HashMap::new();
        for (id, blk) in changes.blocks {
            if st.open.contains_key(&id) {
                by_array.entry(id).or_default().push(blk);
            }
        }
        for (id, blks) in by_array {
            if let Some(oa) = st.open.get(&id) {
                oa.file.invalidate(&blks)?;
            }
        }
        // Only now: if anything above failed, the next `abort` redoes the move from `old`.
        st.tid = head;
        st.snapshot = snapshot;
        tracing::trace!(old, head, "moved to new snapshot");
        Ok(())
    }

    /// The id of the array named `name` in this transaction's view, opening it if needed.
    fn lookup(&self, st: &mut ConnState, name: &str) -> Result<Option<ArrayId>> {
        for (id, change) in &st.txn {
            if matches!(change, Change::Live { name: n, .. } if n == name) {
                return Ok(Some(*id));
            }
        }
        let Some(info) = self.shared.db.inner.store.array(name, st.tid)? else { return Ok(None) };
        if st.txn.contains_key(&info.id) {
            return Ok(None); // renamed or deleted in this transaction
        }
        if let std::collections::hash_map::Entry::Vacant(e) = st.open.entry(info.id) {
            e.insert(self.open_existing(&info)?);
        }
        Ok(Some(info.id))
    }

    fn open_existing(&self, info: &ArrayInfo) -> Result<OpenArray> {
        let meta = &info.meta;
        let itemsize = match descr_itemsize(&meta.dtype) {
            Some(n) if n > 0 => n,
            _ => {
                let n: u64 = meta.shape.iter().product();
                if n == 0 || meta.nbytes % n != 0 {
                    return Err(Error::Dtype(format!(
                        "cannot tell the item size of dtype '{}' of array '{}'",
                        meta.dtype, info.name
                    )));
                }
                meta.nbytes / n
            }
        };
        check_blksize(meta.blksize)?;
        self.open_file(info.id, &info.name, Some((info.name.clone(), meta.clone())), meta, itemsize, meta.nbytes)
    }

    fn open_file(
        &self,
        id: ArrayId,
        name: &str,
        committed: Option<(String, ArrayMeta)>,
        meta: &ArrayMeta,
        itemsize: u64,
        zero_from: u64,
    ) -> Result<OpenArray> {
        let inner = &self.shared.db.inner;
        let fill = fill_pattern(meta, name)?;
        let source = Arc::new(StoreSource::new(
            inner.store.clone(),
            id,
            self.shared.tid_cell.clone(),
            zero_from,
            meta.blksize,
            fill.clone(),
        ));
        let bs = usize::try_from(meta.blksize)
            .map_err(|_| Error::InvalidArgument(format!("block size {} too large", meta.blksize)))?;
        // A local store's uncompressed arrays are mapped from its data file (the page-cache
        // engine); historical snapshots, compressed arrays, remote stores and arrays with a
        // non-zero fill value (stored XOR their fill pattern, which a mapping cannot undo) load
        // through userfaultfd.
        let mut file = None;
        if !self.shared.historical && fill.is_none() && inner.store.can_locate(meta) {
            match inner.pager.open_mapped_file(source.clone(), bs, meta.nbytes, &format!("array '{name}'")) {
                Ok(f) => file = Some(f),
                Err(e) => tracing::debug!("array '{name}' is not mappable, loading it instead: {e}"),
            }
        }
        let file = match file {
            Some(f) => f,
            None => inner.pager.open_file_filled(source.clone(), bs, meta.nbytes, fill)?,
        };
        Ok(OpenArray { file, source, committed, itemsize, last_name: name.into() })
    }
}
