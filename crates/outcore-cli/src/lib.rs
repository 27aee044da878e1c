//! The `outcore` command: inspection, maintenance, export/import and copying of stores, written
//! on the Rust API. One implementation serves the cargo binary (`outcore-cli`'s `outcore`) and
//! the Python package (`outcore._outcore.cli_main`, behind the `outcore` console script and
//! `python -m outcore`).
//!
//! Inspection commands (`info`, `log`, `check`, `export`) never create a store: a local path
//! that holds no store is an error. Progress bars go to stderr, only when it is a terminal and
//! neither `--json` nor `--quiet` is given; `--json` prints one JSON document on stdout.

mod demo;
mod npy;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use outcore::store::{self, ArrayId, ArrayInfo, ArrayMeta, Commit, Order, Store, Tid};
use serde_json::json;
use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// outcore: out-of-core, persistent, transactional N-dimensional arrays.
///
/// A STORE is a local path (SQLite metadata beside `<path>.blocks`) or a postgresql:// URL.
#[derive(Parser)]
#[command(name = "outcore", version, about, propagate_version = true)]
struct Cli {
    /// Print one JSON document on stdout instead of text (no progress bars).
    #[arg(long, global = true)]
    json: bool,
    /// No progress bars and no summary lines beyond what the command is for.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show a store's arrays (shape, dtype, size, engine), history span, stored bytes and files.
    Info {
        /// Store: a path or a postgresql:// URL.
        store: String,
    },
    /// List the commits of a store, newest last, with local time, user and note.
    #[command(visible_alias = "history")]
    Log {
        /// Store: a path or a postgresql:// URL.
        store: String,
        /// Show at most this many (the newest); 0 shows all.
        #[arg(long, short = 'n', default_value_t = 20)]
        last: u64,
    },
    /// Verify every stored block of every live array against its checksums; exit status 1 and
    /// the names of the failing array blocks if any fails.
    Check {
        /// Store: a path or a postgresql:// URL.
        store: String,
    },
    /// Remove history older than a tid (default: all but the newest state) and report what it
    /// freed: versions and bytes made reusable, and how much the store's files shrank.
    Gc {
        /// Store: a path or a postgresql:// URL.
        store: String,
        /// Oldest tid that stays readable (default: the newest).
        #[arg(long)]
        keep_after: Option<u64>,
    },
    /// Write an array to a file, block by block in bounded memory.
    ///
    /// `.npy` is written here; zarr (v3, a `.zarr` directory) and HDF5 (`.h5`, `.hdf5`) are
    /// written by the Python package's `outcore` command (through zarr-python and h5py).
    Export {
        /// Store: a path or a postgresql:// URL.
        store: String,
        /// The array's name.
        array: String,
        /// The file to write (replaced if it exists).
        file: PathBuf,
        /// Export the array as of this tid (default: the newest).
        #[arg(long)]
        at: Option<u64>,
        /// File format (default: from the file's extension).
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
    /// Create an array from a file in one commit, block by block in bounded memory (the store is
    /// created if it does not exist).
    ///
    /// `.npy` is read here; zarr and HDF5 by the Python package's `outcore` command.
    Import {
        /// Store: a path or a postgresql:// URL.
        store: String,
        /// The new array's name.
        array: String,
        /// The file to read.
        file: PathBuf,
        /// File format (default: from the file's extension).
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Block size in bytes (a power of two; default: the store's default block size).
        #[arg(long)]
        blksize: Option<u64>,
        /// Replace an existing array of that name (in the same commit).
        #[arg(long)]
        replace: bool,
        /// The commit's note (default: what was imported from where).
        #[arg(long)]
        note: Option<String>,
    },
    /// Copy a whole store between a local path and a PostgreSQL URL (either way), with its
    /// history (every readable commit replayed with its user and note) or only its newest state
    /// (`--current`), then verify that the copy's arrays equal the source's, block by block.
    Cp {
        /// Source store (must exist).
        src: String,
        /// Destination store: a path that does not exist yet, or an empty PostgreSQL database.
        dst: String,
        /// Copy only the newest state, as one commit.
        #[arg(long)]
        current: bool,
    },
    /// Create a store, fill an array block by block with S(t) = 15 sin(0.2 t) committing every
    /// 32 MiB, reopen it and scan it back (mean, sum, verification).
    Demo(demo::Args),
}

/// The file formats of `export` and `import`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// NumPy `.npy` (version 1 or 2 header, then the raw bytes).
    Npy,
    /// A zarr v3 array directory (Python package only).
    Zarr,
    /// An HDF5 file with one dataset named after the array (Python package only).
    Hdf5,
}

impl Format {
    fn of(path: &Path, given: Option<Format>) -> Result<Format> {
        if let Some(f) = given {
            return Ok(f);
        }
        let name = path.to_string_lossy().trim_end_matches('/').to_ascii_lowercase();
        if name.ends_with(".npy") {
            Ok(Format::Npy)
        } else if name.ends_with(".zarr") {
            Ok(Format::Zarr)
        } else if name.ends_with(".h5") || name.ends_with(".hdf5") {
            Ok(Format::Hdf5)
        } else {
            bail!("cannot tell the format of {} from its extension: give --format", path.display())
        }
    }
}

/// Output settings shared by the commands.
#[derive(Clone, Copy)]
struct Ui {
    json: bool,
    quiet: bool,
}

impl Ui {
    /// A progress bar on stderr, hidden unless stderr is a terminal and output is for people.
    fn bar(&self, len: u64, template: &str) -> ProgressBar {
        if self.json || self.quiet || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        pb.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
        pb
    }

