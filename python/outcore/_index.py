"""The rules the pure-Python array classes share with `outcore.Array`, from their one owner:
the extension (`outcore._outcore`, which applies the core's size and append rules)."""

from typing import Any

import numpy as np

from outcore import _outcore
from outcore._outcore import MAX_NBYTES, check_basic, check_size, major_axis

__all__ = ["MAX_NBYTES", "appended_shape", "check_basic", "check_dtype", "check_size", "major_axis", "parse_shape"]


def check_dtype(dtype: Any) -> np.dtype:
    """The NumPy dtype of `dtype`; `outcore.DtypeError` (a `TypeError`) for what is not one,
    object and sub-array dtypes, and zero-sized items."""
    return _outcore.check_dtype(dtype)


def parse_shape(shape: Any) -> tuple:
    """A shape from an int or a sequence of ints; `outcore.ShapeError` (a `ValueError`) for
    negative dimensions."""
    return tuple(_outcore.parse_shape(shape))


def appended_shape(shape: tuple, order: str, values: tuple) -> tuple:
    """The shape after appending values of shape `values` along the major axis;
    `outcore.ShapeError` (a `ValueError`) unless all other dimensions match."""
    return tuple(_outcore.appended_shape(list(shape), order, list(values)))
