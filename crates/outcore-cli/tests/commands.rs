//! The inspection commands never create a store; export/import of .npy round-trip; cp copies
//! history between local stores and verifies.

use std::process::Command;

fn outcore(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_outcore")).args(args).output().unwrap()
}

#[test]
fn inspection_of_a_missing_store_fails_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("typo.outcore");
    for cmd in ["info", "log", "check", "gc"] {
        let out = outcore(&[cmd, p.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("no store"), "{cmd}");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn npy_round_trip_and_cp_with_history() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    assert!(outcore(&["demo", "--size", "4", "--path", &d("a.outcore")]).status.success());
    assert!(outcore(&["export", &d("a.outcore"), "signal", &d("s.npy")]).status.success());
    let npy = std::fs::read(d("s.npy")).unwrap();
    assert!(npy.len() > 4 << 20 && npy.starts_with(b"\x93NUMPY"));
    assert!(outcore(&["import", &d("b.outcore"), "copy", &d("s.npy")]).status.success());
    assert!(outcore(&["export", &d("b.outcore"), "copy", &d("t.npy")]).status.success());
    assert_eq!(std::fs::read(d("t.npy")).unwrap(), npy);

    let out = outcore(&["--json", "cp", &d("a.outcore"), &d("c.outcore")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["commits"], 2);
    let log = |p: &str| {
        let o = outcore(&["--json", "log", "-n", "0", p]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v.as_array().unwrap().iter().map(|t| t["note"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(log(&d("a.outcore")), log(&d("c.outcore")));
    assert!(outcore(&["export", &d("c.outcore"), "signal", &d("u.npy")]).status.success());
    assert_eq!(std::fs::read(d("u.npy")).unwrap(), npy);
    // cp refuses to write over an existing store.
    assert_eq!(outcore(&["cp", &d("a.outcore"), &d("c.outcore")]).status.code(), Some(1));
}
