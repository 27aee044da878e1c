//! Backends: one module per database, each implementing [`Store`](crate::Store).

mod checkpoint;
mod pg_config;
pub(crate) mod postgres;
pub(crate) mod sqlite;

use crate::error::{Error, Result};
use crate::types::{ArrayId, ArrayInfo, ArrayMeta, Tid};

/// The store format this build writes and the highest it reads.
pub(crate) const FORMAT_NAME: &str = "outcore-store";
/// Format version 3: tables outcore_{meta,head,txn,array,current,undo} (+ outcore_blob and
/// outcore_patch on SQLite, outcore_segment on PostgreSQL): each block's current content (on
/// SQLite: a payload plus pending patches) and undo records. Versions 1 (forward delta chains)
/// and 2 (no pending patches) were never released; they are refused like any other version.
pub(crate) const FORMAT_VERSION: u32 = 3;

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
pub(crate) fn array_info(id: i64, tid: i64, name: String, meta: &str) -> Result<ArrayInfo> {
    let id = ArrayId(id as u64);
    let tid = tid as u64;
    Ok(ArrayInfo { id, name, meta: decode_meta(id, tid, meta)?, tid })
}

/// Microseconds since the Unix epoch (negative before it).
pub(crate) fn time_to_us(time: std::time::SystemTime) -> i64 {
    match time.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_micros().min(i64::MAX as u128) as i64,
        Err(e) => -(e.duration().as_micros().min(i64::MAX as u128) as i64),
    }
}
