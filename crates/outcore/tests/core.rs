//! Behaviour of databases, connections and arrays on every backend: persistence, abort,
//! isolation, conflicts, resize/append, time travel and bad input.

mod common;

use common::{Fixture, BS};
use outcore::{ArraySpec, CommitInfo, Connection, Error, Order};

/// 100 x 50 float64 = 40,000 bytes: three 16 KiB blocks.
fn spec() -> ArraySpec {
    ArraySpec::of::<f64>([100, 50])
}

fn value(i: usize, j: usize) -> f64 {
    (i * 1000 + j) as f64
}

/// Creates and commits array `a` filled with `value`.
fn committed(conn: &Connection) {
    let a = conn.create("a", spec()).expect("create");
    let mut g = a.as_array_view_mut::<f64>().expect("view");
    g.view_mut().indexed_iter_mut().for_each(|(ix, v)| *v = value(ix[0], ix[1]));
    conn.commit().expect("commit");
}

/// Two connections to the committed array "a": one of `f.db`, one of a second `Db` of the
/// same store; each has filled one row of "a" (`rows.0` with 1.0, `rows.1` with 2.0).
fn two_writers(f: &Fixture, rows: (u64, u64)) -> (Connection, Connection) {
    let conn1 = f.db.connect().expect("connect");
    committed(&conn1);
    let conn2 = f.reopen().connect().expect("connect 2");
    for (conn, row, v) in [(&conn1, rows.0, 1.0), (&conn2, rows.1, 2.0)] {
        let a = conn.open("a").expect("open");
        a.slice_view_mut::<f64>(&[row..row + 1, 0..50]).expect("view").view_mut().fill(v);
    }
    (conn1, conn2)
}

fn get(conn: &Connection, name: &str, i: u64, j: u64) -> f64 {
    let g = conn.open(name).expect("open").slice_view::<f64>(&[i..i + 1, j..j + 1]).expect("slice");
    let v = g.view()[[0, 0]];
    v
}

fn create_write_commit_reopen(f: &Fixture) {
    let conn = f.db.connect().expect("connect");
    committed(&conn);
    let b =
        conn.create("b", ArraySpec::of::<i32>([3, 5000]).order(Order::F).codec(outcore::Codec::Lz4)).expect("create b");
    assert_eq!(b.strides().expect("strides"), vec![4, 12]);
    b.as_array_view_mut::<i32>().expect("view").view_mut()[[2, 4999]] = -7;
    let tid = conn.commit_with(CommitInfo::new("fill b").user("tester")).expect("commit");
    drop(conn);

    let db = f.reopen();
    let conn = db.connect().expect("connect");
    assert_eq!(conn.tid(), tid);
    assert_eq!(conn.list().expect("list"), vec!["a", "b"]);
    let a = conn.open("a").expect("open a");
    assert_eq!(a.shape().expect("shape"), vec![100, 50]);
    assert_eq!(a.dtype().expect("dtype"), "<f8");
    assert_eq!(a.itemsize().expect("itemsize"), 8);
    assert_eq!(a.blksize().expect("blksize"), BS);
    assert_eq!(a.strides().expect("strides"), vec![400, 8]);
    let g = a.as_array_view::<f64>().expect("view");
    assert!(g.view().indexed_iter().all(|(ix, v)| *v == value(ix[0], ix[1])), "{}", f.backend);
    let b = conn.open("b").expect("open b");
    assert_eq!(b.order().expect("order"), Order::F);
    assert_eq!(b.meta().expect("meta").codec, outcore::Codec::Lz4);
    b.prefetch(0..b.nbytes().expect("nbytes")).expect("prefetch");
    assert!(matches!(b.prefetch(0..1 << 40), Err(Error::OutOfRange(_))));
    let g = b.as_array_view::<i32>().expect("view");
    assert_eq!(g.view()[[2, 4999]], -7);
    assert_eq!(g.view()[[1, 4999]], 0);
    let h = db.store().history(0, tid).expect("history");
    assert_eq!((h[1].description.as_str(), h[1].user.as_str()), ("fill b", "tester"));
}

