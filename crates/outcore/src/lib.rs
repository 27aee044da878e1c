//! outcore: out-of-core, persistent, transactional N-dimensional arrays.
//!
//! A [`Db`] is a versioned block store ([`outcore_store`], SQLite or PostgreSQL) plus a pager
//! ([`outcore_pager`]) that maps arrays into memory lazily. A [`Connection`] reads one committed
//! snapshot and holds one transaction over a namespace of named [`Array`]s; typed views are
//! `ndarray` views straight over the mapped memory: nothing loads until touched, and every
//! write is tracked and committed atomically with [`Connection::commit`].
//!
//! ```
//! use outcore::{ArraySpec, Db, DbOptions};
//! # fn main() -> Result<(), outcore::Error> {
//! # let dir = tempfile::tempdir().map_err(|e| outcore::Error::InvalidArgument(e.to_string()))?;
//! # let path = dir.path().join("example.outcore");
//! # let path = path.to_str().unwrap_or_default();
//! let db = Db::open(path, DbOptions::default())?;
//! let conn = db.connect()?;
//! let a = conn.create("signal", ArraySpec::of::<f64>([1000, 3]))?;
//! {
//!     let mut g = a.as_array_view_mut::<f64>()?;
//!     g.view_mut().fill(1.5); // loads blocks on touch, records the writes
//! }
//! a.append(&[7.0f64, 8.0, 9.0])?; // one more row
//! conn.commit()?;
//! assert_eq!(a.shape()?, vec![1001, 3]);
//!
//! // Another connection (or process) sees the committed data.
//! let other = db.connect()?;
//! let g = other.open("signal")?.as_array_view::<f64>()?;
//! assert_eq!(g.view()[[1000, 2]], 9.0);
//! # Ok(())
//! # }
//! ```
//!
//! # Transactions
//! - A connection reads the snapshot (tid) it started at; its own changes (writes, create,
//!   delete, rename, resize, append) are visible only to it.
//! - [`Connection::commit`] collects the written blocks of every open array from the pager,
//!   reads them from the page cache and stores them with all metadata changes in one store
//!   commit. A shrink during the transaction is recorded too, so that bytes re-exposed by a
//!   later growth read zeros. First committer wins: on [`Error::Conflict`] nothing is stored
//!   and the connection needs [`Connection::abort`].
//! - At every boundary (commit, abort, [`Connection::sync`]) the connection moves to the newest
//!   tid, reloads the metadata of arrays others changed, and invalidates exactly the blocks
//!   others wrote; views keep their addresses and show the new snapshot on next touch.
//! - [`Db::connect_at`] gives read-only connections to older snapshots (time travel) until the
//!   store's garbage collection passes them.
//!
//! # Threads
//! A connection and its handles are for one thread at a time and may move between threads
//! between transactions; concurrent calls are serialized, never corrupting. Blocks load on
//! pager threads, never on the thread touching the memory.
//!
//! # Aliasing
//! Like two `memmap2::MmapMut` of one file, views of the same array in one connection alias
//! each other (they share the page cache), and a transaction boundary or a resize in the
//! connection may change the bytes under a view (blocks others changed reload from the new
//! snapshot; areas beyond a shrunk size read zeros). Keep borrowed slices and `ndarray` views
//! short-lived and do not hold two overlapping mutable ones at once.
//!
//! # Memory
//! Each open array has a page cache in the pager; clean blocks are evicted beyond the cache
//! budget ([`DbOptions::cache_budget`]) and reload on next touch; written blocks stay until
//! commit or abort. A block that cannot be loaded (store error, snapshot garbage collected)
//! makes the touching access fail with `SIGBUS` after the error is logged: never zeros.

#![warn(clippy::unwrap_used, clippy::expect_used)]

mod array;
mod check;
mod connection;
mod db;
mod dtype;
mod error;
mod fork;
mod mem;
mod savepoint;
mod shape;
mod source;

pub use array::Array;
pub use check::{CheckProgress, CheckReport};
pub use connection::{ArraySpec, CommitInfo, Connection};
pub use db::{Db, DbOptions, OpenMode};
pub use dtype::{descr_itemsize, descr_of, Dtype, Element, Field, DTYPE_FORMAT};
pub use error::{Error, Result};
pub use mem::{ArrayGuard, ArrayGuardMut, BytesView, BytesViewMut};
pub use outcore_pager as pager;
pub use outcore_store as store;
pub use outcore_store::{ArrayId, ArrayMeta, Codec, Order, Tid};
pub use savepoint::Savepoint;
pub use shape::{appended_shape, check_blksize, major_axis, nbytes_of, MAX_NBYTES};
