//! How block versions are encoded for storage: trailing zeros stripped, optional compression
//! (recorded per version, so an array's codec may change over time), and a checksum binding the
//! stored payload to its place (array, block, tid).

use crate::error::{Error, Result};
use crate::types::{ArrayId, Codec, Tid};
use twox_hash::XxHash3_64;

/// Payload kinds recorded per stored version: the block's whole content.
pub(crate) const KIND_FULL: i64 = 0;
/// Only the changed 4 KiB pages, over the previous version of the same block.
pub(crate) const KIND_DELTA: i64 = 1;

/// Granularity of delta versions.
pub(crate) const PAGE: usize = 4096;
/// Flag on a delta entry: the page is all zeros (no bytes stored).
const ZERO_PAGE: u32 = 1 << 31;
/// Longest delta chain (deltas after one full version).
pub(crate) const MAX_DEPTH: i64 = 32;
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
    /// The tid of the full version this version's chain starts from (its own tid if full).
    pub base_tid: Tid,
    /// Deltas between the base and this version, this one included (0 for a full version).
    pub depth: i64,
    /// Stored bytes of the chain from the base through this version: what a read costs.
    pub chain_bytes: i64,
}

/// The newest stored version of a block, as the commit path sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChainHead {
    pub len: u64,
    pub base_tid: Tid,
    pub depth: i64,
    pub chain_bytes: i64,
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
    let chain_bytes = payload.len() as i64;
    Encoded { kind: KIND_FULL, codec, len: len as u64, checksum, data: payload, base_tid: tid, depth: 0, chain_bytes }
}

/// Encode the new content `data` of a block as a delta over `prev`, listing `pages` (every 4 KiB
/// page that differs from `prev`'s content). `None` when a full version is the better choice:
/// no usable previous version, a delta not smaller than the full content, or a chain that would
/// pass its bounds (depth, or bytes a read must fetch).
pub(crate) fn encode_delta(
    array: ArrayId,
    blk: u64,
    tid: Tid,
    data: &[u8],
    pages: &[u32],
    prev: Option<ChainHead>,
    codec: Codec,
) -> Option<Encoded> {
    let prev = prev.filter(|p| p.len > 0)?;
    let len = content_len(data);
    if len == 0 || prev.depth >= MAX_DEPTH {
        return None;
    }
    let mut pages: Vec<u32> = pages.to_vec();
    pages.sort_unstable();
    pages.dedup();
    let npages_block = data.len().div_ceil(PAGE).max(prev.len.div_ceil(PAGE as u64) as usize);
    let mut head = Vec::with_capacity(4 + 4 * pages.len());
    let mut body = Vec::new();
    let mut count = 0u32;
    for &p in &pages {
        let start = p as usize * PAGE;
        if p as usize >= npages_block.max(len.div_ceil(PAGE)) || p & ZERO_PAGE != 0 {
            continue; // beyond both contents: zero before and after
        }
        let page = data.get(start..(start + PAGE).min(data.len())).unwrap_or(&[]);
        count += 1;
        if page.iter().all(|b| *b == 0) {
            head.extend_from_slice(&(p | ZERO_PAGE).to_le_bytes());
        } else {
            head.extend_from_slice(&p.to_le_bytes());
            body.extend_from_slice(page);
            body.resize(body.len() + (PAGE - page.len()), 0);
        }
    }
    let mut raw = Vec::with_capacity(4 + head.len() + body.len());
    raw.extend_from_slice(&count.to_le_bytes());
    raw.extend_from_slice(&head);
    raw.extend_from_slice(&body);
    if raw.len() >= len {
        return None;
    }
    let (codec, payload) = compress(&raw, codec).unwrap_or((CODEC_RAW, raw));
    let chain_bytes = prev.chain_bytes + payload.len() as i64;
    // A read fetches the whole chain: keep it within 1.5x of the block's content (and at least
    // an eighth of a 2 MiB block, so small blocks still get a few deltas).
    let budget = (len.max(256 << 10) as i64) * 3 / 2;
    if chain_bytes > budget {
        return None;
    }
    let checksum = checksum(array, blk, tid, KIND_DELTA, codec, len as u64, &payload);
    Some(Encoded {
        kind: KIND_DELTA,
        codec,
        len: len as u64,
        checksum,
        data: payload,
        base_tid: prev.base_tid,
        depth: prev.depth + 1,
        chain_bytes,
    })
}