fn nothing_loads_until_touched(f: &Fixture) {
    committed(&f.db.connect().expect("connect"));
    let db = f.reopen_with_budget(1 << 30); // its own pager, so its counters are ours
    let conn = db.connect().expect("connect");
    let a = conn.open("a").expect("open");
    let g = a.as_array_view::<f64>().expect("view");
    assert_eq!(db.pager().stats().loads, 0);
    assert_eq!(g.view()[[99, 49]], value(99, 49)); // the last of three blocks
    let loads = db.pager().stats().loads;
    if a.engine().expect("engine") == outcore::pager::FileEngine::PageCache {
        assert_eq!(loads, 0, "the kernel reads mapped extents; the pager loads nothing");
    } else {
        assert!((1..=2).contains(&loads), "{loads} loads");
    }
}

fn abort_reverts_data_and_metadata(f: &Fixture) {
    let conn = f.db.connect().expect("connect");
    committed(&conn);
    conn.create("gone", ArraySpec::of::<u8>([10])).expect("create");
    conn.commit().expect("commit");

    let a = conn.open("a").expect("open");
    let mut g = a.as_array_view_mut::<f64>().expect("view");
    g.view_mut().fill(-1.0);
    a.resize(&[10, 50]).expect("shrink");
    a.resize(&[300, 50]).expect("grow");
    a.append(&[1.0f64; 50]).expect("append");
    let c = conn.create("c", ArraySpec::of::<u8>([10])).expect("create c");
    conn.delete("gone").expect("delete");
    conn.rename("a", "renamed").expect("rename");
    assert_eq!(conn.list().expect("list"), vec!["c", "renamed"]);
    conn.abort().expect("abort");

    assert_eq!(conn.list().expect("list"), vec!["a", "gone"]);
    assert_eq!(a.shape().expect("shape"), vec![100, 50]);
    assert_eq!(a.name().expect("name"), "a");
    // The view taken before stays valid and shows the committed data again.
    assert!(g.view().indexed_iter().all(|(ix, v)| *v == value(ix[0], ix[1])));
    assert!(matches!(c.shape(), Err(Error::ArrayGone(_))));
    assert!(matches!(conn.open("c"), Err(Error::NoSuchArray(_))));
    assert_eq!(conn.open("gone").expect("back").shape().expect("shape"), vec![10]);
}

fn isolation_between_connections(f: &Fixture) {
    let conn1 = f.db.connect().expect("connect");
    committed(&conn1);
    // conn2 in a Db whose cache holds one block: what it read is evicted again.
    let db2 = f.reopen_with_budget(BS);
    let conn2 = db2.connect().expect("connect 2");
    let a2 = conn2.open("a").expect("open");
    let g2 = a2.as_array_view::<f64>().expect("view");
    assert_eq!(g2.view()[[99, 49]], value(99, 49));

    let a1 = conn1.open("a").expect("open");
    a1.as_array_view_mut::<f64>().expect("view").view_mut().fill(5.0);
    a1.append(&[6.0f64; 50]).expect("append");
    conn1.commit().expect("commit");

    assert!(g2.view().indexed_iter().all(|(ix, v)| *v == value(ix[0], ix[1])), "{}", f.backend);
    assert_eq!(a2.shape().expect("shape"), vec![100, 50]);
    if a2.engine().expect("engine") == outcore::pager::FileEngine::Userfaultfd {
        assert!(db2.pager().stats().evictions > 0);
    }
    conn2.sync().expect("sync");
    assert!(g2.view().iter().all(|v| *v == 5.0));
    assert_eq!(a2.shape().expect("shape"), vec![101, 50]);
    assert_eq!(get(&conn2, "a", 100, 7), 6.0);
}

