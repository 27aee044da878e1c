//! SQLite backend: the embedded default. Metadata in one SQLite file (WAL mode,
//! `synchronous=FULL`); the bytes of uncompressed arrays in block extents of the data file
//! `<store>.blocks` (see `datafile`), which views map. Commits take SQLite's write lock
//! (`BEGIN IMMEDIATE`), so tid order is commit order across processes.
//!
//! A commit writes a changed block of an uncompressed array either **in place** (only the
//! changed pages, when no other snapshot is open anywhere, under the registry's exclusive gate:
//! the new bytes go into redo rows of the SQLite commit, then home, then the data file is synced
//! and the redo rows dropped) or to a **new extent** (written and synced before the SQLite
//! commit; the old extent is retired at the commit's tid and reused once no open snapshot is
//! older than that tid). Redo rows left by a crash are replayed by the next commit or snapshot.

mod checkpoint;
mod columns;
pub(crate) mod datafile;
pub(crate) mod registry;
pub(crate) mod staged;

use super::read::{self, CommitRow, ReadTxn};
use super::{array_info, bound, check_format, encode_meta, sql, FORMAT_NAME, SQLITE_FORMAT_VERSION};
use crate::block::{self, Encoded, Stored};
use crate::commit::{
    self, ArrayVersion, ChangedSets, Commit, CurrentRow, CurrentWrite, ExtentTxn, Head, PageWrite, PatchTxn, WriteTxn,
};
use crate::error::{Error, Result};
use crate::failpoint::failpoint;
use crate::pool::Pool;
use crate::rowsum::{self, CurrentCols};
use crate::store::{Store, Subscription};
use crate::types::{
    ArrayId, ArrayInfo, ArrayMeta, Changes, Codec, GcStats, Location, Snapshot, Staged, StoreStats, Tid, TxnInfo,
};
use columns::Bits;
use datafile::DataFile;
use parking_lot::Mutex;
use registry::{Readers, Registry};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use staged::StagedPages;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const SCHEMA: &str = "
CREATE TABLE outcore_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE outcore_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    tid INTEGER NOT NULL, gc_horizon INTEGER NOT NULL, time_us INTEGER NOT NULL, row_sum INTEGER NOT NULL);
CREATE TABLE outcore_txn (
    tid INTEGER PRIMARY KEY, time_us INTEGER NOT NULL,
    user TEXT NOT NULL, description TEXT NOT NULL, extension TEXT NOT NULL, catalog INTEGER NOT NULL,
    row_sum INTEGER NOT NULL);
CREATE INDEX outcore_txn_time ON outcore_txn (time_us);
CREATE TABLE outcore_array (
    array_id INTEGER NOT NULL, tid INTEGER NOT NULL, name TEXT, meta TEXT, row_sum INTEGER NOT NULL,
    PRIMARY KEY (array_id, tid)) WITHOUT ROWID;
CREATE INDEX outcore_array_tid ON outcore_array (tid);
CREATE TABLE outcore_current (
    array_id INTEGER NOT NULL, blk INTEGER NOT NULL, tid INTEGER NOT NULL,
    len INTEGER NOT NULL, base_tid INTEGER NOT NULL, base_len INTEGER NOT NULL,
    codec INTEGER NOT NULL, checksum INTEGER NOT NULL, data_id INTEGER,
    patches INTEGER NOT NULL, patch_bytes INTEGER NOT NULL, ext_off INTEGER, page_sums BLOB,
    row_sum INTEGER NOT NULL,
    PRIMARY KEY (array_id, blk)) WITHOUT ROWID;
CREATE TABLE outcore_blocks (
    array_id INTEGER NOT NULL, seg INTEGER NOT NULL, bits BLOB NOT NULL, row_sum INTEGER NOT NULL,
    PRIMARY KEY (array_id, seg)) WITHOUT ROWID;
CREATE TABLE outcore_retired (
    ext_off INTEGER PRIMARY KEY, size INTEGER NOT NULL, array_id INTEGER NOT NULL, blk INTEGER NOT NULL,
    since_tid INTEGER NOT NULL, retired_tid INTEGER NOT NULL, row_sum INTEGER NOT NULL);
CREATE INDEX outcore_retired_blk ON outcore_retired (array_id, blk);
CREATE TABLE outcore_free (
    size INTEGER NOT NULL, ext_off INTEGER NOT NULL, row_sum INTEGER NOT NULL,
    PRIMARY KEY (size, ext_off)) WITHOUT ROWID;
CREATE TABLE outcore_staged (
    ext_off INTEGER PRIMARY KEY, size INTEGER NOT NULL, slot INTEGER NOT NULL, nonce INTEGER NOT NULL,
    row_sum INTEGER NOT NULL);
CREATE TABLE outcore_redo (
    tid INTEGER NOT NULL, off INTEGER NOT NULL, data BLOB NOT NULL, row_sum INTEGER NOT NULL,
    PRIMARY KEY (tid, off));
CREATE TABLE outcore_local (
    id INTEGER PRIMARY KEY CHECK (id = 1), data_end INTEGER NOT NULL, redo INTEGER NOT NULL,
    row_sum INTEGER NOT NULL);
CREATE TABLE outcore_blob (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE outcore_patch (
    array_id INTEGER NOT NULL, blk INTEGER NOT NULL, tid INTEGER NOT NULL, prev_tid INTEGER NOT NULL,
    codec INTEGER NOT NULL, len INTEGER NOT NULL, checksum INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (array_id, blk, tid));
CREATE TABLE outcore_undo (
    array_id INTEGER NOT NULL, blk INTEGER NOT NULL, tid INTEGER NOT NULL, prev_tid INTEGER NOT NULL,
    kind INTEGER NOT NULL, depth INTEGER NOT NULL, chain_bytes INTEGER NOT NULL,
    codec INTEGER NOT NULL, len INTEGER NOT NULL, checksum INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (array_id, blk, tid));
CREATE INDEX outcore_undo_tid ON outcore_undo (tid, array_id, blk);
";

/// SQLite page size of new databases: SQLite holds metadata (block bytes of uncompressed arrays
/// live in the data file), so small pages keep small commits small in the WAL.
const PAGE_SIZE: u64 = 4096;
/// The granule of the pending-patch policy (compressed arrays' payloads in SQLite): patches are
/// kept when a commit's changed pages are spread over several such runs of a payload.
const PATCH_GRANULE: u64 = 65536;
/// The WAL is truncated to this size when it restarts after a checkpoint.
const WAL_SIZE_LIMIT: i64 = 16 << 20;

/// SQLite's file header.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// How long a commit waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(120);

fn err(op: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |e| Error::Backend { backend: "sqlite", op, source: Box::new(e) }
}

/// A local store: SQLite metadata, a data file of block extents, a reader registry.
pub struct SqliteStore {
    path: PathBuf,
    location: String,
    data: DataFile,
    registry: Arc<Registry>,
    /// The process that opened the store.
    pid: u32,
    writer: Mutex<Connection>,
    readers: Pool<Connection>,
    /// The WAL checkpoint thread (none on a read-only handle).
    checkpointer: Option<checkpoint::Checkpointer>,
    /// Opened with [`open_read_only`](Self::open_read_only).
    read_only: bool,
    /// The page checksums of this handle's staged extents, by offset.
    staged: Mutex<HashMap<u64, StagedPages>>,
    /// Recent verified array listings, by tid.
    listings: Mutex<Vec<(Tid, Arc<Vec<ArrayInfo>>)>>,
}

/// The open files of a store handle.
struct Parts {
    data: DataFile,
    registry: Arc<Registry>,
    /// The connection commits go through (a read-only one on a read-only handle).
    writer: Connection,
    /// The WAL checkpoint thread; none on a read-only handle.
    checkpointer: Option<checkpoint::Checkpointer>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish()
    }
}

/// How a connection opens the metadata file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Read and write, creating the file if needed.
    Create,
    /// Read and write an existing file.
    ReadWrite,
    /// Read only (no write to the file, its WAL or its shared-memory file).
    ReadOnly,
}

pub(crate) fn connect(path: &Path, access: Access) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let conn = match access {
        Access::Create => Connection::open_with_flags(
            path,
            flags | OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )?,
        Access::ReadWrite => Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_READ_WRITE)?,
        Access::ReadOnly => return connect_read_only(path, flags | OpenFlags::SQLITE_OPEN_READ_ONLY),
    };
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Set before the file is created (metadata-sized pages; see PAGE_SIZE).
    conn.pragma_update(None, "page_size", PAGE_SIZE as i64)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "cache_size", -65536)?;
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    Ok(conn)
}

/// A read-only connection that writes nothing anywhere. Without a WAL file (the last writer
/// closed the store, which folds the WAL into the database) the database is opened `immutable`:
/// SQLite then needs no shared-memory file and takes no locks. With one (a writer has it open,
/// or died), `mode=ro` reads the WAL through the writers' shared-memory file.
fn connect_read_only(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    let mut wal = path.as_os_str().to_os_string();
    wal.push("-wal");
    let param = if Path::new(&wal).exists() { "mode=ro" } else { "immutable=1" };
    let conn = Connection::open_with_flags(format!("file:{}?{param}", uri_path(path)), flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "cache_size", -65536)?;
    Ok(conn)
}

