//! `Array`: a persistent array as NumPy sees it.
//!
//! Indexing builds one `numpy.ndarray` over the whole array's mapping (cached per connection
//! and array until its shape changes) and lets NumPy apply the index, so every result is a real
//! ndarray view (or a scalar) with NumPy's own semantics and errors; its `.base` is the
//! [`Mapping`] that keeps the memory mapped.
//!
//! Each `Array` object also remembers its metadata and that ndarray for as long as the
//! connection's epoch ([`Flags`](crate::connection::Flags)) is unchanged, so that `A[i]` and
//! `A[i] = v` cost little more than on the ndarray itself: no call into the core connection
//! and no Python-level call to the data manager while it is joined to a transaction.

use std::sync::Arc;

use outcore::{Array, ArrayMeta};
use parking_lot::Mutex;
use pyo3::exceptions::{PyMemoryError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyEllipsis, PyTuple, PyType};

use crate::connection::Ctx;
use crate::errors::{memory_error, to_py, to_py_bare, Class, PyResultExt};
use crate::mem::{Mapping, Origin};
use crate::shape::{check_basic, check_size, is_int_index, order_name, parse_shape};

/// The attributes of a JSON object text (`outcore.InvalidArgumentError` otherwise).
pub(crate) fn parse_attrs(py: Python<'_>, json: &str) -> PyResult<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err(Class::InvalidArgumentError.err(py, "attributes must be a JSON object")),
        Err(e) => Err(Class::InvalidArgumentError.err(py, format!("attributes are not JSON: {e}"))),
    }
}

