//! Plain data types of the store: transaction ids, array ids and metadata, history entries.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A transaction id. Strictly increasing, one per committed transaction; `0` is the empty store
/// before any commit. A snapshot at tid `T` sees every commit with tid `<= T` and none after.
pub type Tid = u64;

/// The default block size: 2 MiB.
pub const DEFAULT_BLKSIZE: u64 = 2 << 20;
/// The smallest allowed block size (one 4 KiB page).
pub const MIN_BLKSIZE: u64 = 4096;
/// The largest allowed block size (256 MiB).
pub const MAX_BLKSIZE: u64 = 256 << 20;

/// The stable identity of an array. It survives renames; it is never reused after a delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ArrayId(pub u64);

impl fmt::Display for ArrayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{:x}", self.0)
    }
}

impl ArrayId {
    /// A fresh random id (63 bits, so it fits signed 64-bit SQL integers), from the operating
    /// system (see [`random_u64`]).
    pub fn random() -> Self {
        ArrayId(random_u64() >> 1 | 1)
    }
}

/// 64 random bits from the operating system (`getrandom(2)`). Ids and nonces that must differ
/// between processes come from here, never from a thread-local generator: a process forked
/// from another (Python's `multiprocessing`) inherits that generator's state, and every child
/// would draw the same "random" commit ids, array ids and nonces.
pub(crate) fn random_u64() -> u64 {
    match getrandom::u64() {
        Ok(x) => x,
        // No OS randomness (practically impossible on Linux): the thread's generator, reseeded
        // from the clock and the process id so forked children still differ.
        Err(_) => {
            let t =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
            rand::random::<u64>() ^ t.rotate_left(17) ^ u64::from(std::process::id()).rotate_left(41)
        }
    }
}

/// Memory layout of an N-dimensional array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Order {
    /// Row major: the last index varies fastest; the major (append) axis is axis 0.
    #[default]
    C,
    /// Column major: the first index varies fastest; the major (append) axis is the last one.
    F,
}

/// How stored block versions of an array are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase", tag = "name")]
#[non_exhaustive]
pub enum Codec {
    /// Stored as is (all-zero tails are still not stored).
    #[default]
    None,
    /// zstd at the given level.
    Zstd {
        /// Compression level (1..=22).
        level: i32,
    },
    /// lz4 (block format).
    Lz4,
}

/// The versioned metadata of one array.
///
/// The store treats `dtype` as an opaque NumPy descr string (structured dtypes included) and
/// `shape`/`order` as data for the layers above; it enforces `blksize` and `nbytes`: bytes at or
/// beyond `nbytes` always read as zeros, and shrinking `nbytes` drops the data beyond it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayMeta {
    /// NumPy dtype descr, e.g. `"<f8"` or `"[('x', '<f4'), ('y', '<i8', (3,))]"`.
    pub dtype: String,
    /// Shape of the array.
    pub shape: Vec<u64>,
    /// Memory layout.
    pub order: Order,
    /// Block size in bytes: a power of two in `MIN_BLKSIZE..=MAX_BLKSIZE`.
    pub blksize: u64,
    /// Compression of newly stored block versions.
    pub codec: Codec,
    /// Logical size of the array's byte file (`product(shape) * itemsize`).
    pub nbytes: u64,
    /// User attributes (a JSON object), versioned with the array like the rest of its metadata.
    /// Left out of the stored JSON when empty, so metadata without attributes is stored exactly
    /// as before they existed.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub attrs: serde_json::Map<String, serde_json::Value>,
    /// The fill value: lowercase hex of the bytes of one element, what elements never written
    /// read as (`None`: zeros). Left out of the stored JSON when `None`. The store itself
    /// treats it as opaque data for the layers above (see `outcore`'s `ArraySpec::fill`): `outcore`
    /// stores the blocks of such an array XOR the fill pattern, so that the store's zeros (holes,
    /// trimmed tails, bytes beyond `nbytes`) read as the fill value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill: Option<String>,
}

impl ArrayMeta {
    /// Metadata for an array of `nbytes` bytes with the default block size and no compression.
    pub fn new(dtype: impl Into<String>, shape: Vec<u64>, order: Order, nbytes: u64) -> Self {
        ArrayMeta {
            dtype: dtype.into(),
            shape,
            order,
            blksize: DEFAULT_BLKSIZE,
            codec: Codec::None,
            nbytes,
            attrs: serde_json::Map::new(),
            fill: None,
        }
    }

