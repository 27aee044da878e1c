//! The fault engine: how faults on views reach the pager and how they are resolved.
//!
//! Behind a small trait so that a SIGSEGV + `mprotect` engine can be added for kernels without
//! userfaultfd. Today there is one engine, userfaultfd; [`Capabilities`] says how it was opened
//! and what the kernel grants.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::mapping::Pagemap;
use crate::sys;
use crate::uffd::{self, FaultMsg, Uffd, UffdOrigin};
use crate::PagerError;

/// Which fault engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineKind {
    /// `userfaultfd(2)`: kernel-mode accesses (`read(2)` into a view...) are served.
    Userfaultfd,
    /// `/dev/userfaultfd`: same as `Userfaultfd`.
    DevUserfaultfd,
    /// `userfaultfd(UFFD_USER_MODE_ONLY)`: kernel-mode accesses to memory not loaded yet fail
    /// with EFAULT; call `FileHandle::prefetch` before handing views to system calls.
    UserModeOnly,
}

/// What the running (or probed) engine can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The engine.
    pub engine: EngineKind,
    /// Raw `UFFD_FEATURE_*` bits the kernel grants.
    pub features: u64,
    /// Exact dirty pages without a fault per first write (`WP_ASYNC` + `PAGEMAP_SCAN`); when
    /// false, synchronous write-protect faults are used (slower first writes).
    pub async_dirty_tracking: bool,
    /// `UFFDIO_POISON`: failed loads raise SIGBUS in the faulting thread only.
    pub poison: bool,
    /// Kernel-mode accesses (system calls) to unloaded view memory are served.
    pub kernel_mode_faults: bool,
}

impl Capabilities {
    /// One-line human description (for `outcore doctor`).
    pub fn describe(&self) -> String {
        format!(
            "engine {:?}; dirty tracking {}; poison {}; system calls on unloaded memory {}",
            self.engine,
            if self.async_dirty_tracking { "WP_ASYNC+PAGEMAP_SCAN" } else { "synchronous WP faults" },
            if self.poison { "yes" } else { "no (tgkill SIGBUS)" },
            if self.kernel_mode_faults { "served" } else { "EFAULT (use prefetch)" },
        )
    }
}

/// A page fault delivered by the engine.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fault {
    pub addr: u64,
    /// A synchronous write-protect fault (only when async dirty tracking is off).
    pub wp: bool,
    pub ptid: u32,
}

/// The internal engine interface used by the pager. Addresses are of registered views.
pub(crate) trait FaultEngine: Send + Sync {
    /// Starts delivering faults for `[addr, addr+len)`.
    fn register(&self, addr: u64, len: u64) -> io::Result<()>;
    /// Maps the cached pages of the block `[addr, addr+len)` write-tracked, so that the access
    /// at `hint` proceeds; the waiting threads are woken by a separate `wake` (or at once if
    /// mapping fails, so that they fault again).
    fn resolve(&self, addr: u64, len: u64, hint: u64) -> io::Result<()>;
    /// Fills the page cache behind `[addr, addr+data.len())` with `data` and maps it
    /// write-tracked in that view, in one step (the block must not be cached yet). No wake.
    fn fill(&self, addr: u64, data: &[u8]) -> io::Result<()>;
    /// Wakes threads waiting on faults in the range (they retry their access).
    fn wake(&self, addr: u64, len: u64) -> io::Result<()>;
    /// Makes the access at `addr` by thread `ptid` fail with SIGBUS.
    fn fail(&self, addr: u64, len: u64, ptid: u32) -> io::Result<()>;
    /// Un-protects a range after a synchronous write fault (wakes).
    fn unprotect(&self, addr: u64, len: u64) -> io::Result<()>;
    /// Re-arms write tracking over a range (synchronous mode).
    fn protect(&self, addr: u64, len: u64) -> io::Result<()>;
    /// Blocks until faults arrive (appended to `out`) or `stop()` is called; false once stopped.
    fn wait_faults(&self, out: &mut Vec<Fault>) -> io::Result<bool>;
    /// Makes `wait_faults` return false.
    fn stop(&self);
}

