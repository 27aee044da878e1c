//! The page-cache engine's memory: one address reservation per file, extents mapped over it
//! `MAP_PRIVATE`, and copies out of it.
//!
//! # References
//! `mmap(2)` (`MAP_FIXED`, `MAP_FIXED_NOREPLACE`, `MAP_NORESERVE`), `madvise(2)`
//! (`MADV_DONTNEED`, `MADV_HUGEPAGE`, `MADV_NOHUGEPAGE`, `MADV_POPULATE_READ`),
//! `Documentation/admin-guide/mm/pagemap.rst`.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::PAGE;

/// Alignment of reservations: a PMD, so 2 MiB blocks can be mapped by 2 MiB folios.
const ALIGN: u64 = 2 << 20;

/// An address range owned by one file: anonymous `MAP_PRIVATE | MAP_NORESERVE` memory (reads
/// zeros) over which extents are mapped. Unmapped on drop.
///
/// No Rust reference ever points into it: views hand out raw pointers only, and the copies
/// below go through raw pointers, so replacing pages under them invalidates no borrow.
#[derive(Debug)]
pub(crate) struct Reservation {
    base: u64,
    len: AtomicU64,
}

/// `mmap` of `len` bytes at `addr` (0: where the kernel chooses), read/write,
/// `MAP_PRIVATE | MAP_NORESERVE | flags`, of `fd` at `file_off` (`-1` and 0 with
/// `MAP_ANONYMOUS`); returns the address.
///
/// # Safety
/// With `MAP_FIXED` in `flags`, `[addr, addr + len)` must be memory the caller owns, and no Rust
/// reference may point into it: its pages are replaced.
unsafe fn mmap_private(addr: u64, len: u64, flags: libc::c_int, fd: RawFd, file_off: u64) -> io::Result<u64> {
    // SAFETY: a new mapping; it replaces existing memory only with `MAP_FIXED`, over a range
    // the caller owns (see the contract above).
    let p = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            len as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_NORESERVE | flags,
            fd,
            file_off as libc::off_t,
        )
    };
    if p == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(p as u64)
    }
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Reservation {
    /// Reserves `len` bytes (a multiple of the page size), aligned to 2 MiB.
    pub fn new(len: u64) -> io::Result<Self> {
        let total = len.checked_add(ALIGN).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a fresh anonymous mapping at an address the kernel chooses (no `MAP_FIXED`);
        // no existing memory is touched.
        let raw = unsafe { mmap_private(0, total, libc::MAP_ANONYMOUS, -1, 0) }?;
        let p = raw as *mut libc::c_void;
        let base = raw.next_multiple_of(ALIGN);
        // SAFETY: the head and tail trimmed lie inside the mapping just created, which nothing
        // else knows of yet.
        unsafe {
            if base > raw {
                libc::munmap(p, (base - raw) as usize);
            }
            let tail = raw + total - (base + len);
            if tail > 0 {
                libc::munmap((base + len) as *mut libc::c_void, tail as usize);
            }
        }
        let r = Self { base, len: AtomicU64::new(len) };
        // Holes stay 4 KiB pages: a transparent huge page would make one written byte a 2 MiB
        // private page (reported written as a whole), and a huge zero page is not reported as
        // `PFNZERO`. Extents out of file order get `MADV_HUGEPAGE` when they are mapped.
        r.advise(0, len, libc::MADV_NOHUGEPAGE);
        Ok(r)
    }

    /// Start address.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Bytes reserved.
    pub fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    fn check_range(&self, off: u64, len: u64) -> io::Result<()> {
        match off.checked_add(len) {
            Some(end) if end <= self.len() && off % PAGE as u64 == 0 && len % PAGE as u64 == 0 => Ok(()),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("range {off:#x}+{len:#x} outside a reservation of {:#x} bytes", self.len()),
            )),
        }
    }

    /// Extends the reservation in place to `new_len` bytes (the addresses after it must be
    /// free: `MAP_FIXED_NOREPLACE`). The caller serializes calls.
    pub fn extend(&self, new_len: u64) -> io::Result<()> {
        let old = self.len();
        if new_len <= old {
            return Ok(());
        }
        let want = self.base + old;
        let add = new_len - old;
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping: it fails (or, on kernels
        // without it, places the mapping elsewhere, which is undone below).
        let p = unsafe { mmap_private(want, add, libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE, -1, 0) }?;
        if p != want {
            // SAFETY: unmaps the mapping just created elsewhere, which nothing else knows of.
            unsafe { libc::munmap(p as *mut libc::c_void, add as usize) };
            return Err(io::Error::from(io::ErrorKind::AddrInUse));
        }
        self.len.store(new_len, Ordering::Release);
        self.advise(old, add, libc::MADV_NOHUGEPAGE);
        Ok(())
    }

    /// Maps `len` bytes of `fd` at `file_off` over `[off, off+len)` of the reservation,
    /// `MAP_PRIVATE` read/write: the bytes the data file holds, with private copy-on-write pages
    /// for writes. With `huge`, then `MADV_HUGEPAGE` (2 MiB folios whatever the file order);
    /// without, the mapping keeps the kernel's default policy (as `numpy.memmap`'s), whose
    /// readahead also grows to 2 MiB folios on sequential access.
    pub fn map_file(&self, off: u64, len: u64, fd: RawFd, file_off: u64, huge: bool) -> io::Result<()> {
        self.map_fixed(off, len, 0, fd, file_off)?;
        if huge {
            self.advise(off, len, libc::MADV_HUGEPAGE);
        }
        Ok(())
    }

    /// Maps fresh anonymous memory (zeros) over `[off, off+len)`, dropping what was there.
    pub fn map_anon(&self, off: u64, len: u64) -> io::Result<()> {
        self.map_fixed(off, len, libc::MAP_ANONYMOUS, -1, 0)?;
        self.advise(off, len, libc::MADV_NOHUGEPAGE);
        Ok(())
    }

    /// Maps over `[off, off+len)` of the reservation (`MAP_FIXED | flags`, of `fd` at
    /// `file_off`).
    fn map_fixed(&self, off: u64, len: u64, flags: libc::c_int, fd: RawFd, file_off: u64) -> io::Result<()> {
        self.check_range(off, len)?;
        // SAFETY: the range lies inside this reservation (checked above), which this value owns;
        // MAP_FIXED replaces only its own pages there, and no Rust reference points into it.
        unsafe { mmap_private(self.base + off, len, libc::MAP_FIXED | flags, fd, file_off) }?;
        Ok(())
    }

    /// Best-effort advice (huge page policy): failures are ignored.
    fn advise(&self, off: u64, len: u64, advice: libc::c_int) {
        // SAFETY: the range lies inside this reservation; these advices change only the page
        // size policy of the range, never its content.
        unsafe { libc::madvise((self.base + off) as *mut libc::c_void, len as usize, advice) };
    }

    /// `MADV_DONTNEED` on `[off, off+len)`: private pages are dropped; the range shows the data
    /// file's bytes again (zeros where anonymous).
    pub fn dontneed(&self, off: u64, len: u64) -> io::Result<()> {
        self.check_range(off, len)?;
        // SAFETY: inside this reservation, which this value owns; the range stays mapped and only
        // loses its private pages (the intended revert); no Rust reference points into it.
        check(unsafe { libc::madvise((self.base + off) as *mut libc::c_void, len as usize, libc::MADV_DONTNEED) })
    }

    /// Reads `[off, off+len)` in (`MADV_POPULATE_READ`; `MADV_WILLNEED` where unsupported).
    pub fn populate(&self, off: u64, len: u64) -> io::Result<()> {
        match self.populate_read(off, len) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                // SAFETY: inside this reservation (checked by `populate_read`); WILLNEED only
                // starts readahead.
                check(unsafe {
                    libc::madvise((self.base + off) as *mut libc::c_void, len as usize, libc::MADV_WILLNEED)
                })
            }
            r => r,
        }
    }

    /// Maps `[off, off+len)` for reading as a read of every page would (`MADV_POPULATE_READ`,
    /// Linux 5.14; `EINVAL` before). A page that cannot be read (beyond the end of its file)
    /// fails the call with `EFAULT` instead of raising SIGBUS.
    pub fn populate_read(&self, off: u64, len: u64) -> io::Result<()> {
        self.check_range(off, len)?;
        let addr = (self.base + off) as *mut libc::c_void;
        // SAFETY: inside this reservation; populating reads pages in, it never changes content.
        check(unsafe { libc::madvise(addr, len as usize, libc::MADV_POPULATE_READ) })
    }

    /// Copies `[off, off+buf.len())` of the reservation into `buf`.
    pub fn copy_out(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        let len = buf.len() as u64;
        match off.checked_add(len) {
            Some(end) if end <= self.len() => {}
            _ => return Err(io::Error::from(io::ErrorKind::InvalidInput)),
        }
        // SAFETY: the source lies inside the reservation (checked), which stays mapped while
        // `self` lives (every page of it is mapped: anonymous or file); `buf` is a distinct
        // Rust buffer. Other threads may write the source meanwhile (plain shared memory, as
        // with `read(2)` from it); the copy sees each byte either before or after.
        unsafe { std::ptr::copy_nonoverlapping((self.base + off) as *const u8, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies `data` into `[off, off+data.len())` of the reservation (the pages written become
    /// private copies, as any write to them).
    pub fn copy_in(&self, off: u64, data: &[u8]) -> io::Result<()> {
        match off.checked_add(data.len() as u64) {
            Some(end) if end <= self.len() => {}
            _ => return Err(io::Error::from(io::ErrorKind::InvalidInput)),
        }
        // SAFETY: the destination lies inside the reservation (checked), mapped read/write
        // while `self` lives; `data` is a distinct Rust buffer. Views may read or write the same
        // bytes meanwhile (plain shared memory, as with `write(2)` into it): no reference to
        // them is formed.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), (self.base + off) as *mut u8, data.len()) };
        Ok(())
    }

    /// Writes zeros over `[off, off+len)`, skipping the 4 KiB pages whose bytes there already are
    /// zeros (so they do not become private pages).
    pub fn zero(&self, off: u64, len: u64) -> io::Result<()> {
        match off.checked_add(len) {
            Some(end) if end <= self.len() => {}
            _ => return Err(io::Error::from(io::ErrorKind::InvalidInput)),
        }
        let mut a = off;
        let end = off + len;
        let mut probe = [0u8; PAGE];
        while a < end {
            let e = ((a / PAGE as u64) + 1) * PAGE as u64;
            let e = e.min(end);
            let n = (e - a) as usize;
            self.copy_out(a, &mut probe[..n])?;
            if probe[..n].iter().any(|b| *b != 0) {
                // SAFETY: inside the reservation (checked above), which stays mapped read/write
                // while `self` lives; the pages written become private copies (the data file is
                // never written: MAP_PRIVATE).
                unsafe { std::ptr::write_bytes((self.base + a) as *mut u8, 0, n) };
            }
            a = e;
        }
        Ok(())
    }
}

#[cfg(test)]
impl Reservation {
    /// Writes `byte` over `[off, off+len)` (tests).
    pub fn fill(&self, off: u64, len: u64, byte: u8) {
        assert!(off + len <= self.len());
        // SAFETY: inside the reservation (asserted), mapped read/write while `self` lives.
        unsafe { std::ptr::write_bytes((self.base + off) as *mut u8, byte, len as usize) };
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the range this value owns; its views are gone (they keep the
        // file, which owns this value, alive).
        unsafe {
            libc::munmap(self.base as *mut libc::c_void, self.len() as usize);
        }
    }
}