/// `path` for a `file:` URI (`%`, `?` and `#` escaped).
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '%' | '?' | '#' => out.push_str(&format!("%{:02X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

impl SqliteStore {
    /// Open the existing store at `path` for reading only: nothing is written to any of its
    /// files (it may lie on read-only media, or belong to another user). Commits, gc and staging
    /// fail with [`Error::ReadOnly`]. This handle's snapshots are not registered with
    /// committers: open read-only a store nobody writes meanwhile.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let location = path.display().to_string();
        if !path.is_file() {
            return Err(Error::NotAStore { location, reason: "no such file (nothing was created)".into() });
        }
        check_magic(&path, &location)?;
        let reader = connect(&path, Access::ReadOnly)
            .map_err(|e| Error::BadLocation { location: location.clone(), reason: e.to_string() })?;
        check_tables(&reader, &location)?;
        let get = |key: &str| -> Result<Option<String>> {
            reader
                .query_row("SELECT value FROM outcore_meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
                .map_err(err("open"))
        };
        check_format(&location, get("format")?, get("version")?, SQLITE_FORMAT_VERSION)?;
        let data = DataFile::open_read_only(&data_path(&path))?;
        let registry = Arc::new(Registry::open_read_only(&readers_path(&path))?);
        Ok(Self::assemble(path, location, Parts { data, registry, writer: reader, checkpointer: None }))
    }

    /// A store handle of these parts (read-only when it has no checkpoint thread).
    fn assemble(path: PathBuf, location: String, p: Parts) -> Self {
        SqliteStore {
            path,
            location,
            data: p.data,
            registry: p.registry,
            pid: std::process::id(),
            writer: Mutex::new(p.writer),
            readers: Pool::new(16),
            read_only: p.checkpointer.is_none(),
            checkpointer: p.checkpointer,
            staged: Mutex::new(HashMap::new()),
            listings: Mutex::new(Vec::new()),
        }
    }

    /// Refuse what needs write access on a read-only handle.
    fn check_writable(&self, op: &'static str) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly { location: self.location.clone(), op });
        }
        Ok(())
    }

    /// Open the store at `path`, creating it if the file does not exist (or is empty).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let location = path.display().to_string();
        let not_a_store = |reason: String| Error::NotAStore { location: location.clone(), reason };
        if path.is_file() {
            check_magic(&path, &location)?;
        }
        if path.is_dir() {
            return Err(Error::BadLocation { location, reason: "is a directory".into() });
        }
        if path.metadata().is_ok_and(|m| m.len() > 0) {
            // Look before touching: a foreign database must be left byte for byte as it is
            // (opening it for writing would switch it to WAL mode, for one).
            refuse_foreign(&path, &location)?;
        }
        let mut writer = connect(&path, Access::Create).map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase) => not_a_store("the file is not a SQLite database".into()),
            _ => Error::BadLocation { location: location.clone(), reason: e.to_string() },
        })?;
        Self::init_schema(&mut writer, &location)?;
        // Commits leave copying the WAL into the database file to a background thread.
        writer.pragma_update(None, "wal_autocheckpoint", 0).map_err(err("open"))?;
        let data = DataFile::open(&data_path(&path))?;
        let registry = Arc::new(Registry::open(&readers_path(&path))?);
        let checkpointer = Some(
            checkpoint::Checkpointer::start(&path)
                .map_err(|e| Error::BadLocation { location: location.clone(), reason: e.to_string() })?,
        );
        Ok(Self::assemble(path, location, Parts { data, registry, writer, checkpointer }))
    }

    fn init_schema(conn: &mut Connection, location: &str) -> Result<()> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| {
            match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::NotADatabase) => Error::NotAStore {
                    location: location.to_string(),
                    reason: "the file is not a SQLite database".into(),
                },
                _ => err("open")(e),
            }
        })?;
        let tables: Vec<String> = {
            let mut st = tx.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").map_err(err("open"))?;
            let rows = st.query_map([], |r| r.get(0)).map_err(err("open"))?;
            rows.collect::<rusqlite::Result<_>>().map_err(err("open"))?
        };
        if tables.is_empty() {
            tx.execute_batch(SCHEMA).map_err(err("create schema"))?;
            tx.execute(
                "INSERT INTO outcore_head (id, tid, gc_horizon, time_us, row_sum) VALUES (1, 0, 0, 0, ?1)",
                [rowsum::head(0, 0, 0).finish()],
            )
            .map_err(err("create schema"))?;
            set_local(&tx, 0, 0)?;
            tx.execute(
                "INSERT INTO outcore_meta (key, value) VALUES ('format', ?1), ('version', ?2)",
                params![FORMAT_NAME, SQLITE_FORMAT_VERSION.to_string()],
            )
            .map_err(err("create schema"))?;
            tx.commit().map_err(err("create schema"))?;
            return Ok(());
        }
        if !tables.iter().any(|t| t == "outcore_meta") {
            return Err(Error::NotAStore {
                location: location.to_string(),
                reason: format!("SQLite database with foreign tables ({})", tables.join(", ")),
            });
        }
        let get = |key: &str| -> Result<Option<String>> {
            tx.query_row("SELECT value FROM outcore_meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
                .map_err(err("open"))
        };
        check_format(location, get("format")?, get("version")?, SQLITE_FORMAT_VERSION)
    }

    fn reader(&self) -> Result<crate::pool::Pooled<'_, Connection>> {
        self.check_process()?;
        let access = if self.read_only { Access::ReadOnly } else { Access::ReadWrite };
        self.readers.get(|| connect(&self.path, access).map_err(err("connect")))
    }

    /// SQLite connections and file locks cannot cross `fork()`: a child using its parent's
    /// handle gets [`Error::Forked`] (it must open the store again), never a corrupted database.
    fn check_process(&self) -> Result<()> {
        if std::process::id() != self.pid {
            return Err(Error::Forked { location: self.location.clone(), opened_by: self.pid });
        }
        Ok(())
    }
}

/// Refuse, through a read-only connection, a SQLite file that is not an outcore store.
/// Refuse a file that does not start as a SQLite database does (an empty file passes: it
/// becomes a store).
fn check_magic(path: &Path, location: &str) -> Result<()> {
    use std::io::Read;
    let io = |e: std::io::Error| Error::BadLocation { location: location.to_string(), reason: e.to_string() };
    let mut head = Vec::with_capacity(16);
    std::fs::File::open(path).map_err(io)?.take(16).read_to_end(&mut head).map_err(io)?;
    if !head.is_empty() && head.as_slice() != SQLITE_MAGIC {
        return Err(Error::NotAStore {
            location: location.to_string(),
            reason: "the file is not a SQLite database".into(),
        });
    }
    Ok(())
}

fn refuse_foreign(path: &Path, location: &str) -> Result<()> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let c = match Connection::open_with_flags(path, flags) {
        Ok(c) => c,
        // Unreadable this way (a WAL database without its shared-memory file, for example):
        // the read-write open decides.
        Err(_) => return Ok(()),
    };
    let _ = c.busy_timeout(BUSY_TIMEOUT);
    check_tables(&c, location)
}

/// Refuse a SQLite database that holds tables but not outcore's (or a file that is not a
/// database); an unreadable one passes (the open that follows decides).
fn check_tables(c: &Connection, location: &str) -> Result<()> {
    let not_a_store = |reason: String| Error::NotAStore { location: location.to_string(), reason };
    let tables: Vec<String> = match c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
    {
        Ok(t) => t,
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) => {
            return Err(not_a_store("the file is not a SQLite database".into()))
        }
        Err(_) => return Ok(()),
    };
    if !tables.is_empty() && !tables.iter().any(|t| t == "outcore_meta") {
        return Err(not_a_store(format!("SQLite database with foreign tables ({})", tables.join(", "))));
    }
    Ok(())
}

/// `<store>.blocks`: the data file.
pub(crate) fn data_path(store: &Path) -> PathBuf {
    sibling(store, ".blocks")
}

/// `<store>.readers`: the reader registry.
pub(crate) fn readers_path(store: &Path) -> PathBuf {
    sibling(store, ".readers")
}

fn sibling(store: &Path, suffix: &str) -> PathBuf {
    let mut s = store.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

// ---- queries shared by readers and the commit transaction ----

fn q_head(c: &Connection) -> Result<Head> {
    let (head, sum) = c
        .prepare_cached("SELECT tid, gc_horizon, time_us, row_sum FROM outcore_head WHERE id = 1")
        .and_then(|mut st| {
            st.query_row([], |r| {
                let head = Head { tid: r.get::<_, u64>(0)?, horizon: r.get::<_, u64>(1)?, time_us: r.get(2)? };
                Ok((head, r.get::<_, i64>(3)?))
            })
        })
        .map_err(err("read head"))?;
    rowsum::verify(rowsum::head(head.tid, head.horizon, head.time_us), sum, || "the head row".into())?;
    Ok(head)
}

/// Write the head row.
fn set_head_row(c: &Connection, head: &Head) -> Result<()> {
    c.prepare_cached("UPDATE outcore_head SET tid = ?1, gc_horizon = ?2, time_us = ?3, row_sum = ?4 WHERE id = 1")
        .and_then(|mut st| {
            let sum = rowsum::head(head.tid, head.horizon, head.time_us).finish();
            st.execute(params![head.tid, head.horizon, head.time_us, sum])
        })
        .map(|_| ())
        .map_err(err("write head"))
}

/// The catalog recorded with the newest commit at or before `at`: the sum of
/// `rowsum::catalog_entry` over the array versions live at that commit (0 before the first).
fn q_catalog(c: &Connection, at: Tid) -> Result<i64> {
    let rows = q_txns(c, "WHERE tid = (SELECT max(tid) FROM outcore_txn WHERE tid <= ?1)", &[&bound(at)])?;
    Ok(rows.first().map_or(0, |r| r.catalog))
}

/// A commit record as stored.
struct TxnRow {
    commit: CommitRow,
    catalog: i64,
}

/// The commit records that `filter` (a WHERE clause over `outcore_txn`) selects, in tid order,
/// each checked against its row checksum.
fn q_txns(c: &Connection, filter: &str, p: &[&dyn rusqlite::ToSql]) -> Result<Vec<TxnRow>> {
    let sql = format!(
        "SELECT tid, time_us, user, description, extension, catalog, row_sum FROM outcore_txn {filter} ORDER BY tid"
    );
    let rows: Vec<(TxnRow, i64)> = c
        .prepare_cached(&sql)
        .and_then(|mut st| {
            st.query_map(p, |r| {
                let commit = CommitRow {
                    tid: r.get(0)?,
                    time_us: r.get(1)?,
                    user: r.get(2)?,
                    description: r.get(3)?,
                    extension: r.get(4)?,
                };
                let row = TxnRow { commit, catalog: r.get(5)? };
                Ok((row, r.get(6)?))
            })?
            .collect()
        })
        .map_err(err("read commit records"))?;
    rows.into_iter()
        .map(|(r, sum)| {
            let c = &r.commit;
            let want = rowsum::txn(c.tid, c.time_us, &c.user, &c.description, &c.extension, r.catalog);
            rowsum::verify(want, sum, || format!("the commit record of tid {}", c.tid)).map(|()| r)
        })
        .collect()
}

/// Write a commit record.
fn put_txn(c: &Connection, info: &TxnInfo, catalog: i64) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO outcore_txn (tid, time_us, user, description, extension, catalog, row_sum)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut st| {
        let ext = info.extension.to_string();
        let sum = rowsum::txn(info.tid, info.time_us, &info.user, &info.description, &ext, catalog).finish();
        st.execute(params![info.tid, info.time_us, info.user, info.description, ext, catalog, sum])
    })
    .map(|_| ())
    .map_err(err("commit"))
}

/// The arrays live at `at`, checked against the catalog of the commit record: a version row
/// lost or moved (to another tid or array) is reported, never read as an older version.
fn q_live_arrays(c: &Connection, at: Tid) -> Result<Vec<ArrayInfo>> {
    let arrays = q_arrays(c, LIVE_ARRAYS, &[&bound(at)])?;
    let found = arrays.iter().fold(0i64, |s, a| s.wrapping_add(rowsum::catalog_entry(a.id.0, a.tid)));
    let want = q_catalog(c, at)?;
    if found != want {
        return Err(Error::CorruptMeta {
            what: format!("the list of arrays at tid {at}"),
            detail: format!("{} array versions found, which do not match the commit record", arrays.len()),
        });
    }
    Ok(arrays)
}

/// The data file's allocation row: (end of the allocated part, tid of the pending in-place
/// commit or 0).
fn q_local(c: &Connection) -> Result<(u64, u64)> {
    let (end, redo, sum): (u64, u64, i64) = c
        .prepare_cached("SELECT data_end, redo, row_sum FROM outcore_local WHERE id = 1")
        .and_then(|mut st| st.query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))
        .map_err(err("read the local head"))?;
    rowsum::verify(rowsum::local(end, redo), sum, || "the data file's allocation row".into())?;
    Ok((end, redo))
}

/// Write the data file's allocation row.
fn set_local(c: &Connection, data_end: u64, redo: u64) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO outcore_local (id, data_end, redo, row_sum) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET data_end = excluded.data_end, redo = excluded.redo, row_sum = excluded.row_sum",
    )
    .and_then(|mut st| st.execute(params![data_end, redo, rowsum::local(data_end, redo).finish()]))
    .map(|_| ())
    .map_err(err("write the local head"))
}

fn q_load(c: &Connection, data: &DataFile, array: ArrayId, blk: u64, at: Tid, buf: &mut [u8]) -> Result<()> {
    if !c.is_autocommit() {
        return q_load_in_txn(c, data, array, blk, at, buf);
    }
    // One read transaction: the version row, its payload and the gc horizon from one snapshot.
    in_snapshot(c, "load", |c| q_load_in_txn(c, data, array, blk, at, buf))
}

/// Run `f` inside one read transaction of `c` (one snapshot of the database).
fn in_snapshot<T>(c: &Connection, op: &'static str, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    c.execute_batch("BEGIN DEFERRED").map_err(err(op))?;
    let r = f(c);
    c.execute_batch("COMMIT").map_err(err(op))?;
    r
}

/// A read snapshot of the store: a connection inside a read transaction.
struct SqliteRead<'c>(&'c Connection);

impl ReadTxn for SqliteRead<'_> {
    fn head(&mut self) -> Result<Head> {
        q_head(self.0)
    }

    fn changed(&mut self, after: Tid, upto: Tid) -> Result<ChangedSets> {
        q_changes(self.0, after, upto)
    }

    fn commits(&mut self, after: Tid, upto: Tid) -> Result<Vec<CommitRow>> {
        let rows = q_txns(self.0, "WHERE tid > ?1 AND tid <= ?2", params![after, bound(upto)])?;
        Ok(rows.into_iter().map(|r| r.commit).collect())
    }
}