fn conflict_same_block_then_abort(f: &Fixture) {
    let (conn1, conn2) = two_writers(f, (0, 1));
    let t1 = conn1.commit().expect("commit 1");
    let e = conn2.commit().expect_err("conflict");
    let msg = e.to_string();
    assert!(e.is_conflict() && msg.contains("block 0 of array 'a'"), "{msg}");
    assert!(matches!(conn2.open("a"), Err(Error::NeedsAbort)));
    assert_eq!(f.db.head().expect("head"), t1, "nothing of the loser is stored");
    conn2.abort().expect("abort");
    assert_eq!(conn2.tid(), t1);
    assert_eq!(get(&conn2, "a", 0, 3), 1.0);
    assert_eq!(get(&conn2, "a", 1, 3), value(1, 3));

    // Concurrent appends of one array conflict too.
    conn1.open("a").expect("open").append(&[0.0f64; 50]).expect("append 1");
    conn2.open("a").expect("open").append(&[0.0f64; 100]).expect("append 2");
    conn1.commit().expect("commit 1");
    assert!(conn2.commit().expect_err("conflict").is_conflict());
    conn2.abort().expect("abort");
    assert_eq!(conn2.open("a").expect("open").shape().expect("shape"), vec![101, 50]);
}

fn different_blocks_both_commit(f: &Fixture) {
    // Row 0 is in block 0, row 99 in block 2.
    let (conn1, conn2) = two_writers(f, (0, 99));
    conn1.commit().expect("commit 1");
    conn2.commit().expect("commit 2");
    for conn in [&conn1, &conn2, &f.reopen().connect().expect("connect 3")] {
        conn.sync().expect("sync");
        assert_eq!(get(conn, "a", 0, 0), 1.0);
        assert_eq!(get(conn, "a", 99, 49), 2.0);
        assert_eq!(get(conn, "a", 50, 5), value(50, 5));
    }
}

fn shrink_then_grow_reads_zeros(f: &Fixture) {
    let conn = f.db.connect().expect("connect");
    committed(&conn);
    let a = conn.open("a").expect("open");
    a.resize(&[30, 50]).expect("shrink"); // 12,000 bytes: inside block 0
    a.resize(&[100, 50]).expect("grow");
    let check = |conn: &Connection| {
        let g = conn.open("a").expect("open").as_array_view::<f64>().expect("view");
        assert!(g.view().indexed_iter().all(|(ix, v)| *v == if ix[0] < 30 { value(ix[0], ix[1]) } else { 0.0 }));
    };
    check(&conn);
    conn.commit().expect("commit");
    check(&conn);
    check(&f.reopen().connect().expect("connect"));

    // Shrink and grow again, then abort: the data comes back.
    a.resize(&[1, 50]).expect("shrink");
    a.resize(&[100, 50]).expect("grow");
    assert_eq!(get(&conn, "a", 20, 1), 0.0);
    conn.abort().expect("abort");
    check(&conn);
}

fn append_along_major_axis(f: &Fixture) {
    let conn = f.db.connect().expect("connect");
    let c = conn.create("c", ArraySpec::of::<f32>([0, 3])).expect("create");
    let fo = conn.create("f", ArraySpec::of::<u16>([2, 0]).order(Order::F)).expect("create");
    for k in 0..5000u32 {
        c.append(&[k as f32, 0.5, -(k as f32)]).expect("append");
    }
    fo.append(&[1u16, 2, 3, 4]).expect("append");
    let e = c.append(&[1.0f32, 2.0]).expect_err("partial row");
    assert!(matches!(e, Error::Shape(_)), "{e}");
    assert!(matches!(c.append(&[1.0f64; 3]), Err(Error::Dtype(_))));
    let huge = conn.create("huge", ArraySpec::of::<u8>([0, 1 << 40, 1 << 40])).expect("empty but wide");
    assert!(matches!(huge.append(&[1u8]), Err(Error::Shape(_))));
    conn.commit().expect("commit");

    let conn = f.reopen().connect().expect("connect");
    let c = conn.open("c").expect("open");
    assert_eq!(c.shape().expect("shape"), vec![5000, 3]);
    let g = c.as_array_view::<f32>().expect("view");
    assert_eq!(g.view()[[4321, 2]], -4321.0);
    let fo = conn.open("f").expect("open");
    assert_eq!(fo.shape().expect("shape"), vec![2, 2]);
    let g = fo.as_array_view::<u16>().expect("view");
    assert_eq!((g.view()[[0, 1]], g.view()[[1, 1]], g.view()[[1, 0]]), (3, 4, 2));
}

