//! PostgreSQL backend: many processes and machines share one database. Commits serialize on the
//! head row (`SELECT ... FOR UPDATE`, reached through an advisory lock they queue on), so tid
//! order is commit order; each commit announces its tid with `NOTIFY outcore_commit`. A commit
//! reads its blocks' rows before it queues, and the rest under the lock (see `PgTxn::head`).
//!
//! Every wait for the server is bounded and interruptible (`pg_client`). A commit whose
//! connection is lost after `COMMIT` was sent finds out whether it landed: it carries a
//! client-chosen `commit_id`; a new connection ends the old server process (if it is still
//! there) and looks the id up (`commit_outcome`).

/// Owned statement parameters ([`client::Param`]s), here and in the submodules.
macro_rules! params {
    ($($p:expr),* $(,)?) => { vec![$(Box::new($p) as $crate::backend::postgres::client::Param),*] };
}

mod client;
mod columns;
pub(crate) mod config;
mod group;
mod rows;
mod tls;

use super::read::{self, CommitRow, ReadTxn};
use super::{array_info, bound, check_format, encode_meta, sql, time_to_us, FORMAT_NAME, PG_FORMAT_VERSION};
use crate::block::{self, Encoded, Stored, TidBinding};
use crate::commit::{self, ArrayVersion, ChangedSets, Commit, CurrentRow, CurrentWrite, Head, PageWrite, WriteTxn};
use crate::error::{Error, Result};
use crate::failpoint::failpoint;
use crate::pool::Pool;
use crate::rowsum::RowSum;
use crate::store::{Store, Subscription};
use crate::types::{ArrayId, ArrayInfo, ArrayMeta, Changes, GcStats, Snapshot, StoreStats, Tid, TxnInfo};
use client::{Param, PgClient};
use columns::{uint, Uint};
use config::Target;
use rows::{CurrentCols, RowBatch};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Row, Statement};

const SCHEMA: &str = "
CREATE TABLE outcore_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE outcore_head (
    id int PRIMARY KEY CHECK (id = 1),
    tid bigint NOT NULL, gc_horizon bigint NOT NULL, time_us bigint NOT NULL);
CREATE TABLE outcore_txn (
    tid bigint PRIMARY KEY, time_us bigint NOT NULL,
    \"user\" text NOT NULL, description text NOT NULL, extension text NOT NULL,
    commit_id bigint NOT NULL);
CREATE INDEX outcore_txn_time ON outcore_txn (time_us);
CREATE UNIQUE INDEX outcore_txn_commit ON outcore_txn (commit_id);
CREATE TABLE outcore_array (
    array_id bigint NOT NULL, tid bigint NOT NULL, name text, meta text,
    PRIMARY KEY (array_id, tid));
CREATE INDEX outcore_array_tid ON outcore_array (tid);
CREATE TABLE outcore_current (
    array_id bigint NOT NULL, blk bigint NOT NULL, tid bigint NOT NULL,
    codec int NOT NULL, len bigint NOT NULL, checksum bigint NOT NULL,
    PRIMARY KEY (array_id, blk));
CREATE TABLE outcore_segment (
    array_id bigint NOT NULL, blk bigint NOT NULL, seg int NOT NULL, data bytea NOT NULL,
    sum bigint NOT NULL, PRIMARY KEY (array_id, blk, seg));
ALTER TABLE outcore_segment ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE TABLE outcore_undo (
    array_id bigint NOT NULL, blk bigint NOT NULL, tid bigint NOT NULL, prev_tid bigint NOT NULL,
    kind int NOT NULL, depth bigint NOT NULL, chain_bytes bigint NOT NULL,
    codec int NOT NULL, len bigint NOT NULL, checksum bigint NOT NULL, data bytea NOT NULL,
    PRIMARY KEY (array_id, blk, tid));
ALTER TABLE outcore_undo ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE INDEX outcore_undo_tid ON outcore_undo (tid, array_id, blk);
INSERT INTO outcore_head (id, tid, gc_horizon, time_us) VALUES (1, 0, 0, 0);
CREATE FUNCTION outcore_tid_mix(t bigint) RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS 'SELECT (((t # (t << 17)) # (t << 31)) # (t << 47)) # 8031453480905500020';
CREATE FUNCTION outcore_check_reads(base bigint, since bigint, arrays bigint[], every_array boolean,
        blk_arrays bigint[], blks bigint[], whole_arrays bigint[]) RETURNS bigint LANGUAGE plpgsql AS $f$
DECLARE
    h outcore_head;
BEGIN
    SELECT * INTO h FROM outcore_head WHERE id = 1;
    IF h.gc_horizon > base
        OR EXISTS (SELECT 1 FROM outcore_array v WHERE v.tid > since AND v.tid < h.tid
                   AND (every_array OR v.array_id = ANY (arrays)))
        OR EXISTS (SELECT 1 FROM outcore_undo u WHERE u.tid > since AND u.tid < h.tid
                   AND (u.array_id = ANY (whole_arrays)
                        OR (u.array_id, u.blk) IN (SELECT * FROM unnest(blk_arrays, blks))))
    THEN
        RAISE EXCEPTION 'outcore: what this commit read at tid % changed before it took the commit lock', since
            USING ERRCODE = 'OC001';
    END IF;
    RETURN h.tid;
END
$f$;
";

/// The check, under the commit lock, that nothing a commit read before it took the lock has
/// changed since (`outcore_check_reads`, SQLSTATE `OC001` when it has); its row is the commit's
/// tid. Parameters: the commit's base, the head it read at, the arrays it read (or every array),
/// the blocks it read, the arrays all of whose blocks it read.
const CHECK_READS: &str = "SELECT outcore_check_reads($1, $2, $3, $4, $5, $6, $7)";

/// The commit lock: commits queue on it, in order, before they move the head.
const TAKE_LOCK: &str = "SELECT pg_advisory_xact_lock($1)";

/// The commit lock is taken, and the head moved on to the commit's tid, before a commit's
/// first write. `$1`: the commit's time (it never goes back).
const TAKE_TID: &str = "UPDATE outcore_head SET tid = tid + 1, time_us = GREATEST(time_us, $1) WHERE id = 1
     RETURNING pg_notify('outcore_commit', tid::text)";

/// New segment rows go in by binary COPY, the server's fastest way in.
const COPY_SEGMENTS: &str = "COPY outcore_segment (array_id, blk, seg, data, sum) FROM STDIN (FORMAT binary)";
/// The columns [`COPY_SEGMENTS`] takes.
const SEGMENT_COLUMNS: [Type; 5] = [Type::INT8, Type::INT8, Type::INT4, Type::BYTEA, Type::INT8];

/// Advisory lock key taken while creating the schema (ASCII "outcore").
const INIT_LOCK: i64 = 0x006f_7574_636f_7265;
/// Advisory lock key a commit takes before it locks the head row ("outcorc"): waiting
/// commits queue in the server's lock manager, each woken once, instead of in the row-lock
/// protocol (tuple lock, then the holder's transaction, then the row's newest version again).
const COMMIT_LOCK: i64 = 0x006f_7574_636f_7263;
/// The notification channel.
const CHANNEL: &str = "outcore_commit";

/// A connection with its prepared statements and its deferred writes: writes are queued and
/// sent with the next query in one pipeline (one round trip), new segment rows by binary COPY.
struct PgConn {
    client: PgClient,
    stmts: HashMap<String, Statement>,
    /// The server process serving it and when it started (`pg_stat_activity`), once asked.
    backend: Option<(i32, String)>,
    /// Statements that go before the first write of the open commit, with it: the commit lock
    /// and the head's move to the commit's tid (which its rows take from the head).
    before_writes: Vec<(&'static str, Vec<Param>)>,
    /// Writes not sent yet.
    pending: Vec<(&'static str, Vec<Param>)>,
    /// Per-block rows not sent yet (after `pending`, one statement per table).
    rows: RowBatch,
    /// New segment rows not sent yet (after `pending`, by binary COPY).
    new_segments: Vec<Vec<Param>>,
    /// Their bytes.
    new_bytes: usize,
}

impl PgConn {
    /// The prepared statement for `sql`.
    fn stmt(&mut self, op: &'static str, sql: &str) -> Result<Statement> {
        if let Some(st) = self.stmts.get(sql) {
            return Ok(st.clone());
        }
        let st = self.client.prepare(op, sql)?;
        self.stmts.insert(sql.to_string(), st.clone());
        Ok(st)
    }

    /// Run `sql` (prepared once per connection) and collect its rows; deferred writes go first,
    /// in the same round trip.
    fn q(&mut self, op: &'static str, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        if self.client.copying() || !self.new_segments.is_empty() {
            self.flush()?;
        }
        let st = self.stmt(op, sql)?;
        if self.pending.is_empty() && self.rows.is_empty() {
            return self.client.query(op, &st, params);
        }
        let items = self.take_pending()?;
        self.client.pipeline_then(op, &items, &st, params)
    }

    /// Run the queued writes and then `queries` (owned parameters) in one round trip; the rows
    /// of each query.
    fn q_many(&mut self, op: &'static str, queries: Vec<(&'static str, Vec<Param>)>) -> Result<Vec<Vec<Row>>> {
        if self.client.copying() || !self.new_segments.is_empty() {
            self.flush()?;
        }
        let items = self.take_pending()?;
        let mut qs = Vec::with_capacity(queries.len());
        for (sql, params) in queries {
            qs.push((self.stmt(op, sql)?, params));
        }
        self.client.pipeline(op, &items, &qs)
    }

    /// Queue a write.
    fn defer(&mut self, sql: &'static str, params: Vec<Param>) {
        self.pending.push((sql, params));
    }

    /// The queued writes with their prepared statements, the gathered rows last; with any
    /// write, the statements that go before the commit's first write (once).
    fn take_pending(&mut self) -> Result<Vec<(Statement, Vec<Param>)>> {
        let pending = self.drain_pending();
        self.prepared(pending)
    }

    /// The queued writes, the gathered rows last; with any write, the statements that go
    /// before the commit's first write (once).
    fn drain_pending(&mut self) -> Vec<(&'static str, Vec<Param>)> {
        let writes = !self.pending.is_empty() || !self.rows.is_empty() || !self.new_segments.is_empty();
        let mut pending = if writes { std::mem::take(&mut self.before_writes) } else { Vec::new() };
        pending.append(&mut self.pending);
        pending.extend(self.rows.take_statements());
        pending
    }

