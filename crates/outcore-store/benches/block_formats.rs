//! The original system's block-format benchmark, re-created on the store: a 1-D int64 array,
//! 500 commits per workload, stored size and cold random block reads.
//!
//! - outcore: what the store keeps (each block's current content, plus the previous bytes of the
//!   pages every commit changed); the stored size is the payload bytes (`Store::stats`) and, in
//!   brackets, the size of the SQLite file.
//! - whole blocks (the original's ZBlk0: every changed block stored in full): its size is the sum
//!   of the changed blocks' contents of every commit, computed as the workload runs; its read
//!   cost is that of one whole stored block, measured on a store holding the final content in
//!   one version.
//! - chunk format (the original's ZBlk1: only changed 4 KiB chunks): its size is the sum of the
//!   dirty pages of every commit plus the initial fill, computed as the workload runs.
//!
//! Reads at an older snapshot (250 commits back) apply undo records: reported for reference.
//!
//! Workloads (N = 2,621,440 int64 = 20 MiB = 10 blocks of 2 MiB, prefilled, except Append):
//! - Append: 500 commits each appending 3,670 values (~1.4% of a block) to an empty array;
//! - RandWrite 20%: each commit changes one random element in 2 random blocks (20% of them);
//! - RandWrite 100%: each commit changes one random element in every block;
//! - Mix: each commit appends 3,670 values and changes one element in 20% of the blocks.
//!
//! Cold reads: a new process loads 10 distinct random blocks at the newest snapshot, each after
//! `echo 1 > /proc/sys/vm/drop_caches` (when permitted: so that no read profits from the
//! readahead of the one before, which favours a freshly written file); the median time per block
//! is reported (the median over 5 such processes).
//!
//! Run: `cargo bench -p outcore-store --bench block_formats` (SQLite, in `OUTCORE_BENCH_DIR` or
//! the current directory).

use outcore_store::{open, ArrayId, ArrayMeta, Commit, Order};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::BTreeSet;
use std::time::Instant;

const BLK: usize = 2 << 20;
const PAGE: usize = 4096;
const COMMITS: usize = 500;
const NBLK: usize = 10;
const APPEND_VALUES: usize = 3670;

#[derive(Clone, Copy, PartialEq)]
enum Workload {
    Append,
    Rand20,
    Rand100,
    Mix,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Append => "Append",
            Workload::Rand20 => "RandWrite 20%",
            Workload::Rand100 => "RandWrite 100%",
            Workload::Mix => "Mix",
        }
    }
}

/// What building a workload's store gives.
struct Built {
    path: String,
    id: ArrayId,
    /// Payload bytes (`Store::stats`).
    stored: u64,
    /// Size of the SQLite file and its WAL.
    file: u64,
    /// Computed size of the chunk format.
    chunk: u64,
    /// Computed size of the whole-block format.
    whole: u64,
    /// The tid 250 commits before the head.
    mid: u64,
    commit_s: f64,
}

fn file_size(path: &str) -> u64 {
    ["", "-wal"].iter().filter_map(|sfx| std::fs::metadata(format!("{path}{sfx}")).ok()).map(|m| m.len()).sum()
}

fn remove(path: &str) {
    for sfx in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{sfx}"));
    }
}

fn meta(nbytes: u64) -> ArrayMeta {
    ArrayMeta::new("<i8", vec![nbytes / 8], Order::C, nbytes)
}

