//! The plan of a commit: the state at head of what it touches, its validation, its conflicts
//! (first committer wins), and what each block write becomes (cut to its array, dropped, or
//! added by a truncation). Nothing is written here.

use super::sources::{check_len, read_pages_into, read_source};
use super::txn::{ArrayVersion, Head, WriteTxn};
use super::{ArrayChange, ArrayState, BlockData, Commit};
use crate::error::{Conflict, ConflictItem, Error, Result};
use crate::types::{ArrayId, ArrayMeta, Codec, Tid, MAX_BLKSIZE, MIN_BLKSIZE};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Largest number of conflicting items listed in a [`Conflict`].
const MAX_LISTED: usize = 32;

/// Validate metadata given for a new array version.
fn validate_meta(name: &str, meta: &ArrayMeta) -> Result<()> {
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

/// A validated commit, ready to write.
pub(super) struct Plan {
    /// The snapshot the commit was made on.
    pub base: Tid,
    /// The head row when the commit started (its tid will be `head.tid + 1`).
    pub head: Head,
    /// The commit's array changes.
    pub arrays: BTreeMap<ArrayId, ArrayChange>,
    /// The block writes that remain (sources not read yet, bytes cut to their arrays).
    pub blocks: BTreeMap<(ArrayId, u64), BlockData>,
    /// Arrays truncated by this commit, with where each is cut.
    pub cuts: HashMap<ArrayId, u64>,
    /// The bytes of each written block within its array (absent: the whole write).
    pub limit: HashMap<(ArrayId, u64), usize>,
    /// Blocks the plan added (the rest of blocks a truncation cuts), not the commit's own.
    added: Vec<(ArrayId, u64)>,
    /// The commit's block writes the plan dropped (zeros beyond an array, blocks of a deleted
    /// array), kept to be given back with the others.
    dropped: Vec<((ArrayId, u64), BlockData)>,
    /// The state at head of every array this commit touches.
    at_head: HashMap<ArrayId, Option<ArrayVersion>>,
    /// Arrays changed since `base`, with the newest such tid.
    changed_arrays: HashMap<ArrayId, Tid>,
    conflicts: Vec<ConflictItem>,
}

impl Plan {
    /// Read what the commit depends on and check it: `Conflict` (with every conflicting item,
    /// up to [`MAX_LISTED`]) or another error when it cannot be committed.
    pub fn make(txn: &mut dyn WriteTxn, base: Tid, commit: &mut Commit) -> Result<Plan> {
        announce(txn, base, commit)?;
        let head = txn.head()?;
        if base > head.tid {
            return Err(Error::FutureTid { at: base, head: head.tid });
        }
        if base < head.horizon {
            return Err(Error::SnapshotGone { at: base, horizon: head.horizon });
        }
        let arrays = commit.arrays.clone();
        let blocks = std::mem::take(&mut commit.blocks);
        let mut at_head = HashMap::new();
        for id in arrays.keys().chain(blocks.keys().map(|(a, _)| a)) {
            if !at_head.contains_key(id) {
                at_head.insert(*id, txn.array_at(*id, head.tid)?);
            }
        }
        let (changed_blocks, changed_arrays) = txn.changed_since(base)?;
        let mut plan = Plan {
            base,
            head,
            arrays,
            blocks,
            cuts: HashMap::new(),
            limit: HashMap::new(),
            added: Vec::new(),
            dropped: Vec::new(),
            at_head,
            changed_arrays: changed_arrays.into_iter().collect(),
            conflicts: Vec::new(),
        };
        let cut_blocks = plan.check_arrays(txn)?;
        plan.check_blocks(txn)?;
        for (id, blk, data) in cut_blocks {
            plan.added.push((id, blk));
            plan.blocks.insert((id, blk), BlockData::Bytes(data));
        }
        for (id, blk, tid) in changed_blocks {
            if plan.blocks.contains_key(&(id, blk)) {
                let name = plan.name_of(id);
                plan.conflicts.push(ConflictItem::Block { array: id, name, blk, tid });
            }
        }
        plan.check_names(txn)?;
        if !plan.conflicts.is_empty() {
            let mut items = std::mem::take(&mut plan.conflicts);
            let total = items.len();
            items.truncate(MAX_LISTED);
            return Err(Error::Conflict(Conflict { base, items, total }));
        }
        Ok(plan)
    }

    /// The array's name after the commit, else at head, else its id.
    fn name_of(&self, id: ArrayId) -> String {
        if let Some(ArrayChange { state: ArrayState::Live { name, .. }, .. }) = self.arrays.get(&id) {
            return name.clone();
        }
        match self.at_head.get(&id) {
            Some(Some(ArrayVersion { state: Some((name, _)), .. })) => name.clone(),
            _ => id.to_string(),
        }
    }

    /// The array's metadata after the commit (`None` when it is deleted or does not exist).
    pub fn meta_of(&self, id: ArrayId) -> Option<&ArrayMeta> {
        match self.arrays.get(&id).map(|c| &c.state) {
            Some(ArrayState::Live { meta, .. }) => Some(meta),
            Some(ArrayState::Deleted) => None,
            None => match self.at_head.get(&id) {
                Some(Some(ArrayVersion { state: Some((_, meta)), .. })) => Some(meta),
                _ => None,
            },
        }
    }

    /// Give the commit's own block writes back to `commit` (after its blocks were written), as
    /// it gave them: a backend that retries the commit plans it again from them.
    pub fn give_back(&mut self, mut blocks: BTreeMap<(ArrayId, u64), BlockData>, commit: &mut Commit) {
        for key in &self.added {
            blocks.remove(key);
        }
        blocks.extend(std::mem::take(&mut self.dropped));
        commit.blocks = blocks;
    }

    /// Validate the array changes and find the truncations: where each shrunk array is cut,
    /// and the blocks the cut rewrites (their content kept up to the cut), returned.
    fn check_arrays(&mut self, txn: &mut dyn WriteTxn) -> Result<Vec<(ArrayId, u64, Vec<u8>)>> {
        let mut cut_blocks = Vec::new();
        for (id, change) in &self.arrays {
            if let Some(tid) = self.changed_arrays.get(id) {
                self.conflicts.push(ConflictItem::Array { array: *id, name: self.name_of(*id), tid: *tid });
                continue;
            }
            let ArrayState::Live { name, meta } = &change.state else { continue };
            validate_meta(name, meta)?;
            let old = match self.at_head.get(id) {
                Some(Some(ArrayVersion { state: None, .. })) => {
                    return Err(Error::Invalid(format!("array {id} was deleted; array ids are never reused")))
                }
                Some(Some(ArrayVersion { state: Some((_, old)), .. })) => old,
                _ => continue,
            };
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
            self.cuts.insert(*id, cut);
            let bs = meta.blksize;
            for (blk, len) in txn.stored_blocks_from(*id, cut / bs)? {
                if self.blocks.contains_key(&(*id, blk)) {
                    continue; // rewritten in full by the commit
                }
                let keep = cut.saturating_sub(blk * bs);
                if keep >= len {
                    continue;
                }
                let mut data = Vec::new();
                if keep > 0 {
                    data = vec![0u8; bs as usize];
                    txn.load(*id, blk, self.head.tid, &mut data)?;
                    data.truncate(keep as usize);
                }
                cut_blocks.push((*id, blk, data));
            }
        }
        Ok(cut_blocks)
    }

    /// Block writes: the array must exist after this commit, and the block lie within it.
    /// Sources are read later, one at a time, and cut to [`limit`](Self::limit) then; writes of
    /// zeros beyond the array's size are dropped.
    fn check_blocks(&mut self, txn: &mut dyn WriteTxn) -> Result<()> {
        let mut blocks = std::mem::take(&mut self.blocks);
        let mut dropped = Vec::new();
        for ((id, blk), data) in blocks.iter_mut() {
            let size = match self.meta_of(*id) {
                Some(meta) => (meta.blksize, meta.nbytes),
                None if matches!(self.arrays.get(id), Some(c) if c.state == ArrayState::Deleted) => {
                    dropped.push((*id, *blk));
                    continue;
                }
                None => match self.at_head.get(id) {
                    Some(Some(ArrayVersion { tid, state: None })) if *tid > self.base => {
                        let name = match txn.array_at(*id, self.base)? {
                            Some(ArrayVersion { state: Some((name, _)), .. }) => name,
                            _ => id.to_string(),
                        };
                        self.conflicts.push(ConflictItem::Deleted { array: *id, name, tid: *tid });
                        continue;
                    }
                    _ => return Err(Error::NoSuchArray(*id)),
                },
            };
            if !self.check_block(*id, *blk, data, size)? {
                dropped.push((*id, *blk));
            }
        }
        for key in dropped {
            if let Some(data) = blocks.remove(&key) {
                self.dropped.push((key, data));
            }
        }
        self.blocks = blocks;
        Ok(())
    }

    /// Check one block write against its array's block size and size; `false` when it is to be
    /// dropped.
    fn check_block(&mut self, id: ArrayId, blk: u64, data: &mut BlockData, (bs, nbytes): (u64, u64)) -> Result<bool> {
        let start = blk.saturating_mul(bs);
        let within = (nbytes - start.min(nbytes)).min(bs) as usize;
        if start >= nbytes {
            // A write beyond the size only matters if it is not zeros: read a source now.
            match data {
                BlockData::Source(src) => *data = BlockData::Bytes(read_source(id, blk, src.as_mut(), bs)?),
                BlockData::Pages(pages, src) => {
                    let mut buf = vec![0u8; bs as usize];
                    read_pages_into(id, blk, pages, src.as_mut(), None, &mut buf)?;
                    *data = BlockData::Bytes(buf);
                }
                BlockData::Bytes(_) => {}
                BlockData::Staged { .. } => *data = BlockData::Bytes(Vec::new()),
            }
        }
        let BlockData::Bytes(bytes) = data else {
            self.limit.insert((id, blk), within);
            return Ok(true);
        };
        check_len(id, blk, bytes.len(), bs)?;
        if start < nbytes {
            self.limit.insert((id, blk), within);
            return Ok(true);
        }
        if bytes.iter().all(|b| *b == 0) {
            return Ok(false);
        }
        if let (None, Some(tid)) = (self.arrays.get(&id), self.changed_arrays.get(&id)) {
            // Another transaction shrank the array under this write.
            self.conflicts.push(ConflictItem::Array { array: id, name: self.name_of(id), tid: *tid });
            return Ok(true);
        }
        Err(Error::Invalid(format!("block {blk} of array {id} lies beyond its size of {nbytes} bytes")))
    }

    /// Names: unique among live arrays after the commit.
    fn check_names(&mut self, txn: &mut dyn WriteTxn) -> Result<()> {
        let mut claimed: BTreeMap<&str, ArrayId> = BTreeMap::new();
        for (id, change) in &self.arrays {
            if let ArrayState::Live { name, .. } = &change.state {
                if let Some(other) = claimed.insert(name.as_str(), *id) {
                    return Err(Error::Invalid(format!("two arrays ({other} and {id}) named '{name}' in one commit")));
                }
            }
        }
        if claimed.is_empty() {
            return Ok(());
        }
        for info in txn.live_arrays(self.head.tid)? {
            if self.arrays.contains_key(&info.id) || !claimed.contains_key(info.name.as_str()) {
                continue;
            }
            if info.tid <= self.base {
                return Err(Error::NameTaken(info.name));
            }
            self.conflicts.push(ConflictItem::Name { name: info.name.clone(), tid: info.tid });
        }
        Ok(())
    }
}

/// Tell the backend what the commit will read, before its first read (a backend that pays per
/// round trip reads it all at once).
fn announce(txn: &mut dyn WriteTxn, base: Tid, commit: &Commit) -> Result<()> {
    let arrays: BTreeSet<ArrayId> = commit.arrays.keys().chain(commit.blocks.keys().map(|(a, _)| a)).copied().collect();
    let arrays: Vec<ArrayId> = arrays.into_iter().collect();
    let blocks: Vec<(ArrayId, u64, Option<&[u32]>)> = commit
        .blocks
        .iter()
        .map(|((id, blk), d)| (*id, *blk, if let BlockData::Pages(p, _) = d { Some(p.as_slice()) } else { None }))
        .collect();
    txn.prepare(base, &arrays, &blocks)
}
