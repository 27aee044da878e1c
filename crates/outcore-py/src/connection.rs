//! `Connection`, its `Root` namespace, and the handle the `transaction` integration drives.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use outcore::{ArrayId, ArraySpec, CommitInfo, Connection};
use parking_lot::Mutex;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::array::PyArray;
use crate::db::parse_codec;
use crate::dtype::{from_descr, to_descr};
use crate::errors::PyResultExt;
use crate::shape::{check_size, parse_order, parse_shape};

/// The whole-array ndarray of an array and the shape and name it was built for.
pub(crate) type FullView = (Vec<u64>, String, Py<PyAny>);

/// What the Python objects of one connection and its transaction handle share, readable
/// without the core connection's lock.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    /// Counts the calls that may change the shape, name or existence of an array or the
    /// usability of the connection (create, delete, rename, resize, append, commit, abort,
    /// sync, savepoint rollback): every `Array` keeps its metadata and whole-array ndarray
    /// while this is unchanged. Every such call goes through this module's objects.
    epoch: AtomicU64,
    /// The data manager is joined to a transaction that has not ended (it sets this): telling
    /// it again that data may change is not needed.
    joined: AtomicBool,
}

impl Flags {
    /// The current epoch.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Starts a new epoch (after a call that may have changed metadata, failed or not).
    pub(crate) fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }
}

/// What the Python objects of one connection share.
pub(crate) struct Ctx {
    /// The core connection, kept open while any Python object of it lives (dropping it
    /// discards its transaction). The data manager holds it too while it is joined to a
    /// transaction, so changes made through dropped objects still commit.
    pub core: Arc<Connection>,
    /// The `transaction` data manager (`outcore._transaction.DataManager`, which the Python
    /// `Db.connect` makes and sets once), told before every operation that may change data so
    /// it joins the current transaction. Unset for read-only connections and connections not
    /// joined to a transaction manager.
    pub hook: OnceLock<Py<PyAny>>,
    /// A historical connection: views are read-only.
    pub read_only: bool,
    /// The whole-array ndarray of each array, with the shape and name it was built for.
    pub cache: Mutex<HashMap<ArrayId, FullView>>,
    /// Shared with the connection's `TxnHandle`.
    pub flags: Arc<Flags>,
}

impl Ctx {
    /// Tells the data manager that data may change (unless it is joined to a transaction).
    pub(crate) fn join(&self, py: Python<'_>) -> PyResult<()> {
        if let Some(h) = self.hook.get() {
            if !self.flags.joined.load(Ordering::Acquire) {
                h.call_method0(py, intern!(py, "_join"))?;
            }
        }
        Ok(())
    }

    /// Runs `f` (a call on the core connection, with the GIL released), then starts a new
    /// epoch whatever the outcome.
    pub(crate) fn changing<T>(&self, py: Python<'_>, f: impl FnOnce() -> outcore::Result<T> + Send) -> PyResult<T>
    where
        T: Send,
    {
        let r = py.detach(f);
        self.flags.bump();
        r.py(py)
    }
}

/// The keyword options of `Root.create` (absent or `None`: the default).
#[derive(Default)]
struct CreateOptions {
    order: Option<String>,
    blksize: Option<u64>,
    compression: Option<String>,
    attrs: Option<String>,
    fill: Option<Vec<u8>>,
}

impl CreateOptions {
    /// The options of keyword arguments; a `TypeError` for an unknown one.
    fn of(kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<CreateOptions> {
        let mut o = CreateOptions::default();
        for (key, value) in kwargs.into_iter().flat_map(|kw| kw.iter()) {
            let key: String = key.extract()?;
            if value.is_none() {
                continue;
            }
            match key.as_str() {
                "order" => o.order = Some(value.extract()?),
                "blksize" => o.blksize = Some(value.extract()?),
                "compression" => o.compression = Some(value.extract()?),
                "attrs" => o.attrs = Some(value.extract()?),
                "fill" => o.fill = Some(value.extract()?),
                _ => return Err(PyTypeError::new_err(format!("create() got an unexpected keyword argument '{key}'"))),
            }
        }
        Ok(o)
    }
}

/// A connection: one snapshot of the database and one transaction over its arrays.
#[pyclass(frozen, name = "Connection", module = "outcore._outcore")]
pub(crate) struct PyConnection {
    ctx: Arc<Ctx>,
}

/// The Python object of `arr`, an array of the connection of `ctx`; `dtype` is its NumPy
/// dtype when known.
fn wrap(py: Python<'_>, ctx: &Arc<Ctx>, arr: outcore::Array, dtype: Option<Py<PyAny>>) -> PyResult<PyArray> {
    let dtype = match dtype {
        Some(d) => d,
        None => from_descr(py, &arr.dtype().py(py)?)?.unbind(),
    };
    Ok(PyArray::new(arr, ctx.clone(), dtype))
}

impl PyConnection {
    /// Wraps a core connection.
    pub(crate) fn new(core: Connection) -> PyConnection {
        let read_only = core.is_read_only();
        let ctx = Ctx {
            core: Arc::new(core),
            hook: OnceLock::new(),
            read_only,
            cache: Mutex::new(HashMap::new()),
            flags: Arc::new(Flags::default()),
        };
        PyConnection { ctx: Arc::new(ctx) }
    }
}

#[pymethods]
impl PyConnection {
    /// The arrays of this connection by full name (`outcore.Connection.root` makes the root
    /// `Group` over it).
    #[getter]
    fn root(&self) -> Root {
        Root { ctx: self.ctx.clone() }
    }

