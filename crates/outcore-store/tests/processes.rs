//! Multi-process behaviour on both backends: commits survive SIGKILL at random moments whole
//! or not at all, and two processes committing at once get exactly the expected conflicts.
//!
//! The child processes are this test binary re-executed on an `#[ignore]`d entry point.

mod common;

use common::Fixture;
use outcore_store::{open, ArrayId, ArrayMeta, Codec, Commit, Error, Order, Store};
use rand::RngExt;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

const BS: u64 = 64 << 10;
const NBLK: u64 = 16;

fn meta(shape0: u64) -> ArrayMeta {
    ArrayMeta {
        dtype: "<u1".into(),
        shape: vec![shape0],
        order: Order::C,
        blksize: BS,
        codec: Codec::None,
        nbytes: NBLK * BS,
        attrs: Default::default(),
        fill: None,
    }
}

/// Blocks written by the crash-test commit that gets tid `t`, and their content.
fn crash_commit(t: u64) -> Vec<(u64, Vec<u8>)> {
    (0..4u64)
        .map(|j| {
            let blk = (t * 3 + j * 5) % NBLK;
            let len = (BS / 2) as usize + (t as usize % 7) * 1000 + j as usize;
            let mut d = vec![(t % 251) as u8 + 1; len];
            d[..8].copy_from_slice(&t.to_le_bytes());
            (blk, d)
        })
        .collect()
}

fn child(entry: &str, env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args(["--exact", entry, "--include-ignored", "--nocapture", "--test-threads=1"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    cmd
}

#[test]
#[ignore = "child process of the crash test"]
fn child_committer() {
    let url = std::env::var("OUTCORE_CHILD_URL").expect("url");
    let id = ArrayId(std::env::var("OUTCORE_CHILD_ARRAY").expect("array").parse().expect("id"));
    let store = open(&url).expect("open");
    let mut out = std::io::stdout();
    loop {
        let head = store.head().expect("head");
        let t = head + 1;
        let mut c = Commit::new().with_description(format!("commit {t}")).with_extension(serde_json::json!({ "t": t }));
        c.put_array(id, "crash", meta(t));
        for (blk, d) in crash_commit(t) {
            c.write_block(id, blk, d);
        }
        let got = store.commit(head, c).expect("commit");
        assert_eq!(got, t);
        writeln!(out, "committed {t}").expect("stdout");
        out.flush().expect("flush");
    }
}

/// Rounds of a child committing in a loop, killed at a random moment (25 rounds on SQLite, 15 on
/// PostgreSQL).
fn commits_survive_sigkill(f: &Fixture) {
    let kills = if f.backend == "sqlite" { 25 } else { 15 };
    let id = ArrayId::random();
    let mut c = Commit::new();
    c.put_array(id, "crash", meta(0));
    let t0 = f.store.commit(0, c).unwrap();
    let mut rng = rand::rng();
    let mut reported = t0;
    for round in 0..kills {
        let mut proc = child(
            "child_committer",
            &[("OUTCORE_CHILD_URL", f.url.clone()), ("OUTCORE_CHILD_ARRAY", id.0.to_string())],
        )
        .spawn()
        .expect("spawn child");
        let stdout = proc.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(t) = line.strip_prefix("committed ") {
                    let _ = tx.send(t.parse::<u64>().expect("tid"));
                }
            }
        });
        // Wait for the first commit of this round, then kill at a random moment.
        let first = rx.recv_timeout(Duration::from_secs(60)).expect("child commits");
        reported = reported.max(first);
        std::thread::sleep(Duration::from_millis(rng.random_range(0..150)));
        proc.kill().expect("SIGKILL");
        let status = proc.wait().expect("wait");
        assert!(!status.success());
        reader.join().expect("reader");
        for t in rx.try_iter() {
            reported = reported.max(t);
        }
        // Reopen as a new process would, and check the store holds exactly whole commits.
        let s = open(&f.url).expect("reopen after kill");
        let head = s.head().unwrap();
        assert!(head >= reported, "round {round}: commit {reported} was reported but head is {head}");
        assert!(head <= reported + 1, "round {round}: head {head} beyond the one commit in flight");
        verify_whole(&*s, id, t0, head);
        reported = head;
    }
}

fn verify_whole(s: &dyn Store, id: ArrayId, t0: u64, head: u64) {
    let hist = s.history(t0, head).unwrap();
    assert_eq!(hist.len() as u64, head - t0);
    let mut buf = vec![0u8; BS as usize];
    for h in hist {
        let t = h.tid;
        assert_eq!(h.description, format!("commit {t}"));
        assert_eq!(s.array("crash", t).unwrap().unwrap().meta.shape, vec![t]);
        for (blk, d) in crash_commit(t) {
            s.load(id, blk, t, &mut buf).unwrap();
            assert_eq!(&buf[..d.len()], &d[..], "tid {t} block {blk}");
            assert!(buf[d.len()..].iter().all(|b| *b == 0));
        }
    }
}