fn bad_input_errors(f: &Fixture) {
    let conn = f.db.connect().expect("connect");
    committed(&conn);
    let a = conn.open("a").expect("open");
    let msg = |e: Error| e.to_string();
    assert!(matches!(conn.create("a", spec()), Err(Error::AlreadyExists(n)) if n == "a"));
    assert!(msg(conn.open("nope").expect_err("unknown")).contains("'nope'"));
    assert!(matches!(conn.delete("nope"), Err(Error::NoSuchArray(_))));
    assert!(matches!(conn.create("big", ArraySpec::of::<f64>([u64::MAX, 2])), Err(Error::Shape(_))));
    assert!(matches!(conn.create("d", ArraySpec::new("<f8", 4, [3])), Err(Error::Dtype(_))));
    assert!(matches!(conn.create("o", ArraySpec::new("|O", 8, [3])), Err(Error::Dtype(_))));
    assert!(matches!(conn.create("s", spec().blksize(1000)), Err(Error::InvalidArgument(_))));
    assert!(matches!(conn.create("", spec()), Err(Error::InvalidArgument(_))));
    assert!(matches!(a.as_array_view::<f32>(), Err(Error::Dtype(_))));
    let e = a.slice_view::<f64>(&[0..101, 0..50]).expect_err("out of range");
    assert!(matches!(e, Error::OutOfRange(_)) && msg(e).contains("0..101"));
    assert!(matches!(a.bytes(0..40_001), Err(Error::OutOfRange(_))));
    assert!(matches!(a.resize(&[u64::MAX / 4, 4]), Err(Error::Shape(_))));
    assert!(matches!(f.db.connect_at(1000), Err(Error::Store(_))));
    assert_eq!(conn.list().expect("list"), vec!["a"]);
}

fn time_travel(f: &Fixture) {
    let conn = f.db.connect().expect("connect");
    committed(&conn);
    let t1 = conn.tid();
    conn.open("a").expect("open").as_array_view_mut::<f64>().expect("view").view_mut().fill(9.0);
    conn.open("a").expect("open").resize(&[200, 50]).expect("grow");
    conn.commit().expect("commit");

    let old = f.db.connect_at(t1).expect("historical");
    assert!(old.is_read_only());
    let a = old.open("a").expect("open");
    assert_eq!(a.shape().expect("shape"), vec![100, 50]);
    assert_eq!(get(&old, "a", 7, 7), value(7, 7));
    assert!(matches!(a.as_array_view_mut::<f64>(), Err(Error::ReadOnly { .. })));
    assert!(matches!(a.resize(&[1, 1]), Err(Error::ReadOnly { .. })));
    assert!(matches!(old.create("x", spec()), Err(Error::ReadOnly { .. })));
    assert!(matches!(old.commit(), Err(Error::ReadOnly { .. })));
    assert_eq!(get(&conn, "a", 7, 7), 9.0);

    // By time: the snapshot that was newest when the first commit's record was written.
    let h = f.db.store().history(0, t1).expect("history");
    let at_time = f.db.connect_at_time(h[h.len() - 1].time()).expect("at time");
    assert_eq!(at_time.tid(), t1);
    assert_eq!(get(&at_time, "a", 7, 7), value(7, 7));

    // A historical array opened before gc passes its snapshot: loads fail with the cause, never zeros.
    let old_conn = f.db.connect_at(t1).expect("historical");
    let old_a = old_conn.open("a").expect("open");
    f.db.store().gc(conn.tid()).expect("gc");
    assert!(f.db.connect_at(t1).is_err());
    let e = old_a.prefetch(0..8).expect_err("snapshot gone");
    // The store's error itself (a snapshot error), not a pager failure.
    assert!(
        matches!(e, Error::Store(outcore::store::Error::SnapshotGone { .. }))
            && e.to_string().contains("garbage collected"),
        "{e}"
    );
}

fn strided_slice_views(f: &Fixture) {
    let conn = f.db.connect().expect("connect");
    committed(&conn);
    let a = conn.open("a").expect("open");
    let g = a.slice_view::<f64>(&[10..20, 5..7]).expect("slice");
    let v = g.view();
    assert_eq!((v.shape(), v.strides()), (&[10usize, 2][..], &[50isize, 1][..]));
    assert_eq!(v[[0, 0]], value(10, 5));
    assert_eq!(v[[9, 1]], value(19, 6));
    let empty = a.slice_view::<f64>(&[3..3, 0..50]).expect("empty slice");
    assert_eq!(empty.view().shape(), &[0usize, 50][..]);
    let old = f.db.connect_at(conn.tid()).expect("historical");
    let e = old.open("a").expect("open").slice_view_mut::<f64>(&[]).expect_err("read-only");
    assert!(matches!(e, Error::ReadOnly { historical: true, .. }), "{e}");
}