const REQUIRED: [(u64, &str); 4] = [
    (sys::UFFD_FEATURE_MISSING_SHMEM, "MISSING_SHMEM"),
    (sys::UFFD_FEATURE_MINOR_SHMEM, "MINOR_SHMEM"),
    (sys::UFFD_FEATURE_PAGEFAULT_FLAG_WP, "PAGEFAULT_FLAG_WP"),
    (sys::UFFD_FEATURE_WP_HUGETLBFS_SHMEM, "WP_HUGETLBFS_SHMEM"),
];

/// The userfaultfd engine.
#[derive(Debug)]
pub(crate) struct UffdEngine {
    uffd: Uffd,
    stop_fd: OwnedFd,
    caps: Capabilities,
}

fn kind(origin: UffdOrigin) -> EngineKind {
    match origin {
        UffdOrigin::Syscall => EngineKind::Userfaultfd,
        UffdOrigin::DevNode => EngineKind::DevUserfaultfd,
        UffdOrigin::UserModeOnly => EngineKind::UserModeOnly,
    }
}

/// Opens a userfaultfd, checks features; returns the fd (features not yet enabled) and caps.
fn probe_inner(
    allow_user_mode_only: bool,
    force_user_mode_only: bool,
    force_sync_wp: bool,
) -> Result<(OwnedFd, Capabilities, u64), PagerError> {
    let (fd, origin) = if force_user_mode_only {
        uffd::open_origin(UffdOrigin::UserModeOnly)
            .map(|fd| (fd, UffdOrigin::UserModeOnly))
            .map_err(|e| PagerError::Unavailable { attempts: format!("userfaultfd(UFFD_USER_MODE_ONLY): {e}") })?
    } else {
        uffd::open_any(allow_user_mode_only).map_err(|errs| PagerError::Unavailable {
            attempts: errs.iter().map(|(o, e)| format!("{o:?}: {e}")).collect::<Vec<_>>().join("; "),
        })?
    };
    let granted = uffd::probe_features(&fd).map_err(|e| PagerError::io("UFFDIO_API (probe)", e))?;
    let missing: Vec<&str> = REQUIRED.iter().filter(|(b, _)| granted & b == 0).map(|(_, n)| *n).collect();
    if !missing.is_empty() {
        return Err(PagerError::Unsupported { missing: missing.join(", "), granted });
    }
    let pagemap_ok = Pagemap::open().map(|p| p.supported()).unwrap_or(false);
    let async_dirty = !force_sync_wp && pagemap_ok && granted & sys::UFFD_FEATURE_WP_ASYNC != 0;
    let mut want = REQUIRED.iter().fold(0, |a, (b, _)| a | b);
    want |= granted & (sys::UFFD_FEATURE_POISON | sys::UFFD_FEATURE_THREAD_ID);
    if async_dirty {
        want |= sys::UFFD_FEATURE_WP_ASYNC;
    }
    let caps = Capabilities {
        engine: kind(origin),
        features: granted,
        async_dirty_tracking: async_dirty,
        poison: granted & sys::UFFD_FEATURE_POISON != 0,
        kernel_mode_faults: origin != UffdOrigin::UserModeOnly,
    };
    // The probe consumed UFFDIO_API on `fd`: open a fresh one of the same origin.
    let fd = uffd::open_origin(origin).map_err(|e| PagerError::io("reopening userfaultfd", e))?;
    Ok((fd, caps, want))
}

/// Probes what this process would get, without starting a pager.
pub(crate) fn probe(allow_user_mode_only: bool) -> Result<Capabilities, PagerError> {
    probe_inner(allow_user_mode_only, false, false).map(|(_, c, _)| c)
}

