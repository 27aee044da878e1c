//! How block versions are encoded for storage (format v3, see `docs/design/001-block-versions.md`).
//!
//! Each block has one **current** version (its newest content, trailing zeros stripped, raw so
//! that small commits can rewrite only the changed pages in place, or compressed as a whole when
//! the array asks for compression), and one **undo** record per commit that changed it: the
//! previous content of the 4 KiB pages that commit changed. A read at the head is one read of the
//! current version; a read at an older snapshot applies the undo records newer than it, newest
//! first. On SQLite the current version may also have **pending patches** (the new bytes of the
//! pages small scattered commits changed), applied in order after its stored payload until a
//! commit merges them. Every stored payload carries a checksum binding it to its place (array,
//! block, tid, kind).

use crate::error::{Error, Result};
use crate::types::{ArrayId, Codec, Tid};
use twox_hash::XxHash3_64;

/// Payload kinds, bound into the checksum: the current content of a block.
pub(crate) const KIND_CURRENT: i64 = 0;
/// Pages of the previous version, as they were before the commit that wrote the record.
pub(crate) const KIND_UNDO: i64 = 1;
/// The whole previous version: a checkpoint where reads of older snapshots can start.
pub(crate) const KIND_UNDO_FULL: i64 = 2;
/// Pages of the new version, as a commit wrote them, kept beside the current version instead
/// of rewriting it (a pending patch, merged into the current version by a later commit).
pub(crate) const KIND_PATCH: i64 = 3;

/// Most pending patches of one block: a head read fetches each (a small random read when cold).
pub(crate) const MAX_PATCHES: i64 = 4;
/// Pending patches of one block may hold up to this fraction of its block size: a head read
/// fetches at most that much more than the current version.
pub(crate) const PATCH_BUDGET_DIVISOR: u64 = 4;

/// Most page records between two full undo records of a block.
pub(crate) const MAX_UNDO_DEPTH: i64 = 1024;
/// Page records of a block since its last full record may hold up to this many times the
/// block's content (at least 256 KiB) before the next record is a full one: reading any snapshot
/// then fetches at most about that much history, and checkpoints add at most a fifth to it.
const UNDO_BUDGET_FACTOR: i64 = 4;

/// Granularity of undo records and of in-place writes.
pub(crate) const PAGE: usize = 4096;
/// Flag on an undo entry: the page was all zeros (no bytes stored).
const ZERO_PAGE: u32 = 1 << 31;
/// Flag on an undo entry: only byte ranges of the page are stored (the next word counts them,
/// then one word per range: `start | len << 16`; their bytes follow in the body). Applied to
/// the newer version, which differs from the older one in exactly those bytes of the page.
const RANGES: u32 = 1 << 30;
/// Bytes of identical content that may sit between two ranges of one record (joined).
const RANGE_GAP: usize = 32;
/// Codec tags recorded per stored payload.
pub(crate) const CODEC_RAW: i64 = 0;
/// zstd frame.
pub(crate) const CODEC_ZSTD: i64 = 1;
/// lz4 block (size not prepended: the logical length is recorded in the row).
pub(crate) const CODEC_LZ4: i64 = 2;

/// An undo record ready to be stored.
#[derive(Debug, Clone)]
pub(crate) struct Encoded {
    /// `KIND_UNDO` (changed pages) or `KIND_UNDO_FULL` (the whole previous version).
    pub kind: i64,
    /// Where the record sits in its block's history since the last full record.
    pub chain: UndoChain,
    pub codec: i64,
    /// Logical content length of the version the payload rebuilds: its bytes at or beyond it are
    /// zero. For an undo record: the length before the commit.
    pub len: u64,
    pub checksum: i64,
    pub data: Vec<u8>,
    /// Undo records: the tid of the version they restore (0: the block did not exist).
    pub prev_tid: Tid,
}

/// Page records of a block since its last full undo record (this one included; 0 for a full
/// record): what reading back past them costs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct UndoChain {
    /// Number of page records.
    pub depth: i64,
    /// Their stored bytes.
    pub bytes: i64,
}

/// How a payload's checksum binds the tid of the commit that wrote it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum TidBinding {
    /// The tid is hashed with the rest of the payload's place (local stores).
    #[default]
    Seed,
    /// The place is hashed with tid 0 and the tid is bound by xoring [`tid_mix`] of it into the
    /// sum. A PostgreSQL commit sends its rows before the server gives it its tid; the server
    /// binds them to it with the same function (`outcore_tid_mix`). A row moved to another tid
    /// still fails its check: the mix is one to one.
    Mix,
}

/// Xored into [`tid_mix`]: a tid of 0 does not leave the sum unchanged.
const TID_MIX_KEY: i64 = 0x6f75_7463_6f72_6574; // "outcoret"

/// The value a [`TidBinding::Mix`] checksum is xored with for `tid`: an invertible xor of left
/// shifts (a unit triangular map of the bits), which SQL computes on `bigint` as
/// `outcore_tid_mix` does (shifts drop the bits they push out, as here).
pub(crate) fn tid_mix(tid: Tid) -> i64 {
    let t = tid as i64;
    t ^ (t << 17) ^ (t << 31) ^ (t << 47) ^ TID_MIX_KEY
}

/// A stored payload as read back from a backend.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stored<'a> {
    /// How its checksum binds `tid`.
    pub bind: TidBinding,
    pub tid: Tid,
    pub kind: i64,
    pub codec: i64,
    /// Logical content length.
    pub len: u64,
    pub checksum: i64,
    /// Undo records: the tid of the version they restore.
    pub prev_tid: Tid,
    /// The stored payload (possibly compressed).
    pub data: &'a [u8],
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

/// Everything but the payload that a checksum binds.
struct Place {
    bind: TidBinding,
    array: ArrayId,
    blk: u64,
    tid: Tid,
    kind: i64,
    codec: i64,
    len: u64,
    prev_tid: Tid,
}

