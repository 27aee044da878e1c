//! Errors of the store, one enum for every operation, messages naming the values involved.

use crate::types::{ArrayId, Tid};
use std::fmt;

/// What a losing commit collided with.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConflictItem {
    /// A block written by both transactions.
    Block {
        /// The array.
        array: ArrayId,
        /// Its name (at the winner's commit).
        name: String,
        /// Block index.
        blk: u64,
        /// The tid of the newer version.
        tid: Tid,
    },
    /// An array whose name or metadata both transactions changed (resize, append, rename, delete).
    Array {
        /// The array.
        array: ArrayId,
        /// Its name.
        name: String,
        /// The tid of the newer version.
        tid: Tid,
    },
    /// A name both transactions gave to different arrays.
    Name {
        /// The name.
        name: String,
        /// The tid that took it.
        tid: Tid,
    },
    /// This transaction wrote an array that another deleted.
    Deleted {
        /// The array.
        array: ArrayId,
        /// Its last name.
        name: String,
        /// The deleting tid.
        tid: Tid,
    },
}

impl fmt::Display for ConflictItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConflictItem::Block { name, blk, tid, .. } => {
                write!(f, "block {blk} of array '{name}' (changed by tid {tid})")
            }
            ConflictItem::Array { name, tid, .. } => {
                write!(f, "shape/metadata of array '{name}' (changed by tid {tid})")
            }
            ConflictItem::Name { name, tid } => write!(f, "name '{name}' (taken by tid {tid})"),
            ConflictItem::Deleted { name, tid, .. } => write!(f, "array '{name}' (deleted by tid {tid})"),
        }
    }
}

