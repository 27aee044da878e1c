//! A store opened read-only (`open_read_only`) reads everything and writes nothing: not a byte
//! of its files changes, no file appears beside them, and what would write is a clear
//! `ReadOnly` error.

mod common;

use outcore_store::{open, open_read_only, ArrayId, ArrayMeta, Commit, Error, Order, Store};
use std::collections::BTreeMap;
use std::path::Path;

const BS: u64 = 64 << 10;

/// Every file in `dir` with its length, a hash of its bytes and its modification time.
fn files(dir: &Path) -> BTreeMap<String, (usize, u64, std::time::SystemTime)> {
    use std::hash::{Hash, Hasher};
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let bytes = std::fs::read(e.path()).unwrap();
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            let modified = e.metadata().unwrap().modified().unwrap();
            (e.file_name().to_string_lossy().into_owned(), (bytes.len(), h.finish(), modified))
        })
        .collect()
}

/// A new temporary directory and the path of a store file in it.
fn store_file() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("s.outcore").to_str().unwrap().to_string();
    (dir, url)
}

/// A store with one array of two committed versions; closed.
fn make(url: &str) -> ArrayId {
    let s = open(url).unwrap();
    let id = ArrayId::random();
    let mut c = Commit::new().with_description("first");
    let mut meta = ArrayMeta::new("<f8", vec![2 * BS / 8], Order::C, 2 * BS);
    meta.blksize = BS;
    c.put_array(id, "a", meta);
    c.write_block(id, 0, vec![1u8; BS as usize]);
    let t1 = s.commit(s.head().unwrap(), c).unwrap();
    let mut c = Commit::new().with_description("second");
    c.write_block(id, 1, vec![2u8; 100]);
    s.commit(t1, c).unwrap();
    id
}

/// Reads everything a read-only handle offers, and tries what it refuses.
fn read_all(s: &dyn Store, id: ArrayId) {
    let head = s.head().unwrap();
    assert_eq!(head, 2);
    let snap = s.snapshot(None).unwrap();
    assert_eq!(s.arrays(head).unwrap().len(), 1);
    let mut buf = vec![0u8; BS as usize];
    s.load(id, 0, head, &mut buf).unwrap();
    assert!(buf.iter().all(|b| *b == 1));
    s.load(id, 1, head, &mut buf).unwrap();
    assert_eq!((buf[99], buf[100]), (2, 0));
    s.load(id, 1, 1, &mut buf).unwrap();
    assert!(buf.iter().all(|b| *b == 0), "history reads");
    let notes: Vec<String> = s.history(0, head).unwrap().into_iter().map(|t| t.description).collect();
    assert_eq!(notes, ["first", "second"]);
    assert!(s.changes(1, 2).unwrap().blocks.contains(&(id, 1)));
    drop(snap);
    let mut c = Commit::new();
    c.write_block(id, 0, vec![9u8; 10]);
    match s.commit(head, c) {
        Err(e @ Error::ReadOnly { .. }) => assert!(e.to_string().contains("read-only"), "{e}"),
        other => panic!("expected ReadOnly, got {other:?}"),
    }
    assert!(matches!(s.gc(head), Err(Error::ReadOnly { .. })));
}

#[test]
fn a_local_store_opened_read_only_writes_nothing() {
    let (dir, url) = store_file();
    let (url, id) = (url.as_str(), make(&url));
    let before = files(dir.path());
    let s = open_read_only(url).unwrap();
    read_all(&*s, id);
    assert!(matches!(s.stage(id, 5, BS), Err(Error::ReadOnly { .. })));
    drop(s);
    assert_eq!(files(dir.path()), before, "no file changed, appeared or went");
    // A writer can still open it afterwards, and nothing was lost.
    assert_eq!(open(url).unwrap().head().unwrap(), 2);
}

#[test]
fn a_store_a_writer_holds_open_is_read_through_its_write_ahead_log() {
    let (_dir, url) = store_file();
    let (url, id) = (url.as_str(), make(&url));
    // A writer has the store open (its WAL exists) and commits more.
    let w = open(url).unwrap();
    let mut c = Commit::new();
    c.write_block(id, 0, vec![5u8; 10]);
    let t3 = w.commit(w.head().unwrap(), c).unwrap();
    assert!(Path::new(&format!("{url}-wal")).exists());
    let r = open_read_only(url).unwrap();
    assert_eq!(r.head().unwrap(), t3, "the newest commit, from the write-ahead log");
    let mut buf = vec![0u8; BS as usize];
    r.load(id, 0, t3, &mut buf).unwrap();
    assert_eq!((buf[9], buf[10]), (5, 0), "the block as the writer committed it (10 bytes, zeros after)");
}

#[test]
fn a_path_with_uri_characters_opens_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("a?b#c%20d.outcore").to_str().unwrap().to_string();
    let id = make(&url);
    read_all(&*open_read_only(&url).unwrap(), id);
}

#[test]
fn a_foreign_file_opened_read_only_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("notes.txt");
    std::fs::write(&p, "not a database").unwrap();
    assert!(matches!(open_read_only(p.to_str().unwrap()), Err(Error::NotAStore { .. })));
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "not a database");
}

#[test]
fn read_only_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.outcore");
    assert!(matches!(open_read_only(path.to_str().unwrap()), Err(Error::NotAStore { .. })));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_postgres_store_opened_read_only_refuses_writes() {
    let Some((url, _db)) = common::pg_database() else { return };
    assert!(matches!(open_read_only(&url), Err(Error::NotAStore { .. })), "no schema: nothing created");
    let id = make(&url);
    let s = open_read_only(&url).unwrap();
    read_all(&*s, id);
}
