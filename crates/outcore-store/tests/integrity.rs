//! Damaged metadata rows of a local store are reported, never read as data: each test commits
//! a few blocks, damages one row the way a flipped bit would (through SQL), reopens the store
//! and reads.

mod common;

use outcore_store::{ArrayId, ArrayMeta, Commit, Error, Order, Store};

const BS: u64 = 64 << 10;

/// A store with array "a" (4 blocks, blocks 0 and 2 written, raw: in extents) and array "z"
/// (compressed: blocks in SQLite); returns the fixture, the array ids and the head tid.
fn setup() -> (common::Fixture, ArrayId, ArrayId, u64) {
    let f = common::sqlite();
    let s = &*f.store;
    let (a, z) = (ArrayId(11), ArrayId(12));
    let mut c = Commit::new();
    let mut meta = ArrayMeta::new("|u1", vec![4 * BS], Order::C, 4 * BS);
    meta.blksize = BS;
    c.put_array(a, "a", meta.clone());
    meta.codec = outcore_store::Codec::Zstd { level: 3 };
    c.put_array(z, "z", meta);
    c.write_block(a, 0, vec![1u8; BS as usize]);
    c.write_block(a, 2, vec![2u8; BS as usize]);
    c.write_block(z, 1, vec![3u8; BS as usize]);
    let t = s.commit(s.head().unwrap(), c).unwrap();
    (f, a, z, t)
}

fn sql(f: &common::Fixture, q: &str) {
    let c = rusqlite::Connection::open(&f.url).unwrap();
    let n = c.execute(q, []).unwrap();
    assert!(n > 0, "{q} changed nothing");
}

fn load(s: &dyn Store, id: ArrayId, blk: u64, at: u64) -> Result<Vec<u8>, Error> {
    let mut buf = vec![0u8; BS as usize];
    s.load(id, blk, at, &mut buf).map(|_| buf)
}

#[track_caller]
fn corrupt_meta<T: std::fmt::Debug>(r: Result<T, Error>, what: &str) {
    match r {
        Err(e @ Error::CorruptMeta { .. }) => assert!(e.to_string().contains(what), "{e}"),
        other => panic!("expected CorruptMeta naming {what:?}, got {other:?}"),
    }
}

#[test]
fn a_block_row_moved_to_another_key_is_reported_at_both_places() {
    // The repro: the row of block 0 moves to block 1000; block 0 must not read zeros.
    let (f, a, _, t) = setup();
    drop(f.store.clone());
    sql(&f, "UPDATE outcore_current SET blk = blk + 1000 WHERE blk = 0");
    let s = f.reopen();
    corrupt_meta(load(&*s, a, 0, t), "block 0");
    corrupt_meta(load(&*s, a, 1000, t), "block 1000");
    corrupt_meta(s.locate(a, 0..4, t), "block 0");
    // Blocks never written still read zeros; written ones read right.
    assert_eq!(load(&*s, a, 1, t).unwrap(), vec![0u8; BS as usize]);
    assert_eq!(load(&*s, a, 2, t).unwrap(), vec![2u8; BS as usize]);
}

#[test]
fn a_deleted_block_row_is_reported() {
    let (f, a, z, t) = setup();
    sql(&f, "DELETE FROM outcore_current WHERE blk = 1");
    let s = f.reopen();
    corrupt_meta(load(&*s, z, 1, t), "block 1");
    assert_eq!(load(&*s, a, 1, t).unwrap(), vec![0u8; BS as usize], "never written");
}

#[test]
fn a_changed_extent_offset_is_reported_before_mapping() {
    let (f, a, _, t) = setup();
    sql(&f, "UPDATE outcore_current SET ext_off = ext_off + 4096 WHERE blk = 2");
    let s = f.reopen();
    corrupt_meta(s.locate(a, 0..4, t), "block 2");
    corrupt_meta(load(&*s, a, 2, t), "block 2");
}

#[test]
fn a_renamed_array_row_is_reported() {
    let (f, _, _, t) = setup();
    sql(&f, "UPDATE outcore_array SET name = 'b' WHERE name = 'a'");
    let s = f.reopen();
    corrupt_meta(s.arrays(t), "array");
    corrupt_meta(s.array("b", t), "array");
}

#[test]
fn a_damaged_head_commit_record_or_block_record_is_reported() {
    let (f, a, _, t) = setup();
    sql(&f, "UPDATE outcore_head SET tid = tid - 1");
    corrupt_meta(f.reopen().snapshot(None), "head");
    sql(&f, "UPDATE outcore_head SET tid = tid + 1");
    sql(&f, "UPDATE outcore_blocks SET bits = zeroblob(512)");
    corrupt_meta(f.reopen().locate(a, 0..4, t), "written blocks");
    sql(&f, "UPDATE outcore_txn SET user = 'mallory'");
    corrupt_meta(f.reopen().history(0, t), "commit record");
    corrupt_meta(f.reopen().arrays(t), "commit record");
}

#[test]
fn a_damaged_free_or_retired_extent_row_stops_the_commit() {
    let (f, a, _, t) = setup();
    // Rewrite block 0 while a snapshot maps it: its old extent is retired.
    let snap = f.store.snapshot(None).unwrap();
    let mut c = Commit::new().by(&snap);
    c.write_block(a, 0, vec![5u8; BS as usize]);
    let t2 = f.store.commit(t, c).unwrap();
    sql(&f, "UPDATE outcore_retired SET ext_off = ext_off + 65536");
    drop(snap);
    let s = f.reopen();
    let mut c = Commit::new();
    c.write_block(a, 3, vec![6u8; BS as usize]);
    corrupt_meta(s.commit(t2, c), "retired extent");
    assert_eq!(load(&*s, a, 0, t2).unwrap(), vec![5u8; BS as usize]);
}

#[test]
fn a_lost_or_moved_array_version_is_reported_not_read_as_an_older_one() {
    let (f, a, _, t1) = setup();
    // A second version of "a" (grown), so that losing it would show the first.
    let mut c = Commit::new();
    let mut meta = ArrayMeta::new("|u1", vec![8 * BS], Order::C, 8 * BS);
    meta.blksize = BS;
    c.put_array(a, "a", meta);
    let t2 = f.store.commit(t1, c).unwrap();
    assert_eq!(f.reopen().array("a", t2).unwrap().unwrap().meta.shape, vec![8 * BS]);
    sql(&f, &format!("UPDATE outcore_array SET tid = tid + 100 WHERE tid = {t2}"));
    let s = f.reopen();
    corrupt_meta(s.array("a", t2), "list of arrays");
    corrupt_meta(s.arrays(t2), "list of arrays");
    corrupt_meta(s.array_by_id(a, t2), "list of arrays");
    // The snapshot before it is intact.
    assert_eq!(s.array("a", t1).unwrap().unwrap().meta.shape, vec![4 * BS]);
}
