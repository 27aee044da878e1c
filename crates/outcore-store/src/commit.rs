//! A commit request and the one commit algorithm shared by every backend: conflict detection,
//! validation, truncation of shrunk arrays, and the rows to insert.

use crate::block::{self, CurrentEnc, Encoded};
use crate::error::{Conflict, ConflictItem, Error, Result};
use crate::types::{ArrayId, ArrayInfo, ArrayMeta, Codec, Tid, TxnInfo, MAX_BLKSIZE, MIN_BLKSIZE};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The new state of an array in a commit.
#[derive(Clone, Debug, PartialEq)]
pub enum ArrayState {
    /// The array exists (is created, renamed or has new metadata).
    Live {
        /// Its name after the commit.
        name: String,
        /// Its metadata after the commit.
        meta: ArrayMeta,
    },
    /// The array is deleted.
    Deleted,
}

#[derive(Clone, Debug)]
pub(crate) struct ArrayChange {
    pub state: ArrayState,
    /// The smallest size the array had during the transaction: data beyond it is dropped.
    pub truncated_to: Option<u64>,
}

/// A block's new content, read when the commit stores that block: a commit of many blocks from
/// sources holds one block in memory at a time, not all of them (transactions bigger than RAM).
///
/// Closures `FnMut(&mut Vec<u8>) -> Result<(), Box<dyn Error + Send + Sync>>` are sources.
pub trait BlockSource: Send {
    /// Append the block's full content to `buf` (empty when called): at most the block size; a
    /// shorter content means the rest is zero. An error aborts the commit
    /// ([`Error::BlockSource`]); nothing is written.
    fn read_into(&mut self, buf: &mut Vec<u8>) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

impl<F> BlockSource for F
where
    F: FnMut(&mut Vec<u8>) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> + Send,
{
    fn read_into(&mut self, buf: &mut Vec<u8>) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self(buf)
    }
}

/// The new content of some pages of a block, read when the commit stores that block.
///
/// Closures `FnMut(&[u32], &mut [u8]) -> Result<(), Box<dyn Error + Send + Sync>>` are sources.
pub trait PageSource: Send {
    /// Write the new content of each 4 KiB page in `pages` (ascending indices) into its place in
    /// `block`, a buffer of the block size. Before the call, those pages of `block` hold the
    /// block's stored content (so a source may write part of a page); its other bytes are
    /// unspecified and ignored. An error aborts the commit ([`Error::BlockSource`]); nothing is
    /// written.
    fn read_pages(
        &mut self,
        pages: &[u32],
        block: &mut [u8],
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

impl<F> PageSource for F
where
    F: FnMut(&[u32], &mut [u8]) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> + Send,
{
    fn read_pages(
        &mut self,
        pages: &[u32],
        block: &mut [u8],
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self(pages, block)
    }
}

/// A block write: its content, or where to read it from at commit.
pub(crate) enum BlockData {
    Bytes(Vec<u8>),
    Source(Box<dyn BlockSource>),
    /// Only these pages may differ from the block's content at the commit's base snapshot.
    Pages(Vec<u32>, Box<dyn PageSource>),
    /// The content (`len` bytes) is in a staged extent at this offset of the data file.
    Staged {
        off: u64,
        len: u64,
    },
}

impl std::fmt::Debug for BlockData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlockData::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            BlockData::Source(_) => f.write_str("Source"),
            BlockData::Pages(pages, _) => write!(f, "Pages({} pages)", pages.len()),
            BlockData::Staged { off, len } => write!(f, "Staged({len} bytes at {off})"),
        }
    }
}

/// Everything one transaction changes, committed atomically by [`Store::commit`](crate::Store::commit).
///
/// Block writes carry the block's full new content (a shorter buffer means the rest is zero),
/// or a [`BlockSource`] that provides it during the commit. Array changes carry the array's
/// full new state. Writing the same block or array twice in one commit keeps the last write.
#[derive(Debug, Default)]
pub struct Commit {
    /// The committing user.
    pub user: String,
    /// Description (note) of the transaction.
    pub description: String,
    /// Free-form JSON extension (`null` when unused).
    pub extension: serde_json::Value,
    pub(crate) arrays: BTreeMap<ArrayId, ArrayChange>,
    pub(crate) blocks: BTreeMap<(ArrayId, u64), BlockData>,
    /// The committer's own snapshot registration (not counted as another reader).
    pub(crate) by: u64,
}

