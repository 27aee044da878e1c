"""outcore: out-of-core, persistent, transactional N-dimensional NumPy arrays.

    import numpy as np, outcore, transaction

    db = outcore.open("data.outcore")            # SQLite file, or a postgresql:// URL
    conn = db.connect()                            # joined to the `transaction` package
    A = conn.root.create("A", (1000, 3), np.float64)
    A[:, 0] = np.arange(1000)                      # A[...] is a real ndarray view
    A.append(np.ones((10, 3)))
    transaction.commit()
"""

from outcore import _errors, _log  # noqa: F401  (_log: Rust log records to `logging`)
from outcore._errors import (
    AlreadyExistsError,
    ArrayGoneError,
    ClosedError,
    ConflictError,
    CorruptError,
    DtypeError,
    Error,
    InvalidArgumentError,
    NeedsAbortError,
    NoSuchArrayError,
    OutOfRangeError,
    PagerError,
    ReadOnlyError,
    ShapeError,
    SnapshotError,
    StaleError,
    StoreError,
    UncommittedError,
)
from outcore._outcore import Array, Connection, Db, Root, __version__, open
from outcore._ram import RAMArray
from outcore._ref import ArrayRef, ArrayRoot, structured

__all__ = [
    "__version__",
    "open",
    "Db",
    "Connection",
    "Root",
    "Array",
    "RAMArray",
    "ArrayRef",
    "ArrayRoot",
    "structured",
]
__all__ += _errors.__all__
