//! SQLite commits return once their WAL frames are durable; copying them into the database file
//! happens in the background, and nothing is lost if the process dies before it does.

mod common;

use outcore_store::{open, ArrayId, ArrayMeta, Codec, Commit, Order};
use std::time::{Duration, Instant};

const BS: usize = 2 << 20;

fn fill(store: &dyn outcore_store::Store, nblk: usize, value: u8) -> (ArrayId, u64) {
    let id = ArrayId::random();
    let mut c = Commit::new();
    // A compressed array keeps its blocks in SQLite (incompressible ones stored raw there);
    // uncompressed arrays would put them in the data file.
    let meta = ArrayMeta::new("<u1", vec![(nblk * BS) as u64], Order::C, (nblk * BS) as u64);
    c.put_array(id, format!("a{value}"), ArrayMeta { codec: Codec::Lz4, ..meta });
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ value as u64;
    for b in 0..nblk {
        let mut data: Vec<u8> = (0..BS)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        data[0] = value;
        data[BS - 1] = value;
        c.write_block(id, b as u64, data);
    }
    (id, store.commit(store.head().unwrap(), c).unwrap())
}

#[test]
fn commits_reach_the_database_file_in_the_background() {
    let f = common::sqlite();
    let db_len = || std::fs::metadata(&f.url).unwrap().len();
    let before = db_len();
    fill(&*f.store, 8, 3);
    // The store stays open and nothing else is committed: only the checkpoint thread can copy
    // the 16 MiB from the WAL into the database file.
    let deadline = Instant::now() + Duration::from_secs(30);
    while db_len() < before + 16 * BS as u64 / 2 {
        assert!(Instant::now() < deadline, "the WAL was not checkpointed: {} bytes", db_len());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Reads and further commits are unaffected.
    let (id, t) = fill(&*f.store, 2, 5);
    let mut buf = vec![0u8; BS];
    f.reopen().load(id, 1, t, &mut buf).unwrap();
    assert!(buf[0] == 5 && buf[BS - 1] == 5);
}

#[test]
#[ignore = "child process of the kill test"]
fn child_commits_then_is_killed() {
    let url = std::env::var("OUTCORE_CHILD_URL").expect("url");
    let store = open(&url).expect("open");
    let (id, t) = fill(&*store, 8, 7);
    println!("committed {} {t}", id.0);
    // Die before the checkpoint thread can be expected to have run.
    std::process::abort();
}

#[test]
fn a_commit_whose_checkpoint_never_ran_survives_a_kill() {
    let f = common::sqlite();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_commits_then_is_killed", "--include-ignored", "--nocapture"])
        .env("OUTCORE_CHILD_URL", &f.url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find_map(|l| l.strip_prefix("committed ")).expect("the child committed");
    let (id, t) = line.split_once(' ').unwrap();
    let (id, t) = (ArrayId(id.parse().unwrap()), t.parse::<u64>().unwrap());
    let s = open(&f.url).unwrap();
    assert_eq!(s.head().unwrap(), t);
    let mut buf = vec![0u8; BS];
    for b in 0..8 {
        s.load(id, b, t, &mut buf).unwrap();
        assert!(buf[0] == 7 && buf[BS - 1] == 7, "block {b}");
    }
}
