//! `FillPattern`: what the bytes of a file read as where nothing was stored (one element's bytes,
//! repeated from offset 0).

use std::sync::Arc;

/// Bytes per chunk of the repeated pattern used by [`FillPattern::write`] and
/// [`FillPattern::xor`] (rounded up to whole elements).
const CHUNK: usize = 4096;

/// One element's bytes repeated over a whole file: byte `o` of the file is `elem[o % len]`.
///
/// A file of the userfaultfd engine opened with a pattern ([`Pager::open_file_filled`]) reads it
/// beyond its logical size, where it would read zeros otherwise. The layer above also uses it to
/// convert between memory and a stored form (`xor`).
///
/// [`Pager::open_file_filled`]: crate::Pager::open_file_filled
#[derive(Clone, PartialEq, Eq)]
pub struct FillPattern {
    elem: Arc<[u8]>,
}

impl std::fmt::Debug for FillPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FillPattern(")?;
        for b in self.elem.iter() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl FillPattern {
    /// The pattern of the element `elem`; `None` if it is empty or all zero bytes (zeros are
    /// what files read anyway).
    pub fn new(elem: &[u8]) -> Option<FillPattern> {
        if elem.iter().all(|b| *b == 0) {
            return None;
        }
        Some(FillPattern { elem: elem.into() })
    }

    /// The element's bytes.
    pub fn element(&self) -> &[u8] {
        &self.elem
    }

    /// The pattern's bytes for `len` (a multiple of the element size) bytes starting at file
    /// offset `offset`.
    fn chunk(&self, offset: u64) -> Vec<u8> {
        let n = self.elem.len();
        let phase = (offset % n as u64) as usize;
        let len = CHUNK.div_ceil(n) * n;
        (0..len).map(|i| self.elem[(phase + i) % n]).collect()
    }

    /// Overwrites `buf`, which holds the file's bytes from `offset`, with the pattern.
    pub fn write(&self, buf: &mut [u8], offset: u64) {
        let chunk = self.chunk(offset);
        for part in buf.chunks_mut(chunk.len()) {
            part.copy_from_slice(&chunk[..part.len()]);
        }
    }

    /// XORs `buf`, which holds the file's bytes from `offset`, with the pattern: zero bytes
    /// become the pattern and the pattern's bytes become zeros (its own inverse).
    pub fn xor(&self, buf: &mut [u8], offset: u64) {
        let chunk = self.chunk(offset);
        for part in buf.chunks_mut(chunk.len()) {
            for (b, p) in part.iter_mut().zip(&chunk) {
                *b ^= *p;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_and_inverse() {
        assert!(FillPattern::new(&[0, 0, 0]).is_none());
        let p = FillPattern::new(&[1, 2, 3]).expect("pattern");
        let mut buf = vec![0u8; 10_000];
        p.write(&mut buf, 7);
        assert!(buf.iter().enumerate().all(|(i, b)| *b == [1, 2, 3][(7 + i) % 3]));
        p.xor(&mut buf, 7);
        assert!(buf.iter().all(|b| *b == 0));
        let mut one = vec![9u8; 5];
        p.xor(&mut one, 1);
        assert_eq!(one, vec![9 ^ 2, 9 ^ 3, 9 ^ 1, 9 ^ 2, 9 ^ 3]);
    }
}
