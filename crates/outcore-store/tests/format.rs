//! The store's format marker: foreign files and databases, and newer format versions, are clear
//! errors, never a panic and never silently reinitialized.

mod common;

use outcore_store::{open, Error};

#[test]
fn a_text_file_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("notes.txt");
    std::fs::write(&p, "hello, this is not a database at all, just text").unwrap();
    match open(p.to_str().unwrap()) {
        Err(e @ Error::NotAStore { .. }) => assert!(e.to_string().contains("not a SQLite database"), "{e}"),
        other => panic!("expected NotAStore, got {other:?}"),
    }
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "hello, this is not a database at all, just text");
}

#[test]
fn an_empty_file_becomes_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.outcore");
    std::fs::write(&p, b"").unwrap();
    assert_eq!(open(p.to_str().unwrap()).unwrap().head().unwrap(), 0);
}

#[test]
fn a_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(open(dir.path().to_str().unwrap()), Err(Error::BadLocation { .. })));
}

#[test]
fn a_foreign_sqlite_database_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("other.db");
    rusqlite::Connection::open(&p).unwrap().execute_batch("CREATE TABLE people (name TEXT)").unwrap();
    let before = std::fs::read(&p).unwrap();
    match open(p.to_str().unwrap()) {
        Err(e @ Error::NotAStore { .. }) => assert!(e.to_string().contains("people") && !e.is_transient(), "{e}"),
        other => panic!("expected NotAStore, got {other:?}"),
    }
    // Left byte for byte as it was (not switched to WAL mode), and nothing created beside it.
    assert!(std::fs::read(&p).unwrap() == before, "the foreign database was changed");
    let mut names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, vec![std::ffi::OsString::from("other.db")]);
}

/// The format version this build reads in SQLite stores.
const SQLITE_SUPPORTED: u32 = 5;
/// The format version this build reads in PostgreSQL stores.
const PG_SUPPORTED: u32 = 7;

/// `open` refuses the store at `url` whose format version is `found`, the build reading
/// `supported`; an older one (3 had no commit ids) with advice to use an earlier outcore, not
/// misread.
fn assert_refused(url: &str, found: u32, supported: u32) {
    match open(url) {
        Err(e @ Error::UnsupportedVersion { found: f, supported: s, .. }) if f == found && s == supported => {
            if found < supported {
                assert!(e.to_string().contains("earlier outcore"), "{e}")
            }
        }
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
}

/// The format version to set in the store's marker (as `UPDATE outcore_meta ...` text).
fn set_version(version: u32) -> String {
    format!("UPDATE outcore_meta SET value = '{version}' WHERE key = 'version'")
}

/// `name: version` makes a test that a SQLite store marked with that format version is refused.
macro_rules! sqlite_version_refused {
    ($($name:ident: $version:expr),* $(,)?) => {$(
        #[test]
        fn $name() {
            let f = common::sqlite();
            rusqlite::Connection::open(&f.url).unwrap().execute(&set_version($version), []).unwrap();
            assert_refused(&f.url, $version, SQLITE_SUPPORTED);
        }
    )*};
}

sqlite_version_refused!(
    a_newer_sqlite_format_is_refused: 99,
    a_format_3_store_is_refused_with_advice: 3,
    a_format_4_store_is_refused_with_advice: 4,
);

#[test]
fn a_newer_postgres_format_is_refused() {
    let Some(f) = common::postgres() else { return };
    let mut c = postgres::Client::connect(&f.url, postgres::NoTls).unwrap();
    // 6: segment rows keyed by their 16 KiB segment, read as pages they are not; 5: checksums
    // bound to the tid in the hash's seed, which the server cannot compute.
    for version in [99, 6, 5, 3] {
        c.execute(&set_version(version), &[]).unwrap();
        assert_refused(&f.url, version, PG_SUPPORTED);
    }
    c.execute("UPDATE outcore_meta SET value = 'something-else' WHERE key = 'format'", &[]).unwrap();
    assert!(matches!(open(&f.url), Err(Error::NotAStore { .. })));
}

#[test]
fn postgres_connection_failures_name_the_place_without_password() {
    // Nothing listens on port 1: the server cannot be reached (worth retrying later), unlike a
    // URL that cannot work.
    match open("postgresql://someone:secret@127.0.0.1:1/db") {
        Err(e @ Error::Unreachable { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("127.0.0.1:1") && !msg.contains("secret") && msg.contains("refused"), "{msg}");
            assert!(e.is_transient(), "a refused connection is worth retrying");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

#[test]
fn open_existing_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.outcore");
    assert!(matches!(outcore_store::open_existing(path.to_str().unwrap()), Err(Error::NotAStore { .. })));
    assert!(!path.exists(), "nothing was created");
    let Some((url, _db)) = common::pg_database() else { return };
    match outcore_store::open_existing(&url) {
        Err(e @ Error::NotAStore { .. }) => assert!(e.to_string().contains("nothing was created"), "{e}"),
        other => panic!("expected NotAStore, got {:?}", other.map(|_| ())),
    }
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let tables: i64 =
        c.query_one("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'outcore_%'", &[]).unwrap().get(0);
    assert_eq!(tables, 0, "no schema was created");
    drop(c);
    open(&url).unwrap();
    assert!(outcore_store::open_existing(&url).is_ok());
}
