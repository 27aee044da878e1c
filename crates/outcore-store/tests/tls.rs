//! TLS to PostgreSQL with libpq's sslmode semantics, against a real server with a throwaway CA
//! (`OUTCORE_TEST_PG_CA`, set by scripts/test together with `OUTCORE_TEST_PG`).

mod common;

use outcore_store::{open, Error};

/// The URL of a new database on the test server with the given query, the CA file, and the guard
/// that drops the database, or None to skip.
fn target(query: &str) -> Option<(String, String, common::Guard)> {
    let admin = common::pg_admin_url()?;
    let ca = match std::env::var("OUTCORE_TEST_PG_CA") {
        Ok(ca) if !ca.is_empty() => ca,
        _ => {
            if std::env::var("OUTCORE_REQUIRE_PG").as_deref() == Ok("1") {
                panic!("OUTCORE_REQUIRE_PG=1 but the test server has no TLS (OUTCORE_TEST_PG_CA unset)");
            }
            eprintln!("SKIPPED: TLS test (no OUTCORE_TEST_PG_CA)");
            return None;
        }
    };
    let (url, db) = common::pg_database()?;
    let _ = admin;
    let sep = if url.contains('?') { '&' } else { '?' };
    Some((format!("{url}{sep}{query}"), ca, db))
}

/// Whether the store's own connections are encrypted, asked through the store's URL.
fn encrypted(url: &str) -> bool {
    let plain = url.split('?').next().unwrap().to_string();
    let mut c = postgres::Client::connect(&format!("{plain}?sslmode=disable"), postgres::NoTls).unwrap();
    // Open the store (its connection stays pooled), then look at every session of this database.
    let s = open(url).unwrap();
    s.head().unwrap();
    let db: String = c.query_one("SELECT current_database()", &[]).unwrap().get(0);
    let rows = c
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid
             WHERE a.datname = $1 AND s.pid <> pg_backend_pid()",
            &[&db],
        )
        .unwrap();
    assert!(!rows.is_empty());
    rows.iter().all(|r| r.get::<_, bool>(0))
}

#[test]
fn require_encrypts() {
    let Some((url, _, _db)) = target("sslmode=require") else { return };
    assert!(encrypted(&url));
}

#[test]
fn disable_does_not_encrypt() {
    let Some((url, _, _db)) = target("sslmode=disable") else { return };
    assert!(!encrypted(&url));
}

#[test]
fn verify_full_accepts_the_right_ca() {
    let Some((url, ca, _db)) = target("sslmode=verify-full") else { return };
    assert!(encrypted(&format!("{url}&sslrootcert={ca}")));
}

#[test]
fn verify_full_rejects_an_unknown_ca() {
    let Some((url, _, _db)) = target("sslmode=verify-full") else { return };
    // A CA that did not sign the server's certificate: the system roots do not know it either.
    match open(&url) {
        Err(e @ Error::BadLocation { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("certificate") && msg.contains("verify-full"), "{msg}");
        }
        other => panic!("expected a certificate error, got {other:?}"),
    }
}

#[test]
fn verify_full_checks_the_host_name() {
    let Some((url, ca, _db)) = target("sslmode=verify-full") else { return };
    // The certificate names 127.0.0.1 and localhost, not 127.0.0.2 (same server, other name).
    let other = url.replace("127.0.0.1", "127.0.0.2");
    if other == url {
        return;
    }
    match open(&format!("{other}&sslrootcert={ca}")) {
        Err(e @ Error::BadLocation { .. }) => assert!(e.to_string().contains("certificate"), "{e}"),
        other => panic!("expected a host name mismatch, got {other:?}"),
    }
    // verify-ca checks the chain only, so the same connection is accepted.
    let ok = open(&format!("{}&sslrootcert={ca}", other.replace("verify-full", "verify-ca")));
    assert!(ok.is_ok(), "{ok:?}");
}
