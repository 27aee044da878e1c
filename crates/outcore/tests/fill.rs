//! Non-zero fill values (issue 16): elements never written read as the fill value everywhere
//! (views, other connections, history, growth, truncate-then-grow), and cost no storage.

mod common;

use common::{Fixture, BS};
use outcore::{Array, ArraySpec, Codec, Error};
use outcore_pager::FileEngine;

const NAN: u64 = 0x7ff8_0000_0000_0000;
/// Elements per block of the tests' block size.
const PER: u64 = BS / 8;

/// The bit patterns of an f64 array's elements (NaN compares by its bits).
fn bits(a: &Array) -> Vec<u64> {
    a.as_array_view::<f64>().expect("view").view().iter().map(|v| v.to_bits()).collect()
}

fn set(a: &Array, i: usize, v: f64) {
    a.as_array_view_mut::<f64>().expect("view").view_mut()[[i]] = v;
}

fn nan_spec(n: u64) -> ArraySpec {
    ArraySpec::of::<f64>([n]).fill(f64::NAN.to_le_bytes().to_vec())
}

/// What the array should read: NaN except at `set`.
fn expect(n: u64, set: &[(u64, f64)]) -> Vec<u64> {
    let mut v = vec![NAN; n as usize];
    for (i, x) in set {
        v[*i as usize] = x.to_bits();
    }
    v
}

fn fill_values_read_everywhere(f: &Fixture, codec: Codec) {
    let conn = f.db.connect().expect("connect");
    let n = 2 * PER + 100;
    let a = conn.create("n", nan_spec(n).codec(codec)).expect("create");
    assert_eq!(a.fill().expect("fill"), Some(f64::NAN.to_le_bytes().to_vec()));
    assert_eq!(a.engine().expect("engine"), FileEngine::Userfaultfd);
    assert_eq!(bits(&a), expect(n, &[]));
    // Zeros written by the user are zeros (also a whole zero tail of a block), not fill.
    set(&a, 3, 1.0);
    set(&a, 5, 0.0);
    {
        let mut v = a.as_array_view_mut::<f64>().expect("view");
        for i in PER..2 * PER {
            v.view_mut()[[i as usize]] = 0.0;
        }
    }
    let mut want = expect(n, &[(3, 1.0), (5, 0.0)]);
    for i in PER..2 * PER {
        want[i as usize] = 0;
    }
    assert_eq!(bits(&a), want);
    let t1 = conn.commit().expect("commit");
    assert_eq!(bits(&a), want);
    let other = f.reopen().connect().expect("connect");
    assert_eq!(bits(&other.open("n").expect("open")), want);

    // Growth: the elements past the old size read as fill, also in the last stored block.
    a.resize(&[n + PER]).expect("grow");
    want.extend(std::iter::repeat_n(NAN, PER as usize));
    assert_eq!(bits(&a), want);
    a.append(&[7.0, 0.0]).expect("append");
    want.extend([7f64.to_bits(), 0]);
    assert_eq!(bits(&a), want);
    let t2 = conn.commit().expect("commit");
    assert_eq!(bits(&f.reopen().connect().expect("connect").open("n").expect("open")), want);

    // Truncate then grow in one transaction: what was cut reads as fill again.
    a.resize(&[4]).expect("shrink");
    a.resize(&[PER + 10]).expect("grow");
    let mut cut = expect(PER + 10, &[(3, 1.0)]);
    assert_eq!(bits(&a), cut);
    conn.commit().expect("commit");
    assert_eq!(bits(&f.reopen().connect().expect("connect").open("n").expect("open")), cut);
    // The same across commits: shrink, commit, grow.
    a.resize(&[2]).expect("shrink");
    conn.commit().expect("commit");
    a.resize(&[PER + 10]).expect("grow");
    cut[3] = NAN;
    assert_eq!(bits(&a), cut);
    conn.commit().expect("commit");
    assert_eq!(bits(&f.reopen().connect().expect("connect").open("n").expect("open")), cut);

    // History reads what each snapshot held.
    let h1 = f.db.connect_at(t1).expect("at t1");
    let mut old = expect(n, &[(3, 1.0), (5, 0.0)]);
    for i in PER..2 * PER {
        old[i as usize] = 0;
    }
    assert_eq!(bits(&h1.open("n").expect("open")), old);
    assert_eq!(bits(&f.db.connect_at(t2).expect("at t2").open("n").expect("open")), want);

    // Abort drops written pages and growth.
    set(&a, 0, 9.0);
    a.resize(&[3 * PER]).expect("grow");
    conn.abort().expect("abort");
    assert_eq!(bits(&a), cut);
}

