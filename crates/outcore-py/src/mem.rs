//! `Mapping`: the owner of the memory under every NumPy array this module hands out.
//!
//! A `Mapping` holds a core byte view (a pager mapping of whole blocks of one array) and
//! exposes it to NumPy through the `__array_interface__` protocol as a flat `uint8` array; the
//! typed, strided array is then built by NumPy over that (`numpy.ndarray(..., buffer=...)`).
//! NumPy keeps the object it got the pointer from as the `.base` of every array and view made
//! from it, so the mapping lives as long as any of them, whatever happens to the `Array`,
//! `Connection` and `Db` objects.
//!
//! # Safety
//! No `unsafe` Rust is needed here, but the pointer handed to NumPy is only valid while the
//! view lives: it must never be dropped while the `Mapping` exists (it is owned, immutable, for
//! the object's whole life). Writes through a read-only view are refused by NumPy (the
//! interface marks the data read-only), and the pager keeps every byte of the mapping readable
//! and, for a writable view, writable (loading blocks on first touch; bytes beyond the array's
//! current size read as zeros).
//!
//! # Read-only views
//! Views of a read-only connection (`mode="r"`, historical snapshots) are marked read-only in
//! the interface, so NumPy refuses writes (`ValueError: assignment destination is read-only`)
//! and refuses `flags.writeable = True` too: NumPy only makes an array writable again when its
//! base exposes a writable buffer, and a `Mapping` exposes no buffer at all. The memory itself
//! stays `PROT_READ | PROT_WRITE` (the pager zeroes and remaps it in place at transaction
//! boundaries): C code that ignores NumPy's flag can still write there, into pages private to
//! this process, which a read-only connection never commits and drops at its next boundary.
//!
//! # After close
//! A `Mapping` keeps its connection alive (not open): once the connection is closed, the
//! views stay mapped and readable at the snapshot it read, which stays registered with the
//! store so that nothing they map is reused. Writes into them then are never committed: when
//! a `Mapping` with such writes is released, a `RuntimeWarning` says so.

use std::sync::Arc;

use outcore::{BytesView, BytesViewMut};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

/// Memory of an outcore array shared with NumPy (the `.base` of its ndarrays).
#[pyclass(frozen, module = "outcore._outcore")]
pub(crate) struct Mapping {
    /// The core byte view, owned for the life of the object: `ptr` points into it.
    _view: Box<dyn std::any::Any + Send + Sync>,
    readonly: bool,
    ptr: usize,
    len: usize,
    /// Where the bytes come from, for `ArrayRef`.
    origin: Origin,
    /// The connection (kept alive, so its snapshot stays registered while views map it) and
    /// the array, to report writes made after the connection was closed.
    keep: (Arc<outcore::Connection>, outcore::Array),
}

/// The connection a mapping keeps alive and the array it maps.
pub(crate) type Keep = (Arc<outcore::Connection>, outcore::Array);

impl Drop for Mapping {
    fn drop(&mut self) {
        let (conn, arr) = &self.keep;
        if self.readonly || !conn.is_closed() || !arr.has_written().unwrap_or(false) {
            return;
        }
        let msg = format!(
            "writes into a view of array '{}' made after its connection was closed were discarded \
             (they are never committed: write within the transaction, e.g. inside the `with \
             db.transaction() as conn:` block)",
            self.origin.name
        );
        Python::attach(|py| {
            let category = py.get_type::<pyo3::exceptions::PyRuntimeWarning>();
            let Ok(cmsg) = std::ffi::CString::new(msg) else { return };
            if let Err(e) = PyErr::warn(py, &category, &cmsg, 1) {
                e.write_unraisable(py, None);
            }
        });
    }
}

/// The array a [`Mapping`] maps bytes of.
#[derive(Clone, Debug)]
pub(crate) struct Origin {
    /// Database location (path or redacted URL).
    pub location: String,
    /// Array name when mapped.
    pub name: String,
    /// Stable array id.
    pub id: u64,
    /// Byte offset in the array of the first mapped byte.
    pub offset: u64,
}

impl Mapping {
    /// A read-only mapping of `view`.
    pub(crate) fn read(view: BytesView, origin: Origin, keep: Keep) -> Mapping {
        let s = view.as_slice();
        let (ptr, len) = (s.as_ptr() as usize, s.len());
        Mapping { _view: Box::new(view), readonly: true, ptr, len, origin, keep }
    }

    /// A writable mapping of `view`.
    pub(crate) fn write(mut view: BytesViewMut, origin: Origin, keep: Keep) -> Mapping {
        let s = view.as_mut_slice();
        let (ptr, len) = (s.as_mut_ptr() as usize, s.len());
        Mapping { _view: Box::new(view), readonly: false, ptr, len, origin, keep }
    }
}

#[pymethods]
impl Mapping {
    /// NumPy's array interface (version 3): the bytes as a flat `uint8` array.
    #[getter]
    fn __array_interface__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("version", 3)?;
        d.set_item("shape", PyTuple::new(py, [self.len])?)?;
        d.set_item("typestr", "|u1")?;
        d.set_item("data", (self.ptr, self.readonly))?;
        Ok(d)
    }

    /// Length in bytes.
    fn __len__(&self) -> usize {
        self.len
    }

    /// Address of the first byte.
    #[getter]
    fn address(&self) -> usize {
        self.ptr
    }

    /// True if the memory is read-only (a historical connection).
    #[getter]
    fn readonly(&self) -> bool {
        self.readonly
    }

    /// Database location of the array (path or redacted URL).
    #[getter]
    fn location(&self) -> &str {
        &self.origin.location
    }

    /// Name of the array when it was mapped.
    #[getter]
    fn array_name(&self) -> &str {
        &self.origin.name
    }

    /// Stable id of the array.
    #[getter]
    fn array_id(&self) -> u64 {
        self.origin.id
    }

    /// Byte offset in the array of the first mapped byte.
    #[getter]
    fn offset(&self) -> u64 {
        self.origin.offset
    }

    fn __repr__(&self) -> String {
        let kind = if self.readonly { "read-only" } else { "writable" };
        format!(
            "<outcore mapping of array '{}': {} bytes at offset {}, {kind}>",
            self.origin.name, self.len, self.origin.offset
        )
    }
}
