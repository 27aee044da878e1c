//! The `outcore._outcore` Python extension module: thin wrappers over the `outcore` crate.
//! (Being built: see issue 5.)

use pyo3::prelude::*;

/// The extension module.
#[pymodule]
fn _outcore(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