/// A tuple of dimensions (a shape, strides, a block shape) from a core result.
fn dims(py: Python<'_>, r: outcore::Result<Vec<u64>>) -> PyResult<Bound<'_, PyTuple>> {
    PyTuple::new(py, r.py(py)?)
}

/// The error of mapping an array: address-space exhaustion is a `MemoryError`.
fn map_error(py: Python<'_>, what: &str, e: outcore::Error) -> PyErr {
    use std::io::ErrorKind;
    let too_big = match &e {
        outcore::Error::Pager(outcore::pager::PagerError::InvalidArgument(_)) => true,
        outcore::Error::Pager(outcore::pager::PagerError::ReservationExceeded { .. }) => true,
        outcore::Error::Pager(outcore::pager::PagerError::Io { source, .. }) => {
            matches!(source.kind(), ErrorKind::OutOfMemory | ErrorKind::FileTooLarge | ErrorKind::InvalidInput)
        }
        outcore::Error::Shape(_) => true,
        _ => false,
    };
    if too_big {
        memory_error(what, &e)
    } else {
        to_py(py, e)
    }
}

/// What an `Array` object remembers of its array, valid during one epoch of its connection.
#[derive(Default)]
struct Memo {
    epoch: u64,
    meta: Option<ArrayMeta>,
    /// The whole-array ndarray.
    full: Option<Py<PyAny>>,
}

impl Memo {
    /// Starts over at `epoch` if the memo is of another one; returns what it dropped, to be
    /// released after the lock.
    fn at(&mut self, epoch: u64) -> Option<Py<PyAny>> {
        if self.epoch == epoch {
            return None;
        }
        self.epoch = epoch;
        self.meta = None;
        self.full.take()
    }
}

/// A persistent N-dimensional array of a connection.
///
/// Indexing (`A[...]`) returns real `numpy.ndarray` views over the array's memory (loaded
/// block by block on first touch); writes through them, `A[...] = v`, `append` and `resize`
/// are committed with the connection's transaction.
#[pyclass(frozen, name = "Array", module = "outcore._outcore")]
pub(crate) struct PyArray {
    arr: Array,
    ctx: Arc<Ctx>,
    dtype: Py<PyAny>,
    memo: Mutex<Memo>,
}

impl PyArray {
    pub(crate) fn new(arr: Array, ctx: Arc<Ctx>, dtype: Py<PyAny>) -> PyArray {
        PyArray { arr, ctx, dtype, memo: Mutex::new(Memo::default()) }
    }

    /// The whole-array ndarray remembered for the current epoch, if any.
    fn memo_full<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        let epoch = self.ctx.flags.epoch();
        let memo = self.memo.lock();
        match &memo.full {
            Some(full) if memo.epoch == epoch => Some(full.bind(py).clone()),
            _ => None,
        }
    }

    fn origin(&self, name: String, offset: u64) -> Origin {
        let location = self.ctx.core.db().store().location().to_string();
        Origin { location, name, id: self.arr.id().0, offset }
    }

    /// The array's metadata as the transaction sees it (remembered during an epoch).
    fn meta(&self, py: Python<'_>) -> PyResult<ArrayMeta> {
        let epoch = self.ctx.flags.epoch();
        {
            let memo = self.memo.lock();
            if let (Some(meta), true) = (&memo.meta, memo.epoch == epoch) {
                return Ok(meta.clone());
            }
        }
        let meta = self.arr.meta().py(py)?;
        let mut memo = self.memo.lock();
        let dropped = memo.at(epoch);
        memo.meta = Some(meta.clone());
        drop(memo);
        drop(dropped);
        Ok(meta)
    }

    /// The ndarray over the whole array (shape as of now).
    fn full<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if let Some(full) = self.memo_full(py) {
            return Ok(full);
        }
        // Read before the metadata: a change meanwhile leaves the memo of a past epoch.
        let epoch = self.ctx.flags.epoch();
        let full = self.build_full(py)?;
        let mut memo = self.memo.lock();
        let dropped = memo.at(epoch);
        memo.full = Some(full.clone().unbind());
        drop(memo);
        drop(dropped);
        Ok(full)
    }

    /// The ndarray over the whole array, from the connection's cache or new.
    fn build_full<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let meta = self.meta(py)?;
        let name = self.arr.name().py(py)?;
        let id = self.arr.id();
        if let Some((shape, mapped_name, full)) = self.ctx.cache.lock().get(&id) {
            // The name is in the mapping, for `ArrayRef`.
            if *shape == meta.shape && *mapped_name == name {
                return Ok(full.bind(py).clone());
            }
        }
        let np = py.import("numpy")?;
        let dtype = self.dtype.bind(py);
        let shape = PyTuple::new(py, &meta.shape)?;
        let full = if meta.nbytes == 0 {
            let kw = PyDict::new(py);
            kw.set_item("order", order_name(meta.order))?;
            np.call_method("zeros", (shape, dtype), Some(&kw))?
        } else {
            let itemsize = self.arr.itemsize().py(py)?;
            check_size(meta.shape.clone(), itemsize)?;
            let what = format!("array '{name}' of {} bytes", meta.nbytes);
            let range = 0..meta.nbytes;
            let origin = self.origin(name.clone(), 0);
            let keep = (self.ctx.core.clone(), self.arr.clone());
            let mapping = if self.ctx.read_only {
                Mapping::read(self.arr.bytes(range).map_err(|e| map_error(py, &what, e))?, origin, keep)
            } else {
                Mapping::write(self.arr.bytes_mut(range).map_err(|e| map_error(py, &what, e))?, origin, keep)
            };
            let strides = PyTuple::new(py, self.arr.strides().py(py)?)?;
            let flat = np.call_method1("asarray", (Bound::new(py, mapping)?,))?;
            let kw = PyDict::new(py);
            kw.set_item("buffer", flat)?;
            kw.set_item("strides", strides)?;
            np.getattr("ndarray")?.call((shape, dtype), Some(&kw))?
        };
        // The replaced view (if any) is released after the lock.
        let replaced = self.ctx.cache.lock().insert(id, (meta.shape, name, full.clone().unbind()));
        drop(replaced);
        Ok(full)
    }

    /// The rows of `info`.
    fn info_rows(&self, py: Python<'_>) -> PyResult<Vec<(String, String)>> {
        let meta = self.meta(py)?;
        let name = self.arr.name().py(py)?;
        let chunks = self.arr.chunks().py(py)?;
        let codec = match meta.codec {
            outcore::Codec::None => "none".to_string(),
            outcore::Codec::Lz4 => "lz4".to_string(),
            outcore::Codec::Zstd { level } => format!("zstd:{level}"),
            _ => format!("{:?}", meta.codec),
        };
        let fill = self.fill_value(py)?.repr()?.to_string();
        let mut rows = vec![
            ("name".to_string(), name),
            ("shape".to_string(), PyTuple::new(py, &meta.shape)?.repr()?.to_string()),
            ("dtype".to_string(), self.dtype.bind(py).str()?.to_string()),
            ("order".to_string(), order_name(meta.order).to_string()),
            ("nbytes".to_string(), meta.nbytes.to_string()),
            ("blksize".to_string(), meta.blksize.to_string()),
            ("chunks".to_string(), PyTuple::new(py, &chunks)?.repr()?.to_string()),
            ("compression".to_string(), codec),
            ("fill_value".to_string(), fill),
            ("engine".to_string(), self.arr.engine().py(py)?.to_string()),
            ("read_only".to_string(), self.ctx.read_only.to_string()),
            ("location".to_string(), self.ctx.core.db().store().location().to_string()),
        ];
        if !meta.attrs.is_empty() {
            let attrs = serde_json::Value::Object(meta.attrs);
            rows.push(("attrs".to_string(), attrs.to_string()));
        }
        Ok(rows)
    }

    /// Fails with `outcore.ClosedError` once the connection (or its database) was closed.
    fn check_open(&self, py: Python<'_>) -> PyResult<()> {
        if self.ctx.core.is_closed() {
            return Err(to_py(py, outcore::Error::Closed));
        }
        Ok(())
    }
}

