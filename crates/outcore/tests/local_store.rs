//! A local store through the page-cache engine, across processes: a reader's old snapshot keeps
//! its bytes while another process commits (in place and to new extents) and collects garbage;
//! SIGKILL at any moment of mapped commits loses nothing and leaves no partial commit; a full
//! disk fails the commit and leaves the store intact.
//!
//! Child processes are this test binary re-executed on an ignored entry point.

use outcore::{Array, ArraySpec, Connection, Db, DbOptions};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

const BS: u64 = 64 << 10;
/// Elements of the f64 test array: 16 blocks.
const N: usize = 16 * BS as usize / 8;

fn options() -> DbOptions {
    DbOptions::default().blksize(BS)
}

fn child(entry: &str, url: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args(["--exact", entry, "--include-ignored", "--nocapture", "--test-threads=1"]);
    cmd.env("OUTCORE_CHILD_URL", url);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

fn create(url: &str, value: f64) {
    let db = Db::open(url, options()).expect("open");
    let conn = db.connect().expect("connect");
    let a = conn.create("a", ArraySpec::of::<f64>([N as u64])).expect("create");
    a.as_array_view_mut::<f64>().expect("view").view_mut().fill(value);
    conn.commit().expect("commit");
}

/// In a child process: array "a" of the store the parent names in `OUTCORE_CHILD_URL`, in a
/// new connection (with its `Db`).
fn child_array() -> (Db, Connection, Array) {
    let url = std::env::var("OUTCORE_CHILD_URL").expect("url");
    let db = Db::open(&url, options()).expect("open");
    let conn = db.connect().expect("connect");
    let a = conn.open("a").expect("open a");
    (db, conn, a)
}

#[test]
#[ignore = "child process: holds an old snapshot"]
fn child_old_reader() {
    let (_db, conn, a) = child_array();
    let g = a.as_array_view::<f64>().expect("view");
    assert!(g.view().iter().all(|v| *v == 1.0));
    println!("ready");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("stdin");
    // The writer committed and collected garbage meanwhile: this snapshot still reads its data,
    // through pages already mapped and pages mapped for the first time now (dropped first).
    assert!(g.view().iter().all(|v| *v == 1.0), "the old snapshot changed");
    let fresh = a.as_array_view::<f64>().expect("view");
    assert!(fresh.view().iter().all(|v| *v == 1.0), "the old snapshot changed");
    conn.sync().expect("sync");
    let want: Vec<f64> = line.split_whitespace().map(|v| v.parse().expect("number")).collect();
    let now: Vec<f64> = a.as_array_view::<f64>().expect("view").view().iter().copied().collect();
    assert_eq!(now.len(), want.len());
    assert!(now == want, "after sync the reader sees the newest data");
    println!("ok");
}

#[test]
fn an_old_snapshot_in_another_process_survives_commits_and_gc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = dir.path().join("s.outcore").to_str().expect("utf-8").to_string();
    create(&url, 1.0);
    let mut reader = child("child_old_reader", &url).spawn().expect("spawn");
    let mut out = BufReader::new(reader.stdout.take().expect("stdout"));
    let mut line = String::new();
    while !line.contains("ready") {
        line.clear();
        assert!(out.read_line(&mut line).expect("ready") > 0, "the reader ended before it was ready");
    }

    let db = Db::open(&url, options()).expect("open");
    let conn = db.connect().expect("connect");
    let a = conn.open("a").expect("open a");
    let mut model = vec![1.0f64; N];
    for t in 0..40usize {
        let mut g = a.as_array_view_mut::<f64>().expect("view");
        let mut v = g.view_mut();
        if t % 10 == 9 {
            // A whole block rewritten.
            let b = (t * 3) % 16;
            for i in b * 8192..(b + 1) * 8192 {
                v[[i]] = t as f64;
                model[i] = t as f64;
            }
        } else {
            for k in 0..5 {
                let i = (t * 7919 + k * 104_729) % N;
                v[[i]] = (t * 10 + k) as f64;
                model[i] = (t * 10 + k) as f64;
            }
        }
        drop(g);
        conn.commit().expect("commit");
        if t % 10 == 5 {
            db.gc(None).expect("gc");
        }
    }
    let text: Vec<String> = model.iter().map(|v| v.to_string()).collect();
    let mut stdin = reader.stdin.take().expect("stdin");
    writeln!(stdin, "{}", text.join(" ")).expect("write");
    drop(stdin);
    let status = reader.wait().expect("wait");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).expect("read");
    let mut err = String::new();
    std::io::Read::read_to_string(reader.stderr.as_mut().expect("stderr"), &mut err).expect("stderr");
    assert!(status.success() && rest.contains("ok"), "reader failed: {rest}\n{err}");
    let check = db.check(|_| {}).expect("check");
    assert!(check.ok(), "{check:?}");
}