#[test]
#[ignore = "child process of the concurrency test"]
fn child_racer() {
    let url = std::env::var("OUTCORE_CHILD_URL").expect("url");
    let id = ArrayId(std::env::var("OUTCORE_CHILD_ARRAY").expect("array").parse().expect("id"));
    let base: u64 = std::env::var("OUTCORE_CHILD_BASE").expect("base").parse().expect("base");
    let me: u8 = std::env::var("OUTCORE_CHILD_ME").expect("me").parse().expect("me");
    let go = std::env::var("OUTCORE_CHILD_GO").expect("go");
    let store = open(&url).expect("open");
    // Conflicting pair: child 1 writes blocks {0, 1}, child 2 writes {1, 2}.
    let mut c = Commit::new();
    for blk in [me as u64 - 1, me as u64] {
        c.write_block(id, blk, vec![me; 100]);
    }
    // Non-conflicting: block 8 + me, from the same stale base.
    let mut free = Commit::new();
    free.write_block(id, 8 + me as u64, vec![me; 100]);
    while !std::path::Path::new(&go).exists() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let r1 = store.commit(base, c);
    let r2 = store.commit(base, free);
    let show = |r: &Result<u64, Error>| match r {
        Ok(t) => format!("ok {t}"),
        Err(Error::Conflict(_)) => "conflict".to_string(),
        Err(e) => format!("error {e}"),
    };
    println!("result {} {}", show(&r1), show(&r2));
}

