//! `fork()` never copies a half-changed connection: every connection lock is taken with the
//! fork gate held, and a `pthread_atfork` prepare handler waits until no thread holds it (and
//! keeps new holders out until the fork is done), so a fork waits until no thread is inside a
//! connection operation (a commit, an abort, a remap at a transaction boundary). The child then
//! finds every connection unlocked and consistent; its store refuses the inherited handle with a
//! clear error (`Forked`), and mapped views read the parent's data as of the fork.

#![allow(unsafe_code)]

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Once;
use std::time::Duration;

/// Threads holding the gate.
static HOLDERS: AtomicU64 = AtomicU64::new(0);
/// A fork is being prepared: new holders wait.
static FORKING: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

thread_local! {
    /// How many gate guards this thread holds (re-entry never waits for a fork).
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Held while a connection's state is locked.
pub(crate) struct ForkGate(());

/// Take the gate (waits while a fork is being prepared, unless this thread already holds it).
pub(crate) fn shared() -> ForkGate {
    install();
    let depth = DEPTH.with(|d| d.get());
    if depth == 0 {
        loop {
            HOLDERS.fetch_add(1, SeqCst);
            if !FORKING.load(SeqCst) {
                break;
            }
            HOLDERS.fetch_sub(1, SeqCst);
            while FORKING.load(SeqCst) {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }
    DEPTH.with(|d| d.set(depth + 1));
    ForkGate(())
}

impl Drop for ForkGate {
    fn drop(&mut self) {
        let depth = DEPTH.with(|d| {
            let n = d.get() - 1;
            d.set(n);
            n
        });
        if depth == 0 {
            HOLDERS.fetch_sub(1, SeqCst);
        }
    }
}

extern "C" fn prepare() {
    FORKING.store(true, SeqCst);
    // The forking thread itself may hold the gate (a fork from inside a callback): do not wait
    // for ourselves.
    let mine = u64::from(DEPTH.with(|d| d.get()) > 0);
    while HOLDERS.load(SeqCst) > mine {
        std::thread::sleep(Duration::from_micros(50));
    }
}

extern "C" fn parent() {
    FORKING.store(false, SeqCst);
}

extern "C" fn child() {
    // Only the forking thread exists in the child.
    HOLDERS.store(u64::from(DEPTH.with(|d| d.get()) > 0), SeqCst);
    FORKING.store(false, SeqCst);
}

fn install() {
    INSTALL.call_once(|| {
        // SAFETY: registers plain functions with no preconditions; they only touch the atomics
        // above.
        let r = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
        if r != 0 {
            tracing::warn!("pthread_atfork failed ({r}): a fork during a commit may copy a locked connection");
        }
    });
}
