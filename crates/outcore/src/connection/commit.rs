//! Building one store commit from a connection's transaction (its metadata changes, the written
//! pages and staged blocks of every open array), and what the connection does with the blocks
//! once the store took it or refused it.

use std::collections::BTreeMap;

use outcore_pager::{DirtyBlock, PAGE};
use outcore_store::{ArrayId, Commit, Staged, Store, Tid};

use super::{BoxError, Change, CommitInfo, ConnState, OpenArray};
use crate::error::Result;

/// Block numbers per array.
type Blocks = Vec<(ArrayId, Vec<u64>)>;

/// One commit being built, and the blocks the connection handles after it.
pub(super) struct CommitPlan {
    /// What goes to the store.
    pub commit: Commit,
    /// Written blocks of live arrays: marked clean (remapped) once committed.
    written: Blocks,
    /// Written blocks beyond an array's size, or of an array deleted: dropped (invalidated).
    stray: Blocks,
    /// Staged blocks (appends) committed where they are.
    adopted: Blocks,
    /// Staged extents no block will use (beyond the end, or of deleted arrays): released.
    unused: Blocks,
}

impl CommitPlan {
    /// A commit recorded with `info` holding the transaction's metadata changes (and the
    /// smallest size of each array that shrank).
    pub fn new(st: &ConnState, info: CommitInfo) -> Self {
        let mut commit = Commit::new()
            .with_user(info.user)
            .with_description(info.description)
            .with_extension(info.extension)
            .by(&st.snapshot);
        for (id, change) in &st.txn {
            match change {
                Change::Live { name, meta } => {
                    commit.put_array(*id, name.clone(), meta.clone());
                    if let Some(t) = st.truncated.get(id) {
                        commit.truncate(*id, *t);
                    }
                }
                Change::Deleted => {
                    commit.delete_array(*id);
                }
            }
        }
        CommitPlan { commit, written: Vec::new(), stray: Vec::new(), adopted: Vec::new(), unused: Vec::new() }
    }

    /// Adds the written and staged blocks of every open array.
    pub fn add_blocks(&mut self, st: &ConnState, store: &dyn Store) -> Result<()> {
        for (id, oa) in &st.open {
            let dirty = oa.file.dirty()?;
            let staged = oa.source.staged_blocks();
            if dirty.is_empty() && staged.is_empty() {
                continue;
            }
            match st.current(*id) {
                Some((_, meta)) => {
                    let array = LiveArray { id: *id, oa, nbytes: meta.nbytes, bs: oa.file.blksize() };
                    self.add_array(store, &array, dirty, staged)?;
                }
                None => {
                    self.stray.push((*id, dirty.iter().map(|d| d.blk).collect()));
                    self.unused.push((*id, staged.into_keys().collect()));
                }
            }
        }
        Ok(())
    }

    /// Adds the blocks of live array `id`: its staged blocks, then the blocks written through
    /// views (those within its size).
    fn add_array(
        &mut self,
        store: &dyn Store,
        array: &LiveArray<'_>,
        mut dirty: Vec<DirtyBlock>,
        staged: BTreeMap<u64, (Staged, u64)>,
    ) -> Result<()> {
        let id = array.id;
        let (mut took, mut left) = (Vec::new(), Vec::new());
        for (blk, ext) in &staged {
            match array.len(*blk) {
                Some(len) => {
                    array.finish_staged(store, *blk, ext, len, &dirty)?;
                    self.commit.write_staged(id, *blk, &ext.0, len as u64);
                    took.push(*blk);
                }
                None => left.push(*blk),
            }
        }
        dirty.retain(|d| !staged.contains_key(&d.blk));
        let mut ok = took.clone();
        let mut beyond = Vec::new();
        for d in dirty {
            match array.len(d.blk) {
                Some(len) => {
                    array.write_pages(&mut self.commit, &d, len);
                    ok.push(d.blk);
                }
                None => beyond.push(d.blk),
            }
        }
        self.adopted.push((id, took));
        self.unused.push((id, left));
        self.written.push((id, ok));
        if !beyond.is_empty() {
            self.stray.push((id, beyond));
        }
        Ok(())
    }

    /// Releases the staged extents no block will use.
    pub fn release_unused(&self, st: &ConnState, store: &dyn Store) {
        for (id, blks) in &self.unused {
            if let Some(oa) = st.open.get(id) {
                for (_, staged) in oa.source.take_staged(blks.iter().copied()) {
                    if let Err(e) = store.release_staged(&staged) {
                        tracing::warn!("releasing a staged extent: {e}");
                    }
                }
            }
        }
    }

    /// Drops the stray written blocks (nothing was committed).
    pub fn drop_stray(&self, st: &ConnState) -> Result<()> {
        invalidate(st, &self.stray)
    }

