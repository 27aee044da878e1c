//! The `outcore` command: a demo of the embedded store, and inspection/maintenance of stores.

mod demo;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use outcore::store::{self, Store};
use std::time::UNIX_EPOCH;

/// outcore: out-of-core, persistent, transactional N-dimensional arrays.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a store, fill an array block by block with S(t) = 15 sin(0.2 t) committing every
    /// 32 MiB, reopen it and scan it back (mean, sum, verification).
    Demo(demo::Args),
    /// Show the arrays of a store (a path or a postgresql:// URL).
    Info {
        /// Store location.
        location: String,
    },
    /// List the transactions of a store, newest last.
    History {
        /// Store location.
        location: String,
        /// Show at most this many (the newest).
        #[arg(long, default_value_t = 20)]
        last: u64,
    },
    /// Verify every stored block of every live array against its checksums (with a progress
    /// bar); exits with status 1 listing the failures if any block fails.
    Check {
        /// Store location.
        location: String,
    },
    /// Remove history no snapshot at or after `--keep-after` needs.
    Gc {
        /// Store location.
        location: String,
        /// Oldest tid that stays readable (default: the newest).
        #[arg(long)]
        keep_after: Option<u64>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Demo(args) => demo::run(args),
        Cmd::Info { location } => info(&*open(&location)?),
        Cmd::History { location, last } => history(&*open(&location)?, last),
        Cmd::Check { location } => check(&location),
        Cmd::Gc { location, keep_after } => {
            let s = open(&location)?;
            let k = match keep_after {
                Some(k) => k,
                None => s.head()?,
            };
            let st = s.gc(k)?;
            println!(
                "removed {} block versions ({} bytes) and {} array versions; history before tid {k} is gone",
                st.block_versions, st.bytes, st.array_versions
            );
            Ok(())
        }
    }
}

fn open(location: &str) -> Result<std::sync::Arc<dyn Store>> {
    store::open(location).with_context(|| format!("opening {location}"))
}

fn info(s: &dyn Store) -> Result<()> {
    let head = s.head()?;
    let st = s.stats()?;
    println!("{}: head tid {head}, gc horizon {}", s.location(), s.gc_horizon()?);
    println!("stored: {} block versions, {} bytes", st.block_versions, st.stored_bytes);
    if !store::is_postgres_url(s.location()) {
        let files: Vec<String> = ["", "-wal", ".blocks", ".readers"]
            .iter()
            .filter_map(|sfx| {
                let p = format!("{}{sfx}", s.location());
                std::fs::metadata(&p).ok().map(|m| format!("{p} {} bytes", m.len()))
            })
            .collect();
        println!("files: {}", files.join(", "));
    }
    for a in s.arrays(head)? {
        let engine = if s.can_locate(&a.meta) { "page cache" } else { "userfaultfd" };
        println!(
            "  {:<24} dtype {:<8} shape {:?} order {:?} blksize {} codec {:?} engine {engine} ({} bytes, changed at tid {})",
            a.name, a.meta.dtype, a.meta.shape, a.meta.order, a.meta.blksize, a.meta.codec, a.meta.nbytes, a.tid
        );
    }
    Ok(())
}

fn check(location: &str) -> Result<()> {
    let db =
        outcore::Db::open(location, outcore::DbOptions::default()).with_context(|| format!("opening {location}"))?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("checking {bar:40} {pos}/{len} blocks ({eta} left)")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let report = db.check(|p| {
        bar.set_length(p.total);
        bar.set_position(p.done);
    })?;
    bar.finish_and_clear();
    println!(
        "{location} at tid {}: {} arrays, {} blocks, {} bytes verified",
        report.tid, report.arrays, report.blocks, report.bytes
    );
    if report.ok() {
        println!("no errors");
        return Ok(());
    }
    for (name, blk, e) in &report.errors {
        println!("FAILED array '{name}' block {blk}: {e}");
    }
    std::process::exit(1);
}

fn history(s: &dyn Store, last: u64) -> Result<()> {
    let head = s.head()?;
    for t in s.history(head.saturating_sub(last), head)? {
        let secs = t.time().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        println!("tid {:>6}  unix {}  user {:?}  {}", t.tid, secs, t.user, t.description);
    }
    Ok(())
}