/// Verify a stored delta and apply it onto `buf`, which holds the previous version's content.
pub(crate) fn apply_delta(array: ArrayId, blk: u64, s: &Stored<'_>, buf: &mut [u8]) -> Result<()> {
    let bad = |d: String| corrupt(array, blk, s.tid, d);
    if s.kind != KIND_DELTA {
        return Err(bad(format!("expected a delta version, found kind {}", s.kind)));
    }
    check(array, blk, s, s.data, buf.len())?;
    let decoded;
    let raw: &[u8] = match s.codec {
        CODEC_RAW => s.data,
        CODEC_ZSTD => {
            decoded = zstd::stream::decode_all(s.data).map_err(|e| bad(format!("zstd: {e}")))?;
            &decoded
        }
        CODEC_LZ4 => {
            let cap = 4 + buf.len() / PAGE * (4 + PAGE);
            decoded = lz4_flex::block::decompress(s.data, cap).map_err(|e| bad(format!("lz4: {e}")))?;
            &decoded
        }
        other => return Err(bad(format!("unknown codec {other}"))),
    };
    let word = |i: usize| -> Option<u32> {
        let b = raw.get(i..i + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let count = word(0).ok_or_else(|| bad("delta shorter than its header".into()))? as usize;
    let mut at = 4 + 4 * count;
    for i in 0..count {
        let e = word(4 + 4 * i).ok_or_else(|| bad("delta header cut short".into()))?;
        let p = (e & !ZERO_PAGE) as usize;
        let start = p * PAGE;
        let end = (start + PAGE).min(buf.len());
        if start >= buf.len() {
            return Err(bad(format!("delta page {p} lies beyond the block")));
        }
        if e & ZERO_PAGE != 0 {
            buf[start..end].fill(0);
        } else {
            let src = raw.get(at..at + PAGE).ok_or_else(|| bad("delta page data cut short".into()))?;
            buf[start..end].copy_from_slice(&src[..end - start]);
            at += PAGE;
        }
    }
    if at != raw.len() {
        return Err(bad(format!("{} unexpected bytes after the delta's pages", raw.len() - at)));
    }
    buf[s.len as usize..].fill(0);
    Ok(())
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

/// The checks every stored version passes before use: its recorded length fits the block, and
/// `payload` (the stored bytes) matches its checksum.
fn check(array: ArrayId, blk: u64, s: &Stored<'_>, payload: &[u8], blksize: usize) -> Result<()> {
    if s.len as usize > blksize {
        return Err(corrupt(array, blk, s.tid, format!("recorded length {} exceeds the block size {blksize}", s.len)));
    }
    let sum = checksum(array, blk, s.tid, s.kind, s.codec, s.len, payload);
    if sum != s.checksum {
        let detail = format!("checksum mismatch (stored {:#x}, computed {sum:#x})", s.checksum);
        return Err(corrupt(array, blk, s.tid, detail));
    }
    Ok(())
}

/// Verify a stored version and write the block's full content into `buf` (zero-filled tail).
/// Returns an error naming the place on any mismatch; `buf` then holds no usable data.
pub(crate) fn decode_into(array: ArrayId, blk: u64, s: &Stored<'_>, buf: &mut [u8]) -> Result<()> {
    let len = s.len as usize;
    check(array, blk, s, s.data, buf.len())?;
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
    if s.kind != KIND_FULL || s.codec != CODEC_RAW {
        return Err(corrupt(array, blk, s.tid, format!("not a raw full version (kind {}, codec {})", s.kind, s.codec)));
    }
    check(array, blk, s, buf.get(..len).unwrap_or(&[]), buf.len())?;
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

    #[test]
    fn deltas_store_only_changed_pages_and_rebuild_the_block() {
        let bs = 64 << 10;
        let mut old = vec![0u8; bs];
        old[..20000].fill(3);
        let base = encode(ArrayId(1), 0, 1, &old, Codec::None);
        let prev = ChainHead { len: base.len, base_tid: 1, depth: 0, chain_bytes: base.chain_bytes };
        let mut new = old.clone();
        new[5000] = 9; // page 1
        new[8192..12288].fill(0); // page 2 becomes zero
        new[30000..30010].fill(7); // page 7, beyond the old content
        let d = encode_delta(ArrayId(1), 0, 2, &new, &[7, 1, 2, 1], Some(prev), Codec::None).unwrap();
        assert_eq!(d.kind, KIND_DELTA);
        assert_eq!((d.base_tid, d.depth), (1, 1));
        assert_eq!(d.data.len(), 4 + 3 * 4 + 2 * PAGE, "two pages with data, one zero page");
        let mut buf = vec![0u8; bs];
        decode_into(ArrayId(1), 0, &stored(&base, 1), &mut buf).unwrap();
        apply_delta(ArrayId(1), 0, &stored(&d, 2), &mut buf).unwrap();
        assert_eq!(buf, new);
        // Compressed deltas too.
        let z = encode_delta(ArrayId(1), 0, 2, &new, &[1, 2, 7], Some(prev), Codec::Zstd { level: 1 }).unwrap();
        assert_eq!(z.codec, CODEC_ZSTD);
        decode_into(ArrayId(1), 0, &stored(&base, 1), &mut buf).unwrap();
        apply_delta(ArrayId(1), 0, &stored(&z, 2), &mut buf).unwrap();
        assert_eq!(buf, new);
        // A delta as big as the content, a too-deep chain, or no previous data: full instead.
        let all: Vec<u32> = (0..16).collect();
        let dense = vec![5u8; bs];
        assert!(encode_delta(ArrayId(1), 0, 2, &dense, &all, Some(prev), Codec::None).is_none());
        let deep = ChainHead { depth: MAX_DEPTH, ..prev };
        assert!(encode_delta(ArrayId(1), 0, 2, &new, &[1], Some(deep), Codec::None).is_none());
        assert!(encode_delta(ArrayId(1), 0, 2, &new, &[1], None, Codec::None).is_none());
        let empty = ChainHead { len: 0, ..prev };
        assert!(encode_delta(ArrayId(1), 0, 2, &new, &[1], Some(empty), Codec::None).is_none());
    }

    #[test]
    fn a_damaged_delta_is_an_error() {
        let bs = 64 << 10;
        let old = vec![1u8; bs];
        let prev = ChainHead { len: bs as u64, base_tid: 1, depth: 0, chain_bytes: bs as i64 };
        let mut new = old.clone();
        new[0] = 2;
        let d = encode_delta(ArrayId(1), 0, 2, &new, &[0], Some(prev), Codec::None).unwrap();
        let mut cut = d.data.clone();
        cut.truncate(cut.len() - 10);
        let sum = checksum(ArrayId(1), 0, 2, d.kind, d.codec, d.len, &cut);
        let s = Stored { tid: 2, kind: d.kind, codec: d.codec, len: d.len, checksum: sum, data: &cut };
        let mut buf = old.clone();
        assert!(matches!(apply_delta(ArrayId(1), 0, &s, &mut buf), Err(Error::Corrupt { .. })));
        let mut flipped = d.data.clone();
        flipped[20] ^= 1;
        let s = Stored { data: &flipped, ..stored(&d, 2) };
        assert!(matches!(apply_delta(ArrayId(1), 0, &s, &mut buf), Err(Error::Corrupt { .. })));
    }
}