#[pymethods]
impl PyArray {
    /// Name in the connection's root.
    #[getter]
    fn name(&self, py: Python<'_>) -> PyResult<String> {
        self.arr.name().py(py)
    }

    /// How its memory is served: "page cache" (a local store's uncompressed arrays: views map
    /// the store's data file) or "userfaultfd" (compressed arrays, historical snapshots,
    /// PostgreSQL, arrays with a non-zero `fill_value`).
    #[getter]
    fn engine(&self, py: Python<'_>) -> PyResult<String> {
        Ok(self.arr.engine().py(py)?.to_string())
    }

    /// Stable id of the array (survives renames).
    #[getter]
    fn id(&self) -> u64 {
        self.arr.id().0
    }

    /// Shape.
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        dims(py, Ok(self.meta(py)?.shape))
    }

    /// Byte strides (plain C or F layout).
    #[getter]
    fn strides<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        dims(py, self.arr.strides())
    }

    /// The block shape: the largest box of elements one block holds (minor axes whole while
    /// they fit), as `dask.array.from_array` and xarray read `.chunks`.
    #[getter]
    fn chunks<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        dims(py, self.arr.chunks())
    }

    /// NumPy dtype.
    #[getter]
    fn dtype(&self, py: Python<'_>) -> Py<PyAny> {
        self.dtype.clone_ref(py)
    }

    /// Number of dimensions.
    #[getter]
    fn ndim(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.meta(py)?.shape.len())
    }

    /// Number of elements.
    #[getter]
    fn size(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.meta(py)?.shape.iter().product())
    }

    /// Bytes per element.
    #[getter]
    fn itemsize(&self, py: Python<'_>) -> PyResult<u64> {
        self.arr.itemsize().py(py)
    }

    /// Size in bytes.
    #[getter]
    fn nbytes(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.meta(py)?.nbytes)
    }

    /// Memory layout: `"C"` or `"F"`.
    #[getter]
    fn order(&self, py: Python<'_>) -> PyResult<&'static str> {
        Ok(order_name(self.meta(py)?.order))
    }

    /// Block size in bytes.
    #[getter]
    fn blksize(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.meta(py)?.blksize)
    }

    /// The user attributes: `outcore.Attributes`, a mutable mapping of JSON-able values stored
    /// with the array (committed with the transaction, versioned with the array).
    #[getter]
    fn attrs<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        static ATTRIBUTES: PyOnceLock<Py<PyType>> = PyOnceLock::new();
        ATTRIBUTES.import(slf.py(), "outcore._attrs", "Attributes")?.call1((slf,))
    }

    /// The attributes as JSON text (what `attrs` reads).
    fn _attrs_json(&self, py: Python<'_>) -> PyResult<String> {
        let attrs = self.meta(py)?.attrs;
        serde_json::to_string(&attrs).map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// Replaces the attributes by those of a JSON object text (what `attrs` writes).
    fn _set_attrs_json(&self, py: Python<'_>, json: &str) -> PyResult<()> {
        let attrs = parse_attrs(py, json)?;
        self.ctx.join(py)?;
        self.ctx.changing(py, || self.arr.set_attrs(attrs))
    }

    /// The value never written elements read as (a NumPy scalar of the array's dtype).
    #[getter]
    fn fill_value<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let np = py.import("numpy")?;
        let dtype = self.dtype.bind(py);
        let one = match self.arr.fill().py(py)? {
            Some(bytes) => np.call_method1("frombuffer", (pyo3::types::PyBytes::new(py, &bytes), dtype))?,
            None => np.call_method1("zeros", (1, dtype))?,
        };
        one.get_item(0)
    }

    /// True if the array's connection is read-only (`mode="r"`, or a historical snapshot).
    #[getter]
    fn read_only(&self) -> bool {
        self.ctx.read_only
    }

    /// A summary (name, shape, dtype, order, block size and shape, compression, engine,
    /// attributes), as h5py's and zarr's `info`.
    #[getter]
    fn info(&self, py: Python<'_>) -> PyResult<String> {
        Ok(self.info_rows(py)?.iter().map(|(k, v)| format!("{k:<12}: {v}\n")).collect())
    }

    /// The summary as an HTML table, for notebooks.
    fn _repr_html_(&self, py: Python<'_>) -> PyResult<String> {
        let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        let rows: String = self
            .info_rows(py)?
            .iter()
            .map(|(k, v)| {
                format!(
                    "<tr><th style=\"text-align:left\">{}</th><td style=\"text-align:left\">{}</td></tr>",
                    esc(k),
                    esc(v)
                )
            })
            .collect();
        Ok(format!("<table class=\"outcore-array\">{rows}</table>"))
    }

    /// Length of axis 0, as `len(np.asarray(A))` (also for F order, whose append axis is the
    /// last one).
    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        let meta = self.meta(py)?;
        match meta.shape.first() {
            Some(n) => usize::try_from(*n).map_err(|_| PyMemoryError::new_err(format!("length {n} overflows"))),
            None => Err(PyTypeError::new_err("len() of a 0-dimensional array")),
        }
    }

    fn __getitem__<'py>(&self, py: Python<'py>, idx: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        if !is_int_index(idx) {
            check_basic(idx)?;
        }
        self.check_open(py)?;
        self.ctx.join(py)?;
        self.full(py)?.get_item(idx)
    }

    fn __setitem__(&self, py: Python<'_>, idx: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        if !is_int_index(idx) {
            check_basic(idx)?;
        }
        self.check_open(py)?;
        if self.ctx.read_only {
            let tid = self.ctx.core.tid();
            let historical = self.ctx.core.is_historical();
            return Err(to_py(py, outcore::Error::ReadOnly { tid, op: "assignment", historical }));
        }
        self.ctx.join(py)?;
        self.full(py)?.set_item(idx, value)
    }

    /// Iterates over axis 0, like iterating over `np.asarray(A)`.
    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.check_open(py)?;
        self.ctx.join(py)?;
        Ok(self.full(py)?.try_iter()?.into_any())
    }

    /// The whole array as an ndarray view (a copy only when `copy` is true or `dtype` differs).
    #[pyo3(signature = (dtype=None, copy=None))]
    fn __array__<'py>(
        &self,
        py: Python<'py>,
        dtype: Option<&Bound<'py, PyAny>>,
        copy: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.check_open(py)?;
        self.ctx.join(py)?;
        let full = self.full(py)?;
        let full = match dtype {
            Some(dt) if !dt.is_none() => {
                let cast = py.import("numpy")?.call_method1("asarray", (&full, dt))?;
                if copy == Some(false) && !cast.is(&full) {
                    return Err(PyValueError::new_err(format!(
                        "copy=False but viewing the array as {} needs a copy",
                        dt.repr()?
                    )));
                }
                cast
            }
            _ => full,
        };
        if copy == Some(true) {
            return full.call_method0("copy");
        }
        Ok(full)
    }

    /// Appends `values` along the major axis (axis 0 in C order, the last axis in F order);
    /// the other dimensions must match exactly. On any error the array is unchanged.
    fn append(&self, py: Python<'_>, values: &Bound<'_, PyAny>) -> PyResult<()> {
        self.ctx.join(py)?;
        let meta = self.meta(py)?;
        let name = self.arr.name().py(py)?;
        let order = order_name(meta.order);
        let kw = PyDict::new(py);
        kw.set_item("dtype", self.dtype.bind(py))?;
        kw.set_item("order", order)?;
        // Contiguous in the array's order: a copy only where `values` is not already.
        let vals = py.import("numpy")?.call_method("asarray", (values,), Some(&kw))?;
        let vshape: Vec<u64> = vals.getattr("shape")?.extract()?;
        let new_shape =
            outcore::appended_shape(&meta.shape, meta.order, &vshape, Some(&name)).map_err(|e| to_py_bare(py, e))?;
        if new_shape == meta.shape {
            return Ok(());
        }
        check_size(new_shape, self.arr.itemsize().py(py)?)?;
        // The values' bytes in place, in the array's order; the core writes blocks with no stored
        // content straight into staged extents of the store (each byte once) and the rest
        // through views.
        let data = crate::borrow::contiguous_bytes(&vals, order)?;
        self.ctx.changing(py, || self.arr.append_bytes(data))
    }

    /// Loads the blocks under `A[idx]` (default: the whole array) now, with the GIL released,
    /// so that a load failure raises here (`outcore.PagerError`) instead of faulting later.
    #[pyo3(signature = (idx=None))]
    fn load(&self, py: Python<'_>, idx: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let meta = self.meta(py)?;
        let range = match idx {
            None => 0..meta.nbytes,
            Some(idx) => {
                check_basic(idx)?;
                let full = self.full(py)?;
                if meta.nbytes == 0 {
                    full.get_item(idx)?; // index errors as NumPy reports them
                    return Ok(());
                }
                // With a trailing Ellipsis, NumPy returns a (maybe 0-d) view even for ints.
                let items: Vec<Bound<'_, PyAny>> = match idx.cast::<PyTuple>() {
                    Ok(t) => t.iter().collect(),
                    Err(_) => vec![idx.clone()],
                };
                let ellipsis = PyEllipsis::get(py).to_owned().into_any();
                let view = if items.iter().any(|i| i.is(&ellipsis)) {
                    full.get_item(idx)?
                } else {
                    let mut with = items;
                    with.push(ellipsis);
                    full.get_item(PyTuple::new(py, with)?)?
                };
                let addr = |a: &Bound<'_, PyAny>| -> PyResult<usize> {
                    a.getattr("__array_interface__")?.get_item("data")?.get_item(0)?.extract()
                };
                let shape: Vec<usize> = view.getattr("shape")?.extract()?;
                let strides: Vec<isize> = view.getattr("strides")?.extract()?;
                if shape.contains(&0) {
                    return Ok(());
                }
                let itemsize = self.arr.itemsize().py(py)?;
                let first = addr(&view)? as i128 - addr(&full)? as i128;
                let (mut lo, mut hi) = (first, first + i128::from(itemsize as i64));
                for (n, s) in shape.iter().zip(&strides) {
                    let span = (*n as i128 - 1) * *s as i128;
                    if span < 0 {
                        lo += span;
                    } else {
                        hi += span;
                    }
                }
                let lo = u64::try_from(lo).map_err(|_| PyValueError::new_err("view outside the array"))?;
                let hi = u64::try_from(hi).map_err(|_| PyValueError::new_err("view outside the array"))?;
                lo..hi.min(meta.nbytes)
            }
        };
        if range.is_empty() {
            return Ok(());
        }
        py.detach(|| self.arr.prefetch(range)).py(py)
    }

    /// Changes the shape (metadata only, O(1)); new elements read as the fill value and existing views
    /// keep their shape and stay coherent.
    fn resize(&self, py: Python<'_>, shape: &Bound<'_, PyAny>) -> PyResult<()> {
        self.ctx.join(py)?;
        let shape = parse_shape(shape)?;
        check_size(shape.clone(), self.arr.itemsize().py(py)?)?;
        self.ctx.changing(py, || self.arr.resize(&shape))
    }

    /// Pickles by reference: unpickling opens the same array (by database location and id,
    /// whatever its name then) in a connection to the newest snapshot; no data is copied. In
    /// another process, `A[idx] = v` on the unpickled array commits at once through that
    /// process's own connection (see `outcore._ref`).
    #[allow(clippy::type_complexity)]
    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyAny>, (String, String, u64, u32, bool))> {
        let name = self.arr.name().py(py)?;
        let location = self.ctx.core.db().store().location().to_string();
        static BY_REF: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let open = BY_REF.import(py, "outcore._ref", "_array_by_ref")?.clone();
        Ok((open, (location, name, self.arr.id().0, std::process::id(), self.ctx.read_only)))
    }

    /// Dask's token of the array's contents (`dask.base.tokenize`, used by
    /// `dask.array.from_array` to name its chunks): the database, array id and snapshot while
    /// the connection has no uncommitted changes (the snapshot then fixes the data); with
    /// changes, a new unique token on every call, so that dask never mistakes chunks read
    /// before a change for chunks read after it.
    fn __dask_tokenize__(&self, py: Python<'_>) -> PyResult<(&'static str, String, u64, u64, Option<String>)> {
        let location = self.ctx.core.db().store().location().to_string();
        let (tid, changed) =
            py.detach(|| Ok::<_, outcore::Error>((self.ctx.core.tid(), self.ctx.core.has_changes()?))).py(py)?;
        let nonce =
            if changed { Some(py.import("uuid")?.call_method0("uuid4")?.getattr("hex")?.extract()?) } else { None };
        Ok(("outcore.Array", location, self.arr.id().0, tid, nonce))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let meta = self.meta(py)?;
        let name = self.arr.name().py(py)?;
        let engine = self.arr.engine().py(py)?;
        Ok(format!(
            "<outcore.Array '{name}' shape={} dtype={} order={} engine={engine}>",
            PyTuple::new(py, &meta.shape)?.repr()?,
            self.dtype.bind(py).str()?,
            order_name(meta.order)
        ))
    }
}
