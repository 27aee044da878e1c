"""Import of wendelin.core ZODB databases (issue 17): `outcore.import_wendelin(src, dst)`.

wendelin.core keeps each array as a `ZBigArray` (dtype, shape, order) over a `ZBigFile`
(block size, and an `LOBTree` from block number to a block object: `ZBlk0` holding the block's
bytes, or `ZBlk1` holding an `IOBTree` of 4 KiB `ZData` chunks; trailing zeros stripped, absent
blocks and chunks are zeros). See `../shared/reference/wendelin.md`, "How its data sits in ZODB".

The records are read with ZODB (FileStorage, ZEO or any `zodburi` URL) through a database whose
class factory is the only way a pickle reaches a global: it maps the wendelin class names to
the minimal stand-ins below and otherwise allows only BTrees, persistent's mappings and NumPy's
dtype/array reconstruction (`_ALLOWED`). Any other global is refused with `RefusedGlobalError`
naming it: it is never imported, never called. Transaction extensions (pickles too) are read
with the same rule and no globals at all.

Arrays are found by walking the root through mappings, `PersistentMapping`s and BTrees, and
named by their key path joined with `/`. Each is created in outcore empty along its append axis
and filled by appends of the blocks in order (the bytes go straight into the store's extents:
memory stays about one block plus one row along the major axis); runs of absent blocks become
`resize` growth, so holes stay holes; bytes past the array's size are not read. Everything is one
outcore transaction (an error aborts it: DST unchanged), unless `history=True`, which replays
every readable ZODB transaction as one outcore commit (its user, note, and the original tid and
time in the commit's extension).
"""

from __future__ import annotations

import datetime
import gc
import io
import logging
import math
import os
import pickle
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Literal, Optional, Union

import numpy as np

from outcore._errors import AlreadyExistsError, Error

log = logging.getLogger("outcore.wendelin")

__all__ = [
    "import_wendelin",
    "WendelinImportError",
    "RefusedGlobalError",
    "MissingObjectError",
    "CorruptRecordError",
]


class WendelinImportError(Error):
    """The wendelin.core database could not be imported (the message names what failed)."""


class RefusedGlobalError(WendelinImportError, pickle.UnpicklingError):
    """A record names a class or function the import does not allow (an unknown class, or
    code a pickle would call): it was neither imported nor called. `.global_name` names it."""

    def __init__(self, message: str, global_name: str = "") -> None:
        super().__init__(message)
        self.global_name = global_name


class MissingObjectError(WendelinImportError):
    """An object the arrays refer to is not in the database (packed away, or a broken
    reference)."""


class CorruptRecordError(WendelinImportError):
    """A record could not be decoded, or does not hold what its class must hold."""


# -- the restricted class lookup ---------------------------------------------------------------

_WENDELIN = {
    ("wendelin.bigarray.array_zodb", "ZBigArray"): "ZBigArray",
    ("wendelin.bigfile.file_zodb", "ZBigFile"): "ZBigFile",
    ("wendelin.bigfile.file_zodb", "ZBlk0"): "ZBlk0",
    ("wendelin.bigfile.file_zodb", "ZBlk"): "ZBlk0",  # ZBlk0's old name
    ("wendelin.bigfile.file_zodb", "ZBlk1"): "ZBlk1",
    ("wendelin.bigfile.file_zodb", "ZData"): "ZData",
}

# BTrees families and the classes of each (module BTrees.<F>BTree).
_BTREE_FAMILIES = ("OO", "OI", "OL", "OQ", "OU", "IO", "II", "IF", "IU", "LO", "LL", "LF", "LQ",
                   "QO", "QL", "QQ", "QF", "UO", "UI", "UF", "UU", "fs")
_BTREE_KINDS = ("BTree", "Bucket", "Set", "TreeSet")


def _numpy_global(name: str) -> Any:
    import numpy

    if name == "dtype":
        return numpy.dtype
    if name == "ndarray":
        return numpy.ndarray
    try:  # NumPy 2 moved the multiarray helpers to numpy._core
        from numpy._core import multiarray  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # pragma: no cover - NumPy 1
        from numpy.core import multiarray  # type: ignore[no-redef,unused-ignore]
    return getattr(multiarray, name)


def _allowed_global(module: str, name: str, standins: Any) -> Any:
    """The object a pickle may use for `module.name`, or None if it is refused."""
    if (module, name) in _WENDELIN:
        return getattr(standins, _WENDELIN[(module, name)])
    if module.startswith("BTrees."):
        fam = module[len("BTrees."):]
        if fam.endswith("BTree") and fam[:-5] in _BTREE_FAMILIES:
            prefix = fam[:-5]
            if name in tuple(prefix + k for k in _BTREE_KINDS):
                import importlib

                return getattr(importlib.import_module(module), name)
        if (module, name) == ("BTrees.Length", "Length"):
            from BTrees.Length import Length

            return Length
        return None
    if (module, name) in (("persistent.mapping", "PersistentMapping"),
                          ("ZODB.PersistentMapping", "PersistentMapping"),
                          ("persistent.mapping", "PersistentDict")):
        from persistent.mapping import PersistentMapping

        return PersistentMapping
    if (module, name) in (("persistent.list", "PersistentList"), ("ZODB.PersistentList", "PersistentList")):
        from persistent.list import PersistentList

        return PersistentList
    if module == "numpy" and name in ("dtype", "ndarray"):
        return _numpy_global(name)
    if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in ("_reconstruct", "scalar"):
        return _numpy_global(name)
    if module in ("builtins", "__builtin__") and name in ("set", "frozenset", "bytearray", "complex"):
        import builtins

        return getattr(builtins, name)
    if (module, name) == ("_codecs", "encode"):  # how protocol-2 pickles of Python 3 keep bytes
        import codecs

        return lambda s, enc="latin1": codecs.encode(s, enc if enc in ("latin1", "latin-1") else "latin1")
    return None