impl Commit {
    /// An empty commit.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set the user.
    pub fn with_user(mut self, user: impl Into<String>) -> Self {
        self.user = user.into();
        self
    }

    /// Set the description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Set the JSON extension.
    pub fn with_extension(mut self, extension: serde_json::Value) -> Self {
        self.extension = extension;
        self
    }

    /// Name the committer's own snapshot (from [`Store::snapshot`](crate::Store::snapshot)): a
    /// local store then does not count it as another reader, so it may update blocks in place.
    /// The committer must remap or drop what it maps of the blocks it commits.
    pub fn by(mut self, snapshot: &crate::types::Snapshot) -> Self {
        self.by = snapshot.id();
        self
    }

    /// Create an array, or give an existing one a new name and/or metadata.
    pub fn put_array(&mut self, id: ArrayId, name: impl Into<String>, meta: ArrayMeta) -> &mut Self {
        let truncated_to = self.arrays.get(&id).and_then(|c| c.truncated_to);
        self.arrays.insert(id, ArrayChange { state: ArrayState::Live { name: name.into(), meta }, truncated_to });
        self
    }

    /// Record that the array was shrunk to `nbytes` at some point in the transaction (even if it
    /// grew again since): its stored data at or beyond `nbytes` is dropped before this commit's
    /// block writes apply, so the re-exposed area reads zeros.
    pub fn truncate(&mut self, id: ArrayId, nbytes: u64) -> &mut Self {
        if let Some(c) = self.arrays.get_mut(&id) {
            c.truncated_to = Some(c.truncated_to.map_or(nbytes, |t| t.min(nbytes)));
        }
        self
    }

    /// Delete an array (its block writes in this commit are dropped).
    pub fn delete_array(&mut self, id: ArrayId) -> &mut Self {
        self.arrays.insert(id, ArrayChange { state: ArrayState::Deleted, truncated_to: None });
        self
    }

    /// Write the full new content of one block.
    ///
    /// Only the 4 KiB pages that differ from the stored content are written (in place where the
    /// backend can) and kept in history: the store compares the new content with the current
    /// version, which it reads anyway to verify its checksum before it becomes history.
    pub fn write_block(&mut self, array: ArrayId, blk: u64, data: Vec<u8>) -> &mut Self {
        self.blocks.insert((array, blk), BlockData::Bytes(data));
        self
    }

    /// Like [`write_block`](Commit::write_block), with the content read from `source` when the
    /// commit stores the block (into a buffer the commit reuses).
    pub fn write_block_from(&mut self, array: ArrayId, blk: u64, source: impl BlockSource + 'static) -> &mut Self {
        self.blocks.insert((array, blk), BlockData::Source(Box::new(source)));
        self
    }

    /// Like [`write_block_from`](Commit::write_block_from) for a block of which only `pages`
    /// (4 KiB page indices) may differ from its content at the commit's base snapshot: the
    /// commit takes every other page from the stored version, so `source` copies only those.
    ///
    /// The caller must know the written pages exactly (the pager does: the kernel reports every
    /// first write to a page). A change outside `pages` would be lost; pages in `pages` that did
    /// not change cost nothing, since the store still compares the result with its version.
    pub fn write_pages_from(
        &mut self,
        array: ArrayId,
        blk: u64,
        pages: impl IntoIterator<Item = u32>,
        source: impl PageSource + 'static,
    ) -> &mut Self {
        let mut pages: Vec<u32> = pages.into_iter().collect();
        pages.sort_unstable();
        pages.dedup();
        self.blocks.insert((array, blk), BlockData::Pages(pages, Box::new(source)));
        self
    }

    /// Make the staged extent `staged` (from [`Store::stage`](crate::Store::stage) of the same
    /// store handle, holding `len` bytes of content) the new version of a block that has no
    /// stored content. Its bytes are not copied: the extent becomes the block's place.
    pub fn write_staged(&mut self, array: ArrayId, blk: u64, staged: &crate::types::Staged, len: u64) -> &mut Self {
        self.blocks.insert((array, blk), BlockData::Staged { off: staged.location.offset, len });
        self
    }

    /// True when the commit changes nothing (it still records a transaction).
    pub fn is_empty(&self) -> bool {
        self.arrays.is_empty() && self.blocks.is_empty()
    }

