//! `Db` and `open()`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use outcore::{Codec, Db, DbOptions, OpenMode};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyList};

use crate::connection::PyConnection;
use crate::errors::PyResultExt;

/// Parses a compression name: `None`/`"none"`, `"lz4"`, `"zstd"` or `"zstd:LEVEL"`.
pub(crate) fn parse_codec(s: Option<&str>) -> PyResult<Codec> {
    let bad = || {
        let msg = format!("unknown compression {s:?}: use None, 'lz4', 'zstd' or 'zstd:LEVEL'");
        Python::attach(|py| crate::errors::Class::InvalidArgumentError.err(py, msg))
    };
    match s {
        None | Some("none") => Ok(Codec::None),
        Some("lz4") => Ok(Codec::Lz4),
        Some("zstd") => Ok(Codec::Zstd { level: 3 }),
        Some(s) => match s.strip_prefix("zstd:").map(str::parse::<i32>) {
            Some(Ok(level)) if (1..=22).contains(&level) => Ok(Codec::Zstd { level }),
            _ => Err(bad()),
        },
    }
}

/// The exact instant of a `datetime` (naive ones are local time), to the microsecond.
fn system_time(at: &Bound<'_, PyAny>) -> PyResult<SystemTime> {
    let py = at.py();
    let dt = py.import("datetime")?;
    let utc = dt.getattr("timezone")?.getattr("utc")?;
    let epoch = dt.getattr("datetime")?.call1((1970, 1, 1, 0, 0, 0, 0, &utc))?;
    let kw = PyDict::new(py);
    kw.set_item("microseconds", 1)?;
    let micro = dt.getattr("timedelta")?.call((), Some(&kw))?;
    let us: i64 = at.call_method1("astimezone", (&utc,))?.sub(&epoch)?.floor_div(&micro)?.extract()?;
    let us =
        u64::try_from(us).map_err(|_| PyValueError::new_err(format!("time {us} us since the epoch is before 1970")))?;
    Ok(UNIX_EPOCH + Duration::from_micros(us))
}

/// An open database: a versioned store plus the page cache of its arrays.
#[pyclass(frozen, name = "Db", module = "outcore._outcore")]
pub(crate) struct PyDb {
    db: Db,
}

/// Opens the database at `url`: a file path (SQLite) or a `postgresql://` URL. `mode` is
/// h5py's and zarr's: `"r"` (must exist, read-only), `"r+"` (must exist), `"a"` (created if
/// missing, the default), `"w"` (created, or emptied), `"w-"`/`"x"` (created, fails if it
/// exists). `cache` is the page-cache budget in bytes (default: the process-wide cache),
/// `blksize` the default block size of new arrays, `compression` that of their blocks.
/// (`outcore.open` wraps this, adding paths, `~` and sizes such as `"1GiB"`.)
#[pyfunction]
#[pyo3(signature = (url, cache=None, blksize=None, compression=None, mode="a"))]
fn open(
    py: Python<'_>,
    url: &str,
    cache: Option<u64>,
    blksize: Option<u64>,
    compression: Option<&str>,
    mode: &str,
) -> PyResult<PyDb> {
    let mode = OpenMode::parse(mode).py(py)?;
    let mut opts = DbOptions::default().codec(parse_codec(compression)?).mode(mode);
    if let Some(c) = cache {
        opts = opts.cache_budget(c);
    }
    if let Some(b) = blksize {
        opts = opts.blksize(b);
    }
    let db = py.detach(|| Db::open(url, opts)).py(py)?;
    if let Some(w) = db.engine_warning() {
        let warn = py.import("warnings")?.getattr("warn")?;
        warn.call1((w, py.get_type::<pyo3::exceptions::PyRuntimeWarning>()))?;
    }
    Ok(PyDb { db })
}

#[pymethods]
impl PyDb {
    /// A connection to the newest snapshot (`at=None`: read-write unless the database is
    /// read-only) or, with `at` (a tid or a datetime), a read-only connection to that
    /// historical snapshot. `outcore.Db.connect` wraps it and joins it to a transaction
    /// manager.
    #[pyo3(signature = (at=None))]
    fn connect(&self, py: Python<'_>, at: Option<&Bound<'_, PyAny>>) -> PyResult<PyConnection> {
        let core = match at {
            None => py.detach(|| self.db.connect()).py(py)?,
            Some(at) if at.is_instance_of::<PyInt>() => {
                let tid: u64 = at.extract()?;
                py.detach(|| self.db.connect_at(tid)).py(py)?
            }
            Some(at) if at.hasattr("astimezone")? => {
                let time = system_time(at)?;
                py.detach(|| self.db.connect_at_time(time)).py(py)?
            }
            Some(at) => {
                return Err(PyTypeError::new_err(format!(
                    "at must be a tid (int) or a datetime, not {}",
                    at.get_type().name()?
                )))
            }
        };
        Ok(PyConnection::new(core))
    }

