//! The contract between the pager and the layer that owns the data.

use crate::SourceError;

/// Fills blocks of a file on demand. Implemented by the layer above (the store glue, or tests).
///
/// # Calling context
/// Called **only from pager threads** (a small pool of loader threads), never from the thread
/// whose memory access faulted, and never with a pager lock held. Different blocks of one file may
/// be loaded concurrently; one block is never loaded twice at the same time. A `load` may block
/// (network, disk) but must not touch memory of a view of the same pager that is not loaded yet,
/// or it may deadlock.
pub trait BlockSource: Send + Sync + 'static {
    /// Fills `buf` (exactly `blksize` bytes, arbitrary prior content) with block `blk`.
    ///
    /// Blocks wholly beyond the file's logical size are never asked for (they read as zeros);
    /// for the block that straddles the size, bytes beyond it are zeroed after the call.
    fn load(&self, blk: u64, buf: &mut [u8]) -> Result<(), SourceError>;
}
