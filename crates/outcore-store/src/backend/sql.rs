//! SQL both backends run, written once.
//!
//! The statements here use only what SQLite and PostgreSQL read alike: parameters are `$1`,
//! `$2`… (SQLite takes `$1` as a named parameter bound by position, the same number meaning the
//! same value), and every integer a statement returns is `CAST(… AS BIGINT)` (PostgreSQL's
//! `length()` is an `integer`), so both drivers read it as `i64`. A statement one backend
//! alone runs stays in that backend's module.

/// The arrays deleted at or before `$1` (a `SELECT` of array ids, for `IN (…)`).
macro_rules! deleted_arrays {
    () => {
        "SELECT v.array_id FROM outcore_array v WHERE v.tid <= $1 AND v.name IS NULL
         AND NOT EXISTS (SELECT 1 FROM outcore_array n WHERE n.array_id = v.array_id AND n.tid > v.tid)"
    };
}
pub(crate) use deleted_arrays;

/// gc, first step: undo records that only snapshots before `$1` need (a snapshot `s` applies
/// the records with tid > `s`); returns their sizes.
pub(crate) const GC_UNDO: &str = "DELETE FROM outcore_undo WHERE tid <= $1 RETURNING CAST(length(data) AS BIGINT)";
/// gc: empty current versions no kept snapshot needs (an absent row reads zeros), with their
/// blocks.
pub(crate) const GC_EMPTY: &str = "DELETE FROM outcore_current WHERE tid <= $1 AND len = 0 RETURNING array_id, blk";
/// gc: the current versions of arrays deleted at or before `$1`...
pub(crate) const GC_DELETED_CURRENT: &str =
    concat!("DELETE FROM outcore_current WHERE array_id IN (", deleted_arrays!(), ") RETURNING CAST(0 AS BIGINT)");
/// ...and their history.
pub(crate) const GC_DELETED_UNDO: &str = concat!(
    "DELETE FROM outcore_undo WHERE array_id IN (",
    deleted_arrays!(),
    ") RETURNING CAST(length(data) AS BIGINT)"
);
/// gc, last step: array versions shadowed at `$1`, and arrays deleted at or before it.
pub(crate) const GC_ARRAY_VERSIONS: &str = "DELETE FROM outcore_array WHERE tid <= $1 AND (
    EXISTS (SELECT 1 FROM outcore_array n WHERE n.array_id = outcore_array.array_id
            AND n.tid > outcore_array.tid AND n.tid <= $1)
    OR (name IS NULL AND NOT EXISTS (SELECT 1 FROM outcore_array n
            WHERE n.array_id = outcore_array.array_id AND n.tid > outcore_array.tid)))
    RETURNING CAST(0 AS BIGINT)";

/// Blocks with versions in `($1, $2]`, with the newest such tid.
pub(crate) const CHANGED_BLOCKS: &str = "SELECT array_id, blk, max(tid) FROM outcore_undo WHERE tid > $1 AND tid <= $2
     GROUP BY array_id, blk ORDER BY array_id, blk";
/// Arrays with versions in `($1, $2]`, with the newest such tid.
pub(crate) const CHANGED_ARRAYS: &str = "SELECT array_id, max(tid) FROM outcore_array WHERE tid > $1 AND tid <= $2
     GROUP BY array_id ORDER BY array_id";