    /// `list` with each statement prepared.
    fn prepared(&mut self, list: Vec<(&'static str, Vec<Param>)>) -> Result<Vec<(Statement, Vec<Param>)>> {
        let mut items = Vec::with_capacity(list.len());
        for (sql, params) in list {
            items.push((self.stmt("commit", sql)?, params));
        }
        Ok(items)
    }

    /// Whether the open commit can go in a group: nothing of it was sent but its reads (the
    /// commit lock is still to be taken first thing) and no `COPY` is due.
    fn groupable(&self) -> bool {
        self.before_writes.iter().any(|(sql, _)| *sql == TAKE_LOCK)
            && !self.client.copying()
            && self.new_segments.is_empty()
    }

    /// Send the queued writes: end the streamed COPY, then one pipeline, then the new segment
    /// rows that wait for it by binary COPY.
    fn flush(&mut self) -> Result<()> {
        self.client.copy_finish("commit")?;
        if !self.pending.is_empty() || !self.rows.is_empty() || !self.new_segments.is_empty() {
            let items = self.take_pending()?;
            self.client.pipeline("commit", &items, &[])?;
        }
        if !self.new_segments.is_empty() {
            let rows = std::mem::take(&mut self.new_segments);
            self.new_bytes = 0;
            self.client.copy_in("commit", COPY_SEGMENTS, &SEGMENT_COLUMNS, &rows)?;
        }
        Ok(())
    }

    /// Which server process serves this connection (asked once).
    fn backend(&mut self) -> Result<(i32, String)> {
        if let Some(b) = &self.backend {
            return Ok(b.clone());
        }
        let rows = self.client.query_text(
            "identify connection",
            "SELECT pid, backend_start::text FROM pg_stat_activity WHERE pid = pg_backend_pid()",
            &[],
        )?;
        let row = rows.first().ok_or_else(|| Error::Invalid("the server does not list its own process".into()))?;
        let b: (i32, String) = (row.get(0), row.get(1));
        self.backend = Some(b.clone());
        Ok(b)
    }

    /// End the open transaction after a failure (dropping the writes not sent), if the
    /// connection still works.
    fn rollback(&mut self) {
        self.client.copy_abort();
        self.before_writes.clear();
        self.pending.clear();
        self.rows = RowBatch::default();
        self.new_segments.clear();
        self.new_bytes = 0;
        if !self.client.is_broken() {
            let _ = self.client.batch("rollback", "ROLLBACK");
        }
    }
}

/// A store in a PostgreSQL database.
pub struct PgStore {
    target: Target,
    location: String,
    conns: Pool<PgConn>,
    /// Opened with [`open_read_only`](Self::open_read_only): commits and gc are refused.
    read_only: bool,
    /// The machine-wide group its small commits join ([`group`]); `None`: each goes alone.
    group: Option<group::Group>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("location", &self.location).finish()
    }
}

impl PgStore {
    /// Connect to the database named by a `postgresql://` URL, creating the schema if the
    /// database has none.
    pub fn open(url: &str) -> Result<Self> {
        Self::open_with(url, true)
    }

    /// Connect to a database that already holds a store: one without the schema is
    /// [`Error::NotAStore`] and is left as it was (for inspection tools).
    pub fn open_existing(url: &str) -> Result<Self> {
        Self::open_with(url, false)
    }

    /// Open an existing store for reading only: commits and gc fail with [`Error::ReadOnly`]
    /// (a role that may only read the tables works too).
    pub fn open_read_only(url: &str) -> Result<Self> {
        Ok(PgStore { read_only: true, group: None, ..Self::open_with(url, false)? })
    }

    /// The value of server setting `name` in the sessions this store opens (diagnostics and
    /// tests: what `SET` at connect gave).
    #[doc(hidden)]
    pub fn session_setting(&self, name: &str) -> Result<String> {
        self.with_conn(|c| {
            let rows = c.client.query_text("show setting", "SELECT current_setting($1)", &[&name])?;
            Ok(rows.first().map(|r| r.get::<_, String>(0)).unwrap_or_default())
        })
    }

    /// How many commits of this machine wait in the group commit queue of this database
    /// (`None`: group commit is off for this handle). Diagnostics and tests.
    #[doc(hidden)]
    pub fn group_queued(&self) -> Option<usize> {
        self.group.as_ref().map(group::Group::queued)
    }

    /// Refuse what needs write access on a read-only handle.
    fn check_writable(&self, op: &'static str) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly { location: self.location.clone(), op });
        }
        Ok(())
    }

    fn open_with(url: &str, create: bool) -> Result<Self> {
        let target = config::parse(url)?;
        let location = target.location.clone();
        let group = if target.group_commit {
            group::Group::open(&target.database_key(), &location, target.io_timeout)
        } else {
            None
        };
        let store = PgStore { target, location, conns: Pool::new(16), read_only: false, group };
        let mut conn = store.connect()?;
        if !create {
            let rows = conn.client.query_text("open", "SELECT to_regclass('outcore_meta') IS NOT NULL", &[])?;
            if !rows.first().is_some_and(|r| r.get::<_, bool>(0)) {
                return Err(Error::NotAStore {
                    location: store.location.clone(),
                    reason: "the database holds no outcore store (nothing was created)".into(),
                });
            }
        }
        let r = store.init_schema(&mut conn);
        if r.is_err() {
            conn.rollback();
        }
        r?;
        Ok(store)
    }

    fn connect(&self) -> Result<PgConn> {
        let mut client = PgClient::connect(&self.target)?;
        // Every statement is outcore's own, prepared once per connection, and reads by key or
        // by a tid range that is small in every common case (the changes since a snapshot).
        // Generic plans: custom plans were planned again at each execution, a large part of a
        // small commit's server time. No sequential scans: a plan made while a table was small
        // (a generic plan lives as long as its connection), or with statistics behind the
        // table, scanned `outcore_undo` whole for the changes since a snapshot, at every
        // commit. `plan_cache_mode` exists from PostgreSQL 12 on.
        // No JIT: with sequential scans off, a plan that still needs one (the correlated
        // subquery of a listing, a gc delete) costs more than `jit_above_cost`, and every
        // execution compiled it: 300 ms of server CPU per `root` lookup (design 005). `jit`
        // exists from PostgreSQL 11 on.
        client.batch(
            "connect",
            "SET enable_seqscan = off;
             SELECT set_config('plan_cache_mode', 'force_generic_plan', false)
             WHERE current_setting('server_version_num')::int >= 120000;
             SELECT set_config('jit', 'off', false)
             WHERE current_setting('server_version_num')::int >= 110000",
        )?;
        Ok(PgConn {
            client,
            stmts: HashMap::new(),
            backend: None,
            before_writes: Vec::new(),
            pending: Vec::new(),
            rows: RowBatch::default(),
            new_segments: Vec::new(),
            new_bytes: 0,
        })
    }

    fn conn(&self) -> Result<crate::pool::Pooled<'_, PgConn>> {
        self.conns.get(|| self.connect())
    }

    fn init_schema(&self, c: &mut PgConn) -> Result<()> {
        let client = &mut c.client;
        client.batch("open", "BEGIN")?;
        client.query_text("open", "SELECT pg_advisory_xact_lock($1)", &[&INIT_LOCK])?;
        let exists: bool = client
            .query_text("open", "SELECT to_regclass('outcore_meta') IS NOT NULL", &[])?
            .first()
            .is_some_and(|r| r.get(0));
        if !exists {
            client.batch("create schema", SCHEMA)?;
            client.query_text(
                "create schema",
                "INSERT INTO outcore_meta (key, value) VALUES ('format', $1), ('version', $2)",
                &[&FORMAT_NAME, &PG_FORMAT_VERSION.to_string()],
            )?;
            client.batch("create schema", "COMMIT")?;
            return self.check_server_checksums(c);
        }
        let mut get = |key: &str| -> Result<Option<String>> {
            Ok(client
                .query_text("open", "SELECT value FROM outcore_meta WHERE key = $1", &[&key])?
                .first()
                .map(|r| r.get(0)))
        };
        let format = get("format")?;
        let version = get("version")?;
        client.batch("open", "COMMIT")?;
        check_format(&self.location, format, version, PG_FORMAT_VERSION)?;
        self.check_server_checksums(c)
    }

    /// Warn (once per store handle) when the server keeps no page checksums: metadata rows on
    /// PostgreSQL are the server's pages, and only its checksums tell a flipped bit in them.
    fn check_server_checksums(&self, c: &mut PgConn) -> Result<()> {
        let on = c.client.query_text("open", "SHOW data_checksums", &[])?.first().map(|r| r.get::<_, String>(0));
        if on.as_deref() != Some("on") {
            tracing::warn!(
                location = %self.location,
                "the PostgreSQL server runs without data checksums: a corrupt page of outcore's \
                 metadata on it cannot be detected (block contents still can); create the cluster \
                 with `initdb --data-checksums`, or enable them with `pg_checksums --enable`"
            );
        }
        Ok(())
    }

    /// Run `f` on a pooled connection; a connection that failed is not reused.
    fn with_conn<T>(&self, f: impl FnOnce(&mut PgConn) -> Result<T>) -> Result<T> {
        let mut c = self.conn()?;
        let r = f(&mut c);
        if matches!(r, Err(Error::Backend { .. })) || c.client.is_broken() {
            c.discard();
        }
        r
    }
}

// ---- queries shared by readers and the commit transaction ----

const HEAD: &str = "SELECT tid, gc_horizon, time_us FROM outcore_head WHERE id = 1";
/// What a snapshot `$3` reads of a block, with the gc horizon, in one statement (one
/// snapshot): first the current version (NULLs if none), then the undo records newer than the
/// snapshot, newest first, down to the oldest full record among them (none when the current
/// version is at or before the snapshot), then the current payload's segments.
const LOAD: &str = "SELECT 0 AS k, h.gc_horizon, c.tid, c.codec, c.len, c.checksum, 0::bigint AS prev_tid,
         0 AS kind, NULL::bytea AS data
     FROM outcore_head h LEFT JOIN outcore_current c ON c.array_id = $1 AND c.blk = $2 WHERE h.id = 1
     UNION ALL
     SELECT 2, NULL, s.seg::bigint, NULL, NULL, s.sum, NULL, NULL, s.data FROM outcore_segment s
     WHERE s.array_id = $1 AND s.blk = $2
     UNION ALL
     SELECT 1, NULL::bigint, u.tid, u.codec, u.len, u.checksum, u.prev_tid, u.kind, u.data
     FROM outcore_undo u
     WHERE u.array_id = $1 AND u.blk = $2 AND u.tid > $3 AND u.tid <= coalesce(
         (SELECT min(f.tid) FROM outcore_undo f WHERE f.array_id = $1 AND f.blk = $2 AND f.tid > $3 AND f.kind = 2),
         9223372036854775807)
     ORDER BY 1, 3 DESC";
const LIVE_ARRAYS: &str = "SELECT v.array_id, v.tid, v.name, v.meta FROM outcore_array v
     WHERE v.tid = (SELECT max(w.tid) FROM outcore_array w WHERE w.array_id = v.array_id AND w.tid <= $1)
       AND v.name IS NOT NULL ORDER BY v.name";
const ARRAY_BY_NAME: &str = "SELECT v.array_id, v.tid, v.name, v.meta FROM outcore_array v
     WHERE v.tid = (SELECT max(w.tid) FROM outcore_array w WHERE w.array_id = v.array_id AND w.tid <= $1)
       AND v.name = $2";
