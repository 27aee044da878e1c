//! Ctrl-C while the store waits for a server.
//!
//! The store asks [`check`] about ten times a second during every network wait (see
//! `outcore_store::interrupt`). On Python's main thread it runs the pending signal handlers
//! (`PyErr_CheckSignals`, as NumPy's long loops do); an exception they raise (usually
//! `KeyboardInterrupt`) ends the wait, and [`take_pending`] hands it to the error mapping, which
//! raises it in place of the store's `Interrupted` error. Other threads never take the GIL here:
//! the main thread may hold it while it waits for one of them (a page fault served by a pager
//! thread), and Python delivers signals to the main thread only.

use pyo3::prelude::*;
use std::cell::RefCell;
use std::sync::OnceLock;
use std::thread::ThreadId;

static MAIN: OnceLock<ThreadId> = OnceLock::new();

thread_local! {
    static PENDING: RefCell<Option<PyErr>> = const { RefCell::new(None) };
}

/// Install the check; `py` must be on Python's main thread for Ctrl-C to be seen (the module is
/// imported there in every ordinary program; otherwise interrupts are not checked).
pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
    let threading = py.import("threading")?;
    let on_main = threading.call_method0("current_thread")?.is(&threading.call_method0("main_thread")?);
    if on_main {
        let _ = MAIN.set(std::thread::current().id());
        outcore::store::interrupt::set_check(check);
    }
    Ok(())
}

fn check() -> bool {
    if MAIN.get() != Some(&std::thread::current().id()) {
        return false;
    }
    Python::attach(|py| match py.check_signals() {
        Ok(()) => false,
        Err(e) => {
            PENDING.with(|p| *p.borrow_mut() = Some(e));
            true
        }
    })
}

/// The exception a signal handler raised during the last interrupted wait on this thread.
pub(crate) fn take_pending() -> Option<PyErr> {
    PENDING.with(|p| p.borrow_mut().take())
}
