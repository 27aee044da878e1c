//! Pending patches (SQLite): small scattered commits keep their pages beside the block's stored
//! payload, and a later commit merges them. Every version stays readable, damage is detected.
//! Only compressed arrays keep payloads in SQLite (uncompressed ones use data-file extents), so
//! "raw" here is an lz4 array whose incompressible blocks are stored raw.

mod common;

use outcore_store::{ArrayId, ArrayMeta, Codec, Commit, Error, Order, Store};

const BS: u64 = 256 << 10;
const PAGE: usize = 4096;
/// An array whose blocks (incompressible) are stored raw in SQLite.
const RAW: Codec = Codec::Lz4;

/// Incompressible bytes.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn meta(nbytes: u64, codec: Codec) -> ArrayMeta {
    ArrayMeta {
        dtype: "|u1".into(),
        shape: vec![nbytes],
        order: Order::C,
        blksize: BS,
        codec,
        nbytes,
        attrs: Default::default(),
        fill: None,
    }
}

fn sql(f: &common::Fixture) -> rusqlite::Connection {
    rusqlite::Connection::open(&f.url).unwrap()
}

fn count(f: &common::Fixture, q: &str) -> i64 {
    sql(f).query_row(q, [], |r| r.get(0)).unwrap()
}

fn load(s: &dyn Store, id: ArrayId, at: u64) -> Result<Vec<u8>, Error> {
    let mut buf = vec![0xAAu8; BS as usize];
    s.load(id, 0, at, &mut buf).map(|_| buf)
}

/// A new one-block array: (id, tid).
fn create(s: &dyn Store, codec: Codec) -> (ArrayId, u64) {
    let id = ArrayId::random();
    let mut c = Commit::new();
    c.put_array(id, "a", meta(BS, codec));
    (id, s.commit(s.head().unwrap(), c).unwrap())
}

/// A new SQLite store with a one-block raw array, and incompressible content for it (`seed`), not
/// yet written: (fixture, array, tid, content).
fn raw_array(seed: u64) -> (common::Fixture, ArrayId, u64, Vec<u8>) {
    let f = common::sqlite();
    let (id, tid) = create(&*f.store, RAW);
    (f, id, tid, noise(BS as usize, seed))
}

/// Commit `content` as block 0 of `id` on top of `base`: the new tid.
fn put(s: &dyn Store, id: ArrayId, base: u64, content: &[u8]) -> u64 {
    let mut c = Commit::new();
    c.write_block(id, 0, content.to_vec());
    s.commit(base, c).unwrap()
}

/// A block with distinct bytes everywhere, then commits that each change two scattered pages:
/// they become patches (the payload is not rewritten) until their budget is spent, and a commit
/// then merges them. Returns the array, and every (tid, content) in order.
fn history(s: &dyn Store, codec: Codec) -> (ArrayId, Vec<(u64, Vec<u8>)>) {
    let (id, mut tid) = create(s, codec);
    let mut content: Vec<u8> = noise(BS as usize, 7);
    let mut versions = Vec::new();
    tid = put(s, id, tid, &content);
    versions.push((tid, content.clone()));
    for i in 0..12usize {
        // Two pages in different 64 KiB database pages (an in-place rewrite writes two).
        for p in [(i * 5) % 16, 32 + (i * 11 + 3) % 16] {
            content[p * PAGE + 100..p * PAGE + 200].fill(i as u8 + 1);
        }
        tid = put(s, id, tid, &content);
        versions.push((tid, content.clone()));
    }
    (id, versions)
}

fn check_versions(s: &dyn Store, id: ArrayId, versions: &[(u64, Vec<u8>)]) {
    for (tid, want) in versions {
        assert!(load(s, id, *tid).unwrap() == *want, "version at tid {tid}");
    }
}

#[test]
fn scattered_small_commits_become_patches_then_merge() {
    for codec in [RAW, Codec::Zstd { level: 3 }] {
        let f = common::sqlite();
        let s = &*f.store;
        let (id, versions) = history(s, codec);
        // At most 4 patches per block: the 5th and 10th commits merge, 2 are pending at the end.
        let stored: i64 = count(&f, "SELECT coalesce(sum(patches), 0) FROM outcore_current");
        assert!(stored > 0, "{codec:?}: {stored} pending patches");
        if codec == RAW {
            assert_eq!(stored, 2);
        }
        assert_eq!(count(&f, "SELECT count(*) FROM outcore_patch"), stored);
        f.assert_no_leaked_payloads();
        check_versions(s, id, &versions);
        check_versions(&*f.reopen(), id, &versions);

        // A commit that rewrites most of the block merges the patches into the payload.
        let mut whole = versions.last().unwrap().1.clone();
        whole.iter_mut().for_each(|b| *b = b.wrapping_add(1));
        let t = put(s, id, versions.last().unwrap().0, &whole);
        assert_eq!(count(&f, "SELECT count(*) FROM outcore_patch"), 0);
        assert_eq!(count(&f, "SELECT coalesce(sum(patches), 0) FROM outcore_current"), 0);
        f.assert_no_leaked_payloads();
        let mut all = versions.clone();
        all.push((t, whole));
        check_versions(&*f.reopen(), id, &all);
    }
}