const ARRAY_BY_ID: &str = "SELECT v.array_id, v.tid, v.name, v.meta FROM outcore_array v
     WHERE v.array_id = $2 AND v.name IS NOT NULL
       AND v.tid = (SELECT max(w.tid) FROM outcore_array w WHERE w.array_id = v.array_id AND w.tid <= $1)";
/// Blocks changed by commits after `$1` other than `$2` (`Store::advance`).
const ADVANCE_BLOCKS: &str = "SELECT DISTINCT array_id, blk FROM outcore_undo WHERE tid > $1 AND tid <> $2
     ORDER BY array_id, blk";
/// Arrays changed by commits after `$1` other than `$2` (`Store::advance`).
const ADVANCE_ARRAYS: &str =
    "SELECT DISTINCT array_id FROM outcore_array WHERE tid > $1 AND tid <> $2 ORDER BY array_id";

fn q_head(c: &mut PgConn, sql: &'static str) -> Result<Head> {
    let rows = c.q("read head", sql, &[])?;
    let row = rows.first().ok_or_else(|| Error::Invalid("store has no head row".into()))?;
    Ok(Head { tid: uint(row, 0), horizon: uint(row, 1), time_us: row.get(2) })
}

fn q_load(c: &mut PgConn, array: ArrayId, blk: u64, at: Tid, buf: &mut [u8]) -> Result<()> {
    let rows = c.q("load", LOAD, &[&array, &Uint(blk), &Uint(at)])?;
    let first = rows.first().ok_or_else(|| Error::Invalid("store has no head row".into()))?;
    let horizon = uint(first, 1);
    if at < horizon {
        return Err(Error::SnapshotGone { at, horizon });
    }
    let current = first.get::<_, Option<i64>>(2).map(|_| stored_row(first));
    let current_tid = current.map_or(0, |c| c.tid);
    let kind_of = |r: &Row| r.get::<_, i32>(0);
    let segments = rows[1..].iter().filter(|r| kind_of(r) == 2).map(|r| Segment {
        seg: r.get::<_, i64>(2),
        data: r.get::<_, &[u8]>(8),
        sum: r.get::<_, i64>(5),
    });
    let read_current = |buf: &mut [u8]| match current {
        Some(cur) if cur.len > 0 && cur.codec == block::CODEC_RAW => {
            if cur.kind != block::KIND_CURRENT {
                return Err(block::corrupt(array, blk, cur.tid, format!("not a current version (kind {})", cur.kind)));
            }
            // Segments in place; a missing one (or the end of a short one) reads zeros: only
            // the bytes no row holds are cleared (not the whole block first, then copied over).
            let mut held: Vec<std::ops::Range<usize>> = Vec::new();
            for s in segments {
                held.push(s.place(array, blk, cur.tid, cur.len as usize, buf)?);
            }
            held.sort_unstable_by_key(|r| r.start);
            let mut at = 0;
            for r in held {
                if r.start < at {
                    return Err(block::corrupt(
                        array,
                        blk,
                        cur.tid,
                        format!("segment rows overlap at byte {}", r.start),
                    ));
                }
                buf[at..r.start].fill(0);
                at = r.end;
            }
            let n = buf.len();
            buf[at.min(n)..].fill(0);
            Ok(())
        }
        Some(cur) if cur.len > 0 => {
            let mut payload: &[u8] = &[];
            for s in segments.filter(|s| s.seg == 0) {
                s.verify(array, blk, cur.tid)?;
                payload = s.data;
            }
            block::decode_current(array, blk, &Stored { data: payload, ..cur }, buf)
        }
        _ => {
            buf.fill(0);
            Ok(())
        }
    };
    let undo = rows[1..].iter().filter(|r| kind_of(r) == 1).map(stored_row);
    block::rewind(array, blk, at, current_tid, read_current, undo, buf)
}

/// Raw current payloads are stored in rows of whole pages (`seg`: the row's first page; the
/// row that holds the end of the content is cut there), none crossing a window of this many
/// bytes. A new version written whole stores one row per window (all-zero ones not at all; a
/// whole write over a raw version rewrites only the windows holding changed pages, one row
/// each, zeros included); a small write reads and rewrites only its changed pages, neighbours
/// in one row: the first small write into a window's row splits it (its runs of changed pages,
/// and the runs between them, each a row), later ones move 4 KiB a page. PostgreSQL cannot rewrite part of a `bytea`, and a bulk load
/// wants few, big rows. A compressed payload is one row (`seg` 0) of any size. Each row carries
/// its own checksum.
const SEGMENT: usize = 16 << 10;
/// Pages in a [`SEGMENT`] window.
const SEGMENT_PAGES: usize = SEGMENT / block::PAGE;

// The SQL here counts pages of 4 KiB in windows of 4.
const _: () = assert!(block::PAGE == 4096 && SEGMENT_PAGES == 4);

/// The segment rows holding pages `(array, block, page)` (`$1`, `$2`, `$3`), each row once: for
/// each page, the row starting nearest at or before it in its window, if it reaches the page
/// (rows do not overlap; `length` of an uncompressed out-of-line value reads no data).
const PAGE_ROWS: &str = "SELECT DISTINCT ON (s.array_id, s.blk, s.seg) s.array_id, s.blk, s.seg::bigint, s.data, s.sum
     FROM unnest($1::bigint[], $2::bigint[], $3::int[]) AS k(array_id, blk, page)
     CROSS JOIN LATERAL (SELECT s.array_id, s.blk, s.seg, s.data, s.sum FROM outcore_segment s
         WHERE s.array_id = k.array_id AND s.blk = k.blk
           AND s.seg <= k.page AND s.seg >= k.page - k.page % 4
         ORDER BY s.seg DESC LIMIT 1) s
     WHERE s.seg::bigint * 4096 + length(s.data) > k.page::bigint * 4096";

/// New segment bytes a commit queues before it sends them (one binary COPY).
const NEW_SEGMENT_BYTES: usize = 32 << 20;

/// The rows a small write stores (first page, byte range in the block, whether the bytes are
/// the new content, else the old): of each row `read` (first page, bytes) that holds a changed
/// page, its runs of changed pages (new bytes, cut at the content's end `len`) and of unchanged
/// ones (as they were), each a row; the changed pages no row held, in runs within a window.
/// The first row of a split takes the old row's key, so the old row is replaced, never left
/// overlapping.
fn rewritten_rows(read: &[(i64, usize)], changed: &[u32], len: usize) -> Vec<(i64, std::ops::Range<usize>, bool)> {
    let mut sorted = changed.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let is_changed = |p: i64| sorted.binary_search(&(p as u32)).is_ok();
    let bytes = |a: i64, b: i64, end: usize| (a as usize * block::PAGE).min(end)..(b as usize * block::PAGE).min(end);
    let mut out = Vec::new();
    let mut covered = BTreeSet::new();
    for &(first, n) in read {
        let end = first + n.div_ceil(block::PAGE) as i64;
        if !(first..end).any(is_changed) {
            continue;
        }
        let old_end = first as usize * block::PAGE + n;
        let mut p = first;
        while p < end {
            let new = is_changed(p);
            let mut q = p + 1;
            while q < end && is_changed(q) == new {
                q += 1;
            }
            if new {
                out.push((p, bytes(p, q, len), true));
                covered.extend(p..q);
            } else {
                out.push((p, bytes(p, q, old_end), false));
            }
            p = q;
        }
    }
    let rest: Vec<i64> = sorted.iter().map(|p| i64::from(*p)).filter(|p| !covered.contains(p)).collect();
    let mut i = 0;
    while i < rest.len() {
        let mut j = i + 1;
        while j < rest.len() && rest[j] == rest[j - 1] + 1 && rest[j] as usize % SEGMENT_PAGES != 0 {
            j += 1;
        }
        out.push((rest[i], bytes(rest[i], rest[j - 1] + 1, len), true));
        i = j;
    }
    out
}

/// One `outcore_segment` row as read.
struct Segment<'a> {
    seg: i64,
    data: &'a [u8],
    sum: i64,
}

/// The checksum of a segment row: over its key and its bytes.
fn segment_sum(array: ArrayId, blk: u64, seg: i64, data: &[u8]) -> i64 {
    RowSum::new("outcore_segment").uint(array.0).uint(blk).int(seg).bytes(data).finish()
}

impl Segment<'_> {
    /// Check the row's checksum.
    fn verify(&self, array: ArrayId, blk: u64, tid: Tid) -> Result<()> {
        if segment_sum(array, blk, self.seg, self.data) != self.sum {
            return Err(block::corrupt(array, blk, tid, format!("segment at page {} failed its checksum", self.seg)));
        }
        Ok(())
    }

    /// Verify the segment of a raw version of `len` bytes and copy it to its place in `buf`;
    /// the bytes of `buf` it wrote.
    fn place(&self, array: ArrayId, blk: u64, tid: Tid, len: usize, buf: &mut [u8]) -> Result<std::ops::Range<usize>> {
        self.verify(array, blk, tid)?;
        let page = usize::try_from(self.seg).unwrap_or(usize::MAX);
        let start = page.saturating_mul(block::PAGE);
        let end = start.saturating_add(self.data.len());
        // A segment may be short (its end reads zeros: the content grew past it), or reach past
        // the content's end with zeros (the content's zero tail shrank in pages not rewritten).
        let past_end = self.data.get(len.saturating_sub(start).min(self.data.len())..).unwrap_or(&[]);
        let in_window = (page % SEGMENT_PAGES) * block::PAGE + self.data.len() <= SEGMENT;
        if end > buf.len() || !in_window || past_end.iter().any(|b| *b != 0) {
            return Err(block::corrupt(
                array,
                blk,
                tid,
                format!(
                    "segment at page {} of {} bytes does not fit its 16 KiB window or content of {len} bytes",
                    self.seg,
                    self.data.len()
                ),
            ));
        }
        buf[start..end].copy_from_slice(self.data);
        Ok(start..end)
    }
}

/// A payload row of the `LOAD` query.
fn stored_row(r: &Row) -> Stored<'_> {
    Stored {
        bind: TidBinding::Mix,
        tid: uint(r, 2),
        kind: r.get::<_, i32>(7) as i64,
        codec: r.get::<_, i32>(3) as i64,
        len: uint(r, 4),
        checksum: r.get(5),
        prev_tid: uint(r, 6),
        data: r.get::<_, Option<&[u8]>>(8).unwrap_or(&[]),
    }
}

fn rows_to_arrays(rows: Vec<Row>) -> Result<Vec<ArrayInfo>> {
    rows.into_iter().map(|r| array_info(r.get(0), uint(&r, 1), r.get(2), r.get::<_, &str>(3))).collect()
}