fn writes_beyond_the_size_through_old_views(f: &Fixture) {
    //! A view taken before a shrink (or a delete) still maps the old extent; what is written
    //! there lies beyond the array and must neither be committed nor break the commit.
    let conn = f.db.connect().expect("connect");
    committed(&conn);
    let a = conn.open("a").expect("open");
    let mut g = a.as_array_view_mut::<f64>().expect("view");
    a.resize(&[10, 50]).expect("shrink");
    g.view_mut()[[99, 0]] = 5.0;
    conn.commit().expect("commit");
    assert_eq!(g.view()[[99, 0]], 0.0, "beyond the size reads zeros again");
    a.resize(&[100, 50]).expect("grow");
    conn.commit().expect("commit");
    assert_eq!(get(&f.reopen().connect().expect("connect"), "a", 99, 0), 0.0);

    conn.delete("a").expect("delete");
    g.view_mut()[[0, 0]] = 5.0;
    conn.commit().expect("commit");
    assert!(matches!(a.shape(), Err(Error::ArrayGone(_))));
    assert!(conn.list().expect("list").is_empty());
}

fn commits_are_announced(f: &Fixture) {
    let conn = f.db.connect().expect("connect");
    let short = std::time::Duration::from_millis(50);
    assert_eq!(conn.wait_for_commit(short).expect("wait"), None);
    let url = f.url.clone();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let db = outcore::Db::open(&url, common::options()).expect("open");
        let c = db.connect().expect("connect");
        c.create("n", ArraySpec::of::<u8>([1])).expect("create");
        c.commit().expect("commit")
    });
    let got = conn.wait_for_commit(std::time::Duration::from_secs(20)).expect("wait");
    let tid = writer.join().expect("writer");
    assert_eq!(got, Some(tid));
    assert_eq!(conn.sync().expect("sync"), tid);
    assert_eq!(conn.list().expect("list"), vec!["n"]);
}

fn namespace_changes_by_others(f: &Fixture) {
    let conn1 = f.db.connect().expect("connect");
    committed(&conn1);
    conn1.create("b", ArraySpec::of::<u8>([4])).expect("create");
    conn1.commit().expect("commit");
    let conn2 = f.reopen().connect().expect("connect 2");
    let a2 = conn2.open("a").expect("open a");
    let b2 = conn2.open("b").expect("open b");
    let g = a2.as_array_view::<f64>().expect("view");

    conn1.rename("a", "z").expect("rename");
    conn1.delete("b").expect("delete");
    let b1 = conn1.create("b", ArraySpec::of::<u8>([8])).expect("create new b");
    b1.bytes_mut(0..8).expect("bytes").as_mut_slice().fill(3);
    conn1.commit().expect("commit");

    // conn2 still sees its snapshot until its boundary.
    assert_eq!(conn2.list().expect("list"), vec!["a", "b"]);
    assert_eq!(b2.shape().expect("shape"), vec![4]);
    conn2.sync().expect("sync");
    assert_eq!(conn2.list().expect("list"), vec!["b", "z"]);
    assert_eq!(a2.name().expect("name"), "z");
    assert_eq!(g.view()[[3, 4]], value(3, 4));
    assert!(matches!(b2.shape(), Err(Error::ArrayGone(_))));
    assert!(matches!(conn2.open("a"), Err(Error::NoSuchArray(_))));
    let nb = conn2.open("b").expect("new b");
    assert_ne!(nb.id(), b2.id());
    assert_eq!(nb.bytes(0..8).expect("bytes").as_slice(), &[3u8; 8]);

    // A name freed and taken in one transaction; two transactions creating one name conflict.
    conn2.rename("z", "y").expect("rename");
    conn2.create("z", ArraySpec::of::<u8>([1])).expect("create z");
    conn1.create("w", ArraySpec::of::<u8>([1])).expect("create w");
    conn2.create("w", ArraySpec::of::<u8>([2])).expect("create w");
    conn1.commit().expect("commit 1");
    let e = conn2.commit().expect_err("name conflict");
    assert!(e.is_conflict() && e.to_string().contains("'w'"), "{e}");
    conn2.abort().expect("abort");
    assert_eq!(conn2.list().expect("list"), vec!["b", "w", "z"]);
    assert_eq!(conn2.open("w").expect("w").shape().expect("shape"), vec![1]);
}