    /// The handle the `transaction` data manager drives (commit, abort, sync, savepoints).
    fn txn_handle(&self) -> TxnHandle {
        TxnHandle { core: self.ctx.core.clone(), flags: self.ctx.flags.clone() }
    }

    /// Sets the `transaction` data manager, told (`dm._join()`) before every operation that
    /// may change data. Once only: a `ValueError` if one is set already.
    fn set_data_manager(&self, dm: Py<PyAny>) -> PyResult<()> {
        self.ctx.hook.set(dm).map_err(|_| PyValueError::new_err("the connection has a data manager already"))
    }

    /// Closes the connection: discards its uncommitted changes (writes through its views
    /// too); its arrays then raise `outcore.ClosedError`. Idempotent.
    fn close(&self, py: Python<'_>) {
        py.detach(|| self.ctx.core.close());
        self.ctx.flags.bump();
    }

    /// True once the connection (or its database) was closed.
    #[getter]
    fn closed(&self) -> bool {
        self.ctx.core.is_closed()
    }

    /// The snapshot (tid) this connection reads.
    #[getter]
    fn tid(&self, py: Python<'_>) -> u64 {
        py.detach(|| self.ctx.core.tid())
    }

    /// True for a read-only connection: a historical one (`db.connect(at=...)`) or one of a
    /// database opened with `mode="r"`.
    #[getter]
    fn read_only(&self) -> bool {
        self.ctx.read_only
    }

    /// Commits this connection's changes directly (bypassing the `transaction` package) with
    /// an optional note and user; returns the snapshot the connection then reads.
    #[pyo3(signature = (note=None, user=None))]
    fn commit(&self, py: Python<'_>, note: Option<String>, user: Option<String>) -> PyResult<u64> {
        let info = CommitInfo::new(note.unwrap_or_default()).user(user.unwrap_or_default());
        self.ctx.changing(py, || self.ctx.core.commit_with(info))
    }

    /// Discards this connection's changes and moves to the newest snapshot.
    fn abort(&self, py: Python<'_>) -> PyResult<()> {
        self.ctx.changing(py, || self.ctx.core.abort())
    }

    /// Moves to the newest snapshot (fails with uncommitted changes); returns its tid.
    fn sync(&self, py: Python<'_>) -> PyResult<u64> {
        self.ctx.changing(py, || self.ctx.core.sync())
    }

    /// True if this transaction has uncommitted changes: data written through views, or
    /// metadata changes (create, delete, rename, resize, append).
    fn has_changes(&self, py: Python<'_>) -> PyResult<bool> {
        py.detach(|| self.ctx.core.has_changes()).py(py)
    }

