//! The `Store` trait: the contract every backend fulfils, checked by one conformance suite.

use crate::commit::Commit;
use crate::error::Result;
use crate::types::{ArrayId, ArrayInfo, Changes, GcStats, Location, Snapshot, Staged, StoreStats, Tid, TxnInfo};
use std::time::{Duration, SystemTime};

/// A durable, versioned store of named arrays of fixed-size blocks.
///
/// Contract (every backend, see `tests/conformance.rs`):
/// - Reads name a snapshot tid `at`: they see every commit with tid `<= at` and none after.
///   Reads at a tid older than [`gc_horizon`](Store::gc_horizon) fail with `SnapshotGone`.
/// - A block never written, or beyond its array's `nbytes`, reads as zeros and costs nothing.
/// - [`commit`](Store::commit) is atomic and durable when it returns, and serialized: tid order is
///   commit order. It fails with `Conflict`, writing nothing, if anything it changes was changed by
///   a commit newer than its base.
/// - Every stored block is checksummed; a mismatch is `Corrupt`, never returned data.
/// - Implementations are `Send + Sync`: loads may run in parallel from many threads.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Where the store lives (path, or URL without password).
    fn location(&self) -> &str;

    /// The store format version of this store (the one this build reads: a store of another
    /// version is refused at open).
    fn format_version(&self) -> u32;

    /// The newest committed tid.
    fn head(&self) -> Result<Tid>;

    /// The oldest tid still readable (history before it was garbage collected).
    fn gc_horizon(&self) -> Result<Tid>;

    /// Live arrays at `at`, sorted by name.
    fn arrays(&self, at: Tid) -> Result<Vec<ArrayInfo>>;

    /// The live array named `name` at `at`.
    fn array(&self, name: &str, at: Tid) -> Result<Option<ArrayInfo>>;

    /// The live array with id `id` at `at`.
    fn array_by_id(&self, id: ArrayId, at: Tid) -> Result<Option<ArrayInfo>>;

    /// Read block `blk` of `array` as of `at` into `buf` (exactly the array's block size; the
    /// zero tail is filled in). A block never written reads as zeros.
    fn load(&self, array: ArrayId, blk: u64, at: Tid, buf: &mut [u8]) -> Result<()>;

    /// Start a snapshot at the newest tid (or at `at`): while the returned [`Snapshot`] lives,
    /// the block bytes [`locate`](Store::locate) reports for its tid stay where they are (a
    /// local store registers it in its reader registry; other stores need nothing).
    fn snapshot(&self, at: Option<Tid>) -> Result<Snapshot> {
        Ok(Snapshot::unregistered(match at {
            Some(t) => t,
            None => self.head()?,
        }))
    }

    /// Where the bytes of the stored blocks in `blks` of `array` are as of `at`, for mapping
    /// (`blksize` bytes at each location; blocks not listed read zeros). `None` when this store
    /// keeps the array's blocks in a form that cannot be mapped (a remote store, a compressed
    /// array): read them with [`load`](Store::load). Only valid for a tid a live [`Snapshot`]
    /// holds.
    fn locate(&self, array: ArrayId, blks: std::ops::Range<u64>, at: Tid) -> Result<Option<Vec<(u64, Location)>>> {
        let _ = (array, blks, at);
        Ok(None)
    }

    /// Whether [`locate`](Store::locate) serves arrays with this metadata (a local store's
    /// uncompressed arrays), so they can be mapped rather than loaded.
    fn can_locate(&self, meta: &crate::types::ArrayMeta) -> bool {
        let _ = meta;
        false
    }

    /// Reserve a fresh extent of `size` bytes for block `blk` of `array`, which this handle will
    /// commit with [`Commit::write_staged`](crate::Commit::write_staged) (appends: each byte is
    /// written once, straight to its place). `None` when this store has no extents. It stays
    /// reserved until committed or [released](Store::release_staged), or until this handle's
    /// process ends.
    fn stage(&self, array: ArrayId, blk: u64, size: u64) -> Result<Option<Staged>> {
        let _ = (array, blk, size);
        Ok(None)
    }

    /// Write `bytes` at `at` into a staged extent.
    fn write_staged(&self, staged: &Staged, at: u64, bytes: &[u8]) -> Result<()> {
        let _ = (staged, at, bytes);
        Err(crate::Error::Invalid("this store stages no extents".into()))
    }

    /// Give a staged extent back (the transaction that would have committed it ended).
    fn release_staged(&self, staged: &Staged) -> Result<()> {
        let _ = staged;
        Ok(())
    }

    /// Commit `commit` on top of snapshot `base`; returns the new tid.
    fn commit(&self, base: Tid, commit: Commit) -> Result<Tid>;

    /// What changed in `(after, upto]`. `SnapshotGone` when `after` is older than the gc
    /// horizon (the history that would tell is gone: treat everything as changed).
    fn changes(&self, after: Tid, upto: Tid) -> Result<Changes>;

    /// Move a reader from snapshot `old` to a new one at the newest tid: the new snapshot, and
    /// what commits other than `mine` (the reader's own, whose changes it holds) changed in
    /// `(old, newest]`; `None` for the changes when history since `old` is gone (treat
    /// everything as changed). The default asks [`snapshot`](Store::snapshot) and
    /// [`changes`](Store::changes); a remote store answers in one round trip.
    fn advance(&self, old: Tid, mine: Option<Tid>) -> Result<(Snapshot, Option<Changes>)> {
        let snapshot = self.snapshot(None)?;
        let head = snapshot.tid();
        let ranges = match mine {
            Some(t) => [(old, t.saturating_sub(1)), (t, head)],
            None => [(old, head), (head, head)],
        };
        let mut all = Changes::default();
        for (after, upto) in ranges {
            if after < upto {
                match self.changes(after, upto) {
                    Ok(c) => {
                        all.blocks.extend(c.blocks);
                        all.arrays.extend(c.arrays);
                    }
                    Err(crate::Error::SnapshotGone { .. }) => return Ok((snapshot, None)),
                    Err(e) => return Err(e),
                }
            }
        }
        Ok((snapshot, Some(all)))
    }

    /// Transactions with tid in `(after, upto]`, oldest first.
    fn history(&self, after: Tid, upto: Tid) -> Result<Vec<TxnInfo>>;

    /// The newest tid committed at or before `time` (0 if none).
    fn tid_at(&self, time: SystemTime) -> Result<Tid>;

    /// Remove versions no snapshot `>= keep_after` can see; afterwards snapshots older than
    /// `keep_after` are gone. Never removes what such a snapshot needs.
    fn gc(&self, keep_after: Tid) -> Result<GcStats>;

    /// Storage statistics.
    fn stats(&self) -> Result<StoreStats>;

    /// A subscription yielding new tids as (other) processes commit.
    fn subscribe(&self) -> Result<Box<dyn Subscription>>;
}

/// New-commit notifications (PostgreSQL: `LISTEN/NOTIFY`; SQLite: polling the head).
pub trait Subscription: Send {
    /// Wait up to `timeout` for commits newer than the last one seen; returns the newest tid
    /// announced, or `None` on timeout.
    fn wait(&mut self, timeout: Duration) -> Result<Option<Tid>>;
}
