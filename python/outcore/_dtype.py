"""NumPy dtypes from the descr strings the store keeps.

Plain dtypes are stored as their type string (`"<f8"`), structured ones as the repr of
`dtype.descr`, where padding appears as unnamed void fields (`('', '|V7')`). Rebuilding with
explicit offsets drops the padding fields again, so aligned and offset layouts come back equal
to the dtype the array was created with."""

from __future__ import annotations

import ast
from typing import Any

import numpy as np


def _structured(fields: list) -> np.dtype:
    names: list = []
    formats: list = []
    offsets: list = []
    titles: list = []
    off = 0
    for field in fields:
        name, fmt = field[0], field[1]
        sub = _structured(fmt) if isinstance(fmt, list) else np.dtype(fmt)
        if len(field) > 2:
            sub = np.dtype((sub, field[2]))
        title = None
        if isinstance(name, tuple):
            title, name = name
        if name:
            names.append(name)
            formats.append(sub)
            offsets.append(off)
            titles.append(title)
        off += sub.itemsize
    spec: Any = {"names": names, "formats": formats, "offsets": offsets, "itemsize": off}
    if any(t is not None for t in titles):
        spec["titles"] = titles
    return np.dtype(spec)


def from_descr(descr: str) -> np.dtype:
    """The dtype of a stored descr."""
    if descr.lstrip().startswith("["):
        return _structured(ast.literal_eval(descr))
    return np.dtype(descr)
