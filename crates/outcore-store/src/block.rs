//! How block versions are encoded for storage: trailing zeros stripped, optional compression
//! (recorded per version, so an array's codec may change over time), and a checksum binding the
//! stored payload to its place (array, block, tid).

use crate::error::{Error, Result};
use crate::types::{ArrayId, Codec, Tid};
use twox_hash::XxHash3_64;

/// Payload kinds recorded per stored version.
pub(crate) const KIND_FULL: i64 = 0;
/// Codec tags recorded per stored version.
pub(crate) const CODEC_RAW: i64 = 0;
/// zstd frame.
pub(crate) const CODEC_ZSTD: i64 = 1;
/// lz4 block (size not prepended: the logical length is recorded in the row).
pub(crate) const CODEC_LZ4: i64 = 2;

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

/// Compress `content` with `codec`; `None` when that does not save at least 1/16 of it.
fn compress(content: &[u8], codec: Codec) -> Option<(i64, Vec<u8>)> {
    let (tag, out) = match codec {
        Codec::None => return None,
        Codec::Zstd { level } => (CODEC_ZSTD, zstd::bulk::compress(content, level).ok()?),
        Codec::Lz4 => (CODEC_LZ4, lz4_flex::block::compress(content)),
    };
    (out.len() + content.len() / 16 < content.len()).then_some((tag, out))
}

/// Encode the full content of a block (`data` may be shorter than the block: the rest is zero),
/// compressed with `codec` when that pays.
pub(crate) fn encode(array: ArrayId, blk: u64, tid: Tid, data: &[u8], codec: Codec) -> Encoded {
    let len = content_len(data);
    let (codec, payload) = compress(&data[..len], codec).unwrap_or_else(|| (CODEC_RAW, data[..len].to_vec()));
    let checksum = checksum(array, blk, tid, KIND_FULL, codec, len as u64, &payload);
    Encoded { kind: KIND_FULL, codec, len: len as u64, checksum, data: payload }
}

/// A stored version as read back from a backend.
pub(crate) struct Stored<'a> {
    pub tid: Tid,
    pub kind: i64,
    pub codec: i64,
    /// Logical content length.
    pub len: u64,
    pub checksum: i64,
    /// The stored payload (possibly compressed).
    pub data: &'a [u8],
}

fn corrupt(array: ArrayId, blk: u64, tid: Tid, detail: String) -> Error {
    Error::Corrupt { array, name: String::new(), blk, tid, detail }
}

/// Verify a stored version and write the block's full content into `buf` (zero-filled tail).
/// Returns an error naming the place on any mismatch; `buf` then holds no usable data.
pub(crate) fn decode_into(array: ArrayId, blk: u64, s: &Stored<'_>, buf: &mut [u8]) -> Result<()> {
    let len = s.len as usize;
    if len > buf.len() {
        return Err(corrupt(array, blk, s.tid, format!("recorded length {len} exceeds the block size {}", buf.len())));
    }
    let sum = checksum(array, blk, s.tid, s.kind, s.codec, s.len, s.data);
    if sum != s.checksum {
        return Err(corrupt(
            array,
            blk,
            s.tid,
            format!("checksum mismatch (stored {:#x}, computed {sum:#x})", s.checksum),
        ));
    }
    if s.kind != KIND_FULL {
        return Err(corrupt(array, blk, s.tid, format!("unknown version kind {}", s.kind)));
    }
    let out = &mut buf[..len];
    let got = match s.codec {
        CODEC_RAW if s.data.len() == len => {
            out.copy_from_slice(s.data);
            Ok(len)
        }
        CODEC_RAW => Err(format!("stored length {} differs from recorded length {len}", s.data.len())),
        CODEC_ZSTD => zstd::bulk::decompress_to_buffer(s.data, out).map_err(|e| format!("zstd: {e}")),
        CODEC_LZ4 => lz4_flex::block::decompress_into(s.data, out).map_err(|e| format!("lz4: {e}")),
        other => Err(format!("unknown codec {other}")),
    }
    .map_err(|d| corrupt(array, blk, s.tid, d))?;
    if got != len {
        return Err(corrupt(array, blk, s.tid, format!("decoded {got} bytes, recorded length {len}")));
    }
    buf[len..].fill(0);
    Ok(())
}

