//! One conformance suite for every backend: each test body below runs on SQLite and on
//! PostgreSQL (see `common::place::backends!`).

mod common;

use common::Fixture;
use outcore_store::{ArrayId, ArrayMeta, Codec, Commit, ConflictItem, Error, Order, Store};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const BS: u64 = 64 << 10;

fn meta(nbytes: u64) -> ArrayMeta {
    ArrayMeta {
        dtype: "<f8".into(),
        shape: vec![nbytes / 8],
        order: Order::C,
        blksize: BS,
        codec: Codec::None,
        nbytes,
        attrs: Default::default(),
        fill: None,
    }
}

fn block(fill: u8, len: usize) -> Vec<u8> {
    vec![fill; len]
}

fn load(s: &dyn Store, id: ArrayId, blk: u64, at: u64) -> Vec<u8> {
    let mut buf = vec![0xAAu8; BS as usize];
    s.load(id, blk, at, &mut buf).expect("load");
    buf
}

fn create(s: &dyn Store, name: &str, nbytes: u64) -> (ArrayId, u64) {
    let id = ArrayId::random();
    let mut c = Commit::new();
    c.put_array(id, name, meta(nbytes));
    let tid = s.commit(s.head().unwrap(), c).expect("create");
    (id, tid)
}

fn write(s: &dyn Store, base: u64, id: ArrayId, blocks: &[(u64, Vec<u8>)]) -> Result<u64, Error> {
    let mut c = Commit::new();
    for (b, d) in blocks {
        c.write_block(id, *b, d.clone());
    }
    s.commit(base, c)
}

backends!(
    fresh_store_is_empty,
    metadata_round_trips,
    blocks_round_trip_and_zeros_cost_nothing,
    loads_see_the_newest_version_at_or_before_the_snapshot,
    create_rename_delete_list_as_of_any_tid,
    names_are_unique,
    same_block_conflicts_and_writes_nothing,
    different_blocks_of_one_array_both_commit,
    metadata_conflicts,
    name_and_delete_conflicts,
    shrink_drops_data_and_regrowth_reads_zeros,
    shrink_conflicts_with_concurrent_write,
    changes_list_what_changed,
    advance_skips_the_readers_own_commit,
    history_and_time_lookup,
    gc_keeps_what_kept_snapshots_need,
    gc_removes_deleted_arrays,
    corrupt_block_is_detected,
    bad_requests_are_typed_errors,
    subscription_sees_other_committers,
    commit_order_is_tid_order_under_concurrency,
    parallel_loads,
    default_block_size_round_trip,
    compression_is_recorded_per_version,
    block_sources_are_read_at_commit,
    page_sources_write_only_their_pages,
    page_sources_see_the_stored_content,
);

fn fresh_store_is_empty(f: &Fixture) {
    let s = &*f.store;
    assert_eq!(s.head().unwrap(), 0);
    assert!(s.arrays(0).unwrap().is_empty());
    assert_eq!(load(s, ArrayId(5), 3, 0), vec![0u8; BS as usize]);
    assert_eq!(s.stats().unwrap().block_versions, 0);
    assert!(s.history(0, u64::MAX).unwrap().is_empty());
}

fn metadata_round_trips(f: &Fixture) {
    let s = &*f.store;
    let id = ArrayId::random();
    let m = ArrayMeta {
        dtype: "[('x', '<f4'), ('y', '<i8', (3,)), ('name', 'S10')]".into(),
        shape: vec![2, 3, 0],
        order: Order::F,
        blksize: 1 << 20,
        codec: Codec::Zstd { level: 3 },
        nbytes: 0,
        attrs: serde_json::json!({"units": "m", "_ARRAY_DIMENSIONS": ["t", "x", "y"], "n": 3})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        fill: Some("0000c07f".into()),
    };
    let mut c = Commit::new();
    c.put_array(id, "structured ünïcode name", m.clone());
    let t = s.commit(0, c).unwrap();
    let a = f.reopen().array("structured ünïcode name", t).unwrap().unwrap();
    assert_eq!((a.id, a.meta, a.tid), (id, m, t));
}

fn blocks_round_trip_and_zeros_cost_nothing(f: &Fixture) {
    let s = &*f.store;
    let (id, t0) = create(s, "a", 10 * BS);
    let mut partial = vec![0u8; BS as usize];
    partial[..100].fill(3);
    let t1 = write(
        s,
        t0,
        id,
        &[(0, block(1, BS as usize)), (1, partial.clone()), (2, vec![0; BS as usize]), (3, vec![9; 10])],
    )
    .unwrap();
    let r = f.reopen();
    assert_eq!(load(&*r, id, 0, t1), block(1, BS as usize));
    assert_eq!(load(&*r, id, 1, t1), partial);
    assert_eq!(load(&*r, id, 2, t1), vec![0; BS as usize]);
    let mut short = vec![0u8; BS as usize];
    short[..10].fill(9);
    assert_eq!(load(&*r, id, 3, t1), short);
    assert_eq!(load(&*r, id, 7, t1), vec![0; BS as usize], "never written reads zeros");
    let st = r.stats().unwrap();
    // Full block + 100 bytes + 0 bytes (all zero) + 10 bytes: trailing zeros are not stored.
    assert_eq!(st.stored_bytes, BS + 100 + 10);
}

