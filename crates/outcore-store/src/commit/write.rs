//! Writing a planned commit's blocks, one at a time: for each, its undo record (the previous
//! bytes of the pages that change), then its new current version (whole, page by page in
//! place, as a pending patch, or an adopted staged extent). A write that changes nothing
//! leaves no version.

use super::sources::{read_pages_into, read_source_into};
use super::txn::{CurrentRow, CurrentWrite, PageWrite, WriteTxn};
use super::{BlockData, PageSource};
use crate::block;
use crate::error::{Error, Result};
use crate::types::{ArrayId, ArrayMeta, Codec, Tid};

/// One block write of the commit: the block, its array and what is stored of it.
pub(super) struct Target<'m> {
    pub id: ArrayId,
    pub blk: u64,
    pub meta: &'m ArrayMeta,
    /// The block's current version (at head), if any.
    pub cur: Option<CurrentRow>,
    /// The bytes of the block within its array, for content read from a source.
    pub limit: usize,
    /// Where this commit cuts the block's array, if it shrinks it.
    pub cut: Option<u64>,
}

/// Writes the blocks of one commit (tid `tid`, made on head `head`), reusing its buffers from
/// block to block (a commit of many blocks holds one in memory at a time).
pub(super) struct BlockWriter<'t> {
    txn: &'t mut dyn WriteTxn,
    tid: Tid,
    head: Tid,
    old: Vec<u8>,
    new: Vec<u8>,
    base: Vec<u8>,
}

impl<'t> BlockWriter<'t> {
    pub fn new(txn: &'t mut dyn WriteTxn, tid: Tid, head: Tid) -> Self {
        BlockWriter { txn, tid, head, old: Vec::new(), new: Vec::new(), base: Vec::new() }
    }

    /// The current version of a block, if it has one.
    pub fn current(&mut self, id: ArrayId, blk: u64) -> Result<Option<CurrentRow>> {
        self.txn.current(id, blk)
    }

    /// Write block `t` with its new content `data`.
    pub fn write(&mut self, t: &Target<'_>, data: &mut BlockData) -> Result<()> {
        if let BlockData::Staged { off, len } = data {
            return self.adopt(t, *off, *len);
        }
        if let (BlockData::Pages(pages, src), Some(c)) = (&mut *data, t.cur.as_ref()) {
            if self.txn.rewrites_pages(c)
                && c.len > 0
                && t.cut.is_none()
                && self.write_in_place(t, c, pages, src.as_mut())?
            {
                return Ok(());
            }
        }
        self.write_whole(t, data)
    }

    /// A staged extent becomes the block's current version.
    fn adopt(&mut self, t: &Target<'_>, off: u64, len: u64) -> Result<()> {
        // (A shrink in this commit only rewrites blocks that held content: never this one.)
        if t.cur.is_some_and(|c| c.len > 0) || t.meta.codec != Codec::None {
            return Err(Error::Invalid(format!(
                "block {} of array {}: a staged extent can only become a block without stored content",
                t.blk, t.id
            )));
        }
        record_undo(self.txn, t, self.tid, &[], &[])?;
        let Some(extents) = self.txn.extents() else {
            return Err(Error::Invalid("this store stages no extents".into()));
        };
        extents.adopt_staged(t.id, t.blk, self.tid, off, len.min(t.limit as u64), t.meta.blksize)
    }

