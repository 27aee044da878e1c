//! outcore-pager: memory that looks like a plain array to any code (slices, C, system calls),
//! made of fixed-size blocks, that records exactly which 4 KiB pages were written. It knows
//! nothing of SQL or arrays. Two engines implement one [`FileHandle`] API ([`FileEngine`]):
//!
//! - **userfaultfd** ([`Pager::open_file`]): blocks are filled from a [`BlockSource`] on first
//!   touch into a memfd per file, within a memory budget (remote stores, compressed data);
//! - **page cache** ([`Pager::open_mapped_file`]): blocks already stored uncompressed and page
//!   aligned in data files are mapped `MAP_PRIVATE` from the extents an [`ExtentSource`] names:
//!   reads are kernel page-cache hits, writes private copy-on-write pages.
//!
//! ```
//! use std::sync::Arc;
//! use outcore_pager::{BlockSource, Pager, PagerConfig, SourceError};
//!
//! /// Block `b` is filled with the byte `b`.
//! struct Pattern;
//! impl BlockSource for Pattern {
//!     fn load(&self, blk: u64, buf: &mut [u8]) -> Result<(), SourceError> {
//!         buf.fill(blk as u8);
//!         Ok(())
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pager = Pager::new(PagerConfig::default())?;
//! let blksize = 2 << 20;
//! let file = pager.open_file(Arc::new(Pattern), blksize, 8 * blksize as u64)?;
//! let view = file.map(0..8)?; // nothing loaded yet
//! # #[allow(unsafe_code)]
//! // SAFETY: the view is valid for view.len() bytes while `view` lives.
//! let mem = unsafe { std::slice::from_raw_parts_mut(view.as_ptr(), view.len()) };
//! assert_eq!(mem[3 * blksize + 5], 3); // block 3 loads on this access
//! mem[3 * blksize + 5] = 42; // tracked
//! let dirty = file.dirty()?;
//! assert_eq!(dirty.len(), 1);
//! assert_eq!((dirty[0].blk, dirty[0].pages.iter().collect::<Vec<_>>()), (3, vec![0]));
//! file.discard()?; // back to the source's content
//! assert_eq!(mem[3 * blksize + 5], 3);
//! # Ok(())
//! # }
//! ```
//!
//! The page-cache engine over a data file:
//!
//! ```
//! use std::ops::Range;
//! use std::os::unix::fs::FileExt;
//! use std::sync::Arc;
//! use outcore_pager::{Extent, ExtentSource, Pager, PagerConfig, SourceError};
//!
//! /// Block `b` is at `b * 64 KiB` of one file.
//! struct InOrder(Arc<std::fs::File>);
//! impl ExtentSource for InOrder {
//!     fn extents(&self, blks: Range<u64>) -> Result<Vec<(u64, Extent)>, SourceError> {
//!         Ok(blks.map(|b| (b, Extent::File { file: self.0.clone(), offset: b << 16 })).collect())
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let path = std::env::temp_dir().join(format!("outcore-pager-doc-{}", std::process::id()));
//! let data = std::fs::File::options().read(true).write(true).create(true).truncate(true).open(&path)?;
//! # std::fs::remove_file(&path)?;
//! data.write_all_at(&[7u8; 4 << 16], 0)?; // 4 blocks of 64 KiB
//! let pager = Pager::new(PagerConfig::default())?;
//! let file = pager.open_mapped_file(Arc::new(InOrder(Arc::new(data))), 1 << 16, 4 << 16, "array 'x'")?;
//! let view = file.map(0..4)?;
//! # #[allow(unsafe_code)]
//! // SAFETY: the view is valid for view.len() bytes while `view` lives.
//! let mem = unsafe { std::slice::from_raw_parts_mut(view.as_ptr(), view.len()) };
//! assert_eq!(mem[70_000], 7); // a page-cache hit
//! mem[70_000] = 42; // a private copy-on-write page; the data file is never written
//! assert_eq!(file.dirty()?.iter().map(|d| (d.blk, d.pages.len())).collect::<Vec<_>>(), vec![(1, 1)]);
//! file.discard()?; // MADV_DONTNEED on the written pages
//! assert_eq!(mem[70_000], 7);
//! # Ok(())
//! # }
//! ```
//!
//! # Design
//! - A [`Pager`] owns one userfaultfd, a fault-reading thread and a pool of loader threads, and a
//!   cache budget shared by its files ([`Pager::global`] is the process default).
//! - A [`FileHandle`] has a memfd that is its page cache: every [`View`] is a `MAP_SHARED`
//!   mapping of it, so views alias. Views are registered `MISSING | WP | MINOR`; every page-table
//!   entry of a view is installed by the pager with `UFFDIO_CONTINUE(MODE_WP)`, a whole block at a
//!   time, so every first write is recorded (`WP_ASYNC`, read back with `PAGEMAP_SCAN`, or a
//!   synchronous write-protect fault where `WP_ASYNC` is missing).
//! - Blocks move through the states of an explicit enum (Loading, Loaded, Dirty, Evicting); one
//!   load per block, loads of different blocks in parallel; clean blocks are evicted least
//!   recently used first with `fallocate(PUNCH_HOLE)`; dirty ones never are.
//! - A page-cache file owns one address reservation (anonymous `MAP_NORESERVE`, at least
//!   1 TiB, so it grows in place); its views are sub-ranges of it, so they alias. Extents are
//!   mapped `MAP_PRIVATE | MAP_FIXED` over it (consecutive ones in one call); written pages are
//!   the present pages that are neither file pages nor the zero page (`PAGEMAP_SCAN`);
//!   `mark_clean`/`invalidate` map the new extents, `discard` drops written pages with
//!   `MADV_DONTNEED`. A SIGBUS on its memory (I/O error, truncated data file) is reported on
//!   stderr with the file's label and block before the process dies. Details in the README.

mod block;
mod cache;
mod dirty;
mod engine;
mod error;
mod fault_thread;
mod file;
mod loader;
mod mapped;
mod mapping;
mod memfd;
mod pager;
mod pattern;
mod readahead;
mod source;
mod stats;
mod sys;
mod uffd;
mod uffd_file;
mod view;

pub use dirty::{DirtyBlock, PageSet};
pub use engine::{Capabilities, EngineKind};
pub use error::{PagerError, SourceError};
pub use file::{FileEngine, FileHandle};
pub use mapped::{Extent, ExtentSource};
pub use pager::{FillMode, Pager, PagerConfig};
pub use pattern::FillPattern;
pub use source::BlockSource;
pub use stats::Stats;
pub use view::View;

/// The granularity of dirty tracking: 4 KiB pages.
pub const PAGE: usize = 4096;
