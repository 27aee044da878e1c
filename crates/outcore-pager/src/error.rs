//! Errors: what a `BlockSource` reports and what the pager reports.

use std::fmt;
use std::sync::Arc;

/// The outcome of one block load, handed to every thread waiting for it.
pub(crate) type LoadResult = Result<(), Arc<SourceError>>;

/// Why a [`BlockSource`](crate::BlockSource) could not fill a block.
///
/// A transient error is retried with backoff (up to [`PagerConfig::max_retries`](crate::PagerConfig)
/// times); a permanent one (or a transient one that keeps failing) makes the faulting access fail
/// with SIGBUS after being logged with `tracing::error!`. Never zeros.
#[derive(Debug)]
pub struct SourceError {
    transient: bool,
    message: String,
    cause: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl SourceError {
    /// A failure worth retrying (timeout, connection reset, lock busy...).
    pub fn transient(message: impl Into<String>) -> Self {
        Self { transient: true, message: message.into(), cause: None }
    }

    /// A failure that retrying cannot fix (checksum mismatch, missing block, ...).
    pub fn permanent(message: impl Into<String>) -> Self {
        Self { transient: false, message: message.into(), cause: None }
    }

    /// Attaches the underlying error.
    pub fn with_cause(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.cause = Some(Box::new(cause));
        self
    }

    /// Whether the pager retries this error.
    pub fn is_transient(&self) -> bool {
        self.transient
    }

    /// The message given by the source.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.transient { "transient" } else { "permanent" };
        write!(f, "{kind} source error: {}", self.message)?;
        if let Some(c) = &self.cause {
            write!(f, ": {c}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SourceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_deref().map(|c| c as &(dyn std::error::Error + 'static))
    }
}

/// Errors of the pager.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PagerError {
    /// No userfaultfd could be opened; the message says how to enable it.
    #[error(
        "userfaultfd is unavailable ({attempts}). To enable it: give this user read/write access \
         to /dev/userfaultfd (e.g. a group owning it with mode 0660), or run \
         `sysctl vm.unprivileged_userfaultfd=1`, or grant CAP_SYS_PTRACE; the kernel also needs \
         CONFIG_USERFAULTFD=y"
    )]
    Unavailable {
        /// Each attempt and its error.
        attempts: String,
    },
    /// The kernel lacks userfaultfd features the pager needs.
    #[error("the kernel's userfaultfd lacks required features: {missing} (granted features: {granted:#x}); Linux >= 6.7 is needed")]
    Unsupported {
        /// Names of the missing features.
        missing: String,
        /// Feature bits granted.
        granted: u64,
    },
    /// A system call failed.
    #[error("{op} failed: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An argument is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A block could not be loaded from its source.
    #[error("loading block {blk} failed: {error}")]
    Load {
        /// The block index.
        blk: u64,
        /// What the source said (shared by every waiter of the load).
        #[source]
        error: Arc<SourceError>,
    },
    /// The pager is shutting down.
    #[error("the pager is shutting down")]
    ShuttingDown,
    /// The pager was started by another process (this one was forked from it): its userfaultfd
    /// serves that process's memory. [`Pager::global`](crate::Pager::global) starts one per
    /// process.
    #[error(
        "this pager was started by process {started_by}, which this process was forked from: \
         open the database again in this process"
    )]
    OtherProcess {
        /// The process that started it.
        started_by: u32,
    },
    /// An [`ExtentSource`](crate::ExtentSource) could not say where blocks are.
    #[error("asking where blocks {blks:?} of {label} are failed: {error}")]
    Extents {
        /// The file's label.
        label: String,
        /// The blocks asked for.
        blks: std::ops::Range<u64>,
        /// What the source said.
        #[source]
        error: SourceError,
    },
    /// A page-cache file grew beyond the address range reserved for it at open, and the range
    /// right after it is taken.
    #[error(
        "{label} outgrew its address reservation ({reserved} bytes; {needed} bytes needed) and \
         the addresses after it are in use: reopen the connection to map it anew"
    )]
    ReservationExceeded {
        /// The file's label.
        label: String,
        /// Bytes reserved.
        reserved: u64,
        /// Bytes needed.
        needed: u64,
    },
}

impl PagerError {
    pub(crate) fn io(op: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { op: op.into(), source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_says_how_to_enable() {
        let e = PagerError::Unavailable { attempts: "Syscall: EPERM".into() };
        let m = e.to_string();
        assert!(m.contains("/dev/userfaultfd") && m.contains("vm.unprivileged_userfaultfd=1") && m.contains("EPERM"));
    }

    #[test]
    fn source_error_display_and_cause() {
        let io = std::io::Error::other("disk on fire");
        let e = SourceError::permanent("block 3 unreadable").with_cause(io);
        assert!(!e.is_transient());
        assert_eq!(e.to_string(), "permanent source error: block 3 unreadable: disk on fire");
        assert!(std::error::Error::source(&e).is_some());
        assert!(SourceError::transient("x").is_transient());
    }
}