fn nan_fill_arrays(f: &Fixture) {
    fill_values_read_everywhere(f, Codec::None);
}

fn nan_fill_compressed_arrays(f: &Fixture) {
    fill_values_read_everywhere(f, Codec::Zstd { level: 1 });
}

/// Integer and structured fills, with items that do not divide the block size.
fn fill_values_of_any_dtype(f: &Fixture) {
    let conn = f.db.connect().expect("connect");
    let i = conn.create("i", ArraySpec::of::<i32>([5, 3000]).fill((-1i32).to_le_bytes().to_vec())).expect("create");
    assert!(i.as_array_view::<i32>().expect("view").view().iter().all(|v| *v == -1));
    // A 3-byte structured item: the pattern keeps its phase across blocks.
    let s = conn
        .create("s", ArraySpec::new("[('a', 'u1'), ('b', '<i2')]", 3, [2 * BS / 3 + 5]).fill(vec![1, 2, 3]))
        .expect("create");
    let check = |a: &Array, written: &[(usize, u8)]| {
        let len = a.nbytes().expect("nbytes");
        let bytes = a.bytes(0..len).expect("bytes");
        for (o, b) in bytes.as_slice().iter().enumerate() {
            let want = written.iter().find(|(at, _)| *at == o).map_or([1, 2, 3][o % 3], |(_, v)| *v);
            assert_eq!(*b, want, "byte {o}");
        }
    };
    check(&s, &[]);
    let at = BS as usize + 1;
    s.bytes_mut(at as u64..at as u64 + 2).expect("bytes").as_mut_slice().copy_from_slice(&[0, 0]);
    conn.commit().expect("commit");
    let other = f.reopen().connect().expect("connect");
    check(&other.open("s").expect("open"), &[(at, 0), (at + 1, 0)]);
    assert!(other.open("i").expect("open").as_array_view::<i32>().expect("view").view().iter().all(|v| *v == -1));
    // Zero fills are zeros as before (the page-cache engine, no fill recorded).
    let z = conn.create("z", ArraySpec::of::<f64>([4]).fill(vec![0; 8])).expect("zero fill");
    assert_eq!(z.fill().expect("fill"), None);
    assert!(matches!(conn.create("w", ArraySpec::of::<f64>([4]).fill(vec![1; 3])), Err(Error::InvalidArgument(_))));
}

/// A savepoint rolled back restores written blocks and fill beyond a shrink.
fn fill_values_and_savepoints(f: &Fixture) {
    let conn = f.db.connect().expect("connect");
    let a = conn.create("n", nan_spec(PER + 8)).expect("create");
    conn.commit().expect("commit");
    set(&a, 1, 2.0);
    let sp = conn.savepoint().expect("savepoint");
    set(&a, 2, 3.0);
    a.resize(&[1]).expect("shrink");
    sp.rollback().expect("rollback");
    assert_eq!(bits(&a), expect(PER + 8, &[(1, 2.0)]));
    conn.commit().expect("commit");
    assert_eq!(bits(&f.reopen().connect().expect("connect").open("n").expect("open")), expect(PER + 8, &[(1, 2.0)]));
}

/// Growth keeps fill in a block written in this transaction (its cached tail), also after a
/// shrink cut the written bytes off.
fn fill_values_in_dirty_blocks(f: &Fixture) {
    let conn = f.db.connect().expect("connect");
    let a = conn.create("n", nan_spec(10)).expect("create");
    set(&a, 0, 1.0);
    a.resize(&[20]).expect("grow");
    assert_eq!(bits(&a), expect(20, &[(0, 1.0)]));
    conn.commit().expect("commit");
    set(&a, 1, 2.0);
    set(&a, 15, 3.0);
    a.resize(&[12]).expect("shrink");
    a.resize(&[PER + 1]).expect("grow");
    assert_eq!(bits(&a), expect(PER + 1, &[(0, 1.0), (1, 2.0)]));
    conn.commit().expect("commit");
    assert_eq!(
        bits(&f.reopen().connect().expect("connect").open("n").expect("open")),
        expect(PER + 1, &[(0, 1.0), (1, 2.0)])
    );
}

/// Blocks evicted under a small cache budget reload as they were (fill and written values).
fn fill_values_survive_eviction(f: &Fixture) {
    let conn = f.db.connect().expect("connect");
    let a = conn.create("n", nan_spec(10 * PER)).expect("create");
    for b in (0..10).step_by(3) {
        set(&a, (b * PER + 1) as usize, b as f64);
    }
    conn.commit().expect("commit");
    let want = expect(10 * PER, &[(1, 0.0), (3 * PER + 1, 3.0), (6 * PER + 1, 6.0), (9 * PER + 1, 9.0)]);
    let db = f.reopen_with_budget(2 * BS);
    let c = db.connect().expect("connect");
    let a = c.open("n").expect("open");
    for _ in 0..2 {
        assert_eq!(bits(&a), want);
    }
    assert!(db.pager().stats().evictions > 0);
}