    /// The array with the stable id `id` (`Array.id`), whatever its name now
    /// (`NoSuchArrayError` if there is none in this connection's view).
    fn open_by_id(&self, py: Python<'_>, id: u64) -> PyResult<PyArray> {
        let arr = py.detach(|| self.ctx.core.open_by_id(ArrayId(id))).py(py)?;
        wrap(py, &self.ctx, arr, None)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let tid = py.detach(|| self.ctx.core.tid());
        let ro = if self.ctx.core.is_closed() {
            ", closed"
        } else if self.ctx.read_only {
            ", read-only"
        } else {
            ""
        };
        format!("<outcore.Connection to {} at tid {tid}{ro}>", self.ctx.core.db().store().location())
    }
}

/// The arrays of a connection by full name (`outcore.Group` builds the groups and the
/// `MutableMapping` on it).
#[pyclass(frozen, name = "Root", module = "outcore._outcore", mapping)]
pub(crate) struct Root {
    ctx: Arc<Ctx>,
}

impl Root {
    fn names(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        py.detach(|| self.ctx.core.list()).py(py)
    }
}

#[pymethods]
impl Root {
    /// Creates the array `name`, reading as `fill` (default zeros), in this transaction.
    /// Keyword options: `order` (`"C"`, the default, or `"F"`); `blksize` and `compression`
    /// (`None`: the database's default, `"none"`, `"lz4"`, `"zstd"`, `"zstd:LEVEL"`) apply to
    /// its stored blocks; `attrs` is a JSON object (text), `fill` the bytes of one element that
    /// unwritten elements read as. An option given as `None` takes its default.
    #[pyo3(signature = (name, shape, dtype, **options))]
    fn create(
        &self,
        py: Python<'_>,
        name: &str,
        shape: &Bound<'_, PyAny>,
        dtype: &Bound<'_, PyAny>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<PyArray> {
        let opts = CreateOptions::of(options)?;
        let order = parse_order(py, opts.order.as_deref().unwrap_or("C"))?;
        let shape = parse_shape(shape)?;
        let (dt, descr, itemsize) = to_descr(dtype)?;
        check_size(shape.clone(), itemsize)?;
        self.ctx.join(py)?;
        let mut spec = ArraySpec::new(descr, itemsize, shape).order(order);
        if let Some(b) = opts.blksize {
            spec = spec.blksize(b);
        }
        if opts.compression.is_some() {
            spec = spec.codec(parse_codec(opts.compression.as_deref())?);
        }
        if let Some(a) = opts.attrs {
            spec = spec.attrs(crate::array::parse_attrs(py, &a)?);
        }
        if let Some(f) = opts.fill {
            spec = spec.fill(f);
        }
        let arr = self.ctx.changing(py, || self.ctx.core.create(name, spec))?;
        wrap(py, &self.ctx, arr, Some(dt.unbind()))
    }

    fn __getitem__(&self, py: Python<'_>, name: &str) -> PyResult<PyArray> {
        let arr = py.detach(|| self.ctx.core.open(name)).py(py)?;
        wrap(py, &self.ctx, arr, None)
    }

    fn __contains__(&self, py: Python<'_>, name: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Ok(name) = name.extract::<String>() else { return Ok(false) };
        py.detach(|| self.ctx.core.contains(&name)).py(py)
    }

    fn __delitem__(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        self.ctx.join(py)?;
        self.ctx.changing(py, || self.ctx.core.delete(name))
    }

    fn __setitem__(&self, _name: &str, _value: &Bound<'_, PyAny>) -> PyResult<()> {
        Err(PyValueError::new_err("arrays are added with root.create(name, shape, dtype, ...)"))
    }

    /// Renames the array `old` to `new`.
    fn rename(&self, py: Python<'_>, old: &str, new: &str) -> PyResult<()> {
        self.ctx.join(py)?;
        self.ctx.changing(py, || self.ctx.core.rename(old, new))
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(PyList::new(py, self.names(py)?)?.try_iter()?.into_any())
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.names(py)?.len())
    }

    /// Names of the arrays, sorted.
    fn keys(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        self.names(py)
    }

    /// The members of group `group` (`""`: the root): names of its arrays and of its groups,
    /// sorted; `outcore.NoSuchArrayError` if there is no such group.
    fn members(&self, py: Python<'_>, group: &str) -> PyResult<(Vec<String>, Vec<String>)> {
        py.detach(|| self.ctx.core.members(group)).py(py)
    }

    /// The arrays, in name order.
    fn values(&self, py: Python<'_>) -> PyResult<Vec<PyArray>> {
        self.names(py)?.iter().map(|n| self.__getitem__(py, n)).collect()
    }