fn loads_see_the_newest_version_at_or_before_the_snapshot(f: &Fixture) {
    let s = &*f.store;
    let (id, t0) = create(s, "a", 4 * BS);
    let t1 = write(s, t0, id, &[(0, block(1, 50))]).unwrap();
    let t2 = write(s, t1, id, &[(1, block(2, 50))]).unwrap();
    let t3 = write(s, t2, id, &[(0, block(3, 50))]).unwrap();
    assert_eq!(load(s, id, 0, t0)[0], 0);
    assert_eq!(load(s, id, 0, t1)[0], 1);
    assert_eq!(load(s, id, 0, t2)[0], 1);
    assert_eq!(load(s, id, 0, t3)[0], 3);
    assert_eq!(load(s, id, 1, t1)[0], 0);
    assert_eq!(load(s, id, 1, t3)[0], 2);
}

fn create_rename_delete_list_as_of_any_tid(f: &Fixture) {
    let s = &*f.store;
    let (a, t1) = create(s, "a", BS);
    let (b, t2) = create(s, "b", BS);
    let mut c = Commit::new();
    c.put_array(a, "renamed", meta(BS));
    let t3 = s.commit(t2, c).unwrap();
    let mut c = Commit::new();
    c.delete_array(b);
    let t4 = s.commit(t3, c).unwrap();
    let names = |t| s.arrays(t).unwrap().into_iter().map(|i| i.name).collect::<Vec<_>>();
    assert_eq!(names(t1), ["a"]);
    assert_eq!(names(t2), ["a", "b"]);
    assert_eq!(names(t3), ["b", "renamed"]);
    assert_eq!(names(t4), ["renamed"]);
    assert!(s.array("a", t3).unwrap().is_none());
    assert_eq!(s.array("a", t2).unwrap().unwrap().id, a);
    assert!(s.array_by_id(b, t4).unwrap().is_none());
    assert_eq!(s.array_by_id(b, t3).unwrap().unwrap().name, "b");
    // A deleted name can be used again, by a new array.
    let (b2, t5) = create(s, "b", BS);
    assert_ne!(b2, b);
    assert_eq!(s.array("b", t5).unwrap().unwrap().id, b2);
    // A deleted id is never brought back.
    let mut c = Commit::new();
    c.put_array(b, "zombie", meta(BS));
    assert!(matches!(s.commit(t5, c), Err(Error::Invalid(_))));
}

fn names_are_unique(f: &Fixture) {
    let s = &*f.store;
    let (_, t1) = create(s, "a", BS);
    let mut c = Commit::new();
    c.put_array(ArrayId::random(), "a", meta(BS));
    match s.commit(t1, c) {
        Err(Error::NameTaken(n)) => assert_eq!(n, "a"),
        other => panic!("expected NameTaken, got {other:?}"),
    }
    let mut c = Commit::new();
    c.put_array(ArrayId::random(), "x", meta(BS));
    c.put_array(ArrayId::random(), "x", meta(BS));
    assert!(matches!(s.commit(t1, c), Err(Error::Invalid(_))));
    assert_eq!(s.head().unwrap(), t1);
}

fn same_block_conflicts_and_writes_nothing(f: &Fixture) {
    let s = &*f.store;
    let (id, t0) = create(s, "sig", 4 * BS);
    let t1 = write(s, t0, id, &[(1, block(1, 10))]).unwrap();
    // A second transaction from snapshot t0 writes block 1 (conflict) and block 2 (fine alone).
    let other = f.reopen();
    let err = write(&*other, t0, id, &[(1, block(2, 10)), (2, block(2, 10))]).unwrap_err();
    match &err {
        Error::Conflict(c) => {
            assert_eq!(c.base, t0);
            assert_eq!(c.items, vec![ConflictItem::Block { array: id, name: "sig".into(), blk: 1, tid: t1 }]);
            let msg = err.to_string();
            assert!(msg.contains("block 1 of array 'sig'"), "{msg}");
        }
        e => panic!("expected conflict, got {e:?}"),
    }
    assert_eq!(s.head().unwrap(), t1, "nothing committed");
    assert_eq!(load(s, id, 1, t1)[0], 1);
    assert_eq!(load(s, id, 2, t1)[0], 0, "the non-conflicting part was not written either");
    // After moving to the new snapshot the same change commits.
    let t2 = write(&*other, t1, id, &[(1, block(2, 10)), (2, block(2, 10))]).unwrap();
    assert_eq!(load(s, id, 1, t2)[0], 2);
}