#[test]
fn a_patch_only_holds_the_pages_it_changes() {
    let f = common::sqlite();
    let s = &*f.store;
    let (_, versions) = history(s, RAW);
    let (rows, bytes): (i64, i64) = sql(&f)
        .query_row("SELECT count(*), sum(length(data)) FROM outcore_patch", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert!(rows > 0);
    // Two pages of data plus a 12-byte header each.
    assert_eq!(bytes, rows * (2 * PAGE as i64 + 12), "{versions:?}", versions = versions.len());
}

#[test]
fn a_damaged_or_missing_patch_is_detected() {
    let f = common::sqlite();
    let s = &*f.store;
    let (id, versions) = history(s, RAW);
    let head = versions.last().unwrap().0;
    let c = sql(&f);
    let newest: i64 = c.query_row("SELECT max(tid) FROM outcore_patch", [], |r| r.get(0)).unwrap();
    assert_eq!(newest as u64, head, "the newest commit is a pending patch");
    // Flip a byte of the newest patch: the head (and every snapshot, which starts from it) is
    // corrupt, never wrong data.
    let mut data: Vec<u8> =
        c.query_row("SELECT data FROM outcore_patch WHERE tid = ?1", [newest], |r| r.get(0)).unwrap();
    data[100] ^= 0xFF;
    c.execute("UPDATE outcore_patch SET data = ?1 WHERE tid = ?2", rusqlite::params![data, newest]).unwrap();
    match load(&*f.reopen(), id, head) {
        Err(e @ Error::Corrupt { .. }) => assert!(e.to_string().contains(&format!("tid {head}")), "{e}"),
        other => panic!("expected Corrupt, got {:?}", other.map(|_| ())),
    }
    // A missing patch in the middle breaks the chain.
    let oldest: i64 = c.query_row("SELECT min(tid) FROM outcore_patch", [], |r| r.get(0)).unwrap();
    c.execute("DELETE FROM outcore_patch WHERE tid = ?1", [oldest]).unwrap();
    match load(&*f.reopen(), id, head) {
        Err(e @ Error::Corrupt { .. }) => assert!(e.to_string().contains("pending patch"), "{e}"),
        other => panic!("expected Corrupt, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn deleting_an_array_and_gc_drop_its_patches() {
    let f = common::sqlite();
    let s = &*f.store;
    let (id, versions) = history(s, RAW);
    assert!(count(&f, "SELECT count(*) FROM outcore_patch") > 0);
    let mut c = Commit::new();
    c.delete_array(id);
    let t = s.commit(versions.last().unwrap().0, c).unwrap();
    s.gc(t).unwrap();
    assert_eq!(count(&f, "SELECT count(*) FROM outcore_patch"), 0);
    assert_eq!(count(&f, "SELECT count(*) FROM outcore_current"), 0);
    f.assert_no_leaked_payloads();
}

#[test]
fn patches_that_shrink_and_regrow_the_content_merge_exactly() {
    let (f, id, mut tid, mut content) = raw_array(9);
    let s = &*f.store;
    let mut versions = Vec::new();
    let mut commit = |content: &[u8], versions: &mut Vec<(u64, Vec<u8>)>| {
        tid = put(s, id, tid, content);
        versions.push((tid, content.to_vec()));
    };
    commit(&content, &mut versions);
    // Each commit also changes a page of the first 64 KiB, so that it takes a patch.
    // Shrink: the last page becomes zeros (content ends one page earlier), then the last two.
    content[63 * PAGE..].fill(0);
    content[PAGE] = 1;
    commit(&content, &mut versions);
    content[62 * PAGE..].fill(0);
    content[2 * PAGE] = 1;
    commit(&content, &mut versions);
    // Regrow with one byte in the last page: pages 62 is zeros in the head, not in the payload.
    content[BS as usize - 1] = 5;
    content[3 * PAGE] = 1;
    commit(&content, &mut versions);
    assert!(count(&f, "SELECT count(*) FROM outcore_patch") >= 2, "patches were kept");
    // Merge by changing most pages, except page 62: the payload must not keep its old bytes.
    for p in 0..60 {
        content[p * PAGE] = 1;
    }
    commit(&content, &mut versions);
    assert_eq!(count(&f, "SELECT count(*) FROM outcore_patch"), 0, "merged");
    check_versions(&*f.reopen(), id, &versions);
    // Later in-place writes rely on the payload matching the head exactly.
    content[62 * PAGE + 7] = 3;
    commit(&content, &mut versions);
    check_versions(&*f.reopen(), id, &versions);
    f.assert_no_leaked_payloads();
}

#[test]
fn a_change_within_one_database_page_is_written_in_place() {
    let (f, id, mut tid, mut content) = raw_array(4);
    let s = &*f.store;
    for i in 0..6 {
        // Pages 0-15 share a 64 KiB database page.
        content[(i % 16) * PAGE] = i as u8;
        tid = put(s, id, tid, &content);
    }
    assert_eq!(count(&f, "SELECT count(*) FROM outcore_patch"), 0);
    assert!(load(&*f.reopen(), id, tid).unwrap() == content);
}
