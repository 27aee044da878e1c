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

#![warn(clippy::unwrap_used, clippy::expect_used)]

mod array;
mod connection;
mod db;
mod dtype;
mod error;
mod mem;
mod source;

pub use array::Array;
pub use connection::{ArraySpec, CommitInfo, Connection};
pub use db::{Db, DbOptions};
pub use dtype::{descr_itemsize, descr_of, Element};
pub use error::{Error, Result};
pub use mem::{ArrayGuard, ArrayGuardMut, BytesView, BytesViewMut, Region};
pub use outcore_pager as pager;
pub use outcore_store as store;
pub use outcore_store::{ArrayId, ArrayMeta, Codec, Order, Tid};
