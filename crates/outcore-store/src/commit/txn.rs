//! What a backend offers the commit algorithm inside its exclusive commit transaction, and the
//! rows they exchange.

use crate::block::{self, CurrentEnc, Encoded};
use crate::error::Result;
use crate::types::{ArrayId, ArrayInfo, ArrayMeta, Tid, TxnInfo};

/// The head row: newest tid, gc horizon and the time of the newest commit.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Head {
    pub tid: Tid,
    pub horizon: Tid,
    pub time_us: i64,
}

/// A version row of an array: `None` state means deleted.
#[derive(Clone, Debug)]
pub(crate) struct ArrayVersion {
    pub tid: Tid,
    pub state: Option<(String, ArrayMeta)>,
}

/// The current version of a block, as the commit path sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CurrentRow {
    /// The tid that wrote it (the block's newest version).
    pub tid: Tid,
    /// Its content length (0: the block reads zeros).
    pub len: u64,
    /// Codec of its payload.
    pub codec: i64,
    /// Backend-specific handle of the payload (SQLite: the `outcore_blob` row; 0 when none).
    pub handle: i64,
    /// Content length of the stored payload.
    pub base_len: u64,
    /// Number of pending patches (0 on backends without patches).
    pub patches: i64,
    /// Their stored bytes.
    pub patch_bytes: i64,
    /// The data-file extent holding it (local stores, uncompressed arrays).
    pub extent: Option<u64>,
}

/// A new current version of a block, handed to the backend.
pub(crate) struct CurrentWrite<'a> {
    /// The version it replaces, if any.
    pub prev: Option<&'a CurrentRow>,
    /// The block's new content (zero beyond `enc.len`; may be shorter than the block).
    pub data: &'a [u8],
    /// Length, codec, checksum and (if compressed) the payload.
    pub enc: CurrentEnc,
    /// The pages that differ from the stored payload (the previous current version without its
    /// pending patches): all a raw in-place update writes.
    pub changed: &'a [u32],
    /// The array's block size.
    pub blksize: u64,
    /// The array is uncompressed (a local store keeps its blocks in data-file extents).
    pub raw_array: bool,
}

/// Changed blocks `(array, blk, newest tid)` and arrays `(array, newest tid)`.
pub(crate) type ChangedSets = (Vec<(ArrayId, u64, Tid)>, Vec<(ArrayId, Tid)>);

