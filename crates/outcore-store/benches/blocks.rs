//! Loading and committing 2 MiB blocks (1 GiB in all) through each backend, next to the raw
//! limits measured in the same run: `pwrite` + `fsync` of the same bytes to a file, and `pread`
//! of them from the page cache.
//!
//! Run: `cargo bench -p outcore-store --bench blocks` (PostgreSQL too when `OUTCORE_TEST_PG`
//! names a server; `scripts/bench-store` starts a throwaway one).

use outcore_store::{open, ArrayId, ArrayMeta, Commit, Order, Store};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::time::Instant;

const BLK: usize = 2 << 20;
const NBLK: usize = 512;
const PER_COMMIT: usize = 16;

fn data() -> Vec<Vec<u8>> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..NBLK)
        .map(|_| {
            let mut v = vec![0u8; BLK];
            for w in v.chunks_exact_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                w.copy_from_slice(&x.to_le_bytes());
            }
            v
        })
        .collect()
}

fn gbps(secs: f64) -> f64 {
    (BLK * NBLK) as f64 / secs / 1e9
}

fn raw(dir: &std::path::Path, blocks: &[Vec<u8>]) -> (f64, f64) {
    let p = dir.join("raw.bin");
    let f = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&p).unwrap();
    let t = Instant::now();
    for (i, chunk) in blocks.chunks(PER_COMMIT).enumerate() {
        for (j, b) in chunk.iter().enumerate() {
            f.write_all_at(b, ((i * PER_COMMIT + j) * BLK) as u64).unwrap();
        }
        f.sync_all().unwrap();
    }
    let write = t.elapsed().as_secs_f64();
    let mut buf = vec![0u8; BLK];
    let mut sum = 0u64;
    let t = Instant::now();
    for i in 0..NBLK {
        f.read_exact_at(&mut buf, (i * BLK) as u64).unwrap();
        sum = sum.wrapping_add(buf[i] as u64);
    }
    let read = t.elapsed().as_secs_f64();
    std::hint::black_box(sum);
    (write, read)
}

fn store(s: &dyn Store, blocks: &[Vec<u8>]) -> (f64, f64) {
    let id = ArrayId::random();
    let mut c = Commit::new();
    c.put_array(id, "bench", ArrayMeta::new("<u1", vec![(BLK * NBLK) as u64], Order::C, (BLK * NBLK) as u64));
    let mut tid = s.commit(s.head().unwrap(), c).unwrap();
    let t = Instant::now();
    for (i, chunk) in blocks.chunks(PER_COMMIT).enumerate() {
        let mut c = Commit::new();
        for (j, b) in chunk.iter().enumerate() {
            c.write_block(id, (i * PER_COMMIT + j) as u64, b.clone());
        }
        tid = s.commit(tid, c).unwrap();
    }
    let write = t.elapsed().as_secs_f64();
    let mut buf = vec![0u8; BLK];
    // One warm-up pass so both sides read from the page cache.
    for i in 0..NBLK {
        s.load(id, i as u64, tid, &mut buf).unwrap();
    }
    let passes: usize = std::env::var("OUTCORE_BENCH_LOAD_PASSES").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let t = Instant::now();
    for _ in 0..passes {
        for (i, b) in blocks.iter().enumerate() {
            s.load(id, i as u64, tid, &mut buf).unwrap();
            assert_eq!(buf[..64], b[..64]);
        }
    }
    let read = t.elapsed().as_secs_f64() / passes as f64;
    (write, read)
}

fn main() {
    let dir = tempfile::tempdir_in(std::env::var("OUTCORE_BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    let blocks = data();
    let (rw, rr) = raw(dir.path(), &blocks);
    // Warm raw read again (first pass above may include readahead effects).
    let (_, rr2) = raw(dir.path(), &blocks);
    let rr = rr.min(rr2);
    println!(
        "\n1 GiB in 2 MiB blocks, {PER_COMMIT} blocks per commit; ratio = backend time / raw time (lower is better)\n"
    );
    println!("| what | raw limit | backend | backend time | GB/s | ratio | goal |");
    println!("|---|---|---|---|---|---|---|");
    let mut rows = vec![];
    let sqlite = open(dir.path().join("bench.outcore").to_str().unwrap()).unwrap();
    rows.push(("sqlite", store(&*sqlite, &blocks)));
    if let Ok(url) = std::env::var("OUTCORE_TEST_PG") {
        let admin = url.clone();
        let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
        let _ = c.batch_execute("DROP DATABASE IF EXISTS outcore_bench WITH (FORCE)");
        c.batch_execute("CREATE DATABASE outcore_bench").unwrap();
        let mut u = url::Url::parse(&admin).unwrap();
        u.set_path("/outcore_bench");
        let pg = open(u.as_str()).unwrap();
        rows.push(("postgresql", store(&*pg, &blocks)));
        drop(pg);
        let _ = c.batch_execute("DROP DATABASE IF EXISTS outcore_bench WITH (FORCE)");
    }
    for (name, (w, r)) in rows {
        let goal_w = if name == "sqlite" { "<= 2.0" } else { "report" };
        let goal_r = if name == "sqlite" { "<= 1.5" } else { "report" };
        println!(
            "| commit | pwrite+fsync {:.3} s ({:.2} GB/s) | {name} | {w:.3} s | {:.2} | {:.2} | {goal_w} |",
            rw,
            gbps(rw),
            gbps(w),
            w / rw
        );
        println!(
            "| load | pread {:.3} s ({:.2} GB/s) | {name} | {r:.3} s | {:.2} | {:.2} | {goal_r} |",
            rr,
            gbps(rr),
            gbps(r),
            r / rr
        );
    }
}
