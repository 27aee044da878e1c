//! Whether the user asked to stop (Ctrl-C) while the store waits on the network.
//!
//! The store cannot see signals itself: a program embedding it (the Python extension, whose
//! interpreter turns SIGINT into `KeyboardInterrupt`) installs a check with [`set_check`], and
//! every network wait calls it about ten times a second. When it returns true the wait ends with
//! [`Error::Interrupted`](crate::Error::Interrupted) and the connection is dropped (its state is
//! unknown); a commit interrupted after it was sent finds out whether it landed first.

use std::sync::OnceLock;

static CHECK: OnceLock<fn() -> bool> = OnceLock::new();

/// Install the interrupt check (once per process; later calls are ignored). It runs on the
/// waiting thread and must be cheap; it returns true when the wait should stop.
pub fn set_check(check: fn() -> bool) {
    let _ = CHECK.set(check);
}

/// True when the installed check says to stop.
pub(crate) fn requested() -> bool {
    CHECK.get().is_some_and(|check| check())
}
