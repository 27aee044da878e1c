//! Signal reports: where only a signal can tell of a failure, a process-wide handler (installed
//! once per signal) writes one line naming its cause to stderr, then hands the signal on (to the
//! previous handler, or the default action: the process dies by the signal as it would have).
//!
//! - SIGBUS in a page-cache engine reservation: an I/O error on a mapped page, or a page beyond
//!   the end of its data file (the line names the file's label and the block).
//! - SIGSEGV in a view of the userfaultfd engine, in a forked child: those views are not
//!   inherited (`MADV_DONTFORK`: the child would read zeros past the pager), so the child's
//!   access faults; the line says so and what to do.
//!
//! The handler allocates nothing and takes no lock: reservations are registered in a fixed-size
//! table of atomics, and the line is assembled on the stack and written with `write(2)`.
//!
//! # References
//! `sigaction(2)` (`SA_SIGINFO`, `si_addr`), `signal-safety(7)`.

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};

const SLOTS: usize = 1024;
const LABEL: usize = 112;

/// A slot's state (`Slot::state`).
#[repr(u32)]
enum State {
    /// Unused.
    Free,
    /// Being filled by `put`.
    Busy,
    /// Registered: the handler reads it.
    Live,
}

/// What a slot covers.
const RESERVATION: u32 = 0;
const PARENT_ONLY_VIEW: u32 = 1;

struct Slot {
    state: AtomicU32,
    kind: AtomicU32,
    /// The process that registered it.
    pid: AtomicU32,
    start: AtomicU64,
    end: AtomicU64,
    blksize: AtomicU64,
    label_len: AtomicUsize,
    label: [AtomicU8; LABEL],
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    state: AtomicU32::new(State::Free as u32),
    kind: AtomicU32::new(RESERVATION),
    pid: AtomicU32::new(0),
    start: AtomicU64::new(0),
    end: AtomicU64::new(0),
    blksize: AtomicU64::new(1),
    label_len: AtomicUsize::new(0),
    label: [const { AtomicU8::new(0) }; LABEL],
};

static TABLE: [Slot; SLOTS] = [EMPTY; SLOTS];

/// The handler that was installed before ours.
struct Previous(libc::sigaction);
// SAFETY: a plain C struct of integers and function addresses, written once before the handler
// is installed and only read afterwards.
unsafe impl Sync for Previous {}
// SAFETY: as above.
unsafe impl Send for Previous {}

static PREVIOUS_BUS: OnceLock<Previous> = OnceLock::new();
static PREVIOUS_SEGV: OnceLock<Previous> = OnceLock::new();
static INSTALL_BUS: Once = Once::new();
static INSTALL_SEGV: Once = Once::new();

/// A registered reservation; unregistered on drop.
#[derive(Debug)]
pub(crate) struct Registration {
    slot: Option<usize>,
}

impl Registration {
    /// Updates the end of the registered range (after the reservation grew).
    pub fn set_end(&self, end: u64) {
        if let Some(i) = self.slot {
            TABLE[i].end.store(end, Ordering::Release);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            TABLE[i].state.store(State::Free as u32, Ordering::Release);
        }
    }
}

/// Registers `[start, end)` (blocks of `blksize`) under `label`, installing the handler on first
/// use. A full table (more than 1024 open files) means no report for this one.
pub(crate) fn register(start: u64, end: u64, blksize: u64, label: &str) -> Registration {
    INSTALL_BUS.call_once(|| install(libc::SIGBUS, &PREVIOUS_BUS));
    put(RESERVATION, start, end, blksize, label)
}

/// Registers `[start, end)`, a view that a forked child does not inherit: an access to it from
/// a child gets a line saying so before its SIGSEGV.
pub(crate) fn register_parent_only(start: u64, end: u64, label: &str) -> Registration {
    INSTALL_SEGV.call_once(|| install(libc::SIGSEGV, &PREVIOUS_SEGV));
    put(PARENT_ONLY_VIEW, start, end, 1, label)
}

fn put(kind: u32, start: u64, end: u64, blksize: u64, label: &str) -> Registration {
    for (i, s) in TABLE.iter().enumerate() {
        if s.state
            .compare_exchange(State::Free as u32, State::Busy as u32, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            s.kind.store(kind, Ordering::Relaxed);
            s.pid.store(std::process::id(), Ordering::Relaxed);
            s.start.store(start, Ordering::Relaxed);
            s.end.store(end, Ordering::Relaxed);
            s.blksize.store(blksize.max(1), Ordering::Relaxed);
            let bytes = label.as_bytes();
            let n = bytes.len().min(LABEL);
            for (d, b) in s.label.iter().zip(&bytes[..n]) {
                d.store(*b, Ordering::Relaxed);
            }
            s.label_len.store(n, Ordering::Relaxed);
            s.state.store(State::Live as u32, Ordering::Release);
            return Registration { slot: Some(i) };
        }
    }
    tracing::debug!("signal report table full; {label} gets no report");
    Registration { slot: None }
}

fn install(sig: libc::c_int, previous: &OnceLock<Previous>) {
    // SAFETY: reads the current disposition into a zeroed struct, then installs ours;
    // `handler` has the SA_SIGINFO signature.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
            return;
        }
        let _ = previous.set(Previous(old));
        let mut sa: libc::sigaction = std::mem::zeroed();
        let h: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = handler;
        sa.sa_sigaction = h as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, std::ptr::null_mut());
    }
}

/// A line assembled on the stack.
struct Line {
    buf: [u8; 320],
    n: usize,
}

