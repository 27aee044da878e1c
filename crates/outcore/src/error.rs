//! The one error type of the core, with messages naming the values involved.

use outcore_store::{Conflict, Tid};

/// Errors of databases, connections and arrays.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The commit collided with a concurrent one; nothing of it was written. The connection
    /// refuses further work until [`Connection::abort`](crate::Connection::abort).
    #[error("{0}; nothing was written, call abort() to continue")]
    Conflict(Conflict),
    /// A previous commit failed with a conflict and the transaction was not aborted yet.
    #[error("the transaction lost a commit conflict: call abort() before using the connection again")]
    NeedsAbort,
    /// The connection could not move to a new snapshot at its last boundary (the store failed
    /// after a successful commit, for example); `abort()` retries.
    #[error("the connection could not move to the newest snapshot ({0}): call abort() to retry")]
    Stale(String),
    /// The connection of this handle was closed or dropped (its transaction was discarded),
    /// or its database was closed.
    #[error("the connection was closed: its array handles can no longer be used")]
    Closed,
    /// The database at this location does not exist (opened with a mode that does not create
    /// it), or the directory it would be created in does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A database exists at this location (opened with mode `"w-"`, which only creates).
    #[error("{0}")]
    StoreExists(String),
    /// No array of that name exists in the connection's snapshot.
    #[error("no array named '{0}'")]
    NoSuchArray(String),
    /// The array behind a handle no longer exists (deleted, or created in an aborted transaction).
    #[error("array '{0}' no longer exists in this connection")]
    ArrayGone(String),
    /// The name is already used by another array.
    #[error("an array named '{0}' already exists")]
    AlreadyExists(String),
    /// Writing through a read-only connection: a historical one, or one of a database opened
    /// read-only ([`OpenMode::Read`](crate::OpenMode::Read)).
    #[error("{}", read_only_message(*.tid, .op, *.historical))]
    ReadOnly {
        /// The connection's snapshot.
        tid: Tid,
        /// What was attempted.
        op: &'static str,
        /// True for a historical connection, false for a database opened read-only.
        historical: bool,
    },
    /// The transaction has uncommitted changes where none are allowed.
    #[error("{op} needs a transaction without uncommitted changes: commit or abort first")]
    Uncommitted {
        /// What was attempted.
        op: &'static str,
    },
    /// A shape is invalid (overflowing, wrong number of dimensions, mismatching).
    #[error("invalid shape: {0}")]
    Shape(String),
    /// A dtype is invalid or does not match.
    #[error("dtype error: {0}")]
    Dtype(String),
    /// An index range lies outside the array.
    #[error("index out of range: {0}")]
    OutOfRange(String),
    /// Any other invalid argument (bad name, bad block size...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The store failed.
    #[error(transparent)]
    Store(outcore_store::Error),
    /// The pager failed.
    #[error(transparent)]
    Pager(outcore_pager::PagerError),
}

fn read_only_message(tid: Tid, op: &str, historical: bool) -> String {
    if historical {
        format!("the connection reads the historical snapshot at tid {tid} and is read-only: {op} is not allowed")
    } else {
        format!("the database was opened read-only (mode 'r'): {op} is not allowed")
    }
}

/// A pager error whose cause is corruption found by the store (or a snapshot gc took) is that
/// store error, so that it is caught as what it is (`CorruptError` in Python), not as a pager
/// failure; the rest stay pager errors.
impl From<outcore_pager::PagerError> for Error {
    fn from(e: outcore_pager::PagerError) -> Self {
        use outcore_pager::PagerError as P;
        let cause = match &e {
            P::Load { error, .. } => std::error::Error::source(&**error),
            P::Extents { error, .. } => std::error::Error::source(error),
            _ => None,
        };
        match cause.and_then(|c| c.downcast_ref::<outcore_store::Error>()).and_then(typed_copy) {
            Some(store) => Error::Store(store),
            None => Error::Pager(e),
        }
    }
}

/// A copy of the store errors a load can end in that a caller handles by kind.
fn typed_copy(e: &outcore_store::Error) -> Option<outcore_store::Error> {
    use outcore_store::Error as S;
    Some(match e {
        S::Corrupt { array, name, blk, tid, detail } => {
            S::Corrupt { array: *array, name: name.clone(), blk: *blk, tid: *tid, detail: detail.clone() }
        }
        S::CorruptMeta { what, detail } => S::CorruptMeta { what: what.clone(), detail: detail.clone() },
        S::BadMeta { array, tid, detail } => S::BadMeta { array: *array, tid: *tid, detail: detail.clone() },
        S::SnapshotGone { at, horizon } => S::SnapshotGone { at: *at, horizon: *horizon },
        S::Interrupted { location, op } => S::Interrupted { location: location.clone(), op },
        _ => return None,
    })
}

impl From<outcore_store::Error> for Error {
    fn from(e: outcore_store::Error) -> Self {
        match e {
            outcore_store::Error::Conflict(c) => Error::Conflict(c),
            e => Error::Store(e),
        }
    }
}

impl Error {
    /// True for a commit conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict(_))
    }
}

/// Result with the core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