def _refused(module: str, name: str) -> RefusedGlobalError:
    g = f"{module}.{name}"
    if module.startswith("wendelin."):
        what = f"unknown wendelin.core class '{g}'"
    else:
        what = f"unknown class or refused global '{g}'"
    return RefusedGlobalError(
        f"{what}: the import only reads ZBigArray/ZBigFile/ZBlk0/ZBlk1/ZData records, BTrees, "
        f"persistent mappings and NumPy dtypes and arrays; '{g}' was neither imported nor called",
        g,
    )


class _QuietLoadErrors(logging.Filter):
    """Drops ZODB's own "Couldn't load state" tracebacks while importing: the import raises
    its own error naming what failed (or skips a packed-away state)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Couldn't load state")


class _NoGlobalsUnpickler(pickle.Unpickler):
    """For transaction extensions: plain data only."""

    def find_class(self, module: str, name: str) -> Any:
        raise _refused(module, name)


def _extension_reference(pid: Any) -> Any:
    raise pickle.UnpicklingError("persistent reference in a transaction extension")


_CHECK_UNPICKLER: Any = None


def _CheckUnpickler(f: Any, standins: Any) -> Any:
    """An unpickler of a record's pickles with the import's class lookup, following no
    reference (zodbpickle's, as ZODB reads records)."""
    global _CHECK_UNPICKLER
    if _CHECK_UNPICKLER is None:
        import zodbpickle.pickle

        class CheckUnpickler(zodbpickle.pickle.Unpickler):  # type: ignore[misc,unused-ignore]
            def __init__(self, f: Any, standins: Any) -> None:
                super().__init__(f)
                self._standins = standins

            def find_class(self, module: str, name: str) -> Any:
                found = _allowed_global(module, name, self._standins)
                if found is None:
                    raise _refused(module, name)
                return found

        _CHECK_UNPICKLER = CheckUnpickler
    u = _CHECK_UNPICKLER(f, standins)
    # A plain function, not a method: the C unpickler keeps its persistent_load, and a bound
    # method would make a cycle that keeps every record read (a 2 MiB block each) until the
    # garbage collector runs.
    u.persistent_load = _no_reference
    return u


def _no_reference(pid: Any) -> None:
    return None


def _precheck(storage: Any) -> int:
    """Reads the class and state pickle of every record of every transaction with the
    import's class lookup, before a history replay commits anything; returns the number of
    transactions. Raises `RefusedGlobalError` or `CorruptRecordError` naming the object."""
    standins = _standins()
    n = 0
    for txn in storage.iterator():
        n += 1
        for rec in txn:
            if rec.data is None:
                continue
            what = f"ZODB transaction {txn.tid.hex()}: object {_hex(rec.oid)}"
            try:
                u = _CheckUnpickler(io.BytesIO(rec.data), standins)
                u.load()
                u.load()
            except RefusedGlobalError as e:
                raise RefusedGlobalError(f"{what}: {e}", e.global_name) from None
            except Exception as e:  # noqa: BLE001 - any failure to read a pickle
                raise CorruptRecordError(f"{what}: corrupt record ({type(e).__name__}: {e})") from e
    return n


def _extension(txn: Any) -> dict:
    """A transaction's extension, unpickled without any global (never `txn.extension`, which
    unpickles with every global allowed)."""
    try:
        raw = txn.extension_bytes
    except AttributeError:
        return {}
    if not raw:
        return {}
    try:
        u = _NoGlobalsUnpickler(io.BytesIO(raw))
        u.persistent_load = _extension_reference  # type: ignore[method-assign]
        ext = u.load()
    except Exception as e:  # noqa: BLE001 - an unreadable extension does not stop the import
        log.warning("transaction %s: extension not read (%s)", _hex(txn.tid), e)
        return {"zodb_extension_unreadable": str(e)}
    return ext if isinstance(ext, dict) else {"zodb_extension": repr(ext)}


# -- stand-ins for the wendelin classes ------------------------------------------------------

_STANDINS: Any = None


def _standins() -> Any:
    """The stand-in classes (persistent subclasses that keep their state as read)."""
    global _STANDINS
    if _STANDINS is not None:
        return _STANDINS
    import types

    from persistent import Persistent

    class _Standin(Persistent):
        _w_kind = "?"

        def __setstate__(self, state: Any) -> None:
            self._w_state = state

        def __getstate__(self) -> Any:  # never stored: the import only reads
            raise TypeError(f"the {self._w_kind} stand-in of the wendelin import is read-only")

    class ZBigArray(_Standin):
        _w_kind = "ZBigArray"

    class ZBigFile(_Standin):
        _w_kind = "ZBigFile"

    class ZBlk0(_Standin):
        _w_kind = "ZBlk0"

    class ZBlk1(_Standin):
        _w_kind = "ZBlk1"

    class ZData(_Standin):
        _w_kind = "ZData"

    _STANDINS = types.SimpleNamespace(
        Standin=_Standin, ZBigArray=ZBigArray, ZBigFile=ZBigFile, ZBlk0=ZBlk0, ZBlk1=ZBlk1, ZData=ZData
    )
    return _STANDINS


def _restricted_db_class() -> Any:
    from ZODB.DB import DB

    standins = _standins()

    class RestrictedDB(DB):
        """A read-only view of the database whose pickles reach only `_allowed_global`."""

        def classFactory(self, connection: Any, modulename: str, globalname: str) -> Any:
            found = _allowed_global(modulename, globalname, standins)
            if found is None:
                raise _refused(modulename, globalname)
            return found

    return RestrictedDB


def _hex(oid: Any) -> str:
    if isinstance(oid, bytes):
        return "0x" + (oid.hex().lstrip("0") or "0")
    return repr(oid)


class _Reading:
    """Context for reading one object: ZODB's errors become ours, naming `what`."""

    def __init__(self, what: str, obj: Any = None) -> None:
        self.what = what
        self.obj = obj

    def __enter__(self) -> "_Reading":
        return self

    def __exit__(self, typ: Any, exc: Any, tb: Any) -> Literal[False]:
        if exc is None:
            return False
        e = exc
        from ZODB.POSException import POSKeyError, StateLoadError

        while isinstance(e, StateLoadError) and e.__cause__ is not None:
            e = e.__cause__  # ZODB's wrapper of what went wrong in a state pickle
        oid = getattr(self.obj, "_p_oid", None)
        at = f" (object {_hex(oid)})" if oid is not None else ""
        if isinstance(e, RefusedGlobalError) and not getattr(e, "placed", False):
            err: Exception = RefusedGlobalError(f"{self.what}{at}: {e}", e.global_name)
            err.placed = True  # type: ignore[attr-defined]
        elif isinstance(e, WendelinImportError):
            if e is not exc:
                raise e from None
            return False
        elif isinstance(e, POSKeyError):
            missing = e.args[0] if e.args else oid
            err = MissingObjectError(f"{self.what}: object {_hex(missing)} is missing from the database")
        elif isinstance(e, (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
                            IndexError, KeyError, ImportError, zlib.error)):
            err = CorruptRecordError(f"{self.what}{at}: corrupt record ({type(e).__name__}: {e})")
        elif isinstance(e, Exception) and type(e).__module__.startswith(("ZODB", "BTrees", "persistent")):
            err = CorruptRecordError(f"{self.what}{at}: {type(e).__name__}: {e}")
        else:
            return False
        raise err from e


def _state(obj: Any, kind: str, what: str) -> Any:
    standins = _standins()
    with _Reading(what, obj):
        if not isinstance(obj, getattr(standins, kind)):
            raise CorruptRecordError(f"{what}: expected a {kind}, found {type(obj).__module__}.{type(obj).__name__}")
        obj._p_activate()
        try:
            return obj._w_state
        except AttributeError:
            raise CorruptRecordError(f"{what} (object {_hex(obj._p_oid)}): {kind} record without state") from None


# -- the arrays of a database ----------------------------------------------------------------


@dataclass
class _Found:
    """A ZBigArray found at `path`."""

    path: str
    oid: bytes
    dtype: np.dtype
    shape: tuple
    order: str
    blksize: int
    blktab: Any
    nbytes: int = 0
    present: list = field(default_factory=list)  # block numbers below nbytes

    @property
    def data_bytes(self) -> int:
        bs, n = self.blksize, self.nbytes
        return sum(min(bs, n - k * bs) for k in self.present)


def _array_meta(path: str, zarr: Any) -> _Found:
    what = f"array '{path}'"
    st = _state(zarr, "ZBigArray", what)
    d: dict = {}
    parts = st if isinstance(st, tuple) else (st,)
    for p in parts:
        if isinstance(p, dict):
            d.update(p)
        elif p is not None:
            raise CorruptRecordError(f"{what}: unexpected ZBigArray state {type(p).__name__}")
    try:
        dtype, shape, zfile = d["_dtype"], d["_shape"], d["zfile"]
    except KeyError as e:
        raise CorruptRecordError(f"{what}: ZBigArray state lacks {e.args[0]!r}") from None
    order = d.get("_order", "C")
    if not isinstance(dtype, np.dtype):
        raise CorruptRecordError(f"{what}: its dtype is a {type(dtype).__name__}, not a numpy.dtype")
    if dtype.hasobject:
        raise CorruptRecordError(f"{what}: dtype {dtype} holds Python objects, which an array cannot")
    try:
        shape = tuple(int(n) for n in shape)
    except (TypeError, ValueError):
        raise CorruptRecordError(f"{what}: shape {shape!r} is not a tuple of integers") from None
    if any(n < 0 for n in shape) or order not in ("C", "F"):
        raise CorruptRecordError(f"{what}: shape {shape} / order {order!r} not valid")
    fst = _state(zfile, "ZBigFile", f"{what}: its ZBigFile")
    if not (isinstance(fst, tuple) and len(fst) == 2 and isinstance(fst[0], int) and fst[0] > 0):
        raise CorruptRecordError(f"{what}: unexpected ZBigFile state")
    blksize, blktab = fst
    if not hasattr(blktab, "keys"):
        raise CorruptRecordError(f"{what}: its block table is a {type(blktab).__name__}, not a BTree")
    nbytes = math.prod(shape) * dtype.itemsize
    f = _Found(path, zarr._p_oid, dtype, shape, order, blksize, blktab, nbytes)
    with _Reading(f"{what}: its block table", blktab):
        for k in blktab.keys():
            if not isinstance(k, int) or k < 0:
                raise CorruptRecordError(f"{what}: block number {k!r} in its block table")
            if k * blksize >= nbytes:
                break  # past the array's size (after a shrink): not data
            f.present.append(k)
    return f


def _key_name(key: Any, where: str) -> str:
    if isinstance(key, bytes):
        key = key.decode("utf-8", "replace")
    elif isinstance(key, int) and not isinstance(key, bool):
        key = str(key)
    if not isinstance(key, str) or not key or key in (".", "..") or "/" in key:
        raise WendelinImportError(
            f"the key {key!r} in {where or 'the root'} cannot be part of an outcore array name "
            "(keys are joined with '/')"
        )
    return key


def _walk(root: Any) -> list[_Found]:
    """Every ZBigArray reachable from the root through mappings and BTrees, in key order."""
    from persistent import Persistent

    standins = _standins()
    found: list[_Found] = []
    seen: set = set()

    def items_of(obj: Any, where: str) -> Optional[list]:
        with _Reading(f"the container '{where or '/'}'", obj):
            if isinstance(obj, dict):
                return list(obj.items())
            cls = type(obj)
            if cls.__module__.startswith("BTrees.") or cls.__name__ in ("PersistentMapping", "PersistentDict"):
                if hasattr(obj, "items"):
                    return list(obj.items())
        return None

    def walk(obj: Any, path: str) -> None:
        if isinstance(obj, standins.ZBigArray):
            found.append(_array_meta(path, obj))
            obj._p_deactivate()
            return
        if isinstance(obj, standins.Standin):
            return  # a ZBigFile or block met outside an array: not an array
        if isinstance(obj, Persistent):
            if obj._p_oid in seen:
                return
            seen.add(obj._p_oid)
        items = items_of(obj, path)
        if items is None:
            return
        for k, v in items:
            walk(v, f"{path}/{_key_name(k, path)}" if path else _key_name(k, path))
        if isinstance(obj, Persistent):
            obj._p_deactivate()

    walk(root, "")
    return found


def _zdata_bytes(zdata: Any, conn: Any, what: str) -> Any:
    """The state of a ZData chunk. A ghost's record is read straight from the connection's
    storage view (its snapshot) and unpickled with the import's class lookup, bypassing the
    object cache: about twice as fast for the 512 chunks of a 2 MiB ZBlk1 block."""
    standins = _standins()
    if not isinstance(zdata, standins.ZData) or zdata._p_changed is not None:
        return _state(zdata, "ZData", what)
    with _Reading(what, zdata):
        rec = conn._storage.load(zdata._p_oid)[0]
        u = _CheckUnpickler(io.BytesIO(rec), standins)
        if u.load() is not standins.ZData:
            raise CorruptRecordError(f"{what} (object {_hex(zdata._p_oid)}): its record is not a ZData")
        return u.load()


def _blocks(f: _Found, conn: Any) -> Iterator[tuple[int, bytes]]:
    """(block number, bytes) of the present blocks of `f` in order, each clipped to the array's
    size and possibly shorter than the block (trailing zeros stripped)."""
    standins = _standins()
    bs = f.blksize
    n = 0
    with _Reading(f"array '{f.path}': its block table", f.blktab):
        items = f.blktab.iteritems() if hasattr(f.blktab, "iteritems") else f.blktab.items()
        for k, zblk in items:
            if k * bs >= f.nbytes:
                break
            what = f"array '{f.path}': block {k}"
            if isinstance(zblk, standins.ZBlk0):
                data = _state(zblk, "ZBlk0", what)
                if not isinstance(data, (bytes, bytearray)):
                    raise CorruptRecordError(f"{what} (object {_hex(zblk._p_oid)}): ZBlk0 state is a {type(data).__name__}, not bytes")
                if len(data) > bs:
                    raise CorruptRecordError(f"{what} (object {_hex(zblk._p_oid)}): {len(data)} bytes, more than its block size {bs}")
            elif isinstance(zblk, standins.ZBlk1):
                chunktab = _state(zblk, "ZBlk1", what)
                if not hasattr(chunktab, "items"):
                    raise CorruptRecordError(f"{what} (object {_hex(zblk._p_oid)}): ZBlk1 state is a {type(chunktab).__name__}, not a BTree")
                buf = bytearray()
                with _Reading(f"{what}: its chunk table", chunktab):
                    for off, zdata in chunktab.items():
                        chunk = _zdata_bytes(zdata, conn, f"{what}: chunk at {off}")
                        if not isinstance(chunk, (bytes, bytearray)) or not isinstance(off, int) or off < 0 or off + len(chunk) > bs:
                            raise CorruptRecordError(f"{what}: chunk at {off!r} (object {_hex(zdata._p_oid)}) does not fit its block")
                        if off + len(chunk) > len(buf):
                            buf.extend(bytes(off + len(chunk) - len(buf)))
                        buf[off:off + len(chunk)] = chunk
                        zdata._p_deactivate()
                    chunktab._p_deactivate()
                data = bytes(buf)
            else:
                raise CorruptRecordError(f"{what}: a {type(zblk).__module__}.{type(zblk).__name__}, not a ZBlk0 or ZBlk1")
            zblk._p_deactivate()
            data = data[: f.nbytes - k * bs]
            yield k, data
            n += 1
            if n % 16 == 0:
                conn.cacheGC()


# -- opening the source --------------------------------------------------------------------


def _open_source(src: Union[str, os.PathLike]) -> tuple[Any, Any]:
    """(restricted ZODB DB, storage) of `src`: a FileStorage path or a zodburi URL, read-only."""
    src = os.fspath(src)
    if isinstance(src, bytes):
        src = os.fsdecode(src)
    dbkw: dict = {}
    if "://" in src:
        import zodburi

        scheme = src.split("://", 1)[0]
        url = src
        if scheme in ("file", "zeo") and "read_only=" not in src:
            url += ("&" if "?" in src else "?") + "read_only=1"
        if scheme == "zeo" and "wait_timeout=" not in src:
            url += "&wait_timeout=30"
        try:
            factory, dbkw = zodburi.resolve_uri(url)
        except Exception as e:
            raise WendelinImportError(f"cannot open {src!r}: {e}") from e
        try:
            storage = factory()
        except Exception as e:
            raise WendelinImportError(f"cannot open {src!r}: {type(e).__name__}: {e}") from e
    else:
        from ZODB.FileStorage import FileStorage

        path = os.path.expanduser(src)
        if not os.path.exists(path):
            raise WendelinImportError(f"no ZODB FileStorage at {src!r}")
        try:
            storage = FileStorage(path, read_only=True)
        except Exception as e:
            raise WendelinImportError(f"cannot open the FileStorage {src!r}: {type(e).__name__}: {e}") from e
    for k in ("pool_size", "cache_size", "cache_size_bytes", "database_name"):
        dbkw.pop(k, None)
    try:
        db = _restricted_db_class()(
            storage, cache_size=4000, cache_size_bytes=64 << 20, historical_pool_size=1,
            historical_cache_size=4000, historical_cache_size_bytes=64 << 20, **dbkw)
    except RefusedGlobalError:
        storage.close()
        raise
    except Exception as e:
        storage.close()
        raise WendelinImportError(f"cannot open {src!r} as a ZODB database: {type(e).__name__}: {e}") from e
    return db, storage


# -- writing into outcore ------------------------------------------------------------------


def _flat_bytes(view: np.ndarray, order: str) -> np.ndarray:
    """The writable uint8 view of a whole-array view's memory, in the array's order."""
    v = view.T if order == "F" else view
    return v.reshape(-1).view(np.uint8)


class _Appender:
    """Fills a new outcore array, created empty along its append axis, block by block in
    increasing order. Whole slices along the major axis ("rows") are appended, which writes them
    straight into store extents; runs of absent blocks become `resize` growth (nothing written:
    holes stay holes). A row that straddles the edge of a hole cannot be appended without
    writing zeros into the hole: the array grows over it and its data bytes are written through
    the view afterwards (a few dirty pages, kept in memory until the commit), within
    `VIEW_BUDGET`; past it, such rows are appended with their zeros (the hole's block is then
    stored, holding zeros)."""

    VIEW_BUDGET = 64 << 20

    def __init__(self, A: Any, f: _Found) -> None:
        self.A, self.f = A, f
        nd = len(f.shape)
        self.major = 0 if f.order == "C" else nd - 1
        others = [n for i, n in enumerate(f.shape) if i != self.major]
        self.row = math.prod(others) * f.dtype.itemsize
        self.end = 0  # bytes the array holds (a whole number of rows)
        self.pending = bytearray()  # bytes from `end` on, not appended yet
        self.next_blk = 0  # the block after the last one written
        self.viewed = 0  # bytes of pages written through the view

    def _shape(self, rows: int) -> tuple:
        s = list(self.f.shape)
        s[self.major] = rows
        return tuple(s)

    def _flush(self) -> None:
        k = len(self.pending) // self.row
        if k == 0:
            return
        n = k * self.row
        vals = np.frombuffer(self.pending, dtype=self.f.dtype, count=n // self.f.dtype.itemsize)
        self.A.append(vals.reshape(self._shape(k), order="F" if self.f.order == "F" else "C"))
        del vals
        del self.pending[:n]
        self.end += n

    def _grow(self, rows: int) -> None:
        if rows > 0:
            self.end += rows * self.row
            self.A.resize(self._shape(self.end // self.row))

    def _can_view(self, lo: int, n: int) -> bool:
        pages = ((lo + n - 1) >> 12) - (lo >> 12) + 1
        if self.viewed + (pages << 12) > self.VIEW_BUDGET:
            return False
        self.viewed += pages << 12
        return True

    def _view_write(self, lo: int, data: Union[bytes, bytearray]) -> None:
        if data:
            flat = _flat_bytes(self.A[...], self.f.order)
            flat[lo:lo + len(data)] = np.frombuffer(data, np.uint8)
            del flat

    def _close_run(self) -> None:
        """Ends a run of present blocks before a hole: the partial row after the run's last
        byte is written without touching the hole."""
        hb = min(self.next_blk * self.f.blksize, self.f.nbytes)
        cur = self.end + len(self.pending)
        if hb > cur:
            self.pending.extend(bytes(hb - cur))
        self._flush()
        if not self.pending:
            return
        at, tail = self.end, bytes(self.pending)
        self.pending.clear()
        if self._can_view(at, len(tail)):
            self._grow(1)
            self._view_write(at, tail)
        else:
            self.pending.extend(tail + bytes(self.row - len(tail)))
            self._flush()

    def write(self, k: int, data: bytes) -> None:
        if self.row == 0:
            return
        at = k * self.f.blksize
        deferred = None
        if k > self.next_blk:  # a hole before this block
            self._close_run()
            if at > self.end:
                self._grow((at - self.end) // self.row)
            if at > self.end and data:  # the row at `end` starts in the hole
                n = min(len(data), self.end + self.row - at)
                if self._can_view(at, n):
                    self._grow(1)
                    deferred = (at, data[:n])  # written once the block's extent is staged
                    data, at = data[n:], at + n
                else:
                    self.pending.extend(bytes(at - self.end))
        if at < self.end and data:  # inside a row already grown over
            n = min(len(data), self.end - at)
            self._view_write(at, data[:n])
            data, at = data[n:], at + n
        if data:
            cur = self.end + len(self.pending)
            if at > cur:
                self.pending.extend(bytes(at - cur))
            self.pending.extend(data)
            self._flush()
        if deferred is not None:
            self._view_write(*deferred)
        self.next_blk = k + 1

    def finish(self) -> None:
        if self.row:
            if self.next_blk * self.f.blksize < self.f.nbytes:
                self._close_run()
            else:
                cur = self.end + len(self.pending)
                self.pending.extend(bytes(self.f.nbytes - cur))
                self._flush()
            assert not self.pending
            self._grow((self.f.nbytes - self.end) // self.row)
        if tuple(self.A.shape) != self.f.shape:
            self.A.resize(self.f.shape)


def _outcore_blksize(f: _Found) -> Optional[int]:
    bs = f.blksize
    if bs & (bs - 1) == 0 and 4096 <= bs <= 256 << 20:
        return bs
    log.warning("array '%s': block size %d is not one outcore stores (a power of two from 4 KiB to "
                "256 MiB); the store's default is used", f.path, bs)
    return None


def _create(root: Any, f: _Found, *, empty: bool) -> Any:
    shape = f.shape
    if empty and shape:
        shape = tuple(0 if i == (0 if f.order == "C" else len(shape) - 1) else n for i, n in enumerate(shape))
    return root.create(f.path, shape, f.dtype, order=f.order, blksize=_outcore_blksize(f))


def _import_array(root: Any, f: _Found, zconn: Any, sums: dict, tick: Callable[[int], None]) -> None:
    blocks = _blocks(f, zconn)
    bs = f.blksize
    crcs: list = []
    if not f.shape:  # 0-d: one element, written through the view
        A = _create(root, f, empty=False)
        for k, data in blocks:
            _flat_bytes(A[...], f.order)[: len(data)] = np.frombuffer(data, np.uint8)
            crcs.append((k, len(data), zlib.crc32(data)))
            tick(len(data))
    else:
        A = _create(root, f, empty=True)
        w = _Appender(A, f)
        for k, data in blocks:
            w.write(k, data)
            crcs.append((k, len(data), zlib.crc32(data)))
            tick(min(bs, f.nbytes - k * bs))
        w.finish()
    sums[f.path] = crcs


# -- verification --------------------------------------------------------------------------


class _DstReader:
    """Reads an imported array's bytes through views of a connection that is replaced every
    64 MiB read, so that the mapped pages of what was read are released (memory stays bounded)."""

    SPAN = 64 << 20

    def __init__(self, db: Any, f: _Found) -> None:
        self.db, self.f = db, f
        self.conn: Any = None
        self.flat: Any = None
        self.read = 0

    def _open(self) -> None:
        self.close()
        self.conn = self.db.connect(transaction_manager=_tm())
        A = self.conn.root[self.f.path]
        f = self.f
        if tuple(A.shape) != f.shape or A.dtype != f.dtype or A.order != f.order:
            raise WendelinImportError(
                f"verify: array '{f.path}' is {A.shape} {A.dtype} {A.order}, the source {f.shape} {f.dtype} {f.order}")
        self.flat = _flat_bytes(A[...], f.order)
        self.read = 0

    def get(self, lo: int, hi: int) -> np.ndarray:
        if self.flat is None or self.read > self.SPAN:
            self._open()
        self.read += hi - lo
        return self.flat[lo:hi]

    def zeros(self, lo: int, hi: int) -> bool:
        for a in range(lo, hi, self.SPAN):
            if self.get(a, min(a + self.SPAN, hi)).any():
                return False
        return True

    def close(self) -> None:
        self.flat = None
        if self.conn is not None:
            self.conn.close()
            self.conn = None
            gc.collect()  # the connection's arrays and views refer to it in cycles


def _verify(db: Any, found: list[_Found], sums: dict) -> dict:
    """Re-reads every imported array and compares it with the source's block checksums (and
    that the bytes outside the source's block data are zeros)."""
    arrays = blocks = nbytes = 0
    for f in found:
        r = _DstReader(db, f)
        try:
            r.get(0, 0)  # opens it: checks shape, dtype and order
            bs = f.blksize
            pos = 0
            for k, n, crc in sums[f.path]:
                lo = k * bs
                if not r.zeros(pos, lo):
                    raise WendelinImportError(f"verify: array '{f.path}': bytes {pos}..{lo} (absent blocks) are not zeros")
                if zlib.crc32(r.get(lo, lo + n).data) != crc:
                    raise WendelinImportError(f"verify: array '{f.path}': block {k} differs from the source")
                hi = min(lo + bs, f.nbytes)
                if not r.zeros(lo + n, hi):
                    raise WendelinImportError(f"verify: array '{f.path}': block {k} has non-zero bytes past its data")
                pos = hi
                blocks += 1
                nbytes += n
            if not r.zeros(pos, f.nbytes):
                raise WendelinImportError(f"verify: array '{f.path}': bytes past its last block are not zeros")
        finally:
            r.close()
        arrays += 1
    return {"arrays": arrays, "blocks": blocks, "bytes": nbytes}


def _source_sums(found: list[_Found], zconn: Any) -> dict:
    return {f.path: [(k, len(d), zlib.crc32(d)) for k, d in _blocks(f, zconn)] for f in found}


# -- the import ----------------------------------------------------------------------------


def _tm() -> Any:
    import transaction

    return transaction.TransactionManager()


_STORE_FILES = ("", ".blocks", ".readers", "-wal", "-shm", "-journal")


def _open_dst(dst: Any) -> tuple[Any, bool, list]:
    """(database, whether to close it, files to remove if the import fails: those of a local
    store this call creates)."""
    from outcore._open import location
    from outcore._open import open as oc_open
    from outcore._db import Db

    if isinstance(dst, Db):
        return dst, False, []
    loc = location(dst)
    created: list = []
    if not loc.startswith(("postgresql://", "postgres://")):
        path = loc.split(":", 1)[1] if loc.startswith("sqlite:") else loc
        path = path[2:] if path.startswith("//") else path
        created = [path + ext for ext in _STORE_FILES if not os.path.lexists(path + ext)]
        if path not in created:
            created = []
    return oc_open(dst, mode="a"), True, created


def _check_names(root: Any, found: list[_Found], overwrite: bool) -> None:
    from outcore._group import Group

    for f in found:
        if f.path in root:
            existing = root[f.path]
            if isinstance(existing, Group):
                raise AlreadyExistsError(f"'{f.path}' is a group in the destination: not replaced by an array")
            if not overwrite:
                raise AlreadyExistsError(
                    f"an array named '{f.path}' exists in the destination (overwrite=True / --overwrite "
                    "replaces it)")


def import_wendelin(
    src: Union[str, os.PathLike],
    dst: Any,
    *,
    verify: bool = False,
    overwrite: bool = False,
    history: bool = False,
    progress: Optional[Callable[[int, int], Any]] = None,
) -> dict:
    """Imports every wendelin.core `ZBigArray` of the ZODB database `src` into the outcore
    database `dst`.

    `src`: a FileStorage path, or a ZODB URL `zodburi` resolves (`zeo://host:port`,
    `file:///path/Data.fs`, ...); opened read-only. `dst`: an outcore path or URL (created if
    missing) or an open `outcore.Db`.

    Each array reachable from the ZODB root through mappings, `PersistentMapping`s and BTrees
    becomes the outcore array named by its key path joined with `/` (`root['nested']['bytes']`
    -> `nested/bytes`), with its shape, dtype, order and block size; absent blocks stay holes.
    Records are unpickled with a class lookup that allows only what the layout needs:
    `RefusedGlobalError` names any other global (never imported, never called).

    The whole import is one outcore commit (an error aborts it and leaves `dst` as it was),
    unless `history=True`: then every readable ZODB transaction becomes an outcore commit with
    its user and note, the ZODB tid and time in its extension (`{"zodb": {"tid", "time"}}`);
    transactions whose objects were packed away are skipped. An existing array of the same name
    is an `outcore.AlreadyExistsError` unless `overwrite=True`. `verify=True` re-reads every
    imported array and compares per-block checksums with the source's (and that holes read
    zeros). `progress(done, total)` is called as blocks are imported, in bytes of block data
    (with `history=True`: in ZODB transactions replayed).

    Returns a dict: `arrays` (name -> {shape, dtype, order, blksize, blocks, bytes}), `bytes`,
    `seconds`, `commits` (outcore tids), `skipped` (ZODB transactions not readable), and with
    `verify`, `verified` ({arrays, blocks, bytes}).
    """
    import time

    t0 = time.monotonic()
    quiet = _QuietLoadErrors()
    zlog = logging.getLogger("ZODB.Connection")
    zlog.addFilter(quiet)
    try:
        return _import(src, dst, verify, overwrite, history, progress, t0)
    finally:
        zlog.removeFilter(quiet)


def _import(src: Any, dst: Any, verify: bool, overwrite: bool, history: bool,
            progress: Optional[Callable[[int, int], Any]], t0: float) -> dict:
    import time

    zdb, storage = _open_source(src)
    try:
        zconn = zdb.open(transaction_manager=_tm())
        try:
            with _Reading("the root object"):
                root = zconn.root()
                root._p_activate()
            found = _walk(root)
            total = sum(f.data_bytes for f in found)
            paths = [f.path for f in found]
            dup = {p for p in paths if paths.count(p) > 1}
            if dup:
                raise WendelinImportError(f"several arrays would be named {sorted(dup)}")
            done = [0]

            def tick(n: int) -> None:
                done[0] += n
                if progress is not None:
                    progress(done[0], total)

            result: dict = {"arrays": {}, "commits": [], "skipped": []}
            db, close_db, created = _open_dst(dst)
            ok = False
            try:
                if history:
                    _replay(zdb, storage, db, found, overwrite, progress, result)
                    if verify:
                        sums = _source_sums(found, zconn)
                else:
                    sums = {}
                    tm = _tm()
                    conn = db.connect(transaction_manager=tm)
                    try:
                        txn = tm.begin()
                        txn.note(f"import of the wendelin.core database {os.fspath(src)}")
                        _check_names(conn.root, found, overwrite)
                        for f in found:
                            if f.path in conn.root:
                                del conn.root[f.path]
                            _import_array(conn.root, f, zconn, sums, tick)
                        tm.commit()
                        result["commits"].append(conn.tid)
                    except BaseException:
                        tm.abort()
                        raise
                    finally:
                        conn.close()
                for f in found:
                    result["arrays"][f.path] = {
                        "shape": f.shape, "dtype": f.dtype, "order": f.order, "blksize": f.blksize,
                        "blocks": len(f.present), "bytes": f.data_bytes,
                    }
                result["bytes"] = total
                if verify:
                    result["verified"] = _verify(db, found, sums)
                ok = True
            finally:
                if close_db:
                    db.close()
                if not ok and not result.get("commits"):
                    for p in created:  # the store this call created and left empty
                        if os.path.lexists(p):
                            os.remove(p)
        finally:
            zconn.close()
    finally:
        zdb.close()
    result["seconds"] = time.monotonic() - t0
    return result


# -- history replay --------------------------------------------------------------------------


@dataclass
class _Seen:
    """An array as a replayed transaction left it."""

    oid: bytes
    dtype: np.dtype
    order: str
    shape: tuple
    blksize: int
    fps: dict  # block number -> fingerprint (oids of the block's objects)


def _fingerprints(f: _Found) -> dict:
    """block -> (block oid, ((chunk offset, ZData oid), ...)) for the present blocks of `f`,
    loading no block data (ZBlk1 chunk tables only)."""
    standins = _standins()
    out: dict = {}
    with _Reading(f"array '{f.path}': its block table", f.blktab):
        for k, zblk in f.blktab.items():
            if k * f.blksize >= f.nbytes:
                break
            if isinstance(zblk, standins.ZBlk1):
                chunktab = _state(zblk, "ZBlk1", f"array '{f.path}': block {k}")
                with _Reading(f"array '{f.path}': block {k}: its chunk table", chunktab):
                    chunks = tuple((off, z._p_oid) for off, z in chunktab.items())
                out[k] = (zblk._p_oid, chunks)
            else:
                out[k] = (getattr(zblk, "_p_oid", None), ())
    return out


def _replay(zdb: Any, storage: Any, db: Any, final: list[_Found], overwrite: bool,
            progress: Optional[Callable[[int, int], Any]], result: dict) -> None:
    """Replays the ZODB transactions as outcore commits (`progress(done, total)` counts
    transactions)."""
    from persistent.TimeStamp import TimeStamp
    from ZODB.POSException import POSKeyError

    ntxn = _precheck(storage)
    last = storage.lastTransaction()
    tm = _tm()
    conn = db.connect(transaction_manager=tm)
    try:
        _check_names(conn.root, final, overwrite)
        prev: dict[str, _Seen] = {}
        owned: set = set()  # names this import created
        changed: set = set()  # oids changed since the last replayed transaction
        for i, ztxn in enumerate(storage.iterator()):
            tid = ztxn.tid
            changed |= {r.oid for r in ztxn}
            hconn = zdb.open(transaction_manager=_tm(), at=tid)
            try:
                txn = tm.begin()
                user = ztxn.user.decode("utf-8", "replace") if isinstance(ztxn.user, bytes) else str(ztxn.user or "")
                note = ztxn.description
                note = note.decode("utf-8", "replace") if isinstance(note, bytes) else str(note or "")
                when = datetime.datetime.fromtimestamp(TimeStamp(tid).timeTime(), datetime.timezone.utc)
                txn.user = user
                if note:
                    txn.note(note)
                ext = _extension(ztxn)
                ext["zodb"] = {"tid": tid.hex(), "time": when.isoformat()}
                for k, v in ext.items():
                    txn.extension[k] = v
                try:
                    root = hconn.root()
                    root._p_activate()
                    found = _walk(root)
                    cur = {f.path: (f, _fingerprints(f)) for f in found}
                    nxt = dict(prev)
                    for path in [p for p in prev if p not in cur or cur[p][0].oid != prev[p].oid]:
                        del conn.root[path]
                        del nxt[path]
                    for path, (f, fps) in cur.items():
                        _replay_array(conn.root, f, fps, nxt.get(path), changed, hconn, owned, overwrite)
                        nxt[path] = _Seen(f.oid, f.dtype, f.order, f.shape, f.blksize, fps)
                except (MissingObjectError, POSKeyError) as e:
                    # Objects of this state were packed away: its changes come with the next
                    # readable transaction. The last state must be readable.
                    tm.abort()
                    if tid == last:
                        raise
                    result["skipped"].append(tid.hex())
                    log.info("ZODB transaction %s skipped: not readable (%s)", tid.hex(), e)
                    continue
                except BaseException:
                    tm.abort()
                    raise
                if conn.has_changes():
                    tm.commit()
                    result["commits"].append(conn.tid)
                else:
                    tm.abort()
                prev = nxt
                changed = set()
            finally:
                hconn.cacheMinimize()
                hconn.close()
                if progress is not None:
                    progress(i + 1, ntxn)
    finally:
        conn.close()


def _block_bytes(f: _Found, k: int, zconn: Any) -> bytes:
    """Block `k` of `f` (b"" if absent)."""
    zblk = f.blktab.get(k)
    if zblk is None:
        return b""
    one = _Found(f.path, f.oid, f.dtype, f.shape, f.order, f.blksize, _One(k, zblk), f.nbytes)
    for _k, data in _blocks(one, zconn):
        return data
    return b""


class _One:
    """A one-entry block table."""

    def __init__(self, k: int, zblk: Any) -> None:
        self.k, self.zblk = k, zblk

    def items(self) -> list:
        return [(self.k, self.zblk)]


def _replay_array(root: Any, f: _Found, fps: dict, seen: Optional[_Seen], changed: set, zconn: Any,
                  owned: set, overwrite: bool) -> None:
    bs = f.blksize
    if seen is not None and (seen.dtype != f.dtype or seen.order != f.order or seen.blksize != f.blksize):
        del root[f.path]
        seen = None
    if seen is None:
        if f.path in root:
            if f.path not in owned and not overwrite:
                raise AlreadyExistsError(
                    f"an array named '{f.path}' exists in the destination (overwrite=True / --overwrite "
                    "replaces it)")
            del root[f.path]
        A = _create(root, f, empty=False)
        owned.add(f.path)
        dirty = set(fps)
    else:
        A = root[f.path]
        old_nbytes = math.prod(seen.shape) * f.dtype.itemsize
        if seen.shape != f.shape:
            A.resize(f.shape)
        dirty = set()
        for k, fp in fps.items():
            zoids = {fp[0], *(oid for _off, oid in fp[1])}
            if seen.fps.get(k) != fp or zoids & changed:
                dirty.add(k)
            elif (k + 1) * bs > old_nbytes and f.nbytes > old_nbytes:
                dirty.add(k)  # growth exposes what the block held past the old end, as wendelin did
        gone = [k for k in seen.fps if k not in fps and k * bs < f.nbytes]
        dirty.update(gone)
    if not dirty:
        return
    flat = _flat_bytes(A[...], f.order)
    for k in sorted(dirty):
        lo = k * bs
        hi = min(lo + bs, f.nbytes)
        data = _block_bytes(f, k, zconn) if k in fps else b""
        n = len(data)
        if n:
            flat[lo:lo + n] = np.frombuffer(data, np.uint8)
        if lo + n < hi:
            flat[lo + n:hi] = 0
    del flat