backends!(
    fill_values_survive_eviction,
    fill_values_in_dirty_blocks,
    nan_fill_arrays,
    nan_fill_compressed_arrays,
    fill_values_of_any_dtype,
    fill_values_and_savepoints
);

/// An untouched 1 TiB NaN array costs no block storage; a write of 5 elements stores about
/// one block.
#[test]
#[allow(clippy::single_range_in_vec_init)] // one index range per axis
fn a_terabyte_of_nan_costs_nothing() {
    let f = common::sqlite();
    let conn = f.db.connect().expect("connect");
    let n = 1u64 << 37; // 1 TiB of f64
    let a = conn.create("big", nan_spec(n)).expect("create");
    conn.commit().expect("commit");
    let dir = std::path::Path::new(&f.url).parent().expect("dir").to_path_buf();
    let used = || -> u64 {
        std::fs::read_dir(&dir)
            .expect("dir")
            .map(|e| {
                let m = e.expect("entry").metadata().expect("metadata");
                std::os::unix::fs::MetadataExt::blocks(&m) * 512
            })
            .sum()
    };
    let blocks_file = || std::fs::metadata(format!("{}.blocks", f.url)).map(|m| m.len()).unwrap_or(0);
    assert_eq!(blocks_file(), 0);
    let before = used();
    assert!(before < 4 << 20, "{before} bytes on disk");
    let v = a.slice_view::<f64>(&[12345..12346]).expect("view");
    assert!(v.view()[[0]].is_nan());
    drop(v);
    let s: f64 = a.slice_view::<f64>(&[n - 1000..n]).expect("view").view().iter().sum();
    assert!(s.is_nan());
    {
        let mut w = a.slice_view_mut::<f64>(&[1 << 30..(1 << 30) + 5]).expect("view");
        w.view_mut().fill(1.5);
    }
    conn.commit().expect("commit");
    assert!(blocks_file() <= BS, "{} bytes in the data file", blocks_file());
    let other = f.reopen().connect().expect("connect");
    let other = other.open("big").expect("open");
    let v = other.slice_view::<f64>(&[(1 << 30) - 1..(1 << 30) + 6]).expect("view");
    let got: Vec<u64> = v.view().iter().map(|x| x.to_bits()).collect();
    let mut want = vec![1.5f64.to_bits(); 7];
    want[0] = NAN;
    want[6] = NAN;
    assert_eq!(got, want);
    let after = used();
    assert!(after < before + (1 << 20), "{before} -> {after} bytes on disk");
}

/// The same on PostgreSQL: no block rows until written, then one block of at most one segment
/// per 16 KiB written to.
#[test]
#[allow(clippy::single_range_in_vec_init)] // one index range per axis
fn a_terabyte_of_nan_costs_nothing_on_postgresql() {
    let Some(f) = common::postgres() else { return };
    let conn = f.db.connect().expect("connect");
    let n = 1u64 << 37;
    let a = conn.create("big", nan_spec(n)).expect("create");
    conn.commit().expect("commit");
    let mut pg = ::postgres::Client::connect(&f.url, ::postgres::NoTls).expect("connect to the database");
    let count = |pg: &mut ::postgres::Client, q: &str| -> i64 { pg.query_one(q, &[]).expect(q).get(0) };
    assert_eq!(count(&mut pg, "SELECT count(*) FROM outcore_current"), 0);
    assert!(a.slice_view::<f64>(&[12345..12346]).expect("view").view()[[0]].is_nan());
    a.slice_view_mut::<f64>(&[1 << 30..(1 << 30) + 5]).expect("view").view_mut().fill(1.5);
    conn.commit().expect("commit");
    assert_eq!(count(&mut pg, "SELECT count(*) FROM outcore_current"), 1);
    let stored = count(&mut pg, "SELECT coalesce(sum(length(data)), 0)::bigint FROM outcore_segment");
    assert!(stored > 0 && stored <= BS as i64, "{stored} bytes stored");
    let other = f.reopen().connect().expect("connect");
    let v = other.open("big").expect("open");
    let got: Vec<u64> = v
        .slice_view::<f64>(&[(1 << 30) - 1..(1 << 30) + 6])
        .expect("view")
        .view()
        .iter()
        .map(|x| x.to_bits())
        .collect();
    let mut want = vec![1.5f64.to_bits(); 7];
    want[0] = NAN;
    want[6] = NAN;
    assert_eq!(got, want);
}