    /// Number of block writes.
    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }
}

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
    /// Bytes a backend rewrites at least when it updates part of a raw current version in place
    /// (SQLite: its page size), when it keeps pending patches; `None` when it does not.
    fn patch_granule(&self) -> Option<u64> {
        None
    }
    /// Keep `patch` (of commit `tid`, turning the block's newest version into content of
    /// `patch.len` bytes) as a pending patch instead of rewriting the block's current version.
    fn write_patch(&mut self, id: ArrayId, blk: u64, tid: Tid, patch: &Encoded) -> Result<()> {
        let _ = (id, blk, tid, patch);
        Err(Error::Invalid("this backend keeps no pending patches".into()))
    }
    /// Make the staged extent at `off` (holding `len` bytes) the current version of a block
    /// that has none.
    fn adopt_staged(&mut self, id: ArrayId, blk: u64, tid: Tid, off: u64, len: u64, blksize: u64) -> Result<()> {
        let _ = (id, blk, tid, off, len, blksize);
        Err(Error::Invalid("this backend stages no extents".into()))
    }
    /// Whether raw current versions are checked page by page (SQLite's data-file extents) or
    /// segment by segment (PostgreSQL) by the backend, so that no whole-content checksum is
    /// computed for them.
    fn checks_raw_pages(&self) -> bool {
        false
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
    /// The content of a block's stored payload, without its pending patches (verified).
    fn load_base(&mut self, id: ArrayId, blk: u64, buf: &mut [u8]) -> Result<()> {
        let _ = (id, blk, buf);
        Err(Error::Invalid("this backend keeps no pending patches".into()))
    }
    /// Replace a block's current version (`prev`, if any, with its pending patches) by `new`.
    fn write_current(
        &mut self,
        id: ArrayId,
        blk: u64,
        tid: Tid,
        prev: Option<&CurrentRow>,
        new: &CurrentWrite<'_>,
    ) -> Result<()>;
    fn set_head(&mut self, tid: Tid, time_us: i64) -> Result<()>;
    /// Whether the current version `cur` can be read and rewritten page by page
    /// ([`load_pages`](Self::load_pages), [`write_pages`](Self::write_pages)).
    fn rewrites_pages(&self, cur: &CurrentRow) -> bool {
        cur.extent.is_some()
    }
    /// Read only `pages` of a block's current version `cur` into their places in `buf` (a
    /// buffer of the block size; verified, zero beyond the content); `Ok(false)` when this
    /// backend cannot (the caller then reads the whole block).
    fn load_pages(&mut self, id: ArrayId, blk: u64, cur: &CurrentRow, pages: &[u32], buf: &mut [u8]) -> Result<bool> {
        let _ = (id, blk, cur, pages, buf);
        Ok(false)
    }
    /// Replace a block's current version `cur` by one that differs from it in the `changed`
    /// pages only: `old` and `new` hold those pages' bytes (block-size buffers), `len` bounds
    /// the new content (zeros from it on). Only for backends whose `load_pages` works.
    #[allow(clippy::too_many_arguments)]
    fn write_pages(
        &mut self,
        id: ArrayId,
        blk: u64,
        tid: Tid,
        cur: &CurrentRow,
        changed: &[u32],
        old: &[u8],
        new: &[u8],
        len: u64,
    ) -> Result<()> {
        let _ = (id, blk, tid, cur, changed, old, new, len);
        Err(Error::Invalid("this backend cannot write single pages".into()))
    }
}

fn check_len(array: ArrayId, blk: u64, len: usize, blksize: u64) -> Result<()> {
    if len as u64 > blksize {
        return Err(Error::Invalid(format!(
            "block {blk} of array {array}: {len} bytes written, block size is {blksize}"
        )));
    }
    Ok(())
}

/// Read a block's new content from its source into `buf` (reused).
fn read_source_into(
    array: ArrayId,
    blk: u64,
    src: &mut dyn BlockSource,
    blksize: u64,
    mut buf: Vec<u8>,
) -> Result<Vec<u8>> {
    buf.clear();
    src.read_into(&mut buf).map_err(|source| Error::BlockSource { array, blk, source })?;
    check_len(array, blk, buf.len(), blksize)?;
    Ok(buf)
}

