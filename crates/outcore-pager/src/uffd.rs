//! The userfaultfd owner: opening (three ways), feature negotiation and the range ioctls.
//!
//! # References
//! `userfaultfd(2)`, `ioctl_userfaultfd(2)`, `Documentation/admin-guide/mm/userfaultfd.rst`.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::sys;

/// How the userfaultfd was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UffdOrigin {
    /// `userfaultfd(2)` with kernel-mode faults handled.
    Syscall,
    /// `/dev/userfaultfd` + `USERFAULTFD_IOC_NEW`, kernel-mode faults handled.
    DevNode,
    /// `userfaultfd(UFFD_USER_MODE_ONLY)`: kernel-mode accesses to unloaded memory get EFAULT.
    UserModeOnly,
}

/// One page-fault message.
#[derive(Debug, Clone, Copy)]
pub struct FaultMsg {
    pub address: u64,
    pub flags: u64,
    pub ptid: u32,
}

/// An owned userfaultfd.
#[derive(Debug)]
pub struct Uffd {
    fd: OwnedFd,
}

fn open_raw(user_mode_only: bool) -> io::Result<OwnedFd> {
    let mut flags = libc::O_CLOEXEC | libc::O_NONBLOCK;
    if user_mode_only {
        flags |= sys::UFFD_USER_MODE_ONLY;
    }
    // SAFETY: plain syscall with integer flags; the result is checked.
    let fd = unsafe { libc::syscall(sys::SYS_USERFAULTFD, flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn open_dev() -> io::Result<OwnedFd> {
    let dev = std::fs::OpenOptions::new().read(true).write(true).open("/dev/userfaultfd")?;
    // SAFETY: USERFAULTFD_IOC_NEW takes the new fd's flags as an integer argument.
    let fd = unsafe { libc::ioctl(dev.as_raw_fd(), sys::USERFAULTFD_IOC_NEW as _, libc::O_CLOEXEC | libc::O_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens a userfaultfd the first way that works; returns the attempts' errors if none does.
pub fn open_any(allow_user_mode_only: bool) -> Result<(OwnedFd, UffdOrigin), Vec<(UffdOrigin, io::Error)>> {
    let mut errs = Vec::new();
    match open_raw(false) {
        Ok(fd) => return Ok((fd, UffdOrigin::Syscall)),
        Err(e) => errs.push((UffdOrigin::Syscall, e)),
    }
    match open_dev() {
        Ok(fd) => return Ok((fd, UffdOrigin::DevNode)),
        Err(e) => errs.push((UffdOrigin::DevNode, e)),
    }
    if allow_user_mode_only {
        match open_raw(true) {
            Ok(fd) => return Ok((fd, UffdOrigin::UserModeOnly)),
            Err(e) => errs.push((UffdOrigin::UserModeOnly, e)),
        }
    }
    Err(errs)
}

/// Opens a fresh fd of the given origin (used to probe features, which can be asked only once).
pub fn open_origin(origin: UffdOrigin) -> io::Result<OwnedFd> {
    match origin {
        UffdOrigin::Syscall => open_raw(false),
        UffdOrigin::DevNode => open_dev(),
        UffdOrigin::UserModeOnly => open_raw(true),
    }
}

fn ioctl<T>(fd: RawFd, req: u64, arg: &mut T) -> io::Result<()> {
    // SAFETY: every caller passes the `#[repr(C)]` structure the request number encodes (see
    // sys.rs), which the kernel reads and writes only within its size.
    let r = unsafe { libc::ioctl(fd, req as _, arg as *mut T) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Asks the kernel which features an fd would grant (`features = 0` returns all supported).
pub fn probe_features(fd: &OwnedFd) -> io::Result<u64> {
    let mut api = sys::UffdioApi { api: sys::UFFD_API, features: 0, ioctls: 0 };
    ioctl(fd.as_raw_fd(), sys::UFFDIO_API, &mut api)?;
    Ok(api.features)
}

impl Uffd {
    /// Enables `features` on a fresh fd (UFFDIO_API can be called once per fd).
    pub fn new(fd: OwnedFd, features: u64) -> io::Result<Self> {
        let mut api = sys::UffdioApi { api: sys::UFFD_API, features, ioctls: 0 };
        ioctl(fd.as_raw_fd(), sys::UFFDIO_API, &mut api)?;
        Ok(Self { fd })
    }

    /// The raw descriptor (for poll).
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Registers `[start, start+len)` with the given `UFFDIO_REGISTER_MODE_*` bits.
    pub fn register(&self, start: u64, len: u64, mode: u64) -> io::Result<()> {
        let mut reg = sys::UffdioRegister { range: sys::UffdioRange { start, len }, mode, ioctls: 0 };
        ioctl(self.raw(), sys::UFFDIO_REGISTER, &mut reg)
    }

    /// Wakes threads blocked on faults in the range.
    pub fn wake(&self, start: u64, len: u64) -> io::Result<()> {
        let mut r = sys::UffdioRange { start, len };
        ioctl(self.raw(), sys::UFFDIO_WAKE, &mut r)
    }

    /// `UFFDIO_CONTINUE` over `[start, start+len)`: maps the page-cache pages, write-protected
    /// when `wp`. Pages already mapped are skipped (EEXIST). Does not wake.
    fn continue_span(&self, start: u64, len: u64, mode: u64) -> io::Result<()> {
        let mut off = 0u64;
        let mut spins = 0u32;
        while off < len {
            let mut c =
                sys::UffdioContinue { range: sys::UffdioRange { start: start + off, len: len - off }, mode, mapped: 0 };
            match ioctl(self.raw(), sys::UFFDIO_CONTINUE, &mut c) {
                Ok(()) => off = len,
                Err(e) => {
                    let mapped = if c.mapped > 0 { c.mapped as u64 } else { 0 };
                    match e.raw_os_error() {
                        Some(libc::EEXIST) => off += mapped + crate::PAGE as u64,
                        Some(libc::EAGAIN) if spins < 1000 => {
                            spins += 1;
                            off += mapped;
                        }
                        _ => return Err(e),
                    }
                }
            }
        }
        Ok(())
    }

    /// Maps the block `[start, start+len)` (page-cache pages, write-protected when `wp`) so that
    /// the access at `hint` can proceed: from the hint's page to the end, then the beginning.
    /// If the hint's page is already mapped, the block is taken as mapped (the pager maps whole
    /// blocks) and nothing is done. Does not wake, except on failure (the threads then fault
    /// again).
    pub fn continue_block(&self, start: u64, len: u64, hint: u64, wp: bool) -> io::Result<()> {
        let mut mode = sys::UFFDIO_CONTINUE_MODE_DONTWAKE;
        if wp {
            mode |= sys::UFFDIO_CONTINUE_MODE_WP;
        }
        let page = (hint & !(crate::PAGE as u64 - 1)).clamp(start, start + len - crate::PAGE as u64);
        let mut first =
            sys::UffdioContinue { range: sys::UffdioRange { start: page, len: start + len - page }, mode, mapped: 0 };
        let r = match ioctl(self.raw(), sys::UFFDIO_CONTINUE, &mut first) {
            Ok(()) => self.continue_span(start, page - start, mode),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && first.mapped <= 0 => return Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST | libc::EAGAIN)) => {
                let done = first.mapped.max(0) as u64;
                self.continue_span(page + done, start + len - page - done, mode)
                    .and_then(|()| self.continue_span(start, page - start, mode))
            }
            Err(e) => Err(e),
        };
        if r.is_err() {
            let _ = self.wake(start, len);
        }
        r
    }

    /// `UFFDIO_COPY(MODE_WP)` of `src` to `dst` (allocating the page-cache pages of a shared
    /// mapping), without waking. Fails if any page of the range is already cached.
    pub fn copy_wp(&self, dst: u64, src: &[u8]) -> io::Result<()> {
        let mut c = sys::UffdioCopy {
            dst,
            src: src.as_ptr() as u64,
            len: src.len() as u64,
            mode: sys::UFFDIO_COPY_MODE_WP | sys::UFFDIO_COPY_MODE_DONTWAKE,
            copy: 0,
        };
        // The kernel only reads `src.len()` bytes from `src`, which outlives the call.
        ioctl(self.raw(), sys::UFFDIO_COPY, &mut c)?;
        if c.copy != src.len() as i64 {
            return Err(io::Error::other(format!("UFFDIO_COPY copied {} of {} bytes", c.copy, src.len())));
        }
        Ok(())
    }

    /// `UFFDIO_WRITEPROTECT`: arms (`wp`) or disarms write protection over the range.
    pub fn writeprotect(&self, start: u64, len: u64, wp: bool) -> io::Result<()> {
        let mode = if wp { sys::UFFDIO_WRITEPROTECT_MODE_WP } else { 0 };
        let mut w = sys::UffdioWriteprotect { range: sys::UffdioRange { start, len }, mode };
        ioctl(self.raw(), sys::UFFDIO_WRITEPROTECT, &mut w)
    }

    /// `UFFDIO_POISON`: accesses to the range raise SIGBUS. Wakes the range. `EEXIST` when a
    /// page-table entry is already there: nothing is woken, and the caller must fail the access
    /// another way.
    pub fn poison(&self, start: u64, len: u64) -> io::Result<()> {
        let mut p = sys::UffdioPoison { range: sys::UffdioRange { start, len }, mode: 0, updated: 0 };
        ioctl(self.raw(), sys::UFFDIO_POISON, &mut p)
    }

    /// Reads pending messages into `out` (non-blocking); returns how many page faults were read.
    pub fn read_faults(&self, out: &mut Vec<FaultMsg>) -> io::Result<usize> {
        let mut buf = [sys::UffdMsg::default(); 64];
        // SAFETY: `buf` is a writable array of `uffd_msg`; the kernel writes whole messages.
        let n = unsafe { libc::read(self.raw(), buf.as_mut_ptr().cast(), std::mem::size_of_val(&buf)) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EAGAIN) {
                return Ok(0);
            }
            return Err(e);
        }
        let count = n as usize / std::mem::size_of::<sys::UffdMsg>();
        let mut faults = 0;
        for m in &buf[..count] {
            if m.event == sys::UFFD_EVENT_PAGEFAULT {
                out.push(FaultMsg { address: m.pf_address, flags: m.pf_flags, ptid: m.pf_ptid });
                faults += 1;
            }
        }
        Ok(faults)
    }
}