impl Line {
    fn push(&mut self, b: u8) {
        if self.n < self.buf.len() {
            self.buf[self.n] = b;
            self.n += 1;
        }
    }
    fn text(&mut self, s: &[u8]) {
        for b in s {
            self.push(*b);
        }
    }
    fn label(&mut self, s: &Slot) {
        let n = s.label_len.load(Ordering::Relaxed).min(LABEL);
        for c in &s.label[..n] {
            self.push(c.load(Ordering::Relaxed));
        }
    }
    fn dec(&mut self, mut v: u64) {
        let mut d = [0u8; 20];
        let mut i = d.len();
        loop {
            i -= 1;
            d[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.text(&d[i..]);
    }
    fn hex(&mut self, v: u64) {
        self.text(b"0x");
        let mut started = false;
        for k in (0..16).rev() {
            let nib = ((v >> (k * 4)) & 0xf) as u8;
            if nib != 0 || started || k == 0 {
                started = true;
                self.push(if nib < 10 { b'0' + nib } else { b'a' + nib - 10 });
            }
        }
    }
}

/// The line for signal `sig` at `addr` in process `pid`, if it lies in a registered range of
/// the kind that signal reports.
fn report(sig: libc::c_int, addr: u64, pid: u32) -> Option<Line> {
    for s in &TABLE {
        if s.state.load(Ordering::Acquire) != State::Live as u32 {
            continue;
        }
        let (start, end) = (s.start.load(Ordering::Relaxed), s.end.load(Ordering::Acquire));
        if addr < start || addr >= end {
            continue;
        }
        let owner = s.pid.load(Ordering::Relaxed);
        let mut l = Line { buf: [0; 320], n: 0 };
        match (sig, s.kind.load(Ordering::Relaxed)) {
            (libc::SIGBUS, RESERVATION) => {
                l.text(b"outcore: SIGBUS reading ");
                l.label(s);
                l.text(b", block ");
                l.dec((addr - start) / s.blksize.load(Ordering::Relaxed));
                l.text(b" (address ");
                l.hex(addr);
                l.text(b"): an I/O error on its data file, or the data file is shorter than a mapped extent\n");
            }
            (libc::SIGSEGV, PARENT_ONLY_VIEW) if pid != owner => {
                l.text(b"outcore: SIGSEGV reading ");
                l.label(s);
                l.text(b" (address ");
                l.hex(addr);
                l.text(b") in a forked child: it belongs to process ");
                l.dec(owner.into());
                l.text(b" and is not inherited across fork(); open the database again in the child\n");
            }
            _ => return None,
        }
        return Some(l);
    }
    None
}

extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as u64;
    // SAFETY: getpid(2) is async-signal-safe.
    let pid = unsafe { libc::getpid() } as u32;
    if let Some(l) = report(sig, addr, pid) {
        // SAFETY: write(2) is async-signal-safe; the buffer lives on this stack.
        unsafe { libc::write(2, l.buf.as_ptr().cast(), l.n) };
    }
    // SAFETY: chains to the previous disposition, read once before ours was installed: its
    // handler is called with the arguments we got; otherwise the default action is restored and
    // the signal raised again (it is blocked in this handler, so it is delivered on return and
    // ends the process as it would have without us). sigaction and raise are async-signal-safe.
    unsafe {
        let previous = if sig == libc::SIGSEGV { &PREVIOUS_SEGV } else { &PREVIOUS_BUS };
        if let Some(Previous(p)) = previous.get() {
            let h = p.sa_sigaction;
            if h != libc::SIG_DFL && h != libc::SIG_IGN {
                if p.sa_flags & libc::SA_SIGINFO != 0 {
                    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = std::mem::transmute(h);
                    f(sig, info, ctx);
                } else {
                    let f: extern "C" fn(libc::c_int) = std::mem::transmute(h);
                    f(sig);
                }
                return;
            }
        }
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, std::ptr::null_mut());
        libc::raise(sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_names_label_and_block() {
        let me = std::process::id();
        let r = register(0x4000_0000, 0x4080_0000, 2 << 20, "array 'x'");
        let l = report(libc::SIGBUS, 0x4000_0000 + 3 * (2 << 20) + 5, me).expect("in range");
        let s = std::str::from_utf8(&l.buf[..l.n]).unwrap();
        assert!(s.starts_with("outcore: SIGBUS reading array 'x', block 3 (address 0x40600005)"), "{s}");
        assert!(report(libc::SIGBUS, 0x4080_0000, me).is_none());
        assert!(report(libc::SIGSEGV, 0x4000_0000, me).is_none(), "SIGSEGV is not reported for reservations");
        drop(r);
        assert!(report(libc::SIGBUS, 0x4000_0000, me).is_none());
    }

    #[test]
    fn segv_in_a_parent_only_view_is_reported_in_children_only() {
        let me = std::process::id();
        let r = register_parent_only(0x5000_0000, 0x5010_0000, "a view");
        assert!(report(libc::SIGSEGV, 0x5000_1000, me).is_none(), "the owner's own faults are not ours");
        let l = report(libc::SIGSEGV, 0x5000_1000, me + 1).expect("in a child");
        let s = std::str::from_utf8(&l.buf[..l.n]).unwrap();
        assert!(
            s.contains("forked child") && s.contains(&me.to_string()) && s.contains("open the database again"),
            "{s}"
        );
        assert!(report(libc::SIGBUS, 0x5000_1000, me + 1).is_none());
        drop(r);
    }
}