/// Overlay the pages a page source provides on `buf` (`blksize` bytes). `buf` holds the block's
/// stored content, at least at `pages`; with `stored`, those pages are first copied from it
/// (zeros beyond its end), the rest of `buf` being scratch.
fn read_pages_into(
    array: ArrayId,
    blk: u64,
    pages: &[u32],
    src: &mut dyn PageSource,
    stored: Option<&[u8]>,
    buf: &mut [u8],
) -> Result<()> {
    if let Some(p) = pages.iter().find(|p| (**p as usize + 1) * block::PAGE > buf.len()) {
        return Err(Error::Invalid(format!("page {p} of block {blk} of array {array} lies beyond the block")));
    }
    if let Some(stored) = stored {
        for p in pages {
            let (start, end) = (*p as usize * block::PAGE, (*p as usize + 1) * block::PAGE);
            let have = stored.len().clamp(start, end);
            if have > start {
                buf[start..have].copy_from_slice(&stored[start..have]);
            }
            buf[have..end].fill(0);
        }
    }
    src.read_pages(pages, buf).map_err(|source| Error::BlockSource { array, blk, source })
}

fn read_source(array: ArrayId, blk: u64, src: &mut dyn BlockSource, blksize: u64) -> Result<Vec<u8>> {
    read_source_into(array, blk, src, blksize, Vec::new())
}

/// Largest number of conflicting items listed in a [`Conflict`].
const MAX_LISTED: usize = 32;

/// Validate metadata given for a new array version.
pub(crate) fn validate_meta(name: &str, meta: &ArrayMeta) -> Result<()> {
    if name.is_empty() {
        return Err(Error::Invalid("array name must not be empty".into()));
    }
    if !meta.blksize.is_power_of_two() || !(MIN_BLKSIZE..=MAX_BLKSIZE).contains(&meta.blksize) {
        return Err(Error::Invalid(format!(
            "block size {} of array '{name}' must be a power of two in {MIN_BLKSIZE}..={MAX_BLKSIZE}",
            meta.blksize
        )));
    }
    if let Codec::Zstd { level } = meta.codec {
        if !zstd::compression_level_range().contains(&level) {
            return Err(Error::Invalid(format!(
                "zstd level {level} of array '{name}' is outside {:?}",
                zstd::compression_level_range()
            )));
        }
    }
    if meta.dtype.is_empty() {
        return Err(Error::Invalid(format!("dtype of array '{name}' must not be empty")));
    }
    Ok(())
}

/// Record the undo record of commit `tid` for a block whose content was `old` (its current
/// version `cur`) and whose pages `changed` change.
#[allow(clippy::too_many_arguments)]
fn record_undo(
    txn: &mut dyn WriteTxn,
    id: ArrayId,
    blk: u64,
    tid: Tid,
    cur: Option<&CurrentRow>,
    old: &[u8],
    changed: &[u32],
    meta: &ArrayMeta,
) -> Result<()> {
    let prev_tid = cur.map_or(0, |c| c.tid);
    let prev_chain = match cur {
        Some(c) if !old.is_empty() => txn.undo_chain(id, blk, c.tid)?,
        _ => None,
    };
    let undo = block::encode_undo(id, blk, tid, old, changed, prev_tid, prev_chain, meta.codec);
    txn.insert_undo(id, blk, tid, &undo)
}

/// Store the new content `data` of a block (its pages `changed` differ from the current version
/// `cur`): as a pending patch when that pays, else as the new current version. `base` is a
/// reused buffer.
#[allow(clippy::too_many_arguments)]
fn store_new(
    txn: &mut dyn WriteTxn,
    id: ArrayId,
    blk: u64,
    tid: Tid,
    cur: Option<&CurrentRow>,
    data: &[u8],
    changed: &[u32],
    meta: &ArrayMeta,
    base: &mut Vec<u8>,
) -> Result<()> {
    if let Some(c) = cur.filter(|c| c.extent.is_none() && patch_pays(txn.patch_granule(), c, changed, data, meta)) {
        let patch = block::encode_patch(id, blk, tid, data, changed, c.tid, meta.codec);
        return txn.write_patch(id, blk, tid, &patch);
    }
    let enc = if meta.codec == Codec::None && txn.checks_raw_pages() {
        // Checked by the backend's page or segment checksums: no whole-content checksum.
        block::CurrentEnc {
            codec: block::CODEC_RAW,
            len: block::content_len(data) as u64,
            checksum: 0,
            compressed: None,
        }
    } else {
        block::encode_current(id, blk, tid, data, meta.codec)
    };
    // With pending patches, the stored payload differs from the new content in more pages than
    // `changed`: those are what an in-place rewrite writes.
    let vs_base: Vec<u32>;
    let changed = match cur {
        Some(c) if c.patches > 0 => {
            base.clear();
            base.resize(meta.blksize as usize, 0);
            txn.load_base(id, blk, base)?;
            base.truncate(c.base_len as usize);
            vs_base = block::changed_pages(base, data);
            &vs_base
        }
        _ => changed,
    };
    let new = CurrentWrite { data, enc, changed, blksize: meta.blksize, raw_array: meta.codec == Codec::None };
    txn.write_current(id, blk, tid, cur, &new)
}