    fn bytes_bar(&self, len: u64, what: &str) -> ProgressBar {
        let pb = self.bar(len, "{msg:>8} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}");
        pb.set_message(what.to_string());
        pb
    }

    fn say(&self, line: impl AsRef<str>) {
        if !self.json && !self.quiet {
            println!("{}", line.as_ref());
        }
    }
}

/// Run the command with `args` (the first is the program name) and return its exit status:
/// 0 success, 1 failure (an error, or `check` found damage), 2 bad usage.
pub fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    let ui = Ui { json: cli.json, quiet: cli.quiet };
    match dispatch(cli.cmd, ui) {
        Ok(code) => code,
        Err(e) => {
            if ui.json {
                println!("{}", json!({ "error": format!("{e:#}") }));
            }
            eprintln!("outcore: error: {e:#}");
            1
        }
    }
}

fn dispatch(cmd: Cmd, ui: Ui) -> Result<i32> {
    match cmd {
        Cmd::Info { store } => info(&open_to_read(&store)?, ui),
        Cmd::Log { store, last } => log(&*open_to_read(&store)?, last, ui),
        Cmd::Check { store } => check(&store, ui),
        Cmd::Gc { store, keep_after } => gc(&open_existing(&store)?, keep_after, ui),
        Cmd::Export { store, array, file, at, format } => {
            match Format::of(&file, format)? {
                Format::Npy => export(&open_to_read(&store)?, &array, &file, at, ui)?,
                f => bail!(
                    "{f:?} export is done by the Python package's `outcore` command (pip install outcore zarr h5py)"
                ),
            }
            Ok(0)
        }
        Cmd::Import { store, array, file, format, blksize, replace, note } => {
            match Format::of(&file, format)? {
                Format::Npy => import(
                    &store::open(&store).with_context(|| format!("opening {store}"))?,
                    &array,
                    &file,
                    blksize,
                    replace,
                    note,
                    ui,
                )?,
                f => bail!(
                    "{f:?} import is done by the Python package's `outcore` command (pip install outcore zarr h5py)"
                ),
            }
            Ok(0)
        }
        Cmd::Cp { src, dst, current } => {
            let fresh_local = local_path(&dst).is_some_and(|p| !Path::new(p).exists());
            let r = cp(&src, &dst, current, ui);
            if r.is_err() && fresh_local {
                // Leave no half-copied store behind.
                for (f, _) in store_files(&dst) {
                    let _ = std::fs::remove_file(f);
                }
            }
            r
        }
        Cmd::Demo(args) => demo::run(args).map(|()| 0),
    }
}

/// The local path of a location, or `None` for a PostgreSQL URL.
fn local_path(location: &str) -> Option<&str> {
    if store::is_postgres_url(location) {
        return None;
    }
    Some(location.strip_prefix("sqlite://").or_else(|| location.strip_prefix("sqlite:")).unwrap_or(location))
}

/// Open a store that must already exist to inspect it: read-only where this process may not
/// write it (read-only media, another user's store), else as usual (so that reading a store
/// another process writes stays safe). Nothing is created.
pub fn open_to_read(location: &str) -> Result<Arc<dyn Store>> {
    check_exists(location)?;
    store::open_for_reading(location).with_context(|| format!("opening {location}"))
}

