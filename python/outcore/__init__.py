"""outcore: out-of-core, persistent, transactional N-dimensional NumPy arrays.

    import numpy as np, outcore, transaction

    db = outcore.open("data.outcore")            # SQLite file, or a postgresql:// URL
    conn = db.connect()                            # joined to the `transaction` package
    A = conn.root.create("A", (1000, 3), np.float64)
    A[:, 0] = np.arange(1000)                      # A[...] is a real ndarray view
    A.append(np.ones((10, 3)))
    A.attrs["units"] = "m"
    transaction.commit()

    with outcore.open("data.outcore", mode="r") as db:   # read-only views
        print(db.connect().root["A"][:5])
"""

from outcore import _errors, _log  # noqa: F401  (_log: Rust log records to `logging`)
from outcore._errors import (
    AlreadyExistsError,
    ArrayGoneError,
    ClosedError,
    CommitNotWrittenError,
    ConflictError,
    CorruptError,
    DtypeError,
    Error,
    InvalidArgumentError,
    NeedsAbortError,
    NoSuchArrayError,
    NotFoundError,
    OutOfRangeError,
    PagerError,
    ReadOnlyError,
    ShapeError,
    SnapshotError,
    StaleError,
    StoreError,
    StoreExistsError,
    UncommittedError,
)
from outcore._attrs import Attributes
from outcore._db import Connection, Db
from outcore._group import Group
from outcore._open import open, parse_size
from outcore._outcore import Array, __version__
from outcore._ram import RAMArray
from outcore._ref import ArrayRef, ArrayRoot, WorkerArray, structured
from outcore._wendelin import import_wendelin  # needs the `outcore[wendelin]` extra when called

Root = Group  # `conn.root` is the root group

__all__ = [
    "__version__",
    "open",
    "Db",
    "Connection",
    "Root",
    "Group",
    "Attributes",
    "Array",
    "WorkerArray",
    "parse_size",
    "RAMArray",
    "ArrayRef",
    "ArrayRoot",
    "structured",
    "import_wendelin",
]
__all__ += _errors.__all__