/// Run a workload into a fresh store.
fn build(dir: &std::path::Path, w: Workload) -> (Built, Vec<u8>) {
    let path = dir.join(format!("{}.outcore", w.name().replace([' ', '%'], "_")));
    let _ = std::fs::remove_file(&path);
    let path = path.to_str().unwrap().to_string();
    let s = open(&path).unwrap();
    let mut rng = StdRng::seed_from_u64(42);
    let id = ArrayId::random();
    let prefill = if w == Workload::Append { 0 } else { NBLK * BLK };
    let mut content: Vec<u8> = Vec::with_capacity(NBLK * BLK + COMMITS * APPEND_VALUES * 8 + BLK);
    for i in 0..prefill / 8 {
        content.extend_from_slice(&(i as i64).to_le_bytes());
    }
    let mut c = Commit::new();
    c.put_array(id, "a", meta(content.len() as u64));
    for b in 0..prefill / BLK {
        c.write_block(id, b as u64, content[b * BLK..(b + 1) * BLK].to_vec());
    }
    let mut tid = s.commit(0, c).unwrap();
    let mut chunk = prefill as u64;
    let mut whole = prefill as u64;
    let mut mid = tid;
    let t = Instant::now();
    for i in 0..COMMITS {
        if i == COMMITS - 250 {
            mid = tid;
        }
        let mut dirty: BTreeSet<(usize, u32)> = BTreeSet::new();
        let mut c = Commit::new();
        if matches!(w, Workload::Append | Workload::Mix) {
            let start = content.len();
            for k in 0..APPEND_VALUES {
                content.extend_from_slice(&((start / 8 + k) as i64).to_le_bytes());
            }
            for p in start / PAGE..content.len().div_ceil(PAGE) {
                dirty.insert((p * PAGE / BLK, ((p * PAGE % BLK) / PAGE) as u32));
            }
            c.put_array(id, "a", meta(content.len() as u64));
        }
        let nrand = match w {
            Workload::Append => 0,
            Workload::Rand20 | Workload::Mix => NBLK / 5,
            Workload::Rand100 => NBLK,
        };
        let mut blocks: Vec<usize> = (0..NBLK).collect();
        for i in 0..nrand {
            let j = rng.random_range(i..NBLK);
            blocks.swap(i, j);
            let b = blocks[i];
            let e = rng.random_range(0..BLK / 8);
            let at = b * BLK + e * 8;
            let v: i64 = rng.random_range(0..i64::MAX);
            content[at..at + 8].copy_from_slice(&v.to_le_bytes());
            dirty.insert((b, (e * 8 / PAGE) as u32));
        }
        chunk += dirty.len() as u64 * PAGE as u64;
        let changed: BTreeSet<usize> = dirty.iter().map(|(b, _)| *b).collect();
        for b in changed {
            let end = ((b + 1) * BLK).min(content.len());
            let data = content[b * BLK..end].to_vec();
            whole += data.len() as u64;
            c.write_block(id, b as u64, data);
        }
        tid = s.commit(tid, c).unwrap();
    }
    let commit_s = t.elapsed().as_secs_f64();
    let stored = s.stats().unwrap().stored_bytes;
    drop(s);
    let file = file_size(&path);
    (Built { path, id, stored, file, chunk, whole, mid, commit_s }, content)
}

/// A store holding `content` in one version: what reading whole stored blocks costs.
fn build_whole(dir: &std::path::Path, content: &[u8]) -> (String, ArrayId) {
    let path = dir.join("whole.outcore").to_str().unwrap().to_string();
    remove(&path);
    let s = open(&path).unwrap();
    let id = ArrayId::random();
    let mut c = Commit::new();
    c.put_array(id, "a", meta(content.len() as u64));
    for (b, chunk) in content.chunks(BLK).enumerate() {
        c.write_block(id, b as u64, chunk.to_vec());
    }
    s.commit(0, c).unwrap();
    (path, id)
}

