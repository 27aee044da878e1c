"""`Array.attrs`: user attributes stored with an array, as h5py's and zarr's `attrs`."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any, Iterator

import numpy as np

from outcore._errors import InvalidArgumentError


def _plain(v: Any) -> Any:
    """`v` with NumPy scalars and arrays turned into Python numbers and lists."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def dumps(attrs: Any) -> str:
    """JSON text of an attributes mapping (str keys; JSON-able values, NumPy scalars and arrays
    as numbers and lists); `outcore.InvalidArgumentError` otherwise."""
    if not isinstance(attrs, dict):
        attrs = dict(attrs)
    for k in attrs:
        if not isinstance(k, str):
            raise InvalidArgumentError(f"attribute names must be strings, not {k!r}")
    try:
        return json.dumps(_plain(attrs), allow_nan=True)
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(f"attributes must be JSON-able: {e}") from None


class Attributes(MutableMapping):
    """The attributes of an array: a mutable mapping of str to JSON-able values (numbers,
    strings, lists, dicts, bools, None; NumPy scalars and arrays are stored as numbers and
    lists), part of the array's metadata: changed in the connection's transaction (committed
    or aborted with it), and versioned with the array (a historical connection reads the
    attributes of its snapshot). Read-only connections refuse changes (`ReadOnlyError`).

    Each read loads them anew from the array (so they follow the transaction); `update()`
    changes many at once. Values come back as JSON gives them (tuples as lists)."""

    def __init__(self, array: Any) -> None:
        self._array = array

    def _load(self) -> dict:
        return json.loads(self._array._attrs_json())

    def _store(self, d: dict) -> None:
        self._array._set_attrs_json(dumps(d))

    def __getitem__(self, key: str) -> Any:
        return self._load()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        d = self._load()
        d[key] = value
        self._store(d)

    def __delitem__(self, key: str) -> None:
        d = self._load()
        del d[key]
        self._store(d)

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __contains__(self, key: object) -> bool:
        return key in self._load()

    def update(self, *args: Any, **kw: Any) -> None:  # type: ignore[override]
        """Sets many attributes in one change."""
        d = self._load()
        d.update(*args, **kw)
        self._store(d)

    def clear(self) -> None:
        self._store({})

    def asdict(self) -> dict:
        """The attributes as a plain dict (a copy)."""
        return self._load()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Attributes):
            other = other._load()
        return isinstance(other, dict) and self._load() == other

    def __repr__(self) -> str:
        return f"<outcore.Attributes {self._load()!r}>"