    /// Only the written pages are read, compared and written: no whole block. `false` when the
    /// backend cannot read single pages of `cur` (the caller writes the whole block).
    fn write_in_place(
        &mut self,
        t: &Target<'_>,
        cur: &CurrentRow,
        pages: &[u32],
        src: &mut dyn PageSource,
    ) -> Result<bool> {
        let bs = t.meta.blksize as usize;
        // Only the pages in `pages` of these buffers are used, and each is filled before use: no
        // need to clear them (a block's worth of memset per block otherwise).
        self.old.resize(bs, 0);
        if !self.txn.load_pages(t.id, t.blk, cur, pages, &mut self.old)? {
            return Ok(false);
        }
        self.new.resize(bs, 0);
        read_pages_into(t.id, t.blk, pages, src, Some(&self.old), &mut self.new)?;
        for p in pages {
            let (a, b) = (*p as usize * block::PAGE, (*p as usize + 1) * block::PAGE);
            if b > t.limit {
                self.new[a.max(t.limit)..b].fill(0);
            }
        }
        let changed = block::changed_pages_of(&self.old, &self.new, pages);
        if changed.is_empty() {
            return Ok(true);
        }
        let mut len = cur.len as usize;
        for p in &changed {
            let a = *p as usize * block::PAGE;
            let n = block::content_len(&self.new[a..a + block::PAGE]);
            if n > 0 {
                len = len.max(a + n);
            }
        }
        let chain = self.txn.undo_chain(t.id, t.blk, cur.tid)?;
        let of = block::UndoOf {
            bind: self.txn.tid_binding(),
            array: t.id,
            blk: t.blk,
            tid: self.tid,
            prev_tid: cur.tid,
            prev: chain,
            codec: t.meta.codec,
        };
        match block::encode_undo_diff(&of, &self.old, cur.len as usize, &self.new, &changed) {
            Some(u) => self.txn.insert_undo(t.id, t.blk, self.tid, &u)?,
            None => {
                // A checkpoint: the whole previous version.
                let mut whole = vec![0u8; bs];
                self.txn.load(t.id, t.blk, self.head, &mut whole)?;
                whole.truncate(cur.len as usize);
                record_undo(self.txn, t, self.tid, &whole, &changed)?;
            }
        }
        let w = PageWrite { cur, changed: &changed, old: &self.old, new: &self.new, len: len as u64 };
        self.txn.write_pages(t.id, t.blk, self.tid, &w)?;
        Ok(true)
    }

    /// The block's whole new content is formed (the stored content with the written pages, or
    /// the given bytes or source), compared with the stored one and written.
    fn write_whole(&mut self, t: &Target<'_>, data: &mut BlockData) -> Result<()> {
        let bs = t.meta.blksize as usize;
        self.old.clear();
        if let Some(c) = t.cur.filter(|c| c.len > 0) {
            // Verified against its checksum before any of it becomes history.
            self.old.resize(bs, 0);
            self.txn.load(t.id, t.blk, self.head, &mut self.old)?;
            self.old.truncate(c.len as usize);
        }
        let new: &[u8] = match data {
            BlockData::Pages(pages, src) if self.old.is_empty() => {
                // No stored content (a new block): zeros with the pages written.
                self.new.clear();
                self.new.resize(bs, 0);
                read_pages_into(t.id, t.blk, pages, src.as_mut(), None, &mut self.new)?;
                self.new.truncate(t.limit);
                &self.new
            }
            BlockData::Pages(pages, src) if t.cut.is_none() => return self.write_over(t, pages, src.as_mut()),
            BlockData::Pages(pages, src) => {
                // In a truncated array: the stored content cut, with the pages written.
                self.new.clear();
                self.new.extend_from_slice(&self.old);
                self.new.resize(bs, 0);
                if let Some(cut) = t.cut {
                    let keep = cut.saturating_sub(t.blk * t.meta.blksize).min(t.meta.blksize) as usize;
                    self.new[keep..].fill(0);
                }
                read_pages_into(t.id, t.blk, pages, src.as_mut(), None, &mut self.new)?;
                self.new.truncate(t.limit);
                &self.new
            }
            // Bytes are cut to the block's part of its array here, not when planned: a commit
            // that a backend retries is planned again, maybe on another size.
            BlockData::Bytes(bytes) => &bytes[..bytes.len().min(t.limit)],
            BlockData::Staged { .. } => unreachable!("staged blocks are adopted by `write`"),
            BlockData::Source(src) => {
                let buf = std::mem::take(&mut self.new);
                self.new = read_source_into(t.id, t.blk, src.as_mut(), t.meta.blksize, buf)?;
                self.new.truncate(t.limit);
                &self.new
            }
        };
        let changed = block::changed_pages(&self.old, new);
        if changed.is_empty() {
            return Ok(());
        }
        record_undo(self.txn, t, self.tid, &self.old, &changed)?;
        store_new(self.txn, t, self.tid, new, &changed, &mut self.base)
    }