backends!(
    nothing_loads_until_touched,
    namespace_changes_by_others,
    commits_are_announced,
    strided_slice_views,
    writes_beyond_the_size_through_old_views,
    writes_beyond_own_size_stay_dropped_after_a_foreign_grow,
    small_writes_store_only_their_pages,
    savepoints_roll_back_data_and_metadata,
    create_write_commit_reopen,
    abort_reverts_data_and_metadata,
    isolation_between_connections,
    conflict_same_block_then_abort,
    different_blocks_both_commit,
    shrink_then_grow_reads_zeros,
    append_along_major_axis,
    bad_input_errors,
    time_travel,
);

fn small_writes_store_only_their_pages(f: &Fixture) {
    // A 2 MiB-block array filled and committed, then one element changed per commit: each
    // commit stores about one 4 KiB page of history, not the 2 MiB block (plus, on SQLite, the
    // new page as a pending patch until a later commit merges it).
    let conn = f.db.connect().expect("connect");
    let a = conn.create("big", ArraySpec::of::<u64>([1 << 20]).blksize(2 << 20)).expect("create");
    a.as_array_view_mut::<u64>().expect("view").view_mut().iter_mut().enumerate().for_each(|(i, v)| *v = i as u64 + 1);
    conn.commit().expect("commit");
    let store = f.db.store().clone();
    let before = store.stats().expect("stats").stored_bytes;
    for k in 0..10u64 {
        a.as_array_view_mut::<u64>().expect("view").view_mut()[(k * 99_991) as usize] = 0;
        conn.commit().expect("commit");
    }
    let grown = store.stats().expect("stats").stored_bytes - before;
    assert!(grown <= 10 * 2 * (4096 + 64), "10 one-element commits stored {grown} bytes");
    // And the data reads back right in a fresh connection.
    let other = f.db.connect().expect("connect");
    let g = other.open("big").expect("open").as_array_view::<u64>().expect("view");
    for k in 0..10u64 {
        assert_eq!(g.view()[(k * 99_991) as usize], 0);
        assert_eq!(g.view()[(k * 99_991 + 1) as usize], k * 99_991 + 2);
    }
}

fn savepoints_roll_back_data_and_metadata(f: &Fixture) {
    let conn = f.db.connect().expect("connect");
    committed(&conn); // "a": 100 x 50 float64 over three 16 KiB blocks, value(i, j)
    conn.create("b", ArraySpec::of::<u8>([10])).expect("create b");
    conn.commit().expect("commit");
    let a = conn.open("a").expect("open");
    let set = |i: usize, v: f64| a.as_array_view_mut::<f64>().expect("view").view_mut()[[i, 0]] = v;
    set(0, -1.0); // block 0 dirty before the savepoint
    let sp = conn.savepoint().expect("savepoint");
    set(0, -2.0); // changed again
    set(99, -3.0); // block 2: first written after the savepoint
    a.resize(&[150, 50]).expect("grow");
    a.append(&[5.0f64; 50]).expect("append");
    conn.create("tmp", ArraySpec::of::<u8>([1])).expect("create tmp");
    conn.delete("b").expect("delete b");
    conn.rename("a", "renamed").expect("rename");
    sp.rollback().expect("rollback");
    assert_eq!(conn.list().expect("list"), vec!["a", "b"]);
    assert_eq!(a.shape().expect("shape"), vec![100, 50]);
    assert_eq!(get(&conn, "a", 0, 0), -1.0, "block dirty at the savepoint gets its content back");
    assert_eq!(get(&conn, "a", 99, 0), value(99, 0), "block written after it reverts");
    // Shrink after the savepoint, roll back: the data comes back.
    a.resize(&[10, 50]).expect("shrink");
    sp.rollback().expect("second rollback");
    assert_eq!(get(&conn, "a", 99, 1), value(99, 1));
    assert_eq!(get(&conn, "a", 0, 0), -1.0);
    conn.commit().expect("commit");
    let other = f.db.connect().expect("connect");
    assert_eq!(get(&other, "a", 0, 0), -1.0);
    assert_eq!(get(&other, "a", 99, 0), value(99, 0));
    assert_eq!(other.open("a").expect("a").shape().expect("shape"), vec![100, 50]);
    // The transaction ended: the savepoint is refused.
    assert!(matches!(sp.rollback(), Err(Error::InvalidArgument(_))));
}

