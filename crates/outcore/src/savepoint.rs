//! Savepoints: roll a transaction back to an earlier point without ending it.
//!
//! A savepoint copies the content of every dirty block of the connection's open arrays, their
//! sizes and the transaction's metadata changes (so it costs memory in proportion to the dirty
//! data). Rolling back restores all of it: blocks first written after the savepoint revert to
//! their committed content, blocks dirty at the savepoint get its content back, and names,
//! shapes, creations and deletions return to what they were. A savepoint stays usable for
//! several rollbacks until the transaction ends (commit or abort).

use crate::connection::{Change, ConnShared, Connection};
use crate::error::{Error, Result};
use crate::mem::BytesViewMut;
use outcore_store::ArrayId;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// The saved state of one open array.
struct SavedFile {
    size: u64,
    zero_from: u64,
    /// Dirty blocks at the savepoint (staged ones included) and their content.
    blocks: BTreeMap<u64, Vec<u8>>,
    /// Blocks staged at the savepoint (appended into staged extents).
    staged: BTreeSet<u64>,
}

/// A point inside a transaction to roll back to; see [`Connection::savepoint`].
pub struct Savepoint {
    shared: Arc<ConnShared>,
    generation: u64,
    txn: BTreeMap<ArrayId, Change>,
    created: BTreeSet<ArrayId>,
    truncated: HashMap<ArrayId, u64>,
    files: HashMap<ArrayId, SavedFile>,
}

impl std::fmt::Debug for Savepoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes: usize = self.files.values().flat_map(|f| f.blocks.values()).map(Vec::len).sum();
        f.debug_struct("Savepoint").field("arrays", &self.files.len()).field("saved_bytes", &bytes).finish()
    }
}

impl Connection {
    /// Marks the current state of the transaction, to return to with [`Savepoint::rollback`].
    pub fn savepoint(&self) -> Result<Savepoint> {
        let st = self.shared.lock();
        st.check_writable("savepoint")?;
        let mut files = HashMap::new();
        for (id, oa) in &st.open {
            let bs = oa.file.blksize();
            let mut blocks = BTreeMap::new();
            let staged: BTreeSet<u64> = oa.source.staged_blocks().into_keys().collect();
            for blk in oa.file.dirty()?.into_iter().map(|d| d.blk).chain(staged.iter().copied()) {
                if let std::collections::btree_map::Entry::Vacant(e) = blocks.entry(blk) {
                    let mut buf = vec![0u8; bs];
                    oa.file.read_block(blk, &mut buf)?;
                    e.insert(buf);
                }
            }
            files.insert(*id, SavedFile { size: oa.file.size(), zero_from: oa.source.zero_from(), blocks, staged });
        }
        Ok(Savepoint {
            shared: self.shared.clone(),
            generation: st.generation,
            txn: st.txn.clone(),
            created: st.created.clone(),
            truncated: st.truncated.clone(),
            files,
        })
    }
}

impl Savepoint {
    /// Returns the transaction to this savepoint. Fails once the transaction has ended.
    pub fn rollback(&self) -> Result<()> {
        let mut st = self.shared.lock();
        st.check_writable("rollback to a savepoint")?;
        if st.generation != self.generation {
            return Err(Error::InvalidArgument("this savepoint's transaction has ended".into()));
        }
        for (id, oa) in &st.open {
            let saved = self.files.get(id);
            let bs = oa.file.blksize() as u64;
            // Blocks staged since the savepoint go back to what they were (no stored content).
            let since: Vec<u64> =
                oa.source.staged_blocks().into_keys().filter(|b| saved.is_none_or(|s| !s.staged.contains(b))).collect();
            for (_, staged) in oa.source.take_staged(since.iter().copied()) {
                if let Err(e) = self.shared.db.inner.store.release_staged(&staged) {
                    tracing::warn!("releasing a staged extent: {e}");
                }
            }
            oa.file.invalidate(&since)?;
            // Blocks written since the savepoint (and not dirty at it) go back to committed data.
            let revert: Vec<u64> = oa
                .file
                .dirty()?
                .into_iter()
                .map(|d| d.blk)
                .filter(|b| saved.is_none_or(|s| !s.blocks.contains_key(b)))
                .collect();
            let (size, zero_from) = match saved {
                Some(s) => (s.size, s.zero_from),
                None => (oa.committed_nbytes(), oa.committed_nbytes()),
            };
            // The source describes the savepoint's state before blocks reload (or are remapped)
            // from it.
            let now_zero = oa.source.zero_from();
            oa.source.reset(zero_from);
            oa.file.invalidate(&revert)?;
            // Blocks that loaded as zeros because of a shrink after the savepoint reload.
            if now_zero < zero_from {
                let end = oa.file.size().max(size).div_ceil(bs);
                let blks: Vec<u64> =
                    (now_zero / bs..end).filter(|b| saved.is_none_or(|s| !s.blocks.contains_key(b))).collect();
                oa.file.invalidate(&blks)?;
            }
            oa.file.set_size(size)?;
            // Dirty blocks at the savepoint get its content back (changed pages only, so only
            // those stay dirty).
            let Some(saved) = saved else { continue };
            for (&blk, content) in &saved.blocks {
                let view = oa.file.map(blk..blk + 1)?;
                let mut mem = BytesViewMut::new(Some(view), 0, bs as usize)?;
                let mem = mem.as_mut_slice();
                for (now, then) in mem.chunks_mut(4096).zip(content.chunks(4096)) {
                    if now != then {
                        now.copy_from_slice(then);
                    }
                }
            }
        }
        st.txn = self.txn.clone();
        st.created = self.created.clone();
        st.truncated = self.truncated.clone();
        Ok(())
    }
}