/// Rows of `CHANGED_BLOCKS`.
fn changed_blocks(rows: &[Row]) -> Vec<(ArrayId, u64, Tid)> {
    rows.iter().map(|r| (r.get::<_, ArrayId>(0), uint(r, 1), uint(r, 2))).collect()
}

/// Rows of `CHANGED_ARRAYS`.
fn changed_arrays(rows: &[Row]) -> Vec<(ArrayId, Tid)> {
    rows.iter().map(|r| (r.get::<_, ArrayId>(0), uint(r, 1))).collect()
}

/// An array version from columns `tid, name, meta` starting at `at`.
fn array_version(id: ArrayId, r: &Row, at: usize) -> Result<ArrayVersion> {
    let tid = uint(r, at);
    let state = match (r.get::<_, Option<String>>(at + 1), r.get::<_, Option<&str>>(at + 2)) {
        (Some(name), Some(meta)) => Some((name, super::decode_meta(id, tid, meta)?)),
        _ => None,
    };
    Ok(ArrayVersion { tid, state })
}

fn q_changes(c: &mut PgConn, after: Tid, upto: Tid) -> Result<ChangedSets> {
    let p: [&(dyn ToSql + Sync); 2] = [&Uint(after), &bound(upto)];
    let blocks = changed_blocks(&c.q("changes", sql::CHANGED_BLOCKS, &p)?);
    let arrays = changed_arrays(&c.q("changes", sql::CHANGED_ARRAYS, &p)?);
    Ok((blocks, arrays))
}

fn check_at(c: &mut PgConn, at: Tid) -> Result<()> {
    read::check_at(&q_head(c, HEAD)?, at)
}

impl ReadTxn for PgConn {
    fn head(&mut self) -> Result<Head> {
        q_head(self, HEAD)
    }

    fn changed(&mut self, after: Tid, upto: Tid) -> Result<ChangedSets> {
        q_changes(self, after, upto)
    }

    fn commits(&mut self, after: Tid, upto: Tid) -> Result<Vec<CommitRow>> {
        let rows = self.q(
            "history",
            "SELECT tid, time_us, \"user\", description, extension FROM outcore_txn
             WHERE tid > $1 AND tid <= $2 ORDER BY tid",
            &[&Uint(after), &bound(upto)],
        )?;
        Ok(rows
            .iter()
            .map(|r| CommitRow {
                tid: uint(r, 0),
                time_us: r.get(1),
                user: r.get(2),
                description: r.get(3),
                extension: r.get(4),
            })
            .collect())
    }
}

/// A current row from columns `tid, codec, len` starting at `at`. No pending patches on
/// PostgreSQL: the payload is always the newest version.
fn current_row(r: &Row, at: usize) -> CurrentRow {
    let len = uint(r, at + 2);
    CurrentRow {
        tid: uint(r, at),
        codec: r.get::<_, i32>(at + 1) as i64,
        len,
        handle: 0,
        base_len: len,
        patches: 0,
        patch_bytes: 0,
        extent: None,
    }
}

/// The commit transaction (begun by [`PgStore::commit`]). Its writes are deferred (see
/// [`PgConn`]): they reach the server with `COMMIT`, or with a read that cannot wait.
///
/// A commit reads before it takes the commit lock (the head first, so that every later read
/// sees that head or newer), and its writes take their tid from the head, which the first of
/// them moves on under the lock. Everything it read is listed ([`ReadSet`]) and checked under
/// the lock before `COMMIT` (`CHECK_READS`): when something changed since the head it read at,
/// the commit fails with SQLSTATE `OC001` and [`PgStore::commit`] makes it again.
struct PgTxn<'a> {
    c: &'a mut PgConn,
    /// The id recorded with the commit, by which its outcome is found after a lost connection.
    commit_id: i64,
    /// Take the commit lock before the first read (the last try of a commit: nothing it reads
    /// can change, so its check cannot fail).
    lock_first: bool,
    /// What `prepare` announced, read with the head in one round trip (see [`Prefetched`]).
    plan: Option<Plan>,
    got: Prefetched,
    /// The head the commit read at (its tid is expected to be one more).
    read_at: Option<Head>,
    reads: ReadSet,
    /// The segment rows `load_pages` read of each block: first page, bytes. `write_pages`
    /// rewrites exactly these (split where pages changed) and new rows for changed pages in none.
    rows_read: HashMap<(ArrayId, u64), Vec<(i64, usize)>>,
}

/// What a commit read: checked under the commit lock for changes since it read them.
#[derive(Default)]
struct ReadSet {
    /// Arrays whose versions it read.
    arrays: BTreeSet<i64>,
    /// It read the list of live arrays (names): any array change matters.
    every_array: bool,
    /// Blocks whose current version, history or content it read.
    blocks: BTreeSet<(i64, i64)>,
    /// Arrays all of whose blocks it read (a truncation lists the stored ones).
    whole_arrays: BTreeSet<i64>,
}

impl ReadSet {
    fn block(&mut self, id: ArrayId, blk: u64) {
        self.blocks.insert((id.0 as i64, blk as i64));
    }

    /// The parameters of [`CHECK_READS`] after `base` and the head read at.
    fn params(&self, base: Tid, since: Tid) -> Vec<Param> {
        let arrays: Vec<i64> = self.arrays.iter().copied().collect();
        let (blk_arrays, blks): (Vec<i64>, Vec<i64>) = self.blocks.iter().copied().unzip();
        let whole: Vec<i64> = self.whole_arrays.iter().copied().collect();
        params![Uint(base), Uint(since), arrays, self.every_array, blk_arrays, blks, whole]
    }
}

/// A segment row as read ahead: segment, bytes, checksum.
type SegmentRow = (i64, Vec<u8>, i64);

/// What a commit will read (`WriteTxn::prepare`).
struct Plan {
    base: Tid,
    arrays: Vec<i64>,
    blocks: (Vec<i64>, Vec<i64>),
    /// The pages of page writes: (array, block, page).
    pages: (Vec<i64>, Vec<i64>, Vec<i32>),
}

/// What was read with the head, under its lock (so nothing of it can change before COMMIT).
/// Each entry is taken by the one call that needs it; anything else is read on demand.
#[derive(Default)]
struct Prefetched {
    changed: Option<(Tid, ChangedSets)>,
    /// Array versions at the head.
    arrays: Option<(Tid, HashMap<ArrayId, Option<ArrayVersion>>)>,
    /// Current rows of the planned blocks (`None`: the block has none).
    current: HashMap<(ArrayId, u64), Option<CurrentRow>>,
    /// Segment rows of page writes: the pages asked for, and the rows found holding them
    /// (a page in none reads zeros).
    segments: HashMap<(ArrayId, u64), (Vec<i32>, Vec<SegmentRow>)>,
    /// Undo chains of the current versions of the planned blocks, by (array, block, tid).
    chains: HashMap<(ArrayId, u64, Tid), Option<block::UndoChain>>,
}

impl PgTxn<'_> {
    /// The first row of `sql` run with parameters `id` and `n`, if any.
    fn first_row(&mut self, op: &'static str, sql: &'static str, id: ArrayId, n: u64) -> Result<Option<Row>> {
        Ok(self.c.q(op, sql, &[&id, &Uint(n)])?.into_iter().next())
    }

    /// Queue a write.
    fn defer(&mut self, sql: &'static str, params: Vec<Param>) {
        self.c.defer(sql, params);
    }

    /// Insert or replace segment rows `segs` of a block with `datas`, with their checksums;
    /// `fresh` when the block has no segment rows (they were deleted before): then by binary
    /// COPY, the server's fastest way in.
    fn put_segments(&mut self, id: ArrayId, blk: u64, segs: &[i32], datas: &[&[u8]], fresh: bool) -> Result<()> {
        if segs.is_empty() {
            return Ok(());
        }
        if fresh {
            for (s, d) in segs.iter().zip(datas) {
                let sum = segment_sum(id, blk, i64::from(*s), d);
                self.c.new_segments.push(params![id, Uint(blk), *s, d.to_vec(), sum]);
                self.c.new_bytes += d.len();
            }
            // Bounded memory: a big commit streams its new segments in COPYs of 32 MiB.
            if self.c.new_bytes >= NEW_SEGMENT_BYTES {
                self.c.flush()?;
            }
            return Ok(());
        }
        for (s, d) in segs.iter().zip(datas) {
            let sum = segment_sum(id, blk, i64::from(*s), d);
            self.c.rows.segment(id, blk, *s, d.to_vec(), sum);
        }
        Ok(())
    }

    /// Insert or replace a block's current row; `checksum` bound to `tid` (`None` when the
    /// content is checked by its segments). The row takes its tid from the head, and the server
    /// binds the checksum sent (unbound here) to that one.
    fn put_current(
        &mut self,
        id: ArrayId,
        blk: u64,
        tid: Tid,
        codec: i64,
        len: u64,
        checksum: Option<i64>,
    ) -> Result<()> {
        let checksum = checksum.map_or(0, |sum| sum ^ block::tid_mix(tid));
        self.c.rows.current(id, blk, CurrentCols { codec, len, checksum });
        Ok(())
    }
}

