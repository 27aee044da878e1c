//! The per-file page cache: a sparse memfd.
//!
//! # References
//! `memfd_create(2)`, `fallocate(2)` (`FALLOC_FL_PUNCH_HOLE`), `pread(2)`, `pwrite(2)`.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An owned memfd used as the page cache of one file handle.
#[derive(Debug)]
pub struct Memfd {
    fd: OwnedFd,
}

impl Memfd {
    /// Creates an empty memfd named `name` (shown in `/proc/<pid>/maps`).
    pub fn create(name: &str) -> io::Result<Self> {
        let cname = std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `cname` is a valid NUL-terminated string for the duration of the call.
        let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh descriptor owned by nobody else.
        Ok(Self { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// The raw descriptor (for mmap).
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Sets the (sparse) length.
    pub fn set_len(&self, len: u64) -> io::Result<()> {
        // SAFETY: ftruncate on an owned fd.
        let r = unsafe { libc::ftruncate(self.raw(), len as libc::off_t) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Writes all of `buf` at `offset`.
    pub fn write_all_at(&self, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            // SAFETY: `buf` is a readable slice of the given length.
            let n = unsafe { libc::pwrite(self.raw(), buf.as_ptr().cast(), buf.len(), offset as libc::off_t) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::WriteZero));
            }
            buf = &buf[n as usize..];
            offset += n as u64;
        }
        Ok(())
    }

    /// Copies `buf.len()` bytes at page-aligned `offset` through a temporary read-only mapping:
    /// for resident data several times faster than `pread`, which looks up, locks and marks
    /// accessed every 4 KiB page of shmem on its own (the mapping is populated 64 KiB at a time
    /// by fault-around). Holes read as zeros.
    pub fn read_mapped(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        ReadMapping::new(self, offset, buf.len())?.copy_out(0, buf);
        Ok(())
    }

    /// Like [`read_mapped`](Self::read_mapped) for some `page`-sized pages only: copies each page
    /// `i` of `pages` from `offset + i * page` into `buf[i * page..]`; the rest of `buf` is left
    /// alone. The caller keeps every page within `buf` and the memfd's length.
    pub fn read_pages_mapped(&self, buf: &mut [u8], offset: u64, pages: &[u32], page: usize) -> io::Result<()> {
        if buf.is_empty() || pages.is_empty() {
            return Ok(());
        }
        if pages.iter().any(|p| (*p as usize + 1) * page > buf.len()) {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let m = ReadMapping::new(self, offset, buf.len())?;
        for &i in pages {
            let at = i as usize * page;
            m.copy_out(at, &mut buf[at..at + page]);
        }
        Ok(())
    }

    /// Frees the pages of `[offset, offset+len)` (the range then reads as a hole) and drops their
    /// page-table entries in every mapping.
    pub fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        // SAFETY: fallocate on an owned fd with integer arguments.
        let r = unsafe {
            libc::fallocate(
                self.raw(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset as libc::off_t,
                len as libc::off_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// A temporary read-only shared mapping of part of a memfd, unmapped on drop.
struct ReadMapping {
    ptr: *mut libc::c_void,
    len: usize,
}

impl ReadMapping {
    /// Maps `len` (> 0) bytes of `fd` at page-aligned `offset`. The caller keeps the range within
    /// the memfd's length (resident blocks), so every byte of the mapping is readable.
    fn new(fd: &Memfd, offset: u64, len: usize) -> io::Result<Self> {
        // SAFETY: a fresh read-only mapping at an address the kernel chooses; nothing else is
        // touched.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED | libc::MAP_NORESERVE,
                fd.raw(),
                offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { ptr, len })
    }

    /// Copies the mapped bytes at `at..at + dst.len()` into `dst`. (A raw copy, not a slice:
    /// views of the same memfd may be written meanwhile.)
    fn copy_out(&self, at: usize, dst: &mut [u8]) {
        assert!(at.checked_add(dst.len()).is_some_and(|end| end <= self.len), "copy beyond the mapping");
        // SAFETY: `ptr` maps `len` readable bytes while `self` lives and the range was checked
        // above; `dst` is a distinct writable slice.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.cast::<u8>().add(at), dst.as_mut_ptr(), dst.len()) };
    }
}

impl Drop for ReadMapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}
