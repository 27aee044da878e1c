//! `FileHandle`: one API over the two engines (userfaultfd over a memfd, or page-cache mappings
//! of extents).

use std::ops::Range;
use std::sync::Arc;

use crate::dirty::DirtyBlock;
use crate::mapped::MappedFile;
use crate::uffd_file::UffdFile;
use crate::view::{View, ViewKind};
use crate::PagerError;

/// Which engine a file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileEngine {
    /// Blocks are loaded on first touch into a memfd by userfaultfd ([`Pager::open_file`](crate::Pager::open_file)).
    Userfaultfd,
    /// Blocks' extents of data files are mapped `MAP_PRIVATE`; reads are kernel page-cache hits
    /// ([`Pager::open_mapped_file`](crate::Pager::open_mapped_file)).
    PageCache,
}

impl std::fmt::Display for FileEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileEngine::Userfaultfd => "userfaultfd",
            FileEngine::PageCache => "page cache",
        })
    }
}

/// The engine-specific file.
#[derive(Debug, Clone)]
pub(crate) enum FileKind {
    Uffd(UffdFile),
    Mapped(Arc<MappedFile>),
}

/// A file of fixed-size blocks mapped through the pager. Cheap to clone; lives while any clone
/// or [`View`] does. Two engines implement it (see [`FileEngine`] and the crate docs); the
/// methods mean the same for both unless said otherwise.
///
/// # Calling context
/// Every method may be called from any thread, concurrently with accesses to the views.
/// With the userfaultfd engine, `read_block` and `prefetch` wait for loads done by the pager's
/// loader threads, so they must not be called from [`BlockSource::load`](crate::BlockSource::load) (nor any method from a
/// thread the source blocks). The page-cache engine serializes the operations of one file with a
/// mutex and calls its [`ExtentSource`](crate::ExtentSource) with it held.
///
/// Commit protocol for the layer above: `dirty()`, then `read_pages` (or `read_block`) of each
/// dirty block, store the pages, then `mark_clean` of the committed blocks; abort is
/// `discard()`; after another transaction changed blocks, `invalidate` them.
#[derive(Debug, Clone)]
pub struct FileHandle {
    pub(crate) kind: FileKind,
}

impl From<UffdFile> for FileHandle {
    fn from(f: UffdFile) -> Self {
        Self { kind: FileKind::Uffd(f) }
    }
}

impl From<Arc<MappedFile>> for FileHandle {
    fn from(f: Arc<MappedFile>) -> Self {
        Self { kind: FileKind::Mapped(f) }
    }
}

impl FileHandle {
    /// Which engine this file uses.
    pub fn engine(&self) -> FileEngine {
        match &self.kind {
            FileKind::Uffd(_) => FileEngine::Userfaultfd,
            FileKind::Mapped(_) => FileEngine::PageCache,
        }
    }

    /// Block size in bytes.
    pub fn blksize(&self) -> usize {
        match &self.kind {
            FileKind::Uffd(f) => f.blksize(),
            FileKind::Mapped(f) => f.blksize as usize,
        }
    }

    /// Maps blocks `blocks` into a new view. The range may extend beyond the logical size (that
    /// part reads zeros).
    ///
    /// Userfaultfd: a new `MAP_SHARED` mapping of the memfd; nothing is loaded until the memory
    /// is touched. Page cache: the blocks' addresses in the file's reservation (nothing is
    /// mapped anew, so views alias, also in their written pages).
    pub fn map(&self, blocks: Range<u64>) -> Result<View, PagerError> {
        let kind = match &self.kind {
            FileKind::Uffd(f) => {
                let (reg, mapping) = f.map(blocks)?;
                ViewKind::Uffd { reg, mapping: Some(mapping) }
            }
            FileKind::Mapped(f) => {
                let (start, len) = f.map(blocks.clone())?;
                ViewKind::Mapped { start, len, first_blk: blocks.start, _ahead: f.watch_scans(start, len) }
            }
        };
        Ok(View { kind, file: self.clone() })
    }

    /// Logical size in bytes.
    pub fn size(&self) -> u64 {
        match &self.kind {
            FileKind::Uffd(f) => f.size(),
            FileKind::Mapped(f) => f.size(),
        }
    }

    /// Changes the logical size. Bytes at or beyond the size read as zeros (userfaultfd: or the
    /// file's [`FillPattern`](crate::FillPattern)) and never reach the source.
    ///
    /// Userfaultfd: shrinking drops the cached blocks wholly beyond the new size (dirty or not)
    /// and zeroes (fills) the cached tail of the boundary block; growing drops the clean cached blocks
    /// that were (partly) beyond the old size, so their newly exposed bytes come from the
    /// source. Page cache: shrinking replaces the blocks wholly beyond the new size by anonymous
    /// zeros and writes zeros over the non-zero pages of the boundary block's tail (they become
    /// written pages); growing maps nothing (the re-exposed bytes read zeros); `discard`,
    /// `mark_clean` and `invalidate` map the source's extents again.
    pub fn set_size(&self, bytes: u64) -> Result<(), PagerError> {
        match &self.kind {
            FileKind::Uffd(f) => f.set_size(bytes),
            FileKind::Mapped(f) => f.set_size(bytes),
        }
    }

