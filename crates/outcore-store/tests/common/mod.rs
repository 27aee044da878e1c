//! Test support: one fixture per backend, so every conformance test body runs on both.
//!
//! PostgreSQL tests need a server: `OUTCORE_TEST_PG` is the URL of a database on a throwaway
//! server with the right to create databases (the README's test command starts one). Each test
//! gets its own fresh database. Without the variable the PostgreSQL variants are skipped with a
//! message, unless `OUTCORE_REQUIRE_PG=1`, which turns the skip into a failure.
#![allow(dead_code)]

use outcore_store::{open, Store};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A store under test and how to reopen it.
pub struct Fixture {
    pub store: Arc<dyn Store>,
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

impl Fixture {
    /// A second, independent handle on the same store (as another process would open it).
    pub fn reopen(&self) -> Arc<dyn Store> {
        open(&self.url).expect("reopen store")
    }

    /// Every stored payload of a current version (and every pending patch) belongs to exactly one
    /// current row: none is leaked by rewrites, merges, emptied blocks or gc (SQLite keeps payloads in `outcore_blob` rows;
    /// PostgreSQL stores them inline, so there is nothing to leak).
    #[allow(dead_code)]
    pub fn assert_no_leaked_payloads(&self) {
        if self.backend != "sqlite" {
            return;
        }
        let c = rusqlite::Connection::open(&self.url).expect("sqlite");
        let q = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0)).expect(sql);
        let (payloads, referenced) =
            (q("SELECT count(*) FROM outcore_blob"), q("SELECT count(data_id) FROM outcore_current"));
        assert_eq!(payloads, referenced, "stored payloads vs current rows referring to one");
        // Pending patches: exactly those the current rows count, each between its row's payload
        // and its newest version.
        let counted = q("SELECT coalesce(sum(patches), 0) FROM outcore_current");
        let placed = q("SELECT count(*) FROM outcore_patch p JOIN outcore_current c USING (array_id, blk)
                        WHERE p.tid > c.base_tid AND p.tid <= c.tid");
        assert_eq!((q("SELECT count(*) FROM outcore_patch"), placed), (counted, counted), "pending patches");
    }
}

pub fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = dir.path().join("test.outcore").to_str().expect("utf8 path").to_string();
    let store = open(&url).expect("open sqlite store");
    Fixture { store, url, backend: "sqlite", _guard: Guard::Dir(dir) }
}

/// The admin URL of the test server, or `None` (skip) when there is none.
pub fn pg_admin_url() -> Option<String> {
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

/// A URL to a brand-new empty database on the test server.
pub fn pg_new_database() -> Option<(String, String, String)> {
    static N: AtomicU64 = AtomicU64::new(0);
    let admin = pg_admin_url()?;
    let name = format!("outcore_t{}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed), rand_suffix());
    let mut c = postgres::Client::connect(&admin, postgres::NoTls).expect("connect to test server");
    c.batch_execute(&format!("CREATE DATABASE {name}")).expect("create test database");
    let mut u = url::Url::parse(&admin).expect("admin url");
    u.set_path(&format!("/{name}"));
    Some((admin, name, u.to_string()))
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0)
}

pub fn postgres() -> Option<Fixture> {
    let (admin, name, url) = pg_new_database()?;
    let store = open(&url).expect("open postgres store");
    Some(Fixture { store, url, backend: "postgresql", _guard: Guard::PgDb { admin, name } })
}

/// Run a test body on every backend: `conformance!(name1, name2, ...)` makes
/// `sqlite::name1` and `postgres::name1` tests calling `name1(&Fixture)`.
#[macro_export]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(&super::common::sqlite()) } )*
        }
        mod postgres {
            $( #[test] fn $name() { if let Some(f) = super::common::postgres() { super::$name(&f) } } )*
        }
    };
}
