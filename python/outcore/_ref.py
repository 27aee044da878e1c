"""`ArrayRef` (pass array views by reference) and `structured` (view the minor axis as one
structured element)."""

from __future__ import annotations

import time
from typing import Any, NamedTuple, Optional

import numpy as np

from outcore._outcore import Mapping


class ArrayRoot(NamedTuple):
    """The persistent array an `ArrayRef` points into: database location, array name (when
    the reference was made) and stable id (what `deref` finds it by)."""

    location: str
    name: str
    id: int


def _extent(a: np.ndarray) -> tuple:
    """Byte offsets, relative to the first element, of the lowest byte and one past the highest
    byte of `a`."""
    if a.size == 0:
        return 0, 0
    lo = sum((n - 1) * s for n, s in zip(a.shape, a.strides) if s < 0)
    hi = sum((n - 1) * s for n, s in zip(a.shape, a.strides) if s > 0) + a.itemsize
    return lo, hi


def _addr(a: np.ndarray) -> int:
    return int(a.__array_interface__["data"][0])


class ArrayRef:
    """A reference to an ndarray view (of an outcore array or of a plain ndarray): its root
    object, the byte range `[lo, hi)` of the root it covers, and how to re-create it
    (`deref()`), so that views can be passed between processes without copying their data.

    Attributes: `root` (an `ArrayRoot` for outcore arrays, else the ndarray owning the
    memory), `lo`, `hi`, `z` (offset of the view's first element from `lo`), `shape`,
    `strides`, `dtype`."""

    def __init__(self, a: Any) -> None:
        a = np.asarray(a)
        chain = [a]
        while isinstance(chain[-1], np.ndarray) and chain[-1].base is not None:
            chain.append(chain[-1].base)
        owner = chain[-1]
        if isinstance(owner, Mapping):
            self.root: Any = ArrayRoot(owner.location, owner.array_name, owner.array_id)
            base = owner.address - owner.offset  # address of the array's byte 0
        else:
            root = owner if isinstance(owner, np.ndarray) else chain[-2]
            self.root = root
            base = _addr(root) + _extent(root)[0]
        lo, hi = _extent(a)
        self.lo = _addr(a) + lo - base
        self.hi = _addr(a) + hi - base
        self.z = -lo
        self.shape = a.shape
        self.strides = a.strides
        self.dtype = a.dtype

    def deref(self, conn: Optional[Any] = None) -> np.ndarray:
        """The referenced view. For an outcore array it is read through `conn` (default: a
        new connection to the array's database, reading the newest snapshot), found by its id,
        so also after a rename (`outcore.NoSuchArrayError`, a `KeyError`, once deleted)."""
        if isinstance(self.root, ArrayRoot):
            if conn is None:
                conn = _connection(self.root.location)
            whole = np.asarray(conn.open_by_id(self.root.id))
        else:
            whole = self.root
        flat = whole.reshape(-1, order="A").view(np.uint8) if whole.size else np.zeros(0, np.uint8)
        return np.ndarray(self.shape, self.dtype, buffer=flat, offset=self.lo + self.z, strides=self.strides)

    def __reduce__(self) -> tuple:
        return (_rebuild, (self.root, self.lo, self.hi, self.z, self.shape, self.strides, self.dtype))

    def __repr__(self) -> str:
        return f"<outcore.ArrayRef {self.root if isinstance(self.root, ArrayRoot) else 'ndarray'} [{self.lo}, {self.hi})>"


def _rebuild(root: Any, lo: int, hi: int, z: int, shape: tuple, strides: tuple, dtype: Any) -> ArrayRef:
    ref = ArrayRef.__new__(ArrayRef)
    ref.root, ref.lo, ref.hi, ref.z, ref.shape, ref.strides, ref.dtype = root, lo, hi, z, shape, strides, dtype
    return ref


_connections: dict = {}


def _connection(location: str, read_only: bool = False) -> Any:
    """This process's connection (no transaction manager) to `location`, moved to the newest
    snapshot; cached per process (a forked child makes its own)."""
    import os

    import outcore

    key = (location, read_only, os.getpid())
    conn = _connections.get(key)
    if conn is None or conn.closed:
        db = outcore.open(location, mode="r" if read_only else "a")
        conn = _connections[key] = db.connect(transaction_manager=False)
    else:
        try:
            conn.sync()
        except outcore.UncommittedError:
            pass  # changes of an earlier unpickled array not committed: keep them
    return conn


def _array_by_ref(location: str, name: str, id: int, pid: Optional[int] = None, read_only: bool = False) -> Any:
    """Unpickles an `outcore.Array`: the array with id `id` of the database at `location`
    (named `name` when pickled; found also after a rename), read through a connection of this
    process to the newest snapshot.

    In the process that pickled it, that is all (`A[idx] = v` is then a change of that
    connection, which nothing commits). In another process (dask's processes scheduler, a
    `ProcessPoolExecutor`, `multiprocessing`), the array is a `WorkerArray`: every
    `A[idx] = v` commits at once through this process's own connection (retrying commit
    conflicts with other workers), so `da.store(x, A)` stores exactly `x`."""
    import os

    conn = _connection(location, read_only)
    arr = conn.open_by_id(id)
    if pid is None or pid == os.getpid() or read_only:
        return arr
    return WorkerArray(arr, conn)


class WorkerArray:
    """An `outcore.Array` unpickled in another process: reads as the array; `A[idx] = v`
    commits at once (see `_array_by_ref`). Other attributes are the array's."""

    def __init__(self, array: Any, conn: Any) -> None:
        self._array = array
        self._conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._array, name)

    def __getitem__(self, idx: Any) -> Any:
        return self._array[idx]

    def __setitem__(self, idx: Any, value: Any) -> None:
        import outcore

        conn = self._conn
        for attempt in range(1000):
            try:
                self._array[idx] = value
                conn.commit(note="outcore.WorkerArray: A[idx] = v")
                return
            except outcore.ConflictError:
                conn.abort()  # a concurrent commit wrote the same block: write again on top
                time.sleep(min(0.001 * attempt, 0.05))
        raise outcore.ConflictError(f"array '{self._array.name}': 1000 commit conflicts in a row")

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self._array.__array__(dtype=dtype, copy=copy)

    def __len__(self) -> int:
        return len(self._array)

    def __iter__(self) -> Any:
        return iter(self._array)

    def __reduce__(self) -> Any:
        return self._array.__reduce__()

    def __repr__(self) -> str:
        return f"<outcore.WorkerArray of {self._array!r}>"


def structured(arr: Any, dtype: Any) -> np.ndarray:
    """A view of `arr` whose minor (contiguous) axis is read as one element of the structured
    `dtype` (its item size must be the byte length of that axis): the last axis of a C-order
    array, the first of an F-order one. No copy."""
    a = np.asarray(arr)
    dtype = np.dtype(dtype)
    if a.ndim == 0:
        raise ValueError("structured() needs an array with at least one axis")
    axis = a.ndim - 1
    if a.strides[axis] != a.itemsize and a.strides[0] == a.itemsize:
        axis = 0
    if a.strides[axis] != a.itemsize:
        raise ValueError(f"array of strides {a.strides} has no contiguous minor axis")
    if a.shape[axis] * a.itemsize != dtype.itemsize:
        raise ValueError(
            f"dtype {dtype} has {dtype.itemsize}-byte items; the minor axis (axis {axis}) has "
            f"{a.shape[axis]} items of {a.itemsize} bytes"
        )
    return np.moveaxis(a, axis, -1).view(dtype)[..., 0]