impl Place {
    fn of(array: ArrayId, blk: u64, s: &Stored<'_>) -> Self {
        let (bind, tid, kind, codec, len, prev_tid) = (s.bind, s.tid, s.kind, s.codec, s.len, s.prev_tid);
        Place { bind, array, blk, tid, kind, codec, len, prev_tid }
    }

    fn checksum(&self, payload: &[u8]) -> i64 {
        let tid = match self.bind {
            TidBinding::Seed => self.tid,
            TidBinding::Mix => 0,
        };
        let mut key = [0u8; 56];
        let fields = [self.array.0, self.blk, tid, self.kind as u64, self.codec as u64, self.len, self.prev_tid];
        for (i, f) in fields.iter().enumerate() {
            key[i * 8..i * 8 + 8].copy_from_slice(&f.to_le_bytes());
        }
        let seed = XxHash3_64::oneshot_with_seed(0x6f75_7463_6f72_6532, &key);
        let sum = XxHash3_64::oneshot_with_seed(seed, payload) as i64;
        match self.bind {
            TidBinding::Seed => sum,
            TidBinding::Mix => sum ^ tid_mix(self.tid),
        }
    }
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

/// The current version of a block with content `data` (trailing zeros are not stored). With
/// `Codec::None`, or when compression does not pay, the payload is `data`'s content raw and is
/// not copied: `data` is `None` and the backend stores `data[..len]` (so that it can rewrite only
/// changed pages in place).
pub(crate) struct CurrentEnc {
    pub codec: i64,
    pub len: u64,
    pub checksum: i64,
    /// The compressed payload; `None` for raw.
    pub compressed: Option<Vec<u8>>,
}

/// Encode the current version of a block whose new content is `data`, its checksum bound to
/// `tid` as `bind` says.
pub(crate) fn encode_current(
    bind: TidBinding,
    array: ArrayId,
    blk: u64,
    tid: Tid,
    data: &[u8],
    codec: Codec,
) -> CurrentEnc {
    let len = content_len(data);
    let (codec, compressed) = match compress(&data[..len], codec) {
        Some((tag, out)) => (tag, Some(out)),
        None => (CODEC_RAW, None),
    };
    let place = Place { bind, array, blk, tid, kind: KIND_CURRENT, codec, len: len as u64, prev_tid: 0 };
    let checksum = place.checksum(compressed.as_deref().unwrap_or(&data[..len]));
    CurrentEnc { codec, len: len as u64, checksum, compressed }
}

/// The 4 KiB pages (indices) in which `old` and `new` differ; both are zero beyond their length.
pub(crate) fn changed_pages(old: &[u8], new: &[u8]) -> Vec<u32> {
    let n = old.len().max(new.len()).div_ceil(PAGE);
    let page = |d: &[u8], p: usize| -> (usize, usize) {
        let start = (p * PAGE).min(d.len());
        (start, ((p + 1) * PAGE).min(d.len()))
    };
    (0..n)
        .filter(|&p| {
            let (a0, a1) = page(old, p);
            let (b0, b1) = page(new, p);
            let (a, b) = (&old[a0..a1], &new[b0..b1]);
            let common = a.len().min(b.len());
            a[..common] != b[..common] || a[common..].iter().any(|x| *x != 0) || b[common..].iter().any(|x| *x != 0)
        })
        .map(|p| p as u32)
        .collect()
}

/// Which of `pages` differ between `old` and `new` (both zero beyond their length; `new` is
/// only read at `pages`): the changed pages when no other page can differ.
pub(crate) fn changed_pages_of(old: &[u8], new: &[u8], pages: &[u32]) -> Vec<u32> {
    fn page(d: &[u8], p: usize) -> &[u8] {
        let start = (p * PAGE).min(d.len());
        &d[start..((p + 1) * PAGE).min(d.len())]
    }
    pages
        .iter()
        .copied()
        .filter(|&p| {
            let (a, b) = (page(old, p as usize), page(new, p as usize));
            let common = a.len().min(b.len());
            a[..common] != b[..common] || a[common..].iter().any(|x| *x != 0) || b[common..].iter().any(|x| *x != 0)
        })
        .collect()
}

/// Whose undo record is being made: commit `tid`'s, for block `blk` of `array`, whose previous
/// version is `prev_tid` (`prev`: where the block's newest undo record sits in its history, if
/// kept), compressed with `codec`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct UndoOf {
    /// How the record's checksum binds `tid`.
    pub bind: TidBinding,
    pub array: ArrayId,
    pub blk: u64,
    pub tid: Tid,
    pub prev_tid: Tid,
    pub prev: Option<UndoChain>,
    pub codec: Codec,
}

/// The undo record of a commit that changed `pages` of a block whose previous content was `old`
/// (see [`UndoOf`] for whose).
///
/// Normally the previous bytes of those pages, up to the end of the old content: pages that
/// were zeros cost nothing. It is a full record (the whole old content) when that is no bigger,
/// or when the page records since the last full one pass their bounds (count and bytes), so
/// that reading any old snapshot fetches a bounded amount of history. A block that did not exist
/// (or was empty) has an empty full record.
pub(crate) fn encode_undo(of: &UndoOf, old: &[u8], pages: &[u32]) -> Encoded {
    let UndoOf { bind, array, blk, tid, prev_tid, prev, codec } = *of;
    let old_len = content_len(old);
    let prev = prev.unwrap_or_default();
    // A page record extends the chain since the last full record; a full record starts a new one.
    let seal = |kind: i64, raw: Vec<u8>| {
        let (codec, data) = compress(&raw, codec).unwrap_or((CODEC_RAW, raw));
        let chain = match kind {
            KIND_UNDO => UndoChain { depth: prev.depth + 1, bytes: prev.bytes + data.len() as i64 },
            _ => UndoChain::default(),
        };
        let place = Place { bind, array, blk, tid, kind, codec, len: old_len as u64, prev_tid };
        let checksum = place.checksum(&data);
        Encoded { kind, chain, codec, len: old_len as u64, checksum, data, prev_tid }
    };
    if old_len == 0 {
        return seal(KIND_UNDO_FULL, Vec::new());
    }
    let raw = page_record(old, old_len, pages);
    let full = || seal(KIND_UNDO_FULL, old[..old_len].to_vec());
    if raw.len() >= old_len || prev.depth >= MAX_UNDO_DEPTH {
        return full();
    }
    let rec = seal(KIND_UNDO, raw);
    // The bound applies to the bytes stored (after compression).
    if rec.chain.bytes > UNDO_BUDGET_FACTOR * old_len.max(256 << 10) as i64 {
        return full();
    }
    rec
}

