//! outcore-store: the durable, versioned block store under outcore.
//!
//! A store holds named arrays; each array is a sparse file of fixed-size blocks. Every commit
//! gets a transaction id (tid); every block and every array's metadata is versioned by tid, so a
//! reader at any tid sees a consistent snapshot, and history stays readable until garbage
//! collection. Two backends implement the [`Store`] trait: SQLite (embedded, one file) and
//! PostgreSQL (shared by many processes and machines, with commit notifications).
//!
//! ```
//! use outcore_store::{open, ArrayId, ArrayMeta, Commit, Order};
//! # let dir = tempfile::tempdir().unwrap();
//! let store = open(dir.path().join("data.outcore").to_str().unwrap())?;
//! let id = ArrayId::random();
//! let mut c = Commit::new().with_description("create and fill");
//! c.put_array(id, "signal", ArrayMeta::new("<f8", vec![1 << 20], Order::C, 8 << 20));
//! c.write_block(id, 0, vec![7u8; 100]);
//! let tid = store.commit(store.head()?, c)?;
//!
//! let a = store.array("signal", tid)?.expect("created");
//! let mut buf = vec![0u8; a.meta.blksize as usize];
//! store.load(a.id, 0, tid, &mut buf)?;
//! assert_eq!(&buf[..101], &[[7u8; 100].as_slice(), &[0]].concat()[..]);
//! # Ok::<(), outcore_store::Error>(())
//! ```

#![warn(clippy::unwrap_used, clippy::expect_used)]

mod backend;
mod block;
mod commit;
mod error;
pub mod interrupt;
mod pool;
mod rowsum;
mod store;
mod types;

pub use backend::postgres::PgStore;
pub use backend::sqlite::SqliteStore;
pub use commit::{ArrayState, BlockSource, Commit, PageSource};
pub use error::{Conflict, ConflictItem, Error, Result};
pub use store::{Store, Subscription};
pub use types::{
    ArrayId, ArrayInfo, ArrayMeta, Changes, Codec, GcStats, Location, Order, Snapshot, Staged, StoreStats, Tid,
    TxnInfo, DEFAULT_BLKSIZE, MAX_BLKSIZE, MIN_BLKSIZE,
};

use std::sync::Arc;

/// True if `location` names a PostgreSQL database rather than a file.
pub fn is_postgres_url(location: &str) -> bool {
    location.starts_with("postgresql://") || location.starts_with("postgres://")
}

/// Open the store at `location` only if it exists: a missing file, a file that is not a store
/// or a PostgreSQL database without one is an error, and nothing is created (for inspection
/// tools).
pub fn open_existing(location: &str) -> Result<Arc<dyn Store>> {
    if is_postgres_url(location) {
        return Ok(Arc::new(PgStore::open_existing(location)?));
    }
    let path = location.strip_prefix("sqlite://").or_else(|| location.strip_prefix("sqlite:")).unwrap_or(location);
    if !std::path::Path::new(path).is_file() {
        return Err(Error::NotAStore {
            location: location.into(),
            reason: "no such file (nothing was created)".into(),
        });
    }
    open(location)
}

/// Open (creating if needed) the store at `location`: a `postgresql://` URL, or a file path
/// (optionally prefixed by `sqlite:`) for the embedded SQLite store.
pub fn open(location: &str) -> Result<Arc<dyn Store>> {
    if is_postgres_url(location) {
        Ok(Arc::new(PgStore::open(location)?))
    } else {
        let path = location.strip_prefix("sqlite://").or_else(|| location.strip_prefix("sqlite:")).unwrap_or(location);
        if path.is_empty() {
            return Err(Error::BadLocation { location: location.into(), reason: "empty path".into() });
        }
        Ok(Arc::new(SqliteStore::open(path)?))
    }
}
