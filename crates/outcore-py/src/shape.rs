//! Shapes, sizes and indices as Python passes them, checked once for every array class: the
//! extension's `Array` calls these directly, and `outcore._index` re-exports them for the
//! pure-Python `RAMArray` (the size and append rules themselves are the core's,
//! `outcore::{nbytes_of, appended_shape, MAX_NBYTES}`).

use outcore::Order;
use pyo3::exceptions::{PyMemoryError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyEllipsis, PyInt, PySlice, PyString, PyTuple};

use crate::dtype::integer_class;
use crate::errors::{to_py_bare, Class};

/// `"C"` or `"F"`.
pub(crate) fn order_name(order: Order) -> &'static str {
    match order {
        Order::C => "C",
        Order::F => "F",
    }
}

/// Parses `"C"` / `"F"`.
pub(crate) fn parse_order(py: Python<'_>, s: &str) -> PyResult<Order> {
    match s {
        "C" | "c" => Ok(Order::C),
        "F" | "f" => Ok(Order::F),
        _ => Err(Class::InvalidArgumentError.err(py, format!("order must be 'C' or 'F', not {s:?}"))),
    }
}

/// A shape: an int or a sequence of ints, none negative (`outcore.ShapeError` otherwise).
#[pyfunction]
pub(crate) fn parse_shape(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u64>> {
    let dims: Vec<Bound<'_, PyAny>> = if obj.hasattr("__index__")? && !obj.hasattr("__len__")? {
        vec![obj.clone()]
    } else {
        obj.try_iter()?.collect::<PyResult<_>>()?
    };
    dims.iter()
        .map(|d| {
            let n: i128 = d.call_method0("__index__")?.extract()?;
            u64::try_from(n).map_err(|_| {
                Class::ShapeError.err(d.py(), format!("invalid dimension {n} in shape: dimensions must be in 0..2**64"))
            })
        })
        .collect()
}

/// Fails with `MemoryError` when `shape` of `itemsize`-byte items cannot be addressed (beyond
/// `outcore::MAX_NBYTES`, or this platform's address space).
#[pyfunction]
pub(crate) fn check_size(shape: Vec<u64>, itemsize: u64) -> PyResult<()> {
    let mut n = u128::from(itemsize);
    for d in &shape {
        n = n.saturating_mul(u128::from(*d));
    }
    if n > u128::from(outcore::MAX_NBYTES) || n > isize::MAX as u128 {
        return Err(PyMemoryError::new_err(format!(
            "an array of shape {shape:?} with {itemsize}-byte items needs {n} bytes, beyond the address space"
        )));
    }
    Ok(())
}

/// The shape after appending values of shape `values` to an array of `shape` in `order`
/// (`outcore::appended_shape`): `outcore.ShapeError` unless all dimensions but the major axis
/// match, `MemoryError` if the result cannot be addressed.
#[pyfunction]
#[pyo3(signature = (shape, order, values, name=None))]
pub(crate) fn appended_shape(
    py: Python<'_>,
    shape: Vec<u64>,
    order: &str,
    values: Vec<u64>,
    name: Option<&str>,
) -> PyResult<Vec<u64>> {
    let order = parse_order(py, order)?;
    outcore::appended_shape(&shape, order, &values, name).map_err(|e| to_py_bare(py, e))
}

/// The major (append) axis of an array of `ndim` dimensions in `order` (`"C"`: 0, `"F"`: the
/// last).
#[pyfunction]
pub(crate) fn major_axis(py: Python<'_>, order: &str, ndim: usize) -> PyResult<usize> {
    Ok(outcore::major_axis(parse_order(py, order)?, ndim))
}

/// True for an `int` (not a subclass such as `bool`) or a tuple of them: the common basic
/// index that needs no further check.
pub(crate) fn is_int_index(idx: &Bound<'_, PyAny>) -> bool {
    if idx.is_exact_instance_of::<PyInt>() {
        return true;
    }
    match idx.cast_exact::<PyTuple>() {
        Ok(t) => t.iter().all(|i| i.is_exact_instance_of::<PyInt>()),
        Err(_) => false,
    }
}

/// Raises `TypeError` unless `idx` is a basic index: ints, slices, `None`, `Ellipsis`, field
/// names, or a tuple of those.
#[pyfunction]
pub(crate) fn check_basic(idx: &Bound<'_, PyAny>) -> PyResult<()> {
    match idx.cast::<PyTuple>() {
        Ok(t) => t.iter().try_for_each(|i| check_one(&i)),
        Err(_) => check_one(idx),
    }
}

fn check_one(i: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = i.py();
    let basic = i.is_none()
        || i.is_instance_of::<PySlice>()
        || i.is_instance_of::<PyEllipsis>()
        || i.is_instance_of::<PyString>()
        || (i.is_instance_of::<PyInt>() && !i.is_instance_of::<PyBool>())
        || i.is_instance(integer_class(py)?)?;
    if basic {
        return Ok(());
    }
    Err(PyTypeError::new_err(format!(
        "outcore arrays support basic indexing only (ints, slices, None, Ellipsis), not {}: for \
         advanced (list, array or boolean) indexing use np.asarray(A)[index], which copies the \
         selected elements",
        i.get_type().name()?
    )))
}

/// Adds the checks and `MAX_NBYTES` to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("MAX_NBYTES", outcore::MAX_NBYTES)?;
    m.add_function(wrap_pyfunction!(parse_shape, m)?)?;
    m.add_function(wrap_pyfunction!(check_size, m)?)?;
    m.add_function(wrap_pyfunction!(appended_shape, m)?)?;
    m.add_function(wrap_pyfunction!(major_axis, m)?)?;
    m.add_function(wrap_pyfunction!(check_basic, m)?)?;
    Ok(())
}
