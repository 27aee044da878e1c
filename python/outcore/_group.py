"""Groups: `conn.root` and its subgroups as `collections.abc.MutableMapping`s of arrays and
groups, as in h5py and zarr.

Groups are paths in array names: the array `"a/b/x"` is the member `x` of group `b` of group
`a`, so `root["a"]["b"]["x"]`, `root["a/b/x"]` and `root.group("a/b")["x"]` are the same
array. A group exists while arrays are named in it (the core refuses a name that is both an
array and a group); `root.group(path)` gives a handle on a group that may not exist yet, where
`create` makes arrays. Groups have no attributes of their own (arrays do: `A.attrs`).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Callable, Iterator, Optional, Union

import numpy as np

from outcore._attrs import dumps
from outcore._errors import NoSuchArrayError, ShapeError


def _clean(path: str) -> str:
    return path.strip("/")


class Group(MutableMapping):
    """A group of arrays and groups of a connection (`conn.root` is the root group).

    Mapping access by name or `/`-path: `g["x"]`, `g["a/b/x"]` (an `outcore.Array` or a
    `Group`); `g["x"] = array_like` creates (or replaces) an array with that data;
    `del g["x"]` deletes an array, `del g["a"]` every array of group `a`. Iteration gives the
    names of the members (arrays and groups), sorted. Every change belongs to the connection's
    transaction."""

    def __init__(self, raw: Any, path: str = "", connection: Any = None) -> None:
        self._raw = raw  # the extension's `Root`: arrays by full name
        self._path = _clean(path)
        self._connection = connection

    def _sub(self, path: str) -> "Group":
        """The group at `path` (from the root) of the same connection."""
        return Group(self._raw, path, self._connection)

    # names

    @property
    def path(self) -> str:
        """Path of the group from the root (`""` for the root), as zarr's `path`."""
        return self._path

    @property
    def name(self) -> str:
        """Absolute name, as h5py's `name`: `"/"` for the root, `"/a/b"` for group `a/b`."""
        return "/" + self._path

    @property
    def basename(self) -> str:
        """Last component of the path."""
        return self._path.rsplit("/", 1)[-1]

    @property
    def connection(self) -> Any:
        """The connection whose transaction the group's changes belong to."""
        return self._connection

    def _full(self, name: str) -> str:
        if not isinstance(name, str):
            raise TypeError(f"member names are str, not {type(name).__name__}")
        if name.startswith("/"):
            return _clean(name)  # absolute, as in h5py
        name = _clean(name)
        return f"{self._path}/{name}" if self._path and name else (name or self._path)

    def _members(self) -> tuple:
        try:
            return tuple(self._raw.members(self._path))
        except NoSuchArrayError:
            return [], []

    # mapping

    def __getitem__(self, name: str) -> Any:
        full = self._full(name)
        if not full:
            return self._sub("")
        try:
            return self._raw[full]
        except NoSuchArrayError:
            pass
        try:
            self._raw.members(full)
        except NoSuchArrayError:
            raise NoSuchArrayError(f"no array or group named '{full}'") from None
        return self._sub(full)

    def __setitem__(self, name: str, value: Any) -> None:
        full = self._full(name)
        if full in self._raw:
            del self._raw[full]
        self._create(full, data=value)

    def __delitem__(self, name: str) -> None:
        full = self._full(name)
        if full in self._raw:
            del self._raw[full]
            return
        member = self[name]  # NoSuchArrayError (a KeyError) if neither
        for path in list(member._array_paths()):
            del self._raw[path]

    def __iter__(self) -> Iterator[str]:
        arrays, groups = self._members()
        return iter(sorted([*arrays, *groups]))

    def __len__(self) -> int:
        arrays, groups = self._members()
        return len(arrays) + len(groups)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        full = self._full(name)
        if full in self._raw:
            return True
        try:
            self._raw.members(full)
            return True
        except NoSuchArrayError:
            return False

    def rename(self, old: str, new: str) -> None:
        """Renames (moves) the array or group `old` to `new` (paths relative to this group, or
        absolute with a leading `/`); a group moves with every array in it."""
        src, dst = self._full(old), self._full(new)
        if src in self._raw:
            self._raw.rename(src, dst)
            return
        group = self[old]  # NoSuchArrayError (a KeyError) if neither
        for path in list(group._array_paths()):
            self._raw.rename(path, dst + path[len(src):])

    move = rename  # h5py's and zarr's name

    # members by kind

    def array_keys(self) -> list:
        """Names of the arrays in this group (not in subgroups), sorted."""
        return list(self._members()[0])

    def group_keys(self) -> list:
        """Names of the groups in this group, sorted."""
        return list(self._members()[1])

    def arrays(self) -> Iterator[tuple]:
        """`(name, array)` of the arrays in this group, as zarr's `arrays()`."""
        for n in self.array_keys():
            yield n, self[n]

    def groups(self) -> Iterator[tuple]:
        """`(name, group)` of the groups in this group, as zarr's `groups()`."""
        for n in self.group_keys():
            yield n, self._sub(self._full(n))

    def _array_paths(self) -> Iterator[str]:
        prefix = f"{self._path}/" if self._path else ""
        for n in self._raw.keys():
            if n.startswith(prefix):
                yield n

    def visit(self, func: Callable[[str], Any]) -> Any:
        """Calls `func(path)` for every member below this group (paths relative to it), groups
        before their members, in name order; stops at and returns the first result that is not
        `None` (h5py's and zarr's `visit`)."""
        return self.visititems(lambda path, _obj: func(path))

    def visititems(self, func: Callable[[str, Any], Any]) -> Any:
        """Calls `func(path, obj)` for every member below this group (`obj` an `Array` or a
        `Group`); stops at and returns the first result that is not `None`."""

        def walk(group: Group, rel: str) -> Any:
            for n in group:
                path = f"{rel}{n}"
                obj = group[n]
                r = func(path, obj)
                if r is not None:
                    return r
                if isinstance(obj, Group):
                    r = walk(obj, path + "/")
                    if r is not None:
                        return r
            return None

        return walk(self, "")

    def tree(self) -> str:
        """The hierarchy below this group as indented text."""
        lines = [self.name]

        def show(path: str, obj: Any) -> None:
            depth = path.count("/") + 1
            if isinstance(obj, Group):
                lines.append("  " * depth + path.rsplit("/", 1)[-1] + "/")
            else:
                lines.append("  " * depth + f"{path.rsplit('/', 1)[-1]} {obj.shape} {obj.dtype}")

        self.visititems(show)
        return "\n".join(lines)

    # creation

    def group(self, name: str) -> "Group":
        """The group `name` (a `/`-path) below this one, existing or not yet (it exists once
        an array is created in it)."""
        full = self._full(name)
        if full and full in self._raw:
            raise NoSuchArrayError(f"'{full}' is an array, not a group")
        return self._sub(full)

    create_group = group
    require_group = group

    def create(
        self,
        name: str,
        shape: Any = None,
        dtype: Any = None,
        *,
        data: Any = None,
        fill_value: Any = None,
        attrs: Optional[dict] = None,
        order: str = "C",
        blksize: Union[int, str, None] = None,
        compression: Optional[str] = None,
    ) -> Any:
        """Creates the array `name` (a `/`-path: groups on the way exist from then on).

        Either `shape` and `dtype` (default float64; the array reads as `fill_value`, default
        zeros, and costs no storage until written, whatever the fill value: a non-zero one is
        served by the userfaultfd engine, see `docs/design/004-fill-values.md`), or `data` (any array-like; `shape` and
        `dtype` default to its own, and the data is written straight into the store's blocks).
        `attrs`: initial attributes (a dict of JSON-able values). `order`: `"C"` or `"F"`.
        `blksize` (bytes or e.g. `"1MiB"`) and `compression` apply to its stored blocks."""
        return self._create(
            self._full(name),
            shape=shape,
            dtype=dtype,
            data=data,
            fill_value=fill_value,
            attrs=attrs,
            order=order,
            blksize=blksize,
            compression=compression,
        )

    create_dataset = create  # h5py's name

    def _create(
        self,
        full: str,
        shape: Any = None,
        dtype: Any = None,
        data: Any = None,
        fill_value: Any = None,
        attrs: Optional[dict] = None,
        order: str = "C",
        blksize: Union[int, str, None] = None,
        compression: Optional[str] = None,
    ) -> Any:
        from outcore._open import parse_size

        if data is not None:
            data = np.asarray(data, dtype=_dtype(dtype) if dtype is not None else None)
            if shape is not None:
                shp = (int(shape),) if np.ndim(shape) == 0 else tuple(int(n) for n in shape)
                if shp != data.shape:
                    raise ShapeError(f"shape {shp} does not match the data's shape {data.shape}")
            shape, dtype = data.shape, data.dtype
        elif shape is None:
            raise TypeError("create() needs a shape (and dtype), or data")
        dt = _dtype(np.float64 if dtype is None else dtype)
        fill = None
        if fill_value is not None:
            fill = np.asarray(fill_value, dtype=dt).reshape(()).tobytes()
        kw: dict = dict(
            order=order,
            blksize=parse_size(blksize, "blksize"),
            compression=compression,
            attrs=dumps(attrs) if attrs else None,
            fill=fill,
        )
        if data is None:
            return self._raw.create(full, shape, dt, **kw)
        if data.ndim == 0:
            a = self._raw.create(full, (), dt, **kw)
            a[()] = data
            return a
        # Created empty along the append axis, then appended: the data goes straight into the
        # store's blocks (each byte written once), not through the page cache.
        major = 0 if order in ("C", "c") else data.ndim - 1
        empty = tuple(0 if i == major else n for i, n in enumerate(data.shape))
        a = self._raw.create(full, empty, dt, **kw)
        a.append(data)
        return a

    def __repr__(self) -> str:
        arrays, groups = self._members()
        return f"<outcore.Group {self.name!r}: {len(arrays)} arrays, {len(groups)} groups>"


def _dtype(dtype: Any) -> np.dtype:
    """`np.dtype(dtype)`, with `outcore.DtypeError` (a `TypeError`) for what is not one."""
    from outcore._errors import DtypeError

    try:
        return np.dtype(dtype)
    except TypeError as e:
        raise DtypeError(str(e)) from None