/// A block's current version row.
struct CurrentRowSql {
    /// The newest version's tid and content length.
    tid: Tid,
    len: u64,
    /// The stored payload (`tid` and `len` of the version it holds; `data` unused).
    stored: Stored<'static>,
    /// The `outcore_blob` row (0: none, the block is empty).
    data_id: i64,
    /// Pending patches (taking the payload's version to the newest) and their bytes.
    patches: i64,
    patch_bytes: i64,
    /// The data-file extent holding the content (instead of a blob), and its page checksums.
    ext_off: Option<u64>,
    page_sums: Option<Vec<u8>>,
}

impl CurrentRowSql {
    /// The columns its row checksum covers.
    fn cols(&self, array: ArrayId, blk: u64) -> CurrentCols {
        CurrentCols {
            array: array.0,
            blk,
            tid: self.tid,
            len: self.len,
            base_tid: self.stored.tid,
            base_len: self.stored.len,
            codec: self.stored.codec,
            checksum: self.stored.checksum,
            data_id: (self.data_id != 0).then_some(self.data_id),
            patches: self.patches,
            patch_bytes: self.patch_bytes,
            ext_off: self.ext_off,
        }
    }
}

/// A block's index row, its checksum verified.
fn q_current(c: &Connection, array: ArrayId, blk: u64) -> Result<Option<CurrentRowSql>> {
    let row = c
        .prepare_cached(
            "SELECT tid, len, base_tid, base_len, codec, checksum, coalesce(data_id, 0), patches, patch_bytes, ext_off,
                    page_sums, row_sum
             FROM outcore_current WHERE array_id = ?1 AND blk = ?2",
        )
        .and_then(|mut st| st.query_row(params![array, blk], current_row).optional())
        .map_err(err("read the block index"))?;
    match row {
        Some((cur, sum)) => {
            verify_current(&cur.cols(array, blk), sum)?;
            Ok(Some(cur))
        }
        None => Ok(None),
    }
}

/// Blocks per row of `outcore_blocks`, the record of which blocks have an index row (one bit
/// each: 512 bytes a row, covering 8 GiB of an array of 2 MiB blocks).
const SEG_BLOCKS: u64 = 4096;

