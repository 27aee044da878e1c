//! `outcore demo`: the original system's demo re-created on the block store (until the Python
//! layer takes it over): fill a float64 array with S(t) = 15 sin(0.2 t) in 32 MiB transactions,
//! reopen, scan, verify.

use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use outcore::store::{self, ArrayId, ArrayMeta, Commit, Order, DEFAULT_BLKSIZE};
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
    let bs = DEFAULT_BLKSIZE;
    println!("gen: {} float64 values ({} MiB) into {}", n, args.size, args.path);
    let s = store::open(&args.path)?;
    let mut base = s.head()?;
    let id = ArrayId::random();
    let mut c = Commit::new().with_description("demo: create signal");
    if let Some(old) = s.array("signal", base)? {
        c.delete_array(old.id);
        base = s.commit(base, c)?;
        c = Commit::new().with_description("demo: create signal");
    }
    c.put_array(id, "signal", ArrayMeta::new("<f8", vec![n], Order::C, nbytes));
    base = s.commit(base, c)?;

    let t0 = Instant::now();
    let pb = bar(nbytes, "gen");
    let mut blk = 0u64;
    while blk * bs < nbytes {
        let mut c = Commit::new().with_user("demo");
        let first = blk;
        while blk * bs < nbytes && (blk - first) * bs < TXN_BYTES {
            let start = blk * bs / 8;
            let end = ((blk + 1) * bs / 8).min(n);
            let mut data = Vec::with_capacity(((end - start) * 8) as usize);
            for t in start..end {
                data.extend_from_slice(&signal(t).to_le_bytes());
            }
            c.write_block(id, blk, data);
            blk += 1;
        }
        c.description = format!("demo: signal blocks {first}..{blk}");
        base = s.commit(base, c)?;
        pb.set_position((blk * bs).min(nbytes));
    }
    pb.finish();
    let gen = t0.elapsed();
    drop(s);

    println!("read: reopening {}", args.path);
    let s = store::open(&args.path)?;
    let head = s.head()?;
    let a = s.array("signal", head)?.ok_or_else(|| anyhow::anyhow!("array 'signal' missing after reopen"))?;
    let t1 = Instant::now();
    let pb = bar(nbytes, "scan");
    let mut buf = vec![0u8; bs as usize];
    let (mut sum, mut count, mut mismatches) = (0.0f64, 0u64, 0u64);
    for blk in 0..a.meta.nblocks() {
        s.load(a.id, blk, head, &mut buf)?;
        let start = blk * bs / 8;
        let end = ((blk + 1) * bs / 8).min(n);
        for (i, chunk) in buf.chunks_exact(8).take((end - start) as usize).enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            let v = f64::from_le_bytes(w);
            if v != signal(start + i as u64) {
                mismatches += 1;
            }
            sum += v;
            count += 1;
        }
        pb.inc(bs);
    }
    pb.finish();
    let scan = t1.elapsed();
    println!("shape ({},)  dtype {}  size {}", a.meta.shape[0], a.meta.dtype, count);
    println!("mean {:.6}  sum {:.3}", sum / count as f64, sum);
    println!(
        "gen {:.2} s ({:.0} MiB/s, durable commits of 32 MiB), scan {:.2} s ({:.0} MiB/s)",
        gen.as_secs_f64(),
        args.size as f64 / gen.as_secs_f64(),
        scan.as_secs_f64(),
        args.size as f64 / scan.as_secs_f64()
    );
    println!("{}", memory_line());
    if mismatches > 0 {
        bail!("{mismatches} values read back differ from what was written");
    }
    println!("verified: every value read back equals what was written");
    Ok(())
}

/// VIRT and RSS of this process, from /proc.
fn memory_line() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |k: &str| {
        status.lines().find(|l| l.starts_with(k)).map(|l| l[k.len()..].trim().to_string()).unwrap_or_default()
    };
    format!("VIRT {}  RSS {}  (peak RSS {})", field("VmSize:"), field("VmRSS:"), field("VmHWM:"))
}
