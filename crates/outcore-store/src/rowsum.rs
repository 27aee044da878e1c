//! Row checksums: every metadata row that decides what is read (array versions, the block
//! index, the head, commit records, the data file's allocation and redo rows, the record of
//! which blocks exist) carries a checksum over its table, its key and its content. A flipped
//! bit anywhere in such a row, a row moved to another key, or a row of another table read in
//! its place fails the check: a corrupt row is reported, never used.
//!
//! The checksum is XXH3-64 over a canonical encoding of the columns (each integer as 8
//! little-endian bytes, each text or blob with its length first, NULL as its own tag), seeded
//! by the table's name. One [`RowSum`] per row; [`verify`] compares.

use crate::error::{Error, Result};
use std::hash::Hasher;
use twox_hash::XxHash3_64;

const SEED: u64 = 0x726f_7773_756d_7331; // "rowsums1"

/// The checksum of one row, built column by column in the table's column order.
pub(crate) struct RowSum(XxHash3_64);

impl RowSum {
    /// A row of `table`.
    pub fn new(table: &str) -> RowSum {
        let mut h = XxHash3_64::with_seed(SEED);
        h.write(table.as_bytes());
        h.write_u8(0);
        RowSum(h)
    }

    /// An integer column.
    pub fn int(mut self, v: i64) -> RowSum {
        self.0.write(&[1]);
        self.0.write(&v.to_le_bytes());
        self
    }

    /// An unsigned integer column (tids, block numbers, offsets, ids).
    pub fn uint(self, v: u64) -> RowSum {
        self.int(v as i64)
    }

    /// A nullable integer column.
    pub fn opt_int(mut self, v: Option<i64>) -> RowSum {
        match v {
            Some(v) => self.int(v),
            None => {
                self.0.write(&[0]);
                self
            }
        }
    }

    /// A text or blob column.
    pub fn bytes(mut self, v: &[u8]) -> RowSum {
        self.0.write(&[2]);
        self.0.write(&(v.len() as u64).to_le_bytes());
        self.0.write(v);
        self
    }

    /// A nullable text or blob column.
    pub fn opt_bytes(mut self, v: Option<&[u8]>) -> RowSum {
        match v {
            Some(v) => self.bytes(v),
            None => {
                self.0.write(&[0]);
                self
            }
        }
    }

    /// The checksum (as stored: a signed 64-bit integer).
    pub fn finish(self) -> i64 {
        self.0.finish() as i64
    }
}

/// Check a row read from `what` (for example "the block index row of block 3 of array 7")
/// against its stored checksum.
pub(crate) fn verify(sum: RowSum, stored: i64, what: impl FnOnce() -> String) -> Result<()> {
    let want = sum.finish();
    if want == stored {
        Ok(())
    } else {
        Err(Error::CorruptMeta { what: what(), detail: format!("row checksum {stored:#x}, computed {want:#x}") })
    }
}

// ---- the rows, one function per table (column order as stored) ----

/// The head row.
pub(crate) fn head(tid: u64, horizon: u64, time_us: i64) -> RowSum {
    RowSum::new("head").uint(tid).uint(horizon).int(time_us)
}

/// A commit record; `catalog` is the sum of [`catalog_entry`] over the array versions live at
/// its tid (so that a version row lost or moved is found out).
pub(crate) fn txn(tid: u64, time_us: i64, user: &str, description: &str, extension: &str, catalog: i64) -> RowSum {
    RowSum::new("txn")
        .uint(tid)
        .int(time_us)
        .bytes(user.as_bytes())
        .bytes(description.as_bytes())
        .bytes(extension.as_bytes())
        .int(catalog)
}

/// The term of a live array version (array `id`, written at `tid`) in a commit's catalog.
pub(crate) fn catalog_entry(id: u64, tid: u64) -> i64 {
    RowSum::new("catalog").uint(id).uint(tid).finish()
}

/// An array version (name and metadata `None`: deleted at `tid`).
pub(crate) fn array(id: u64, tid: u64, name: Option<&str>, meta: Option<&str>) -> RowSum {
    RowSum::new("array").uint(id).uint(tid).opt_bytes(name.map(str::as_bytes)).opt_bytes(meta.map(str::as_bytes))
}

/// The columns of a block index row (a block's current version) that a checksum covers. Its
/// page checksums are bound by `checksum` (see `block::extent_checksum`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct CurrentCols {
    pub array: u64,
    pub blk: u64,
    pub tid: u64,
    pub len: u64,
    pub base_tid: u64,
    pub base_len: u64,
    pub codec: i64,
    pub checksum: i64,
    pub data_id: Option<i64>,
    pub patches: i64,
    pub patch_bytes: i64,
    pub ext_off: Option<u64>,
}

/// A block index row.
pub(crate) fn current(c: &CurrentCols) -> RowSum {
    RowSum::new("current")
        .uint(c.array)
        .uint(c.blk)
        .uint(c.tid)
        .uint(c.len)
        .uint(c.base_tid)
        .uint(c.base_len)
        .int(c.codec)
        .int(c.checksum)
        .opt_int(c.data_id)
        .int(c.patches)
        .int(c.patch_bytes)
        .opt_int(c.ext_off.map(|o| o as i64))
}

/// A retired extent.
pub(crate) fn retired(ext_off: u64, size: u64, array: u64, blk: u64, since: u64, retired: u64) -> RowSum {
    RowSum::new("retired").uint(ext_off).uint(size).uint(array).uint(blk).uint(since).uint(retired)
}

/// A free extent.
pub(crate) fn free(size: u64, ext_off: u64) -> RowSum {
    RowSum::new("free").uint(size).uint(ext_off)
}

/// A staged extent.
pub(crate) fn staged(ext_off: u64, size: u64, slot: u64, nonce: u64) -> RowSum {
    RowSum::new("staged").uint(ext_off).uint(size).uint(slot).uint(nonce)
}

/// A redo row (bytes `data` to write at `off` of the data file).
pub(crate) fn redo(tid: u64, off: u64, data: &[u8]) -> RowSum {
    RowSum::new("redo").uint(tid).uint(off).bytes(data)
}

/// The data file's allocation head.
pub(crate) fn local(data_end: u64, redo: u64) -> RowSum {
    RowSum::new("local").uint(data_end).uint(redo)
}

/// A segment of the record of which blocks of an array have an index row.
pub(crate) fn blocks(array: u64, seg: u64, bits: &[u8]) -> RowSum {
    RowSum::new("blocks").uint(array).uint(seg).bytes(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_table_and_null_counts() {
        let base = || RowSum::new("t").int(1).opt_int(None).bytes(b"ab").opt_bytes(Some(b""));
        let s = base().finish();
        assert_eq!(s, base().finish());
        assert_ne!(s, RowSum::new("u").int(1).opt_int(None).bytes(b"ab").opt_bytes(Some(b"")).finish());
        assert_ne!(s, RowSum::new("t").int(2).opt_int(None).bytes(b"ab").opt_bytes(Some(b"")).finish());
        assert_ne!(s, RowSum::new("t").int(1).opt_int(Some(0)).bytes(b"ab").opt_bytes(Some(b"")).finish());
        assert_ne!(s, RowSum::new("t").int(1).opt_int(None).bytes(b"a").opt_bytes(Some(b"b")).finish());
        assert_ne!(s, RowSum::new("t").int(1).opt_int(None).bytes(b"ab").opt_bytes(None).finish());
        assert!(verify(base(), s, || "row".into()).is_ok());
        let e = verify(base(), s ^ 1, || "the row".into()).unwrap_err();
        assert!(e.to_string().contains("the row"), "{e}");
    }
}
