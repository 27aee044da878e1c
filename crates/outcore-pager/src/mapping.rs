//! Shared mappings of a memfd and `PAGEMAP_SCAN` over them.
//!
//! # References
//! `mmap(2)`, `madvise(2)`, `Documentation/admin-guide/mm/pagemap.rst` (`PAGEMAP_SCAN`).

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use crate::sys;

/// An owned `MAP_SHARED` mapping, unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    addr: *mut u8,
    len: usize,
    /// A forked child's access is reported before its SIGSEGV.
    _report: crate::mapped::sigbus::Registration,
}

// SAFETY: the mapping is plain memory owned by this value; nothing is thread-affine.
unsafe impl Send for Mapping {}
// SAFETY: shared access only hands out the address; accesses through it are the user's affair.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` at `offset`, read-write, shared, without reserving swap.
    pub fn shared(fd: RawFd, offset: u64, len: usize) -> io::Result<Self> {
        // SAFETY: a fresh mapping at an address the kernel chooses; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_NORESERVE,
                fd,
                offset as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let report = crate::mapped::sigbus::register_parent_only(
            p as u64,
            p as u64 + len as u64,
            "a view of a compressed or remote array (userfaultfd engine)",
        );
        let m = Self { addr: p.cast(), len, _report: report };
        // A forked child would inherit the mapping without the userfaultfd registration: its
        // accesses would fill the shared page cache with zeros behind the pager's back. Children
        // get no mapping instead (an access is a SIGSEGV, never wrong data, reported first).
        // SAFETY: advice on the mapping just created, owned by `m`.
        if unsafe { libc::madvise(p, len, libc::MADV_DONTFORK) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(m)
    }

    /// Start address.
    pub fn addr(&self) -> *mut u8 {
        self.addr
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping this value owns.
        unsafe {
            libc::munmap(self.addr.cast(), self.len);
        }
    }
}

/// `/proc/self/pagemap`, for `PAGEMAP_SCAN`.
#[derive(Debug)]
pub struct Pagemap {
    file: std::fs::File,
}

/// One scan result: a run of pages with the same categories.
#[derive(Debug, Clone, Copy)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub categories: u64,
}

/// What a `PAGEMAP_SCAN` looks for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scan {
    /// `PM_SCAN_*` flags.
    pub flags: u64,
    /// Categories a page must all have.
    pub all_of: u64,
    /// Categories a page must have none of (`category_inverted`, also added to the mask).
    pub none_of: u64,
    /// Categories a page must have one of (0: no condition).
    pub any_of: u64,
    /// Categories reported.
    pub report: u64,
}

impl Pagemap {
    /// Opens `/proc/self/pagemap`.
    pub fn open() -> io::Result<Self> {
        Ok(Self { file: std::fs::File::open("/proc/self/pagemap")? })
    }

    /// Runs `PAGEMAP_SCAN` over `[start, end)`, calling `f` for every region matching `spec`.
    ///
    /// When the output vector fills, the kernel's `walk_end` can be stale (it made a 1 GiB scan
    /// report the same regions twice), so the walk resumes at the larger of `walk_end` and the
    /// end of the last region, and stops as soon as a call returns fewer regions than fit.
    pub fn scan(&self, start: u64, end: u64, spec: Scan, mut f: impl FnMut(Region)) -> io::Result<()> {
        let mut vec = [sys::PageRegion::default(); 256];
        let mut cur = start;
        while cur < end {
            let mut arg = sys::PmScanArg {
                size: std::mem::size_of::<sys::PmScanArg>() as u64,
                flags: spec.flags,
                start: cur,
                end,
                walk_end: 0,
                vec: vec.as_mut_ptr() as u64,
                vec_len: vec.len() as u64,
                max_pages: 0,
                category_inverted: spec.none_of,
                category_mask: spec.all_of | spec.none_of,
                category_anyof_mask: spec.any_of,
                return_mask: spec.report,
            };
            // SAFETY: `arg` is a valid `pm_scan_arg`; `vec` points to `vec_len` writable regions
            // that outlive the call.
            let n = unsafe { libc::ioctl(self.file.as_raw_fd(), sys::PAGEMAP_SCAN as _, &mut arg) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let n = n as usize;
            for r in &vec[..n] {
                f(Region { start: r.start, end: r.end, categories: r.categories });
            }
            if n < vec.len() {
                break;
            }
            let next = arg.walk_end.max(vec[n - 1].end);
            if next <= cur {
                break;
            }
            cur = next;
        }
        Ok(())
    }

    /// Whether `PAGEMAP_SCAN` is supported by this kernel.
    pub fn supported(&self) -> bool {
        let page = [0u8; 1];
        let a = page.as_ptr() as u64 & !(crate::PAGE as u64 - 1);
        let spec = Scan { report: sys::PAGE_IS_PRESENT, ..Scan::default() };
        self.scan(a, a + crate::PAGE as u64, spec, |_| {}).is_ok()
    }
}

/// `MADV_DONTNEED` over `[addr, addr+len)`, which must lie inside the live mapping
/// `[map_start, map_start+map_len)`; a range outside is refused.
pub fn zap_raw(addr: u64, len: u64, map_start: u64, map_len: u64) -> io::Result<()> {
    if addr < map_start || addr + len > map_start + map_len {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: the range lies inside a shared mapping of a memfd that the caller's view still
    // owns (views unregister before unmapping); MADV_DONTNEED on it only drops page-table
    // entries, the data stays in the memfd.
    let r = unsafe { libc::madvise(addr as *mut libc::c_void, len as usize, libc::MADV_DONTNEED) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
