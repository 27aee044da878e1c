//! A commit request and the one commit algorithm shared by every backend: the request
//! ([`Commit`]), its plan (`plan`: heads, validation, truncations, conflicts), and the writing
//! of its blocks (`write`) through what a backend offers inside its commit transaction (`txn`).

mod plan;
mod sources;
mod txn;
mod write;

pub(crate) use txn::{
    ArrayVersion, ChangedSets, CurrentRow, CurrentWrite, ExtentTxn, Head, PageWrite, PatchTxn, WriteTxn,
};

use crate::error::{Error, Result};
use crate::types::{ArrayId, ArrayMeta, Tid, TxnInfo};
use std::collections::BTreeMap;
use write::{BlockWriter, Target};

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
    ///
    /// A backend may call it again for the same commit (PostgreSQL retries a commit when what it
    /// read changed before its writes landed): each call gives the same content.
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
    ///
    /// As [`BlockSource::read_into`], it may be called again for the same commit.
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

fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// Apply `commit` on top of snapshot `base` inside the backend's exclusive transaction.
/// On `Err` the caller rolls the transaction back: nothing is written.
///
/// When it succeeds, `commit` holds its writes again as it gave them (a backend may retry it
/// when what it read changed before its writes landed: PostgreSQL); a failure may consume them.
pub(crate) fn apply(txn: &mut dyn WriteTxn, base: Tid, commit: &mut Commit) -> Result<Tid> {
    let mut plan = plan::Plan::make(txn, base, commit)?;
    let mut blocks = std::mem::take(&mut plan.blocks);
    let written = write_planned(txn, &plan, &mut blocks, commit);
    plan.give_back(blocks, commit);
    written
}

/// Write the commit `plan` with its `blocks`.
fn write_planned(
    txn: &mut dyn WriteTxn,
    plan: &plan::Plan,
    blocks: &mut BTreeMap<(ArrayId, u64), BlockData>,
    commit: &Commit,
) -> Result<Tid> {
    let tid = plan.head.tid + 1;
    let time_us = now_us().max(plan.head.time_us);
    let (user, description, extension) = (commit.user.clone(), commit.description.clone(), commit.extension.clone());
    txn.insert_txn(&TxnInfo { tid, time_us, user, description, extension })?;
    for (id, change) in &plan.arrays {
        let state = match &change.state {
            ArrayState::Live { name, meta } => Some((name.as_str(), meta)),
            ArrayState::Deleted => None,
        };
        txn.insert_array_version(*id, tid, state)?;
    }
    let mut writer = BlockWriter::new(txn, tid, plan.head.tid);
    for ((id, blk), data) in blocks.iter_mut() {
        let meta = plan.meta_of(*id).ok_or(Error::NoSuchArray(*id))?;
        let cur = writer.current(*id, *blk)?;
        let limit = plan.limit.get(&(*id, *blk)).copied().unwrap_or(usize::MAX);
        let t = Target { id: *id, blk: *blk, meta, cur, limit, cut: plan.cuts.get(id).copied() };
        writer.write(&t, data)?;
    }
    txn.set_head(tid, time_us)?;
    Ok(tid)
}
