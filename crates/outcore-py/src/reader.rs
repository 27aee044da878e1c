//! `ArrayReader`: byte ranges of a stored array read straight from the store (`Store::load`,
//! one block at a time), for the `outcore` command's zarr and HDF5 export. Nothing is mapped,
//! so memory stays at the range asked for, whatever the array's size; the store must exist
//! (opened like the command's inspection commands: a missing path is an error, never created).

use outcore::store::{ArrayInfo, Order, Snapshot, Store};
use parking_lot::Mutex;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::sync::Arc;

/// A snapshot of one stored array, read by byte range.
#[pyclass(name = "ArrayReader", module = "outcore._outcore", frozen)]
pub(crate) struct ArrayReader {
    store: Arc<dyn Store>,
    snapshot: Mutex<Option<Snapshot>>,
    info: ArrayInfo,
    tid: u64,
}

/// Open array `name` of the existing store at `location` as of `at` (default: the newest tid).
#[pyfunction]
#[pyo3(signature = (location, name, at=None))]
pub(crate) fn open_array_reader(
    py: Python<'_>,
    location: String,
    name: String,
    at: Option<u64>,
) -> PyResult<ArrayReader> {
    let r = py.detach(move || -> Result<ArrayReader, (bool, String)> {
        let store = outcore_cli::open_existing(&location).map_err(|e| (false, format!("{e:#}")))?;
        let snap = store.snapshot(at).map_err(|e| (false, e.to_string()))?;
        let tid = snap.tid();
        let info = match store.array(&name, tid).map_err(|e| (false, e.to_string()))? {
            Some(info) => info,
            None => return Err((true, format!("no array '{name}' at tid {tid}"))),
        };
        Ok(ArrayReader { store, snapshot: Mutex::new(Some(snap)), info, tid })
    });
    r.map_err(|(missing, msg)| if missing { PyValueError::new_err(msg) } else { PyOSError::new_err(msg) })
}

#[pymethods]
impl ArrayReader {
    /// The dtype descr (as stored).
    #[getter]
    fn dtype(&self) -> String {
        self.info.meta.dtype.clone()
    }

    /// The shape.
    #[getter]
    fn shape(&self) -> Vec<u64> {
        self.info.meta.shape.clone()
    }

    /// "C" or "F".
    #[getter]
    fn order(&self) -> &'static str {
        if self.info.meta.order == Order::F {
            "F"
        } else {
            "C"
        }
    }

    /// Bytes of the array.
    #[getter]
    fn nbytes(&self) -> u64 {
        self.info.meta.nbytes
    }

    /// The block size.
    #[getter]
    fn blksize(&self) -> u64 {
        self.info.meta.blksize
    }

    /// The snapshot read.
    #[getter]
    fn tid(&self) -> u64 {
        self.tid
    }

    /// Bytes `[start, stop)` of the array (`stop` clipped to its size).
    fn read<'py>(&self, py: Python<'py>, start: u64, stop: u64) -> PyResult<Bound<'py, PyBytes>> {
        let meta = &self.info.meta;
        let stop = stop.min(meta.nbytes);
        let start = start.min(stop);
        let len = usize::try_from(stop - start).map_err(|_| PyValueError::new_err("range too large"))?;
        let bs = meta.blksize;
        PyBytes::new_with(py, len, |out| {
            py.detach(|| -> Result<(), outcore::store::Error> {
                let mut buf = vec![0u8; bs as usize];
                let mut pos = start;
                while pos < stop {
                    let blk = pos / bs;
                    self.store.load(self.info.id, blk, self.tid, &mut buf)?;
                    let from = (pos - blk * bs) as usize;
                    let n = ((blk + 1) * bs).min(stop) - pos;
                    let at = (pos - start) as usize;
                    out[at..at + n as usize].copy_from_slice(&buf[from..from + n as usize]);
                    pos += n;
                }
                Ok(())
            })
            .map_err(|e| PyOSError::new_err(e.to_string()))
        })
    }

    /// Let the snapshot go (also when the reader is garbage collected).
    fn close(&self) {
        self.snapshot.lock().take();
    }
}