/// Verify a raw full version whose payload (`s.len` bytes) was already read into the head of
/// `buf`, and zero the rest of `buf`. `s.data` is ignored.
pub(crate) fn verify_in_place(array: ArrayId, blk: u64, s: &Stored<'_>, buf: &mut [u8]) -> Result<()> {
    let len = s.len as usize;
    if len > buf.len() {
        return Err(corrupt(array, blk, s.tid, format!("recorded length {len} exceeds the block size {}", buf.len())));
    }
    if s.kind != KIND_FULL || s.codec != CODEC_RAW {
        return Err(corrupt(array, blk, s.tid, format!("not a raw full version (kind {}, codec {})", s.kind, s.codec)));
    }
    let sum = checksum(array, blk, s.tid, s.kind, s.codec, s.len, &buf[..len]);
    if sum != s.checksum {
        return Err(corrupt(
            array,
            blk,
            s.tid,
            format!("checksum mismatch (stored {:#x}, computed {sum:#x})", s.checksum),
        ));
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

    fn stored(e: &Encoded, tid: Tid) -> Stored<'_> {
        Stored { tid, kind: e.kind, codec: e.codec, len: e.len, checksum: e.checksum, data: &e.data }
    }

    #[test]
    fn checksum_binds_payload_to_its_place() {
        let e = encode(ArrayId(1), 2, 3, b"hello\0\0", Codec::None);
        assert_eq!(e.len, 5);
        let mut buf = [9u8; 8];
        decode_into(ArrayId(1), 2, &stored(&e, 3), &mut buf).unwrap();
        assert_eq!(&buf, b"hello\0\0\0");
        // Same bytes presented as another block or another tid: detected.
        assert!(decode_into(ArrayId(1), 3, &stored(&e, 3), &mut buf).is_err());
        assert!(decode_into(ArrayId(1), 2, &stored(&e, 4), &mut buf).is_err());
        let flipped = b"hellp".to_vec();
        let bad = Stored { data: &flipped, ..stored(&e, 3) };
        assert!(matches!(decode_into(ArrayId(1), 2, &bad, &mut buf), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn codecs_round_trip_and_are_used_only_when_they_pay() {
        let mut data = vec![0u8; 64 << 10];
        for (i, b) in data.iter_mut().enumerate().take(40 << 10) {
            *b = (i / 512) as u8 | 1;
        }
        for codec in [Codec::Zstd { level: 3 }, Codec::Lz4, Codec::None] {
            let e = encode(ArrayId(7), 1, 9, &data, codec);
            assert_eq!(e.len, 40 << 10);
            if codec == Codec::None {
                assert_eq!(e.codec, CODEC_RAW);
            } else {
                assert!(e.data.len() < 4 << 10, "{codec:?} stored {} bytes", e.data.len());
            }
            let mut buf = vec![0xEEu8; 64 << 10];
            decode_into(ArrayId(7), 1, &stored(&e, 9), &mut buf).unwrap();
            assert_eq!(buf, data);
        }
        // Incompressible content is stored raw.
        let mut x = 1u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (x >> 56) as u8
            })
            .collect();
        assert_eq!(encode(ArrayId(7), 1, 9, &noise, Codec::Zstd { level: 3 }).codec, CODEC_RAW);
    }

    #[test]
    fn a_corrupt_compressed_payload_is_an_error_not_data() {
        let data = vec![5u8; 10000];
        let e = encode(ArrayId(1), 0, 1, &data, Codec::Lz4);
        let mut bad = e.data.clone();
        let n = bad.len();
        bad.truncate(n - 1);
        // Re-seal the checksum so only the decoder can notice.
        let sum = checksum(ArrayId(1), 0, 1, e.kind, e.codec, e.len, &bad);
        let s = Stored { tid: 1, kind: e.kind, codec: e.codec, len: e.len, checksum: sum, data: &bad };
        let mut buf = vec![0u8; 16384];
        assert!(matches!(decode_into(ArrayId(1), 0, &s, &mut buf), Err(Error::Corrupt { .. })));
    }
}