impl WriteTxn for PgTxn<'_> {
    fn prepare(&mut self, base: Tid, arrays: &[ArrayId], blocks: &[(ArrayId, u64, Option<&[u32]>)]) -> Result<()> {
        let mut page_keys = (Vec::new(), Vec::new(), Vec::new());
        for (id, blk, pages) in blocks {
            for p in pages.unwrap_or_default() {
                page_keys.0.push(id.0 as i64);
                page_keys.1.push(*blk as i64);
                page_keys.2.push(*p as i32);
            }
        }
        self.reads.arrays.extend(arrays.iter().map(|a| a.0 as i64));
        for (id, blk, _) in blocks {
            self.reads.block(*id, *blk);
        }
        self.plan = Some(Plan {
            base,
            arrays: arrays.iter().map(|a| a.0 as i64).collect(),
            blocks: blocks.iter().map(|(a, b, _)| (a.0 as i64, *b as i64)).unzip(),
            pages: page_keys,
        });
        Ok(())
    }

    fn head(&mut self) -> Result<Head> {
        // Everything the commit will read comes in one round trip, before the commit lock
        // (unless `lock_first`): the head first, so that each later statement sees it or a newer
        // state; whatever changed since it is caught by `CHECK_READS` under the lock.
        // Without the lock, the reads are one short transaction of their own, ended in the
        // same round trip (the commit's transaction starts with its first write).
        let lock: Vec<(&'static str, Vec<Param>)> =
            if self.lock_first { vec![(TAKE_LOCK, params![COMMIT_LOCK])] } else { vec![("BEGIN", Vec::new())] };
        let Some(plan) = self.plan.take() else {
            if self.lock_first {
                self.c.pending.extend(lock);
            }
            let head = q_head(self.c, HEAD)?;
            self.read_at = Some(head);
            return Ok(head);
        };
        let upto = i64::MAX;
        let mut queries = lock;
        let skip = queries.len();
        // The blocks' rows are looked up by key (`LATERAL ... LIMIT 1`: an index probe each),
        // whatever the tables' statistics say: a hash join over a scan of `outcore_current`
        // grows with its dead rows while many writers update it (0.45 ms a commit with 16
        // writers, 0.04 ms as lookups; design 005).
        queries.extend([
            (HEAD, params![]),
            (
                "SELECT c.tid, c.codec, c.len, c.array_id, c.blk, u.depth, u.chain_bytes
                 FROM unnest($1::bigint[], $2::bigint[]) AS k(array_id, blk)
                 CROSS JOIN LATERAL (SELECT c.tid, c.codec, c.len, c.array_id, c.blk FROM outcore_current c
                     WHERE c.array_id = k.array_id AND c.blk = k.blk LIMIT 1) c
                 LEFT JOIN LATERAL (SELECT u.depth, u.chain_bytes FROM outcore_undo u
                     WHERE u.array_id = c.array_id AND u.blk = c.blk AND u.tid = c.tid LIMIT 1) u ON true",
                params![plan.blocks.0.clone(), plan.blocks.1.clone()],
            ),
            (PAGE_ROWS, params![plan.pages.0.clone(), plan.pages.1.clone(), plan.pages.2.clone()]),
            (sql::CHANGED_BLOCKS, params![Uint(plan.base), upto]),
            (sql::CHANGED_ARRAYS, params![Uint(plan.base), upto]),
            (
                "SELECT DISTINCT ON (array_id) array_id, tid, name, meta FROM outcore_array
                 WHERE array_id = ANY($1) ORDER BY array_id, tid DESC",
                params![plan.arrays.clone()],
            ),
        ]);
        if !self.lock_first {
            // (ROLLBACK: it wrote nothing; and only a commit's end is a COMMIT.)
            queries.push(("ROLLBACK", Vec::new()));
        }
        let mut rows = self.c.q_many("commit", queries)?;
        rows.drain(..skip.min(rows.len()));
        if !self.lock_first {
            rows.pop();
        }
        let [head, current, segments, blocks, arrays, versions] =
            <[Vec<Row>; 6]>::try_from(rows).map_err(|_| Error::Invalid("a pipeline lost a result".into()))?;
        let row = head.first().ok_or_else(|| Error::Invalid("store has no head row".into()))?;
        let head = Head { tid: uint(row, 0), horizon: uint(row, 1), time_us: row.get(2) };
        self.read_at = Some(head);
        self.got.changed = Some((plan.base, (changed_blocks(&blocks), changed_arrays(&arrays))));
        let mut at_head: HashMap<ArrayId, Option<ArrayVersion>> =
            plan.arrays.iter().map(|a| (ArrayId(*a as u64), None)).collect();
        for r in &versions {
            let id = r.get::<_, ArrayId>(0);
            at_head.insert(id, Some(array_version(id, r, 1)?));
        }
        self.got.arrays = Some((head.tid, at_head));
        self.got.current =
            plan.blocks.0.iter().zip(&plan.blocks.1).map(|(a, b)| ((ArrayId(*a as u64), *b as u64), None)).collect();
        for r in &current {
            let key = (r.get::<_, ArrayId>(3), uint(r, 4));
            let row = current_row(r, 0);
            let chain = r.get::<_, Option<i64>>(5).map(|depth| block::UndoChain { depth, bytes: r.get(6) });
            self.got.chains.insert((key.0, key.1, row.tid), chain);
            self.got.current.insert(key, Some(row));
        }
        for ((a, b), p) in plan.pages.0.iter().zip(&plan.pages.1).zip(&plan.pages.2) {
            self.got.segments.entry((ArrayId(*a as u64), *b as u64)).or_default().0.push(*p);
        }
        for r in &segments {
            let key = (r.get::<_, ArrayId>(0), uint(r, 1));
            let seg = (r.get::<_, i64>(2), r.get::<_, &[u8]>(3).to_vec(), r.get::<_, i64>(4));
            self.got.segments.entry(key).or_default().1.push(seg);
        }
        Ok(head)
    }

    fn changed_since(&mut self, base: Tid) -> Result<ChangedSets> {
        match self.got.changed.take() {
            Some((b, sets)) if b == base => Ok(sets),
            _ => q_changes(self.c, base, u64::MAX),
        }
    }

    fn array_at(&mut self, id: ArrayId, at: Tid) -> Result<Option<ArrayVersion>> {
        self.reads.arrays.insert(id.0 as i64);
        if let Some((t, versions)) = &mut self.got.arrays {
            if *t == at {
                if let Some(v) = versions.remove(&id) {
                    return Ok(v);
                }
            }
        }
        let sql =
            "SELECT tid, name, meta FROM outcore_array WHERE array_id = $1 AND tid <= $2 ORDER BY tid DESC LIMIT 1";
        self.first_row("read array", sql, id, at)?.map(|r| array_version(id, &r, 0)).transpose()
    }

    fn live_arrays(&mut self, at: Tid) -> Result<Vec<ArrayInfo>> {
        self.reads.every_array = true;
        rows_to_arrays(self.c.q("list arrays", LIVE_ARRAYS, &[&Uint(at)])?)
    }

    fn stored_blocks_from(&mut self, id: ArrayId, from_blk: u64) -> Result<Vec<(u64, u64)>> {
        self.reads.whole_arrays.insert(id.0 as i64);
        let rows = self.c.q(
            "truncate",
            "SELECT blk, len FROM outcore_current WHERE array_id = $1 AND blk >= $2 AND len > 0 ORDER BY blk",
            &[&id, &Uint(from_blk)],
        )?;
        Ok(rows.into_iter().map(|r| (uint(&r, 0), uint(&r, 1))).collect())
    }

    fn load(&mut self, id: ArrayId, blk: u64, at: Tid, buf: &mut [u8]) -> Result<()> {
        self.reads.block(id, blk);
        q_load(self.c, id, blk, at, buf)
    }

    fn current(&mut self, id: ArrayId, blk: u64) -> Result<Option<CurrentRow>> {
        self.reads.block(id, blk);
        if let Some(row) = self.got.current.remove(&(id, blk)) {
            return Ok(row);
        }
        let sql = "SELECT tid, codec, len FROM outcore_current WHERE array_id = $1 AND blk = $2";
        Ok(self.first_row("commit", sql, id, blk)?.map(|r| current_row(&r, 0)))
    }

    fn tid_binding(&self) -> TidBinding {
        TidBinding::Mix
    }

    fn insert_txn(&mut self, info: &TxnInfo) -> Result<()> {
        // The first write: the commit lock and the head's move to this commit's tid go before
        // it; this and every later row takes its tid (and its time) from the head.
        // (A commit that took the lock before it read holds it already.)
        self.c.before_writes =
            if self.lock_first { Vec::new() } else { vec![("BEGIN", Vec::new()), (TAKE_LOCK, params![COMMIT_LOCK])] };
        self.c.before_writes.push((TAKE_TID, params![info.time_us]));
        let commit_id = self.commit_id;
        self.defer(
            "INSERT INTO outcore_txn (tid, time_us, \"user\", description, extension, commit_id)
             SELECT tid, time_us, $1, $2, $3, $4 FROM outcore_head WHERE id = 1",
            params![info.user.clone(), info.description.clone(), info.extension.to_string(), commit_id],
        );
        Ok(())
    }

    fn insert_array_version(&mut self, id: ArrayId, tid: Tid, state: Option<(&str, &ArrayMeta)>) -> Result<()> {
        let (name, meta) = match state {
            Some((name, meta)) => (Some(name), Some(encode_meta(meta))),
            None => (None, None),
        };
        debug_assert_eq!(Some(tid), self.read_at.map(|h| h.tid + 1));
        self.defer(
            "INSERT INTO outcore_array (array_id, tid, name, meta)
             SELECT $1, tid, $2, $3 FROM outcore_head WHERE id = 1",
            params![id, name.map(str::to_string), meta],
        );
        Ok(())
    }

    fn undo_chain(&mut self, id: ArrayId, blk: u64, tid: Tid) -> Result<Option<block::UndoChain>> {
        self.reads.block(id, blk);
        if let Some(chain) = self.got.chains.remove(&(id, blk, tid)) {
            return Ok(chain);
        }
        let rows = self.c.q(
            "commit",
            "SELECT depth, chain_bytes FROM outcore_undo WHERE array_id = $1 AND blk = $2 AND tid = $3",
            &[&id, &Uint(blk), &Uint(tid)],
        )?;
        Ok(rows.first().map(|r| block::UndoChain { depth: r.get(0), bytes: r.get(1) }))
    }

    fn insert_undo(&mut self, id: ArrayId, blk: u64, tid: Tid, undo: &Encoded) -> Result<()> {
        // Sent unbound: the server binds it to the tid the row takes from the head.
        self.c.rows.undo(id, blk, undo, undo.checksum ^ block::tid_mix(tid));
        Ok(())
    }

    fn write_current(&mut self, id: ArrayId, blk: u64, tid: Tid, new: &CurrentWrite<'_>) -> Result<()> {
        let prev = new.prev;
        let len = new.enc.len as usize;
        let in_place = new.enc.compressed.is_none() && prev.is_some_and(|p| p.codec == block::CODEC_RAW);
        let mut windows: Vec<usize> = Vec::new();
        let (segs, datas): (Vec<i32>, Vec<&[u8]>) = if let Some(payload) = &new.enc.compressed {
            (vec![0], vec![payload.as_slice()])
        } else {
            // One row per window: in place, only the windows holding changed pages; else all.
            windows = if in_place {
                new.changed.iter().map(|p| *p as usize / SEGMENT_PAGES).collect()
            } else {
                (0..len.div_ceil(SEGMENT)).collect()
            };
            windows.sort_unstable();
            windows.dedup();
            windows
                .iter()
                .filter(|w| *w * SEGMENT < len)
                .map(|w| ((w * SEGMENT_PAGES) as i32, &new.data[w * SEGMENT..((w + 1) * SEGMENT).min(len)]))
                .filter(|(_, d)| in_place || d.iter().any(|b| *b != 0))
                .unzip()
        };
        // Raw content is checked by its segments' checksums, compressed by the payload's.
        let checksum = new.enc.compressed.is_some().then_some(new.enc.checksum);
        if prev.is_none() {
            // A block without a version has no segment rows (every version with content has a
            // current row; gc drops a current row only with its segments): its rows are
            // streamed, the server storing them while the next blocks are made (appends).
            if !self.c.client.copying() && self.c.before_writes.first().is_some_and(|(sql, _)| *sql == "BEGIN") {
                // The stream's rows belong to the commit's transaction: it starts here, before
                // the commit lock (taken with the first write that needs the tid).
                self.c.before_writes.remove(0);
                self.c.client.batch("commit", "BEGIN")?;
            }
            for (s, d) in segs.iter().zip(&datas) {
                let sum = segment_sum(id, blk, i64::from(*s), d);
                let row: [&(dyn ToSql + Sync); 5] = [&id, &Uint(blk), s, d, &sum];
                self.c.client.copy_row("commit", COPY_SEGMENTS, &SEGMENT_COLUMNS, &row)?;
            }
            return self.put_current(id, blk, tid, new.enc.codec, new.enc.len, checksum);
        }
        // Rows beyond the content, the rows of split windows rewritten whole (those not at the
        // window's start, which the new row replaces), and all of them when not rewriting in
        // place, go first.
        let keep_below: i32 = if in_place { len.div_ceil(block::PAGE) as i32 } else { 0 };
        let windows: Vec<i32> = windows.iter().map(|w| *w as i32).collect();
        self.defer(
            "DELETE FROM outcore_segment WHERE array_id = $1 AND blk = $2
                 AND (seg >= $3 OR (seg % 4 <> 0 AND seg / 4 = ANY($4)))",
            params![id, Uint(blk), keep_below, windows],
        );
        self.put_segments(id, blk, &segs, &datas, !in_place)?;
        self.put_current(id, blk, tid, new.enc.codec, len as u64, checksum)
    }

    fn checks_raw_pages(&self) -> bool {
        true
    }

    fn rewrites_pages(&self, cur: &CurrentRow) -> bool {
        cur.codec == block::CODEC_RAW
    }

    fn load_pages(&mut self, id: ArrayId, blk: u64, cur: &CurrentRow, pages: &[u32], buf: &mut [u8]) -> Result<bool> {
        self.reads.block(id, blk);
        // The pages read zeros unless a row holds them; each row holding one is read whole:
        // `write_pages` rewrites it from these bytes.
        let n = buf.len();
        for p in pages {
            let start = (*p as usize * block::PAGE).min(n);
            buf[start..(start + block::PAGE).min(n)].fill(0);
        }
        let asked: Vec<i32> = pages.iter().map(|p| *p as i32).collect();
        let rows: Vec<SegmentRow> = match self.got.segments.remove(&(id, blk)) {
            Some((prefetched, found)) if asked.iter().all(|p| prefetched.contains(p)) => found,
            _ => {
                let rows = self.c.q(
                    "commit",
                    PAGE_ROWS,
                    &[&vec![id.0 as i64; asked.len()], &vec![blk as i64; asked.len()], &asked],
                )?;
                rows.iter().map(|r| (r.get::<_, i64>(2), r.get::<_, &[u8]>(3).to_vec(), r.get::<_, i64>(4))).collect()
            }
        };
        let mut read = Vec::with_capacity(rows.len());
        for (seg, data, sum) in &rows {
            Segment { seg: *seg, data, sum: *sum }.place(id, blk, cur.tid, cur.len as usize, buf)?;
            read.push((*seg, data.len()));
        }
        self.rows_read.insert((id, blk), read);
        Ok(true)
    }

    fn write_pages(&mut self, id: ArrayId, blk: u64, tid: Tid, w: &PageWrite<'_>) -> Result<()> {
        let PageWrite { changed, old, new, len, .. } = *w;
        let len = len as usize;
        let read = self.rows_read.remove(&(id, blk)).unwrap_or_default();
        for (first, bytes, from_new) in rewritten_rows(&read, changed, len) {
            let src = if from_new { new } else { old };
            let data = &src[bytes.clone()];
            let sum = segment_sum(id, blk, first, data);
            self.c.rows.segment(id, blk, first as i32, data.to_vec(), sum);
        }
        self.put_current(id, blk, tid, block::CODEC_RAW, len as u64, None)
    }

    fn set_head(&mut self, tid: Tid, time_us: i64) -> Result<()> {
        // The head moved on before the first write (`TAKE_TID`, queued by `insert_txn`); the
        // writes still queued go with the check of the reads and COMMIT.
        let _ = (tid, time_us);
        Ok(())
    }
}