fn different_blocks_of_one_array_both_commit(f: &Fixture) {
    let s = &*f.store;
    let (id, t0) = create(s, "a", 4 * BS);
    let t1 = write(s, t0, id, &[(0, block(1, 10))]).unwrap();
    let t2 = write(&*f.reopen(), t0, id, &[(3, block(4, 10))]).unwrap();
    assert!(t2 > t1);
    assert_eq!(load(s, id, 0, t2)[0], 1);
    assert_eq!(load(s, id, 3, t2)[0], 4);
}

fn metadata_conflicts(f: &Fixture) {
    let s = &*f.store;
    let (id, t0) = create(s, "a", 4 * BS);
    let mut c = Commit::new();
    c.put_array(id, "a", meta(8 * BS));
    let t1 = s.commit(t0, c).unwrap();
    // Concurrent append from the same snapshot: conflict on the array's shape.
    let mut c = Commit::new();
    c.put_array(id, "a", meta(6 * BS));
    c.write_block(id, 5, block(5, 10));
    match s.commit(t0, c) {
        Err(Error::Conflict(c)) => {
            assert_eq!(c.items, vec![ConflictItem::Array { array: id, name: "a".into(), tid: t1 }])
        }
        other => panic!("expected conflict, got {other:?}"),
    }
    assert_eq!(s.array("a", s.head().unwrap()).unwrap().unwrap().meta.nbytes, 8 * BS);
    assert_eq!(load(s, id, 5, s.head().unwrap())[0], 0);
}

fn name_and_delete_conflicts(f: &Fixture) {
    let s = &*f.store;
    let (id, t0) = create(s, "a", 4 * BS);
    // Two transactions create "b" concurrently.
    let mut c = Commit::new();
    c.put_array(ArrayId::random(), "b", meta(BS));
    let t1 = s.commit(t0, c).unwrap();
    let mut c = Commit::new();
    c.put_array(ArrayId::random(), "b", meta(BS));
    match s.commit(t0, c) {
        Err(Error::Conflict(c)) => assert_eq!(c.items, vec![ConflictItem::Name { name: "b".into(), tid: t1 }]),
        other => panic!("expected conflict, got {other:?}"),
    }
    // One deletes "a" while another writes it.
    let mut c = Commit::new();
    c.delete_array(id);
    let t2 = s.commit(t1, c).unwrap();
    match write(s, t1, id, &[(0, block(1, 1))]) {
        Err(Error::Conflict(c)) => {
            assert_eq!(c.items, vec![ConflictItem::Deleted { array: id, name: "a".into(), tid: t2 }])
        }
        other => panic!("expected conflict, got {other:?}"),
    }
    // Writing an array that was already deleted in one's snapshot is a plain error.
    assert!(matches!(write(s, t2, id, &[(0, block(1, 1))]), Err(Error::NoSuchArray(_))));
}

fn shrink_drops_data_and_regrowth_reads_zeros(f: &Fixture) {
    let s = &*f.store;
    let (id, t0) = create(s, "a", 4 * BS);
    let t1 = write(s, t0, id, &[(0, block(1, BS as usize)), (1, block(2, BS as usize)), (3, block(4, BS as usize))])
        .unwrap();
    // Shrink to half of block 0.
    let mut c = Commit::new();
    c.put_array(id, "a", meta(BS / 2));
    let t2 = s.commit(t1, c).unwrap();
    // Grow back: everything beyond the shrink point reads zeros.
    let mut c = Commit::new();
    c.put_array(id, "a", meta(4 * BS));
    let t3 = s.commit(t2, c).unwrap();
    let b0 = load(s, id, 0, t3);
    assert!(b0[..(BS / 2) as usize].iter().all(|b| *b == 1));
    assert!(b0[(BS / 2) as usize..].iter().all(|b| *b == 0));
    assert_eq!(load(s, id, 1, t3), vec![0; BS as usize]);
    assert_eq!(load(s, id, 3, t3), vec![0; BS as usize]);
    // The old snapshot still reads the old data.
    assert_eq!(load(s, id, 3, t1), block(4, BS as usize));
    // Shrink and regrow inside one transaction: `truncate` records the smallest size.
    let t4 = write(s, t3, id, &[(2, block(7, BS as usize))]).unwrap();
    let mut c = Commit::new();
    c.put_array(id, "a", meta(4 * BS));
    c.truncate(id, 2 * BS);
    c.write_block(id, 3, block(8, 10));
    let t5 = s.commit(t4, c).unwrap();
    assert_eq!(load(s, id, 2, t5), vec![0; BS as usize]);
    assert_eq!(load(s, id, 3, t5)[..11], [8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 0]);
}