/// Like [`encode_undo`], for a commit whose new content `new` differs from the old one in
/// `pages` only, knowing only those pages of `old` (the rest of `old` is unspecified) and the
/// old content length `old_len` (bytes at or beyond it are zero; an upper bound is fine). Pages
/// whose change is small store only the changed byte ranges. `None` when the record must be a
/// full one (the caller then reads the whole old content and uses [`encode_undo`]).
pub(crate) fn encode_undo_diff(of: &UndoOf, old: &[u8], old_len: usize, new: &[u8], pages: &[u32]) -> Option<Encoded> {
    let UndoOf { bind, array, blk, tid, prev_tid, prev, codec } = *of;
    let prev = prev.unwrap_or_default();
    if old_len == 0 || prev.depth >= MAX_UNDO_DEPTH {
        return None;
    }
    let kept: Vec<u32> = pages.iter().copied().filter(|p| (*p as usize) * PAGE < old_len).collect();
    let mut raw = Vec::with_capacity(4 + kept.len() * 16);
    raw.extend_from_slice(&(kept.len() as u32).to_le_bytes());
    let mut body = Vec::new();
    let at = |d: &[u8], i: usize| d.get(i).copied().unwrap_or(0);
    // Page `start..start + PAGE` of `d`, zero beyond its end.
    let padded = |d: &[u8], start: usize| -> [u8; PAGE] {
        let mut page = [0u8; PAGE];
        let have = d.len().clamp(start, start + PAGE);
        page[..have - start].copy_from_slice(&d[start..have]);
        page
    };
    for &p in &kept {
        let start = p as usize * PAGE;
        let end = (start + PAGE).min(old_len);
        let page = &old[start..end.min(old.len())];
        if page.iter().all(|b| *b == 0) && end <= old.len() {
            raw.extend_from_slice(&(p | ZERO_PAGE).to_le_bytes());
            continue;
        }
        // Runs of differing bytes within the page (gaps of up to RANGE_GAP joined).
        let runs = changed_runs(&padded(old, start), &padded(new, start), RANGE_GAP);
        let range_bytes: usize = runs.iter().map(|r| r.1 + 4).sum::<usize>() + 4;
        if runs.is_empty() || range_bytes >= end - start {
            raw.extend_from_slice(&p.to_le_bytes());
            body.extend_from_slice(&old[start..end]);
        } else {
            raw.extend_from_slice(&(p | RANGES).to_le_bytes());
            raw.extend_from_slice(&(runs.len() as u32).to_le_bytes());
            for (a, n) in &runs {
                raw.extend_from_slice(&((*a as u32) | ((*n as u32) << 16)).to_le_bytes());
                body.extend((start + a..start + a + n).map(|k| at(old, k)));
            }
        }
    }
    raw.extend_from_slice(&body);
    let (codec, data) = compress(&raw, codec).unwrap_or((CODEC_RAW, raw));
    let chain = UndoChain { depth: prev.depth + 1, bytes: prev.bytes + data.len() as i64 };
    if chain.bytes > UNDO_BUDGET_FACTOR * old_len.max(256 << 10) as i64 {
        return None;
    }
    let place = Place { bind, array, blk, tid, kind: KIND_UNDO, codec, len: old_len as u64, prev_tid };
    let checksum = place.checksum(&data);
    Some(Encoded { kind: KIND_UNDO, chain, codec, len: old_len as u64, checksum, data, prev_tid })
}

/// Runs `(start, len)` of bytes where `old` and `new` (equal lengths) differ; runs separated by
/// at most `gap` equal bytes are joined. Compares 8 bytes at a time.
pub(crate) fn changed_runs(old: &[u8], new: &[u8], gap: usize) -> Vec<(usize, usize)> {
    debug_assert_eq!(old.len(), new.len());
    let n = old.len().min(new.len());
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < n {
        // Skip equal words, then equal bytes.
        while i + 8 <= n && old[i..i + 8] == new[i..i + 8] {
            i += 8;
        }
        while i < n && old[i] == new[i] {
            i += 1;
        }
        if i >= n {
            break;
        }
        let start = i;
        let mut end = i + 1;
        let mut j = i + 1;
        while j < n && j - end <= gap {
            if old[j] != new[j] {
                end = j + 1;
            }
            j += 1;
        }
        match runs.last_mut() {
            Some((s, l)) if start - (*s + *l) <= gap => *l = end - *s,
            _ => runs.push((start, end - start)),
        }
        i = end;
    }
    runs
}

/// The checksum of page `p` of a block in a data-file extent (4 KiB; zero beyond the content),
/// bound to its place: the lower 32 bits of xxh3 seeded with (array, block, page).
pub(crate) fn page_sum(array: ArrayId, blk: u64, p: u32, page: &[u8]) -> u32 {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&array.0.to_le_bytes());
    key[8..16].copy_from_slice(&blk.to_le_bytes());
    key[16..24].copy_from_slice(&u64::from(p).to_le_bytes());
    let seed = XxHash3_64::oneshot_with_seed(0x7061_6765_7375_6d73, &key);
    if page.len() == PAGE {
        return XxHash3_64::oneshot_with_seed(seed, page) as u32;
    }
    let mut full = [0u8; PAGE];
    full[..page.len()].copy_from_slice(page);
    XxHash3_64::oneshot_with_seed(seed, &full) as u32
}