impl Store for PgStore {
    fn location(&self) -> &str {
        &self.location
    }

    fn format_version(&self) -> u32 {
        PG_FORMAT_VERSION
    }

    fn head(&self) -> Result<Tid> {
        self.with_conn(|c| Ok(q_head(c, HEAD)?.tid))
    }

    fn gc_horizon(&self) -> Result<Tid> {
        self.with_conn(|c| Ok(q_head(c, HEAD)?.horizon))
    }

    fn arrays(&self, at: Tid) -> Result<Vec<ArrayInfo>> {
        self.with_conn(|c| {
            check_at(c, at)?;
            rows_to_arrays(c.q("list arrays", LIVE_ARRAYS, &[&Uint(at)])?)
        })
    }

    fn array(&self, name: &str, at: Tid) -> Result<Option<ArrayInfo>> {
        self.with_conn(|c| {
            check_at(c, at)?;
            Ok(rows_to_arrays(c.q("read array", ARRAY_BY_NAME, &[&Uint(at), &name])?)?.pop())
        })
    }

    fn array_by_id(&self, id: ArrayId, at: Tid) -> Result<Option<ArrayInfo>> {
        self.with_conn(|c| {
            check_at(c, at)?;
            Ok(rows_to_arrays(c.q("read array", ARRAY_BY_ID, &[&Uint(at), &id])?)?.pop())
        })
    }

    fn load(&self, array: ArrayId, blk: u64, at: Tid, buf: &mut [u8]) -> Result<()> {
        self.with_conn(|c| match q_load(c, array, blk, at, buf) {
            Err(Error::Corrupt { array, blk, tid, detail, .. }) => {
                let name = c
                    .q("read array", ARRAY_BY_ID, &[&Uint(at), &array])
                    .ok()
                    .and_then(|rows| rows_to_arrays(rows).ok())
                    .and_then(|mut v| v.pop())
                    .map_or_else(|| array.to_string(), |a| a.name);
                Err(Error::Corrupt { array, name, blk, tid, detail })
            }
            r => r,
        })
    }

    fn commit(&self, base: Tid, mut commit: Commit) -> Result<Tid> {
        self.check_writable("commit")?;
        let commit_id = crate::types::random_u64() as i64;
        let mut c = self.conn()?;
        let mut tries = 1;
        let mut grouped = self.group.is_some();
        loop {
            // The last try takes the commit lock before it reads: it cannot be made stale.
            let lock_first = tries == COMMIT_TRIES;
            let (r, drop_conn) = match self.commit_once(&mut c, base, &mut commit, commit_id, lock_first, grouped) {
                Try::Done(r, drop_conn) => (r, drop_conn),
                // Its group wrote nothing: again, alone (not counted as a try), on a new
                // connection if the group's leader was this one and lost it.
                Try::Alone => {
                    if c.client.is_broken() {
                        match self.conn() {
                            Ok(fresh) => std::mem::replace(&mut c, fresh).discard(),
                            Err(e) => {
                                c.discard();
                                return Err(Error::CommitNotWritten {
                                    location: self.location.clone(),
                                    reason: format!("its group was lost, and then: {e}"),
                                });
                            }
                        }
                    }
                    grouped = false;
                    continue;
                }
            };
            match r {
                Err(e) if !drop_conn && tries < COMMIT_TRIES && stale(&e) => {
                    tracing::debug!(tries, "what the commit read changed before it took the lock; again: {e}");
                    tries += 1;
                }
                r => {
                    if drop_conn {
                        c.discard();
                    }
                    return r;
                }
            }
        }
    }

    fn changes(&self, after: Tid, upto: Tid) -> Result<Changes> {
        self.with_conn(|c| read::changes(c, after, upto))
    }

    fn history(&self, after: Tid, upto: Tid) -> Result<Vec<TxnInfo>> {
        self.with_conn(|c| read::history(c, after, upto))
    }

    fn advance(&self, old: Tid, mine: Option<Tid>) -> Result<(Snapshot, Option<Changes>)> {
        // One round trip, one snapshot of the server for the head and the changes (after each
        // commit of a busy writer, instead of a head and two `changes`, each with its head).
        let skip = mine.map_or(-1, bound);
        let queries = vec![
            ("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", Vec::new()),
            (HEAD, params![]),
            (ADVANCE_BLOCKS, params![Uint(old), skip]),
            (ADVANCE_ARRAYS, params![Uint(old), skip]),
            ("COMMIT", Vec::new()),
        ];
        let rows = self.with_conn(|c| c.q_many("advance", queries))?;
        let [_, head, blocks, arrays, _] =
            <[Vec<Row>; 5]>::try_from(rows).map_err(|_| Error::Invalid("a pipeline lost a result".into()))?;
        let row = head.first().ok_or_else(|| Error::Invalid("store has no head row".into()))?;
        let (tid, horizon) = (uint(row, 0), uint(row, 1));
        let snapshot = Snapshot::unregistered(tid);
        if old < horizon {
            return Ok((snapshot, None));
        }
        let changes = Changes {
            blocks: blocks.iter().map(|r| (r.get::<_, ArrayId>(0), uint(r, 1))).collect(),
            arrays: arrays.iter().map(|r| r.get::<_, ArrayId>(0)).collect(),
        };
        Ok((snapshot, Some(changes)))
    }

    fn tid_at(&self, time: SystemTime) -> Result<Tid> {
        let us = time_to_us(time);
        self.with_conn(|c| {
            let rows = c.q("tid_at", "SELECT max(tid) FROM outcore_txn WHERE time_us <= $1", &[&us])?;
            Ok(rows.first().and_then(|r| r.get::<_, Option<i64>>(0)).unwrap_or(0) as u64)
        })
    }

    fn gc(&self, keep_after: Tid) -> Result<GcStats> {
        self.check_writable("collect garbage")?;
        self.with_conn(|c| {
            // Deleting much history may rightly take the server long: each wait of gc is
            // bounded by ten times the io timeout (still bounded, still interruptible).
            let usual = c.client.io_timeout();
            c.client.set_io_timeout(usual.saturating_mul(10));
            let r = (|| {
                c.client.batch("begin gc", "BEGIN")?;
                let r = gc_in(c, keep_after);
                match r {
                    Ok(_) => c.client.batch("gc", "COMMIT")?,
                    Err(_) => c.rollback(),
                }
                r
            })();
            c.client.set_io_timeout(usual);
            r
        })
    }

    fn stats(&self) -> Result<StoreStats> {
        self.with_conn(|c| {
            let rows = c.client.query_text(
                "stats",
                "SELECT (SELECT count(*) FROM outcore_undo),
                    (SELECT coalesce(sum(length(data)), 0) FROM outcore_undo)::bigint
                    + (SELECT coalesce(sum(length(data)), 0) FROM outcore_segment)::bigint",
                &[],
            )?;
            let row = rows.first().ok_or_else(|| Error::Invalid("stats query returned no row".into()))?;
            Ok(StoreStats { block_versions: uint(row, 0), stored_bytes: uint(row, 1) })
        })
    }

