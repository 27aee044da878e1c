"""The xarray backend: `xr.open_dataset(path, engine="outcore")`, `xr.open_datatree(path,
engine="outcore")`, and `to_outcore(ds, path)` to write a Dataset (or DataTree).

Arrays name their dimensions in the attribute `_ARRAY_DIMENSIONS` (zarr's convention, which
xarray's zarr backend reads too); an array without it gets `<name>_dim_<i>`. The other
attributes become the variable's. Opening is lazy: variables wrap the outcore arrays in
xarray's lazy indexing, and indexing them reads only the blocks needed (zero-copy, read-only
views for basic indexing); `chunks={}` gives dask arrays over them instead. A Dataset is the
arrays of one group (`group=`, default the root); a DataTree has one node per group.

Databases open read-only (`mode="r"`) by default; `ds.close()` closes the database (arrays read
before stay readable). Groups have no attributes in outcore, so Dataset attributes are not
stored (`to_outcore` warns when it drops some).
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Iterable, Optional

import numpy as np

import outcore

try:
    import xarray as xr
    from xarray.backends import BackendArray, BackendEntrypoint
    from xarray.core import indexing
except ImportError as e:  # pragma: no cover - xarray is optional
    raise ImportError("outcore.xarray_backend needs xarray: pip install xarray") from e

DIMS = "_ARRAY_DIMENSIONS"


class OutcoreArray(BackendArray):
    """An outcore array as xarray's lazily indexed backend array."""

    def __init__(self, array: Any) -> None:
        self.array = array
        self.shape = tuple(array.shape)
        self.dtype = np.dtype(array.dtype)

    def __getitem__(self, key: Any) -> Any:
        return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.BASIC, self._get)

    def _get(self, key: tuple) -> np.ndarray:
        return np.asarray(self.array[key])


def _variable(array: Any) -> Any:
    attrs = dict(array.attrs)
    dims = attrs.pop(DIMS, None)
    name = array.name.rsplit("/", 1)[-1]
    if dims is None or len(dims) != len(array.shape):
        dims = [f"{name}_dim_{i}" for i in range(len(array.shape))]
    data = indexing.LazilyIndexedArray(OutcoreArray(array))
    encoding = {"chunks": tuple(array.chunks), "preferred_chunks": dict(zip(dims, array.chunks))}
    if array.dtype.names is None and array.fill_value != 0:  # CF has no fill for records
        encoding["_FillValue"] = array.fill_value
    return xr.Variable(dims, data, attrs, encoding=encoding)


def _dataset(group: Any, drop_variables: Iterable[str], decode: dict) -> Any:
    drop = set(drop_variables or ())
    variables = {name: _variable(a) for name, a in group.arrays() if name not in drop}
    ds = xr.Dataset(variables)
    return xr.decode_cf(ds, **decode) if decode else ds


def _open_db(filename_or_obj: Any, mode: str) -> Any:
    if isinstance(filename_or_obj, outcore.Db):
        return filename_or_obj
    return outcore.open(filename_or_obj, mode=mode)


