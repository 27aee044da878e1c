"""`outcore.open`: the Python conventions around the extension's `open` (paths, `~`, sizes such
as `"1GiB"`); what the modes mean is the core's (`outcore::OpenMode`)."""

from __future__ import annotations

import os
import re
from typing import Any, Optional, Union

from outcore import _outcore
from outcore._db import Db
from outcore._errors import InvalidArgumentError

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
}


def parse_size(size: Any, what: str = "size") -> Optional[int]:
    """Bytes of `size`: `None`, an int, or a string such as `"1GiB"`, `"512 MiB"`, `"2GB"`,
    `"4096"` (binary units KiB/MiB/GiB/TiB, decimal kB/MB/GB/TB; K/M/G/T alone are decimal, as
    in dask)."""
    if size is None:
        return None
    if isinstance(size, bool):
        raise InvalidArgumentError(f"{what} must be a number of bytes or a string such as '1GiB', not {size!r}")
    if isinstance(size, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", size)
        unit = m.group(2).lower() if m else ""
        if not m or unit not in _UNITS:
            raise InvalidArgumentError(
                f"{what} {size!r} is not a size: use bytes or a number with a unit "
                "(KiB, MiB, GiB, TiB, kB, MB, GB, TB), e.g. '1GiB'"
            )
        return int(float(m.group(1)) * _UNITS[unit])
    try:
        n = size.__index__()
    except AttributeError:
        raise InvalidArgumentError(f"{what} must be a number of bytes or a string such as '1GiB', not {size!r}") from None
    if n < 0:
        raise InvalidArgumentError(f"{what} must not be negative, not {n}")
    return int(n)


def location(url: Union[str, os.PathLike]) -> str:
    """The store location of `url`: a path-like (`pathlib.Path`, `~` expanded) or a string
    (file path, `sqlite:` path or `postgresql://` URL)."""
    url = os.fspath(url)
    if isinstance(url, bytes):
        url = os.fsdecode(url)
    if not isinstance(url, str):
        raise TypeError(f"expected a path or URL, not {type(url).__name__}")
    if url.startswith(("postgresql://", "postgres://")):
        return url
    for prefix in ("sqlite://", "sqlite:"):
        if url.startswith(prefix):
            return prefix + os.path.expanduser(url[len(prefix):])
    return os.path.expanduser(url)


def open(
    url: Union[str, os.PathLike],
    mode: str = "a",
    *,
    cache: Union[int, str, None] = None,
    blksize: Union[int, str, None] = None,
    compression: Optional[str] = None,
) -> Db:
    """Opens the database at `url`: a path (`str` or `pathlib.Path`, `~` expanded; a SQLite file
    beside its `.blocks` data file) or a `postgresql://` URL.

    `mode`, as h5py and zarr define it:
    - `"r"`: read-only, must exist. Views are read-only ndarrays (`ValueError: assignment
      destination is read-only`), changes raise `outcore.ReadOnlyError`; connections still move
      to the newest snapshot at transaction boundaries.
    - `"r+"`: read-write, must exist (`outcore.NotFoundError`, a `FileNotFoundError`).
    - `"a"` (default): read-write, created if missing.
    - `"w"`: created, or emptied (every array deleted in one commit).
    - `"w-"` or `"x"`: created; `outcore.StoreExistsError` (a `FileExistsError`) if it exists.

    `cache`: page-cache budget (bytes or a string such as `"1GiB"`; default: the process-wide
    cache). `blksize`: default block size of new arrays (e.g. `"1MiB"`). `compression`: that of
    their stored blocks (`None`, `"lz4"`, `"zstd"`, `"zstd:LEVEL"`).

    The database is a context manager: `with outcore.open(path) as db:` closes it at the end.
    """
    raw = _outcore.open(
        location(url),
        cache=parse_size(cache, "cache"),
        blksize=parse_size(blksize, "blksize"),
        compression=compression,
        mode=mode,
    )
    return Db(raw)