/// The commit that gets tid `t` (after the array's creation at tid 1): which elements it sets.
fn crash_commit(t: u64) -> Vec<usize> {
    if t % 4 == 0 {
        let b = (t as usize * 5) % 16;
        (b * 8192..(b + 1) * 8192).collect()
    } else {
        (0..6).map(|k| (t as usize * 7919 + k * 104_729) % N).collect()
    }
}

#[test]
#[ignore = "child process: commits until killed"]
fn child_committer() {
    let (_db, conn, a) = child_array();
    let mut stdout = std::io::stdout();
    loop {
        let t = conn.tid() + 1;
        {
            let mut g = a.as_array_view_mut::<f64>().expect("view");
            let mut v = g.view_mut();
            for i in crash_commit(t) {
                v[[i]] = t as f64;
            }
        }
        let got = conn.commit().expect("commit");
        assert_eq!(got, t);
        writeln!(stdout, "committed {t}").expect("stdout");
        stdout.flush().expect("flush");
    }
}

/// The tids a child reports on `stdout` (`committed <tid>` lines), read by a thread.
fn committed_tids(stdout: std::process::ChildStdout) -> (std::sync::mpsc::Receiver<u64>, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let tids = BufReader::new(stdout).lines().map_while(Result::ok);
        for t in tids.filter_map(|line| line.strip_prefix("committed ").map(|t| t.parse::<u64>().expect("tid"))) {
            let _ = tx.send(t);
        }
    });
    (rx, reader)
}

#[test]
fn sigkill_during_mapped_commits_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = dir.path().join("k.outcore").to_str().expect("utf-8").to_string();
    create(&url, 0.0);
    let mut reported = 1u64;
    for round in 0..12u64 {
        let mut proc = child("child_committer", &url).spawn().expect("spawn");
        let (rx, lines) = committed_tids(proc.stdout.take().expect("stdout"));
        let first = rx.recv_timeout(Duration::from_secs(60)).expect("the child commits");
        reported = reported.max(first);
        std::thread::sleep(Duration::from_millis(round * 13 % 70));
        proc.kill().expect("SIGKILL");
        proc.wait().expect("wait");
        lines.join().expect("reader");
        reported = rx.try_iter().fold(reported, u64::max);
        // A new process's view: every commit up to the head whole, nothing of a later one.
        let db = Db::open(&url, options()).expect("reopen");
        let head = db.head().expect("head");
        assert!(head >= reported && head <= reported + 1, "round {round}: head {head}, reported {reported}");
        let mut model = vec![0.0f64; N];
        for t in 2..=head {
            for i in crash_commit(t) {
                model[i] = t as f64;
            }
        }
        let conn = db.connect().expect("connect");
        let got: Vec<f64> =
            conn.open("a").expect("a").as_array_view::<f64>().expect("view").view().iter().copied().collect();
        let bad = (0..N).find(|i| got[*i] != model[*i]);
        assert!(bad.is_none(), "round {round}: element {bad:?} at head {head}");
        assert!(db.check(|_| {}).expect("check").ok());
        reported = head;
    }
}

