//! Views: a block range of a file mapped into memory (either engine).

use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};

use crate::file::{FileHandle, FileKind};
use crate::mapping::Mapping;
use crate::readahead::Readahead;
use crate::uffd_file::FileInner;

/// The bytes a view of `blocks` spans and the file offset where it ends (both engines: a
/// view is at least one block, and its length fits a `usize`).
pub(crate) fn span(blocks: &std::ops::Range<u64>, blksize: u64) -> Result<(u64, u64), crate::PagerError> {
    let len = blocks
        .end
        .checked_sub(blocks.start)
        .filter(|n| *n > 0)
        .and_then(|n| n.checked_mul(blksize))
        .filter(|l| usize::try_from(*l).is_ok());
    match (len, blocks.end.checked_mul(blksize)) {
        (Some(len), Some(end)) => Ok((len, end)),
        _ => Err(crate::PagerError::InvalidArgument(format!("block range {blocks:?} is empty or too large"))),
    }
}

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
/// system calls). Views of the same file alias each other; a view keeps its file alive.
///
/// - Userfaultfd engine: a `MAP_SHARED` mapping of the file's memfd, unmapped on drop; reads
///   load blocks on first touch; writes are tracked at 4 KiB granularity.
/// - Page-cache engine: a sub-range of the file's one address reservation, where the blocks'
///   extents are mapped `MAP_PRIVATE`; the memory stays mapped until the file and all its views
///   are dropped.
#[derive(Debug)]
pub struct View {
    pub(crate) kind: ViewKind,
    pub(crate) file: FileHandle,
}

/// The engine-specific part of a view.
#[derive(Debug)]
pub(crate) enum ViewKind {
    Uffd {
        reg: Arc<ViewReg>,
        mapping: Option<Mapping>,
    },
    /// `_ahead`: reading ahead of a scan of the view, while it lives.
    Mapped {
        start: u64,
        len: u64,
        first_blk: u64,
        _ahead: Option<crate::mapped::Armed>,
    },
}

impl View {
    /// Start of the view. Valid for `len()` bytes while the view lives; may be read and written
    /// from any thread. Bytes of block `b` are at `as_ptr() + (b - first_block) * blksize`.
    pub fn as_ptr(&self) -> *mut u8 {
        match &self.kind {
            ViewKind::Uffd { reg, .. } => reg.start as *mut u8,
            ViewKind::Mapped { start, .. } => *start as *mut u8,
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        match &self.kind {
            ViewKind::Uffd { reg, .. } => reg.len as usize,
            ViewKind::Mapped { len, .. } => *len as usize,
        }
    }

    /// Whether the view is empty (never: views cover at least one block).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The block range mapped.
    pub fn blocks(&self) -> std::ops::Range<u64> {
        match &self.kind {
            ViewKind::Uffd { reg, .. } => reg.blocks(),
            ViewKind::Mapped { len, first_blk, .. } => *first_blk..*first_blk + *len / self.file.blksize() as u64,
        }
    }

    /// The file this view maps.
    pub fn file(&self) -> &FileHandle {
        &self.file
    }
}

impl Drop for View {
    fn drop(&mut self) {
        if let (ViewKind::Uffd { reg, mapping }, FileKind::Uffd(f)) = (&mut self.kind, &self.file.kind) {
            f.inner.detach_view(reg);
            // The mapping (and its uffd registration) goes away after its dirty pages were
            // recorded.
            drop(mapping.take());
        }
    }
}