    fn subscribe(&self) -> Result<Box<dyn Subscription>> {
        let mut conn = self.connect()?;
        conn.client.batch("subscribe", &format!("LISTEN {CHANNEL}"))?;
        let last = q_head(&mut conn, HEAD)?.tid;
        Ok(Box::new(PgListener { client: conn.client, last }))
    }
}

/// The gc statements, inside the transaction [`PgStore::gc`] opened.
fn gc_in(c: &mut PgConn, keep_after: Tid) -> Result<GcStats> {
    let head = q_head(c, "SELECT tid, gc_horizon, time_us FROM outcore_head WHERE id = 1 FOR UPDATE")?;
    if keep_after > head.tid {
        return Err(Error::FutureTid { at: keep_after, head: head.tid });
    }
    let mut stats = GcStats::default();
    if keep_after <= head.horizon {
        return Ok(stats);
    }
    let k = keep_after as i64;
    // Runs a gc statement; returns the rows it deleted, adding the sizes it returns to `bytes`.
    let mut run = |sql: &str, bytes: Option<&mut u64>| -> Result<u64> {
        let rows = c.client.query_text("gc", sql, &[&k])?;
        if let Some(bytes) = bytes {
            *bytes += rows.iter().map(|r| uint(r, 0)).sum::<u64>();
        }
        Ok(rows.len() as u64)
    };
    let deleted_segments = concat!(
        "DELETE FROM outcore_segment WHERE array_id IN (",
        sql::deleted_arrays!(),
        ") RETURNING CAST(length(data) AS BIGINT)"
    );
    stats.block_versions += run(sql::GC_UNDO, Some(&mut stats.bytes))?;
    run(sql::GC_EMPTY, None)?;
    run(deleted_segments, Some(&mut stats.bytes))?;
    run(sql::GC_DELETED_CURRENT, None)?;
    stats.block_versions += run(sql::GC_DELETED_UNDO, Some(&mut stats.bytes))?;
    stats.array_versions = run(sql::GC_ARRAY_VERSIONS, None)?;
    c.client.query_text("gc", "UPDATE outcore_head SET gc_horizon = $1 WHERE id = 1", &[&k])?;
    Ok(stats)
}

/// `LISTEN outcore_commit` on a dedicated connection.
struct PgListener {
    client: PgClient,
    last: Tid,
}

impl Subscription for PgListener {
    fn wait(&mut self, timeout: Duration) -> Result<Option<Tid>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let newest = self.client.notifications(left)?.iter().filter_map(|n| n.payload().parse::<u64>().ok()).max();
            match newest {
                Some(t) if t > self.last => {
                    self.last = t;
                    return Ok(Some(t));
                }
                _ if left.is_zero() => return Ok(None),
                _ => {}
            }
        }
    }
}

impl PgStore {
    /// One try of a commit on `c`: read, take the lock and write (see [`PgTxn`]); the server
    /// refuses it with SQLSTATE `OC001` when something it read changed before it took the lock
    /// (then nothing was written and `commit` holds its writes again). With the result, whether
    /// the connection may be broken (not to be used again).
    fn commit_once(
        &self,
        c: &mut PgConn,
        base: Tid,
        commit: &mut Commit,
        commit_id: i64,
        lock_first: bool,
        grouped: bool,
    ) -> Try {
        let sent = (|| {
            let backend = c.backend()?;
            // A commit that locks first reads in its transaction (sent with the first read,
            // the head); else the reads need none (each sees what is committed, as in one
            // READ COMMITTED transaction) and the transaction starts with the first write.
            if lock_first {
                c.defer("BEGIN", Vec::new());
            }
            let mut txn = PgTxn {
                c: &mut *c,
                commit_id,
                lock_first,
                plan: None,
                got: Prefetched::default(),
                read_at: None,
                reads: ReadSet::default(),
                rows_read: HashMap::new(),
            };
            match commit::apply(&mut txn, base, commit) {
                Ok(tid) => {
                    let at = txn.read_at.map_or(0, |h| h.tid);
                    Ok((backend, tid, txn.reads.params(base, at)))
                }
                Err(e) => {
                    c.rollback();
                    Err(e)
                }
            }
        })();
        let (backend, tid, check) = match sent {
            Ok(v) => v,
            // COMMIT was not sent: nothing can have been written.
            Err(e) if c.client.is_broken() => {
                return Try::Done(
                    Err(match e {
                        Error::Interrupted { .. } => e,
                        e => Error::CommitNotWritten { location: self.location.clone(), reason: e.to_string() },
                    }),
                    true,
                );
            }
            Err(e) => {
                let drop_conn = matches!(e, Error::Backend { .. }) && !stale(&e);
                return Try::Done(Err(e), drop_conn);
            }
        };
        match self.group.as_ref().filter(|_| grouped && !lock_first && c.groupable()) {
            Some(g) => {
                let pending = c.drain_pending();
                self.commit_in_group(g, c, pending, check, commit_id, backend, tid)
            }
            None => self.commit_alone(c, None, check, commit_id, backend, tid),
        }
    }

