//! The `outcore._outcore` Python extension module: thin wrappers over the `outcore` crate.
//!
//! One file per concept, mirroring the core: `db` (`open`, `Db`), `connection` (`Connection`,
//! `Root`, the handle the `transaction` integration drives), `array` (`Array`), `mem` (the
//! `Mapping` owning the memory under every ndarray), `dtype` and `errors`. The public Python
//! API is re-exported by `python/outcore/__init__.py`, which adds the pure-Python parts
//! (exceptions, the `transaction` data manager, `RAMArray`, `ArrayRef`, `structured`, the demo).
//!
//! Every blocking core call (open, connect, commit, abort, sync, history, load, resize) runs
//! with the GIL released. Page faults on the ndarrays are served by pager threads that never
//! call Python.

mod array;
mod borrow;
mod connection;
mod db;
mod dtype;
mod errors;
mod interrupt;
mod log;
mod mem;
mod reader;
mod shape;

use pyo3::prelude::*;

/// The extension module.
#[pymodule]
fn _outcore(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    db::register(m)?;
    shape::register(m)?;
    m.add_function(wrap_pyfunction!(dtype::check_dtype, m)?)?;
    m.add_class::<connection::PyConnection>()?;
    m.add_class::<connection::Root>()?;
    m.add_class::<connection::TxnHandle>()?;
    m.add_class::<connection::Savepoint>()?;
    m.add_class::<array::PyArray>()?;
    m.add_class::<mem::Mapping>()?;
    log::install();
    interrupt::install(m.py())?;
    m.add_function(wrap_pyfunction!(log::next_log_records, m)?)?;
    m.add_function(wrap_pyfunction!(log::wake_log_records, m)?)?;
    m.add_function(wrap_pyfunction!(cli_main, m)?)?;
    m.add_class::<reader::ArrayReader>()?;
    m.add_function(wrap_pyfunction!(reader::open_array_reader, m)?)?;
    Ok(())
}

/// Run the `outcore` command with `argv` (program name first) and return its exit status. The
/// command is the Rust one (`outcore-cli`); it runs with the GIL released and prints to the
/// process's stdout and stderr.
#[pyfunction]
fn cli_main(py: Python<'_>, argv: Vec<String>) -> i32 {
    py.detach(|| outcore_cli::run(argv))
}
