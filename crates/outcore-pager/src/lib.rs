//! outcore-pager: memory that looks like a plain array to any code (slices, C, system calls) but
//! is filled block by block from a [`BlockSource`] on first touch, records exactly which 4 KiB
//! pages were written, and stays within a memory budget. It knows nothing of SQL or arrays.
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

mod block;
mod cache;
mod dirty;
mod engine;
mod error;
mod fault_thread;
mod file;
mod loader;
mod mapping;
mod memfd;
mod pager;
mod readahead;
mod source;
mod stats;
mod sys;
mod uffd;
mod view;

pub use dirty::{DirtyBlock, PageSet};
pub use engine::{Capabilities, EngineKind};
pub use error::{PagerError, SourceError};
pub use file::FileHandle;
pub use pager::{FillMode, Pager, PagerConfig};
pub use source::BlockSource;
pub use stats::Stats;
pub use view::View;

/// The granularity of dirty tracking: 4 KiB pages.
pub const PAGE: usize = 4096;