class OutcoreBackendEntrypoint(BackendEntrypoint):
    """`engine="outcore"` for `xr.open_dataset` and `xr.open_datatree`."""

    description = "Open outcore databases (SQLite paths, postgresql:// URLs) in xarray"
    url = "https://github.com/outcore/outcore"
    open_dataset_parameters = (
        "filename_or_obj",
        "drop_variables",
        "group",
        "mode",
        "at",
        "mask_and_scale",
        "decode_times",
        "decode_timedelta",
        "use_cftime",
        "concat_characters",
        "decode_coords",
    )

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        if isinstance(filename_or_obj, outcore.Db):
            return True
        try:
            s = os.fspath(filename_or_obj)
        except TypeError:
            return False
        s = os.fsdecode(s)
        return s.endswith(".outcore") or s.startswith(("postgresql://", "postgres://"))

    def open_dataset(  # type: ignore[override]
        self,
        filename_or_obj: Any,
        *,
        drop_variables: Optional[Iterable[str]] = None,
        group: Optional[str] = None,
        mode: str = "r",
        at: Any = None,
        mask_and_scale: Any = None,
        decode_times: Any = None,
        decode_timedelta: Any = None,
        use_cftime: Any = None,
        concat_characters: Any = None,
        decode_coords: Any = None,
    ) -> Any:
        """The arrays of `group` (default: the root) of the database as a Dataset; `at` reads a
        historical snapshot (a tid or a datetime)."""
        decode = _decoders(locals())
        db = _open_db(filename_or_obj, mode)
        conn = db.connect(at=at, transaction_manager=False) if at is not None else db.connect(transaction_manager=False)
        root = conn.root
        g = root[group] if group not in (None, "", "/") else root
        if not isinstance(g, outcore.Group):
            raise ValueError(f"'{group}' is an array, not a group")
        ds = _dataset(g, drop_variables or (), decode)
        ds.set_close(db.close if db is not filename_or_obj else conn.close)
        return ds

    def open_groups_as_dict(self, filename_or_obj: Any, **kw: Any) -> dict:
        """Every group (with arrays, or with groups below it) as a Dataset, by path."""
        drop = kw.pop("drop_variables", None) or ()
        mode = kw.pop("mode", "r")
        at = kw.pop("at", None)
        decode = _decoders(kw)
        db = _open_db(filename_or_obj, mode)
        conn = db.connect(at=at, transaction_manager=False) if at is not None else db.connect(transaction_manager=False)
        out = {"/": _dataset(conn.root, drop, decode)}

        def walk(path: str, obj: Any) -> None:
            if isinstance(obj, outcore.Group):
                out["/" + path] = _dataset(obj, drop, decode)

        conn.root.visititems(walk)
        for ds in out.values():
            ds.set_close(conn.close)
        return out

    def open_datatree(self, filename_or_obj: Any, **kw: Any) -> Any:  # type: ignore[override]
        """The groups as a DataTree (one node per group)."""
        groups = self.open_groups_as_dict(filename_or_obj, **kw)
        tree = xr.DataTree.from_dict(groups)
        closers = [ds._close for ds in groups.values() if ds._close is not None]
        if closers:
            tree.set_close(closers[0])
        return tree


def _decoders(kw: dict) -> dict:
    names = ("mask_and_scale", "decode_times", "decode_timedelta", "use_cftime", "concat_characters", "decode_coords")
    return {k: kw[k] for k in names if kw.get(k) is not None}


def to_outcore(obj: Any, url: Any, group: str = "", mode: str = "a", **create: Any) -> None:
    """Writes a Dataset (or every node of a DataTree) into the database at `url` (or an open
    `outcore.Db`), one array per variable and coordinate in group `group`, with its attributes
    and `_ARRAY_DIMENSIONS`, in one transaction (existing arrays of those names are replaced).
    `create` is passed to `Group.create` (`blksize`, `compression`, `order`). Dataset attributes
    are not stored (groups have none): a warning says so."""
    if hasattr(obj, "subtree"):  # a DataTree
        db = _open_db(url, mode)
        for node in obj.subtree:
            path = "/".join(p for p in (group.strip("/"), node.path.strip("/")) if p)
            to_outcore(node.to_dataset(inherit=False), db, path, **create)
        return
    ds = obj
    db = _open_db(url, mode)
    if ds.attrs:
        warnings.warn(
            f"outcore groups have no attributes: the Dataset attributes {sorted(ds.attrs)} are not stored",
            stacklevel=2,
        )
    variables, _ = xr.conventions.cf_encoder(dict(ds.variables), {})
    with db.transaction(note=f"to_outcore: {len(variables)} variables") as conn:
        g = conn.root.group(group) if group.strip("/") else conn.root
        for name, var in variables.items():
            attrs = {**var.attrs, DIMS: list(var.dims)}
            attrs.pop("_FillValue", None)
            g[name] = np.asarray(var.values)
            g[name].attrs.update(attrs)