fn shrink_conflicts_with_concurrent_write(f: &Fixture) {
    let s = &*f.store;
    let (id, t0) = create(s, "a", 4 * BS);
    let t1 = write(s, t0, id, &[(3, block(1, 10))]).unwrap();
    let t2 = write(s, t1, id, &[(3, block(2, 10))]).unwrap();
    // A shrink based on t1 would drop block 3, which t2 changed: conflict.
    let mut c = Commit::new();
    c.put_array(id, "a", meta(BS));
    assert!(matches!(s.commit(t1, c), Err(Error::Conflict(_))));
    // The other way round: shrink first, then a write from the older snapshot beyond the new size.
    let mut c = Commit::new();
    c.put_array(id, "a", meta(BS));
    let t3 = s.commit(t2, c).unwrap();
    assert!(matches!(write(s, t2, id, &[(2, block(3, 10))]), Err(Error::Conflict(_))));
    assert_eq!(s.head().unwrap(), t3);
}

fn changes_list_what_changed(f: &Fixture) {
    let s = &*f.store;
    let (a, t0) = create(s, "a", 4 * BS);
    let (b, t1) = create(s, "b", 4 * BS);
    let t2 = write(s, t1, a, &[(0, block(1, 1)), (2, block(1, 1))]).unwrap();
    let t3 = write(s, t2, b, &[(1, block(1, 1))]).unwrap();
    let ch = s.changes(t1, t3).unwrap();
    let mut expect = vec![(a, 0), (a, 2), (b, 1)];
    expect.sort();
    assert_eq!(ch.blocks, expect);
    assert!(ch.arrays.is_empty());
    let ch = s.changes(t0, t2).unwrap();
    assert_eq!(ch.arrays, vec![b]);
    assert_eq!(ch.blocks.len(), 2);
    assert!(s.changes(t3, t3).unwrap().is_empty());
}

fn advance_skips_the_readers_own_commit(f: &Fixture) {
    let s = &*f.store;
    let (a, t0) = create(s, "a", 4 * BS);
    let (b, t1) = create(s, "b", 4 * BS);
    // Block a/0 written by "me" at t3 and by others at t2 and t4; a/1 only by me; b renamed.
    let t2 = write(s, t1, a, &[(0, block(1, 1)), (2, block(1, 1))]).unwrap();
    let t3 = write(s, t2, a, &[(0, block(2, 1)), (1, block(2, 1))]).unwrap();
    let t4 = write(s, t3, a, &[(3, block(3, 1))]).unwrap();
    let mut c = Commit::new();
    c.put_array(b, "b2", meta(4 * BS));
    let t5 = s.commit(t4, c).unwrap();
    let (snap, ch) = s.advance(t1, Some(t3)).unwrap();
    assert_eq!(snap.tid(), t5);
    let ch = ch.expect("history is there");
    let mut want = vec![(a, 0), (a, 2), (a, 3)];
    want.sort();
    assert_eq!(ch.blocks, want, "a/1 changed only in the reader's own commit");
    assert_eq!(ch.arrays, vec![b]);
    // Without a commit of its own, everything since; from the head, nothing.
    let (_, ch) = s.advance(t0, None).unwrap();
    let ch = ch.unwrap();
    assert_eq!(ch.blocks.len(), 4);
    assert_eq!(ch.arrays, vec![b]);
    assert!(s.advance(t5, None).unwrap().1.unwrap().is_empty());
    // History gone: no changes to tell (everything is to be treated as changed).
    s.gc(t4).unwrap();
    let (snap, ch) = s.advance(t2, Some(t3)).unwrap();
    assert_eq!((snap.tid(), ch), (t5, None));
}

fn history_and_time_lookup(f: &Fixture) {
    let s = &*f.store;
    let before = SystemTime::now() - Duration::from_secs(1);
    let c = Commit::new().with_user("alice").with_description("first").with_extension(serde_json::json!({"k": [1, 2]}));
    let t1 = s.commit(0, c).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let mid = SystemTime::now();
    std::thread::sleep(Duration::from_millis(20));
    let t2 = s.commit(t1, Commit::new().with_description("second")).unwrap();
    let h = f.reopen().history(0, u64::MAX).unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!((h[0].tid, h[0].user.as_str(), h[0].description.as_str()), (t1, "alice", "first"));
    assert_eq!(h[0].extension, serde_json::json!({"k": [1, 2]}));
    assert_eq!((h[1].tid, h[1].description.as_str()), (t2, "second"));
    assert!(h[0].time_us <= h[1].time_us);
    assert_eq!(s.tid_at(before).unwrap(), 0);
    assert_eq!(s.tid_at(mid).unwrap(), t1);
    assert_eq!(s.tid_at(SystemTime::now()).unwrap(), t2);
    assert_eq!(s.history(t1, t2).unwrap().len(), 1);
}