/// What a backend offers inside its exclusive commit transaction.
pub(crate) trait WriteTxn {
    /// The pending-patch operations, when this backend keeps patches (SQLite); `None` otherwise.
    fn patches(&mut self) -> Option<&mut dyn PatchTxn> {
        None
    }
    /// The staged-extent operations, when this backend stages extents (a local store's data
    /// file); `None` otherwise.
    fn extents(&mut self) -> Option<&mut dyn ExtentTxn> {
        None
    }
    /// Whether raw current versions are checked page by page (SQLite's data-file extents) or
    /// segment by segment (PostgreSQL) by the backend, so that no whole-content checksum is
    /// computed for them.
    fn checks_raw_pages(&self) -> bool {
        false
    }
    /// How this backend's checksums bind a commit's tid (PostgreSQL: [`block::TidBinding::Mix`],
    /// as its commits learn their tid only when the server takes their rows).
    fn tid_binding(&self) -> block::TidBinding {
        block::TidBinding::Seed
    }
    fn head(&mut self) -> Result<Head>;
    /// Blocks and arrays with versions newer than `base`, with the newest such tid.
    fn changed_since(&mut self, base: Tid) -> Result<ChangedSets>;
    fn array_at(&mut self, id: ArrayId, at: Tid) -> Result<Option<ArrayVersion>>;
    fn live_arrays(&mut self, at: Tid) -> Result<Vec<ArrayInfo>>;
    /// Blocks `>= from_blk` whose current version holds data, with that data's length.
    fn stored_blocks_from(&mut self, id: ArrayId, from_blk: u64) -> Result<Vec<(u64, u64)>>;
    fn load(&mut self, id: ArrayId, blk: u64, at: Tid, buf: &mut [u8]) -> Result<()>;
    /// The current version of a block, if it has one.
    fn current(&mut self, id: ArrayId, blk: u64) -> Result<Option<CurrentRow>>;
    /// What the commit on snapshot `base` will read, told before its first read
    /// ([`head`](Self::head)): the `arrays` it touches and its `blocks`, with the pages written
    /// for page writes. A backend that pays per round trip reads all of it with the head, at
    /// once; the others ignore it.
    fn prepare(&mut self, base: Tid, arrays: &[ArrayId], blocks: &[(ArrayId, u64, Option<&[u32]>)]) -> Result<()> {
        let _ = (base, arrays, blocks);
        Ok(())
    }
    fn insert_txn(&mut self, info: &TxnInfo) -> Result<()>;
    fn insert_array_version(&mut self, id: ArrayId, tid: Tid, state: Option<(&str, &ArrayMeta)>) -> Result<()>;
    /// Where the undo record of commit `tid` for a block sits in the block's history (`None`
    /// when there is no such record, e.g. after gc).
    fn undo_chain(&mut self, id: ArrayId, blk: u64, tid: Tid) -> Result<Option<block::UndoChain>>;
    /// Record the undo record of commit `tid` for a block.
    fn insert_undo(&mut self, id: ArrayId, blk: u64, tid: Tid, undo: &Encoded) -> Result<()>;
    /// Replace a block's current version (`new.prev`, if any, with its pending patches) by `new`.
    fn write_current(&mut self, id: ArrayId, blk: u64, tid: Tid, new: &CurrentWrite<'_>) -> Result<()>;
    fn set_head(&mut self, tid: Tid, time_us: i64) -> Result<()>;
    /// Whether the current version `cur` can be read and rewritten page by page
    /// ([`load_pages`](Self::load_pages), [`write_pages`](Self::write_pages)).
    fn rewrites_pages(&self, cur: &CurrentRow) -> bool {
        cur.extent.is_some()
    }
    /// Read only `pages` of a block's current version `cur` into their places in `buf` (a
    /// buffer of the block size; verified, zero beyond the content); `Ok(false)` when this
    /// backend cannot (the caller then reads the whole block).
    fn load_pages(&mut self, id: ArrayId, blk: u64, cur: &CurrentRow, pages: &[u32], buf: &mut [u8]) -> Result<bool>;
    /// Replace a block's current version `w.cur` by one that differs from it in the changed
    /// pages only (after `load_pages` read them).
    fn write_pages(&mut self, id: ArrayId, blk: u64, tid: Tid, w: &PageWrite<'_>) -> Result<()>;
}

/// Staged extents: block content written straight to its place before the commit (a local
/// store's appends). Optional: [`WriteTxn::extents`].
pub(crate) trait ExtentTxn {
    /// Make the staged extent at `off` (holding `len` bytes) the current version of a block
    /// that has none.
    fn adopt_staged(&mut self, id: ArrayId, blk: u64, tid: Tid, off: u64, len: u64, blksize: u64) -> Result<()>;
}

/// A page-granular update of a block's current version `cur`: `old` and `new` hold the bytes of
/// the `changed` pages (block-size buffers), `len` bounds the new content (zeros from it on).
pub(crate) struct PageWrite<'a> {
    pub cur: &'a CurrentRow,
    pub changed: &'a [u32],
    pub old: &'a [u8],
    pub new: &'a [u8],
    pub len: u64,
}

/// Pending patches: small changes kept beside a block's stored payload instead of rewriting it
/// (SQLite, whose payloads live in blobs). Optional: [`WriteTxn::patches`].
pub(crate) trait PatchTxn {
    /// Bytes the backend rewrites at least when it updates part of a raw current version in
    /// place (SQLite: its page size).
    fn patch_granule(&self) -> u64;
    /// Keep `patch` (of commit `tid`, turning the block's newest version into content of
    /// `patch.len` bytes) as a pending patch instead of rewriting the block's current version.
    fn write_patch(&mut self, id: ArrayId, blk: u64, tid: Tid, patch: &Encoded) -> Result<()>;
    /// The content of a block's stored payload, without its pending patches (verified).
    fn load_base(&mut self, id: ArrayId, blk: u64, buf: &mut [u8]) -> Result<()>;
}