#[test]
fn handles_move_between_threads() {
    fn send<T: Send>() {}
    send::<outcore::Db>();
    send::<Connection>();
    send::<outcore::Array>();
    send::<outcore::ArrayGuard<f64>>();
    send::<outcore::ArrayGuardMut<f64>>();
    send::<outcore::BytesViewMut>();

    let f = common::sqlite();
    let conn = f.db.connect().expect("connect");
    committed(&conn);
    let a = conn.open("a").expect("open");
    let mut g = a.as_array_view_mut::<f64>().expect("view");
    let (conn, a) = std::thread::spawn(move || {
        g.view_mut()[[5, 5]] = -5.0;
        conn.commit().expect("commit in another thread");
        (conn, a)
    })
    .join()
    .expect("thread");
    assert_eq!(get(&conn, "a", 5, 5), -5.0);
    assert_eq!(a.shape().expect("shape"), vec![100, 50]);
    // Handles outlive their connection only to report that it is gone.
    a.as_array_view_mut::<f64>().expect("view").view_mut()[[6, 6]] = -6.0;
    drop(conn);
    assert!(matches!(a.shape(), Err(Error::Closed)));
    assert!(matches!(a.append(&[0.0f64; 50]), Err(Error::Closed)));
    assert_eq!(get(&f.db.connect().expect("connect"), "a", 6, 6), value(6, 6));
}

/// Bytes written beyond a connection's size (through a view older than another connection's
/// shrink) are not committed, even when a third connection has grown the array since.
fn writes_beyond_own_size_stay_dropped_after_a_foreign_grow(f: &Fixture) {
    let c0 = f.db.connect().unwrap();
    let a0 = c0.create("a", ArraySpec::of::<f64>([100, 50])).unwrap();
    a0.as_array_view_mut::<f64>().unwrap().view_mut().fill(1.0);
    c0.commit().unwrap();

    let ca = f.db.connect().unwrap();
    let a = ca.open("a").unwrap();
    let mut g = a.as_array_view_mut::<f64>().unwrap();
    assert_eq!(g.view()[[95, 0]], 1.0);
    // C shrinks to 90 rows; A moves to that state and keeps its old, longer view.
    let cc = f.db.connect().unwrap();
    cc.open("a").unwrap().resize(&[90, 50]).unwrap();
    cc.commit().unwrap();
    ca.sync().unwrap();
    assert_eq!(a.shape().unwrap(), vec![90, 50]);
    // A writes beyond its size through the old view (row 95), and within it (row 89, whose end
    // shares a page with row 90).
    g.view_mut()[[95, 0]] = 5.0;
    g.view_mut()[[89, 49]] = 2.0;
    g.view_mut()[[90, 0]] = 3.0;
    // B grows back to 100 rows (zeros beyond 90 rows) and writes no block.
    let cb = f.db.connect().unwrap();
    cb.open("a").unwrap().resize(&[100, 50]).unwrap();
    cb.commit().unwrap();

    ca.commit().expect("A commits");
    let fresh = f.reopen().connect().unwrap();
    let v = fresh.open("a").unwrap().as_array_view::<f64>().unwrap();
    assert_eq!(v.view()[[89, 49]], 2.0);
    assert_eq!(v.view()[[90, 0]], 0.0, "a write beyond the writer's size was committed");
    assert_eq!(v.view()[[95, 0]], 0.0, "a write beyond the writer's size was committed");
}