/// Open a store that must already exist: a local path without a store is an error and nothing
/// is created.
pub fn open_existing(location: &str) -> Result<Arc<dyn Store>> {
    check_exists(location)?;
    store::open_existing(location).with_context(|| format!("opening {location}"))
}

/// A local location must hold a SQLite file (friendlier errors than the store's).
fn check_exists(location: &str) -> Result<()> {
    if let Some(p) = local_path(location) {
        let path = Path::new(p);
        if !path.is_file() {
            bail!("no store at {location} (no such file; nothing was created)");
        }
        let mut head = [0u8; 16];
        let is_sqlite = std::fs::File::open(path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
            .map(|()| &head == b"SQLite format 3\0")
            .unwrap_or(false);
        if !is_sqlite {
            bail!("{location} is not an outcore store (not an SQLite database)");
        }
    }
    Ok(())
}

/// The files of a local store and their sizes.
fn store_files(location: &str) -> Vec<(String, u64)> {
    let Some(p) = local_path(location) else { return Vec::new() };
    ["", "-wal", "-shm", ".blocks", ".readers"]
        .iter()
        .filter_map(|sfx| {
            let f = format!("{p}{sfx}");
            std::fs::metadata(&f).ok().map(|m| (f, m.len()))
        })
        .collect()
}

/// Bytes the files take on disk (allocated blocks: a sparse or hole-punched data file counts
/// what it holds).
fn disk_usage(location: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Some(p) = local_path(location) else { return 0 };
    ["", "-wal", ".blocks"]
        .iter()
        .filter_map(|sfx| std::fs::metadata(format!("{p}{sfx}")).ok())
        .map(|m| m.blocks() * 512)
        .sum()
}

/// A time as a local date.
fn local_time(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Local>::from(t).format("%Y-%m-%d %H:%M:%S %:z").to_string()
}

fn local_time_rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Local>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

fn human(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

fn info(s: &Arc<dyn Store>, ui: Ui) -> Result<i32> {
    let head = s.head()?;
    let horizon = s.gc_horizon()?;
    let st = s.stats()?;
    let arrays = s.arrays(head)?;
    let files = store_files(s.location());
    let last = s.history(head.saturating_sub(1), head)?.pop();
    let backend = if local_path(s.location()).is_some() { "local (SQLite + data file)" } else { "PostgreSQL" };
    // Arrays with a non-zero fill value go through userfaultfd whatever the store (see outcore).
    let engine =
        |a: &ArrayInfo| if s.can_locate(&a.meta) && a.meta.fill.is_none() { "page cache" } else { "userfaultfd" };
    if ui.json {
        let doc = json!({
            "location": s.location(),
            "backend": backend,
            "format_version": s.format_version(),
            "head": head,
            "gc_horizon": horizon,
            "last_commit": last.as_ref().map(|t| local_time_rfc3339(t.time())),
            "stored": { "history_block_versions": st.block_versions, "bytes": st.stored_bytes },
            "files": files.iter().map(|(f, n)| json!({ "path": f, "bytes": n })).collect::<Vec<_>>(),
            "disk_bytes": disk_usage(s.location()),
            "arrays": arrays.iter().map(|a| json!({
                "name": a.name,
                "id": a.id.0,
                "dtype": a.meta.dtype,
                "shape": a.meta.shape,
                "order": format!("{:?}", a.meta.order),
                "nbytes": a.meta.nbytes,
                "blksize": a.meta.blksize,
                "codec": format!("{:?}", a.meta.codec),
                "engine": engine(a),
                "changed_at": a.tid,
            })).collect::<Vec<_>>(),
        });
        println!("{doc:#}");
        return Ok(0);
    }
    println!("{} ({backend}, store format {})", s.location(), s.format_version());
    let when = last.map(|t| format!(", last commit {}", local_time(t.time()))).unwrap_or_default();
    println!("history: tids {}..={head} readable{when}", horizon.max(1).min(head.max(1)));
    println!(
        "stored: {} of block data (current contents and history), {} old block versions in history",
        human(st.stored_bytes),
        st.block_versions
    );
    if !files.is_empty() {
        let list: Vec<String> = files.iter().map(|(f, n)| format!("{f} ({})", human(*n))).collect();
        println!("files: {}; on disk {}", list.join(", "), human(disk_usage(s.location())));
    }
    if arrays.is_empty() {
        println!("no arrays");
    }
    for a in &arrays {
        let shape: Vec<String> = a.meta.shape.iter().map(u64::to_string).collect();
        let shape = if shape.len() == 1 { format!("({},)", shape[0]) } else { format!("({})", shape.join(", ")) };
        println!(
            "  {:<20} {:<8} {shape} order {:?}  {}  blocks of {}  codec {:?}  engine {}  changed at tid {}",
            a.name,
            a.meta.dtype,
            a.meta.order,
            human(a.meta.nbytes),
            human(a.meta.blksize),
            a.meta.codec,
            engine(a),
            a.tid
        );
    }
    Ok(0)
}

fn log(s: &dyn Store, last: u64, ui: Ui) -> Result<i32> {
    let head = s.head()?;
    let from = if last == 0 { 0 } else { head.saturating_sub(last) };
    let txns = s.history(from.max(s.gc_horizon()?.saturating_sub(1)), head)?;
    if ui.json {
        let list: Vec<_> = txns
            .iter()
            .map(|t| {
                json!({
                    "tid": t.tid,
                    "time": local_time_rfc3339(t.time()),
                    "time_us": t.time_us,
                    "user": t.user,
                    "note": t.description,
                    "extension": t.extension,
                })
            })
            .collect();
        println!("{:#}", json!(list));
        return Ok(0);
    }
    for t in &txns {
        let user = if t.user.is_empty() { "-" } else { t.user.as_str() };
        println!("{:>6}  {}  {:<12}  {}", t.tid, local_time(t.time()), user, t.description);
    }
    Ok(0)
}

fn check(location: &str, ui: Ui) -> Result<i32> {
    let s = open_to_read(location)?;
    let db =
        outcore::Db::with_store(s, outcore::DbOptions::default()).with_context(|| format!("opening {location}"))?;
    let bar = ui.bar(0, "checking [{bar:40}] {pos}/{len} blocks, eta {eta}");
    let t0 = Instant::now();
    let report = db.check(|p| {
        bar.set_length(p.total);
        bar.set_position(p.done);
    })?;
    bar.finish_and_clear();
    let code = if report.ok() { 0 } else { 1 };
    if ui.json {
        let doc = json!({
            "location": location,
            "tid": report.tid,
            "arrays": report.arrays,
            "blocks": report.blocks,
            "bytes": report.bytes,
            "ok": report.ok(),
            "errors": report.errors.iter().map(|(a, b, e)| json!({ "array": a, "block": b, "error": e })).collect::<Vec<_>>(),
        });
        println!("{doc:#}");
        return Ok(code);
    }
    for (name, blk, e) in &report.errors {
        println!("FAILED array '{name}' block {blk}: {e}");
    }
    if !ui.quiet || !report.ok() {
        println!(
            "{location} at tid {}: {} arrays, {} blocks, {} verified in {:.1} s: {}",
            report.tid,
            report.arrays,
            report.blocks,
            human(report.bytes),
            t0.elapsed().as_secs_f64(),
            if report.ok() { "no errors".to_string() } else { format!("{} FAILED", report.errors.len()) }
        );
    }
    Ok(code)
}

fn gc(s: &Arc<dyn Store>, keep_after: Option<u64>, ui: Ui) -> Result<i32> {
    let before_files: u64 = store_files(s.location()).iter().map(|(_, n)| n).sum();
    let before_disk = disk_usage(s.location());
    let before = s.stats()?;
    let k = match keep_after {
        Some(k) => k,
        None => s.head()?,
    };
    let st = s.gc(k)?;
    let after = s.stats()?;
    let after_files: u64 = store_files(s.location()).iter().map(|(_, n)| n).sum();
    let after_disk = disk_usage(s.location());
    if ui.json {
        let doc = json!({
            "location": s.location(),
            "keep_after": k,
            "removed": { "block_versions": st.block_versions, "array_versions": st.array_versions, "bytes": st.bytes },
            "stored_before": { "history_block_versions": before.block_versions, "bytes": before.stored_bytes },
            "stored_after": { "history_block_versions": after.block_versions, "bytes": after.stored_bytes },
            "file_bytes_before": before_files,
            "file_bytes_after": after_files,
            "disk_bytes_before": before_disk,
            "disk_bytes_after": after_disk,
        });
        println!("{doc:#}");
        return Ok(0);
    }
    println!(
        "removed {} history records of blocks ({} of old contents) and {} array versions; history before tid {k} is gone",
        st.block_versions,
        human(st.bytes),
        st.array_versions
    );
    println!(
        "stored block data: {} before, {} after (made reusable: {})",
        human(before.stored_bytes),
        human(after.stored_bytes),
        human(before.stored_bytes.saturating_sub(after.stored_bytes))
    );
    if local_path(s.location()).is_some() {
        println!(
            "files: {} before, {} after; on disk: {} before, {} after",
            human(before_files),
            human(after_files),
            human(before_disk),
            human(after_disk)
        );
        if after_files >= before_files && before.stored_bytes > after.stored_bytes {
            println!("the data file keeps its size: later commits reuse the space gc freed");
        }
    }
    Ok(0)
}

/// The array `name` at `at` (default: the newest tid), with a snapshot holding it.
fn array_at(s: &Arc<dyn Store>, name: &str, at: Option<Tid>) -> Result<(ArrayInfo, store::Snapshot)> {
    let snap = s.snapshot(at)?;
    let a = s.array(name, snap.tid())?.ok_or_else(|| {
        let names: Vec<String> =
            s.arrays(snap.tid()).map(|v| v.into_iter().map(|a| a.name).collect()).unwrap_or_default();
        anyhow!("no array '{name}' at tid {} (arrays: {})", snap.tid(), names.join(", "))
    })?;
    Ok((a, snap))
}

fn export(s: &Arc<dyn Store>, name: &str, file: &Path, at: Option<Tid>, ui: Ui) -> Result<()> {
    let (a, snap) = array_at(s, name, at)?;
    let t0 = Instant::now();
    let pb = ui.bytes_bar(a.meta.nbytes, "export");
    let tmp = npy::partial_path(file);
    let written = npy::write(&tmp, &a.meta, |blk, buf| {
        s.load(a.id, blk, snap.tid(), buf)?;
        pb.inc(buf.len() as u64);
        Ok(())
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, file).with_context(|| format!("renaming {} to {}", tmp.display(), file.display()))?;
    pb.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    if ui.json {
        println!(
            "{:#}",
            json!({ "array": name, "tid": snap.tid(), "file": file, "format": "npy", "bytes": a.meta.nbytes, "seconds": secs })
        );
    } else {
        ui.say(format!(
            "exported '{name}' at tid {} ({}, {:?}, {}) to {} in {secs:.1} s",
            snap.tid(),
            a.meta.dtype,
            a.meta.shape,
            human(a.meta.nbytes),
            file.display()
        ));
    }
    Ok(())
}

fn import(
    s: &Arc<dyn Store>,
    name: &str,
    file: &Path,
    blksize: Option<u64>,
    replace: bool,
    note: Option<String>,
    ui: Ui,
) -> Result<()> {
    let t0 = Instant::now();
    let src = npy::open(file)?;
    let itemsize = outcore::descr_itemsize(&src.descr)
        .ok_or_else(|| anyhow!("unsupported dtype {} in {}", src.descr, file.display()))?;
    let nbytes = outcore::nbytes_of(&src.shape, itemsize)?;
    let order = if src.fortran_order { Order::F } else { Order::C };
    let mut meta = ArrayMeta::new(src.descr.clone(), src.shape.clone(), order, nbytes);
    if let Some(b) = blksize {
        outcore::check_blksize(b).context("--blksize")?;
        meta.blksize = b;
    }
    let base = s.head()?;
    let note = note.unwrap_or_else(|| format!("outcore import {} as {name}", file.display()));
    let mut c = Commit::new().with_description(note).with_user(user());
    if let Some(old) = s.array(name, base)? {
        if !replace {
            bail!("the store already has an array '{name}' (give --replace to replace it)");
        }
        c.delete_array(old.id);
    }
    let id = ArrayId::random();
    c.put_array(id, name, meta.clone());
    let pb = ui.bytes_bar(nbytes, "import");
    let f = Arc::new(src.file);
    let bs = meta.blksize;
    for blk in 0..meta.nblocks() {
        let (f, pb) = (f.clone(), pb.clone());
        let off = src.data_offset + blk * bs;
        let len = (nbytes - blk * bs).min(bs) as usize;
        c.write_block_from(
            id,
            blk,
            move |buf: &mut Vec<u8>| -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
                use std::os::unix::fs::FileExt;
                buf.resize(len, 0);
                f.read_exact_at(buf, off)?;
                pb.inc(len as u64);
                Ok(())
            },
        );
    }
    let tid = s.commit(base, c)?;
    pb.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    if ui.json {
        println!(
            "{:#}",
            json!({ "array": name, "tid": tid, "file": file, "format": "npy", "bytes": nbytes, "seconds": secs })
        );
    } else {
        ui.say(format!(
            "imported {} ({}, {:?}, {}) as '{name}' in tid {tid} in {secs:.1} s",
            file.display(),
            meta.dtype,
            meta.shape,
            human(nbytes)
        ));
    }
    Ok(())
}

fn user() -> String {
    std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_default()
}

/// One commit of a copy: the source's transaction (or None for the state at `tid`) and what it
/// changed.
struct Step {
    tid: Tid,
    prev: Tid,
    txn: Option<store::TxnInfo>,
    full: bool,
    blocks: Vec<(ArrayId, u64)>,
    arrays: Vec<ArrayId>,
}

fn cp(src_loc: &str, dst_loc: &str, current: bool, ui: Ui) -> Result<i32> {
    let t0 = Instant::now();
    let src = open_existing(src_loc)?;
    if let Some(p) = local_path(dst_loc) {
        if Path::new(p).exists() {
            bail!("{dst_loc} exists: cp writes a new store");
        }
    }
    let head = src.head()?;
    let horizon = src.gc_horizon()?;
    let first = if current { head } else { horizon.min(head) };
    // Holds every tid from the oldest copied on against a concurrent gc.
    let _snap = src.snapshot(Some(first))?;
    let steps = copy_plan(&*src, first, head, current)?;
    let total_blocks: u64 = steps.iter().map(|s| s.blocks.len() as u64).sum();

    let dst = store::open(dst_loc).with_context(|| format!("opening {dst_loc}"))?;
    if dst.head()? != 0 {
        bail!("{dst_loc} is not empty (head tid {}): cp writes into a new store only", dst.head()?);
    }
    let pb = ui.bar(total_blocks, "copying [{bar:40}] {pos}/{len} blocks ({msg}), eta {eta}");
    let mut dst_head = 0;
    for (i, step) in steps.iter().enumerate() {
        pb.set_message(format!("commit {}/{}", i + 1, steps.len()));
        let c = copy_commit(&src, step, &pb)?;
        dst_head = dst.commit(dst_head, c).with_context(|| format!("copying tid {}", step.tid))?;
    }
    pb.finish_and_clear();

    // Verify: the same arrays with the same metadata and bytes at the heads, and as many commits.
    let vb = ui.bar(0, "verifying [{bar:40}] {pos}/{len} blocks, eta {eta}");
    let (blocks, bytes) = verify_copy(&*src, head, &*dst, dst_head, &vb)?;
    vb.finish_and_clear();
    let commits = steps.len();
    let secs = t0.elapsed().as_secs_f64();
    if ui.json {
        println!(
            "{:#}",
            json!({ "src": src.location(), "dst": dst.location(), "commits": commits, "src_head": head, "dst_head": dst_head,
                    "blocks_verified": blocks, "bytes_verified": bytes, "history": !current, "seconds": secs })
        );
    } else {
        ui.say(format!(
            "copied {} to {}: {commits} commits ({}), {blocks} blocks / {} verified equal, in {secs:.1} s",
            src.location(),
            dst.location(),
            if current { "newest state only".to_string() } else { format!("history from tid {first}") },
            human(bytes)
        ));
    }
    Ok(0)
}

/// The commits of a copy: the state at `first` in full (unless the store is empty), then,
/// unless `current`, each later commit up to `head` with the blocks and arrays it changed.
fn copy_plan(src: &dyn Store, first: Tid, head: Tid, current: bool) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    if first > 0 {
        let mut blocks = Vec::new();
        let arrays = src.arrays(first)?;
        for a in &arrays {
            blocks.extend((0..a.meta.nblocks()).map(|b| (a.id, b)));
        }
        let txn = if current { None } else { src.history(first - 1, first).ok().and_then(|mut v| v.pop()) };
        steps.push(Step {
            tid: first,
            prev: 0,
            txn,
            full: true,
            blocks,
            arrays: arrays.iter().map(|a| a.id).collect(),
        });
    }
    if !current {
        let mut prev = first;
        for t in src.history(first, head)? {
            let ch = src.changes(prev, t.tid)?;
            steps.push(Step {
                tid: t.tid,
                prev,
                txn: Some(t.clone()),
                full: false,
                blocks: ch.blocks,
                arrays: ch.arrays,
            });
            prev = t.tid;
        }
    }
    Ok(steps)
}

/// The commit that replays `step` of a copy: its record (the source's, or a note naming the
/// copy), its array changes, and its blocks loaded from `src` when the destination stores them
/// (each one ticks `pb`).
fn copy_commit(src: &Arc<dyn Store>, step: &Step, pb: &ProgressBar) -> Result<Commit> {
    let mut c = match &step.txn {
        Some(t) => Commit::new()
            .with_user(t.user.clone())
            .with_description(t.description.clone())
            .with_extension(t.extension.clone()),
        None => Commit::new().with_user(user()).with_description(format!(
            "outcore cp of {} at tid {}",
            src.location(),
            step.tid
        )),
    };
    let mut live = copy_arrays(&**src, step, &mut c)?;
    for &(id, blk) in &step.blocks {
        let meta = match live.get(&id) {
            Some(m) => m.clone(),
            None => match src.array_by_id(id, step.tid)? {
                Some(a) => {
                    live.insert(id, a.meta.clone());
                    a.meta
                }
                None => continue,
            },
        };
        if blk >= meta.nblocks() {
            pb.inc(1);
            continue;
        }
        let (src, pb, at, bs) = (src.clone(), pb.clone(), step.tid, meta.blksize as usize);
        c.write_block_from(
            id,
            blk,
            move |buf: &mut Vec<u8>| -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
                buf.resize(bs, 0);
                src.load(id, blk, at, buf)?;
                pb.inc(1);
                Ok(())
            },
        );
    }
    Ok(c)
}

