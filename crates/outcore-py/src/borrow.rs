//! Reading a NumPy array's bytes in place (the limited API of Python 3.10 has no buffer
//! protocol, so the address comes from `__array_interface__`). The one `unsafe` block of the
//! extension.
#![allow(unsafe_code)]

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// The bytes of `arr`, a NumPy array that is contiguous in `order` ("C" or "F"), without a copy.
/// The slice lives as long as the borrow of `arr`, which keeps the array (and its memory) alive.
pub(crate) fn contiguous_bytes<'a>(arr: &'a Bound<'_, PyAny>, order: &str) -> PyResult<&'a [u8]> {
    let flags = arr.getattr("flags")?;
    let contiguous: bool = flags.getattr(if order == "F" { "f_contiguous" } else { "c_contiguous" })?.extract()?;
    if !contiguous {
        return Err(PyValueError::new_err(format!("internal: the array is not {order}-contiguous")));
    }
    let nbytes: usize = arr.getattr("nbytes")?.extract()?;
    let (addr, _readonly): (usize, bool) = arr.getattr("__array_interface__")?.get_item("data")?.extract()?;
    if nbytes == 0 {
        return Ok(&[]);
    }
    if addr == 0 {
        return Err(PyValueError::new_err("internal: the array has no data address"));
    }
    // SAFETY: `addr` is the address of the `nbytes` bytes of `arr`'s data, contiguous (checked
    // above), owned by `arr` or its base, which `arr` keeps alive for 'a; NumPy cannot free or
    // move them while a reference is held (`ndarray.resize` refuses referenced arrays). Another
    // thread writing the array meanwhile would race as it would with any NumPy copy (the bytes
    // read are then unspecified); outcore itself never writes through this slice.
    Ok(unsafe { std::slice::from_raw_parts(addr as *const u8, nbytes) })
}