/// The page checksums of a block whose content is `content[..len]` (one little-endian `u32` per
/// page up to the one holding byte `len - 1`).
pub(crate) fn page_sums(array: ArrayId, blk: u64, content: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len.div_ceil(PAGE) * 4);
    for p in 0..len.div_ceil(PAGE) {
        let start = p * PAGE;
        let page = &content[start..(start + PAGE).min(len)];
        out.extend_from_slice(&page_sum(array, blk, p as u32, page).to_le_bytes());
    }
    out
}

/// The checksum of a current version kept in an extent: over its page checksums, bound to its
/// place (tid, length).
pub(crate) fn extent_checksum(array: ArrayId, blk: u64, tid: Tid, len: u64, sums: &[u8]) -> i64 {
    let bind = TidBinding::Seed;
    Place { bind, array, blk, tid, kind: KIND_CURRENT, codec: CODEC_RAW, len, prev_tid: 0 }.checksum(sums)
}

/// Verify pages of a current version kept in an extent: `sums` (checked against `checksum`)
/// and each page in `pages` of `buf` (which holds those pages; zero beyond `len`).
pub(crate) fn verify_extent_pages(
    array: ArrayId,
    blk: u64,
    s: &Stored<'_>,
    sums: &[u8],
    buf: &[u8],
    pages: impl IntoIterator<Item = u32>,
) -> Result<()> {
    let len = s.len as usize;
    if len > buf.len() || sums.len() != len.div_ceil(PAGE) * 4 {
        return Err(corrupt(array, blk, s.tid, format!("{} page checksums for {len} bytes", sums.len() / 4)));
    }
    let want = extent_checksum(array, blk, s.tid, s.len, sums);
    if want != s.checksum {
        return Err(corrupt(array, blk, s.tid, format!("page checksums damaged ({:#x} vs {want:#x})", s.checksum)));
    }
    for p in pages {
        let start = p as usize * PAGE;
        if start >= len {
            continue; // beyond the content: zeros (not read)
        }
        let page = &buf[start..(start + PAGE).min(len)];
        let i = p as usize * 4;
        let stored = u32::from_le_bytes([sums[i], sums[i + 1], sums[i + 2], sums[i + 3]]);
        let got = page_sum(array, blk, p, page);
        if got != stored {
            return Err(corrupt(array, blk, s.tid, format!("page {p} fails its checksum ({stored:#x} vs {got:#x})")));
        }
    }
    Ok(())
}

/// The bytes of `pages` of `content` (zero beyond `len`), as a page record stores them: a page
/// count, one word per page (its index, flagged when all zeros: no bytes stored), then the bytes
/// of the other pages, the page that holds the end of the content only up to it. Pages at or
/// beyond `len` are left out: applying the record zeroes everything from `len` on.
fn page_record(content: &[u8], len: usize, pages: &[u32]) -> Vec<u8> {
    let kept: Vec<u32> = pages.iter().copied().filter(|p| (*p as usize) * PAGE < len).collect();
    let mut raw = Vec::with_capacity(4 + kept.len() * (4 + PAGE));
    raw.extend_from_slice(&(kept.len() as u32).to_le_bytes());
    let mut body = Vec::new();
    for &p in &kept {
        let start = p as usize * PAGE;
        let page = &content[start..(start + PAGE).min(len)];
        if page.iter().all(|b| *b == 0) {
            raw.extend_from_slice(&(p | ZERO_PAGE).to_le_bytes());
        } else {
            raw.extend_from_slice(&p.to_le_bytes());
            body.extend_from_slice(page);
        }
    }
    raw.extend_from_slice(&body);
    raw
}

/// Bytes a page record of `pages` takes at most, before compression.
pub(crate) fn page_record_bound(pages: usize) -> u64 {
    4 + pages as u64 * (4 + PAGE as u64)
}

/// The pending patch of commit `tid` that turns a block's version `prev_tid` into `new`, which
/// differs from it in `pages`: the new bytes of those pages (a page record, compressed with the
/// array's codec when that pays).
pub(crate) fn encode_patch(
    array: ArrayId,
    blk: u64,
    tid: Tid,
    new: &[u8],
    pages: &[u32],
    prev_tid: Tid,
    codec: Codec,
) -> Encoded {
    let len = content_len(new);
    let raw = page_record(new, len, pages);
    let (codec, data) = compress(&raw, codec).unwrap_or((CODEC_RAW, raw));
    let place = Place { bind: TidBinding::Seed, array, blk, tid, kind: KIND_PATCH, codec, len: len as u64, prev_tid };
    let checksum = place.checksum(&data);
    Encoded { kind: KIND_PATCH, chain: UndoChain::default(), codec, len: len as u64, checksum, data, prev_tid }
}

pub(crate) fn corrupt(array: ArrayId, blk: u64, tid: Tid, detail: String) -> Error {
    Error::Corrupt { array, name: String::new(), blk, tid, detail }
}

/// The checks every stored payload passes before use: its recorded length fits the block, and
/// `payload` (the stored bytes) matches its checksum.
fn check(array: ArrayId, blk: u64, s: &Stored<'_>, payload: &[u8], blksize: usize) -> Result<()> {
    if s.len as usize > blksize {
        return Err(corrupt(array, blk, s.tid, format!("recorded length {} exceeds the block size {blksize}", s.len)));
    }
    let sum = Place::of(array, blk, s).checksum(payload);
    if sum != s.checksum {
        let detail = format!("checksum mismatch (stored {:#x}, computed {sum:#x})", s.checksum);
        return Err(corrupt(array, blk, s.tid, detail));
    }
    Ok(())
}

/// Verify a stored current version and write the block's full content into `buf` (zero-filled
/// tail). Returns an error naming the place on any mismatch; `buf` then holds no usable data.
/// `s.data` may be longer than the content (a raw payload's spare capacity).
pub(crate) fn decode_current(array: ArrayId, blk: u64, s: &Stored<'_>, buf: &mut [u8]) -> Result<()> {
    if s.kind != KIND_CURRENT {
        return Err(corrupt(array, blk, s.tid, format!("expected a current version, found kind {}", s.kind)));
    }
    decode_whole(array, blk, s, buf)
}

