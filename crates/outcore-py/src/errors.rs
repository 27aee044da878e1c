//! Core errors as Python exceptions.
//!
//! The exception classes live in `outcore._errors` (Python, so that they can also subclass the
//! built-ins a NumPy or database user catches: `KeyError`, `ValueError`, `IndexError`,
//! `OSError`, and the `transaction` package's `TransientError` for conflicts). This module
//! maps each core error family to its class.

use pyo3::exceptions::{PyKeyboardInterrupt, PyMemoryError, PyRuntimeError};
use pyo3::prelude::*;

/// Name of the `outcore._errors` class for a core error.
fn class_name(e: &outcore::Error) -> &'static str {
    use outcore::Error as E;
    match e {
        E::Conflict(_) => "ConflictError",
        E::NeedsAbort => "NeedsAbortError",
        E::Closed => "ClosedError",
        E::Stale(_) => "StaleError",
        E::NoSuchArray(_) => "NoSuchArrayError",
        E::ArrayGone(_) => "ArrayGoneError",
        E::AlreadyExists(_) => "AlreadyExistsError",
        E::ReadOnly { .. } => "ReadOnlyError",
        E::Uncommitted { .. } => "UncommittedError",
        E::Shape(_) => "ShapeError",
        E::Dtype(_) => "DtypeError",
        E::OutOfRange(_) => "OutOfRangeError",
        E::InvalidArgument(_) => "InvalidArgumentError",
        E::Store(
            outcore::store::Error::Corrupt { .. }
            | outcore::store::Error::CorruptMeta { .. }
            | outcore::store::Error::BadMeta { .. },
        ) => "CorruptError",
        E::Store(outcore::store::Error::SnapshotGone { .. } | outcore::store::Error::FutureTid { .. }) => {
            "SnapshotError"
        }
        E::Store(outcore::store::Error::CommitNotWritten { .. }) => "CommitNotWrittenError",
        E::Store(_) => "StoreError",
        E::Pager(_) => "PagerError",
        E::NotFound(_) => "NotFoundError",
        E::StoreExists(_) => "StoreExistsError",
        _ => "Error",
    }
}

/// The Python exception for a core error.
pub(crate) fn to_py(py: Python<'_>, e: outcore::Error) -> PyErr {
    let msg = e.to_string();
    if let outcore::Error::Store(outcore::store::Error::Interrupted { .. }) = e {
        // Ctrl-C: raise what the signal handler raised (KeyboardInterrupt).
        return crate::interrupt::take_pending().unwrap_or_else(|| PyKeyboardInterrupt::new_err(msg));
    }
    let name = class_name(&e);
    let made = py
        .import("outcore._errors")
        .and_then(|m| m.getattr(name))
        .and_then(|cls| cls.call1((msg.clone(),)))
        .map(PyErr::from_value);
    made.unwrap_or_else(|_| PyRuntimeError::new_err(msg))
}

/// The `outcore._errors` exception `name` (e.g. `"DtypeError"`) with message `msg`.
pub(crate) fn new_err(py: Python<'_>, name: &str, msg: String) -> PyErr {
    let made = py.import("outcore._errors").and_then(|m| m.getattr(name)).and_then(|cls| cls.call1((msg.clone(),)));
    made.map(PyErr::from_value).unwrap_or_else(|_| PyRuntimeError::new_err(msg))
}

/// A `MemoryError` for an array that cannot be mapped into the address space.
pub(crate) fn memory_error(what: &str, e: &outcore::Error) -> PyErr {
    PyMemoryError::new_err(format!("{what} does not fit the address space: {e}"))
}

/// Converts core results into Python results.
pub(crate) trait PyResultExt<T> {
    /// The value, or the core error as its Python exception.
    fn py(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> PyResultExt<T> for outcore::Result<T> {
    fn py(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py(py, e))
    }
}
