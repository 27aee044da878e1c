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
mod failpoint;
pub mod interrupt;
mod ofd;
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
    if !local_path(location).is_file() {
        return Err(Error::NotAStore {
            location: location.into(),
            reason: "no such file (nothing was created)".into(),
        });
    }
    open(location)
}

/// Open the existing store at `location` for reading only (inspection tools, read-only media,
/// another user's store): nothing is created or written; commits and gc fail with
/// [`Error::ReadOnly`]. A local store's read-only snapshots are not registered with committers,
/// so open read-only a store nobody writes meanwhile.
pub fn open_read_only(location: &str) -> Result<Arc<dyn Store>> {
    if is_postgres_url(location) {
        return Ok(Arc::new(PgStore::open_read_only(location)?));
    }
    Ok(Arc::new(SqliteStore::open_read_only(local_path(location))?))
}

/// Open the existing store at `location` to read it: with write access where the process has
/// it (so a local store's snapshots are registered with the processes that write it, and
/// reading a store that is being written is safe), else [read-only](open_read_only) (read-only
/// media, another user's files). Nothing is created either way.
pub fn open_for_reading(location: &str) -> Result<Arc<dyn Store>> {
    if !is_postgres_url(location) && local_path(location).is_file() && !may_write(local_path(location)) {
        return open_read_only(location);
    }
    open_existing(location)
}

/// The file a local store location names (`sqlite:` prefixes removed).
fn local_path(location: &str) -> &std::path::Path {
    let path = location.strip_prefix("sqlite://").or_else(|| location.strip_prefix("sqlite:")).unwrap_or(location);
    std::path::Path::new(path)
}

/// Whether this process may write the store file `path` and create files beside it (its
/// write-ahead log).
fn may_write(path: &std::path::Path) -> bool {
    use nix::unistd::{access, AccessFlags};
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    access(path, AccessFlags::W_OK).is_ok() && access(dir, AccessFlags::W_OK).is_ok()
}

/// Open (creating if needed) the store at `location`: a `postgresql://` URL, or a file path
/// (optionally prefixed by `sqlite:`) for the embedded SQLite store.
pub fn open(location: &str) -> Result<Arc<dyn Store>> {
    if is_postgres_url(location) {
        Ok(Arc::new(PgStore::open(location)?))
    } else {
        let path = local_path(location);
        if path.as_os_str().is_empty() {
            return Err(Error::BadLocation { location: location.into(), reason: "empty path".into() });
        }
        if path.is_file() && !may_write(path) {
            return Err(Error::ReadOnly {
                location: location.into(),
                op: "open it for writing (this process may not write it or its directory; open it for reading only)",
            });
        }
        Ok(Arc::new(SqliteStore::open(path)?))
    }
}