/// Cold-read 10 distinct random blocks at snapshot `at` (0: the head) in a child process; median
/// ms per block.
fn cold_read(path: &str, id: ArrayId, at: u64) -> f64 {
    // Cold reads of 2 MiB swing by 2x from run to run on a virtual disk: the median of 5 runs.
    let mut runs: Vec<f64> = (0..5)
        .map(|_| {
            let _ = std::process::Command::new("sync").status();
            let dropped = std::fs::write("/proc/sys/vm/drop_caches", "1").is_ok();
            if !dropped {
                eprintln!("(cannot drop the OS cache: reads are warm)");
            }
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .env("OUTCORE_BENCH_CHILD", format!("{path};{};{at}", id.0))
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            text.lines()
                .find_map(|l| l.strip_prefix("median_ms "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(f64::NAN)
        })
        .collect();
    runs.sort_by(|a, b| a.total_cmp(b));
    runs[runs.len() / 2]
}

fn child(spec: &str) {
    let mut parts = spec.split(';');
    let (path, id, at) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
    let id = ArrayId(id.parse().unwrap());
    let s = open(path).unwrap();
    let head = match at.parse().unwrap() {
        0 => s.head().unwrap(),
        at => at,
    };
    let nblocks = s.array("a", head).unwrap().unwrap().meta.nblocks() as usize;
    let mut rng = StdRng::seed_from_u64(7);
    let mut order: Vec<usize> = (0..nblocks).collect();
    let n = 10.min(nblocks);
    for i in 0..n {
        let j = rng.random_range(i..nblocks);
        order.swap(i, j);
    }
    let mut buf = vec![0u8; BLK];
    let mut times = Vec::new();
    for &b in &order[..n] {
        // Every block read is cold: no readahead from a neighbour read just before.
        let _ = std::fs::write("/proc/sys/vm/drop_caches", "1");
        let t = Instant::now();
        s.load(id, b as u64, head, &mut buf).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("median_ms {}", times[times.len() / 2]);
}

fn main() {
    if let Ok(spec) = std::env::var("OUTCORE_BENCH_CHILD") {
        return child(&spec);
    }
    let base = std::env::var("OUTCORE_BENCH_DIR").unwrap_or_else(|_| ".".into());
    // The stores stay until the end (in the temp dir, or kept with OUTCORE_BENCH_KEEP=1 for
    // inspection, e.g. of their page layout with SQLite's dbstat).
    let dir = tempfile::tempdir_in(base).unwrap();
    let dir = if std::env::var_os("OUTCORE_BENCH_KEEP").is_some() { dir.keep() } else { dir.path().to_path_buf() };
    let only: Option<String> = std::env::var("OUTCORE_BENCH_ONLY").ok();
    println!("\nblock formats: 1-D int64, {COMMITS} commits per workload, 2 MiB blocks, SQLite store");
    println!("size ratio = outcore / chunk format (goal <= 1.5); read ratio = outcore / whole blocks (goal <= 1.2)\n");
    println!("| workload | whole blocks: size | whole: cold read ms/blk | chunk format: size | outcore: stored (file) | outcore: cold read ms/blk | size ratio | read ratio | read 250 commits back ms/blk | commits s |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for w in [Workload::Append, Workload::Rand20, Workload::Rand100, Workload::Mix] {
        if only.as_deref().is_some_and(|o| !w.name().contains(o)) {
            continue;
        }
        let (b, content) = build(&dir, w);
        let read_ms = cold_read(&b.path, b.id, 0);
        let old_ms = cold_read(&b.path, b.id, b.mid);
        let (whole_path, whole_id) = build_whole(&dir, &content);
        let whole_ms = cold_read(&whole_path, whole_id, 0);
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        println!(
            "| {} | {:.1} MiB | {:.2} | {:.1} MiB | {:.1} MiB ({:.1}) | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} |",
            w.name(),
            mib(b.whole),
            whole_ms,
            mib(b.chunk),
            mib(b.stored),
            mib(b.file),
            read_ms,
            b.stored as f64 / b.chunk as f64,
            read_ms / whole_ms,
            old_ms,
            b.commit_s
        );
    }
    println!("\nthe original (wendelin.core) on Append: whole blocks 513 MiB / 2.09 ms, 4 KiB chunks 16 MiB / 14.47 ms, its heuristic 28 MiB / 2.17 ms");
}