    /// The dirty blocks and their written 4 KiB pages, ascending. Includes pages written by
    /// system calls (`read(2)` into a view counts even if the bytes are unchanged).
    ///
    /// Userfaultfd: includes pages written through views dropped since; write tracking of the
    /// reported pages is re-armed, so a later write is reported again even after `mark_clean`.
    /// Page cache: the private (copy-on-write or anonymous) pages of the reservation, found with
    /// `PAGEMAP_SCAN` (or `/proc/self/pagemap`).
    pub fn dirty(&self) -> Result<Vec<DirtyBlock>, PagerError> {
        match &self.kind {
            FileKind::Uffd(f) => f.dirty(),
            FileKind::Mapped(f) => f.dirty(),
        }
    }

    /// Whether any page of `blocks` was written since it was last clean. Userfaultfd: always
    /// `true` (unknown without a scan of every view; callers use it to skip work safely).
    pub fn has_written(&self, blocks: Range<u64>) -> Result<bool, PagerError> {
        match &self.kind {
            FileKind::Uffd(_) => Ok(true),
            FileKind::Mapped(f) => f.has_written(blocks),
        }
    }

    /// Copies the current content of block `blk` (committed bytes plus this process's writes)
    /// into `buf` (`blksize` bytes). Userfaultfd: without faulting; a block not cached is loaded
    /// from the source first.
    pub fn read_block(&self, blk: u64, buf: &mut [u8]) -> Result<(), PagerError> {
        match &self.kind {
            FileKind::Uffd(f) => f.read_block(blk, buf),
            FileKind::Mapped(f) => f.read_block(blk, buf),
        }
    }

    /// Copies the current content of the 4 KiB pages `pages` (indices within the block,
    /// ascending) of block `blk` into their places in `buf` (`blksize` bytes), leaving the rest of
    /// `buf` alone. Userfaultfd: a block not cached is loaded from the source first.
    pub fn read_pages(&self, blk: u64, pages: &[u32], buf: &mut [u8]) -> Result<(), PagerError> {
        match &self.kind {
            FileKind::Uffd(f) => f.read_pages(blk, pages, buf),
            FileKind::Mapped(f) => f.read_pages(blk, pages, buf),
        }
    }

    /// After a successful commit of `blks`: forgets their dirty pages.
    ///
    /// Userfaultfd: re-arms write tracking in every view; pages written since the last
    /// [`dirty`](Self::dirty) stay dirty. Page cache: asks the source for the blocks' (new)
    /// extents and maps them over the blocks, which drops every private page of those blocks,
    /// including pages written since `dirty()`: the caller keeps writers out between `dirty()`
    /// and `mark_clean`.
    pub fn mark_clean(&self, blks: &[u64]) -> Result<(), PagerError> {
        match &self.kind {
            FileKind::Uffd(f) => f.mark_clean(blks),
            FileKind::Mapped(f) => f.remap(blks),
        }
    }

    /// Reverts every written page to the committed content (abort), in every view.
    ///
    /// Userfaultfd: the dirty blocks are dropped and reload on the next touch. Page cache:
    /// `MADV_DONTNEED` on the written pages (O(written): they show the data file's bytes again,
    /// or zeros in holes), and blocks a shrink replaced by zeros are mapped from the source again.
    pub fn discard(&self) -> Result<(), PagerError> {
        match &self.kind {
            FileKind::Uffd(f) => f.discard(),
            FileKind::Mapped(f) => f.discard(),
        }
    }

    /// Drops local state of the given blocks (clean or dirty) because their committed content
    /// changed. Userfaultfd: the next touch reloads them from the source (a load in flight is
    /// redone). Page cache: like `mark_clean`, the blocks' current extents are mapped at once.
    pub fn invalidate(&self, blks: &[u64]) -> Result<(), PagerError> {
        match &self.kind {
            FileKind::Uffd(f) => f.invalidate(blks),
            FileKind::Mapped(f) => f.remap(blks),
        }
    }

    /// Writes `data` at byte `offset` as a write through a view would (the pages become
    /// written, every view sees the bytes); the range must lie within the logical size. Blocks
    /// from `unstored_from` on hold nothing in the source (the caller knows: an append's new
    /// blocks), so their old content is the fill and is not read first.
    ///
    /// Userfaultfd: `pwrite` into the memfd, no fault, and the pages are recorded as dirty; an
    /// unstored block is not loaded (its other bytes are zeros or the fill), any other block
    /// not cached is loaded first. Page cache: copied through the file's reservation (private
    /// pages, as any write).
    pub fn write_at(&self, offset: u64, data: &[u8], unstored_from: u64) -> Result<(), PagerError> {
        match &self.kind {
            FileKind::Uffd(f) => f.write_at(offset, data, unstored_from),
            FileKind::Mapped(f) => f.write_at(offset, data),
        }
    }

    /// Reads the blocks of `blocks` in now (an error is returned).
    ///
    /// Userfaultfd: loads them (waiting) and maps them into every view, so that system calls
    /// work on them even under `USER_MODE_ONLY`; they stay subject to eviction like any clean
    /// block. Page cache: `MADV_POPULATE_READ` (`MADV_WILLNEED` on kernels without it).
    pub fn prefetch(&self, blocks: Range<u64>) -> Result<(), PagerError> {
        match &self.kind {
            FileKind::Uffd(f) => f.prefetch(blocks),
            FileKind::Mapped(f) => f.prefetch(blocks),
        }
    }
}

/// The end of a write of `len` bytes at `offset` into a file of `size` bytes (`write_at` of
/// both engines): an error when it would reach beyond the size.
pub(crate) fn write_end(offset: u64, len: usize, size: u64) -> Result<u64, PagerError> {
    offset
        .checked_add(len as u64)
        .filter(|e| *e <= size)
        .ok_or_else(|| PagerError::InvalidArgument(format!("writing {len} bytes at {offset}: beyond the size {size}")))
}
