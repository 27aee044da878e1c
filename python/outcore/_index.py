"""Basic-index checking shared by the pure-Python array classes (the extension module checks
its own arrays the same way)."""

from typing import Any

import numpy as np


def check_basic(idx: Any) -> None:
    """Raises TypeError unless `idx` is a basic index: ints, slices, None, Ellipsis, field
    names, or a tuple of those."""
    for i in idx if isinstance(idx, tuple) else (idx,):
        if i is None or i is Ellipsis or isinstance(i, (slice, str)):
            continue
        if isinstance(i, (int, np.integer)) and not isinstance(i, (bool, np.bool_)):
            continue
        raise TypeError(
            "outcore arrays support basic indexing only (ints, slices, None, Ellipsis), not "
            f"{type(i).__name__}: for advanced (list, array or boolean) indexing use "
            "np.asarray(A)[index], which copies the selected elements"
        )


def check_dtype(dtype: Any) -> np.dtype:
    """The NumPy dtype of `dtype`; TypeError for object and sub-array dtypes."""
    dt = np.dtype(dtype)
    if dt.hasobject:
        raise TypeError(f"dtype {dt!r} holds Python objects, which outcore arrays cannot store")
    if dt.subdtype is not None:
        raise TypeError(f"sub-array dtype {dt!r} is not supported: put its shape into the array's shape")
    if dt.itemsize == 0:
        raise TypeError(f"dtype {dt!r} has zero-sized items")
    return dt


def parse_shape(shape: Any) -> tuple:
    """A shape from an int or a sequence of ints; ValueError for negative dimensions."""
    dims = (shape,) if hasattr(shape, "__index__") and not hasattr(shape, "__len__") else tuple(shape)
    out = tuple(int(d.__index__()) for d in dims)
    if any(d < 0 for d in out):
        raise ValueError(f"invalid shape {out}: dimensions must not be negative")
    return out
