//! The pager's view of the store: a `BlockSource` loading one array's blocks at the
//! connection's snapshot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use outcore_pager::{BlockSource, Extent, ExtentSource, FillPattern, SourceError};
use outcore_store::{ArrayId, Staged, Store};
use parking_lot::Mutex;
use std::collections::BTreeMap;

/// Loads blocks of one array from the store at the connection's current snapshot.
///
/// The snapshot tid is shared by all sources of a connection and updated by the connection at
/// every transaction boundary, before it invalidates the blocks that changed.
/// `zero_from` is the array's stored size at the snapshot, lowered to the smallest size the
/// array had during the current transaction: bytes at or beyond it are zeros in the store, or
/// were cut off by a shrink (or do not exist yet, for an array created in this transaction),
/// and load as zeros without asking the store.
///
/// `fill` is the array's fill pattern when its fill value is not zeros: the store then holds
/// each block XOR the pattern (so zero bytes, holes and cut tails in the store mean "fill"), and
/// loads XOR it back; see `docs/design/004-fill-values.md`.
pub(crate) struct StoreSource {
    store: Arc<dyn Store>,
    array: ArrayId,
    tid: Arc<AtomicU64>,
    zero_from: AtomicU64,
    blksize: u64,
    fill: Option<FillPattern>,
    /// Blocks of this transaction written straight into staged extents (appends), and how
    /// many bytes of each were written: mapped from there until committed or released.
    staged: Mutex<BTreeMap<u64, (Staged, u64)>>,
}

impl StoreSource {
    pub fn new(
        store: Arc<dyn Store>,
        array: ArrayId,
        tid: Arc<AtomicU64>,
        zero_from: u64,
        blksize: u64,
        fill: Option<FillPattern>,
    ) -> Self {
        StoreSource {
            store,
            array,
            tid,
            zero_from: AtomicU64::new(zero_from),
            blksize,
            fill,
            staged: Mutex::new(BTreeMap::new()),
        }
    }

    /// The fill pattern (`None`: the fill value is zeros and stored bytes are the array's).
    pub fn fill(&self) -> Option<&FillPattern> {
        self.fill.as_ref()
    }

    /// Lowers the size beyond which stored data is hidden.
    pub fn hide_from(&self, nbytes: u64) {
        self.zero_from.fetch_min(nbytes, Ordering::SeqCst);
    }

    /// At a transaction boundary: the array's stored size at the new snapshot.
    /// Where zeros start (bytes at or beyond it load as zeros without a store query).
    pub fn zero_from(&self) -> u64 {
        self.zero_from.load(Ordering::SeqCst)
    }

    /// The staged extent of block `blk` and the bytes written into it, if any.
    pub fn staged(&self, blk: u64) -> Option<(Staged, u64)> {
        self.staged.lock().get(&blk).cloned()
    }

    /// Every staged block.
    pub fn staged_blocks(&self) -> BTreeMap<u64, (Staged, u64)> {
        self.staged.lock().clone()
    }

    /// Records that block `blk` lives in `staged` with `end` bytes written.
    pub fn set_staged(&self, blk: u64, staged: Staged, end: u64) {
        self.staged.lock().insert(blk, (staged, end));
    }

    /// Forgets staged blocks (committed, or about to be released); returns them.
    pub fn take_staged(&self, blks: impl IntoIterator<Item = u64>) -> Vec<(u64, Staged)> {
        let mut m = self.staged.lock();
        blks.into_iter().filter_map(|b| m.remove(&b).map(|(s, _)| (b, s))).collect()
    }

    pub fn reset(&self, stored: u64) {
        self.zero_from.store(stored, Ordering::SeqCst);
    }
}

impl StoreSource {
    fn failure(&self, what: &str, blk: u64, tid: u64, e: outcore_store::Error) -> SourceError {
        let msg = format!("{what} block {blk} of array {} at tid {tid} in {}", self.array, self.store.location());
        let se = if e.is_transient() { SourceError::transient(msg) } else { SourceError::permanent(msg) };
        se.with_cause(e)
    }
}

/// The page-cache engine asks where blocks are: the store's extents at the snapshot, except
/// blocks wholly beyond `zero_from` (hidden by a shrink in this transaction: zeros).
impl ExtentSource for StoreSource {
    fn extents(&self, blks: std::ops::Range<u64>) -> Result<Vec<(u64, Extent)>, SourceError> {
        let tid = self.tid.load(Ordering::SeqCst);
        let bs = self.blksize;
        let zero_from = self.zero_from.load(Ordering::SeqCst);
        let end = blks.end.min(zero_from.div_ceil(bs));
        let staged: Vec<(u64, Extent)> = self
            .staged
            .lock()
            .range(blks.clone())
            .map(|(b, (s, _))| (*b, Extent::File { file: s.location.file.clone(), offset: s.location.offset }))
            .collect();
        if blks.start >= end {
            return Ok(staged);
        }
        match self.store.locate(self.array, blks.start..end, tid) {
            Ok(Some(v)) => {
                let mut out: BTreeMap<u64, Extent> =
                    v.into_iter().map(|(b, l)| (b, Extent::File { file: l.file, offset: l.offset })).collect();
                out.extend(staged);
                Ok(out.into_iter().collect())
            }
            Ok(None) => Err(SourceError::permanent(format!(
                "blocks {}..{end} of array {} at tid {tid} cannot be mapped from {}",
                blks.start,
                self.array,
                self.store.location()
            ))),
            Err(e) => Err(self.failure("locating", blks.start, tid, e)),
        }
    }
}

impl BlockSource for StoreSource {
    fn load(&self, blk: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        let bs = buf.len() as u64;
        let start = blk.saturating_mul(bs);
        let zero_from = self.zero_from.load(Ordering::SeqCst);
        if start >= zero_from {
            match &self.fill {
                None => buf.fill(0),
                Some(p) => p.write(buf, start),
            }
            return Ok(());
        }
        let tid = self.tid.load(Ordering::SeqCst);
        self.store.load(self.array, blk, tid, buf).map_err(|e| self.failure("loading", blk, tid, e))?;
        if zero_from - start < bs {
            buf[(zero_from - start) as usize..].fill(0);
        }
        if let Some(p) = &self.fill {
            p.xor(buf, start);
        }
        Ok(())
    }
}
