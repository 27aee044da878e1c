//! Where a store under test lives: a file in a fresh temporary directory, or a fresh database on
//! the PostgreSQL test server, each removed when its [`Guard`] drops.
//!
//! Shared by the test suites of outcore-store (`mod place;` in `tests/common/mod.rs`) and outcore
//! (`#[path = "../../../outcore-store/tests/common/place.rs"] mod place;`), so it uses only what
//! both have: std, tempfile, postgres and url.
//!
//! [`backends!`] runs a test body on each backend, given `common::sqlite()` and `common::postgres()`
//! (the fixtures of the including crate).
//!
//! `OUTCORE_TEST_PG` is the URL of a database on a throwaway server with the right to create
//! databases (the README's test command starts one). Without it the PostgreSQL variants are skipped
//! with a message, unless `OUTCORE_REQUIRE_PG=1`, which turns the skip into a failure.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

/// Removes a test's store when dropped: its temporary directory, or its database (forcibly, even
/// with connections still open).
pub enum Guard {
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

/// The path of a store file not yet created (`test.outcore` in a new temporary directory).
pub fn sqlite_file() -> (String, Guard) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = dir.path().join("test.outcore").to_str().expect("utf8 path").to_string();
    (url, Guard::Dir(dir))
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

/// The URL of a brand-new empty database on the test server, named `prefix` then the process id,
/// a counter and the clock's nanoseconds (unique across the test processes that share the server),
/// or `None` (skip) when there is no server.
pub fn pg_database(prefix: &str) -> Option<(String, Guard)> {
    static N: AtomicU64 = AtomicU64::new(0);
    let admin = pg_admin_url()?;
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let name = format!("{prefix}{}_{}_{nanos}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    let mut c = postgres::Client::connect(&admin, postgres::NoTls).expect("connect to test server");
    c.batch_execute(&format!("CREATE DATABASE {name}")).expect("create test database");
    let mut u = url::Url::parse(&admin).expect("admin url");
    u.set_path(&format!("/{name}"));
    Some((u.to_string(), Guard::PgDb { admin, name }))
}

/// Run a test body on every backend: `backends!(name1, name2, ...)` makes `sqlite::name1` and
/// `postgres::name1` tests calling `name1(&common::sqlite())` and, when there is a test server,
/// `name1(&f)` with `f` from `common::postgres()`.
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
