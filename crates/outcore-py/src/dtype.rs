//! NumPy dtypes <-> the dtype descriptions the core stores ([`outcore::Dtype`]).
//!
//! Plain dtypes are stored as their type string (`dtype.str`, e.g. `"<f8"`); structured ones as
//! the core's JSON description (format 2: names, explicit offsets, the item size, sub-array
//! shapes and titles), built here from `dtype.names` and `dtype.fields`. Arrays written before
//! (format 1: the repr of `dtype.descr`) are read by the core's parser of that text; either
//! way the NumPy dtype is rebuilt from explicit offsets, so padded and aligned layouts come back
//! equal to the dtype the array was created with.

use outcore::{Dtype, Field};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyTuple, PyType};

use crate::errors::{to_py_bare, Class};

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

/// The NumPy dtype of `obj` (see [`check_dtype`]), its stored description and item size.
pub(crate) fn to_descr<'py>(obj: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyAny>, String, u64)> {
    let dt = check_dtype(obj)?;
    let descr = core_dtype(&dt)?.to_text();
    let itemsize: u64 = dt.getattr("itemsize")?.extract()?;
    Ok((dt, descr, itemsize))
}

/// The core's description of a NumPy dtype.
fn core_dtype(dt: &Bound<'_, PyAny>) -> PyResult<Dtype> {
    let names = dt.getattr("names")?;
    if names.is_none() {
        return Ok(Dtype::Plain(dt.getattr("str")?.extract()?));
    }
    let by_name = dt.getattr("fields")?;
    let mut fields = Vec::new();
    for name in names.try_iter()? {
        let name = name?;
        // (dtype, offset) or (dtype, offset, title)
        let entry = by_name.get_item(&name)?;
        let (mut field_dt, offset) = (entry.get_item(0)?, entry.get_item(1)?.extract::<u64>()?);
        let title = match entry.len()? {
            3 => Some(entry.get_item(2)?.str()?.to_string()),
            _ => None,
        };
        let mut shape = Vec::new();
        let sub = field_dt.getattr("subdtype")?;
        if !sub.is_none() {
            shape = sub.get_item(1)?.extract()?;
            field_dt = sub.get_item(0)?;
        }
        fields.push(Field::new(name.extract::<String>()?, offset, core_dtype(&field_dt)?).shape(shape).title(title));
    }
    Ok(Dtype::Struct { itemsize: dt.getattr("itemsize")?.extract()?, fields })
}

/// The NumPy dtype of a core description.
fn numpy_dtype<'py>(py: Python<'py>, d: &Dtype) -> PyResult<Bound<'py, PyAny>> {
    let Dtype::Struct { itemsize, fields } = d else {
        return dtype_class(py)?.call1((d.to_text(),));
    };
    let (names, formats, offsets, titles) =
        (PyList::empty(py), PyList::empty(py), PyList::empty(py), PyList::empty(py));
    for f in fields {
        let mut format = numpy_dtype(py, &f.dtype)?;
        if !f.shape.is_empty() {
            format = dtype_class(py)?.call1(((format, PyTuple::new(py, &f.shape)?),))?;
        }
        names.append(&f.name)?;
        formats.append(format)?;
        offsets.append(f.offset)?;
        titles.append(&f.title)?;
    }
    let spec = PyDict::new(py);
    spec.set_item("names", names)?;
    spec.set_item("formats", formats)?;
    spec.set_item("offsets", offsets)?;
    spec.set_item("itemsize", itemsize)?;
    if fields.iter().any(|f| f.title.is_some()) {
        spec.set_item("titles", titles)?;
    }
    dtype_class(py)?.call1((spec,))
}

/// The NumPy dtype of a stored description (either format; `outcore.DtypeError` if it is not
/// one). A plain type string the core does not know is left to `numpy.dtype`.
#[pyfunction]
#[pyo3(name = "dtype_from_descr")]
pub(crate) fn from_descr<'py>(py: Python<'py>, descr: &str) -> PyResult<Bound<'py, PyAny>> {
    match Dtype::parse(descr) {
        Ok(d) => numpy_dtype(py, &d),
        Err(_) if !descr.trim_start().starts_with(['{', '[']) => dtype_class(py)?.call1((descr,)),
        Err(e) => Err(to_py_bare(py, e)),
    }
}
