//! The rules of reading history, written once: what a snapshot may read, what changed between
//! two tids, and the commit log, on top of what each backend answers in one read snapshot
//! ([`ReadTxn`]).

use crate::commit::{ChangedSets, Head};
use crate::error::{Error, Result};
use crate::types::{Changes, Tid, TxnInfo};

/// A commit record as stored (its JSON extension as text).
pub(crate) struct CommitRow {
    pub tid: Tid,
    pub time_us: i64,
    pub user: String,
    pub description: String,
    pub extension: String,
}

/// What a backend answers inside one read snapshot (SQLite: a deferred transaction; PostgreSQL:
/// one statement per answer, each its own snapshot, all on one connection).
pub(crate) trait ReadTxn {
    /// The head row.
    fn head(&mut self) -> Result<Head>;
    /// Blocks and arrays with versions in `(after, upto]`, with the newest such tid.
    fn changed(&mut self, after: Tid, upto: Tid) -> Result<ChangedSets>;
    /// Commit records with tid in `(after, upto]`, oldest first (verified where the backend
    /// keeps row checksums).
    fn commits(&mut self, after: Tid, upto: Tid) -> Result<Vec<CommitRow>>;
}

/// Whether a snapshot at `at` can be read with this head: not before the gc horizon
/// (`SnapshotGone`), not after the newest commit (`FutureTid`).
pub(crate) fn check_at(head: &Head, at: Tid) -> Result<()> {
    if at < head.horizon {
        return Err(Error::SnapshotGone { at, horizon: head.horizon });
    }
    if at > head.tid {
        return Err(Error::FutureTid { at, head: head.tid });
    }
    Ok(())
}

/// What changed in `(after, upto]`; `SnapshotGone` when history from `after` on was collected.
pub(crate) fn changes(r: &mut dyn ReadTxn, after: Tid, upto: Tid) -> Result<Changes> {
    let head = r.head()?;
    // History before the horizon is gone: what changed since `after` cannot be told.
    if after < head.horizon {
        return Err(Error::SnapshotGone { at: after, horizon: head.horizon });
    }
    let (blocks, arrays) = r.changed(after, upto)?;
    Ok(Changes {
        blocks: blocks.into_iter().map(|(a, b, _)| (a, b)).collect(),
        arrays: arrays.into_iter().map(|(a, _)| a).collect(),
    })
}

/// The commit log in `(after, upto]`, oldest first. An extension that is not JSON (written by
/// hand into the database) reads as a JSON string of its text.
pub(crate) fn history(r: &mut dyn ReadTxn, after: Tid, upto: Tid) -> Result<Vec<TxnInfo>> {
    Ok(r.commits(after, upto)?
        .into_iter()
        .map(|c| {
            let extension = serde_json::from_str(&c.extension).unwrap_or(serde_json::Value::String(c.extension));
            TxnInfo { tid: c.tid, time_us: c.time_us, user: c.user, description: c.description, extension }
        })
        .collect())
}