fn gc_keeps_what_kept_snapshots_need(f: &Fixture) {
    let s = &*f.store;
    let (id, t0) = create(s, "a", 4 * BS);
    let mut tids = vec![t0];
    // Block 0 changes at every commit; block 1 once; block 2 is zeroed later; block 3 never.
    let mut t = write(s, t0, id, &[(0, block(1, 100)), (1, block(1, 100)), (2, block(1, 100))]).unwrap();
    tids.push(t);
    for i in 2..6u8 {
        t = write(s, t, id, &[(0, block(i, 100))]).unwrap();
        tids.push(t);
    }
    t = write(s, t, id, &[(2, vec![])]).unwrap();
    tids.push(t);
    t = write(s, t, id, &[(0, block(9, 100))]).unwrap();
    tids.push(t);
    let snapshot = |at| (0..4).map(|b| load(s, id, b, at)).collect::<Vec<_>>();
    let keep = tids[tids.len() - 2]; // the commit that zeroed block 2
    let expected: Vec<_> = tids.iter().filter(|t| **t >= keep).map(|t| (*t, snapshot(*t))).collect();
    let before = s.stats().unwrap();
    let st = s.gc(keep).unwrap();
    assert!(st.block_versions >= 5, "{st:?}");
    assert_eq!(s.stats().unwrap().block_versions, before.block_versions - st.block_versions);
    for (t, snap) in &expected {
        assert_eq!(&snapshot(*t), snap, "snapshot {t} changed by gc");
    }
    assert_eq!(s.gc_horizon().unwrap(), keep);
    let mut buf = vec![0u8; BS as usize];
    assert!(matches!(s.load(id, 0, keep - 1, &mut buf), Err(Error::SnapshotGone { .. })));
    assert!(matches!(s.arrays(keep - 1), Err(Error::SnapshotGone { .. })));
    assert!(matches!(write(s, keep - 1, id, &[(3, block(1, 1))]), Err(Error::SnapshotGone { .. })));
    // gc again at the same point removes nothing.
    assert_eq!(s.gc(keep).unwrap().block_versions, 0);
}

fn gc_removes_deleted_arrays(f: &Fixture) {
    let s = &*f.store;
    let (id, t0) = create(s, "gone", 4 * BS);
    let t1 = write(s, t0, id, &[(0, block(1, 100)), (1, block(1, 100))]).unwrap();
    let mut c = Commit::new();
    c.delete_array(id);
    let t2 = s.commit(t1, c).unwrap();
    let (keep, t3) = create(s, "kept", 4 * BS);
    let t4 = write(s, t3, keep, &[(0, block(2, 100))]).unwrap();
    s.gc(t2).unwrap();
    assert_eq!(s.stats().unwrap().block_versions, 1);
    assert_eq!(s.arrays(t4).unwrap().len(), 1);
    assert_eq!(load(s, keep, 0, t4)[0], 2);
    f.assert_no_leaked_payloads();
}

