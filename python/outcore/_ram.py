"""`RAMArray`: the API of an outcore array, in memory only (temporaries and tests).

The elements live in a memfd (an anonymous in-memory file): every view is a shared mapping of
it, so, as with persistent arrays, views alias each other, `resize` is O(1) (metadata and file
size) and old views stay valid and coherent with new ones. After a shrink the cut bytes read as
zeros when the array grows again.
"""

from __future__ import annotations

import mmap
import os
import uuid
from typing import Any, Iterator, Literal, Optional

import numpy as np

from outcore._index import appended_shape, check_basic, check_dtype, check_size, major_axis, parse_shape


class RAMArray:
    """An N-dimensional array in RAM with the API of `outcore.Array`."""

    def __init__(self, shape: Any, dtype: Any, order: str = "C") -> None:
        if order not in ("C", "F"):
            raise ValueError(f"order must be 'C' or 'F', not {order!r}")
        self._dtype = check_dtype(dtype)
        self._order: Literal["C", "F"] = "C" if order == "C" else "F"
        self._shape = parse_shape(shape)
        self._fd = os.memfd_create("outcore-ram", os.MFD_CLOEXEC)
        self._filesize = 0  # bytes of the memfd, never decreasing
        self._exposed = 0  # bytes readable without zeroing first (the array's size)
        self._full: Optional[np.ndarray] = None
        self._set_nbytes(self._nbytes(self._shape))

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)  # mappings of it stay valid

    def _nbytes(self, shape: tuple) -> int:
        check_size(list(shape), self._dtype.itemsize)  # MemoryError beyond the address space
        n = self._dtype.itemsize
        for d in shape:
            n *= d
        return n

    def _set_nbytes(self, n: int) -> None:
        if n > self._exposed:
            # bytes cut by an earlier shrink read as zeros again
            stale_end = min(n, self._filesize)
            if stale_end > self._exposed:
                self._zero(self._exposed, stale_end - self._exposed)
            if n > self._filesize:
                os.ftruncate(self._fd, n)
                self._filesize = n
        self._exposed = n

    def _zero(self, start: int, length: int) -> None:
        chunk = bytes(1 << 20)
        end = start + length
        while start < end:
            start += os.pwrite(self._fd, chunk[: min(len(chunk), end - start)], start)

    def _whole(self) -> np.ndarray:
        full = self._full
        if full is not None and full.shape == self._shape:
            return full
        n = self._nbytes(self._shape)
        if n == 0:
            full = np.zeros(self._shape, self._dtype, order=self._order)
        else:
            try:
                mm = mmap.mmap(self._fd, n)
            except OSError as e:
                raise MemoryError(f"an array of {n} bytes does not fit the address space: {e}") from e
            full = np.ndarray(self._shape, self._dtype, buffer=mm, order=self._order)
        self._full = full
        return full

    # attributes

    shape = property(lambda self: self._shape, doc="Shape.")
    dtype = property(lambda self: self._dtype, doc="NumPy dtype.")
    ndim = property(lambda self: len(self._shape), doc="Number of dimensions.")
    itemsize = property(lambda self: self._dtype.itemsize, doc="Bytes per element.")
    nbytes = property(lambda self: self._nbytes(self._shape), doc="Size in bytes.")
    order = property(lambda self: self._order, doc="Memory layout: 'C' or 'F'.")

    @property
    def size(self) -> int:
        """Number of elements."""
        return int(np.prod(self._shape, dtype=object))

    @property
    def strides(self) -> tuple:
        """Byte strides (plain C or F layout)."""
        strides, acc = [0] * len(self._shape), self._dtype.itemsize
        axes = range(len(self._shape) - 1, -1, -1) if self._order == "C" else range(len(self._shape))
        for i in axes:
            strides[i] = acc
            acc *= self._shape[i]
        return tuple(strides)

    def __len__(self) -> int:
        if not self._shape:
            raise TypeError("len() of a 0-dimensional array")
        return self._shape[0]  # as len(np.asarray(A)), also for F order

    # data

    def __getitem__(self, idx: Any) -> Any:
        if type(idx) is not int:  # an int needs no check
            check_basic(idx)
        return self._whole()[idx]

    def __setitem__(self, idx: Any, value: Any) -> None:
        if type(idx) is not int:
            check_basic(idx)
        self._whole()[idx] = value

    def __iter__(self) -> Iterator[Any]:
        return iter(self._whole())

    def __array__(self, dtype: Any = None, copy: Optional[bool] = None) -> np.ndarray:
        a = self._whole()
        if dtype is not None:
            cast = np.asarray(a, dtype=dtype)
            if copy is False and cast is not a:
                raise ValueError(f"copy=False but viewing the array as {np.dtype(dtype)} needs a copy")
            a = cast
        return a.copy() if copy else a

    def load(self, idx: Any = None) -> None:
        """Nothing to load: RAM arrays are always in memory (checks the index)."""
        if idx is not None:
            check_basic(idx)
            self._whole()[idx]

    def resize(self, shape: Any) -> None:
        """Changes the shape in O(1); new elements read as zeros, old views stay coherent."""
        shape = parse_shape(shape)
        self._set_nbytes(self._nbytes(shape))
        self._shape = shape

    def append(self, values: Any) -> None:
        """Appends along the major axis; the other dimensions must match. On error the array is
        unchanged."""
        vals = np.asarray(values, dtype=self._dtype)
        new = appended_shape(self._shape, self._order, vals.shape)  # ShapeError (a ValueError)
        major = major_axis(self._order, len(self._shape))
        old = self._shape[major]
        self.resize(new)
        idx = (slice(old, None),) if self._order == "C" else (Ellipsis, slice(old, None))
        self._whole()[idx] = vals

    def __reduce__(self) -> tuple:
        """Pickles (and copies) by value: the copy has its own memory."""
        return (_from_ndarray, (np.array(self._whole(), order="K"), self._order))

    def __dask_tokenize__(self) -> str:
        """Dask's token (`dask.base.tokenize`): a new unique one on every call, as the data can
        change at any time through views."""
        return f"outcore.RAMArray-{uuid.uuid4().hex}"

    def __repr__(self) -> str:
        return f"<outcore.RAMArray shape={self._shape} dtype={self._dtype} order={self._order}>"


def _from_ndarray(values: np.ndarray, order: str) -> RAMArray:
    """A new `RAMArray` holding a copy of `values` (unpickles a `RAMArray`)."""
    arr = RAMArray(values.shape, values.dtype, order=order)
    arr[...] = values
    return arr