    /// `(name, array)` pairs, in name order.
    fn items(&self, py: Python<'_>) -> PyResult<Vec<(String, PyArray)>> {
        self.names(py)?.into_iter().map(|n| Ok((n.clone(), self.__getitem__(py, &n)?))).collect()
    }

    /// The array `name`, or `default`.
    #[pyo3(signature = (name, default=None))]
    fn get(&self, py: Python<'_>, name: &str, default: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
        if py.detach(|| self.ctx.core.contains(name)).py(py)? {
            Ok(Py::new(py, self.__getitem__(py, name)?)?.into_any())
        } else {
            Ok(default.unwrap_or_else(|| py.None()))
        }
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("<outcore.Root {:?}>", self.names(py)?))
    }
}

/// What the `transaction` data manager drives: the connection's commit, abort and sync.
#[pyclass(frozen, name = "TxnHandle", module = "outcore._outcore")]
pub(crate) struct TxnHandle {
    core: Arc<Connection>,
    flags: Arc<Flags>,
}

impl TxnHandle {
    /// Runs `f` with the GIL released, then starts a new epoch whatever the outcome.
    fn changing<T: Send>(&self, py: Python<'_>, f: impl FnOnce() -> outcore::Result<T> + Send) -> outcore::Result<T> {
        let r = py.detach(f);
        self.flags.bump();
        r
    }
}

#[pymethods]
impl TxnHandle {
    /// Commits every change with the transaction's user, description and extension (JSON).
    #[pyo3(signature = (user, description, extension=None))]
    fn commit(&self, py: Python<'_>, user: String, description: String, extension: Option<&str>) -> PyResult<u64> {
        let ext = match extension {
            Some(s) => serde_json::from_str(s).map_err(|e| PyValueError::new_err(format!("extension: {e}")))?,
            None => serde_json::Value::Null,
        };
        let info = CommitInfo::new(description).user(user).extension(ext);
        self.changing(py, || self.core.commit_with(info)).py(py)
    }

    /// Discards every change.
    fn abort(&self, py: Python<'_>) -> PyResult<()> {
        self.changing(py, || self.core.abort()).py(py)
    }

    /// True if the transaction has uncommitted changes (data or metadata).
    fn has_changes(&self, py: Python<'_>) -> PyResult<bool> {
        py.detach(|| self.core.has_changes()).py(py)
    }

    /// Marks the transaction's current state (dirty data, sizes, names) to roll back to.
    fn savepoint(&self, py: Python<'_>) -> PyResult<Savepoint> {
        let sp = py.detach(|| self.core.savepoint()).py(py)?;
        Ok(Savepoint { core: sp, flags: self.flags.clone() })
    }

    /// Moves to the newest snapshot if there is nothing to commit: true if it did, false if
    /// the transaction has changes (or needs an abort: a lost conflict, a failed move).
    fn sync(&self, py: Python<'_>) -> PyResult<bool> {
        match self.changing(py, || self.core.sync()) {
            Ok(_) => Ok(true),
            Err(outcore::Error::Uncommitted { .. } | outcore::Error::NeedsAbort | outcore::Error::Stale(_)) => {
                Ok(false)
            }
            Err(e) => Err(crate::errors::to_py(py, e)),
        }
    }

    /// True once the connection was closed.
    #[getter]
    fn closed(&self) -> bool {
        self.core.is_closed()
    }

    /// Whether the data manager is joined to a transaction that has not ended (set by it):
    /// while true, the connection's arrays do not tell it again that data may change.
    #[getter]
    fn get_joined(&self) -> bool {
        self.flags.joined.load(Ordering::Acquire)
    }

    #[setter]
    fn set_joined(&self, joined: bool) {
        self.flags.joined.store(joined, Ordering::Release);
    }

    /// Where the database is (path or redacted URL).
    #[getter]
    fn location(&self) -> String {
        self.core.db().store().location().to_string()
    }
}

/// A point inside a transaction to return to (`transaction.savepoint()`).
#[pyclass(frozen, name = "Savepoint", module = "outcore._outcore")]
pub(crate) struct Savepoint {
    core: outcore::Savepoint,
    flags: Arc<Flags>,
}

#[pymethods]
impl Savepoint {
    /// Returns the transaction to this savepoint (repeatable until the transaction ends).
    fn rollback(&self, py: Python<'_>) -> PyResult<()> {
        let r = py.detach(|| self.core.rollback());
        self.flags.bump();
        r.py(py)
    }
}