fn corrupt_block_is_detected(f: &Fixture) {
    let s = &*f.store;
    let (id, t0) = create(s, "precious", 4 * BS);
    let t1 = write(s, t0, id, &[(2, block(7, 1000))]).unwrap();
    // Flip one stored byte behind the store's back.
    let mut bad = block(7, 1000);
    bad[500] = 8;
    if f.backend == "sqlite" {
        // Uncompressed blocks live in the data file beside the database.
        let c = rusqlite::Connection::open(&f.url).unwrap();
        let off: i64 = c.query_row("SELECT ext_off FROM outcore_current WHERE blk = 2", [], |r| r.get(0)).unwrap();
        use std::os::unix::fs::FileExt;
        let data = std::fs::OpenOptions::new().write(true).open(format!("{}.blocks", f.url)).unwrap();
        data.write_all_at(&bad, off as u64).unwrap();
    } else {
        let mut c = ::postgres::Client::connect(&f.url, ::postgres::NoTls).unwrap();
        let sql = "UPDATE outcore_segment SET data = $1 WHERE blk = 2 AND seg = 0";
        assert_eq!(c.execute(sql, &[&bad]).unwrap(), 1);
    }
    let mut buf = vec![0u8; BS as usize];
    match f.reopen().load(id, 2, t1, &mut buf) {
        Err(e @ Error::Corrupt { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("block 2") && msg.contains("'precious'") && msg.contains(&format!("tid {t1}")),
                "{msg}"
            );
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

fn bad_requests_are_typed_errors(f: &Fixture) {
    let s = &*f.store;
    let (id, t0) = create(s, "a", 2 * BS);
    let mut m = meta(BS);
    m.blksize = 3000;
    let mut c = Commit::new();
    c.put_array(ArrayId::random(), "b", m);
    assert!(matches!(s.commit(t0, c), Err(Error::Invalid(msg)) if msg.contains("power of two")));
    assert!(matches!(write(s, t0, id, &[(0, vec![1; BS as usize + 1])]), Err(Error::Invalid(_))));
    assert!(matches!(write(s, t0, id, &[(2, vec![1; 10])]), Err(Error::Invalid(msg)) if msg.contains("beyond")));
    assert!(matches!(write(s, t0, ArrayId(12345), &[(0, vec![1])]), Err(Error::NoSuchArray(_))));
    assert!(matches!(write(s, t0 + 5, id, &[(0, vec![1])]), Err(Error::FutureTid { .. })));
    let mut c = Commit::new();
    c.put_array(id, "", meta(BS));
    assert!(matches!(s.commit(t0, c), Err(Error::Invalid(_))));
    let mut c = Commit::new();
    let mut m = meta(BS);
    m.blksize = 2 * BS;
    c.put_array(id, "a", m);
    assert!(matches!(s.commit(t0, c), Err(Error::Invalid(msg)) if msg.contains("cannot change")));
    assert_eq!(s.head().unwrap(), t0);
    assert!(matches!(s.arrays(t0 + 1), Err(Error::FutureTid { .. })));
}

fn subscription_sees_other_committers(f: &Fixture) {
    let mut sub = f.store.subscribe().unwrap();
    assert_eq!(sub.wait(Duration::from_millis(50)).unwrap(), None);
    let other = f.reopen();
    let t = other.commit(0, Commit::new()).unwrap();
    assert_eq!(sub.wait(Duration::from_secs(10)).unwrap(), Some(t));
    let t2 = other.commit(t, Commit::new()).unwrap();
    let t3 = other.commit(t2, Commit::new()).unwrap();
    let mut seen = sub.wait(Duration::from_secs(10)).unwrap().unwrap();
    if seen < t3 {
        seen = sub.wait(Duration::from_secs(10)).unwrap().unwrap();
    }
    assert_eq!(seen, t3);
}

fn commit_order_is_tid_order_under_concurrency(f: &Fixture) {
    let (id, _) = create(&*f.store, "a", 64 * BS);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let s = f.reopen();
            std::thread::spawn(move || {
                for i in 0..15u64 {
                    loop {
                        let head = s.head().unwrap();
                        match write(&*s, head, id, &[(w * 16 + i, vec![w as u8 + 1; 8])]) {
                            Ok(_) => break,
                            Err(Error::Conflict(_)) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            })
        })
        .collect();
    let reader = {
        let s = f.reopen();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut checks = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || checks == 0 {
                let head = s.head().unwrap();
                // A snapshot at `head` sees every commit up to it: no tid below head is missing.
                let h = s.history(0, head).unwrap();
                assert_eq!(h.len() as u64, head, "a commit below the head is not visible yet");
                assert!(h.iter().enumerate().all(|(i, t)| t.tid == i as u64 + 1));
                checks += 1;
            }
            checks
        })
    };
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    let s = &*f.store;
    let head = s.head().unwrap();
    assert_eq!(head, 1 + 60);
    for w in 0..4u64 {
        for i in 0..15u64 {
            assert_eq!(load(s, id, w * 16 + i, head)[0], w as u8 + 1);
        }
    }
}

fn parallel_loads(f: &Fixture) {
    let (id, t0) = create(&*f.store, "a", 32 * BS);
    let blocks: Vec<_> = (0..32u64).map(|b| (b, vec![b as u8 + 1; BS as usize])).collect();
    let t1 = write(&*f.store, t0, id, &blocks).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|k| {
            let s = f.store.clone();
            std::thread::spawn(move || {
                for r in 0..3 {
                    for b in 0..32u64 {
                        let b = (b + k * 8 + r) % 32;
                        assert_eq!(load(&*s, id, b, t1), vec![b as u8 + 1; BS as usize]);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

fn default_block_size_round_trip(f: &Fixture) {
    let s = &*f.store;
    let id = ArrayId::random();
    let m = ArrayMeta::new("<u1", vec![3 << 21], Order::C, 3 << 21);
    assert_eq!(m.blksize, 2 << 20);
    let mut c = Commit::new();
    c.put_array(id, "big", m);
    let data: Vec<u8> = (0..(2usize << 20)).map(|i| (i * 7 % 251) as u8).collect();
    c.write_block(id, 1, data.clone());
    let t = s.commit(0, c).unwrap();
    let mut buf = vec![1u8; 2 << 20];
    f.reopen().load(id, 1, t, &mut buf).unwrap();
    assert_eq!(buf, data);
    f.reopen().load(id, 2, t, &mut buf).unwrap();
    assert!(buf.iter().all(|b| *b == 0));
}

fn compression_is_recorded_per_version(f: &Fixture) {
    let s = &*f.store;
    let id = ArrayId::random();
    let mut m = meta(4 * BS);
    m.codec = Codec::Zstd { level: 5 };
    let mut c = Commit::new();
    c.put_array(id, "z", m.clone());
    let t0 = s.commit(0, c).unwrap();
    let text: Vec<u8> = b"outcore compresses repetitive blocks. ".iter().copied().cycle().take(BS as usize).collect();
    let t1 = write(s, t0, id, &[(0, text.clone())]).unwrap();
    assert!(s.stats().unwrap().stored_bytes < BS / 20, "{:?}", s.stats().unwrap());
    // Switch to lz4, then to none: older versions keep their codec and stay readable.
    for (i, codec) in [Codec::Lz4, Codec::None].into_iter().enumerate() {
        let mut m2 = m.clone();
        m2.codec = codec;
        let mut c = Commit::new();
        c.put_array(id, "z", m2);
        c.write_block(id, 1 + i as u64, text.clone());
        s.commit(s.head().unwrap(), c).unwrap();
    }
    let head = s.head().unwrap();
    let r = f.reopen();
    for blk in 0..3 {
        assert_eq!(load(&*r, id, blk, head), text, "block {blk}");
    }
    assert_eq!(load(&*r, id, 0, t1), text);
    assert_eq!(load(&*r, id, 1, t1), vec![0; BS as usize]);
    let st = r.stats().unwrap();
    assert!(st.stored_bytes > BS && st.stored_bytes < BS + BS / 4, "{st:?}");
    // Out-of-range levels are refused.
    let mut bad = meta(BS);
    bad.codec = Codec::Zstd { level: 99 };
    let mut c = Commit::new();
    c.put_array(ArrayId::random(), "bad", bad);
    assert!(matches!(s.commit(head, c), Err(Error::Invalid(msg)) if msg.contains("zstd level 99")));
}

fn block_sources_are_read_at_commit(f: &Fixture) {
    let s = &*f.store;
    let (id, t0) = create(s, "src", 3 * BS);
    let reads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut c = Commit::new();
    for blk in 0..3u64 {
        let reads = reads.clone();
        c.write_block_from(id, blk, move |buf: &mut Vec<u8>| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            buf.extend_from_slice(&block(blk as u8 + 1, 1000 * (blk as usize + 1)));
            Ok(())
        });
    }
    assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing is read before the commit");
    let t1 = s.commit(t0, c).unwrap();
    assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 3);
    let r = f.reopen();
    for blk in 0..3u64 {
        let mut want = block(blk as u8 + 1, 1000 * (blk as usize + 1));
        want.resize(BS as usize, 0);
        assert_eq!(load(&*r, id, blk, t1), want, "block {blk}");
    }
    // A failing source aborts the commit: nothing of it is written.
    let mut c = Commit::new();
    c.write_block(id, 0, block(9, 100));
    c.write_block_from(id, 1, |_: &mut Vec<u8>| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Err("the page cache is gone".into())
    });
    match s.commit(t1, c) {
        Err(e @ Error::BlockSource { blk: 1, .. }) => assert!(e.to_string().contains("page cache is gone"), "{e}"),
        other => panic!("expected BlockSource, got {other:?}"),
    }
    assert_eq!(s.head().unwrap(), t1);
    assert_eq!(load(s, id, 0, t1)[0], 1);
    // The same with page writes, which read nothing from the store while they are written
    // (a backend that gathers their rows drops them with the failed commit).
    let mut c = Commit::new();
    c.write_pages_from(id, 0, [0], |_: &[u32], buf: &mut [u8]| -> Result<(), BoxError> {
        buf[..4096].fill(9);
        Ok(())
    });
    c.write_pages_from(id, 1, [0], |_: &[u32], _: &mut [u8]| -> Result<(), BoxError> { Err("gone".into()) });
    assert!(matches!(s.commit(t1, c), Err(Error::BlockSource { blk: 1, .. })));
    assert_eq!(s.head().unwrap(), t1);
    // The next commit (on the same handle, so likely the same connection) carries nothing of
    // the failed ones: block 0 keeps its content.
    let mut c = Commit::new();
    c.write_block(id, 2, block(7, 100));
    let t2 = s.commit(t1, c).unwrap();
    assert_eq!(s.changes(t1, t2).unwrap().blocks, vec![(id, 2)], "only block 2 changed");
    assert_eq!(load(s, id, 0, t2), load(s, id, 0, t1), "block 0 after a commit that followed the failed one");
    assert_eq!(load(s, id, 2, t2)[0], 7);
    // A source longer than the block is refused like a buffer would be.
    let mut c = Commit::new();
    c.write_block_from(id, 2, |buf: &mut Vec<u8>| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        buf.resize(BS as usize + 1, 1);
        Ok(())
    });
    assert!(matches!(s.commit(t2, c), Err(Error::Invalid(_))));
    assert_eq!(s.head().unwrap(), t2);
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A page source that copies `pages` of `content`, counting its calls.
fn pages_of(content: Vec<u8>) -> impl FnMut(&[u32], &mut [u8]) -> Result<(), BoxError> + Send {
    move |pages: &[u32], buf: &mut [u8]| {
        for p in pages {
            let r = *p as usize * 4096..(*p as usize + 1) * 4096;
            buf[r.clone()].copy_from_slice(&content[r]);
        }
        Ok(())
    }
}

fn page_sources_write_only_their_pages(f: &Fixture) {
    let s = &*f.store;
    let (id, t0) = create(s, "pages", 2 * BS);
    let v1: Vec<u8> = (0..BS as usize).map(|i| (i % 251) as u8 + 1).collect();
    let t1 = write(s, t0, id, &[(0, v1.clone())]).unwrap();
    // The source's content differs from the stored one on pages 1, 3 and 7; only 1 and 3 are
    // named: the rest of the block comes from the store, page 7's change is not taken.
    let mut src = v1.clone();
    for p in [1usize, 3, 7] {
        src[p * 4096..(p + 1) * 4096].fill(p as u8);
    }
    let mut c = Commit::new();
    c.write_pages_from(id, 0, [3, 1, 1], pages_of(src.clone()));
    let t2 = s.commit(t1, c).unwrap();
    let mut want = v1.clone();
    for p in [1usize, 3] {
        want[p * 4096..(p + 1) * 4096].fill(p as u8);
    }
    assert_eq!(load(&*f.reopen(), id, 0, t2), want);
    assert_eq!(load(&*f.reopen(), id, 0, t1), v1, "history");
    // Named pages that did not change make no version.
    let before = s.stats().unwrap().block_versions;
    let mut c = Commit::new();
    c.write_pages_from(id, 0, [1, 2], pages_of(want.clone()));
    let t3 = s.commit(t2, c).unwrap();
    assert_eq!(s.stats().unwrap().block_versions, before);
    assert_eq!(s.changes(t2, t3).unwrap().blocks.len(), 0);
    // A page beyond the block, or a failing source, aborts the commit.
    let mut c = Commit::new();
    c.write_pages_from(id, 0, [(BS / 4096) as u32], pages_of(want.clone()));
    assert!(matches!(s.commit(t3, c), Err(Error::Invalid(_))));
    let mut c = Commit::new();
    c.write_pages_from(id, 1, [0], |_: &[u32], _: &mut [u8]| -> Result<(), BoxError> { Err("gone".into()) });
    assert!(matches!(s.commit(t3, c), Err(Error::BlockSource { blk: 1, .. })));
    assert_eq!(s.head().unwrap(), t3);
    // Shrunk then grown in the same commit: the stored content beyond the cut reads zeros, the
    // written page is taken.
    let mut c = Commit::new();
    c.put_array(id, "pages", meta(2 * BS));
    c.truncate(id, 4096 + 10);
    let mut src = vec![0u8; BS as usize];
    src[5 * 4096..6 * 4096].fill(0x55);
    c.write_pages_from(id, 0, [5], pages_of(src));
    let t4 = s.commit(t3, c).unwrap();
    let mut want4 = vec![0u8; BS as usize];
    want4[..4096 + 10].copy_from_slice(&want[..4096 + 10]);
    want4[5 * 4096..6 * 4096].fill(0x55);
    assert_eq!(load(&*f.reopen(), id, 0, t4), want4);
    // Pages of a block beyond the array's size: zeros are dropped, data is refused.
    let mut c = Commit::new();
    c.write_pages_from(id, 5, [0], pages_of(vec![0u8; BS as usize]));
    let t5 = s.commit(t4, c).unwrap();
    let mut c = Commit::new();
    c.write_pages_from(id, 5, [0], pages_of(vec![1u8; BS as usize]));
    assert!(matches!(s.commit(t5, c), Err(Error::Invalid(_))));
    f.assert_no_leaked_payloads();
}

/// A page source may write part of a page: the rest of it is the stored content, never bytes of
/// another block written in the same commit.
fn page_sources_see_the_stored_content(f: &Fixture) {
    let s = &*f.store;
    let (id, t0) = create(s, "partial", 3 * BS);
    let t1 = write(s, t0, id, &[(2, block(3, BS as usize))]).unwrap();
    let mut c = Commit::new();
    c.write_block_from(id, 0, |buf: &mut Vec<u8>| -> Result<(), BoxError> {
        buf.resize(BS as usize, 0xAA);
        Ok(())
    });
    for blk in [1u64, 2] {
        c.write_pages_from(id, blk, [0u32, 2], |_: &[u32], b: &mut [u8]| -> Result<(), BoxError> {
            b[..10].fill(7);
            b[2 * 4096 + 5] = 8;
            Ok(())
        });
    }
    let t2 = s.commit(t1, c).unwrap();
    let mut want1 = vec![0u8; BS as usize];
    want1[..10].fill(7);
    want1[2 * 4096 + 5] = 8;
    assert_eq!(load(&*f.reopen(), id, 1, t2), want1, "a block with no stored content");
    let mut want2 = block(3, BS as usize);
    want2[..10].fill(7);
    want2[2 * 4096 + 5] = 8;
    assert_eq!(load(&*f.reopen(), id, 2, t2), want2, "a stored block");
}