    /// The end of a commit sent alone: the lock, the head's move, the queued writes (those of
    /// the connection, or `drained` from it already, when no COPY was due), the check of the
    /// reads and COMMIT in one round trip. A statement that fails aborts the transaction
    /// (COMMIT then only ends it): its error is returned, nothing was written.
    fn commit_alone(
        &self,
        c: &mut PgConn,
        drained: Option<Vec<(&'static str, Vec<Param>)>>,
        check: Vec<Param>,
        commit_id: i64,
        backend: (i32, String),
        tid: Tid,
    ) -> Try {
        let end = vec![(CHECK_READS, check), ("COMMIT", Vec::new())];
        let sent = match drained {
            None => c.q_many("commit", end),
            Some(pending) => (|| {
                let items = c.prepared(pending)?;
                let queries = c.prepared(end)?;
                c.client.pipeline("commit", &items, &queries)
            })(),
        };
        match sent {
            Ok(rows) => {
                let given = rows.first().and_then(|r| r.first()).map(|r| uint(r, 0));
                Try::Done(given.ok_or_else(|| Error::Invalid("the commit's check returned no tid".into())), false)
            }
            Err(e) if c.client.is_broken() => Try::Done(self.commit_outcome(commit_id, backend, tid, &e), true),
            // The server answered: the commit failed and nothing was written.
            Err(e) => {
                c.rollback();
                Try::Done(Err(e), false)
            }
        }
    }

    /// The end of a commit sent in a group ([`group`]). With the leader lock free, the commit
    /// leads: it goes with the requests queued meanwhile, or alone if there are none (holding
    /// the lock, so that the commits arriving meanwhile queue and go together next). Else it is
    /// queued with its statements in binary form and sent by whichever process leads (maybe
    /// this one, later). Too big for a slot, or no free slot: alone.
    #[allow(clippy::too_many_arguments)]
    fn commit_in_group(
        &self,
        g: &group::Group,
        c: &mut PgConn,
        pending: Vec<(&'static str, Vec<Param>)>,
        check: Vec<Param>,
        commit_id: i64,
        backend: (i32, String),
        tid: Tid,
    ) -> Try {
        match g.try_lead() {
            Ok(Some(lead)) => {
                let queued = lead.take_queued();
                if queued.is_empty() {
                    let r = self.commit_alone(c, Some(pending), check, commit_id, backend, tid);
                    g.end_lead(lead);
                    return r;
                }
                let (slots, others): (Vec<usize>, Vec<group::Request>) = queued.into_iter().unzip();
                let mut sender = GroupSender { c: &mut *c, lead: &lead, queued: None };
                let (own, outcomes) = sender.send_with(Some((pending, check)), others);
                for (k, s) in slots.iter().enumerate() {
                    lead.answer(*s, outcomes.get(k).unwrap_or(&group::Outcome::Alone));
                }
                g.end_lead(lead);
                return self.grouped_outcome(c, own.unwrap_or(group::Outcome::Alone), commit_id, tid);
            }
            Ok(None) => {}
            Err(e) => tracing::debug!("commit not grouped: {e}"),
        }
        let request = (|| {
            let mut statements = Vec::with_capacity(pending.len());
            for (sql, params) in &pending {
                statements.push((sql.to_string(), encode_params(c, sql, params)?));
            }
            let check = encode_params(c, CHECK_READS, &check)?;
            Ok::<_, Error>(group::Request { commit_id, statements, check })
        })();
        let slot = match &request {
            Ok(r) => g.queue(&r.encode()),
            Err(e) if c.client.is_broken() => {
                return Try::Done(
                    Err(Error::CommitNotWritten { location: self.location.clone(), reason: e.to_string() }),
                    true,
                )
            }
            Err(e) => {
                tracing::debug!("commit not grouped: {e}");
                None
            }
        };
        let Some(slot) = slot else { return self.commit_alone(c, Some(pending), check, commit_id, backend, tid) };
        let outcome = g.wait(slot, &mut QueuedSender { c: &mut *c, commit_id });
        match outcome {
            Ok(o) => self.grouped_outcome(c, o, commit_id, tid),
            // Interrupted before a leader took it: nothing was sent.
            Err(e) => Try::Done(Err(e), c.client.is_broken()),
        }
    }

    /// What a grouped commit's outcome means for it.
    fn grouped_outcome(&self, c: &PgConn, outcome: group::Outcome, commit_id: i64, tid: Tid) -> Try {
        let broken = c.client.is_broken();
        match outcome {
            group::Outcome::Landed(t) => Try::Done(Ok(t), broken),
            group::Outcome::Alone => Try::Alone,
            group::Outcome::Unknown => Try::Done(
                Err(Error::CommitOutcomeUnknown {
                    location: self.location.clone(),
                    commit_id: commit_id.to_string(),
                    reason: "the process sending its group of commits gave no answer in time".into(),
                }),
                broken,
            ),
            group::Outcome::Lost(pid, start) => {
                let lost = Error::Unreachable {
                    location: self.location.clone(),
                    reason: format!("the reply to the group this commit was sent in was lost (server process {pid})"),
                };
                match self.commit_outcome(commit_id, (pid, start), tid, &lost) {
                    // Its leader died or lost its connection before the group landed: this
                    // commit never reached the server, and goes again, alone.
                    Err(Error::CommitNotWritten { .. }) => Try::Alone,
                    r => Try::Done(r, broken),
                }
            }
        }
    }

    /// Whether the commit `commit_id`, sent on a connection served by `backend` that was lost
    /// before its reply, landed: from a new connection, end that server process if it is still
    /// there (so the transaction is over either way), then look the id up. Retries while the
    /// server is unreachable, for at most [`OUTCOME_WAIT`].
    fn commit_outcome(&self, commit_id: i64, backend: (i32, String), tid: Tid, lost: &Error) -> Result<Tid> {
        let deadline = Instant::now() + OUTCOME_WAIT;
        let mut delay = Duration::from_millis(20);
        let last = loop {
            match self.find_commit(commit_id, &backend) {
                Ok(Some(found)) => {
                    tracing::warn!(commit_id, tid = found, "connection lost during commit; the commit landed");
                    return Ok(found);
                }
                Ok(None) => {
                    return Err(Error::CommitNotWritten {
                        location: self.location.clone(),
                        reason: format!("connection lost during commit (tid {tid} was not recorded): {lost}"),
                    })
                }
                Err(e) if e.is_transient() && Instant::now() < deadline => {
                    std::thread::sleep(delay.min(deadline.saturating_duration_since(Instant::now())));
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
                // Interrupted, out of time, or refused for good.
                Err(e) => break e.to_string(),
            }
        };
        Err(Error::CommitOutcomeUnknown {
            location: self.location.clone(),
            commit_id: commit_id.to_string(),
            reason: format!("connection lost during commit ({lost}), then: {last}"),
        })
    }

    /// One try of [`commit_outcome`](Self::commit_outcome): `None` when the commit is known not
    /// to have landed; an error while that cannot be told yet.
    fn find_commit(&self, commit_id: i64, (pid, start): &(i32, String)) -> Result<Option<Tid>> {
        let mut c = self.connect()?;
        let ended = c.client.query_text(
            "find commit outcome",
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE pid = $1 AND backend_start::text = $2",
            &[pid, start],
        )?;
        if ended.first().is_some_and(|r| !r.get::<_, bool>(0)) {
            return Err(Error::Unreachable {
                location: self.location.clone(),
                reason: format!("server process {pid} of the lost commit did not end within 5 s"),
            });
        }
        let rows = c.client.query_text(
            "find commit outcome",
            "SELECT tid FROM outcore_txn WHERE commit_id = $1",
            &[&commit_id],
        )?;
        Ok(rows.first().map(|r| uint(r, 0)))
    }
}

/// What one try of a commit came to.
enum Try {
    /// Its result, and whether the connection may be broken (not to be used again).
    Done(Result<Tid>, bool),
    /// The group it was sent in wrote nothing: make it again, alone.
    Alone,
}

/// `params` of statement `sql` in the server's binary form (for a group's request).
fn encode_params(c: &mut PgConn, sql: &str, params: &[Param]) -> Result<Vec<Option<Vec<u8>>>> {
    let st = c.stmt("commit", sql)?;
    if st.params().len() != params.len() {
        return Err(Error::Invalid(format!("{} parameters for {} placeholders", params.len(), st.params().len())));
    }
    st.params().iter().zip(params).map(|(ty, p)| group::encode_param(p.as_ref(), ty)).collect()
}

/// A leading connection sending a group of commits.
struct GroupSender<'a, 'g> {
    c: &'a mut PgConn,
    lead: &'a group::Lead<'g>,
    /// The commit id of the sender's own queued request, if it leads the group it waits in.
    queued: Option<i64>,
}

/// A commit's own statements (not yet sent) and the parameters of its read check.
type Own = (Vec<(&'static str, Vec<Param>)>, Vec<Param>);

impl GroupSender<'_, '_> {
    /// Sends `own` (the leader's commit, if it is one of the group) and then `others` in one
    /// transaction: the outcome of `own` and of each of `others`.
    fn send_with(
        &mut self,
        own: Option<Own>,
        others: Vec<group::Request>,
    ) -> (Option<group::Outcome>, Vec<group::Outcome>) {
        let n = others.len();
        let has_own = own.is_some();
        match self.send_all(own, others) {
            Ok(mut tids) => {
                let own = has_own.then(|| group::Outcome::Landed(tids.remove(0)));
                (own, tids.into_iter().map(group::Outcome::Landed).collect())
            }
            Err(every) => (has_own.then(|| every.clone()), vec![every; n]),
        }
    }

    /// The tids of the group's commits in order, or the outcome every one of them gets.
    fn send_all(
        &mut self,
        own: Option<Own>,
        others: Vec<group::Request>,
    ) -> std::result::Result<Vec<Tid>, group::Outcome> {
        let c = &mut *self.c;
        // (Failpoints: whether the group holds a commit of another process.)
        let with_others = others.iter().any(|r| Some(r.commit_id) != self.queued);
        // Each member's own `BEGIN` and commit lock are the group's, once.
        let member = |sql: &str| sql != "BEGIN" && sql != TAKE_LOCK;
        let built = (|| {
            let backend = c.backend()?;
            let mut stmts = vec![
                (c.stmt("commit group", "BEGIN")?, Vec::new()),
                (c.stmt("commit group", TAKE_LOCK)?, params![COMMIT_LOCK]),
            ];
            let mut checks = Vec::with_capacity(others.len() + 1);
            if let Some((pending, check)) = own {
                for (sql, ps) in pending.into_iter().filter(|(sql, _)| member(sql)) {
                    stmts.push((c.stmt("commit group", sql)?, ps));
                }
                checks.push(stmts.len());
                stmts.push((c.stmt("commit group", CHECK_READS)?, check));
            }
            for r in others {
                for (sql, ps) in r.statements.into_iter().filter(|(sql, _)| member(sql)) {
                    let raw = ps.into_iter().map(|p| Box::new(group::RawParam(p)) as Param).collect();
                    stmts.push((c.stmt("commit group", &sql)?, raw));
                }
                checks.push(stmts.len());
                let raw = r.check.into_iter().map(|p| Box::new(group::RawParam(p)) as Param).collect();
                stmts.push((c.stmt("commit group", CHECK_READS)?, raw));
            }
            stmts.push((c.stmt("commit group", "COMMIT")?, Vec::new()));
            Ok::<_, Error>((backend, stmts, checks))
        })();
        // Nothing was sent: every member commits alone.
        let Ok((backend, stmts, checks)) = built else { return Err(group::Outcome::Alone) };
        self.lead.set_sender(backend.0, &backend.1);
        if with_others {
            failpoint("group-leader-before-send");
        }
        match c.client.pipeline_all("commit group", &stmts) {
            Ok(rows) => checks
                .iter()
                .map(|i| rows.get(*i).and_then(|r| r.first()).map(|r| uint(r, 0)))
                .collect::<Option<Vec<Tid>>>()
                .inspect(|_| {
                    if with_others {
                        failpoint("group-leader-after-reply");
                    }
                })
                .ok_or(group::Outcome::Lost(backend.0, backend.1)),
            Err(_) if c.client.is_broken() => Err(group::Outcome::Lost(backend.0, backend.1)),
            Err(e) => {
                tracing::debug!(members = checks.len(), "a group of commits wrote nothing; each goes alone: {e}");
                c.rollback();
                Err(group::Outcome::Alone)
            }
        }
    }
}

/// A queued commit's connection, leading the groups it finds when the lock is free.
struct QueuedSender<'a> {
    c: &'a mut PgConn,
    /// The id of the commit it queued.
    commit_id: i64,
}

impl group::Leader for QueuedSender<'_> {
    fn send(&mut self, lead: &group::Lead<'_>, others: Vec<group::Request>) -> Vec<group::Outcome> {
        GroupSender { c: &mut *self.c, lead, queued: Some(self.commit_id) }.send_with(None, others).1
    }
}

/// Tries of one commit: all but the last read before they take the commit lock and are made
/// again when what they read changed meanwhile (rare: another commit must have changed a block
/// or an array this one read, between its reads and its turn at the lock); the last one takes
/// the lock first.
const COMMIT_TRIES: u32 = 3;

/// Whether `e` says that what a commit read changed before it took the commit lock: its check
/// failed (`OC001`), or a new block's rows met another commit's new rows for the same block
/// (`23505`: the two wrote a block neither saw; the next try finds the conflict), or two such
/// commits waited on each other (`40P01`).
fn stale(e: &Error) -> bool {
    let Error::Backend { source, .. } = e else { return false };
    let Some(db) = source.downcast_ref::<tokio_postgres::Error>().and_then(|e| e.as_db_error()) else { return false };
    matches!(db.code().code(), "OC001" | "23505" | "40P01")
}

/// How long a commit whose connection was lost tries to find out whether it landed.
const OUTCOME_WAIT: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::rewritten_rows;

    const P: usize = crate::block::PAGE;

    #[test]
    fn a_small_write_splits_the_row_it_lands_in_and_keeps_its_key() {
        // A window's row of 4 pages, page 2 changed: pages 0-1 as they were (same key: the old
        // row is replaced), page 2 new, page 3 as it was.
        let rows = rewritten_rows(&[(8, 4 * P)], &[10], 16 * P);
        assert_eq!(rows, vec![(8, 8 * P..10 * P, false), (10, 10 * P..11 * P, true), (11, 11 * P..12 * P, false)]);
        // Its first and last pages changed: the middle run keeps its bytes, each changed page is
        // a row.
        let rows = rewritten_rows(&[(0, 4 * P)], &[3, 0], 16 * P);
        assert_eq!(rows, vec![(0, 0..P, true), (1, P..3 * P, false), (3, 3 * P..4 * P, true)]);
    }

    #[test]
    fn a_page_row_is_rewritten_alone_and_a_page_in_no_row_gets_one() {
        // One-page rows: only the changed one; a changed page no row held (it read zeros) gets a
        // row of its own; rows holding no changed page are left alone.
        let rows = rewritten_rows(&[(5, P), (6, P)], &[6, 7], 16 * P);
        assert_eq!(rows, vec![(6, 6 * P..7 * P, true), (7, 7 * P..8 * P, true)]);
    }

    #[test]
    fn neighbouring_changed_pages_are_one_row_within_their_window() {
        // Pages 1 and 2 of a window's row: one row of both.
        let rows = rewritten_rows(&[(0, 4 * P)], &[2, 1], 16 * P);
        assert_eq!(rows, vec![(0, 0..P, false), (1, P..3 * P, true), (3, 3 * P..4 * P, false)]);
        // Pages 4 to 8 that no row held: a row for the window of 4-7, one for page 8.
        let rows = rewritten_rows(&[], &[8, 4, 5, 6, 7], 16 * P);
        assert_eq!(rows, vec![(4, 4 * P..8 * P, true), (8, 8 * P..9 * P, true)]);
    }

    #[test]
    fn rows_are_cut_at_the_content_end() {
        // The content ends 100 bytes into page 1: the old row's run ends where it did, the
        // changed page's row at the new end.
        let rows = rewritten_rows(&[(0, P + 100)], &[0], P + 100);
        assert_eq!(rows, vec![(0, 0..P, true), (1, P..P + 100, false)]);
        let rows = rewritten_rows(&[(0, P + 100)], &[1], 2 * P - 8);
        assert_eq!(rows, vec![(0, 0..P, false), (1, P..2 * P - 8, true)]);
        // A changed page wholly past the end (zeros) is an empty row, replacing what it held.
        let rows = rewritten_rows(&[(2, P)], &[2], 2 * P);
        assert_eq!(rows, vec![(2, 2 * P..2 * P, true)]);
    }
}
