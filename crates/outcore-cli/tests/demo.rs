//! The demo command end to end: it writes, reopens, verifies, and reports values that match
//! the signal's closed form.

use std::process::Command;

#[test]
fn demo_creates_commits_reopens_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo.outcore");
    let out = Command::new(env!("CARGO_BIN_EXE_outcore"))
        .args(["demo", "--size", "8", "--path", path.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("shape (1048576,)"), "{stdout}");
    assert!(stdout.contains("verified"), "{stdout}");
    let expect: f64 = (0..1_048_576u64).map(|t| 15.0 * (0.2 * t as f64).sin()).sum();
    assert!(stdout.contains(&format!("sum {expect:.3}")), "{stdout}");
    // The history holds the 32 MiB transactions with their notes; running again replaces the array.
    let hist = Command::new(env!("CARGO_BIN_EXE_outcore")).args(["history", path.to_str().unwrap()]).output().unwrap();
    assert!(String::from_utf8_lossy(&hist.stdout).contains("demo: signal blocks 0..4"));
    let again = Command::new(env!("CARGO_BIN_EXE_outcore"))
        .args(["demo", "--size", "4", "--path", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(again.status.success());
    let info = Command::new(env!("CARGO_BIN_EXE_outcore")).args(["info", path.to_str().unwrap()]).output().unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert_eq!(info.matches("signal").count(), 1, "{info}");
    assert!(info.contains("(524288,)"), "{info}");
}

#[test]
fn opening_a_foreign_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.txt");
    std::fs::write(&p, "not a store").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_outcore")).args(["info", p.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an outcore store"));
}

#[test]
fn check_verifies_every_block_and_names_a_damaged_one() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.outcore");
    let p = path.to_str().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_outcore")).args(["demo", "--size", "8", "--path", p]).output().unwrap();
    assert!(out.status.success());
    let info = Command::new(env!("CARGO_BIN_EXE_outcore")).args(["info", p]).output().unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("engine page cache") && info.contains(".blocks"), "{info}");
    let ok = Command::new(env!("CARGO_BIN_EXE_outcore")).args(["check", p]).output().unwrap();
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success() && text.contains("no errors") && text.contains("4 blocks"), "{text}");
    // Flip a byte in the data file: check fails and names the array and block.
    let data = std::fs::OpenOptions::new().read(true).write(true).open(format!("{p}.blocks")).unwrap();
    let mut b = [0u8; 1];
    data.read_exact_at(&mut b, 12345).unwrap();
    data.write_all_at(&[b[0] ^ 0x10], 12345).unwrap();
    let bad = Command::new(env!("CARGO_BIN_EXE_outcore")).args(["check", p]).output().unwrap();
    let text = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{text}");
    assert!(text.contains("FAILED array 'signal' block") && text.contains("checksum"), "{text}");
}