    /// After the store committed `tid`: the adopted staged blocks are the store's, the unused
    /// ones are released, and the transaction's changes become the committed state.
    pub fn settle(&self, st: &mut ConnState, store: &dyn Store, base: Tid, tid: Tid) {
        // Adopted staged extents are now where the store locates those blocks.
        for (id, blks) in &self.adopted {
            if let Some(oa) = st.open.get(id) {
                oa.source.take_staged(blks.iter().copied());
            }
        }
        self.release_unused(st, store);
        tracing::debug!(base, tid, arrays = st.txn.len(), "committed");
        let txn = std::mem::take(&mut st.txn);
        for (id, change) in txn {
            if let Some(oa) = st.open.get_mut(&id) {
                oa.committed = match change {
                    Change::Live { name, meta } => Some((name, meta)),
                    Change::Deleted => None,
                };
            }
        }
        st.created.clear();
        st.truncated.clear();
        for oa in st.open.values() {
            oa.source.reset(oa.committed_nbytes());
        }
    }

    /// Marks the committed blocks clean (the page-cache engine remaps them) and drops the
    /// stray ones; only once the sources describe the committed state (see [`settle`](Self::settle)).
    pub fn remap(&self, st: &ConnState) -> Result<()> {
        for (id, blks) in &self.written {
            if let Some(oa) = st.open.get(id) {
                oa.file.mark_clean(blks)?;
            }
        }
        invalidate(st, &self.stray)
    }
}

/// Invalidates `blocks` of the open arrays.
fn invalidate(st: &ConnState, blocks: &Blocks) -> Result<()> {
    for (id, blks) in blocks {
        if let Some(oa) = st.open.get(id) {
            oa.file.invalidate(blks)?;
        }
    }
    Ok(())
}

/// The blocks of one live array as the commit sees them: within its size `nbytes` (this
/// connection's own size: bytes beyond it, written through a view older than a shrink, are
/// dropped even if another connection grew the array since; there the store keeps what it has).
struct LiveArray<'a> {
    id: ArrayId,
    oa: &'a OpenArray,
    nbytes: u64,
    bs: usize,
}

impl LiveArray<'_> {
    /// Bytes of block `blk` within the array's size (`None`: the block lies beyond it).
    fn len(&self, blk: u64) -> Option<usize> {
        let start = blk.saturating_mul(self.bs as u64);
        (start < self.nbytes).then(|| (self.nbytes - start).min(self.bs as u64) as usize)
    }

    /// Completes the staged extent of block `blk` (`(extent, bytes written by appends)`; `len`
    /// bytes within the size): pages written through views since it was staged go into it,
    /// and bytes cut off by a shrink in this transaction become zeros.
    fn finish_staged(
        &self,
        store: &dyn Store,
        blk: u64,
        (ext, end): &(Staged, u64),
        len: usize,
        dirty: &[DirtyBlock],
    ) -> Result<()> {
        if let Some(d) = dirty.iter().find(|d| d.blk == blk) {
            let pages: Vec<u32> = d.pages.iter().collect();
            let mut buf = vec![0u8; self.bs];
            self.oa.file.read_pages(blk, &pages, &mut buf)?;
            for p in pages {
                let a = p as usize * PAGE;
                let b = (a + PAGE).min(len);
                if a < b {
                    store.write_staged(ext, a as u64, &buf[a..b])?;
                }
            }
        }
        let (end, len) = (*end, len as u64);
        if end > len {
            store.write_staged(ext, len, &vec![0u8; (end - len) as usize])?;
        }
        Ok(())
    }

    /// Adds the written pages of block `d` (`len` bytes within the size) as a page source.
    ///
    /// Only the written pages are read from the page cache, when the store takes the block
    /// (into its buffer, over the stored content): a commit holds one block in memory, however
    /// many it writes. The kernel reports every first write to a page, so the other pages hold
    /// the stored content; the store still compares the result with it and keeps only pages
    /// that changed.
    fn write_pages(&self, commit: &mut Commit, d: &DirtyBlock, len: usize) {
        let (file, blk) = (self.oa.file.clone(), d.blk);
        let start = blk.saturating_mul(self.bs as u64);
        let pages: Vec<u32> = d.pages.iter().filter(|p| (*p as usize) * PAGE < len).collect();
        let fill = self.oa.source.fill().cloned();
        commit.write_pages_from(
            self.id,
            blk,
            pages,
            move |pages: &[u32], buf: &mut [u8]| -> std::result::Result<(), BoxError> {
                let tail_end = len.next_multiple_of(PAGE).min(buf.len());
                let tail = buf[len..tail_end].to_vec();
                file.read_pages(blk, pages, buf)?;
                if let Some(fill) = &fill {
                    // The store holds fill arrays XOR their pattern.
                    for p in pages {
                        let a = *p as usize * PAGE;
                        let b = (a + PAGE).min(buf.len());
                        fill.xor(&mut buf[a..b], start + a as u64);
                    }
                }
                buf[len..tail_end].copy_from_slice(&tail);
                Ok(())
            },
        );
    }
}