/// Verify a stored whole version (current, or a full undo record) and write it into `buf`.
fn decode_whole(array: ArrayId, blk: u64, s: &Stored<'_>, buf: &mut [u8]) -> Result<()> {
    let len = s.len as usize;
    if s.codec == CODEC_RAW {
        let content = s.data.get(..len).ok_or_else(|| {
            corrupt(array, blk, s.tid, format!("stored length {} is below the recorded length {len}", s.data.len()))
        })?;
        check(array, blk, s, content, buf.len())?;
        buf[..len].copy_from_slice(content);
        buf[len..].fill(0);
        return Ok(());
    }
    check(array, blk, s, s.data, buf.len())?;
    let out = &mut buf[..len];
    let got = match s.codec {
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

/// Verify a raw current version whose content (`s.len` bytes) was already read into the head of
/// `buf`, and zero the rest of `buf`. `s.data` is ignored.
pub(crate) fn verify_in_place(array: ArrayId, blk: u64, s: &Stored<'_>, buf: &mut [u8]) -> Result<()> {
    let len = s.len as usize;
    if s.kind != KIND_CURRENT || s.codec != CODEC_RAW {
        return Err(corrupt(
            array,
            blk,
            s.tid,
            format!("not a raw current version (kind {}, codec {})", s.kind, s.codec),
        ));
    }
    check(array, blk, s, buf.get(..len).unwrap_or(&[]), buf.len())?;
    buf[len..].fill(0);
    Ok(())
}

/// Verify an undo record and apply it to `buf`, which holds the content of the version it
/// follows: afterwards `buf` holds the version before (`s.prev_tid`).
pub(crate) fn apply_undo(array: ArrayId, blk: u64, s: &Stored<'_>, buf: &mut [u8]) -> Result<()> {
    apply_pages(array, blk, s, KIND_UNDO, buf)
}

/// Verify a pending patch and apply it to `buf`, which holds version `s.prev_tid`: afterwards
/// `buf` holds version `s.tid`.
pub(crate) fn apply_patch(array: ArrayId, blk: u64, s: &Stored<'_>, buf: &mut [u8]) -> Result<()> {
    apply_pages(array, blk, s, KIND_PATCH, buf)
}

/// Apply a page record of kind `kind` to `buf`.
fn apply_pages(array: ArrayId, blk: u64, s: &Stored<'_>, kind: i64, buf: &mut [u8]) -> Result<()> {
    let bad = |d: String| corrupt(array, blk, s.tid, d);
    if s.kind != kind {
        return Err(bad(format!("expected a page record of kind {kind}, found kind {}", s.kind)));
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
    let count = word(0).ok_or_else(|| bad("undo record shorter than its header".into()))? as usize;
    // The header: one word per page, plus the range words of pages stored as ranges.
    let mut head = 4usize;
    let mut at = 4usize;
    for _ in 0..count {
        let e = word(at).ok_or_else(|| bad("undo header cut short".into()))?;
        at += 4;
        if e & RANGES != 0 {
            let n = word(at).ok_or_else(|| bad("undo header cut short".into()))? as usize;
            at = at.saturating_add(4).saturating_add(n.saturating_mul(4));
        }
    }
    for _ in 0..count {
        let e = word(head).ok_or_else(|| bad("undo header cut short".into()))?;
        head += 4;
        let p = (e & !(ZERO_PAGE | RANGES)) as usize;
        let start = p * PAGE;
        let end = (start + PAGE).min(buf.len());
        if start >= buf.len() {
            return Err(bad(format!("undo page {p} lies beyond the block")));
        }
        if e & RANGES != 0 {
            let n = word(head).ok_or_else(|| bad("undo header cut short".into()))? as usize;
            head += 4;
            for _ in 0..n {
                let r = word(head).ok_or_else(|| bad("undo header cut short".into()))?;
                head += 4;
                let (a, len) = ((r & 0xffff) as usize, (r >> 16) as usize);
                if a + len > PAGE || start + a + len > buf.len() {
                    return Err(bad(format!("undo range {a}+{len} of page {p} lies beyond it")));
                }
                let src = raw.get(at..at + len).ok_or_else(|| bad("undo range data cut short".into()))?;
                buf[start + a..start + a + len].copy_from_slice(src);
                at += len;
            }
        } else if e & ZERO_PAGE != 0 {
            buf[start..end].fill(0);
        } else {
            let n = end.min(s.len as usize).saturating_sub(start);
            let src = raw.get(at..at + n).ok_or_else(|| bad("undo page data cut short".into()))?;
            buf[start..start + n].copy_from_slice(src);
            buf[start + n..end].fill(0);
            at += n;
        }
    }
    if at != raw.len() {
        return Err(bad(format!("{} unexpected bytes after the undo record's pages", raw.len().abs_diff(at))));
    }
    buf[s.len as usize..].fill(0);
    Ok(())
}

/// Rebuild the version of a block that snapshot `at` reads, from its history: `undo` yields the
/// block's undo records with tid > `at`, newest first, up to (and including) the oldest full
/// record among them if there is one. Reading starts from that full record, or else from the
/// current version (tid `current_tid`, 0 when the block has none: zeros), which
/// `read_current` writes into `buf`. Each record must restore the version the previous one
/// came from, down to a version at or before `at`: a gap is corruption, never wrong data.
pub(crate) fn rewind<'a>(
    array: ArrayId,
    blk: u64,
    at: Tid,
    current_tid: Tid,
    read_current: impl FnOnce(&mut [u8]) -> Result<()>,
    undo: impl IntoIterator<Item = Stored<'a>>,
    buf: &mut [u8],
) -> Result<()> {
    let mut undo = undo.into_iter().peekable();
    let mut expect = current_tid;
    match undo.peek() {
        Some(s) if s.kind == KIND_UNDO_FULL && s.tid <= current_tid => expect = s.tid,
        _ if current_tid == 0 => buf.fill(0),
        _ => read_current(buf)?,
    }
    for s in undo {
        if s.tid != expect {
            let detail = format!("the undo record of tid {expect} is missing (found tid {})", s.tid);
            return Err(corrupt(array, blk, expect, detail));
        }
        if s.kind == KIND_UNDO_FULL {
            decode_whole(array, blk, &s, buf)?;
        } else {
            apply_undo(array, blk, &s, buf)?;
        }
        if s.prev_tid >= s.tid {
            return Err(corrupt(array, blk, s.tid, format!("undo record restores a later tid {}", s.prev_tid)));
        }
        expect = s.prev_tid;
    }
    if expect > at {
        return Err(corrupt(array, blk, expect, format!("the undo record of tid {expect} is missing")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whose undo record: block 0 of array 1.
    fn of(tid: Tid, prev_tid: Tid, prev: Option<UndoChain>, codec: Codec) -> UndoOf {
        UndoOf { bind: TidBinding::Seed, array: ArrayId(1), blk: 0, tid, prev_tid, prev, codec }
    }

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

    fn current<'a>(e: &CurrentEnc, tid: Tid, data: &'a [u8]) -> Stored<'a> {
        let payload = e.compressed.as_deref().map_or(&data[..e.len as usize], |_| &[][..]);
        let bind = TidBinding::Seed;
        Stored {
            bind,
            tid,
            kind: KIND_CURRENT,
            codec: e.codec,
            len: e.len,
            checksum: e.checksum,
            prev_tid: 0,
            data: payload,
        }
    }

    fn undo(e: &Encoded, tid: Tid) -> Stored<'_> {
        Stored {
            bind: TidBinding::Seed,
            tid,
            kind: e.kind,
            codec: e.codec,
            len: e.len,
            checksum: e.checksum,
            prev_tid: e.prev_tid,
            data: &e.data,
        }
    }

    #[test]
    fn checksum_binds_payload_to_its_place() {
        let data = b"hello\0\0";
        let e = encode_current(TidBinding::Seed, ArrayId(1), 2, 3, data, Codec::None);
        assert_eq!((e.len, e.codec), (5, CODEC_RAW));
        let mut buf = [9u8; 8];
        decode_current(ArrayId(1), 2, &current(&e, 3, data), &mut buf).unwrap();
        assert_eq!(&buf, b"hello\0\0\0");
        // Spare capacity after the content is allowed.
        let padded = b"hello\0\0\0\0\0";
        decode_current(ArrayId(1), 2, &current(&e, 3, padded), &mut buf).unwrap();
        // Same bytes presented as another block or another tid: detected.
        assert!(decode_current(ArrayId(1), 3, &current(&e, 3, data), &mut buf).is_err());
        assert!(decode_current(ArrayId(1), 2, &current(&e, 4, data), &mut buf).is_err());
        let bad = Stored { data: b"hellp", ..current(&e, 3, data) };
        assert!(matches!(decode_current(ArrayId(1), 2, &bad, &mut buf), Err(Error::Corrupt { .. })));
        let short = Stored { data: b"hell", ..current(&e, 3, data) };
        assert!(matches!(decode_current(ArrayId(1), 2, &short, &mut buf), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn a_mixed_tid_binding_is_the_sum_without_tid_xored_with_the_mix_and_still_binds_the_tid() {
        let data = b"some bytes";
        let at = |bind, tid| encode_current(bind, ArrayId(1), 2, tid, data, Codec::None).checksum;
        // What a PostgreSQL commit sends (the sum bound to the tid it guessed, unbound again)
        // and the server binds to the tid it gives: the same as binding that tid directly.
        for (guess, given) in [(5u64, 5u64), (5, 9), (1 << 40, 3), (u64::MAX >> 1, 1)] {
            let sent = at(TidBinding::Mix, guess) ^ tid_mix(guess);
            assert_eq!(sent ^ tid_mix(given), at(TidBinding::Mix, given));
        }
        assert_ne!(at(TidBinding::Mix, 3), at(TidBinding::Seed, 3));
        let e = encode_current(TidBinding::Mix, ArrayId(1), 2, 3, data, Codec::None);
        let s = Stored { bind: TidBinding::Mix, ..current(&e, 3, data) };
        let mut buf = [0u8; 16];
        decode_current(ArrayId(1), 2, &s, &mut buf).unwrap();
        assert_eq!(&buf[..10], data);
        // Read as another tid, or checked as the other binding: detected.
        assert!(decode_current(ArrayId(1), 2, &Stored { tid: 4, ..s }, &mut buf).is_err());
        assert!(decode_current(ArrayId(1), 2, &Stored { bind: TidBinding::Seed, ..s }, &mut buf).is_err());
        // One to one over small and large tids.
        let mixes: std::collections::HashSet<i64> =
            (0..100_000u64).chain((0..64).map(|b| 1 << b)).map(tid_mix).collect();
        assert_eq!(mixes.len(), 100_000 + 64 - 17); // powers of two below 100,000 counted once
    }

    #[test]
    fn codecs_round_trip_and_are_used_only_when_they_pay() {
        let mut data = vec![0u8; 64 << 10];
        for (i, b) in data.iter_mut().enumerate().take(40 << 10) {
            *b = (i / 512) as u8 | 1;
        }
        for codec in [Codec::Zstd { level: 3 }, Codec::Lz4, Codec::None] {
            let e = encode_current(TidBinding::Seed, ArrayId(7), 1, 9, &data, codec);
            assert_eq!(e.len, 40 << 10);
            let stored = match &e.compressed {
                Some(c) => {
                    assert!(c.len() < 4 << 10, "{codec:?} stored {} bytes", c.len());
                    Stored { data: c, ..current(&e, 9, &data) }
                }
                None => {
                    assert_eq!(codec, Codec::None);
                    current(&e, 9, &data)
                }
            };
            let mut buf = vec![0xEEu8; 64 << 10];
            decode_current(ArrayId(7), 1, &stored, &mut buf).unwrap();
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
        assert_eq!(
            encode_current(TidBinding::Seed, ArrayId(7), 1, 9, &noise, Codec::Zstd { level: 3 }).codec,
            CODEC_RAW
        );
    }

    #[test]
    fn a_corrupt_compressed_payload_is_an_error_not_data() {
        let data = vec![5u8; 10000];
        let e = encode_current(TidBinding::Seed, ArrayId(1), 0, 1, &data, Codec::Lz4);
        let mut bad = e.compressed.clone().unwrap();
        bad.truncate(bad.len() - 1);
        // Re-seal the checksum so only the decoder can notice.
        let place = Place {
            bind: TidBinding::Seed,
            array: ArrayId(1),
            blk: 0,
            tid: 1,
            kind: KIND_CURRENT,
            codec: e.codec,
            len: e.len,
            prev_tid: 0,
        };
        let s = Stored { checksum: place.checksum(&bad), data: &bad, ..current(&e, 1, &data) };
        let mut buf = vec![0u8; 16384];
        assert!(matches!(decode_current(ArrayId(1), 0, &s, &mut buf), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn changed_pages_compares_contents_zero_extended() {
        let bs = 16 * PAGE;
        let old = vec![1u8; 5 * PAGE + 10];
        let mut new = old.clone();
        assert!(changed_pages(&old, &new).is_empty());
        new[PAGE + 3] = 2;
        new.resize(7 * PAGE, 0);
        new[7 * PAGE - 1] = 4;
        assert_eq!(changed_pages(&old, &new), vec![1, 6]);
        assert_eq!(changed_pages(&old, &old[..2 * PAGE]), vec![2, 3, 4, 5]);
        assert_eq!(changed_pages(&[], &vec![0u8; bs]), Vec::<u32>::new());
    }

    #[test]
    fn undo_restores_the_previous_version() {
        let bs = 64 << 10;
        let mut old = vec![0u8; bs];
        old[..20000].fill(3);
        let mut new = old.clone();
        new[5000] = 9; // page 1
        new[8192..12288].fill(0); // page 2 becomes zero
        new[30000..30010].fill(7); // page 7, beyond the old content
        let pages = changed_pages(&old, &new);
        assert_eq!(pages, vec![1, 2, 7]);
        for codec in [Codec::None, Codec::Zstd { level: 1 }, Codec::Lz4] {
            let u = encode_undo(&of(5, 4, None, codec), &old, &pages);
            assert_eq!((u.len, u.prev_tid), (20000, 4));
            if codec == Codec::None {
                assert_eq!(u.data.len(), 4 + 2 * 4 + 2 * PAGE, "pages 1 and 2 (page 7 was zero)");
            }
            let mut buf = new.clone();
            apply_undo(ArrayId(1), 0, &undo(&u, 5), &mut buf).unwrap();
            assert_eq!(buf, old, "{codec:?}");
        }
        // The page where the old content ends is kept only up to that end.
        let mut longer = old.clone();
        longer[20000..20100].fill(5);
        let u = encode_undo(&of(5, 4, None, Codec::None), &old, &changed_pages(&old, &longer));
        assert_eq!(u.data.len(), 4 + 4 + (20000 - 4 * PAGE));
        apply_undo(ArrayId(1), 0, &undo(&u, 5), &mut longer).unwrap();
        assert_eq!(longer, old);
        // The first version of a block has an empty full record: before it, zeros.
        let u = encode_undo(&of(4, 0, None, Codec::None), &[], &[0, 1]);
        assert!(u.data.is_empty() && u.kind == KIND_UNDO_FULL);
        let mut buf = old.clone();
        rewind(ArrayId(1), 0, 0, 4, |_| unreachable!(), [undo(&u, 4)], &mut buf).unwrap();
        assert!(buf.iter().all(|b| *b == 0));
    }

    #[test]
    fn a_damaged_undo_record_is_an_error() {
        let bs = 64 << 10;
        let old = vec![1u8; bs];
        let mut new = old.clone();
        new[0] = 2;
        let u = encode_undo(&of(2, 1, None, Codec::None), &old, &[0]);
        let mut cut = u.data.clone();
        cut.truncate(cut.len() - 10);
        let place = Place {
            bind: TidBinding::Seed,
            array: ArrayId(1),
            blk: 0,
            tid: 2,
            kind: KIND_UNDO,
            codec: u.codec,
            len: u.len,
            prev_tid: 1,
        };
        let s = Stored { checksum: place.checksum(&cut), data: &cut, ..undo(&u, 2) };
        let mut buf = new.clone();
        assert!(matches!(apply_undo(ArrayId(1), 0, &s, &mut buf), Err(Error::Corrupt { .. })));
        let mut flipped = u.data.clone();
        flipped[20] ^= 1;
        let s = Stored { data: &flipped, ..undo(&u, 2) };
        assert!(matches!(apply_undo(ArrayId(1), 0, &s, &mut buf), Err(Error::Corrupt { .. })));
        // A record presented with another previous tid: detected.
        let s = Stored { prev_tid: 0, ..undo(&u, 2) };
        assert!(matches!(apply_undo(ArrayId(1), 0, &s, &mut buf), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn rewind_walks_the_history_and_detects_gaps() {
        let bs = 8 * PAGE;
        let v: Vec<Vec<u8>> = (1..=3u8).map(|i| vec![i; bs]).collect();
        let one = [3u32];
        let mut v1 = v[0].clone();
        v1[3 * PAGE..4 * PAGE].fill(7);
        // Versions at tids 2 (v[0]), 5 (v1) and 9 (v[2]): a page record for 5, a full one for 9.
        let u5 = encode_undo(&of(5, 2, None, Codec::None), &v[0], &one);
        let u9 = encode_undo(&of(9, 5, u5.chain.into(), Codec::None), &v1, &(0..8).collect::<Vec<_>>());
        assert_eq!((u5.kind, u9.kind), (KIND_UNDO, KIND_UNDO_FULL), "all pages changed: a full record");
        let at = |snap: Tid, recs: Vec<Stored<'_>>| -> Result<Vec<u8>> {
            let mut buf = vec![0u8; bs];
            rewind(
                ArrayId(1),
                0,
                snap,
                9,
                |b| {
                    b.copy_from_slice(&v[2]);
                    Ok(())
                },
                recs,
                &mut buf,
            )
            .map(|_| buf)
        };
        assert_eq!(at(9, vec![]).unwrap(), v[2]);
        assert_eq!(at(7, vec![undo(&u9, 9)]).unwrap(), v1, "starts from the full record");
        assert_eq!(at(3, vec![undo(&u9, 9), undo(&u5, 5)]).unwrap(), v[0]);
        assert!(at(3, vec![undo(&u5, 5)]).unwrap_err().to_string().contains("tid 9"));
        // A missing record is corruption, not an older or newer version.
        assert!(matches!(at(3, vec![undo(&u9, 9)]), Err(Error::Corrupt { .. })));
        // So is a record that claims to restore a version newer than itself.
        let loop_back = encode_undo(&of(9, 9, None, Codec::None), &v1, &one);
        let e = at(3, vec![undo(&loop_back, 9)]).unwrap_err();
        assert!(e.to_string().contains("later tid 9"), "{e}");
    }

    #[test]
    fn page_records_are_bounded_by_full_records() {
        let bs = 64 * PAGE;
        let old = vec![1u8; bs];
        let mut chain = None;
        let mut full_at = vec![];
        for i in 0..2000 {
            let u = encode_undo(&of(i + 1, i, chain, Codec::None), &old, &[(i % 64) as u32]);
            assert!(u.chain.depth <= MAX_UNDO_DEPTH);
            assert!(u.chain.bytes <= UNDO_BUDGET_FACTOR * bs as i64, "{:?}", u.chain);
            if u.kind == KIND_UNDO_FULL {
                assert_eq!(u.chain, UndoChain::default());
                assert_eq!(u.data.len(), bs);
                full_at.push(i);
            }
            chain = Some(u.chain);
        }
        // 4 blocks' worth of one-page records (256 of them here), then a full record.
        assert_eq!(full_at, (1..=7).map(|k| k * 256 - 1).collect::<Vec<_>>());
        // Records of a block whose history was gc'd start a new chain.
        let u = encode_undo(&of(5000, 4999, None, Codec::None), &old, &[0]);
        assert_eq!(u.chain, UndoChain { depth: 1, bytes: u.data.len() as i64 });
    }

    #[test]
    fn a_diff_undo_record_stores_changed_bytes_and_restores_the_old_version() {
        let n = 16 * PAGE;
        let old: Vec<u8> = (0..n).map(|i| (i % 251) as u8 + 1).collect();
        let mut new = old.clone();
        new[3 * PAGE + 10..3 * PAGE + 18].copy_from_slice(&[0xEE; 8]); // one float
        new[7 * PAGE + 100] = 0; // one byte
        new[9 * PAGE..10 * PAGE].fill(0); // a whole page
        let pages = changed_pages(&old, &new);
        assert_eq!(pages, vec![3, 7, 9]);
        // Only the changed pages of `old` are known to the encoder.
        let mut sparse = vec![0x55u8; n];
        for p in &pages {
            let a = *p as usize * PAGE;
            sparse[a..a + PAGE].copy_from_slice(&old[a..a + PAGE]);
        }
        let u = encode_undo_diff(&of(5, 4, None, Codec::None), &sparse, n, &new, &pages).expect("page record");
        assert!(u.data.len() < PAGE + 100, "{} bytes", u.data.len()); // ranges + one whole page
        let mut buf = new.clone();
        apply_undo(ArrayId(1), 0, &undo(&u, 5), &mut buf).unwrap();
        assert!(buf == old);
        // Damage is detected.
        let mut bad = u.clone();
        bad.data[10] ^= 1;
        assert!(apply_undo(ArrayId(1), 0, &undo(&bad, 5), &mut new.clone()).is_err());
    }

    #[test]
    fn extent_pages_are_verified_one_by_one() {
        let n = 4 * PAGE + 100;
        let content: Vec<u8> = (0..n).map(|i| (i % 7) as u8 + 1).collect();
        let sums = page_sums(ArrayId(3), 9, &content, n);
        let s = Stored {
            bind: TidBinding::Seed,
            tid: 4,
            kind: KIND_CURRENT,
            codec: CODEC_RAW,
            len: n as u64,
            checksum: extent_checksum(ArrayId(3), 9, 4, n as u64, &sums),
            prev_tid: 0,
            data: &[],
        };
        let mut buf = content.clone();
        buf.resize(8 * PAGE, 0);
        verify_extent_pages(ArrayId(3), 9, &s, &sums, &buf, 0..8).unwrap();
        buf[2 * PAGE + 5] ^= 1;
        verify_extent_pages(ArrayId(3), 9, &s, &sums, &buf, [0, 1, 3, 4]).unwrap();
        let e = verify_extent_pages(ArrayId(3), 9, &s, &sums, &buf, [2]).unwrap_err();
        assert!(e.to_string().contains("page 2"), "{e}");
        // Sums bound to another block, or damaged, are refused.
        assert!(verify_extent_pages(ArrayId(3), 10, &s, &sums, &buf, [0]).is_err());
        let mut bad = sums.clone();
        bad[0] ^= 1;
        assert!(verify_extent_pages(ArrayId(3), 9, &s, &bad, &buf, [1]).is_err());
    }

    #[test]
    fn changed_runs_find_and_join_differences() {
        let old = vec![0u8; 200];
        let mut new = old.clone();
        assert!(changed_runs(&old, &new, 4).is_empty());
        new[3] = 1;
        new[5] = 1; // 1 equal byte between: joined
        new[100] = 2;
        new[199] = 3;
        assert_eq!(changed_runs(&old, &new, 4), vec![(3, 3), (100, 1), (199, 1)]);
        assert_eq!(changed_runs(&old, &new, 0), vec![(3, 1), (5, 1), (100, 1), (199, 1)]);
        assert_eq!(changed_runs(&old, &new, 200), vec![(3, 197)]);
    }
}
