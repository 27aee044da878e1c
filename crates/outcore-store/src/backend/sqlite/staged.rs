//! Page checksums of staged extents, computed from the bytes as they are written (an append
//! writes its bytes with direct I/O, so they are not in the page cache to read back at commit).
//!
//! A staged extent starts as zeros (it is punched when allocated). Each write records the
//! checksum and content length of every page it covers whole, and marks the pages it covers
//! in part as unknown; at commit, [`StagedPages::finish`] reads back only the unknown pages.
//! The cost is 6 bytes of memory per 4 KiB page staged (0.15%) until the commit or release.

use crate::block::{self, PAGE};
use crate::error::Result;
use crate::types::ArrayId;

/// What is known of one page of a staged extent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Page {
    /// Never written: zeros.
    Zero,
    /// Written whole: its checksum and the length of its content (bytes up to the last nonzero).
    Known { sum: u32, len: u16 },
    /// Written in part: read back at commit.
    Unknown,
}

/// The pages of one staged extent of an array's block.
#[derive(Debug)]
pub(crate) struct StagedPages {
    array: ArrayId,
    blk: u64,
    pages: Vec<Page>,
}

impl StagedPages {
    /// An extent of `size` bytes that will hold block `blk` of `array`.
    pub fn new(array: ArrayId, blk: u64, size: u64) -> StagedPages {
        StagedPages { array, blk, pages: vec![Page::Zero; (size as usize).div_ceil(PAGE)] }
    }

    /// Whether this extent was staged for block `blk` of `array`.
    pub fn is_for(&self, array: ArrayId, blk: u64) -> bool {
        self.array == array && self.blk == blk
    }

    /// Record that `bytes` were written at byte `at` of the extent.
    pub fn wrote(&mut self, at: usize, bytes: &[u8]) {
        let end = at + bytes.len();
        let mut p = at / PAGE;
        while p * PAGE < end && p < self.pages.len() {
            let (a, b) = (p * PAGE, (p + 1) * PAGE);
            self.pages[p] = if a >= at && b <= end {
                let page = &bytes[a - at..b - at];
                let len = block::content_len(page) as u16;
                Page::Known { sum: block::page_sum(self.array, self.blk, p as u32, page), len }
            } else {
                Page::Unknown
            };
            p += 1;
        }
    }

    /// The content length and page checksums of the extent (as [`block::page_sums`] computes
    /// them from the whole content); `read_page(p, buf)` reads page `p` back when a write
    /// covered it only in part.
    pub fn finish(&self, mut read_page: impl FnMut(usize, &mut [u8]) -> Result<()>) -> Result<(usize, Vec<u8>)> {
        let mut buf = vec![0u8; PAGE];
        let mut known = Vec::with_capacity(self.pages.len());
        for (p, page) in self.pages.iter().enumerate() {
            known.push(match *page {
                Page::Zero => (0, 0),
                Page::Known { sum, len } => (sum, len as usize),
                Page::Unknown => {
                    read_page(p, &mut buf)?;
                    (block::page_sum(self.array, self.blk, p as u32, &buf), block::content_len(&buf))
                }
            });
        }
        let len = known.iter().enumerate().rev().find(|(_, k)| k.1 > 0).map_or(0, |(p, k)| p * PAGE + k.1);
        let mut sums = Vec::with_capacity(len.div_ceil(PAGE) * 4);
        for (p, (sum, _)) in known.iter().enumerate().take(len.div_ceil(PAGE)) {
            let sum = if matches!(self.pages[p], Page::Zero) {
                block::page_sum(self.array, self.blk, p as u32, &[])
            } else {
                *sum
            };
            sums.extend_from_slice(&sum.to_le_bytes());
        }
        Ok((len, sums))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Apply writes to a zero extent and to the tracker; the tracker's result must equal what
    /// `block` computes from the whole content.
    fn check(size: usize, writes: &[(usize, Vec<u8>)]) {
        let (a, blk) = (ArrayId(7), 3);
        let mut content = vec![0u8; size];
        let mut t = StagedPages::new(a, blk, size as u64);
        for (at, bytes) in writes {
            content[*at..at + bytes.len()].copy_from_slice(bytes);
            t.wrote(*at, bytes);
        }
        let (len, sums) = t
            .finish(|p, buf| {
                buf.copy_from_slice(&content[p * PAGE..(p + 1) * PAGE]);
                Ok(())
            })
            .unwrap();
        let want = block::content_len(&content);
        assert_eq!(len, want);
        assert_eq!(sums, block::page_sums(a, blk, &content, want));
    }

    #[test]
    fn whole_partial_and_overlapping_writes_give_the_block_checksums() {
        let size = 16 * PAGE;
        let ramp = |n: usize, k: u8| (0..n).map(|i| (i as u8).wrapping_mul(k) | 1).collect::<Vec<u8>>();
        check(size, &[]);
        check(size, &[(0, ramp(size, 3))]);
        check(size, &[(100, ramp(5000, 5))]);
        check(size, &[(0, ramp(3 * PAGE, 5)), (3 * PAGE, ramp(2 * PAGE + 17, 7))]);
        // A page written whole, then in part; a zero page in the middle; a zero tail.
        check(size, &[(0, ramp(2 * PAGE, 9)), (PAGE + 10, vec![0; 20]), (5 * PAGE, ramp(PAGE, 11))]);
        let mut tail = ramp(PAGE, 13);
        tail[PAGE - 100..].fill(0);
        check(size, &[(8 * PAGE, tail)]);
        check(size, &[(0, ramp(size, 3)), (0, vec![0; size])]);
    }
}
