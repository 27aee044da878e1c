//! Test support: one fixture per backend, so every test body runs on SQLite and PostgreSQL.
//!
//! PostgreSQL variants need `OUTCORE_TEST_PG`, the URL of a throwaway server where databases
//! may be created; each test gets a fresh database. Without it they are skipped with a message,
//! unless `OUTCORE_REQUIRE_PG=1` turns the skip into a failure.
#![allow(dead_code)]

#[path = "../../../outcore-store/tests/common/place.rs"]
mod place;

use outcore::{Db, DbOptions};
use place::Guard;

/// Block size used by the tests: small, so that arrays span several blocks.
pub const BS: u64 = 16 << 10;

/// A database under test and how to open it again (as another process would).
pub struct Fixture {
    pub db: Db,
    pub url: String,
    pub backend: &'static str,
    _guard: Guard,
}

pub fn options() -> DbOptions {
    DbOptions::default().blksize(BS)
}

impl Fixture {
    /// A new, independent `Db` on the same store.
    pub fn reopen(&self) -> Db {
        Db::open(&self.url, options()).expect("reopen db")
    }

    /// A new `Db` on the same store with its own pager and a cache budget of `bytes`.
    pub fn reopen_with_budget(&self, bytes: u64) -> Db {
        Db::open(&self.url, options().cache_budget(bytes)).expect("reopen db")
    }
}

pub fn sqlite() -> Fixture {
    let (url, guard) = place::sqlite_file();
    let db = Db::open(&url, options()).expect("open sqlite db");
    Fixture { db, url, backend: "sqlite", _guard: guard }
}

pub fn postgres() -> Option<Fixture> {
    let (url, guard) = place::pg_database("outcore_core_t")?;
    let db = Db::open(&url, options()).expect("open postgres db");
    Some(Fixture { db, url, backend: "postgresql", _guard: guard })
}

/// Flips one bit of the byte at offset `at` of block `blk` (of the only array) in the data file
/// of the local store `url`, behind the store's back.
pub fn flip_extent_byte(url: &str, blk: u64, at: u64) {
    use std::os::unix::fs::FileExt;
    let off: i64 = rusqlite::Connection::open(url)
        .expect("sqlite")
        .query_row("SELECT ext_off FROM outcore_current WHERE blk = ?1", [blk as i64], |r| r.get(0))
        .expect("extent");
    let data = std::fs::OpenOptions::new().read(true).write(true).open(format!("{url}.blocks")).expect("data file");
    let mut b = [0u8; 1];
    data.read_exact_at(&mut b, off as u64 + at).expect("read");
    data.write_all_at(&[b[0] ^ 0x40], off as u64 + at).expect("write");
}
