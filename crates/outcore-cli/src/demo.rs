//! `outcore demo`: the original system's demo re-created on the core API (`Db`, `Connection`,
//! array views): fill a float64 array with S(t) = 15 sin(0.2 t) in 32 MiB transactions, reopen,
//! scan, verify.

use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use outcore::{ArraySpec, CommitInfo, Db, DbOptions};
use std::ops::Range;
use std::time::Instant;

/// Arguments of `outcore demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Store file (created; an existing demo array in it is replaced).
    #[arg(long, default_value = "demo.outcore")]
    path: String,
    /// Array size in MiB.
    #[arg(long, default_value_t = 1024)]
    size: u64,
}

const TXN_BYTES: u64 = 32 << 20;

fn signal(t: u64) -> f64 {
    15.0 * (0.2 * t as f64).sin()
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:>8} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_message(what.to_string());
    pb
}

/// Run the demo.
pub fn run(args: Args) -> Result<()> {
    if args.size == 0 {
        bail!("--size must be at least 1 MiB");
    }
    let nbytes = args.size << 20;
    let n = nbytes / 8;
    println!("gen: {} float64 values ({} MiB) into {}", n, args.size, args.path);
    let t0 = Instant::now();
    generate(&args.path, n)?;
    let gen = t0.elapsed();

    println!("read: reopening {}", args.path);
    let t1 = Instant::now();
    let scanned = scan(&args.path)?;
    let scan = t1.elapsed();
    println!("shape ({},)  dtype {}  size {}", scanned.shape[0], scanned.dtype, scanned.count);
    println!("mean {:.6}  sum {:.3}", scanned.sum / scanned.count as f64, scanned.sum);
    println!(
        "gen {:.2} s ({:.0} MiB/s, durable commits of 32 MiB), scan {:.2} s ({:.0} MiB/s)",
        gen.as_secs_f64(),
        args.size as f64 / gen.as_secs_f64(),
        scan.as_secs_f64(),
        args.size as f64 / scan.as_secs_f64()
    );
    println!("{}", memory_line());
    if scanned.mismatches > 0 {
        bail!("{} values read back differ from what was written", scanned.mismatches);
    }
    println!("verified: every value read back equals what was written");
    Ok(())
}

/// Element ranges of the 32 MiB transactions: whole blocks of `blksize` bytes each, as
/// `(first block, end block, elements)`.
fn transactions(n: u64, blksize: u64) -> impl Iterator<Item = (u64, u64, Range<u64>)> {
    let per_txn = (TXN_BYTES / blksize).max(1);
    let nblocks = (n * 8).div_ceil(blksize);
    (0..nblocks).step_by(per_txn as usize).map(move |first| {
        let end = (first + per_txn).min(nblocks);
        (first, end, first * blksize / 8..(end * blksize / 8).min(n))
    })
}

/// Creates the array `signal` of `n` float64 (replacing an existing one) and fills it, one
/// commit per 32 MiB.
fn generate(path: &str, n: u64) -> Result<()> {
    let db = Db::open(path, DbOptions::default())?;
    let conn = db.connect()?;
    if conn.contains("signal")? {
        conn.delete("signal")?;
        conn.commit_with(CommitInfo::new("demo: create signal"))?;
    }
    let a = conn.create("signal", ArraySpec::of::<f64>([n]))?;
    conn.commit_with(CommitInfo::new("demo: create signal"))?;
    let pb = bar(n * 8, "gen");
    for (first, end, elems) in transactions(n, a.blksize()?) {
        let mut view = a.slice_view_mut::<f64>(std::slice::from_ref(&elems))?;
        for (v, t) in view.view_mut().iter_mut().zip(elems.clone()) {
            *v = signal(t);
        }
        drop(view);
        conn.commit_with(CommitInfo::new(format!("demo: signal blocks {first}..{end}")).user("demo"))?;
        pb.set_position(elems.end * 8);
    }
    pb.finish();
    Ok(())
}

/// What a scan of `signal` found.
struct Scanned {
    shape: Vec<u64>,
    dtype: String,
    count: u64,
    sum: f64,
    mismatches: u64,
}

/// Reopens the database and reads `signal` back, 32 MiB at a time, comparing every value with
/// the signal.
fn scan(path: &str) -> Result<Scanned> {
    let db = Db::open(path, DbOptions::default())?;
    let conn = db.connect()?;
    let a = conn.open("signal").map_err(|e| anyhow::anyhow!("array 'signal' missing after reopen: {e}"))?;
    let shape = a.shape()?;
    let n = shape[0];
    let mut out = Scanned { shape, dtype: a.dtype()?, count: 0, sum: 0.0, mismatches: 0 };
    let pb = bar(n * 8, "scan");
    for (_, _, elems) in transactions(n, a.blksize()?) {
        let view = a.slice_view::<f64>(std::slice::from_ref(&elems))?;
        for (v, t) in view.view().iter().zip(elems.clone()) {
            if *v != signal(t) {
                out.mismatches += 1;
            }
            out.sum += *v;
            out.count += 1;
        }
        pb.set_position(elems.end * 8);
    }
    pb.finish();
    Ok(out)
}

/// VIRT and RSS of this process, from /proc.
fn memory_line() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |k: &str| {
        status.lines().find(|l| l.starts_with(k)).map(|l| l[k.len()..].trim().to_string()).unwrap_or_default()
    };
    format!("VIRT {}  RSS {}  (peak RSS {})", field("VmSize:"), field("VmRSS:"), field("VmHWM:"))
}
