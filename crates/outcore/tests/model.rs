//! Random operation sequences of two connections (writes, resizes, appends, commits, aborts,
//! syncs) against a plain `Vec` model of the committed state and of each transaction.
//!
//! Invariants checked after every step: a connection reads exactly its snapshot plus its own
//! changes; a commit stores the transaction's written blocks and metadata merged over what
//! others committed, or (on conflict) nothing; abort restores the newest committed state.
//! At the end, read-only connections opened at some of the commits still read those states.

mod common;

use std::collections::BTreeSet;

use common::Fixture;
use outcore::pager::{Pager, PagerConfig};
use outcore::{ArraySpec, Connection, Db, DbOptions};

/// 4 KiB blocks of 512 float64.
const BS: u64 = 4096;
const PER_BLOCK: usize = 512;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One connection and the model of what it must read.
struct Side {
    conn: Connection,
    /// Committed state at its snapshot, then its own changes.
    view: Vec<f64>,
    dirty: BTreeSet<usize>,
    meta_changed: bool,
    min_len: usize,
    base_len: usize,
}

impl Side {
    fn new(db: &Db, committed: &[f64]) -> Side {
        let conn = db.connect().expect("connect");
        let mut s =
            Side { conn, view: Vec::new(), dirty: BTreeSet::new(), meta_changed: false, min_len: 0, base_len: 0 };
        s.reset(committed);
        s
    }

    fn reset(&mut self, committed: &[f64]) {
        self.view = committed.to_vec();
        self.dirty.clear();
        self.meta_changed = false;
        self.min_len = committed.len();
        self.base_len = committed.len();
    }

    fn check(&self, step: usize) {
        let a = self.conn.open("m").expect("open");
        assert_eq!(a.shape().expect("shape"), vec![self.view.len() as u64], "step {step}");
        let g = a.as_array_view::<f64>().expect("view");
        let got: Vec<f64> = g.view().iter().copied().collect();
        if let Some(i) = (0..got.len()).find(|i| got[*i] != self.view[*i]) {
            panic!("step {step}: element {i} reads {} instead of {}", got[i], self.view[i]);
        }
    }

    fn write(&mut self, start: usize, len: usize, val: f64) {
        let a = self.conn.open("m").expect("open");
        let r = start as u64..(start + len) as u64;
        a.slice_view_mut::<f64>(std::slice::from_ref(&r)).expect("view").view_mut().fill(val);
        for i in start..start + len {
            self.view[i] = val;
            self.dirty.insert(i / PER_BLOCK);
        }
    }

    fn resize(&mut self, n: usize) {
        self.conn.open("m").expect("open").resize(&[n as u64]).expect("resize");
        self.view.resize(n, 0.0);
        self.meta_changed = true;
        self.min_len = self.min_len.min(n);
    }

    fn append(&mut self, k: usize, val: f64) {
        self.conn.open("m").expect("open").append(&vec![val; k]).expect("append");
        let old = self.view.len();
        self.view.resize(old + k, val);
        (old..old + k).for_each(|i| {
            self.dirty.insert(i / PER_BLOCK);
        });
        self.meta_changed = true;
    }

    /// The committed state after this side's successful commit over `head`.
    fn merged(&self, head: &[f64]) -> Vec<f64> {
        let len = if self.meta_changed { self.view.len() } else { head.len() };
        let cut = self.min_len.min(self.base_len);
        (0..len)
            .map(|p| {
                if self.dirty.contains(&(p / PER_BLOCK)) || (self.meta_changed && p >= cut) {
                    self.view.get(p).copied().unwrap_or(0.0)
                } else {
                    head[p]
                }
            })
            .collect()
    }
}

fn side2_options() -> DbOptions {
    let budget = std::env::var("MODEL_BUDGET").ok().and_then(|v| v.parse().ok()).unwrap_or(2 * BS);
    let readahead = std::env::var("MODEL_READAHEAD").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let pager = Pager::new(PagerConfig { cache_budget: budget, readahead_blocks: readahead, ..PagerConfig::default() })
        .expect("pager");
    DbOptions::default().pager(pager)
}

