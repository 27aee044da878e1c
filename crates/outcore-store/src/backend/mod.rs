//! Backends: one folder per database, each implementing [`Store`](crate::Store), and what they
//! share: the SQL both run (`sql`) and the rules of reading history (`read`).

pub(crate) mod postgres;
mod read;
mod sql;
pub(crate) mod sqlite;

use crate::error::{Error, Result};
use crate::types::{ArrayId, ArrayInfo, ArrayMeta, Tid};

/// The store format this build writes and the highest it reads.
pub(crate) const FORMAT_NAME: &str = "outcore-store";
/// PostgreSQL format version 5: tables outcore_{meta,head,txn,array,current,undo,segment}: each
/// block's current content and undo records; every commit record carries the client-chosen
/// `commit_id` by which a client that lost its connection during the commit finds out whether
/// it landed; uncompressed content lies in 16 KiB segment rows, each with its own checksum, so
/// a small commit reads and writes only the segments of the pages it changed. Version 6: the
/// checksums of undo and current rows bind their tid by xoring `outcore_tid_mix(tid)` into a sum
/// made without it ([`crate::block::TidBinding::Mix`]), so that the server can bind a commit's
/// rows to the tid it gives them under the commit lock; the schema holds that function and the
/// check of a commit's reads (`outcore_check_reads`). Version 7: segment rows are keyed by their first
/// 4 KiB page and hold runs of pages within 16 KiB windows, so that a small write moves only its
/// pages. Versions 3 to 6 are refused (6: rows keyed by their 16 KiB segment; 5: the tid in the
/// hash's seed; 3 and 4: 256 KiB segments checked by one checksum per block; 3 without commit
/// ids); 1 and 2 were never released.
pub(crate) const PG_FORMAT_VERSION: u32 = 7;
/// SQLite (local store) format version 5: the current content of blocks of uncompressed
/// arrays lives in block extents of the data file `<store>.blocks` (`outcore_current.ext_off`),
/// with retired and free extents, redo records of in-place updates, and the reader registry
/// `<store>.readers`; every metadata row that decides what is read carries a row checksum
/// (`row_sum`, see `rowsum`), and `outcore_blocks` records which blocks have an index row.
/// Version 4 had no row checksums; version 3 kept all bytes in SQLite.
pub(crate) const SQLITE_FORMAT_VERSION: u32 = 5;

/// Check the format marker and version found in a store.
pub(crate) fn check_format(
    location: &str,
    format: Option<String>,
    version: Option<String>,
    supported: u32,
) -> Result<()> {
    if format.as_deref() != Some(FORMAT_NAME) {
        return Err(Error::NotAStore {
            location: location.to_string(),
            reason: format!("format marker is {format:?}, expected '{FORMAT_NAME}'"),
        });
    }
    let found: u32 = version.as_deref().and_then(|v| v.parse().ok()).ok_or_else(|| Error::NotAStore {
        location: location.to_string(),
        reason: format!("unreadable format version {version:?}"),
    })?;
    if found != supported {
        return Err(Error::UnsupportedVersion { location: location.to_string(), found, supported });
    }
    Ok(())
}

/// A tid or block number as an SQL integer, for the bound of a range: beyond the largest
/// integer SQL keeps (an open range, `u64::MAX`), the largest.
pub(crate) fn bound(x: u64) -> i64 {
    i64::try_from(x).unwrap_or(i64::MAX)
}

/// Decode a stored metadata JSON document.
pub(crate) fn decode_meta(id: ArrayId, tid: Tid, json: &str) -> Result<ArrayMeta> {
    serde_json::from_str(json).map_err(|e| Error::BadMeta { array: id, tid, detail: e.to_string() })
}

/// Encode metadata for storage.
pub(crate) fn encode_meta(meta: &ArrayMeta) -> String {
    // Serializing plain data to JSON cannot fail.
    serde_json::to_string(meta).unwrap_or_default()
}

/// Build an `ArrayInfo` from a version row.
pub(crate) fn array_info(id: ArrayId, tid: Tid, name: String, meta: &str) -> Result<ArrayInfo> {
    Ok(ArrayInfo { id, name, meta: decode_meta(id, tid, meta)?, tid })
}

/// Microseconds since the Unix epoch (negative before it).
pub(crate) fn time_to_us(time: std::time::SystemTime) -> i64 {
    match time.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_micros().min(i64::MAX as u128) as i64,
        Err(e) => -(e.duration().as_micros().min(i64::MAX as u128) as i64),
    }
}