impl UffdEngine {
    pub fn open(allow_umo: bool, force_umo: bool, force_sync_wp: bool) -> Result<Self, PagerError> {
        let (fd, caps, want) = probe_inner(allow_umo, force_umo, force_sync_wp)?;
        let uffd = Uffd::new(fd, want).map_err(|e| PagerError::io("UFFDIO_API", e))?;
        // SAFETY: eventfd with integer flags; the result is checked.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            return Err(PagerError::io("eventfd", io::Error::last_os_error()));
        }
        // SAFETY: fresh descriptor owned by nobody else.
        let stop_fd = unsafe { OwnedFd::from_raw_fd(efd) };
        Ok(Self { uffd, stop_fd, caps })
    }

    pub fn caps(&self) -> Capabilities {
        self.caps
    }
}

impl FaultEngine for UffdEngine {
    fn register(&self, addr: u64, len: u64) -> io::Result<()> {
        self.uffd.register(
            addr,
            len,
            sys::UFFDIO_REGISTER_MODE_MISSING | sys::UFFDIO_REGISTER_MODE_WP | sys::UFFDIO_REGISTER_MODE_MINOR,
        )
    }

    fn resolve(&self, addr: u64, len: u64, hint: u64) -> io::Result<()> {
        self.uffd.continue_block(addr, len, hint, true)
    }

    fn fill(&self, addr: u64, data: &[u8]) -> io::Result<()> {
        self.uffd.copy_wp(addr, data)
    }

    fn wake(&self, addr: u64, len: u64) -> io::Result<()> {
        self.uffd.wake(addr, len)
    }

    fn fail(&self, addr: u64, len: u64, ptid: u32) -> io::Result<()> {
        if self.caps.poison {
            match self.uffd.poison(addr, len) {
                // A page-table entry is there already (a write-protect marker left by a
                // discard): poisoning cannot take; the thread would fault again forever.
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                r => return r,
            }
        }
        // No UFFDIO_POISON (or it could not take): signal the faulting thread directly; the
        // signal ends its wait in the fault, then it is delivered.
        // SAFETY: sending a signal has no memory-safety preconditions.
        let r = unsafe {
            if ptid != 0 {
                libc::syscall(libc::SYS_tgkill, libc::getpid(), ptid as libc::c_long, libc::SIGBUS)
            } else {
                libc::kill(libc::getpid(), libc::SIGBUS) as libc::c_long
            }
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn unprotect(&self, addr: u64, len: u64) -> io::Result<()> {
        self.uffd.writeprotect(addr, len, false)
    }

    fn protect(&self, addr: u64, len: u64) -> io::Result<()> {
        self.uffd.writeprotect(addr, len, true)
    }

    fn wait_faults(&self, out: &mut Vec<Fault>) -> io::Result<bool> {
        let mut msgs: Vec<FaultMsg> = Vec::with_capacity(64);
        loop {
            let mut pfd = [
                libc::pollfd { fd: self.uffd.raw(), events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: self.stop_fd.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            ];
            // SAFETY: `pfd` is a valid array of two pollfd structures.
            let r = unsafe { libc::poll(pfd.as_mut_ptr(), 2, -1) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if pfd[1].revents != 0 {
                return Ok(false);
            }
            if pfd[0].revents & (libc::POLLERR | libc::POLLHUP) != 0 {
                return Err(io::Error::other("userfaultfd poll error"));
            }
            msgs.clear();
            self.uffd.read_faults(&mut msgs)?;
            if msgs.is_empty() {
                continue;
            }
            out.extend(msgs.iter().map(|m| Fault {
                addr: m.address,
                wp: m.flags & sys::UFFD_PAGEFAULT_FLAG_WP != 0,
                ptid: m.ptid,
            }));
            return Ok(true);
        }
    }

    fn stop(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a local u64 to an owned eventfd.
        unsafe {
            libc::write(self.stop_fd.as_raw_fd(), (&one as *const u64).cast(), 8);
        }
    }
}
