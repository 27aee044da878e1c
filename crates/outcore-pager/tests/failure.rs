//! A source that fails: transient errors are retried; a permanent error makes the faulting
//! access fail (SIGBUS for user-mode accesses, EFAULT for system calls) after being logged.
//! Never zeros.

#![allow(unsafe_code)]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use common::*;
use outcore_pager::{Pager, PagerConfig};

const CHILD_ENV: &str = "OUTCORE_PAGER_TEST_CHILD";

/// Transient errors are retried with backoff, then the load succeeds.
#[test]
fn transient_errors_are_retried() {
    let p = pager(1 << 30);
    let (src, f) = open(&p, 4);
    src.transient.lock().insert(2, 3);
    let v = f.map(0..4).unwrap();
    assert_eq!(rd(&v, 2 * BS + 9), src.expected(2, 9));
    assert_eq!(src.count(2), 4, "three failures then success");
    assert_eq!(p.stats().load_retries, 3);
    assert_eq!(p.stats().load_failures, 0);
}

/// A transient error that outlasts the retries is permanent (seen through prefetch).
#[test]
fn persistent_transient_error_gives_up() {
    let p = pager_with(PagerConfig { max_retries: 2, retry_for: std::time::Duration::ZERO, ..PagerConfig::default() });
    let (src, f) = open(&p, 4);
    src.transient.lock().insert(1, 100);
    let _v = f.map(0..4).unwrap();
    let e = f.prefetch(1..2).unwrap_err();
    assert!(e.to_string().contains("connection reset"), "{e}");
    assert_eq!(src.count(1), 3);
    assert_eq!(p.stats().load_failures, 1);
}

/// A system call reading from a block that cannot be loaded fails with EFAULT (no zeros).
#[test]
fn permanent_error_fails_system_calls() {
    let p = pager(1 << 30);
    let (src, f) = open(&p, 4);
    src.permanent.lock().insert(1);
    let v = f.map(0..4).unwrap();
    let (n, errno, data) = write_from_view(&v, BS, 4096);
    assert_eq!(n, -1, "a failed block must not be readable");
    assert_eq!(errno, Some(libc::EFAULT));
    assert_eq!(data.len(), 0);
    // Once the source recovers, invalidate lets the block load.
    src.permanent.lock().clear();
    f.invalidate(&[1]).unwrap();
    assert_eq!(rd(&v, BS + 4), src.expected(1, 4));
}

fn run_child(which: &str) -> std::process::Output {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, which)
        .output()
        .unwrap()
}

/// A permanent error kills the faulting user-mode access with SIGBUS, after logging the cause.
#[test]
fn permanent_error_raises_sigbus() {
    for which in ["read", "write"] {
        let out = run_child(which);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.signal(), Some(libc::SIGBUS), "{which}: status {:?}\n{stdout}\n{stderr}", out.status);
        assert!(stdout.contains("CHILD READY"), "{stdout}");
        assert!(!stdout.contains("CHILD SAW"), "the access returned: {stdout}");
        assert!(stderr.contains("checksum mismatch"), "cause not logged: {stderr}");
    }
}

/// Entry point of the child process (does nothing in a normal test run).
#[test]
fn child_entry() {
    let Ok(which) = std::env::var(CHILD_ENV) else { return };
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let p = pager(1 << 30);
    let (src, f) = open(&p, 4);
    src.permanent.lock().insert(3);
    let v = f.map(0..4).unwrap();
    assert_eq!(rd(&v, 5), src.expected(0, 5));
    println!("CHILD READY");
    if which == "read" {
        let x = rd(&v, 3 * BS + 100);
        println!("CHILD SAW {x}");
    } else {
        wr(&v, 3 * BS + 100, 1);
        println!("CHILD SAW write");
    }
    std::process::exit(0);
}

/// A forked child does not inherit views (it would bypass the pager and fill the shared page
/// cache with zeros): its access is a SIGSEGV, and the parent still reads the source's data.
#[test]
fn forked_child_gets_no_view() {
    let p = pager(1 << 30);
    let (src, f) = open(&p, 4);
    let v = f.map(0..4).unwrap();
    assert_eq!(rd(&v, 7), src.expected(0, 7));
    let addr = v.as_ptr() as usize;
    // SAFETY: the child only performs one volatile read and then _exit (async-signal-safe).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: in the child; the address was a view in the parent.
        unsafe {
            let x = std::ptr::read_volatile((addr + 2 * BS) as *const u8);
            libc::_exit(i32::from(x) + 1);
        }
    }
    assert!(pid > 0);
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFSIGNALED(status), "child exited normally with {}", libc::WEXITSTATUS(status));
    assert_eq!(libc::WTERMSIG(status), libc::SIGSEGV);
    assert_eq!(rd(&v, 2 * BS + 5), src.expected(2, 5));
    assert_eq!(src.count(2), 1);
}

/// A forked child gets a pager of its own from `Pager::global` (the parent's userfaultfd serves
/// the parent's memory), which loads blocks; the parent's pager refuses it, saying why.
#[test]
fn a_forked_child_starts_its_own_global_pager() {
    let parent = Pager::global().unwrap();
    let (src, _f) = open(&parent, 4);
    // SAFETY: the child only uses the pager API and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = (|| {
            match parent.open_file(src.clone(), BS, 4 * BS as u64) {
                Err(outcore_pager::PagerError::OtherProcess { started_by }) if started_by != std::process::id() => {}
                _ => return 1,
            }
            let Ok(own) = Pager::global() else { return 2 };
            if std::sync::Arc::ptr_eq(&own, &parent) {
                return 3;
            }
            let Ok(f) = own.open_file(src.clone(), BS, 4 * BS as u64) else { return 4 };
            let Ok(v) = f.map(0..4) else { return 5 };
            if rd(&v, 2 * BS + 9) != src.expected(2, 9) {
                return 6;
            }
            0
        })();
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    assert!(pid > 0);
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "child died: {status:#x}");
    assert_eq!(libc::WEXITSTATUS(status), 0, "child's step that failed");
    assert!(std::sync::Arc::ptr_eq(&Pager::global().unwrap(), &parent), "the parent keeps its pager");
}

/// A failed load keeps the source's error, not its text: whether it was transient, and its
/// cause chain (where the layer above finds its own typed error, e.g. the store's `Corrupt`).
#[test]
fn load_errors_keep_the_source_error() {
    struct Failing(bool);
    impl outcore_pager::BlockSource for Failing {
        fn load(&self, blk: u64, _: &mut [u8]) -> Result<(), outcore_pager::SourceError> {
            let e = std::io::Error::other(format!("disk on fire at block {blk}"));
            let se = if self.0 {
                outcore_pager::SourceError::transient("busy")
            } else {
                outcore_pager::SourceError::permanent("unreadable")
            };
            Err(se.with_cause(e))
        }
    }
    let p = pager_with(PagerConfig { max_retries: 1, retry_for: std::time::Duration::ZERO, ..PagerConfig::default() });
    for transient in [false, true] {
        let f = p.open_file(std::sync::Arc::new(Failing(transient)), BS, 2 * BS as u64).unwrap();
        match f.prefetch(1..2) {
            Err(outcore_pager::PagerError::Load { blk: 1, error }) => {
                assert_eq!(error.is_transient(), transient);
                let cause = std::error::Error::source(&*error).expect("the cause");
                let io = cause.downcast_ref::<std::io::Error>().expect("the source's own error");
                assert_eq!(io.to_string(), "disk on fire at block 1");
            }
            other => panic!("expected a load error, got {other:?}"),
        }
    }
}
