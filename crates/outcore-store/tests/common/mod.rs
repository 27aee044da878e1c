//! Test support: one fixture per backend, so every conformance test body runs on both (through
//! `backends!`, in [`place`]).
//!
//! PostgreSQL tests need a server (see [`place`]): each test gets its own fresh database, and the
//! PostgreSQL variants are skipped with a message when there is none, unless `OUTCORE_REQUIRE_PG=1`.
#![allow(dead_code)]

mod place;

#[allow(unused_imports)] // used by some test binaries only
pub use place::{pg_admin_url, Guard};

use outcore_store::{open, Store};
use std::sync::Arc;

/// A store under test and how to reopen it.
pub struct Fixture {
    pub store: Arc<dyn Store>,
    pub url: String,
    pub backend: &'static str,
    _guard: Guard,
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
    let (url, guard) = place::sqlite_file();
    let store = open(&url).expect("open sqlite store");
    Fixture { store, url, backend: "sqlite", _guard: guard }
}

/// A brand-new empty database on the test server (see [`place::pg_database`]): its URL and the
/// guard that drops it.
pub fn pg_database() -> Option<(String, Guard)> {
    place::pg_database("outcore_t")
}

pub fn postgres() -> Option<Fixture> {
    let (url, guard) = pg_database()?;
    let store = open(&url).expect("open postgres store");
    Some(Fixture { store, url, backend: "postgresql", _guard: guard })
}