/// Whether a commit that changes `changed` pages of a block (new content `data`) should keep them
/// as a pending patch rather than rewrite the current version `cur`: when the backend keeps
/// patches, the block keeps content, the changed pages lie in at least two of the database pages
/// an in-place rewrite would write and the patch takes at most half of those (a compressed
/// version is rewritten whole), and the block's pending patches stay within their bounds
/// (count, and a quarter of the block size: head reads stay cheap).
fn patch_pays(granule: Option<u64>, cur: &CurrentRow, changed: &[u32], data: &[u8], meta: &ArrayMeta) -> bool {
    let Some(granule) = granule else { return false };
    if cur.base_len == 0 || block::content_len(data) == 0 {
        return false;
    }
    let patch = block::page_record_bound(changed.len());
    if cur.patches >= block::MAX_PATCHES || cur.patch_bytes as u64 + patch > meta.blksize / block::PATCH_BUDGET_DIVISOR
    {
        return false;
    }
    if cur.codec != block::CODEC_RAW {
        // A compressed version is rewritten (and compressed) whole.
        return 2 * patch <= cur.base_len;
    }
    let per = (granule as usize / block::PAGE).max(1) as u32;
    let mut granules: Vec<u32> = changed.iter().map(|p| p / per).collect();
    granules.dedup();
    // Rewriting one database page in place is cheap enough: a patch would cost every cold
    // read of the block one more small read until it is merged.
    granules.len() >= 2 && 2 * patch <= granules.len() as u64 * granule
}

fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// Apply `commit` on top of snapshot `base` inside the backend's exclusive transaction.
/// On `Err` the caller rolls the transaction back: nothing is written.
pub(crate) fn apply(txn: &mut dyn WriteTxn, base: Tid, commit: Commit) -> Result<Tid> {
    {
        let arrays: BTreeSet<ArrayId> =
            commit.arrays.keys().chain(commit.blocks.keys().map(|(a, _)| a)).copied().collect();
        let arrays: Vec<ArrayId> = arrays.into_iter().collect();
        let blocks: Vec<(ArrayId, u64, Option<&[u32]>)> = commit
            .blocks
            .iter()
            .map(|((id, blk), d)| (*id, *blk, if let BlockData::Pages(p, _) = d { Some(p.as_slice()) } else { None }))
            .collect();
        txn.prepare(base, &arrays, &blocks)?;
    }
    let head = txn.head()?;
    if base > head.tid {
        return Err(Error::FutureTid { at: base, head: head.tid });
    }
    if base < head.horizon {
        return Err(Error::SnapshotGone { at: base, horizon: head.horizon });
    }
    let Commit { user, description, extension, arrays, mut blocks, by: _ } = commit;

    // The state at head of every array this commit touches.
    let mut at_head: HashMap<ArrayId, Option<ArrayVersion>> = HashMap::new();
    for id in arrays.keys().chain(blocks.keys().map(|(a, _)| a)) {
        if !at_head.contains_key(id) {
            let v = txn.array_at(*id, head.tid)?;
            at_head.insert(*id, v);
        }
    }
    let name_of = |id: &ArrayId, at_head: &HashMap<ArrayId, Option<ArrayVersion>>| -> String {
        if let Some(ArrayChange { state: ArrayState::Live { name, .. }, .. }) = arrays.get(id) {
            return name.clone();
        }
        match at_head.get(id) {
            Some(Some(ArrayVersion { state: Some((name, _)), .. })) => name.clone(),
            _ => id.to_string(),
        }
    };

    let mut conflicts: Vec<ConflictItem> = Vec::new();
    let (changed_blocks, changed_arrays) = txn.changed_since(base)?;
    let changed_arrays: HashMap<ArrayId, Tid> = changed_arrays.into_iter().collect();

    // Validate array changes and derive truncations (and where each truncated array is cut).
    let mut cuts: HashMap<ArrayId, u64> = HashMap::new();
    let mut extra_blocks: Vec<(ArrayId, u64, Vec<u8>)> = Vec::new();
    for (id, change) in &arrays {
        if let Some(tid) = changed_arrays.get(id) {
            conflicts.push(ConflictItem::Array { array: *id, name: name_of(id, &at_head), tid: *tid });
            continue;
        }
        let ArrayState::Live { name, meta } = &change.state else { continue };
        validate_meta(name, meta)?;
        if let Some(Some(ArrayVersion { state: None, .. })) = at_head.get(id) {
            return Err(Error::Invalid(format!("array {id} was deleted; array ids are never reused")));
        }
        let Some(Some(ArrayVersion { state: Some((_, old)), .. })) = at_head.get(id) else { continue };
        if old.blksize != meta.blksize {
            return Err(Error::Invalid(format!(
                "block size of array '{name}' cannot change ({} -> {})",
                old.blksize, meta.blksize
            )));
        }
        let cut = old.nbytes.min(meta.nbytes).min(change.truncated_to.unwrap_or(u64::MAX));
        if cut >= old.nbytes {
            continue;
        }
        cuts.insert(*id, cut);
        let bs = meta.blksize;
        for (blk, len) in txn.stored_blocks_from(*id, cut / bs)? {
            if blocks.contains_key(&(*id, blk)) {
                continue; // rewritten in full below
            }
            let keep = cut.saturating_sub(blk * bs);
            if keep >= len {
                continue;
            }
            let mut data = Vec::new();
            if keep > 0 {
                data = vec![0u8; bs as usize];
                txn.load(*id, blk, head.tid, &mut data)?;
                data.truncate(keep as usize);
            }
            extra_blocks.push((*id, blk, data));
        }
    }

    // Block writes: the array must exist after this commit, and the block lie within it.
    // Sources are read later, one at a time, and cut to `limit` then.
    let mut dropped = Vec::new();
    let mut limit: HashMap<(ArrayId, u64), usize> = HashMap::new();
    for ((id, blk), data) in blocks.iter_mut() {
        let meta = match arrays.get(id).map(|c| &c.state) {
            Some(ArrayState::Live { meta, .. }) => meta,
            Some(ArrayState::Deleted) => {
                dropped.push((*id, *blk));
                continue;
            }
            None => match at_head.get(id) {
                Some(Some(ArrayVersion { state: Some((_, meta)), .. })) => meta,
                Some(Some(ArrayVersion { tid, state: None })) if *tid > base => {
                    let name = match txn.array_at(*id, base)? {
                        Some(ArrayVersion { state: Some((name, _)), .. }) => name,
                        _ => id.to_string(),
                    };
                    conflicts.push(ConflictItem::Deleted { array: *id, name, tid: *tid });
                    continue;
                }
                _ => return Err(Error::NoSuchArray(*id)),
            },
        };
        let start = blk.saturating_mul(meta.blksize);
        let within = (meta.nbytes - start.min(meta.nbytes)).min(meta.blksize) as usize;
        if start >= meta.nbytes {
            // A write beyond the size only matters if it is not zeros: read a source now.
            match data {
                BlockData::Source(src) => *data = BlockData::Bytes(read_source(*id, *blk, src.as_mut(), meta.blksize)?),
                BlockData::Pages(pages, src) => {
                    let mut buf = vec![0u8; meta.blksize as usize];
                    read_pages_into(*id, *blk, pages, src.as_mut(), None, &mut buf)?;
                    *data = BlockData::Bytes(buf);
                }
                BlockData::Bytes(_) => {}
                BlockData::Staged { .. } => *data = BlockData::Bytes(Vec::new()),
            }
        }
        let BlockData::Bytes(bytes) = data else {
            limit.insert((*id, *blk), within);
            continue;
        };
        check_len(*id, *blk, bytes.len(), meta.blksize)?;
        if start >= meta.nbytes {
            if bytes.iter().all(|b| *b == 0) {
                dropped.push((*id, *blk));
                continue;
            }
            if let (None, Some(tid)) = (arrays.get(id), changed_arrays.get(id)) {
                // Another transaction shrank the array under this write.
                conflicts.push(ConflictItem::Array { array: *id, name: name_of(id, &at_head), tid: *tid });
                continue;
            }
            return Err(Error::Invalid(format!(
                "block {blk} of array {id} lies beyond its size of {} bytes",
                meta.nbytes
            )));
        }
        bytes.truncate(within);
    }
    for key in dropped {
        blocks.remove(&key);
    }
    for (id, blk, data) in extra_blocks {
        blocks.insert((id, blk), BlockData::Bytes(data));
    }

    // Block conflicts: first committer wins.
    if !changed_blocks.is_empty() {
        for (id, blk, tid) in &changed_blocks {
            if blocks.contains_key(&(*id, *blk)) {
                conflicts.push(ConflictItem::Block { array: *id, name: name_of(id, &at_head), blk: *blk, tid: *tid });
            }
        }
    }

    // Names: unique among live arrays after the commit.
    let mut claimed: BTreeMap<&str, ArrayId> = BTreeMap::new();
    for (id, change) in &arrays {
        if let ArrayState::Live { name, .. } = &change.state {
            if let Some(other) = claimed.insert(name.as_str(), *id) {
                return Err(Error::Invalid(format!("two arrays ({other} and {id}) named '{name}' in one commit")));
            }
        }
    }
    if !claimed.is_empty() {
        let changed: BTreeSet<ArrayId> = arrays.keys().copied().collect();
        for info in txn.live_arrays(head.tid)? {
            if changed.contains(&info.id) {
                continue;
            }
            if claimed.contains_key(info.name.as_str()) {
                if info.tid > base {
                    conflicts.push(ConflictItem::Name { name: info.name.clone(), tid: info.tid });
                } else {
                    return Err(Error::NameTaken(info.name));
                }
            }
        }
    }

    if !conflicts.is_empty() {
        let total = conflicts.len();
        conflicts.truncate(MAX_LISTED);
        return Err(Error::Conflict(Conflict { base, items: conflicts, total }));
    }

    let tid = head.tid + 1;
    let time_us = now_us().max(head.time_us);
    txn.insert_txn(&TxnInfo { tid, time_us, user, description, extension })?;
    for (id, change) in &arrays {
        let state = match &change.state {
            ArrayState::Live { name, meta } => Some((name.as_str(), meta)),
            ArrayState::Deleted => None,
        };
        txn.insert_array_version(*id, tid, state)?;
    }
    // Each changed block: its undo record (the previous bytes of the pages that change), then
    // the new current version. A write that changes nothing leaves no version.
    let mut old = Vec::new();
    let mut from_source = Vec::new();
    let mut base = Vec::new();
    for ((id, blk), data) in blocks.iter_mut() {
        let meta = match arrays.get(id).map(|c| &c.state) {
            Some(ArrayState::Live { meta, .. }) => meta,
            _ => match at_head.get(id) {
                Some(Some(ArrayVersion { state: Some((_, meta)), .. })) => meta,
                _ => return Err(Error::NoSuchArray(*id)),
            },
        };
        let cur = txn.current(*id, *blk)?;
        let limit = limit.get(&(*id, *blk)).copied().unwrap_or(0);
        if let BlockData::Staged { off, len } = data {
            // (A shrink in this commit only rewrites blocks that held content: never this one.)
            if cur.is_some_and(|c| c.len > 0) || meta.codec != Codec::None {
                return Err(Error::Invalid(format!(
                    "block {blk} of array {id}: a staged extent can only become a block without stored content"
                )));
            }
            record_undo(txn, *id, *blk, tid, cur.as_ref(), &[], &[], meta)?;
            txn.adopt_staged(*id, *blk, tid, *off, (*len).min(limit as u64), meta.blksize)?;
            continue;
        }
        if let (BlockData::Pages(pages, src), Some(c)) = (&mut *data, cur.as_ref()) {
            if txn.rewrites_pages(c) && c.len > 0 && !cuts.contains_key(id) {
                let bs = meta.blksize as usize;
                // Only the pages in `pages` of these buffers are used, and each is filled before
                // use: no need to clear them (a block's worth of memset per block otherwise).
                old.resize(bs, 0);
                if txn.load_pages(*id, *blk, c, pages, &mut old)? {
                    // Only the written pages are read, compared and written: no whole block.
                    from_source.resize(bs, 0);
                    read_pages_into(*id, *blk, pages, src.as_mut(), Some(&old), &mut from_source)?;
                    for p in pages.iter() {
                        let (a, b) = (*p as usize * block::PAGE, (*p as usize + 1) * block::PAGE);
                        if b > limit {
                            from_source[a.max(limit)..b].fill(0);
                        }
                    }
                    let changed = block::changed_pages_of(&old, &from_source, pages);
                    if changed.is_empty() {
                        continue;
                    }
                    let mut len = c.len as usize;
                    for p in &changed {
                        let a = *p as usize * block::PAGE;
                        let n = block::content_len(&from_source[a..a + block::PAGE]);
                        if n > 0 {
                            len = len.max(a + n);
                        }
                    }
                    let chain = txn.undo_chain(*id, *blk, c.tid)?;
                    let undo = block::encode_undo_diff(
                        *id,
                        *blk,
                        tid,
                        &old,
                        c.len as usize,
                        &from_source,
                        &changed,
                        c.tid,
                        chain,
                        meta.codec,
                    );
                    match undo {
                        Some(u) => txn.insert_undo(*id, *blk, tid, &u)?,
                        None => {
                            // A checkpoint: the whole previous version.
                            let mut whole = vec![0u8; bs];
                            txn.load(*id, *blk, head.tid, &mut whole)?;
                            whole.truncate(c.len as usize);
                            record_undo(txn, *id, *blk, tid, Some(c), &whole, &changed, meta)?;
                        }
                    }
                    txn.write_pages(*id, *blk, tid, c, &changed, &old, &from_source, len as u64)?;
                    continue;
                }
            }
        }
        old.clear();
        if let Some(c) = cur.filter(|c| c.len > 0) {
            // Verified against its checksum before any of it becomes history.
            old.resize(meta.blksize as usize, 0);
            txn.load(*id, *blk, head.tid, &mut old)?;
            old.truncate(c.len as usize);
        }
        let changed;
        let data: &[u8] = match data {
            BlockData::Pages(pages, src) if old.is_empty() => {
                // No stored content (a new block): zeros with the pages written.
                from_source.clear();
                from_source.resize(meta.blksize as usize, 0);
                read_pages_into(*id, *blk, pages, src.as_mut(), None, &mut from_source)?;
                from_source.truncate(limit);
                &from_source
            }
            BlockData::Pages(pages, src) if !cuts.contains_key(id) => {
                // The written pages land in a scratch buffer and are compared with the stored
                // content there; only the changed ones are copied over it, after the undo
                // record took their old bytes (no copy of the whole block).
                // The source sees the stored content at its pages (it may write part of one).
                from_source.resize(meta.blksize as usize, 0);
                read_pages_into(*id, *blk, pages, src.as_mut(), Some(&old), &mut from_source)?;
                changed = block::changed_pages_of(&old, &from_source[..limit], pages);
                if changed.is_empty() {
                    continue;
                }
                record_undo(txn, *id, *blk, tid, cur.as_ref(), &old, &changed, meta)?;
                old.resize(limit.max(old.len()), 0);
                for p in &changed {
                    let start = *p as usize * block::PAGE;
                    let end = (start + block::PAGE).min(limit);
                    old[start..end].copy_from_slice(&from_source[start..end]);
                }
                old.truncate(limit);
                store_new(txn, *id, *blk, tid, cur.as_ref(), &old, &changed, meta, &mut base)?;
                continue;
            }
            BlockData::Pages(pages, src) => {
                // In a truncated array: the stored content cut, with the pages written.
                from_source.clear();
                from_source.extend_from_slice(&old);
                from_source.resize(meta.blksize as usize, 0);
                if let Some(cut) = cuts.get(id) {
                    let keep = cut.saturating_sub(blk * meta.blksize).min(meta.blksize) as usize;
                    from_source[keep..].fill(0);
                }
                read_pages_into(*id, *blk, pages, src.as_mut(), None, &mut from_source)?;
                from_source.truncate(limit);
                &from_source
            }
            BlockData::Bytes(bytes) => bytes,
            BlockData::Staged { .. } => unreachable!("staged blocks are adopted above"),
            BlockData::Source(src) => {
                from_source = read_source_into(*id, *blk, src.as_mut(), meta.blksize, from_source)?;
                from_source.truncate(limit);
                &from_source
            }
        };
        changed = block::changed_pages(&old, data);
        if changed.is_empty() {
            continue;
        }
        record_undo(txn, *id, *blk, tid, cur.as_ref(), &old, &changed, meta)?;
        store_new(txn, *id, *blk, tid, cur.as_ref(), data, &changed, meta, &mut base)?;
    }
    txn.set_head(tid, time_us)?;
    Ok(tid)
}