/// Four rounds of two child processes committing at once from the same base.
fn two_processes_conflict_exactly(f: &Fixture) {
    for round in 0..4 {
        let id = ArrayId::random();
        let mut c = Commit::new();
        c.put_array(id, format!("race{round}"), meta(0));
        let base = f.store.commit(f.store.head().unwrap(), c).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let go = dir.path().join("go");
        let procs: Vec<_> = (1..=2u8)
            .map(|me| {
                child(
                    "child_racer",
                    &[
                        ("OUTCORE_CHILD_URL", f.url.clone()),
                        ("OUTCORE_CHILD_ARRAY", id.0.to_string()),
                        ("OUTCORE_CHILD_BASE", base.to_string()),
                        ("OUTCORE_CHILD_ME", me.to_string()),
                        ("OUTCORE_CHILD_GO", go.to_str().unwrap().to_string()),
                    ],
                )
                .spawn()
                .unwrap()
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        std::fs::write(&go, b"go").unwrap();
        let results: Vec<String> = procs
            .into_iter()
            .map(|p| {
                let out = p.wait_with_output().unwrap();
                let text = String::from_utf8_lossy(&out.stdout).to_string();
                text.lines().find_map(|l| l.find("result ").map(|i| l[i + 7..].to_string())).unwrap_or(text)
            })
            .collect();
        let won: Vec<bool> = results.iter().map(|r| r.starts_with("ok")).collect();
        assert_eq!(
            won.iter().filter(|w| **w).count(),
            1,
            "round {round}: exactly one conflicting commit wins: {results:?}"
        );
        for r in &results {
            let words: Vec<&str> = r.split_whitespace().collect();
            let second = if words.first() == Some(&"ok") { &words[2..] } else { &words[1..] };
            assert_eq!(second.first(), Some(&"ok"), "the non-conflicting commit must succeed: {r}");
        }
        let winner = if won[0] { 1u8 } else { 2u8 };
        let s = &*f.store;
        let head = s.head().unwrap();
        assert_eq!(head, base + 3);
        let mut buf = vec![0u8; BS as usize];
        let read = |blk: u64, buf: &mut Vec<u8>| {
            s.load(id, blk, head, buf).unwrap();
            buf[0]
        };
        assert_eq!(read(1, &mut buf), winner);
        assert_eq!(read(winner as u64 - 1, &mut buf), winner);
        let loser = 3 - winner;
        let loser_only = if loser == 1 { 0 } else { 2 };
        assert_eq!(read(loser_only, &mut buf), 0, "nothing of the losing commit is stored");
        assert_eq!(read(9, &mut buf), 1);
        assert_eq!(read(10, &mut buf), 2);
    }
}

backends!(commits_survive_sigkill, two_processes_conflict_exactly);

#[test]
#[ignore = "child process of the group-leader test"]
fn child_group_member() {
    let url = std::env::var("OUTCORE_CHILD_URL").expect("url");
    let id = ArrayId(std::env::var("OUTCORE_CHILD_ARRAY").expect("array").parse().expect("id"));
    let blk: u64 = std::env::var("OUTCORE_CHILD_BLK").expect("blk").parse().expect("blk");
    let store = open(&url).expect("open");
    let mut out = std::io::stdout();
    for n in 0u64.. {
        // One page of its own block a commit: small, in place, so that it may go in a group.
        let (page, value) = ((n % 16) as u32, (n % 250) as u8 + 1);
        let mut c = Commit::new();
        c.write_pages_from(id, blk, [page], move |_: &[u32], buf: &mut [u8]| {
            buf[page as usize * 4096..(page as usize + 1) * 4096].fill(value);
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        });
        let line = match store.commit(store.head().expect("head"), c) {
            Ok(t) => format!("committed {t} {page} {value}"),
            Err(e) => format!("error {e}"),
        };
        writeln!(out, "{line}").expect("stdout");
        out.flush().expect("flush");
    }
}

/// A group-commit leader dies (`OUTCORE_FAILPOINT`, an abort as a kill would) with other
/// processes' commits in its group, before sending it and after the server committed it: each
/// member finds out on its own (landed: its tid; not sent: it commits again, alone) and goes
/// on; every commit a member reported is in the store with its bytes.
#[test]
fn a_group_leader_killed_with_other_commits_in_flight() {
    use std::os::unix::process::ExitStatusExt;
    let Some(f) = common::postgres() else { return };
    const MEMBERS: u64 = 3;
    for point in ["group-leader-before-send", "group-leader-after-reply"] {
        let id = ArrayId::random();
        let mut c = Commit::new();
        c.put_array(id, point, meta(0));
        for blk in 0..=MEMBERS {
            c.write_block(id, blk, vec![0xEE; BS as usize]);
        }
        f.store.commit(f.store.head().unwrap(), c).unwrap();
        let spawn = |blk: u64, failpoint: Option<&str>| {
            let mut env = vec![
                ("OUTCORE_CHILD_URL", f.url.clone()),
                ("OUTCORE_CHILD_ARRAY", id.0.to_string()),
                ("OUTCORE_CHILD_BLK", blk.to_string()),
            ];
            if let Some(p) = failpoint {
                env.push(("OUTCORE_FAILPOINT", p.to_string()));
            }
            let mut cmd = child("child_group_member", &env);
            if failpoint.is_some() {
                cmd.stderr(Stdio::piped());
            }
            cmd.spawn().expect("spawn child")
        };
        let (tx, rx) = std::sync::mpsc::channel::<(u64, String)>();
        let mut members = Vec::new();
        let mut readers = Vec::new();
        for blk in 0..MEMBERS {
            let mut p = spawn(blk, None);
            let stdout = p.stdout.take().expect("stdout");
            let tx = tx.clone();
            readers.push(std::thread::spawn(move || {
                // (The test harness prints its own lines too.)
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if line.starts_with("committed ") || line.starts_with("error ") {
                        let _ = tx.send((blk, line));
                    }
                }
            }));
            members.push(p);
        }
        drop(tx);
        let mut leader = spawn(MEMBERS, Some(point));
        // The leader dies the first time it leads a group with others in it.
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        let status = loop {
            if let Some(s) = leader.try_wait().unwrap() {
                break s;
            }
            assert!(std::time::Instant::now() < deadline, "{point}: the leader never led a group with others");
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut said = String::new();
        leader.stderr.take().expect("stderr").read_to_string(&mut said).unwrap();
        assert!(
            status.signal() == Some(libc::SIGABRT) && said.contains(&format!("outcore: failpoint {point}: aborting")),
            "{point}: the leader died at the failpoint: {status:?} {said}"
        );
        // The members go on: 20 more commits each after the leader's death.
        let mut reports: Vec<(u64, String)> = rx.try_iter().collect();
        let mut after = [0u32; MEMBERS as usize];
        while after.iter().any(|n| *n < 20) {
            let (blk, line) = rx.recv_timeout(Duration::from_secs(60)).expect("members keep committing");
            after[blk as usize] += 1;
            reports.push((blk, line));
        }
        for mut p in members {
            p.kill().unwrap();
            p.wait().unwrap();
        }
        for r in readers {
            r.join().unwrap();
        }
        reports.extend(rx.try_iter());
        // No member saw an error; each reported commit holds its page.
        let s = open(&f.url).unwrap();
        let mut buf = vec![0u8; BS as usize];
        for (blk, line) in &reports {
            let words: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(words.first(), Some(&"committed"), "{point}: member {blk}: {line}");
            let (t, page, value): (u64, usize, u8) =
                (words[1].parse().unwrap(), words[2].parse().unwrap(), words[3].parse().unwrap());
            s.load(id, *blk, t, &mut buf).unwrap();
            assert!(
                buf[page * 4096..(page + 1) * 4096].iter().all(|b| *b == value),
                "{point}: member {blk}'s commit {t} (page {page} = {value}) is not in the store"
            );
        }
    }
}
