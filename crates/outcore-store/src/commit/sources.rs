//! Reading a block's new content from the sources a commit was given.

use super::{BlockSource, PageSource};
use crate::block;
use crate::error::{Error, Result};
use crate::types::ArrayId;

pub(super) fn check_len(array: ArrayId, blk: u64, len: usize, blksize: u64) -> Result<()> {
    if len as u64 > blksize {
        return Err(Error::Invalid(format!(
            "block {blk} of array {array}: {len} bytes written, block size is {blksize}"
        )));
    }
    Ok(())
}

/// Read a block's new content from its source into `buf` (reused).
pub(super) fn read_source_into(
    array: ArrayId,
    blk: u64,
    src: &mut dyn BlockSource,
    blksize: u64,
    mut buf: Vec<u8>,
) -> Result<Vec<u8>> {
    buf.clear();
    src.read_into(&mut buf).map_err(|source| Error::BlockSource { array, blk, source })?;
    check_len(array, blk, buf.len(), blksize)?;
    Ok(buf)
}

/// Overlay the pages a page source provides on `buf` (`blksize` bytes). `buf` holds the block's
/// stored content, at least at `pages`; with `stored`, those pages are first copied from it
/// (zeros beyond its end), the rest of `buf` being scratch.
pub(super) fn read_pages_into(
    array: ArrayId,
    blk: u64,
    pages: &[u32],
    src: &mut dyn PageSource,
    stored: Option<&[u8]>,
    buf: &mut [u8],
) -> Result<()> {
    if let Some(p) = pages.iter().find(|p| (**p as usize + 1) * block::PAGE > buf.len()) {
        return Err(Error::Invalid(format!("page {p} of block {blk} of array {array} lies beyond the block")));
    }
    if let Some(stored) = stored {
        for p in pages {
            let (start, end) = (*p as usize * block::PAGE, (*p as usize + 1) * block::PAGE);
            let have = stored.len().clamp(start, end);
            if have > start {
                buf[start..have].copy_from_slice(&stored[start..have]);
            }
            buf[have..end].fill(0);
        }
    }
    src.read_pages(pages, buf).map_err(|source| Error::BlockSource { array, blk, source })
}

pub(super) fn read_source(array: ArrayId, blk: u64, src: &mut dyn BlockSource, blksize: u64) -> Result<Vec<u8>> {
    read_source_into(array, blk, src, blksize, Vec::new())
}
