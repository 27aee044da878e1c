//! Test support: one fixture per backend, so every test body runs on SQLite and PostgreSQL.
//!
//! PostgreSQL variants need `OUTCORE_TEST_PG`, the URL of a throwaway server where databases
//! may be created; each test gets a fresh database. Without it they are skipped with a message,
//! unless `OUTCORE_REQUIRE_PG=1` turns the skip into a failure.
#![allow(dead_code)]

use outcore::{Db, DbOptions};
use std::sync::atomic::{AtomicU64, Ordering};

/// Block size used by the tests: small, so that arrays span several blocks.
pub const BS: u64 = 16 << 10;

/// A database under test and how to open it again (as another process would).
pub struct Fixture {
    pub db: Db,
    pub url: String,
    pub backend: &'static str,
    _guard: Guard,
}

enum Guard {
    Dir(tempfile::TempDir),
    PgDb { admin: String, name: String },
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Guard::PgDb { admin, name } = self {
            if let Ok(mut c) = postgres::Client::connect(admin, postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
    }
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
    let dir = tempfile::tempdir().expect("tempdir");
    let url = dir.path().join("test.outcore").to_str().expect("utf8 path").to_string();
    let db = Db::open(&url, options()).expect("open sqlite db");
    Fixture { db, url, backend: "sqlite", _guard: Guard::Dir(dir) }
}

fn pg_admin_url() -> Option<String> {
    match std::env::var("OUTCORE_TEST_PG") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            if std::env::var("OUTCORE_REQUIRE_PG").as_deref() == Ok("1") {
                panic!("OUTCORE_REQUIRE_PG=1 but OUTCORE_TEST_PG is not set");
            }
            eprintln!("SKIPPED: PostgreSQL test (set OUTCORE_TEST_PG to a server URL, or run ./scripts/test)");
            None
        }
    }
}

pub fn postgres() -> Option<Fixture> {
    static N: AtomicU64 = AtomicU64::new(0);
    let admin = pg_admin_url()?;
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let name = format!("outcore_core_t{}_{}_{nanos}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    let mut c = postgres::Client::connect(&admin, postgres::NoTls).expect("connect to test server");
    c.batch_execute(&format!("CREATE DATABASE {name}")).expect("create test database");
    let mut u = url::Url::parse(&admin).expect("admin url");
    u.set_path(&format!("/{name}"));
    let url = u.to_string();
    let db = Db::open(&url, options()).expect("open postgres db");
    Some(Fixture { db, url, backend: "postgresql", _guard: Guard::PgDb { admin, name } })
}

/// `backends!(a, b)` makes `sqlite::a`, `postgres::a`, ... tests calling `a(&Fixture)`.
#[macro_export]
macro_rules! backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(&super::common::sqlite()) } )*
        }
        mod postgres {
            $( #[test] fn $name() { if let Some(f) = super::common::postgres() { super::$name(&f) } } )*
        }
    };
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
