//! `Db::check`: read back every stored block of every live array and verify its checksums.
//!
//! A mapped array's bytes reach user code straight from the kernel's page cache, where no
//! checksum can be verified on access; `check` is the sweep that does (loads verify every
//! 4 KiB page of a local store's extents, and whole payloads elsewhere).

use outcore_store::Tid;

use crate::db::Db;
use crate::error::Result;

/// What [`Db::check`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckReport {
    /// The snapshot checked.
    pub tid: Tid,
    /// Arrays checked.
    pub arrays: u64,
    /// Blocks read and verified (never-written blocks included: they cost a lookup).
    pub blocks: u64,
    /// Bytes of block content verified.
    pub bytes: u64,
    /// Every failure: (array name, block, what failed).
    pub errors: Vec<(String, u64, String)>,
}

impl CheckReport {
    /// True when nothing failed.
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Progress of a check: blocks done and in all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckProgress {
    /// Blocks checked so far.
    pub done: u64,
    /// Blocks to check.
    pub total: u64,
}

impl Db {
    /// Verify every stored block of every live array at the newest snapshot against its
    /// checksums, reporting progress to `progress`. Failures are collected, not raised (the
    /// report lists them all); errors that stop the sweep itself (the store unreachable) are
    /// returned.
    pub fn check(&self, mut progress: impl FnMut(CheckProgress)) -> Result<CheckReport> {
        let store = self.store();
        let snapshot = store.snapshot(None)?;
        let tid = snapshot.tid();
        let arrays = store.arrays(tid)?;
        let total: u64 = arrays.iter().map(|a| a.meta.nblocks()).sum();
        let mut report = CheckReport { tid, arrays: arrays.len() as u64, ..CheckReport::default() };
        let mut buf = Vec::new();
        for a in &arrays {
            let bs = a.meta.blksize;
            buf.resize(bs as usize, 0);
            for blk in 0..a.meta.nblocks() {
                match store.load(a.id, blk, tid, &mut buf) {
                    Ok(()) => report.bytes += (a.meta.nbytes - blk * bs).min(bs),
                    Err(e) => report.errors.push((a.name.clone(), blk, e.to_string())),
                }
                report.blocks += 1;
                if report.blocks % 64 == 0 || report.blocks == total {
                    progress(CheckProgress { done: report.blocks, total });
                }
            }
        }
        progress(CheckProgress { done: report.blocks, total });
        Ok(report)
    }

    /// Remove history no snapshot at or after `keep_after` (default: the newest tid) needs;
    /// older snapshots become unreadable. Returns what was freed.
    pub fn gc(&self, keep_after: Option<Tid>) -> Result<outcore_store::GcStats> {
        let store = self.store();
        let k = match keep_after {
            Some(k) => k,
            None => store.head()?,
        };
        Ok(store.gc(k)?)
    }
}
