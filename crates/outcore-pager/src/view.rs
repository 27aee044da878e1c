//! Views: shared mappings of a block range of a file's page cache.

use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};

use crate::file::{FileHandle, FileInner};
use crate::mapping::Mapping;
use crate::readahead::Readahead;

/// What the fault thread needs to know about a view (owned by the registries).
#[derive(Debug)]
pub(crate) struct ViewReg {
    pub id: u64,
    pub start: u64,
    pub len: u64,
    pub first_blk: u64,
    pub blksize: u64,
    pub file: Weak<FileInner>,
    pub ra: Mutex<Readahead>,
    /// False once the view is being unmapped. Held (read) around every ioctl on the view's
    /// page tables from another thread, so that none hits an address range reused by a later
    /// mapping. Never held while acquiring another view's guard (parking_lot read locks are not
    /// recursive when a writer waits).
    pub alive: RwLock<bool>,
}

impl ViewReg {
    /// Address of block `blk` in this view, if the view covers it.
    pub fn block_addr(&self, blk: u64) -> Option<u64> {
        let n = self.len / self.blksize;
        (blk >= self.first_blk && blk < self.first_blk + n).then(|| self.start + (blk - self.first_blk) * self.blksize)
    }

    /// Block range covered.
    pub fn blocks(&self) -> std::ops::Range<u64> {
        self.first_blk..self.first_blk + self.len / self.blksize
    }
}

/// A mapping of blocks `[first, end)` of a file: plain memory to any code (pointers, slices,
/// system calls). Reads load blocks on first touch; writes are tracked at 4 KiB granularity.
/// Unmapped on drop; keeps its file alive. Views of the same file alias each other.
#[derive(Debug)]
pub struct View {
    pub(crate) reg: Arc<ViewReg>,
    pub(crate) mapping: Option<Mapping>,
    pub(crate) file: FileHandle,
}

impl View {
    /// Start of the view. Valid for `len()` bytes while the view lives; may be read and written
    /// from any thread. Bytes of block `b` are at `as_ptr() + (b - first_block) * blksize`.
    pub fn as_ptr(&self) -> *mut u8 {
        self.reg.start as *mut u8
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.reg.len as usize
    }

    /// Whether the view is empty (never: views cover at least one block).
    pub fn is_empty(&self) -> bool {
        self.reg.len == 0
    }

    /// The block range mapped.
    pub fn blocks(&self) -> std::ops::Range<u64> {
        self.reg.blocks()
    }

    /// The file this view maps.
    pub fn file(&self) -> &FileHandle {
        &self.file
    }
}

impl Drop for View {
    fn drop(&mut self) {
        self.file.inner.detach_view(&self.reg);
        // The mapping (and its uffd registration) goes away after its dirty pages were recorded.
        drop(self.mapping.take());
    }
}