    /// The written pages land in a scratch buffer and are compared with the stored content
    /// (`self.old`) there; only the changed ones are copied over it, after the undo record took
    /// their old bytes (no copy of the whole block). The source sees the stored content at its
    /// pages (it may write part of one).
    fn write_over(&mut self, t: &Target<'_>, pages: &[u32], src: &mut dyn PageSource) -> Result<()> {
        let limit = t.limit;
        self.new.resize(t.meta.blksize as usize, 0);
        read_pages_into(t.id, t.blk, pages, src, Some(&self.old), &mut self.new)?;
        let changed = block::changed_pages_of(&self.old, &self.new[..limit], pages);
        if changed.is_empty() {
            return Ok(());
        }
        record_undo(self.txn, t, self.tid, &self.old, &changed)?;
        self.old.resize(limit.max(self.old.len()), 0);
        for p in &changed {
            let start = *p as usize * block::PAGE;
            let end = (start + block::PAGE).min(limit);
            self.old[start..end].copy_from_slice(&self.new[start..end]);
        }
        self.old.truncate(limit);
        store_new(self.txn, t, self.tid, &self.old, &changed, &mut self.base)
    }
}

/// Record the undo record of commit `tid` for block `t`, whose content was `old` and whose pages
/// `changed` change.
fn record_undo(txn: &mut dyn WriteTxn, t: &Target<'_>, tid: Tid, old: &[u8], changed: &[u32]) -> Result<()> {
    let prev_tid = t.cur.map_or(0, |c| c.tid);
    let prev = match t.cur {
        Some(c) if !old.is_empty() => txn.undo_chain(t.id, t.blk, c.tid)?,
        _ => None,
    };
    let bind = txn.tid_binding();
    let of = block::UndoOf { bind, array: t.id, blk: t.blk, tid, prev_tid, prev, codec: t.meta.codec };
    let undo = block::encode_undo(&of, old, changed);
    txn.insert_undo(t.id, t.blk, tid, &undo)
}

/// Store the new content `data` of block `t` (its pages `changed` differ from the current
/// version): as a pending patch when that pays, else as the new current version. `base` is a
/// reused buffer.
fn store_new(
    txn: &mut dyn WriteTxn,
    t: &Target<'_>,
    tid: Tid,
    data: &[u8],
    changed: &[u32],
    base: &mut Vec<u8>,
) -> Result<()> {
    let (id, blk, meta) = (t.id, t.blk, t.meta);
    if let Some(c) = t.cur.filter(|c| c.extent.is_none()) {
        if let Some(patches) = txn.patches() {
            if patch_pays(patches.patch_granule(), &c, changed, data, meta) {
                let patch = block::encode_patch(id, blk, tid, data, changed, c.tid, meta.codec);
                return patches.write_patch(id, blk, tid, &patch);
            }
        }
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
        block::encode_current(txn.tid_binding(), id, blk, tid, data, meta.codec)
    };
    // With pending patches, the stored payload differs from the new content in more pages than
    // `changed`: those are what an in-place rewrite writes.
    let vs_base: Vec<u32>;
    let changed = match (t.cur, txn.patches()) {
        (Some(c), Some(patches)) if c.patches > 0 => {
            base.clear();
            base.resize(meta.blksize as usize, 0);
            patches.load_base(id, blk, base)?;
            base.truncate(c.base_len as usize);
            vs_base = block::changed_pages(base, data);
            &vs_base
        }
        _ => changed,
    };
    let prev = t.cur.as_ref();
    let new = CurrentWrite { prev, data, enc, changed, blksize: meta.blksize, raw_array: meta.codec == Codec::None };
    txn.write_current(id, blk, tid, &new)
}

/// Whether a commit that changes `changed` pages of a block (new content `data`) should keep them
/// as a pending patch rather than rewrite the current version `cur`: when the block keeps
/// content, the changed pages lie in at least two of the database pages an in-place rewrite
/// would write (`granule` bytes each) and the patch takes at most half of those (a compressed
/// version is rewritten whole), and the block's pending patches stay within their bounds
/// (count, and a quarter of the block size: head reads stay cheap).
fn patch_pays(granule: u64, cur: &CurrentRow, changed: &[u32], data: &[u8], meta: &ArrayMeta) -> bool {
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
