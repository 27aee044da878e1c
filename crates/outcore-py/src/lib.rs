//! The `outcore._outcore` Python extension module: thin wrappers over the `outcore` crate.
//!
//! One file per concept, mirroring the core: `db` (`open`, `Db`), `connection` (`Connection`,
//! `Root`, the `TxnHandle` the `transaction` data manager drives), `array` (`Array`), `mem` (the
//! `Mapping` owning the memory under every ndarray), `shape` (shape, size and index checks),
//! `dtype` and `errors`. The package (`python/outcore`) is on top: its `Db` and `Connection`
//! classes (`_db.py`) wrap this module's, and add what is Python's (joining a `transaction`
//! manager, `db.transaction()`, the root `Group`, context managers); `Array` is this module's
//! class itself, so indexing costs no Python-level call. The extension calls up into the
//! package only for the exception classes, `Attributes` and unpickling (each imported once,
//! on first use) and the data manager it was given.
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
    m.add_function(wrap_pyfunction!(dtype::from_descr, m)?)?;
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