/// A commit lost against concurrent commits; nothing of it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The snapshot the losing transaction started from.
    pub base: Tid,
    /// Everything it collided with (at most a few dozen are listed).
    pub items: Vec<ConflictItem>,
    /// How many colliding items there were in all.
    pub total: usize,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conflict: changed since snapshot {} by another transaction: ", self.base)?;
        for (i, item) in self.items.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{item}")?;
        }
        if self.total > self.items.len() {
            write!(f, " and {} more", self.total - self.items.len())?;
        }
        Ok(())
    }
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The commit collided with a concurrent one; nothing was written.
    #[error("{0}")]
    Conflict(Conflict),
    /// The store was opened read-only (`outcore_store::open_read_only`): `op` needs write
    /// access.
    #[error("{location} is read-only here: cannot {op}")]
    ReadOnly {
        /// Path or redacted URL.
        location: String,
        /// What was attempted.
        op: &'static str,
    },
    /// The location holds something that is not an outcore store.
    #[error("{location} is not an outcore store: {reason}")]
    NotAStore {
        /// Path or redacted URL.
        location: String,
        /// What was found.
        reason: String,
    },
    /// The store was written by a newer (or unknown) format version.
    #[error("{location} has store format version {found}; this outcore reads version {supported}: {}", version_advice(*found, *supported))]
    UnsupportedVersion {
        /// Path or redacted URL.
        location: String,
        /// Version found in the store.
        found: u32,
        /// Highest version this build reads.
        supported: u32,
    },
    /// A stored block failed its checksum or could not be decoded.
    #[error("corrupt block {blk} of array '{name}' ({array}) at tid {tid}: {detail}")]
    Corrupt {
        /// The array.
        array: ArrayId,
        /// Its name, if it could be found.
        name: String,
        /// Block index.
        blk: u64,
        /// Tid of the corrupt version.
        tid: Tid,
        /// What is wrong.
        detail: String,
    },
    /// A snapshot older than the garbage-collection horizon was asked for.
    #[error("snapshot at tid {at} is no longer available: history before tid {horizon} was garbage collected")]
    SnapshotGone {
        /// Requested snapshot.
        at: Tid,
        /// Oldest available snapshot.
        horizon: Tid,
    },
    /// A snapshot newer than the newest commit was asked for.
    #[error("tid {at} does not exist yet (newest is {head})")]
    FutureTid {
        /// Requested snapshot.
        at: Tid,
        /// Newest tid.
        head: Tid,
    },
    /// The commit names an array that does not exist.
    #[error("no array {0} in the store")]
    NoSuchArray(ArrayId),
    /// A [`BlockSource`](crate::BlockSource) failed to provide a block's new content: nothing
    /// was committed.
    #[error("reading the new content of block {blk} of array {array}: {source}")]
    BlockSource {
        /// The array.
        array: ArrayId,
        /// Block index.
        blk: u64,
        /// What the source reported.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A name is already used by another array.
    #[error("an array named '{0}' already exists")]
    NameTaken(String),
    /// The request itself is invalid (bad block size, block beyond the array, empty name...).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The URL or path cannot be used.
    #[error("cannot open '{location}': {reason}")]
    BadLocation {
        /// What was given (password redacted).
        location: String,
        /// Why not.
        reason: String,
    },
    /// The server could not be reached (refused, timed out, shutting down, starting up, out of
    /// connection slots): worth retrying, unlike [`BadLocation`](Error::BadLocation).
    #[error("cannot reach '{location}': {reason}")]
    Unreachable {
        /// What was given (password redacted).
        location: String,
        /// Why not.
        reason: String,
    },
    /// The user interrupted a wait on the server (Ctrl-C); see [`interrupt`](crate::interrupt).
    #[error("interrupted while waiting for '{location}' ({op})")]
    Interrupted {
        /// What was given (password redacted).
        location: String,
        /// What the store was doing.
        op: &'static str,
    },
    /// The connection was lost while a commit was being sent, and the store then found out that
    /// the commit did not land: nothing of it was written, and the transaction may be retried.
    #[error("commit to '{location}' was not written (nothing changed; it may be retried): {reason}")]
    CommitNotWritten {
        /// What was given (password redacted).
        location: String,
        /// What happened to the connection.
        reason: String,
    },
    /// The connection was lost after a commit was sent, and the store could not find out in
    /// time whether it landed (the server stayed unreachable). Its record carries `commit_id`.
    #[error(
        "commit to '{location}' may or may not have been written: {reason}; once the server is reachable, \
             `SELECT tid FROM outcore_txn WHERE commit_id = {commit_id}` tells"
    )]
    CommitOutcomeUnknown {
        /// What was given (password redacted).
        location: String,
        /// The commit's client-chosen id.
        commit_id: String,
        /// Why the outcome could not be found.
        reason: String,
    },
    /// The database backend failed.
    #[error("{backend} error during {op}: {}", with_causes(source.as_ref()))]
    Backend {
        /// "sqlite" or "postgresql".
        backend: &'static str,
        /// What the store was doing.
        op: &'static str,
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The local store's data file (block extents) or reader registry failed.
    #[error("{op} on {path}: {source}")]
    Io {
        /// What the store was doing.
        op: &'static str,
        /// The file.
        path: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The store handle was opened by another process and inherited across `fork()`: SQLite
    /// connections and file locks cannot be shared with a child.
    #[error("this store handle ({location}) was opened by process {opened_by} before a fork(); open the store again in this process")]
    Forked {
        /// Where the store lives.
        location: String,
        /// The process that opened it.
        opened_by: u32,
    },
    /// A metadata row failed its checksum, or metadata contradict each other (a block the
    /// store records as written has no index row, for example).
    #[error("corrupt metadata: {what}: {detail}")]
    CorruptMeta {
        /// The row or record.
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// Stored metadata could not be decoded.
    #[error("bad stored metadata of array {array} at tid {tid}: {detail}")]
    BadMeta {
        /// The array.
        array: ArrayId,
        /// Its version.
        tid: Tid,
        /// What is wrong.
        detail: String,
    },
}

/// What to do about a store of another format version.
fn version_advice(found: u32, supported: u32) -> &'static str {
    if found > supported {
        "upgrade outcore"
    } else {
        "the store was written by an earlier outcore (before metadata rows carried checksums, or \
         before PostgreSQL commits carried their commit id); copy its arrays out with that version, \
         or recreate the store"
    }
}

impl Error {
    /// True for a commit conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict(_))
    }

    /// Whether the same request may succeed later without anyone fixing anything: the server
    /// was unreachable or dropped the connection (also during a commit known not to have
    /// landed), or the database was busy. Corruption, bad
    /// requests and refused credentials are not.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable { .. } | Error::CommitNotWritten { .. } => true,
            Error::Backend { source, .. } => {
                if let Some(e) = source.downcast_ref::<rusqlite::Error>() {
                    return matches!(
                        e.sqlite_error_code(),
                        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                    );
                }
                if let Some(e) = source.downcast_ref::<tokio_postgres::Error>() {
                    return crate::backend::postgres::config::transient(e);
                }
                false
            }
            Error::Io { source, .. } => source.kind() == std::io::ErrorKind::Interrupted,
            _ => false,
        }
    }
}

/// Result with the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error's message followed by its causes' (a driver's "db error" says nothing until the
/// server's message after it), each once.
pub(crate) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}
