//! Core errors as Python exceptions.
//!
//! The exception classes live in `outcore._errors` (Python, so that they can also subclass the
//! built-ins a NumPy or database user catches: `KeyError`, `ValueError`, `IndexError`,
//! `OSError`, and the `transaction` package's `TransientError` for conflicts). They are
//! imported once, on the first error, and kept ([`Class::get`]); this module maps each core
//! error family to its class.

use pyo3::exceptions::{PyKeyboardInterrupt, PyMemoryError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

macro_rules! classes {
    ($($variant:ident),* $(,)?) => {
        /// An exception class of `outcore._errors` (the variant is the class name).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum Class {
            $($variant),*
        }

        impl Class {
            /// Every class, in declaration order (`class as usize` indexes it).
            const ALL: &'static [Class] = &[$(Class::$variant),*];

            /// The class name in `outcore._errors`.
            fn name(self) -> &'static str {
                match self {
                    $(Class::$variant => stringify!($variant)),*
                }
            }
        }
    };
}

classes!(
    Error,
    ConflictError,
    NeedsAbortError,
    ClosedError,
    StaleError,
    NoSuchArrayError,
    ArrayGoneError,
    AlreadyExistsError,
    ReadOnlyError,
    UncommittedError,
    ShapeError,
    DtypeError,
    OutOfRangeError,
    InvalidArgumentError,
    StoreError,
    CommitNotWrittenError,
    CorruptError,
    SnapshotError,
    NotFoundError,
    StoreExistsError,
    PagerError,
);

/// The classes, imported from `outcore._errors` on first use.
static CLASSES: PyOnceLock<Vec<Py<PyType>>> = PyOnceLock::new();

impl Class {
    /// The Python class.
    pub(crate) fn get(self, py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
        let all = CLASSES.get_or_try_init(py, || -> PyResult<Vec<Py<PyType>>> {
            let m = py.import("outcore._errors")?;
            Class::ALL.iter().map(|c| Ok(m.getattr(c.name())?.cast_into::<PyType>()?.unbind())).collect()
        })?;
        match all.get(self as usize) {
            Some(cls) => Ok(cls.bind(py)),
            None => Err(PyRuntimeError::new_err(format!("outcore._errors has no {}", self.name()))),
        }
    }

    /// An exception of this class with message `msg` (a `RuntimeError` if the package's
    /// exceptions cannot be imported).
    pub(crate) fn err(self, py: Python<'_>, msg: impl Into<String>) -> PyErr {
        let msg = msg.into();
        match self.get(py).and_then(|cls| cls.call1((msg.clone(),))) {
            Ok(e) => PyErr::from_value(e),
            Err(_) => PyRuntimeError::new_err(msg),
        }
    }
}

/// The class of a core error.
fn class_of(e: &outcore::Error) -> Class {
    use outcore::store::Error as S;
    use outcore::Error as E;
    match e {
        E::Conflict(_) => Class::ConflictError,
        E::NeedsAbort => Class::NeedsAbortError,
        E::Closed => Class::ClosedError,
        E::Stale(_) => Class::StaleError,
        E::NoSuchArray(_) => Class::NoSuchArrayError,
        E::ArrayGone(_) => Class::ArrayGoneError,
        E::AlreadyExists(_) => Class::AlreadyExistsError,
        E::ReadOnly { .. } | E::Store(S::ReadOnly { .. }) => Class::ReadOnlyError,
        E::Uncommitted { .. } => Class::UncommittedError,
        E::Shape(_) => Class::ShapeError,
        E::Dtype(_) => Class::DtypeError,
        E::OutOfRange(_) => Class::OutOfRangeError,
        E::InvalidArgument(_) => Class::InvalidArgumentError,
        E::Store(S::Corrupt { .. } | S::CorruptMeta { .. } | S::BadMeta { .. }) => Class::CorruptError,
        E::Store(S::SnapshotGone { .. } | S::FutureTid { .. }) => Class::SnapshotError,
        E::Store(S::CommitNotWritten { .. }) => Class::CommitNotWrittenError,
        E::Store(_) => Class::StoreError,
        E::Pager(_) => Class::PagerError,
        E::NotFound(_) => Class::NotFoundError,
        E::StoreExists(_) => Class::StoreExistsError,
        _ => Class::Error,
    }
}

/// The Python exception for a core error.
pub(crate) fn to_py(py: Python<'_>, e: outcore::Error) -> PyErr {
    let msg = e.to_string();
    if let outcore::Error::Store(outcore::store::Error::Interrupted { .. }) = e {
        // Ctrl-C: raise what the signal handler raised (KeyboardInterrupt).
        return crate::interrupt::take_pending().unwrap_or_else(|| PyKeyboardInterrupt::new_err(msg));
    }
    class_of(&e).err(py, msg)
}

/// The Python exception for a core error raised by a rule the bindings apply before calling
/// the core (a shape check, ...): its class, with the bare message (no "invalid shape:" prefix).
pub(crate) fn to_py_bare(py: Python<'_>, e: outcore::Error) -> PyErr {
    use outcore::Error as E;
    match e {
        E::Shape(m) => Class::ShapeError.err(py, m),
        E::Dtype(m) => Class::DtypeError.err(py, m),
        E::InvalidArgument(m) => Class::InvalidArgumentError.err(py, m),
        e => to_py(py, e),
    }
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