#[test]
fn a_full_disk_fails_the_commit_and_leaves_the_store_intact() {
    let mnt = tempfile::tempdir().expect("tempdir");
    let m = mnt.path().to_str().expect("utf-8");
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=16m", "tmpfs", m]).status();
    if !matches!(mounted, Ok(s) if s.success()) {
        eprintln!("SKIPPED: mounting a small tmpfs needs root");
        return;
    }
    struct Unmount(String);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _u = Unmount(m.to_string());
    let url = format!("{m}/full.outcore");
    create(&url, 1.0); // 1 MiB
    let db = Db::open(&url, options()).expect("open");
    let conn = db.connect().expect("connect");
    let a = conn.open("a").expect("a");
    // 20 MiB: more than the disk holds.
    a.resize(&[N as u64 * 20]).expect("grow");
    a.as_array_view_mut::<f64>().expect("view").view_mut().fill(2.0);
    let e = conn.commit().expect_err("the disk is full");
    let msg = e.to_string();
    assert!(msg.contains("No space") || msg.contains("full") || msg.contains("space"), "{msg}");
    conn.abort().expect("abort");
    drop((a, conn, db));
    let db = Db::open(&url, options()).expect("reopen");
    let conn = db.connect().expect("connect");
    let a = conn.open("a").expect("a");
    assert_eq!(a.shape().expect("shape"), vec![N as u64]);
    assert!(a.as_array_view::<f64>().expect("view").view().iter().all(|v| *v == 1.0));
    assert!(db.check(|_| {}).expect("check").ok());
    // A commit that fits still works.
    a.as_array_view_mut::<f64>().expect("view").view_mut()[[5]] = 3.0;
    conn.commit().expect("commit after the failure");
}

fn sql(url: &str, q: &str) -> i64 {
    rusqlite::Connection::open(url).expect("sqlite").query_row(q, [], |r| r.get(0)).expect(q)
}

fn data_len(url: &str) -> u64 {
    std::fs::metadata(format!("{url}.blocks")).expect("data file").len()
}

#[test]
fn appends_are_written_once_into_staged_extents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = dir.path().join("a.outcore").to_str().expect("utf-8").to_string();
    let db = Db::open(&url, options()).expect("open");
    let conn = db.connect().expect("connect");
    let a = conn.create("a", ArraySpec::of::<f64>([0])).expect("create");
    assert_eq!(a.engine().expect("engine"), outcore::pager::FileEngine::PageCache);
    let per_block = BS as usize / 8;
    let values: Vec<f64> = (0..4 * per_block).map(|i| i as f64).collect();
    a.append(&values[..per_block + 100]).expect("append");
    a.append(&values[per_block + 100..]).expect("append");
    assert_eq!(sql(&url, "SELECT count(*) FROM outcore_staged"), 4, "four staged blocks");
    {
        let g = a.as_array_view::<f64>().expect("view");
        assert!(g.view().iter().copied().eq(values.iter().copied()), "the view shows the staged bytes");
    }
    // A write through the view into a staged block is committed with it.
    a.as_array_view_mut::<f64>().expect("view").view_mut()[[per_block + 7]] = -1.0;
    assert!(conn.has_changes().expect("has_changes"));
    conn.commit().expect("commit");
    assert_eq!(sql(&url, "SELECT count(*) FROM outcore_staged"), 0);
    assert_eq!(data_len(&url), 4 * BS, "each block written once, where it stays");
    let mut want = values.clone();
    want[per_block + 7] = -1.0;
    let fresh = Db::open(&url, options()).expect("reopen").connect().expect("connect");
    let got: Vec<f64> =
        fresh.open("a").expect("a").as_array_view::<f64>().expect("view").view().iter().copied().collect();
    assert!(got == want);
    drop(fresh);

    // Aborted appends give their extents back; so do appends cut by a shrink.
    a.append(&values[..2 * per_block]).expect("append");
    conn.abort().expect("abort");
    assert_eq!(sql(&url, "SELECT count(*) FROM outcore_staged"), 0);
    a.append(&values[..2 * per_block]).expect("append");
    a.resize(&[(4 * per_block + 10) as u64]).expect("shrink");
    conn.commit().expect("commit");
    assert_eq!(sql(&url, "SELECT count(*) FROM outcore_staged"), 0);
    assert!(data_len(&url) <= 6 * BS, "released extents are reused: {}", data_len(&url));
    let got: Vec<f64> = a.as_array_view::<f64>().expect("view").view().iter().copied().collect();
    assert_eq!(got.len(), 4 * per_block + 10);
    assert!(got[..4 * per_block] == want[..] && got[4 * per_block..] == values[..10]);
    // The tail cut by the shrink reads zeros when the array grows again.
    a.resize(&[(5 * per_block) as u64]).expect("grow");
    conn.commit().expect("commit");
    let fresh = Db::open(&url, options()).expect("reopen").connect().expect("connect");
    let got: Vec<f64> =
        fresh.open("a").expect("a").as_array_view::<f64>().expect("view").view().iter().copied().collect();
    assert!(got[4 * per_block + 10..].iter().all(|v| *v == 0.0));
    assert!(db.check(|_| {}).expect("check").ok());
}