    /// Committed transactions, oldest first: dicts with `tid`, `time` (an aware datetime),
    /// `user`, `description` and `extension`.
    #[pyo3(signature = (after=0, upto=None))]
    fn history<'py>(&self, py: Python<'py>, after: u64, upto: Option<u64>) -> PyResult<Bound<'py, PyList>> {
        let store = self.db.store();
        let txns = py.detach(|| -> outcore::Result<_> {
            let upto = match upto {
                Some(u) => u,
                None => store.head()?,
            };
            Ok(store.history(after, upto)?)
        });
        let txns = txns.py(py)?;
        let dt = py.import("datetime")?;
        let utc = dt.getattr("timezone")?.getattr("utc")?;
        let epoch = dt.getattr("datetime")?.call1((1970, 1, 1, 0, 0, 0, 0, &utc))?;
        let timedelta = dt.getattr("timedelta")?;
        let loads = py.import("json")?.getattr("loads")?;
        let out = PyList::empty(py);
        for t in txns {
            let d = PyDict::new(py);
            d.set_item("tid", t.tid)?;
            let kw = PyDict::new(py);
            kw.set_item("microseconds", t.time_us)?;
            d.set_item("time", epoch.add(timedelta.call((), Some(&kw))?)?)?;
            d.set_item("user", t.user)?;
            d.set_item("description", t.description)?;
            d.set_item("extension", loads.call1((t.extension.to_string(),))?)?;
            out.append(d)?;
        }
        Ok(out)
    }

    /// Verify every stored block of every live array against its checksums (mapped arrays are
    /// read straight from the page cache, where nothing can be verified on access: this is the
    /// sweep that does). Returns a dict (`tid`, `arrays`, `blocks`, `bytes`); raises
    /// `outcore.CorruptError` listing every failure if any block fails. `progress`, if given, is
    /// called with (blocks done, blocks in all).
    #[pyo3(signature = (progress=None))]
    fn check<'py>(&self, py: Python<'py>, progress: Option<Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyDict>> {
        let db = self.db.clone();
        let report = match &progress {
            None => py.detach(|| db.check(|_| {})).py(py)?,
            Some(cb) => {
                let mut failed = None;
                let r = db.check(|p| {
                    if failed.is_none() {
                        if let Err(e) = cb.call1((p.done, p.total)) {
                            failed = Some(e);
                        }
                    }
                });
                if let Some(e) = failed {
                    return Err(e);
                }
                r.py(py)?
            }
        };
        if !report.ok() {
            let lines: Vec<String> =
                report.errors.iter().map(|(name, blk, e)| format!("array '{name}' block {blk}: {e}")).collect();
            let msg = format!(
                "{} of {} blocks failed their check:\n{}",
                report.errors.len(),
                report.blocks,
                lines.join("\n")
            );
            return Err(crate::errors::Class::CorruptError.err(py, msg));
        }
        let d = PyDict::new(py);
        d.set_item("tid", report.tid)?;
        d.set_item("arrays", report.arrays)?;
        d.set_item("blocks", report.blocks)?;
        d.set_item("bytes", report.bytes)?;
        Ok(d)
    }

    /// Remove history no snapshot at or after `keep_after` (default: the newest tid) needs.
    /// Returns a dict of what was freed (`block_versions`, `array_versions`, `bytes`).
    #[pyo3(signature = (keep_after=None))]
    fn gc<'py>(&self, py: Python<'py>, keep_after: Option<u64>) -> PyResult<Bound<'py, PyDict>> {
        let st = py.detach(|| self.db.gc(keep_after)).py(py)?;
        let d = PyDict::new(py);
        d.set_item("block_versions", st.block_versions)?;
        d.set_item("array_versions", st.array_versions)?;
        d.set_item("bytes", st.bytes)?;
        Ok(d)
    }

    /// Closes the database: every connection made from it is closed (uncommitted changes
    /// discarded; their array handles then raise `outcore.ClosedError`), and `connect()`
    /// raises `outcore.ClosedError`. Views (ndarrays) taken before stay readable, showing the
    /// snapshot their connection read. Idempotent; `with outcore.open(...) as db:` calls it.
    fn close(&self, py: Python<'_>) {
        py.detach(|| self.db.close());
    }

    /// True once `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.db.is_closed()
    }

    /// True if the database was opened read-only (`mode="r"`).
    #[getter]
    fn read_only(&self) -> bool {
        self.db.is_read_only()
    }

    /// The newest committed tid.
    #[getter]
    fn head(&self, py: Python<'_>) -> PyResult<u64> {
        py.detach(|| self.db.head()).py(py)
    }

    /// Where the database is (path or redacted URL).
    #[getter]
    fn location(&self) -> String {
        self.db.store().location().to_string()
    }

    fn __repr__(&self) -> String {
        let state = if self.db.is_closed() {
            " (closed)"
        } else if self.db.is_read_only() {
            " (read-only)"
        } else {
            ""
        };
        format!("<outcore.Db {}{state}>", self.db.store().location())
    }
}

/// Adds `open` and `Db` to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(open, m)?)?;
    m.add_class::<PyDb>()
}
