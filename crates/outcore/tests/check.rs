//! `Db::check` verifies every stored block: a flipped byte in a mapped array's data file (which
//! reads never verify) is found and named; `Db::gc` frees history.

mod common;

use outcore::{ArraySpec, Db, DbOptions};

#[test]
fn check_finds_a_flipped_byte_in_the_data_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.outcore");
    let url = path.to_str().expect("utf-8");
    let db = Db::open(url, DbOptions::default()).expect("open");
    let conn = db.connect().expect("connect");
    let bs = 64 << 10;
    let a = conn.create("signal", ArraySpec::of::<f64>([3 * bs / 8]).blksize(bs)).expect("create");
    a.as_array_view_mut::<f64>().expect("view").view_mut().iter_mut().enumerate().for_each(|(i, v)| *v = i as f64);
    conn.commit().expect("commit");
    let mut seen = Vec::new();
    let report = db.check(|p| seen.push((p.done, p.total))).expect("check");
    assert!(report.ok(), "{report:?}");
    assert_eq!((report.arrays, report.blocks, report.bytes), (1, 3, 3 * bs));
    assert_eq!(seen.last(), Some(&(3, 3)));

    // Flip one byte of block 1 behind the store's back.
    common::flip_extent_byte(url, 1, 5000);

    let report = Db::open(url, DbOptions::default()).expect("reopen").check(|_| {}).expect("check");
    assert_eq!(report.errors.len(), 1, "{report:?}");
    let (name, blk, e) = &report.errors[0];
    assert_eq!((name.as_str(), *blk), ("signal", 1));
    assert!(e.contains("page 1") && e.contains("checksum"), "{e}");
}

#[test]
fn gc_frees_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = dir.path().join("g.outcore");
    let db = Db::open(url.to_str().expect("utf-8"), DbOptions::default()).expect("open");
    let conn = db.connect().expect("connect");
    let a = conn.create("x", ArraySpec::of::<f64>([1000])).expect("create");
    for i in 0..5 {
        a.as_array_view_mut::<f64>().expect("view").view_mut()[[i]] = i as f64 + 1.0;
        conn.commit().expect("commit");
    }
    let st = db.gc(None).expect("gc");
    assert_eq!(st.block_versions, 5);
    assert!(db.connect_at(1).is_err(), "history before the newest tid is gone");
}