/// The bits of segment `seg` of array `array` (verified; `None`: no block of it has a row).
fn q_segment(c: &Connection, array: ArrayId, seg: u64) -> Result<Option<Vec<u8>>> {
    let row: Option<(Vec<u8>, i64)> = c
        .prepare_cached("SELECT bits, row_sum FROM outcore_blocks WHERE array_id = ?1 AND seg = ?2")
        .and_then(|mut st| st.query_row(params![array, seg], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(err("read the block record"))?;
    let Some((bits, sum)) = row else { return Ok(None) };
    verify_segment(array, seg, &bits, sum)?;
    Ok(Some(bits))
}

fn verify_segment(array: ArrayId, seg: u64, bits: &[u8], sum: i64) -> Result<()> {
    rowsum::verify(rowsum::blocks(array.0, seg, bits), sum, || {
        format!("the record of written blocks {}.. of array {array}", seg * SEG_BLOCKS)
    })?;
    if bits.len() as u64 != SEG_BLOCKS / 8 {
        return Err(Error::CorruptMeta {
            what: format!("the record of written blocks {}.. of array {array}", seg * SEG_BLOCKS),
            detail: format!("{} bytes, expected {}", bits.len(), SEG_BLOCKS / 8),
        });
    }
    Ok(())
}

fn bit(bits: &[u8], blk: u64) -> bool {
    let i = (blk % SEG_BLOCKS) as usize;
    bits[i / 8] & (1 << (i % 8)) != 0
}

/// Set (`on`) or clear the bits of `blks` (all in segment `seg`) in the record of written blocks.
fn set_bits(c: &Connection, array: ArrayId, seg: u64, blks: impl IntoIterator<Item = u64>, on: bool) -> Result<()> {
    let mut bits = q_segment(c, array, seg)?.unwrap_or_else(|| vec![0; (SEG_BLOCKS / 8) as usize]);
    for blk in blks {
        let i = (blk % SEG_BLOCKS) as usize;
        if on {
            bits[i / 8] |= 1 << (i % 8);
        } else {
            bits[i / 8] &= !(1 << (i % 8));
        }
    }
    let r = if bits.iter().all(|&b| b == 0) {
        c.prepare_cached("DELETE FROM outcore_blocks WHERE array_id = ?1 AND seg = ?2")
            .and_then(|mut st| st.execute(params![array, seg]))
    } else {
        c.prepare_cached("INSERT OR REPLACE INTO outcore_blocks (array_id, seg, bits, row_sum) VALUES (?1, ?2, ?3, ?4)")
            .and_then(|mut st| {
                let sum = rowsum::blocks(array.0, seg, &bits).finish();
                st.execute(params![array, seg, bits, sum])
            })
    };
    r.map(|_| ()).map_err(err("write the block record"))
}

/// A block with no index row must not be recorded as written: else its row was lost.
fn check_unwritten(c: &Connection, array: ArrayId, blk: u64) -> Result<()> {
    match q_segment(c, array, blk / SEG_BLOCKS)? {
        Some(bits) if bit(&bits, blk) => Err(missing_row(array, blk)),
        _ => Ok(()),
    }
}

fn missing_row(array: ArrayId, blk: u64) -> Error {
    Error::CorruptMeta {
        what: format!("block {blk} of array {array}"),
        detail: "recorded as written, but its index row is missing".into(),
    }
}

fn verify_current(cols: &CurrentCols, sum: i64) -> Result<()> {
    rowsum::verify(rowsum::current(cols), sum, || {
        format!("the index row of block {} of array {}", cols.blk, ArrayId(cols.array))
    })
}

/// A row of `q_current`'s query and its row checksum.
fn current_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(CurrentRowSql, i64)> {
    Ok((
        CurrentRowSql {
            tid: r.get::<_, u64>(0)?,
            len: r.get::<_, u64>(1)?,
            stored: Stored {
                bind: block::TidBinding::Seed,
                tid: r.get::<_, u64>(2)?,
                kind: block::KIND_CURRENT,
                len: r.get::<_, u64>(3)?,
                codec: r.get(4)?,
                checksum: r.get(5)?,
                prev_tid: 0,
                data: &[],
            },
            data_id: r.get(6)?,
            patches: r.get(7)?,
            patch_bytes: r.get(8)?,
            ext_off: r.get::<_, Option<u64>>(9)?,
            page_sums: r.get(10)?,
        },
        r.get(11)?,
    ))
}

/// The index rows of blocks `blks` of `array` (without their page checksums), verified, in
/// block order.
fn q_current_range(c: &Connection, array: ArrayId, blks: std::ops::Range<u64>) -> Result<Vec<(u64, CurrentRowSql)>> {
    let rows: Vec<(CurrentRowSql, i64, u64)> = c
        .prepare_cached(
            "SELECT tid, len, base_tid, base_len, codec, checksum, coalesce(data_id, 0), patches, patch_bytes, ext_off,
                    NULL, row_sum, blk
             FROM outcore_current WHERE array_id = ?1 AND blk >= ?2 AND blk < ?3 ORDER BY blk",
        )
        .and_then(|mut st| {
            let end = bound(blks.end);
            st.query_map(params![array, bound(blks.start), end], |r| {
                let (cur, sum) = current_row(r)?;
                Ok((cur, sum, r.get::<_, u64>(12)?))
            })?
            .collect()
        })
        .map_err(err("read the block index"))?;
    let mut out = Vec::with_capacity(rows.len());
    for (cur, sum, blk) in rows {
        verify_current(&cur.cols(array, blk), sum)?;
        out.push((blk, cur));
    }
    Ok(out)
}

/// Blocks in `blks` recorded as written must have an index row (`have`: the blocks that do, in
/// order).
fn check_range_recorded(c: &Connection, array: ArrayId, blks: std::ops::Range<u64>, have: &[u64]) -> Result<()> {
    if blks.start >= blks.end {
        return Ok(());
    }
    let (first, last) = (blks.start / SEG_BLOCKS, (blks.end - 1) / SEG_BLOCKS);
    let segs: Vec<(u64, Vec<u8>, i64)> = c
        .prepare_cached(
            "SELECT seg, bits, row_sum FROM outcore_blocks WHERE array_id = ?1 AND seg >= ?2 AND seg <= ?3 ORDER BY seg",
        )
        .and_then(|mut st| {
            st.query_map(params![array, bound(first), bound(last)], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect()
        })
        .map_err(err("read the block record"))?;
    for (seg, bits, sum) in segs {
        verify_segment(array, seg, &bits, sum)?;
        for (i, byte) in bits.iter().enumerate().filter(|(_, b)| **b != 0) {
            for k in 0..8 {
                let blk = seg * SEG_BLOCKS + (i * 8 + k) as u64;
                if byte & (1 << k) != 0 && blks.contains(&blk) && have.binary_search(&blk).is_err() {
                    return Err(missing_row(array, blk));
                }
            }
        }
    }
    Ok(())
}

fn q_load_in_txn(c: &Connection, data: &DataFile, array: ArrayId, blk: u64, at: Tid, buf: &mut [u8]) -> Result<()> {
    let cur = q_current(c, array, blk)?;
    if cur.is_none() {
        check_unwritten(c, array, blk)?;
    }
    let horizon = q_head(c)?.horizon;
    if at < horizon {
        return Err(Error::SnapshotGone { at, horizon });
    }
    let current_tid = cur.as_ref().map_or(0, |c| c.tid);
    let read_current = |buf: &mut [u8]| match &cur {
        Some(cur) if cur.data_id != 0 || cur.ext_off.is_some() => {
            Payloads { c, data }.read_current(array, blk, cur, buf)
        }
        _ => {
            buf.fill(0);
            Ok(())
        }
    };
    if current_tid <= at {
        return read_current(buf);
    }
    // An older snapshot: undo the newer commits, newest first, from the oldest full record
    // newer than the snapshot if there is one, else from the current version.
    let rows: Vec<(Stored<'static>, Vec<u8>)> = c
        .prepare_cached(UNDO_SINCE)
        .and_then(|mut st| {
            st.query_map(params![array, blk, at], |r| {
                let (tid, kind, prev_tid, codec, len, checksum) =
                    (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?);
                Ok((
                    Stored { bind: block::TidBinding::Seed, tid, kind, codec, len, checksum, prev_tid, data: &[] },
                    r.get(6)?,
                ))
            })?
            .collect()
        })
        .map_err(err("load"))?;
    let undo = rows.iter().map(|(s, data)| Stored { data, ..*s });
    block::rewind(array, blk, at, current_tid, read_current, undo, buf)
}

/// The undo records a snapshot `?3` of block (`?1`, `?2`) needs, newest first: those newer
/// than the snapshot, down to the oldest full record among them.
const UNDO_SINCE: &str = "SELECT tid, kind, prev_tid, codec, len, checksum, data FROM outcore_undo
     WHERE array_id = ?1 AND blk = ?2 AND tid > ?3 AND tid <= coalesce(
         (SELECT min(f.tid) FROM outcore_undo f WHERE f.array_id = ?1 AND f.blk = ?2 AND f.tid > ?3 AND f.kind = 2),
         9223372036854775807)
     ORDER BY tid DESC";

/// Where block payloads are read from: the metadata database (blobs, pending patches) and the
/// data file (extents).
struct Payloads<'a> {
    c: &'a Connection,
    data: &'a DataFile,
}

impl Payloads<'_> {
    /// Read a block's current version into `buf`: its stored payload, then its pending patches.
    fn read_current(&self, array: ArrayId, blk: u64, cur: &CurrentRowSql, buf: &mut [u8]) -> Result<()> {
        let c = self.c;
        self.read_base(array, blk, cur, buf)?;
        if cur.patches == 0 && cur.stored.tid == cur.tid {
            return Ok(());
        }
        let mut st = c
            .prepare_cached(
                "SELECT tid, prev_tid, codec, len, checksum, data FROM outcore_patch
             WHERE array_id = ?1 AND blk = ?2 ORDER BY tid",
            )
            .map_err(err("load"))?;
        let mut rows = st.query(params![array, blk]).map_err(err("load"))?;
        let mut at = cur.stored.tid;
        while let Some(r) = rows.next().map_err(err("load"))? {
            let get = |r: &rusqlite::Row<'_>| -> rusqlite::Result<(Tid, Tid, i64, u64, i64, Vec<u8>)> {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
            };
            let (tid, prev_tid, codec, len, checksum, data) = get(r).map_err(err("load"))?;
            let s = Stored {
                bind: block::TidBinding::Seed,
                tid,
                kind: block::KIND_PATCH,
                codec,
                len,
                checksum,
                prev_tid,
                data: &data,
            };
            if s.prev_tid != at || s.tid > cur.tid {
                return Err(block::corrupt(
                    array,
                    blk,
                    s.tid,
                    format!("pending patch of tid {} follows tid {at}", s.tid),
                ));
            }
            block::apply_patch(array, blk, &s, buf)?;
            at = s.tid;
        }
        if at != cur.tid {
            return Err(block::corrupt(
                array,
                blk,
                cur.tid,
                format!("the pending patch of tid {} is missing", cur.tid),
            ));
        }
        Ok(())
    }

    /// Read a block's stored payload (the current version without its pending patches) into `buf`.
    fn read_base(&self, array: ArrayId, blk: u64, cur: &CurrentRowSql, buf: &mut [u8]) -> Result<()> {
        let (c, data) = (self.c, self.data);
        if let Some(off) = cur.ext_off {
            let len = cur.stored.len as usize;
            if cur.stored.codec != block::CODEC_RAW || len > buf.len() {
                return Err(block::corrupt(
                    array,
                    blk,
                    cur.tid,
                    format!("extent row of {len} bytes, codec {}", cur.stored.codec),
                ));
            }
            data.read_at(off, &mut buf[..len])?;
            buf[len..].fill(0);
            let sums = cur.page_sums.as_deref().unwrap_or(&[]);
            return block::verify_extent_pages(array, blk, &cur.stored, sums, buf, 0..len.div_ceil(block::PAGE) as u32);
        }
        let blob = c.blob_open(rusqlite::MAIN_DB, c"outcore_blob", c"data", cur.data_id, true).map_err(err("load"))?;
        let len = cur.stored.len as usize;
        if cur.stored.codec != block::CODEC_RAW || blob.len() < len || len > buf.len() {
            // Compressed (or inconsistent): read the payload aside and decode it.
            let mut payload = vec![0u8; blob.len()];
            blob.read_at_exact(&mut payload, 0).map_err(err("load"))?;
            return block::decode_current(array, blk, &Stored { data: &payload, ..cur.stored }, buf);
        }
        // Raw: incremental blob I/O reads the content straight into `buf` (no intermediate copies).
        blob.read_at_exact(&mut buf[..len], 0).map_err(err("load"))?;
        block::verify_in_place(array, blk, &cur.stored, buf)
    }
}

const LIVE_ARRAYS: &str = "SELECT v.array_id, v.tid, v.name, v.meta, v.row_sum FROM outcore_array v
     WHERE v.tid = (SELECT max(w.tid) FROM outcore_array w WHERE w.array_id = v.array_id AND w.tid <= ?1)
       AND v.name IS NOT NULL";

fn q_arrays(c: &Connection, sql: &str, p: &[&dyn rusqlite::ToSql]) -> Result<Vec<ArrayInfo>> {
    let rows: Vec<(ArrayId, Tid, String, String, i64)> = c
        .prepare_cached(sql)
        .and_then(|mut st| st.query_map(p, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?.collect())
        .map_err(err("list arrays"))?;
    let mut out = Vec::new();
    for (id, tid, name, meta, sum) in rows {
        verify_array_row(id, tid, Some(&name), Some(&meta), sum)?;
        out.push(array_info(id, tid, name, &meta)?);
    }
    Ok(out)
}

fn verify_array_row(id: ArrayId, tid: Tid, name: Option<&str>, meta: Option<&str>, sum: i64) -> Result<()> {
    rowsum::verify(rowsum::array(id.0, tid, name, meta), sum, || format!("the row of array {id} at tid {tid}"))
}

fn q_changes(c: &Connection, after: Tid, upto: Tid) -> Result<ChangedSets> {
    let p = params![after, bound(upto)];
    let blocks = c
        .prepare_cached(sql::CHANGED_BLOCKS)
        .and_then(|mut st| {
            st.query_map(p, |r| Ok((r.get::<_, ArrayId>(0)?, r.get::<_, u64>(1)?, r.get::<_, u64>(2)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(err("changes"))?;
    let arrays = c
        .prepare_cached(sql::CHANGED_ARRAYS)
        .and_then(|mut st| {
            st.query_map(p, |r| Ok((r.get::<_, ArrayId>(0)?, r.get::<_, u64>(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(err("changes"))?;
    Ok((blocks, arrays))
}

/// Bytes to allocate for a raw current payload of `len` bytes that outgrew its room `cap` (0: a
/// first write, stored exactly). A block that grows is likely appended to: its room jumps to at
/// least 256 KiB, doubles, and goes straight to the whole block from a quarter of it, so a block
/// filled by small appends is moved 3 times, not 7 (each move frees pages that later
/// allocations reuse, scattering blocks in the file and slowing cold reads).
fn grown_room(cap: usize, len: usize, blksize: usize) -> usize {
    if cap == 0 {
        return len;
    }
    let room = (cap * 2).max(256 << 10);
    let room = if room >= blksize / 4 { blksize } else { room };
    room.min(blksize).max(len)
}

/// Store `payload` in blob row `id` (0: a new row); returns the row.
fn put_blob(c: &Connection, id: i64, payload: &[u8]) -> Result<i64> {
    if id != 0 {
        c.prepare_cached("UPDATE outcore_blob SET data = ?2 WHERE id = ?1")
            .and_then(|mut st| st.execute(params![id, payload]))
            .map_err(err("commit"))?;
        return Ok(id);
    }
    c.prepare_cached("INSERT INTO outcore_blob (data) VALUES (?1)")
        .and_then(|mut st| st.execute(params![payload]))
        .map_err(err("commit"))?;
    Ok(c.last_insert_rowid())
}

/// Store raw `content` with room for `room` bytes (zeros beyond the content) in blob row `id`
/// (0: a new row); returns the row. The row is created as a zero blob and the content written
/// into it with incremental blob I/O: no copies of the content besides SQLite's own pages.
fn put_raw_blob(c: &Connection, id: i64, content: &[u8], room: usize) -> Result<i64> {
    let id = if id != 0 {
        c.prepare_cached("UPDATE outcore_blob SET data = zeroblob(?2) WHERE id = ?1")
            .and_then(|mut st| st.execute(params![id, room]))
            .map_err(err("commit"))?;
        id
    } else {
        c.prepare_cached("INSERT INTO outcore_blob (data) VALUES (zeroblob(?1))")
            .and_then(|mut st| st.execute(params![room]))
            .map_err(err("commit"))?;
        c.last_insert_rowid()
    };
    let mut blob = c.blob_open(rusqlite::MAIN_DB, c"outcore_blob", c"data", id, false).map_err(err("commit"))?;
    blob.write_at(content, 0).map_err(err("commit"))?;
    Ok(id)
}

/// Write the `changed` pages of `data` (zero beyond its end) into a blob of `cap` bytes,
/// one write per run of adjacent pages.
fn write_pages(blob: &mut rusqlite::blob::Blob<'_>, cap: usize, data: &[u8], changed: &[u32]) -> Result<()> {
    let mut run = Vec::new();
    let mut i = 0;
    while i < changed.len() {
        let first = changed[i] as usize;
        let mut last = first;
        while i + 1 < changed.len() && changed[i + 1] as usize == last + 1 {
            i += 1;
            last += 1;
        }
        i += 1;
        let start = first * block::PAGE;
        let end = ((last + 1) * block::PAGE).min(cap);
        if start >= end {
            continue;
        }
        run.clear();
        run.extend_from_slice(data.get(start..end.min(data.len())).unwrap_or(&[]));
        run.resize(end - start, 0);
        blob.write_at(&run, start).map_err(err("commit"))?;
    }
    Ok(())
}

/// The commit transaction.
struct SqliteTxn<'a> {
    tx: rusqlite::Transaction<'a>,
    store: &'a SqliteStore,
    /// A reader in a read transaction for the committed content the commit replaces: it sees
    /// exactly the head the write transaction started from (the write lock is held), and reads
    /// from it stay direct (SQLite reads overflow pages straight into the buffer only while the
    /// connection has no dirty pages; the write transaction soon has some).
    reader: Option<crate::pool::Pooled<'a, Connection>>,
    /// The open snapshots: who may map which extents (decides in place vs new extents).
    readers: Readers,
    /// End of the allocated part of the data file.
    data_end: u64,
    /// New extents were written: sync the data file before the SQLite commit.
    wrote_extents: bool,
    /// Redo rows were written: their bytes go home after the SQLite commit.
    redo: bool,
    /// The stored version and page checksums of the extent block `current` read last, for
    /// `load_pages` and `write_pages`.
    sums: Option<(ArrayId, u64, Stored<'static>, Vec<u8>)>,
    /// Extents this commit allocated (punched again if it fails).
    allocated: Vec<(u64, u64)>,
    /// The commit record, written once its catalog (of live array versions) is known.
    record: Option<(TxnInfo, i64)>,
}

impl SqliteTxn<'_> {
    /// The reader in its read transaction (started on first use).
    fn reader(&mut self) -> Result<&Connection> {
        let r = match &mut self.reader {
            Some(r) => r,
            none => {
                let r = self.store.reader()?;
                r.execute_batch("BEGIN DEFERRED").map_err(err("commit"))?;
                none.insert(r)
            }
        };
        Ok(r)
    }
}

/// Pages of a block written in place at most (more: a new extent, written once and synced,
/// instead of redo rows plus home writes): a quarter of the block.
const IN_PLACE_MAX_DIVISOR: usize = 4;

impl SqliteTxn<'_> {
    /// Store the raw content `new.data` of a block of an uncompressed array in an extent: the
    /// changed pages in place (as redo rows, written home after the SQLite commit) when no other
    /// snapshot can map its extent and the change is small; else a new extent. Returns the
    /// extent's offset.
    fn write_extent(
        &mut self,
        id: ArrayId,
        blk: u64,
        tid: Tid,
        prev: Option<(u64, Tid)>,
        new: &CurrentWrite<'_>,
    ) -> Result<u64> {
        let bs = new.blksize as usize;
        let page = block::PAGE;
        let small = new.changed.len() * page * IN_PLACE_MAX_DIVISOR <= bs;
        if let Some((off, _)) = prev.filter(|(_, v)| small && !self.readers.block_in_place(*v)) {
            let c = &*self.tx;
            let mut st = c
                .prepare_cached("INSERT INTO outcore_redo (tid, off, data, row_sum) VALUES (?1, ?2, ?3, ?4)")
                .map_err(err("commit"))?;
            let mut buf = Vec::with_capacity(page);
            for run in page_runs(new.changed) {
                let (start, end) = (run.start as usize * page, (run.end as usize * page).min(bs));
                if start >= end {
                    continue;
                }
                buf.clear();
                buf.extend_from_slice(new.data.get(start..end.min(new.data.len())).unwrap_or(&[]));
                buf.resize(end - start, 0);
                // Space for pages beyond the old content is reserved now, so that the home
                // writes after the commit cannot fail for lack of space.
                self.store.data.reserve(off + start as u64, (end - start) as u64)?;
                let at = off + start as u64;
                st.execute(params![tid, at, &buf, rowsum::redo(tid, at, &buf).finish()]).map_err(err("commit"))?;
            }
            self.redo = true;
            return Ok(off);
        }
        let off = self.allocate(new.blksize)?;
        let len = new.enc.len as usize;
        self.store.data.write_at(off, &new.data[..len])?;
        self.wrote_extents = true;
        if let Some((old, since)) = prev {
            self.retire(id, blk, old, new.blksize, since, tid)?;
        }
        Ok(off)
    }

    /// The current row of a block kept in extent `off` (`len` bytes of content whose pages have
    /// the checksums `sums`).
    fn put_extent_row(&self, id: ArrayId, blk: u64, tid: Tid, len: u64, off: u64, sums: &[u8]) -> Result<()> {
        let checksum = block::extent_checksum(id, blk, tid, len, sums);
        self.tx
            .prepare_cached(
                "INSERT INTO outcore_current
                     (array_id, blk, tid, len, base_tid, base_len, codec, checksum, data_id, patches, patch_bytes,
                      ext_off, page_sums, row_sum)
                 VALUES (?1, ?2, ?3, ?4, ?3, ?4, 0, ?5, NULL, 0, 0, ?6, ?7, ?8)
                 ON CONFLICT (array_id, blk) DO UPDATE SET tid = excluded.tid, len = excluded.len,
                     base_tid = excluded.base_tid, base_len = excluded.base_len, codec = 0,
                     checksum = excluded.checksum, data_id = NULL, patches = 0, patch_bytes = 0,
                     ext_off = excluded.ext_off, page_sums = excluded.page_sums, row_sum = excluded.row_sum",
            )
            .and_then(|mut st| {
                let cols = CurrentCols {
                    array: id.0,
                    blk,
                    tid,
                    len,
                    base_tid: tid,
                    base_len: len,
                    codec: block::CODEC_RAW,
                    checksum,
                    data_id: None,
                    patches: 0,
                    patch_bytes: 0,
                    ext_off: Some(off),
                };
                let sum = rowsum::current(&cols).finish();
                st.execute(params![id, blk, tid, len, checksum, off, sums, sum])
            })
            .map_err(err("commit"))?;
        self.mark_written(id, blk)
    }

    /// Record that block `blk` of `id` has an index row.
    fn mark_written(&self, id: ArrayId, blk: u64) -> Result<()> {
        let seg = blk / SEG_BLOCKS;
        match q_segment(&self.tx, id, seg)? {
            Some(bits) if bit(&bits, blk) => Ok(()),
            _ => set_bits(&self.tx, id, seg, [blk], true),
        }
    }

    /// Redo rows for the bytes in which `new` differs from `old` within `pages` of the extent at
    /// `off` (runs of changed bytes, nearby runs joined); space is reserved for the runs at or
    /// beyond `stored` (the old content length: pages before it hold data already).
    fn redo_ranges(&mut self, tid: Tid, off: u64, stored: u64, pages: &[u32], old: &[u8], new: &[u8]) -> Result<()> {
        let c = &*self.tx;
        let mut st = c
            .prepare_cached("INSERT INTO outcore_redo (tid, off, data, row_sum) VALUES (?1, ?2, ?3, ?4)")
            .map_err(err("commit"))?;
        for &p in pages {
            let (a, b) = (p as usize * block::PAGE, (p as usize + 1) * block::PAGE);
            for (start, len) in block::changed_runs(&old[a..b], &new[a..b], REDO_GAP) {
                let at = (a + start) as u64;
                if at + len as u64 > stored {
                    self.store.data.reserve(off + at, len as u64)?;
                }
                let bytes = &new[a + start..a + start + len];
                st.execute(params![tid, off + at, bytes, rowsum::redo(tid, off + at, bytes).finish()])
                    .map_err(err("commit"))?;
            }
        }
        self.redo = true;
        Ok(())
    }

    /// A free extent of `size` bytes for this commit (see [`allocate`]).
    fn allocate(&mut self, size: u64) -> Result<u64> {
        let off = allocate(&self.tx, &self.store.data, &mut self.data_end, size)?;
        self.allocated.push((off, size));
        Ok(off)
    }

    /// Record that extent `off` (holding the version `since` of a block) stops being current at
    /// `tid`: it is reused once no open snapshot is older than `tid`.
    fn retire(&mut self, id: ArrayId, blk: u64, off: u64, size: u64, since: Tid, tid: Tid) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO outcore_retired (ext_off, size, array_id, blk, since_tid, retired_tid, row_sum)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut st| {
                let sum = rowsum::retired(off, size, id.0, blk, since, tid).finish();
                st.execute(params![off, size, id, blk, since, tid, sum])
            })
            .map(|_| ())
            .map_err(err("commit"))
    }
}

/// A free extent of `size` bytes (aligned to it): a reused one, else new space at the end
/// (`data_end` moves). Punched first, so that bytes beyond the content written into it read
/// zeros. Inside the caller's write transaction.
fn allocate(c: &Connection, data: &DataFile, data_end: &mut u64, size: u64) -> Result<u64> {
    let reused: Option<(u64, i64)> = c
        .prepare_cached("SELECT ext_off, row_sum FROM outcore_free WHERE size = ?1 LIMIT 1")
        .and_then(|mut st| st.query_row([size], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(err("allocate an extent"))?;
    if let Some((off, sum)) = reused {
        rowsum::verify(rowsum::free(size, off), sum, || format!("the free extent row at offset {off}"))?;
    }
    let reused = reused.map(|(off, _)| off);
    let off = match reused {
        Some(off) => {
            c.prepare_cached("DELETE FROM outcore_free WHERE size = ?1 AND ext_off = ?2")
                .and_then(|mut st| st.execute(params![size, off]))
                .map_err(err("allocate an extent"))?;
            off
        }
        None => {
            let off = data_end.div_ceil(size) * size;
            *data_end = off + size;
            data.ensure_len(*data_end)?;
            off
        }
    };
    data.punch(off, size)?;
    Ok(off)
}

/// Unchanged bytes that may sit inside one redo row (between two changed runs).
const REDO_GAP: usize = 32;

/// Runs of consecutive page indices, as half-open ranges.
fn page_runs(pages: &[u32]) -> impl Iterator<Item = std::ops::Range<u32>> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let first = *pages.get(i)?;
        let mut last = first;
        i += 1;
        while pages.get(i) == Some(&(last + 1)) {
            last += 1;
            i += 1;
        }
        Some(first..last + 1)
    })
}

impl ExtentTxn for SqliteTxn<'_> {
    fn adopt_staged(&mut self, id: ArrayId, blk: u64, tid: Tid, off: u64, len: u64, blksize: u64) -> Result<()> {
        let (slot, nonce) = self.store.registry.owner();
        let gone = self
            .tx
            .prepare_cached("DELETE FROM outcore_staged WHERE ext_off = ?1 AND size = ?2 AND slot = ?3 AND nonce = ?4")
            .and_then(|mut st| st.execute(params![off, blksize, slot, Bits(nonce)]))
            .map_err(err("commit"))?;
        if gone != 1 {
            return Err(Error::Invalid(format!(
                "block {blk} of array {id}: the extent at {off} is not staged by this store handle"
            )));
        }
        // The page checksums, as the writes computed them (the pages written in part are read
        // back); all of the extent is read back where this handle did not track them.
        let tracked = self.store.staged.lock().remove(&off).filter(|t| t.is_for(id, blk));
        let (n, sums) = match tracked {
            Some(t) => {
                let data = &self.store.data;
                t.finish(|p, page| data.read_at(off + (p * block::PAGE) as u64, page))?
            }
            None => {
                let mut buf = vec![0u8; len as usize];
                self.store.data.read_at(off, &mut buf)?;
                let n = block::content_len(&buf);
                (n, block::page_sums(id, blk, &buf, n))
            }
        };
        if n as u64 > len {
            return Err(Error::Invalid(format!(
                "block {blk} of array {id}: the staged extent holds bytes beyond {len}"
            )));
        }
        self.wrote_extents = true;
        self.allocated.push((off, blksize));
        self.put_extent_row(id, blk, tid, n as u64, off, &sums)
    }
}

impl PatchTxn for SqliteTxn<'_> {
    fn patch_granule(&self) -> u64 {
        PATCH_GRANULE
    }

    fn write_patch(&mut self, id: ArrayId, blk: u64, tid: Tid, patch: &Encoded) -> Result<()> {
        let c = &*self.tx;
        c.prepare_cached(
            "INSERT INTO outcore_patch (array_id, blk, tid, prev_tid, codec, len, checksum, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .and_then(|mut st| {
            st.execute(params![id, blk, tid, patch.prev_tid, patch.codec, patch.len, patch.checksum, patch.data])
        })
        .map_err(err("commit"))?;
        let cur = q_current(c, id, blk)?
            .ok_or_else(|| Error::Invalid(format!("a patch of block {blk} of array {id}, which has no index row")))?;
        let cols = CurrentCols {
            tid,
            len: patch.len,
            patches: cur.patches + 1,
            patch_bytes: cur.patch_bytes + patch.data.len() as i64,
            ..cur.cols(id, blk)
        };
        c.prepare_cached(
            "UPDATE outcore_current SET tid = ?3, len = ?4, patches = ?5, patch_bytes = ?6, row_sum = ?7
             WHERE array_id = ?1 AND blk = ?2",
        )
        .and_then(|mut st| {
            st.execute(params![
                id,
                blk,
                tid,
                patch.len,
                cols.patches,
                cols.patch_bytes,
                rowsum::current(&cols).finish()
            ])
        })
        .map(|_| ())
        .map_err(err("commit"))
    }

    fn load_base(&mut self, id: ArrayId, blk: u64, buf: &mut [u8]) -> Result<()> {
        let data = &self.store.data;
        let r = self.reader()?;
        match q_current(r, id, blk)? {
            Some(cur) if cur.data_id != 0 || cur.ext_off.is_some() => {
                Payloads { c: r, data }.read_base(id, blk, &cur, buf)
            }
            cur => {
                if cur.is_none() {
                    check_unwritten(r, id, blk)?;
                }
                buf.fill(0);
                Ok(())
            }
        }
    }
}

impl WriteTxn for SqliteTxn<'_> {
    fn extents(&mut self) -> Option<&mut dyn ExtentTxn> {
        Some(self)
    }

    fn patches(&mut self) -> Option<&mut dyn PatchTxn> {
        Some(self)
    }

    fn head(&mut self) -> Result<Head> {
        q_head(&self.tx)
    }

    fn changed_since(&mut self, base: Tid) -> Result<ChangedSets> {
        q_changes(&self.tx, base, u64::MAX)
    }

    fn array_at(&mut self, id: ArrayId, at: Tid) -> Result<Option<ArrayVersion>> {
        let row = self
            .tx
            .prepare_cached(
                "SELECT tid, name, meta, row_sum FROM outcore_array WHERE array_id = ?1 AND tid <= ?2
                 ORDER BY tid DESC LIMIT 1",
            )
            .and_then(|mut st| {
                st.query_row(params![id, at], |r| {
                    Ok((
                        r.get::<_, Tid>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })
                .optional()
            })
            .map_err(err("read array"))?;
        let Some((tid, name, meta, sum)) = row else { return Ok(None) };
        verify_array_row(id, tid, name.as_deref(), meta.as_deref(), sum)?;
        let state = match (name, meta) {
            (Some(name), Some(meta)) => Some((name, super::decode_meta(id, tid, &meta)?)),
            _ => None,
        };
        Ok(Some(ArrayVersion { tid, state }))
    }

    fn live_arrays(&mut self, at: Tid) -> Result<Vec<ArrayInfo>> {
        q_live_arrays(&self.tx, at)
    }

    fn stored_blocks_from(&mut self, id: ArrayId, from_blk: u64) -> Result<Vec<(u64, u64)>> {
        let rows = q_current_range(&self.tx, id, from_blk..u64::MAX)?;
        Ok(rows.into_iter().filter(|(_, c)| c.len > 0).map(|(blk, c)| (blk, c.len)).collect())
    }

    fn load(&mut self, id: ArrayId, blk: u64, at: Tid, buf: &mut [u8]) -> Result<()> {
        let data = &self.store.data;
        q_load(self.reader()?, data, id, blk, at, buf)
    }

    fn current(&mut self, id: ArrayId, blk: u64) -> Result<Option<CurrentRow>> {
        let row = q_current(&self.tx, id, blk)?;
        if row.is_none() {
            check_unwritten(&self.tx, id, blk)?;
        }
        // An extent block's page checksums, for `load_pages` (no second lookup of the row).
        self.sums = row.as_ref().and_then(|r| r.page_sums.clone().map(|s| (id, blk, r.stored, s)));
        Ok(row.map(|r| CurrentRow {
            tid: r.tid,
            len: r.len,
            codec: r.stored.codec,
            handle: r.data_id,
            base_len: r.stored.len,
            patches: r.patches,
            patch_bytes: r.patch_bytes,
            extent: r.ext_off,
        }))
    }

    fn insert_txn(&mut self, info: &TxnInfo) -> Result<()> {
        // Written when the commit is complete (see `record`): its catalog starts from the
        // head's and changes with each array version the commit adds.
        let head = q_head(&self.tx)?.tid;
        self.record = Some((info.clone(), q_catalog(&self.tx, head)?));
        Ok(())
    }

    fn insert_array_version(&mut self, id: ArrayId, tid: Tid, state: Option<(&str, &ArrayMeta)>) -> Result<()> {
        let (name, meta) = match state {
            Some((name, meta)) => (Some(name), Some(encode_meta(meta))),
            None => (None, None),
        };
        // The catalog: this version replaces the array's newest one.
        let prev: Option<(Tid, Option<String>)> = self
            .tx
            .prepare_cached("SELECT tid, name FROM outcore_array WHERE array_id = ?1 ORDER BY tid DESC LIMIT 1")
            .and_then(|mut st| st.query_row([id], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .map_err(err("commit"))?;
        if let Some((_, catalog)) = &mut self.record {
            if let Some((ptid, Some(_))) = prev {
                *catalog = catalog.wrapping_sub(rowsum::catalog_entry(id.0, ptid));
            }
            if name.is_some() {
                *catalog = catalog.wrapping_add(rowsum::catalog_entry(id.0, tid));
            }
        }
        self.tx
            .prepare_cached(
                "INSERT INTO outcore_array (array_id, tid, name, meta, row_sum) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut st| {
                let sum = rowsum::array(id.0, tid, name, meta.as_deref()).finish();
                st.execute(params![id, tid, name, meta, sum])
            })
            .map(|_| ())
            .map_err(err("commit"))
    }

    fn undo_chain(&mut self, id: ArrayId, blk: u64, tid: Tid) -> Result<Option<block::UndoChain>> {
        self.tx
            .prepare_cached("SELECT depth, chain_bytes FROM outcore_undo WHERE array_id = ?1 AND blk = ?2 AND tid = ?3")
            .and_then(|mut st| {
                st.query_row(params![id, blk, tid], |r| Ok(block::UndoChain { depth: r.get(0)?, bytes: r.get(1)? }))
                    .optional()
            })
            .map_err(err("commit"))
    }

    fn insert_undo(&mut self, id: ArrayId, blk: u64, tid: Tid, undo: &Encoded) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO outcore_undo
                 (array_id, blk, tid, prev_tid, kind, depth, chain_bytes, codec, len, checksum, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    id,
                    blk,
                    tid,
                    undo.prev_tid,
                    undo.kind,
                    undo.chain.depth,
                    undo.chain.bytes,
                    undo.codec,
                    undo.len,
                    undo.checksum,
                    undo.data
                ])
            })
            .map(|_| ())
            .map_err(err("commit"))
    }

    fn checks_raw_pages(&self) -> bool {
        true
    }

    fn load_pages(&mut self, id: ArrayId, blk: u64, cur: &CurrentRow, pages: &[u32], buf: &mut [u8]) -> Result<bool> {
        // `cur` is the row `current` just read; it kept the page checksums.
        let (Some(off), Some((_, _, stored, sums))) =
            (cur.extent, self.sums.as_ref().filter(|s| s.0 == id && s.1 == blk && s.2.tid == cur.tid))
        else {
            return Ok(false);
        };
        let len = stored.len as usize;
        for run in page_runs(pages) {
            let (a, b) = (run.start as usize * block::PAGE, (run.end as usize * block::PAGE).min(buf.len()));
            let have = b.min(len);
            if have > a {
                self.store.data.read_at(off + a as u64, &mut buf[a..have])?;
            }
            buf[have.max(a)..b].fill(0);
        }
        block::verify_extent_pages(id, blk, stored, sums, buf, pages.iter().copied())?;
        Ok(true)
    }

    fn write_pages(&mut self, id: ArrayId, blk: u64, tid: Tid, w: &PageWrite<'_>) -> Result<()> {
        let PageWrite { cur, changed, old, new, len } = *w;
        let bs = new.len();
        let Some(prev_off) = cur.extent else { return Err(Error::Invalid("write_pages: no extent".into())) };
        let mut sums = match self.sums.take() {
            Some((i, b, _, s)) if i == id && b == blk => s,
            _ => return Err(Error::Invalid("write_pages: pages not loaded".into())),
        };
        // Page checksums: pages newly within the content are zeros unless written (below).
        let npages = (len as usize).div_ceil(block::PAGE);
        while sums.len() / 4 < npages {
            let p = (sums.len() / 4) as u32;
            sums.extend_from_slice(&block::page_sum(id, blk, p, &[]).to_le_bytes());
        }
        sums.truncate(npages * 4);
        for &p in changed {
            if (p as usize) < npages {
                let a = p as usize * block::PAGE;
                let page = &new[a..(a + block::PAGE).min(len as usize)];
                sums[p as usize * 4..p as usize * 4 + 4]
                    .copy_from_slice(&block::page_sum(id, blk, p, page).to_le_bytes());
            }
        }
        let small = changed.len() * block::PAGE * IN_PLACE_MAX_DIVISOR <= bs;
        let off = if small && !self.readers.block_in_place(cur.tid) {
            self.redo_ranges(tid, prev_off, cur.len, changed, old, new)?;
            prev_off
        } else {
            // A new extent: the old content copied in the kernel, then the changed pages.
            let off = self.allocate(bs as u64)?;
            self.store.data.copy_from(prev_off, off, cur.len)?;
            for run in page_runs(changed) {
                let (a, b) = (run.start as usize * block::PAGE, (run.end as usize * block::PAGE).min(bs));
                self.store.data.write_at(off + a as u64, &new[a..b])?;
            }
            self.wrote_extents = true;
            self.retire(id, blk, prev_off, bs as u64, cur.tid, tid)?;
            off
        };
        self.put_extent_row(id, blk, tid, len, off, &sums)
    }

    fn write_current(&mut self, id: ArrayId, blk: u64, tid: Tid, new: &CurrentWrite<'_>) -> Result<()> {
        let prev = new.prev;
        if prev.is_some_and(|p| p.patches > 0) {
            self.tx
                .prepare_cached("DELETE FROM outcore_patch WHERE array_id = ?1 AND blk = ?2")
                .and_then(|mut st| st.execute(params![id, blk]))
                .map_err(err("commit"))?;
        }
        let len = new.enc.len as usize;
        let mut data_id = prev.map_or(0, |p| p.handle);
        let prev_ext = prev.and_then(|p| p.extent.map(|e| (e, p.tid)));
        if len > 0 && new.enc.compressed.is_none() && new.raw_array {
            // Uncompressed array: the content lives in a data-file extent.
            if data_id != 0 {
                self.tx.execute("DELETE FROM outcore_blob WHERE id = ?1", [data_id]).map_err(err("commit"))?;
            }
            let off = self.write_extent(id, blk, tid, prev_ext, new)?;
            let sums = block::page_sums(id, blk, new.data, len);
            return self.put_extent_row(id, blk, tid, len as u64, off, &sums);
        } else if let Some((off, since)) = prev_ext {
            self.retire(id, blk, off, new.blksize, since, tid)?;
        }
        let c = &*self.tx;
        if len == 0 {
            if data_id != 0 {
                c.execute("DELETE FROM outcore_blob WHERE id = ?1", [data_id]).map_err(err("commit"))?;
            }
            data_id = 0;
        } else if let Some(payload) = &new.enc.compressed {
            data_id = put_blob(c, data_id, payload)?;
        } else {
            // Raw: rewrite only the changed pages in place when the stored payload has room (its
            // bytes beyond the content are zero), else store the content with room to grow, so
            // that appends to a block do not rewrite it every time.
            let mut cap = 0;
            let mut blob = None;
            if data_id != 0 && prev.is_some_and(|p| p.codec == block::CODEC_RAW) {
                let b =
                    c.blob_open(rusqlite::MAIN_DB, c"outcore_blob", c"data", data_id, false).map_err(err("commit"))?;
                cap = b.len();
                blob = Some(b);
            }
            match blob {
                Some(mut b) if cap >= len => write_pages(&mut b, cap, new.data, new.changed)?,
                _ => {
                    drop(blob);
                    let room = grown_room(cap, len, new.blksize as usize);
                    data_id = put_raw_blob(c, data_id, &new.data[..len], room)?;
                }
            }
        }
        c.prepare_cached(
            "INSERT INTO outcore_current
                 (array_id, blk, tid, len, base_tid, base_len, codec, checksum, data_id, patches, patch_bytes, ext_off,
                  page_sums, row_sum)
             VALUES (?1, ?2, ?3, ?5, ?3, ?5, ?4, ?6, nullif(?7, 0), 0, 0, NULL, NULL, ?8)
             ON CONFLICT (array_id, blk) DO UPDATE SET tid = excluded.tid, len = excluded.len,
                 base_tid = excluded.base_tid, base_len = excluded.base_len, codec = excluded.codec,
                 checksum = excluded.checksum, data_id = excluded.data_id, patches = 0, patch_bytes = 0,
                 ext_off = NULL, page_sums = NULL, row_sum = excluded.row_sum",
        )
        .and_then(|mut st| {
            let cols = CurrentCols {
                array: id.0,
                blk,
                tid,
                len: len as u64,
                base_tid: tid,
                base_len: len as u64,
                codec: new.enc.codec,
                checksum: new.enc.checksum,
                data_id: (data_id != 0).then_some(data_id),
                patches: 0,
                patch_bytes: 0,
                ext_off: None,
            };
            st.execute(params![
                id,
                blk,
                tid,
                new.enc.codec,
                len,
                new.enc.checksum,
                data_id,
                rowsum::current(&cols).finish()
            ])
        })
        .map_err(err("commit"))?;
        self.mark_written(id, blk)
    }

    fn set_head(&mut self, tid: Tid, time_us: i64) -> Result<()> {
        let horizon = q_head(&self.tx)?.horizon;
        set_head_row(&self.tx, &Head { tid, horizon, time_us })
    }
}

/// Verified array listings kept per store handle (by tid; a snapshot's listing never changes).
const LISTINGS: usize = 8;

impl SqliteStore {
    /// The arrays live at `at` (checked against the commit record's catalog), from the cache
    /// or read with `c`.
    fn listing(&self, c: &Connection, at: Tid) -> Result<Arc<Vec<ArrayInfo>>> {
        read::check_at(&q_head(c)?, at)?;
        if let Some((_, l)) = self.listings.lock().iter().find(|(t, _)| *t == at) {
            return Ok(l.clone());
        }
        let l = Arc::new(q_live_arrays(c, at)?);
        let mut cache = self.listings.lock();
        if cache.len() >= LISTINGS {
            cache.remove(0);
        }
        cache.push((at, l.clone()));
        Ok(l)
    }

    /// A registration of `at` for the duration of a read.
    fn pin_at(&self, at: Tid) -> Result<Snapshot> {
        self.snapshot(Some(at))
    }
}

impl crate::types::Unpin for Registry {
    fn unpin(&self, id: u64) {
        Registry::unpin(self, id);
    }
}

/// Finish the in-place updates of earlier commits (inside the caller's write transaction, under
/// the exclusive gate): write their redo rows home unless the registry says they already are
/// (in this boot), sync the data file, drop the rows. Returns the allocated end of the data file.
fn replay_redo(tx: &Connection, data: &DataFile, registry: &Registry) -> Result<u64> {
    let (data_end, redo) = q_local(tx)?;
    if redo == 0 {
        return Ok(data_end);
    }
    if registry.home()? < redo {
        write_home(tx, data, None)?;
    }
    data.sync()?;
    tx.execute_batch("DELETE FROM outcore_redo").map_err(err("redo"))?;
    set_local(tx, data_end, 0)?;
    Ok(data_end)
}

/// Write the redo rows (of commit `tid`, or all) to their place in the data file, oldest first.
fn write_home(c: &Connection, data: &DataFile, tid: Option<Tid>) -> Result<()> {
    let mut st = c
        .prepare_cached(
            "SELECT tid, off, data, row_sum FROM outcore_redo WHERE tid = ?1 OR ?1 IS NULL ORDER BY tid, off",
        )
        .map_err(err("redo"))?;
    // All rows are verified before any byte goes home: a damaged row must not write anywhere.
    let rows: Vec<(Tid, u64, Vec<u8>, i64)> = st
        .query_map([tid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .and_then(|rows| rows.collect())
        .map_err(err("redo"))?;
    for (tid, off, bytes, sum) in &rows {
        rowsum::verify(rowsum::redo(*tid, *off, bytes), *sum, || format!("the redo row of tid {tid} at offset {off}"))?;
    }
    for (_, off, bytes, _) in rows {
        data.write_at(off, &bytes)?;
    }
    Ok(())
}

/// Add a free extent.
fn put_free(c: &Connection, size: u64, off: u64) -> Result<()> {
    c.prepare_cached("INSERT INTO outcore_free (size, ext_off, row_sum) VALUES (?1, ?2, ?3)")
        .and_then(|mut st| st.execute(params![size, off, rowsum::free(size, off).finish()]))
        .map(|_| ())
        .map_err(err("free extents"))
}

/// Retired extents (`filter`: a WHERE clause over the table, or empty), verified:
/// (offset, size, since tid, retired tid).
fn q_retired(c: &Connection, filter: &str, p: &[&dyn rusqlite::ToSql]) -> Result<Vec<(u64, u64, u64, u64)>> {
    let sql =
        format!("SELECT ext_off, size, array_id, blk, since_tid, retired_tid, row_sum FROM outcore_retired {filter}");
    type Row = ([u64; 2], ArrayId, [u64; 3], i64);
    let rows: Vec<Row> = c
        .prepare_cached(&sql)
        .and_then(|mut st| {
            st.query_map(p, |r| Ok(([r.get(0)?, r.get(1)?], r.get(2)?, [r.get(3)?, r.get(4)?, r.get(5)?], r.get(6)?)))?
                .collect()
        })
        .map_err(err("read retired extents"))?;
    let mut out = Vec::with_capacity(rows.len());
    for ([off, size], array, [blk, since, retired], sum) in rows {
        rowsum::verify(rowsum::retired(off, size, array.0, blk, since, retired), sum, || {
            format!("the retired extent row at offset {off}")
        })?;
        out.push((off, size, since, retired));
    }
    Ok(out)
}

/// Move retired extents that no open snapshot can map to the free list, releasing their space.
fn free_retired(tx: &Connection, data: &DataFile, readers: &Readers, registry: &Registry) -> Result<()> {
    // Staged extents of handles that are gone (their process ended) are free again.
    let staged: Vec<(u64, u64, u64, Bits, i64)> = tx
        .prepare_cached("SELECT ext_off, size, slot, nonce, row_sum FROM outcore_staged")
        .and_then(|mut st| st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?.collect())
        .map_err(err("free extents"))?;
    for (off, size, slot, Bits(nonce), sum) in staged {
        rowsum::verify(rowsum::staged(off, size, slot, nonce), sum, || {
            format!("the staged extent row at offset {off}")
        })?;
        if registry.owner_alive(slot, nonce)? {
            continue;
        }
        data.punch(off, size)?;
        tx.execute("DELETE FROM outcore_staged WHERE ext_off = ?1", [off]).map_err(err("free extents"))?;
        put_free(tx, size, off)?;
    }
    let retired = q_retired(tx, "", params![])?;
    for (off, size, since, retired) in retired {
        if readers.maps_retired(since, retired) {
            continue;
        }
        data.punch(off, size)?;
        tx.prepare_cached("DELETE FROM outcore_retired WHERE ext_off = ?1")
            .and_then(|mut st| st.execute([off]))
            .map_err(err("free extents"))?;
        put_free(tx, size, off)?;
    }
    Ok(())
}

/// The extents of the stored blocks in `blks` of `array` as of `at` (see `Store::locate`).
fn q_locate(
    c: &Connection,
    data: &DataFile,
    listing: &[ArrayInfo],
    array: ArrayId,
    blks: std::ops::Range<u64>,
    at: Tid,
) -> Result<Option<Vec<(u64, Location)>>> {
    match listing.iter().find(|a| a.id == array) {
        Some(a) if a.meta.codec == Codec::None => {}
        _ => return Ok(None),
    }
    let rows = q_current_range(c, array, blks.clone())?;
    let have: Vec<u64> = rows.iter().map(|(blk, _)| *blk).collect();
    check_range_recorded(c, array, blks, &have)?;
    let mut out = Vec::with_capacity(rows.len());
    for (blk, cur) in rows {
        let place = if cur.tid <= at {
            match cur.ext_off {
                Some(off) => Some(off),
                None if cur.len == 0 => None,
                None => return Ok(None), // kept in a blob (written while the array was compressed)
            }
        } else {
            // Changed since `at`: the extent retired by that change, if it held the version
            // `at` sees; else the block was empty at `at`.
            let retired = q_retired(
                c,
                "WHERE array_id = ?1 AND blk = ?2 AND since_tid <= ?3 AND retired_tid > ?3",
                params![array, blk, at],
            )?;
            match retired.first() {
                Some(&(off, ..)) => Some(off),
                None => {
                    let prev_len: Option<i64> = c
                        .prepare_cached(
                            "SELECT len FROM outcore_undo WHERE array_id = ?1 AND blk = ?2 AND tid > ?3
                             ORDER BY tid LIMIT 1",
                        )
                        .and_then(|mut st| st.query_row(params![array, blk, at], |r| r.get(0)).optional())
                        .map_err(err("locate"))?;
                    match prev_len {
                        Some(0) => None,
                        _ => return Ok(None), // its bytes at `at` live only in history
                    }
                }
            }
        };
        if let Some(offset) = place {
            out.push((blk, Location { file: data.file().clone(), offset }));
        }
    }
    Ok(Some(out))
}

impl Store for SqliteStore {
    fn location(&self) -> &str {
        &self.location
    }

    fn format_version(&self) -> u32 {
        super::SQLITE_FORMAT_VERSION
    }

    fn head(&self) -> Result<Tid> {
        Ok(q_head(&*self.reader()?)?.tid)
    }

    fn gc_horizon(&self) -> Result<Tid> {
        Ok(q_head(&*self.reader()?)?.horizon)
    }

    fn arrays(&self, at: Tid) -> Result<Vec<ArrayInfo>> {
        let c = self.reader()?;
        let mut v = self.listing(&c, at)?.to_vec();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    fn array(&self, name: &str, at: Tid) -> Result<Option<ArrayInfo>> {
        let c = self.reader()?;
        Ok(self.listing(&c, at)?.iter().find(|a| a.name == name).cloned())
    }

    fn array_by_id(&self, id: ArrayId, at: Tid) -> Result<Option<ArrayInfo>> {
        let c = self.reader()?;
        Ok(self.listing(&c, at)?.iter().find(|a| a.id == id).cloned())
    }

    fn load(&self, array: ArrayId, blk: u64, at: Tid, buf: &mut [u8]) -> Result<()> {
        // Registered while it reads, so that no commit updates the extent in place meanwhile.
        let _pin = self.pin_at(at)?;
        let c = self.reader()?;
        match q_load(&c, &self.data, array, blk, at, buf) {
            Err(Error::Corrupt { array, blk, tid, detail, .. }) => {
                let name = self
                    .listing(&c, at)
                    .ok()
                    .and_then(|v| v.iter().find(|a| a.id == array).map(|a| a.name.clone()))
                    .unwrap_or_else(|| array.to_string());
                Err(Error::Corrupt { array, name, blk, tid, detail })
            }
            r => r,
        }
    }

    fn commit(&self, base: Tid, mut commit: Commit) -> Result<Tid> {
        self.check_process()?;
        self.check_writable("commit")?;
        let mut w = self.writer.lock();
        // The gate, then the write lock (the order every path takes): no snapshot starts while
        // this commit may write in place, until its bytes are home.
        let gate = self.registry.gate_exclusive()?;
        let (tid, redo) = {
            let tx = w.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err("begin commit"))?;
            let data_end = replay_redo(&tx, &self.data, &self.registry)?;
            let readers = self.registry.readers(Some(commit.by).filter(|b| *b != 0))?;
            free_retired(&tx, &self.data, &readers, &self.registry)?;
            let mut txn = SqliteTxn {
                tx,
                store: self,
                reader: None,
                readers,
                data_end,
                wrote_extents: false,
                redo: false,
                sums: None,
                allocated: Vec::new(),
                record: None,
            };
            let tid = commit::apply(&mut txn, base, &mut commit);
            if let Some(r) = txn.reader.take() {
                let _ = r.execute_batch("COMMIT");
            }
            let done = tid.and_then(|tid| {
                if txn.wrote_extents {
                    // New extents are durable before the metadata that refers to them.
                    self.data.sync()?;
                }
                if let Some((info, catalog)) = &txn.record {
                    put_txn(&txn.tx, info, *catalog)?;
                }
                set_local(&txn.tx, txn.data_end, if txn.redo { tid } else { 0 })?;
                Ok(tid)
            });
            let SqliteTxn { tx, redo, allocated, .. } = txn;
            match done.and_then(|tid| tx.commit().map_err(err("commit")).map(|_| tid)) {
                Ok(tid) => (tid, redo),
                Err(e) => {
                    // Nothing refers to the extents this commit filled: give their space back
                    // (a full disk must not stay full because of a failed commit).
                    for (off, size) in allocated {
                        let _ = self.data.punch(off, size);
                    }
                    return Err(e);
                }
            }
        };
        if redo {
            failpoint("commit-before-home");
            // Committed: the redo rows hold the new bytes. Write them home now (page cache),
            // while the gate keeps snapshots from starting, and say so in the registry; the
            // next commit syncs the data file and drops the rows. A failure here leaves them for
            // the next commit or snapshot to replay.
            let done = write_home(&w, &self.data, Some(tid)).and_then(|_| self.registry.set_home(&gate, tid));
            if let Err(e) = done {
                tracing::error!(
                    "commit {tid} of {} is durable but its in-place bytes are not home yet: {e}",
                    self.location
                );
            }
        }
        drop(gate);
        if let Some(c) = &self.checkpointer {
            c.poke();
        }
        Ok(tid)
    }

    fn snapshot(&self, at: Option<Tid>) -> Result<Snapshot> {
        loop {
            let gate = self.registry.gate_shared()?;
            let c = self.reader()?;
            // The head and the pending in-place commit, from one read transaction.
            let (head, redo) =
                in_snapshot(&c, "snapshot", |c| q_head(c).and_then(|h| q_local(c).map(|(_, redo)| (h.tid, redo))))?;
            if redo != 0 && self.registry.home()? < redo {
                // A committer died between its commit and its home writes (or the machine
                // restarted since): finish them.
                self.check_writable("finish a commit interrupted by a crash (open the store once with write access)")?;
                drop(c);
                drop(gate);
                let mut w = self.writer.lock();
                let _x = self.registry.gate_exclusive()?;
                let tx = w.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err("recover"))?;
                replay_redo(&tx, &self.data, &self.registry)?;
                tx.commit().map_err(err("recover"))?;
                continue;
            }
            // The pin is the head: a snapshot maps the extents current at its tid, and a read of
            // an older tid rebuilds it from the current extents and undo records.
            let id = self.registry.pin(&gate, head)?;
            return Ok(Snapshot::registered(at.unwrap_or(head), id, self.registry.clone()));
        }
    }

    fn stage(&self, array: ArrayId, blk: u64, size: u64) -> Result<Option<Staged>> {
        self.check_process()?;
        self.check_writable("stage an extent")?;
        let mut w = self.writer.lock();
        let (slot, nonce) = self.registry.owner();
        // The reservation only has to outlive this process: no sync of the WAL for it.
        w.pragma_update(None, "synchronous", "NORMAL").map_err(err("stage an extent"))?;
        let r = (|| {
            let tx = w.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err("stage an extent"))?;
            let (mut data_end, redo) = q_local(&tx)?;
            let off = allocate(&tx, &self.data, &mut data_end, size)?;
            set_local(&tx, data_end, redo)?;
            tx.execute(
                "INSERT INTO outcore_staged (ext_off, size, slot, nonce, row_sum) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![off, size, slot, Bits(nonce), rowsum::staged(off, size, slot, nonce).finish()],
            )
            .map_err(err("stage an extent"))?;
            tx.commit().map_err(err("stage an extent"))?;
            Ok(off)
        })();
        w.pragma_update(None, "synchronous", "FULL").map_err(err("stage an extent"))?;
        let off = r?;
        self.staged.lock().insert(off, StagedPages::new(array, blk, size));
        Ok(Some(Staged { array, blk, location: Location { file: self.data.file().clone(), offset: off }, size }))
    }

    fn write_staged(&self, staged: &Staged, at: u64, bytes: &[u8]) -> Result<()> {
        self.check_process()?;
        if at + bytes.len() as u64 > staged.size || !Arc::ptr_eq(&staged.location.file, self.data.file()) {
            return Err(Error::Invalid(format!(
                "a write of {} bytes at {at} into a staged extent of {}",
                bytes.len(),
                staged.size
            )));
        }
        self.data.write_new(staged.location.offset + at, bytes)?;
        if let Some(t) = self.staged.lock().get_mut(&staged.location.offset) {
            t.wrote(at as usize, bytes);
        }
        Ok(())
    }

    fn release_staged(&self, staged: &Staged) -> Result<()> {
        self.check_process()?;
        self.check_writable("release a staged extent")?;
        self.staged.lock().remove(&staged.location.offset);
        let mut w = self.writer.lock();
        let (slot, nonce) = self.registry.owner();
        w.pragma_update(None, "synchronous", "NORMAL").map_err(err("release an extent"))?;
        let r = (|| {
            let tx = w.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err("release an extent"))?;
            let n = tx
                .execute(
                    "DELETE FROM outcore_staged WHERE ext_off = ?1 AND slot = ?2 AND nonce = ?3",
                    params![staged.location.offset, slot, Bits(nonce)],
                )
                .map_err(err("release an extent"))?;
            if n == 1 {
                self.data.punch(staged.location.offset, staged.size)?;
                put_free(&tx, staged.size, staged.location.offset)?;
            }
            tx.commit().map_err(err("release an extent"))
        })();
        w.pragma_update(None, "synchronous", "FULL").map_err(err("release an extent"))?;
        r
    }

    fn can_locate(&self, meta: &ArrayMeta) -> bool {
        meta.codec == Codec::None
    }

    fn locate(&self, array: ArrayId, blks: std::ops::Range<u64>, at: Tid) -> Result<Option<Vec<(u64, Location)>>> {
        let c = self.reader()?;
        in_snapshot(&c, "locate", |c| {
            self.listing(c, at).and_then(|listing| q_locate(c, &self.data, &listing, array, blks, at))
        })
    }

    fn changes(&self, after: Tid, upto: Tid) -> Result<Changes> {
        let c = self.reader()?;
        in_snapshot(&c, "changes", |c| read::changes(&mut SqliteRead(c), after, upto))
    }

    fn history(&self, after: Tid, upto: Tid) -> Result<Vec<TxnInfo>> {
        let c = self.reader()?;
        in_snapshot(&c, "history", |c| read::history(&mut SqliteRead(c), after, upto))
    }

    fn tid_at(&self, time: SystemTime) -> Result<Tid> {
        let us = super::time_to_us(time);
        let c = self.reader()?;
        let rows = q_txns(&c, "WHERE tid = (SELECT max(tid) FROM outcore_txn WHERE time_us <= ?1)", &[&us])?;
        Ok(rows.first().map_or(0, |r| r.commit.tid))
    }

    fn gc(&self, keep_after: Tid) -> Result<GcStats> {
        self.check_process()?;
        self.check_writable("collect garbage")?;
        let mut w = self.writer.lock();
        let tx = w.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err("begin gc"))?;
        let head = q_head(&tx)?;
        if keep_after > head.tid {
            return Err(Error::FutureTid { at: keep_after, head: head.tid });
        }
        let mut stats = GcStats::default();
        if keep_after <= head.horizon {
            return Ok(stats);
        }
        let k = keep_after;
        let sum = |sql: &str, counter: &mut u64| -> Result<u64> {
            let mut st = tx.prepare(sql).map_err(err("gc"))?;
            let lens = st.query_map([k], |r| r.get::<_, u64>(0)).map_err(err("gc"))?;
            let mut bytes = 0u64;
            for l in lens {
                bytes += l.map_err(err("gc"))?;
                *counter += 1;
            }
            Ok(bytes)
        };
        let mut versions = 0;
        let mut other = 0;
        stats.bytes += sum(sql::GC_UNDO, &mut versions)?;
        // Empty current versions go; so do their bits in the record of written blocks.
        let emptied: Vec<(ArrayId, u64)> = tx
            .prepare(sql::GC_EMPTY)
            .and_then(|mut st| st.query_map([k], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .map_err(err("gc"))?;
        other += emptied.len() as u64;
        let mut by_seg: std::collections::BTreeMap<(ArrayId, u64), Vec<u64>> = Default::default();
        for (array, blk) in emptied {
            by_seg.entry((array, blk / SEG_BLOCKS)).or_default().push(blk);
        }
        for ((array, seg), blks) in by_seg {
            set_bits(&tx, array, seg, blks, false)?;
        }
        // Arrays deleted at or before the horizon: all their data and history go. Their extents
        // are retired (open snapshots may still map them), reused once none is that old.
        let rows: Vec<(CurrentRowSql, i64, ArrayId, u64, Option<String>)> = tx
            .prepare(GC_DELETED_EXTENTS)
            .and_then(|mut st| {
                st.query_map([k], |r| {
                    let (cur, sum) = current_row(r)?;
                    Ok((cur, sum, r.get(12)?, r.get(13)?, r.get(14)?))
                })?
                .collect()
            })
            .map_err(err("gc"))?;
        let mut extents = Vec::with_capacity(rows.len());
        for (cur, sum, array_id, blk, meta) in rows {
            verify_current(&cur.cols(array_id, blk), sum)?;
            if let Some(off) = cur.ext_off {
                extents.push((array_id, blk, cur.tid, off, meta));
            }
        }
        for (array_id, blk, tid, off, meta) in extents {
            let size = meta
                .and_then(|m| super::decode_meta(array_id, tid, &m).ok())
                .map_or(crate::types::MAX_BLKSIZE, |m| m.blksize);
            let retired = head.tid + 1;
            let sum = rowsum::retired(off, size, array_id.0, blk, tid, retired).finish();
            tx.execute(
                "INSERT INTO outcore_retired (ext_off, size, array_id, blk, since_tid, retired_tid, row_sum)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![off, size, array_id, blk, tid, retired, sum],
            )
            .map_err(err("gc"))?;
            stats.bytes += size;
        }
        stats.bytes += sum(GC_DELETED_BLOBS, &mut other)?;
        stats.bytes += sum(GC_DELETED_PATCHES, &mut other)?;
        sum(sql::GC_DELETED_CURRENT, &mut other)?;
        tx.execute(GC_DELETED_BLOCKS, [k]).map_err(err("gc"))?;
        stats.bytes += sum(sql::GC_DELETED_UNDO, &mut versions)?;
        stats.block_versions = versions;
        let mut av = 0;
        sum(sql::GC_ARRAY_VERSIONS, &mut av)?;
        stats.array_versions = av;
        set_head_row(&tx, &Head { horizon: keep_after, ..head })?;
        tx.commit().map_err(err("gc"))?;
        if let Some(c) = &self.checkpointer {
            c.poke();
        }
        Ok(stats)
    }

    fn stats(&self) -> Result<StoreStats> {
        let c = self.reader()?;
        c.query_row(STATS, [], |r| {
            Ok(StoreStats { block_versions: r.get::<_, u64>(0)?, stored_bytes: r.get::<_, u64>(1)? })
        })
        .map_err(err("stats"))
    }

    fn subscribe(&self) -> Result<Box<dyn Subscription>> {
        let access = if self.read_only { Access::ReadOnly } else { Access::ReadWrite };
        let conn = connect(&self.path, access).map_err(err("subscribe"))?;
        let last = q_head(&conn)?.tid;
        Ok(Box::new(SqlitePoll { conn, last }))
    }
}

/// Versions in history (one undo record per commit that changed a block) and the bytes of
/// current contents (payloads and pending patches) and undo records.
const STATS: &str = "SELECT (SELECT count(*) FROM outcore_undo),
    (SELECT coalesce(sum(length(data)), 0) FROM outcore_undo) + (SELECT coalesce(sum(length(data)), 0) FROM outcore_blob)
    + (SELECT coalesce(sum(len), 0) FROM outcore_current WHERE ext_off IS NOT NULL)
    + (SELECT coalesce(sum(length(data)), 0) FROM outcore_patch)";

/// gc (SQLite): the current contents of arrays deleted at or before `keep_after`...
const GC_DELETED_EXTENTS: &str = concat!(
    "SELECT c.tid, c.len, c.base_tid, c.base_len, c.codec, c.checksum, coalesce(c.data_id, 0), c.patches,
         c.patch_bytes, c.ext_off, NULL, c.row_sum, c.array_id, c.blk,
         (SELECT a.meta FROM outcore_array a WHERE a.array_id = c.array_id
          AND a.meta IS NOT NULL ORDER BY a.tid DESC LIMIT 1)
     FROM outcore_current c WHERE c.array_id IN (",
    super::sql::deleted_arrays!(),
    ")"
);
/// gc (SQLite): the record of written blocks of deleted arrays.
const GC_DELETED_BLOCKS: &str =
    concat!("DELETE FROM outcore_blocks WHERE array_id IN (", super::sql::deleted_arrays!(), ")");
/// gc (SQLite): the payloads of deleted arrays' blocks kept in SQLite.
const GC_DELETED_BLOBS: &str = concat!(
    "DELETE FROM outcore_blob WHERE id IN (SELECT data_id FROM outcore_current WHERE array_id IN (",
    super::sql::deleted_arrays!(),
    ")) RETURNING CAST(length(data) AS BIGINT)"
);
/// gc (SQLite): the pending patches of deleted arrays' blocks.
const GC_DELETED_PATCHES: &str = concat!(
    "DELETE FROM outcore_patch WHERE array_id IN (",
    super::sql::deleted_arrays!(),
    ") RETURNING CAST(length(data) AS BIGINT)"
);
/// SQLite has no notifications: poll the head row.
struct SqlitePoll {
    conn: Connection,
    last: Tid,
}

/// How often a SQLite subscription polls.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

impl Subscription for SqlitePoll {
    fn wait(&mut self, timeout: Duration) -> Result<Option<Tid>> {
        let deadline = Instant::now() + timeout;
        loop {
            let head = q_head(&self.conn)?.tid;
            if head > self.last {
                self.last = head;
                return Ok(Some(head));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            std::thread::sleep(POLL_INTERVAL.min(deadline - now));
        }
    }
}
