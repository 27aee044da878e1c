//! How block versions are encoded for storage: trailing zeros stripped, a checksum binding the
//! payload to its place (array, block, tid), and the codec recorded per version.

use crate::error::{Error, Result};
use crate::types::{ArrayId, Tid};
use twox_hash::XxHash3_64;

/// Payload kinds recorded per stored version.
pub(crate) const KIND_FULL: i64 = 0;
/// Codec tags recorded per stored version.
pub(crate) const CODEC_RAW: i64 = 0;

/// A block version ready to be stored.
#[derive(Debug, Clone)]
pub(crate) struct Encoded {
    pub kind: i64,
    pub codec: i64,
    /// Logical content length: the block's bytes at or beyond it are zero.
    pub len: u64,
    pub checksum: i64,
    pub data: Vec<u8>,
}

/// Length of `data` without its all-zero tail.
pub(crate) fn content_len(data: &[u8]) -> usize {
    // Compare 8-byte words first: the tail of a block is usually long.
    let mut end = data.len();
    while end >= 8 {
        let w = &data[end - 8..end];
        if w != [0u8; 8] {
            break;
        }
        end -= 8;
    }
    while end > 0 && data[end - 1] == 0 {
        end -= 1;
    }
    end
}

fn seed(array: ArrayId, blk: u64, tid: Tid, kind: i64, codec: i64, len: u64) -> u64 {
    let mut key = [0u8; 48];
    key[0..8].copy_from_slice(&array.0.to_le_bytes());
    key[8..16].copy_from_slice(&blk.to_le_bytes());
    key[16..24].copy_from_slice(&tid.to_le_bytes());
    key[24..32].copy_from_slice(&kind.to_le_bytes());
    key[32..40].copy_from_slice(&codec.to_le_bytes());
    key[40..48].copy_from_slice(&len.to_le_bytes());
    XxHash3_64::oneshot_with_seed(0x6f75_7463_6f72_6521, &key)
}

/// The checksum of a stored payload at its place.
pub(crate) fn checksum(array: ArrayId, blk: u64, tid: Tid, kind: i64, codec: i64, len: u64, data: &[u8]) -> i64 {
    XxHash3_64::oneshot_with_seed(seed(array, blk, tid, kind, codec, len), data) as i64
}

/// Encode the full content of a block (`data` may be shorter than the block: the rest is zero).
pub(crate) fn encode(array: ArrayId, blk: u64, tid: Tid, data: &[u8]) -> Encoded {
    let len = content_len(data);
    let payload = data[..len].to_vec();
    let checksum = checksum(array, blk, tid, KIND_FULL, CODEC_RAW, len as u64, &payload);
    Encoded { kind: KIND_FULL, codec: CODEC_RAW, len: len as u64, checksum, data: payload }
}

/// A stored version as read back from a backend.
pub(crate) struct Stored<'a> {
    pub tid: Tid,
    pub kind: i64,
    pub codec: i64,
    pub len: u64,
    pub checksum: i64,
    pub data: &'a [u8],
}

/// Verify a stored version and write the block's full content into `buf` (zero-filled tail).
/// Returns an error naming the place on any mismatch; `buf` then holds no usable data.
pub(crate) fn decode_into(array: ArrayId, blk: u64, s: &Stored<'_>, buf: &mut [u8]) -> Result<()> {
    if s.data.len() as u64 != s.len || s.data.len() > buf.len() {
        return Err(corrupt_len(array, blk, s.tid, s.data.len(), s.len, buf.len()));
    }
    buf[..s.data.len()].copy_from_slice(s.data);
    verify_in_place(array, blk, &Stored { data: &[], ..*s }, buf)
}

fn corrupt_len(array: ArrayId, blk: u64, tid: Tid, got: usize, recorded: u64, blksize: usize) -> Error {
    Error::Corrupt {
        array,
        name: String::new(),
        blk,
        tid,
        detail: format!("stored length {got} does not fit (recorded {recorded}, block size {blksize})"),
    }
}

/// Verify a stored version whose payload (`s.len` bytes) was already read into the head of
/// `buf`, and zero the rest of `buf`. `s.data` is ignored.
pub(crate) fn verify_in_place(array: ArrayId, blk: u64, s: &Stored<'_>, buf: &mut [u8]) -> Result<()> {
    let corrupt = |detail: String| Error::Corrupt { array, name: String::new(), blk, tid: s.tid, detail };
    let len = s.len as usize;
    if len > buf.len() {
        return Err(corrupt_len(array, blk, s.tid, len, s.len, buf.len()));
    }
    let sum = checksum(array, blk, s.tid, s.kind, s.codec, s.len, &buf[..len]);
    if sum != s.checksum {
        return Err(corrupt(format!("checksum mismatch (stored {:#x}, computed {:#x})", s.checksum, sum)));
    }
    if s.kind != KIND_FULL || s.codec != CODEC_RAW {
        return Err(corrupt(format!("unknown encoding kind={} codec={}", s.kind, s.codec)));
    }
    buf[len..].fill(0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_len_strips_only_the_zero_tail() {
        assert_eq!(content_len(&[]), 0);
        assert_eq!(content_len(&[0; 100]), 0);
        let mut v = vec![0u8; 100];
        v[0] = 1;
        assert_eq!(content_len(&v), 1);
        v[37] = 5;
        assert_eq!(content_len(&v), 38);
        v[99] = 1;
        assert_eq!(content_len(&v), 100);
    }

    #[test]
    fn checksum_binds_payload_to_its_place() {
        let e = encode(ArrayId(1), 2, 3, b"hello\0\0");
        assert_eq!(e.len, 5);
        let mut buf = [9u8; 8];
        let s = Stored { tid: 3, kind: e.kind, codec: e.codec, len: e.len, checksum: e.checksum, data: &e.data };
        decode_into(ArrayId(1), 2, &s, &mut buf).unwrap();
        assert_eq!(&buf, b"hello\0\0\0");
        // Same bytes presented as another block or another tid: detected.
        assert!(decode_into(ArrayId(1), 3, &s, &mut buf).is_err());
        let moved = Stored { tid: 4, ..s };
        assert!(decode_into(ArrayId(1), 2, &moved, &mut buf).is_err());
        let flipped = b"hellp".to_vec();
        let bad = Stored { tid: 3, kind: e.kind, codec: e.codec, len: e.len, checksum: e.checksum, data: &flipped };
        assert!(matches!(decode_into(ArrayId(1), 2, &bad, &mut buf), Err(Error::Corrupt { .. })));
    }
}
