//! Serializability under contention: threads, each with its own connection, increment a shared
//! counter and a private one, retrying after conflicts. Every successful increment must be
//! counted exactly once: a lost update would mean a commit overwrote a block it read at an old
//! snapshot, or a boundary failed to invalidate a block another connection changed.

mod common;

use common::Fixture;
use outcore::{ArraySpec, Connection};

const THREADS: u64 = 4;
const ROUNDS: u64 = 20;
/// Elements per 16 KiB block of u64.
const PER_BLOCK: u64 = common::BS / 8;

fn bump(conn: &Connection, idx: u64) {
    let a = conn.open("counters").expect("open");
    let mut g = a.slice_view_mut::<u64>(std::slice::from_ref(&(idx..idx + 1))).expect("view");
    g.view_mut()[[0]] += 1;
}

fn increments_are_never_lost(f: &Fixture) {
    let setup = f.db.connect().expect("connect");
    setup.create("counters", ArraySpec::of::<u64>([PER_BLOCK * (THREADS + 1)])).expect("create");
    setup.commit().expect("commit");
    let conflicts: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let db = f.db.clone();
                s.spawn(move || {
                    let conn = db.connect().expect("connect");
                    let mut conflicts = 0;
                    for _ in 0..ROUNDS {
                        loop {
                            bump(&conn, 0);
                            bump(&conn, PER_BLOCK * (t + 1));
                            match conn.commit() {
                                Ok(_) => break,
                                Err(e) if e.is_conflict() => {
                                    conflicts += 1;
                                    conn.abort().expect("abort");
                                }
                                Err(e) => panic!("commit: {e}"),
                            }
                        }
                    }
                    conflicts
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).sum()
    });
    let conn = f.reopen().connect().expect("connect");
    let g = conn.open("counters").expect("open").as_array_view::<u64>().expect("view");
    let v = g.view();
    assert_eq!(v[[0]], THREADS * ROUNDS, "{conflicts} conflicts");
    for t in 0..THREADS {
        assert_eq!(v[[(PER_BLOCK * (t + 1)) as usize]], ROUNDS);
    }
    eprintln!("{}: {} commits, {conflicts} conflicts", f.backend, THREADS * ROUNDS);
}

backends!(increments_are_never_lost);
