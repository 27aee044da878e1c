//! Regression (issue 18, step 3): a block that fails to load on corruption used to reach the
//! caller as a pager failure whose cause was flattened to text (so `A.load()` in Python raised
//! `PagerError`). Invariant: through either engine, a corrupt block reached by a load is the
//! store's own `Error::Store(Corrupt)` naming the block; other pager failures stay `Pager`.

mod common;

use outcore::store::Error as StoreError;
use outcore::{ArraySpec, Codec, Db, DbOptions, Error};

const BS: u64 = 64 << 10;

/// A local store at `dir` with array "a" of 3 blocks (compressed with `codec`) committed.
fn store(dir: &std::path::Path, codec: Codec) -> String {
    let url = dir.join("s.outcore").to_str().expect("utf-8").to_string();
    let db = Db::open(&url, DbOptions::default()).expect("open");
    let conn = db.connect().expect("connect");
    let a = conn.create("a", ArraySpec::of::<f64>([3 * BS / 8]).blksize(BS).codec(codec)).expect("create");
    a.as_array_view_mut::<f64>().expect("view").view_mut().iter_mut().enumerate().for_each(|(i, v)| *v = i as f64);
    conn.commit().expect("commit");
    url
}

/// Loads all of "a" in a new `Db` of `url`: the error.
fn load_error(url: &str) -> Error {
    let db = Db::open(url, DbOptions::default()).expect("reopen");
    let conn = db.connect().expect("connect");
    let a = conn.open("a").expect("open");
    a.prefetch(0..3 * BS).expect_err("a corrupt block")
}

#[test]
fn a_flipped_byte_in_the_data_file_is_a_corrupt_error() {
    // Page-cache engine (uncompressed array of a local store): the block's extent.
    let dir = tempfile::tempdir().expect("tempdir");
    let url = store(dir.path(), Codec::None);
    common::flip_extent_byte(&url, 1, 5000);
    match load_error(&url) {
        Error::Store(StoreError::Corrupt { blk: 1, .. }) => {}
        other => panic!("expected the store's Corrupt error for block 1, got {other:?}"),
    }
}

#[test]
fn a_corrupt_compressed_block_is_a_corrupt_error() {
    // Userfaultfd engine (compressed array): the load runs on a pager thread, and its error
    // comes back through the pager.
    let dir = tempfile::tempdir().expect("tempdir");
    let url = store(dir.path(), Codec::Zstd { level: 3 });
    let n = rusqlite::Connection::open(&url)
        .expect("sqlite")
        .execute("UPDATE outcore_blob SET data = zeroblob(length(data))", [])
        .expect("corrupt the payloads");
    assert!(n > 0);
    match load_error(&url) {
        Error::Store(StoreError::Corrupt { blk: 0, .. }) => {}
        other => panic!("expected the store's Corrupt error for block 0, got {other:?}"),
    }
}