/// Adds the array changes of `step` to `c` (creations and metadata, the shrinks as truncations,
/// deletions); returns the metadata of the arrays live after it.
fn copy_arrays(src: &dyn Store, step: &Step, c: &mut Commit) -> Result<std::collections::HashMap<ArrayId, ArrayMeta>> {
    let mut live = std::collections::HashMap::new();
    for id in &step.arrays {
        match src.array_by_id(*id, step.tid)? {
            Some(a) => {
                if !step.full {
                    if let Some(old) = src.array_by_id(*id, step.prev)? {
                        if old.meta.nbytes > a.meta.nbytes {
                            c.truncate(*id, a.meta.nbytes);
                        }
                    }
                }
                c.put_array(*id, a.name.clone(), a.meta.clone());
                live.insert(*id, a.meta.clone());
            }
            None => {
                if !step.full && src.array_by_id(*id, step.prev)?.is_some() {
                    c.delete_array(*id);
                }
            }
        }
    }
    Ok(live)
}

/// Compare every array of `a` at `ta` with `b` at `tb`; returns (blocks, bytes) compared.
fn verify_copy(a: &dyn Store, ta: Tid, b: &dyn Store, tb: Tid, pb: &ProgressBar) -> Result<(u64, u64)> {
    let xs = a.arrays(ta)?;
    let ys = b.arrays(tb)?;
    let names = |v: &[ArrayInfo]| v.iter().map(|a| (a.name.clone(), a.id, a.meta.clone())).collect::<Vec<_>>();
    if names(&xs) != names(&ys) {
        bail!("verification failed: the copy's arrays differ from the source's");
    }
    pb.set_length(xs.iter().map(|x| x.meta.nblocks()).sum());
    let (mut blocks, mut bytes) = (0, 0);
    for x in &xs {
        let bs = x.meta.blksize as usize;
        let (mut ba, mut bb) = (vec![0u8; bs], vec![0u8; bs]);
        for blk in 0..x.meta.nblocks() {
            a.load(x.id, blk, ta, &mut ba)?;
            b.load(x.id, blk, tb, &mut bb)?;
            if ba != bb {
                bail!("verification failed: array '{}' block {blk} differs in the copy", x.name);
            }
            blocks += 1;
            bytes += (x.meta.nbytes - blk * bs as u64).min(bs as u64);
            pb.inc(1);
        }
    }
    Ok((blocks, bytes))
}
