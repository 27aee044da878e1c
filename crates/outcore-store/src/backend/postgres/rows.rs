//! The per-block rows of a commit, gathered column by column and sent as one statement per
//! table (`unnest` of array parameters) when the commit's queued writes go out.
//!
//! A small commit touches a few blocks, and each block writes an undo row, a current row and
//! the segments of its changed pages. The server's fixed cost per statement (bind, executor
//! start, plan cache) was most of such a commit's server time; batched, a commit sends three
//! write statements whatever the number of blocks.
//!
//! Undo and current rows take the commit's tid from the head (moved on under the commit lock
//! before them), and their checksums, sent unbound, are bound to it by `outcore_tid_mix`
//! ([`crate::block::TidBinding::Mix`]).

use super::client::Param;
use super::columns::Uint;
use crate::block::Encoded;
use crate::types::ArrayId;

/// Undo rows: one statement for all of them.
const INSERT_UNDO: &str = "INSERT INTO outcore_undo
     (array_id, blk, tid, prev_tid, kind, depth, chain_bytes, codec, len, checksum, data)
     SELECT u.array_id, u.blk, h.tid, u.prev_tid, u.kind, u.depth, u.chain_bytes, u.codec, u.len,
         u.checksum # outcore_tid_mix(h.tid), u.data
     FROM outcore_head h, unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::int[], $5::bigint[],
         $6::bigint[], $7::int[], $8::bigint[], $9::bigint[], $10::bytea[])
         AS u(array_id, blk, prev_tid, kind, depth, chain_bytes, codec, len, checksum, data)
     WHERE h.id = 1";

/// Current rows, inserted or replaced. A commit writes each block once, so no key repeats
/// within one statement.
const UPSERT_CURRENT: &str = "INSERT INTO outcore_current (array_id, blk, tid, codec, len, checksum)
     SELECT c.array_id, c.blk, h.tid, c.codec, c.len, c.checksum # outcore_tid_mix(h.tid)
     FROM outcore_head h, unnest($1::bigint[], $2::bigint[], $3::int[], $4::bigint[], $5::bigint[])
         AS c(array_id, blk, codec, len, checksum)
     WHERE h.id = 1
     ON CONFLICT (array_id, blk) DO UPDATE SET tid = excluded.tid, codec = excluded.codec,
         len = excluded.len, checksum = excluded.checksum";

/// Segment rows rewritten in place (inserted or replaced).
const UPSERT_SEGMENTS: &str = "INSERT INTO outcore_segment (array_id, blk, seg, data, sum)
     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::int[], $4::bytea[], $5::bigint[])
     ON CONFLICT (array_id, blk, seg) DO UPDATE SET data = excluded.data, sum = excluded.sum";

/// A block's current row: codec, content length, checksum (unbound).
pub(super) struct CurrentCols {
    pub codec: i64,
    pub len: u64,
    pub checksum: i64,
}

/// The rows gathered since the last send.
#[derive(Default)]
pub(super) struct RowBatch {
    undo: UndoCols,
    current: CurrentColumns,
    segments: SegmentCols,
}

/// The key columns every per-block row starts with.
#[derive(Default)]
struct BlockKeys {
    array: Vec<ArrayId>,
    blk: Vec<Uint>,
}

impl BlockKeys {
    fn push(&mut self, id: ArrayId, blk: u64) {
        self.array.push(id);
        self.blk.push(Uint(blk));
    }
}

#[derive(Default)]
struct UndoCols {
    key: BlockKeys,
    prev_tid: Vec<Uint>,
    kind: Vec<i32>,
    depth: Vec<i64>,
    chain_bytes: Vec<i64>,
    codec: Vec<i32>,
    len: Vec<Uint>,
    checksum: Vec<i64>,
    data: Vec<Vec<u8>>,
}

#[derive(Default)]
struct CurrentColumns {
    key: BlockKeys,
    codec: Vec<i32>,
    len: Vec<Uint>,
    checksum: Vec<i64>,
}

#[derive(Default)]
struct SegmentCols {
    key: BlockKeys,
    seg: Vec<i32>,
    data: Vec<Vec<u8>>,
    sum: Vec<i64>,
}

impl RowBatch {
    /// Add the commit's undo row for a block, with its checksum unbound.
    pub fn undo(&mut self, id: ArrayId, blk: u64, undo: &Encoded, unbound: i64) {
        let u = &mut self.undo;
        u.key.push(id, blk);
        u.prev_tid.push(Uint(undo.prev_tid));
        u.kind.push(undo.kind as i32);
        u.depth.push(undo.chain.depth);
        u.chain_bytes.push(undo.chain.bytes);
        u.codec.push(undo.codec as i32);
        u.len.push(Uint(undo.len));
        u.checksum.push(unbound);
        u.data.push(undo.data.clone());
    }

    /// Add a block's new current row.
    pub fn current(&mut self, id: ArrayId, blk: u64, row: CurrentCols) {
        let c = &mut self.current;
        c.key.push(id, blk);
        c.codec.push(row.codec as i32);
        c.len.push(Uint(row.len));
        c.checksum.push(row.checksum);
    }

    /// Add a segment row to insert or replace.
    pub fn segment(&mut self, id: ArrayId, blk: u64, seg: i32, data: Vec<u8>, sum: i64) {
        let s = &mut self.segments;
        s.key.push(id, blk);
        s.seg.push(seg);
        s.data.push(data);
        s.sum.push(sum);
    }

    /// The gathered rows as statements (at most one per table), leaving the batch empty.
    pub fn take_statements(&mut self) -> Vec<(&'static str, Vec<Param>)> {
        let RowBatch { undo: u, current: c, segments: s } = std::mem::take(self);
        let mut out = Vec::new();
        if !u.key.array.is_empty() {
            out.push((
                INSERT_UNDO,
                params![
                    u.key.array,
                    u.key.blk,
                    u.prev_tid,
                    u.kind,
                    u.depth,
                    u.chain_bytes,
                    u.codec,
                    u.len,
                    u.checksum,
                    u.data
                ],
            ));
        }
        if !s.key.array.is_empty() {
            out.push((UPSERT_SEGMENTS, params![s.key.array, s.key.blk, s.seg, s.data, s.sum]));
        }
        if !c.key.array.is_empty() {
            out.push((UPSERT_CURRENT, params![c.key.array, c.key.blk, c.codec, c.len, c.checksum]));
        }
        out
    }

    /// True when nothing is gathered.
    pub fn is_empty(&self) -> bool {
        self.undo.key.array.is_empty() && self.current.key.array.is_empty() && self.segments.key.array.is_empty()
    }
}
