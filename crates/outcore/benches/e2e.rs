//! End-to-end benchmark through the Rust API on SQLite, each number next to the raw-file limit
//! measured in the same run (ratio > 1 means outcore is faster):
//! - ingest: append + commit every 64 MiB, vs write + fsync of 64 MiB chunks;
//! - cold scan in a new process (empty outcore cache; the OS page cache is warm for both), vs
//!   `pread` of the raw file in 2 MiB reads;
//! - warm scan (all blocks cached), vs summing plain memory;
//! - 10,000 random single-element writes + one commit: time, and bytes the store grew.
//!
//! Run with `cargo bench -p outcore --bench e2e`. `OUTCORE_BENCH_MIB` sets the data size
//! (default 4096).

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use outcore::{ArraySpec, Db, DbOptions};

const CHUNK: usize = 64 << 20;
const CHILD: &str = "OUTCORE_BENCH_CHILD";

fn gbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e9
}

fn row(what: &str, ours: f64, limit: f64, unit: &str) {
    println!("{what:<40} {ours:>9.3} {unit}   raw {limit:>9.3} {unit}   ratio {:>6.3}", ours / limit);
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(path) = std::env::var(CHILD) {
        return child(&path);
    }
    let mib: usize = std::env::var("OUTCORE_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(4096);
    let total = (mib << 20) / CHUNK * CHUNK;
    let total = total.max(CHUNK);
    let dir = tempfile::tempdir()?;
    println!("outcore e2e benchmark: {} MiB of float64 in {}", total >> 20, dir.path().display());

    // Raw limits: write + fsync in 64 MiB chunks, then pread in 2 MiB reads.
    let raw_path = dir.path().join("raw.bin");
    let chunk: Vec<f64> = (0..CHUNK / 8).map(|i| i as f64).collect();
    let chunk_bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
    let t = Instant::now();
    {
        let mut f = std::fs::File::create(&raw_path)?;
        for _ in 0..total / CHUNK {
            f.write_all(&chunk_bytes)?;
            f.sync_data()?;
        }
    }
    let raw_write = gbps(total, t.elapsed().as_secs_f64());
    let t = Instant::now();
    let mut buf = vec![0u8; 2 << 20];
    let mut sum = 0f64;
    {
        let f = std::fs::File::open(&raw_path)?;
        for off in (0..total).step_by(buf.len()) {
            f.read_exact_at(&mut buf, off as u64)?;
            sum += buf
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                .sum::<f64>();
        }
    }
    let raw_read = gbps(total, t.elapsed().as_secs_f64());
    std::hint::black_box(sum);
    std::fs::remove_file(&raw_path)?;
    let mem: Vec<f64> = (0..total / 8).map(|i| (i % (CHUNK / 8)) as f64).collect();
    let t = Instant::now();
    std::hint::black_box(mem.iter().sum::<f64>());
    let raw_mem = gbps(total, t.elapsed().as_secs_f64());
    drop(mem);

    // Ingest.
    let path = dir.path().join("bench.outcore");
    let url = path.to_string_lossy().into_owned();
    let db = Db::open(&url, DbOptions::default())?;
    let conn = db.connect()?;
    let a = conn.create("x", ArraySpec::of::<f64>([0]))?;
    conn.commit()?;
    let t = Instant::now();
    for _ in 0..total / CHUNK {
        a.append(&chunk)?;
        conn.commit()?;
    }
    row("ingest (append + commit per 64 MiB)", gbps(total, t.elapsed().as_secs_f64()), raw_write, "GB/s");

    // Cold and warm scans in a new process.
    let out = std::process::Command::new(std::env::current_exe()?).env(CHILD, &url).output()?;
    if !out.status.success() {
        return Err(format!("child failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut secs = text.split_whitespace().filter_map(|w| w.parse::<f64>().ok());
    let (cold, warm) = (secs.next().unwrap_or(f64::NAN), secs.next().unwrap_or(f64::NAN));
    row("cold full scan (new process)", gbps(total, cold), raw_read, "GB/s");
    row("warm full scan", gbps(total, warm), raw_mem, "GB/s");

    // Random single-element writes.
    let before = std::fs::metadata(&path)?.len() + wal_len(&path);
    let stored_before = db.store().stats()?.stored_bytes;
    let n = (total / 8) as u64;
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let t = Instant::now();
    {
        let mut g = a.as_array_view_mut::<f64>()?;
        let mut v = g.view_mut();
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v[[(x % n) as usize]] = -1.0;
        }
    }
    conn.commit()?;
    let ours = t.elapsed().as_secs_f64();
    let after = std::fs::metadata(&path)?.len() + wal_len(&path);
    let stored_after = db.store().stats()?.stored_bytes;
    // The raw limit: 10,000 4 KiB page writes at random offsets + one fsync.
    let f = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(&raw_path)?;
    f.set_len(total as u64)?;
    let page = vec![1u8; 4096];
    let t = Instant::now();
    for _ in 0..10_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        f.write_all_at(&page, (x % (total as u64 / 4096)) * 4096)?;
    }
    f.sync_data()?;
    let raw = t.elapsed().as_secs_f64();
    row("10,000 random writes + commit", ours, raw, "s");
    println!(
        "  stored block data grew by {:.1} MiB for 10,000 written elements (files: {:+.1} MiB; WAL space is reused)",
        (stored_after - stored_before) as f64 / (1 << 20) as f64,
        (after as f64 - before as f64) / (1 << 20) as f64
    );
    Ok(())
}

fn wal_len(path: &std::path::Path) -> u64 {
    let mut p = path.as_os_str().to_owned();
    p.push("-wal");
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Cold then warm full scan; prints both times in seconds.
fn child(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let db = Db::open(url, DbOptions::default().cache_budget(64 << 30))?;
    let conn = db.connect()?;
    let a = conn.open("x")?;
    let g = a.as_array_view::<f64>()?;
    let t = Instant::now();
    std::hint::black_box(g.view().sum());
    let cold = t.elapsed().as_secs_f64();
    let t = Instant::now();
    std::hint::black_box(g.view().sum());
    let warm = t.elapsed().as_secs_f64();
    println!("{cold} {warm}");
    Ok(())
}