    /// Number of blocks that hold bytes below `nbytes`.
    pub fn nblocks(&self) -> u64 {
        self.nbytes.div_ceil(self.blksize)
    }
}

/// One array as seen by a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArrayInfo {
    /// Stable identity.
    pub id: ArrayId,
    /// Current name.
    pub name: String,
    /// Current metadata.
    pub meta: ArrayMeta,
    /// The tid that last changed the name or metadata.
    pub tid: Tid,
}

/// A committed transaction as recorded in the history.
#[derive(Clone, Debug, PartialEq)]
pub struct TxnInfo {
    /// Its id.
    pub tid: Tid,
    /// Wall-clock commit time, microseconds since the Unix epoch (non-decreasing with tid).
    pub time_us: i64,
    /// The committing user (free text).
    pub user: String,
    /// Description (the `transaction` package's note).
    pub description: String,
    /// Free-form JSON extension.
    pub extension: serde_json::Value,
}

impl TxnInfo {
    /// The commit time as a `SystemTime`.
    pub fn time(&self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::from_micros(self.time_us.max(0) as u64)
    }
}

/// What changed between two tids, for invalidating cached blocks and metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Blocks with a new version, sorted.
    pub blocks: Vec<(ArrayId, u64)>,
    /// Arrays whose name or metadata changed (created, deleted, renamed, resized), sorted.
    pub arrays: Vec<ArrayId>,
}

impl Changes {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty() && self.arrays.is_empty()
    }
}

/// What a garbage collection removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Block versions removed.
    pub block_versions: u64,
    /// Array metadata versions removed.
    pub array_versions: u64,
    /// Bytes of stored block data removed.
    pub bytes: u64,
}

/// Storage statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Stored block versions.
    pub block_versions: u64,
    /// Bytes of stored block payload (after zero stripping and compression).
    pub stored_bytes: u64,
}

/// Where a block version's bytes sit in a local store's data file: `blksize` bytes of `file` at
/// `offset` (page aligned), to be mapped `MAP_PRIVATE` and never written.
#[derive(Clone, Debug)]
pub struct Location {
    /// The data file.
    pub file: std::sync::Arc<std::fs::File>,
    /// Byte offset of the extent.
    pub offset: u64,
}

impl PartialEq for Location {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.file, &other.file) && self.offset == other.offset
    }
}

/// A fresh extent reserved for one block this handle is about to commit (see
/// [`Store::stage`](crate::Store::stage)): written with `write_staged`, mapped from `location`,
/// made a block's current version by [`Commit::write_staged`](crate::Commit::write_staged).
#[derive(Clone, Debug, PartialEq)]
pub struct Staged {
    /// The array whose block it will hold.
    pub array: ArrayId,
    /// The block it will hold.
    pub blk: u64,
    /// Where it is (`size` bytes, zero until written).
    pub location: Location,
    /// Its size (the array's block size).
    pub size: u64,
}

/// Releases a registered snapshot.
pub(crate) trait Unpin: Send + Sync {
    fn unpin(&self, id: u64);
}

/// A snapshot a connection reads (see [`Store::snapshot`](crate::Store::snapshot)); released
/// on drop.
pub struct Snapshot {
    tid: Tid,
    id: u64,
    owner: Option<std::sync::Arc<dyn Unpin>>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("tid", &self.tid).field("id", &self.id).finish()
    }
}

impl Snapshot {
    /// A snapshot nothing needs to register (stores whose bytes never move under readers).
    pub fn unregistered(tid: Tid) -> Snapshot {
        Snapshot { tid, id: 0, owner: None }
    }

    pub(crate) fn registered(tid: Tid, id: u64, owner: std::sync::Arc<dyn Unpin>) -> Snapshot {
        Snapshot { tid, id, owner: Some(owner) }
    }

    /// The tid it reads.
    pub fn tid(&self) -> Tid {
        self.tid
    }

    /// Its registration (0 when unregistered), for [`Commit::by`](crate::Commit::by).
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if let Some(o) = &self.owner {
            o.unpin(self.id);
        }
    }
}