fn run(f: &Fixture, seed: u64, steps: usize) {
    let setup = f.db.connect().expect("connect");
    setup.create("m", ArraySpec::of::<f64>([3000]).blksize(BS)).expect("create");
    setup.commit().expect("commit");
    let mut committed = vec![0.0; 3000];
    let dbs = [Db::open(&f.url, DbOptions::default()).expect("db 1"), Db::open(&f.url, side2_options()).expect("db 2")];
    let mut sides = [Side::new(&dbs[0], &committed), Side::new(&dbs[1], &committed)];
    let mut rng = Rng(seed);
    let trace = std::env::var("MODEL_TRACE").is_ok();
    let (mut commits, mut conflicts) = (0, 0);
    let mut history: Vec<(Connection, Vec<f64>)> = Vec::new();
    for step in 0..steps {
        let who = rng.below(2);
        let s = &mut sides[who];
        let val = (step + 1) as f64;
        let op = rng.below(20);
        if trace {
            eprintln!("step {step} side {who} op {op} len {} dirty {:?} tid {}", s.view.len(), s.dirty, s.conn.tid());
        }
        match op {
            0..=7 => {
                let n = s.view.len();
                if n > 0 {
                    let start = rng.below(n);
                    let len = 1 + rng.below((n - start).min(1500));
                    if trace {
                        eprintln!("  write {start}..{} = {val}", start + len);
                    }
                    s.write(start, len, val);
                }
            }
            8 | 9 => {
                let n = rng.below(4000);
                if trace {
                    eprintln!("  resize {n}");
                }
                s.resize(n);
            }
            10 => {
                let k = 1 + rng.below(700);
                if trace {
                    eprintln!("  append {k} x {val}");
                }
                s.append(k, val);
            }
            11..=15 => match s.conn.commit() {
                Ok(tid) => {
                    committed = s.merged(&committed);
                    s.reset(&committed);
                    commits += 1;
                    if commits % 10 == 0 {
                        // Keep a read-only connection at this snapshot: it must never change.
                        let old = dbs[0].connect_at(tid).expect("historical");
                        history.push((old, committed.clone()));
                    }
                }
                Err(e) if e.is_conflict() => {
                    s.conn.abort().expect("abort");
                    s.reset(&committed);
                    conflicts += 1;
                }
                Err(e) => panic!("step {step}: commit failed: {e}"),
            },
            16 | 17 => {
                s.conn.abort().expect("abort");
                s.reset(&committed);
            }
            _ => {
                if s.dirty.is_empty() && !s.meta_changed {
                    s.conn.sync().expect("sync");
                    s.reset(&committed);
                }
            }
        }
        s.check(step);
    }
    for s in &mut sides {
        s.conn.abort().expect("abort");
        s.reset(&committed);
        s.check(steps);
    }
    for (old, want) in &history {
        let g = old.open("m").expect("open").as_array_view::<f64>().expect("view");
        let got: Vec<f64> = g.view().iter().copied().collect();
        assert!(got == *want, "the snapshot at tid {} changed", old.tid());
    }
    eprintln!("{}: seed {seed}: {commits} commits, {conflicts} conflicts", f.backend);
    assert!(commits > 0 && conflicts > 0, "the sequence should exercise both outcomes");
}

fn random_sequences(f: &Fixture) {
    let (seeds, steps) = if f.backend == "sqlite" { (4, 300) } else { (2, 150) };
    for seed in 1..=seeds {
        run(f, 0x9e37_79b9_7f4a_7c15 ^ seed, steps);
        let c = f.db.connect().expect("connect");
        c.delete("m").expect("delete");
        c.commit().expect("commit");
    }
}

backends!(random_sequences);
