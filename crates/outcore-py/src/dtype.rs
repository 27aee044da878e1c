//! NumPy dtypes <-> the descr strings the core stores.
//!
//! Plain dtypes are stored as their type string (`dtype.str`, e.g. `"<f8"`), structured ones as
//! the repr of `dtype.descr` (e.g. `"[('x', '<f4'), ('y', '<i8', (3,))]"`), which keeps the
//! field layout (offsets and padding) and is what the core parses for the item size.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use crate::errors::Class;

/// `numpy.dtype` (the class).
pub(crate) fn dtype_class(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static CLS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    CLS.import(py, "numpy", "dtype")
}

/// `numpy.integer` (the abstract scalar class of all NumPy integers).
pub(crate) fn integer_class(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static CLS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    CLS.import(py, "numpy", "integer")
}

/// The NumPy dtype of `obj` (anything `numpy.dtype()` accepts), if outcore arrays can hold it:
/// object dtypes (also nested in structured ones), sub-array dtypes and zero-sized items are an
/// `outcore.DtypeError` (a `TypeError`).
#[pyfunction]
pub(crate) fn check_dtype<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    let dt = dtype_class(py)?.call1((obj,)).map_err(|e| {
        if e.is_instance_of::<PyTypeError>(py) {
            Class::DtypeError.err(py, e.value(py).to_string())
        } else {
            e
        }
    })?;
    if dt.getattr("hasobject")?.is_truthy()? {
        let msg = format!("dtype {} holds Python objects, which outcore arrays cannot store", dt.repr()?);
        return Err(Class::DtypeError.err(py, msg));
    }
    if !dt.getattr("subdtype")?.is_none() {
        let msg = format!("sub-array dtype {} is not supported: put its shape into the array's shape", dt.repr()?);
        return Err(Class::DtypeError.err(py, msg));
    }
    if dt.getattr("itemsize")?.extract::<u64>()? == 0 {
        return Err(Class::DtypeError.err(py, format!("dtype {} has zero-sized items", dt.repr()?)));
    }
    Ok(dt)
}

/// The NumPy dtype of `obj` (see [`check_dtype`]), its descr and item size.
pub(crate) fn to_descr<'py>(obj: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyAny>, String, u64)> {
    let dt = check_dtype(obj)?;
    let descr: String = if dt.getattr("names")?.is_none() {
        dt.getattr("str")?.extract()?
    } else {
        dt.getattr("descr")?.repr()?.extract()?
    };
    let itemsize: u64 = dt.getattr("itemsize")?.extract()?;
    Ok((dt, descr, itemsize))
}

/// The NumPy dtype of a stored descr (`outcore._dtype.from_descr`, which drops the padding
/// fields of structured descrs again).
pub(crate) fn from_descr<'py>(py: Python<'py>, descr: &str) -> PyResult<Bound<'py, PyAny>> {
    if descr.trim_start().starts_with('[') {
        static FROM: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        FROM.import(py, "outcore._dtype", "from_descr")?.call1((descr,))
    } else {
        dtype_class(py)?.call1((descr,))
    }
}
