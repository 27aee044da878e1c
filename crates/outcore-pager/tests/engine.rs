//! Engine choice and capability detection: without privileges, `userfaultfd(2)` and
//! `/dev/userfaultfd` are refused; the pager then runs in `USER_MODE_ONLY`, or, when that is not
//! allowed, fails with an error saying how to enable userfaultfd.

#![allow(unsafe_code)]

mod common;

use std::process::Command;

use common::*;
use outcore_pager::{EngineKind, Pager, PagerConfig, PagerError};

const CHILD_ENV: &str = "OUTCORE_PAGER_ENGINE_CHILD";

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn handles_are_send_and_sync() {
    assert_send_sync::<outcore_pager::View>();
    assert_send_sync::<outcore_pager::FileHandle>();
    assert_send_sync::<Pager>();
}

#[test]
fn unprivileged_process_gets_user_mode_only_or_an_actionable_error() {
    // Only meaningful as root (we drop to `nobody`) with unprivileged userfaultfd disabled.
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return;
    }
    let sysctl = std::fs::read_to_string("/proc/sys/vm/unprivileged_userfaultfd").unwrap_or_default();
    if sysctl.trim() != "0" {
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "engine_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("UNAVAILABLE OK"), "{stdout}\n{stderr}");
    assert!(stdout.contains("USER MODE ONLY OK"), "{stdout}\n{stderr}");
}

#[test]
fn engine_child() {
    if std::env::var(CHILD_ENV).is_err() {
        return;
    }
    // SAFETY: plain credential-changing syscalls in a single-purpose child process.
    unsafe {
        assert_eq!(libc::setgroups(0, std::ptr::null()), 0);
        assert_eq!(libc::setgid(65534), 0);
        assert_eq!(libc::setuid(65534), 0);
        libc::prctl(libc::PR_SET_DUMPABLE, 1);
    }
    let strict = PagerConfig { allow_user_mode_only: false, ..PagerConfig::default() };
    match Pager::new(strict) {
        Err(e @ PagerError::Unavailable { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("/dev/userfaultfd"), "{msg}");
            assert!(msg.contains("vm.unprivileged_userfaultfd=1"), "{msg}");
            println!("UNAVAILABLE OK: {msg}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let p = Pager::new(PagerConfig::default()).unwrap();
    assert_eq!(p.capabilities().engine, EngineKind::UserModeOnly);
    assert!(!p.capabilities().kernel_mode_faults);
    let (src, f) = open(&p, 4);
    let v = f.map(0..4).unwrap();
    assert_eq!(rd(&v, 2 * BS + 3), src.expected(2, 3));
    wr(&v, BS + 4096, 1);
    assert_eq!(dirty_list(&f), vec![(1, vec![1])]);
    println!("USER MODE ONLY OK: {}", p.capabilities().describe());
}

fn count_fds(pat: &str) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_string_lossy().contains(pat))
        .count()
}

fn threads() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines().find(|l| l.starts_with("Threads:")).unwrap()[8..].trim().parse().unwrap()
}

/// Dropping the last handle of a pager stops its threads and closes its descriptors; a pager
/// lives as long as any of its files or views.
#[test]
fn pagers_shut_down_cleanly() {
    let (uffds, memfds) = (count_fds("userfaultfd"), count_fds("outcore-"));
    for _ in 0..10 {
        let p = pager(1 << 30);
        let (src, f) = open(&p, 4);
        let v = f.map(0..4).unwrap();
        drop(p);
        drop(f);
        // The view keeps file and pager alive: still served.
        assert_eq!(rd(&v, BS + 1), src.expected(1, 1));
        assert!(threads() > 4);
        drop(v);
    }
    // The last handle may be dropped by a loader thread, which then exits on its own.
    assert!(eventually(|| count_fds("userfaultfd") == uffds));
    assert!(eventually(|| count_fds("outcore-") == memfds));
    assert!(eventually(|| threads() <= 3), "threads left: {}", threads());
}
