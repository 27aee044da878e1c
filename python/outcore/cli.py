"""The `outcore` command of the Python package (console script `outcore`, `python -m outcore`).

Every command is the Rust one (`outcore-cli`, run in-process through
`outcore._outcore.cli_main`), except `export`/`import` of zarr (v3) and HDF5 files, which are
done here through zarr-python and h5py, the libraries that own those formats (writing HDF5 from
Rust would need libhdf5 in the wheel; zarr's codecs and chunk layouts are zarr-python's). They
stream slab by slab: a slab is about one block of whole rows along the array's major axis (axis 0
for C order, the last axis for F order). An import commits every 256 MiB (an interrupted import
leaves the part committed so far; `.npy` imports, done in Rust, are one commit).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Any, Optional, Sequence

from outcore import _outcore

#: Bytes an import of zarr or HDF5 writes between commits.
IMPORT_COMMIT_BYTES = 256 << 20

_GLOBAL_FLAGS = {"--json", "--quiet", "-q"}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command with `argv` (default: `sys.argv`); returns the exit status."""
    args = list(sys.argv if argv is None else argv)
    args[0] = "outcore"
    if len(args) > 1 and args[1] == "import-wendelin":
        # Reading ZODB pickles is Python's job (ZODB, BTrees, zodbpickle): `outcore.wendelin`.
        from outcore import wendelin

        return wendelin.main(args[2:], prog="outcore import-wendelin")
    try:
        handled = _python_formats(args)
    except _Failure as e:
        print(f"outcore: error: {e}", file=sys.stderr)
        return 1
    if handled is not None:
        return handled
    # The Rust command runs without the GIL: let Ctrl-C and a closed pipe end it as they end
    # any command-line program.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.stdout.flush()
    return _outcore.cli_main(args)


def run() -> None:
    """The console script's entry point."""
    sys.exit(main())


class _Failure(Exception):
    pass


def _format_of(path: str, given: Optional[str]) -> str:
    if given:
        return given
    p = path.rstrip("/").lower()
    if p.endswith(".zarr"):
        return "zarr"
    if p.endswith((".h5", ".hdf5")):
        return "hdf5"
    return "npy"  # or unknown: the Rust command says which


def _python_formats(args: list[str]) -> Optional[int]:
    """Run `export`/`import` of zarr and HDF5 here; None for everything else."""
    words = [a for a in args[1:] if a not in _GLOBAL_FLAGS]
    if not words or words[0] not in ("export", "import") or "-h" in words or "--help" in words:
        return None
    p = argparse.ArgumentParser(prog=f"outcore {words[0]}", add_help=False)
    p.add_argument("store")
    p.add_argument("array")
    p.add_argument("file")
    p.add_argument("--format", choices=["npy", "zarr", "hdf5"])
    if words[0] == "export":
        p.add_argument("--at", type=int)
    else:
        p.add_argument("--blksize", type=int)
        p.add_argument("--replace", action="store_true")
        p.add_argument("--note")
    try:
        ns, _ = p.parse_known_args(words[1:])
    except SystemExit:
        return None  # let the Rust command report the usage error
    fmt = _format_of(ns.file, ns.format)
    if fmt not in ("zarr", "hdf5"):
        return None
    ui = _Ui(json="--json" in args, quiet="--quiet" in args or "-q" in args)
    if words[0] == "export":
        _export(ns.store, ns.array, ns.file, ns.at, fmt, ui)
    else:
        _import(ns.store, ns.array, ns.file, fmt, ns.blksize, ns.replace, ns.note, ui)
    return 0


class _Ui:
    def __init__(self, json: bool, quiet: bool) -> None:
        self.json = json
        self.quiet = quiet
        self.tty = sys.stderr.isatty() and not json and not quiet

    def progress(self, what: str, done: int, total: int, t0: float) -> None:
        if not self.tty:
            return
        frac = done / total if total else 1.0
        rate = done / max(time.monotonic() - t0, 1e-9) / 2**20
        bar = "#" * int(frac * 40)
        sys.stderr.write(f"\r{what:>8} [{bar:<40}] {done / 2**20:.1f}/{total / 2**20:.1f} MiB {rate:.0f} MiB/s")
        sys.stderr.flush()

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\r" + " " * 100 + "\r")

    def report(self, doc: dict[str, Any], line: str) -> None:
        if self.json:
            print(json.dumps(doc, indent=2))
        elif not self.quiet:
            print(line)


def _need(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise _Failure(f"this format needs the {module} package: pip install {module}") from None


def _is_postgres(location: str) -> bool:
    return location.startswith(("postgresql://", "postgres://"))


def _slabs(shape: tuple[int, ...], order: str, itemsize: int, blksize: int) -> Any:
    """Index tuples of slabs of about one block of whole rows along the major axis."""
    if len(shape) == 0:
        yield ()
        return
    axis = 0 if order == "C" else len(shape) - 1
    row = itemsize
    for i, n in enumerate(shape):
        if i != axis:
            row *= n
    step = max(1, blksize // max(row, 1))
    for start in range(0, shape[axis], step):
        idx: list[Any] = [slice(0, n) for n in shape]
        idx[axis] = slice(start, min(start + step, shape[axis]))
        yield tuple(idx)


def _export(store: str, name: str, file: str, at: Optional[int], fmt: str, ui: _Ui) -> None:
    import numpy as np

    from outcore._dtype import from_descr

    lib = _need("zarr" if fmt == "zarr" else "h5py")
    t0 = time.monotonic()
    # Read straight from the store, block by block (nothing mapped: memory stays at one slab);
    # the store must exist.
    try:
        r = _outcore.open_array_reader(store, name, at)
    except (OSError, ValueError) as e:
        raise _Failure(str(e)) from None
    shape, order, dtype = tuple(r.shape), r.order, from_descr(r.dtype)
    chunks = _chunk_shape(shape, order, dtype.itemsize, r.blksize)
    if fmt == "zarr":
        out = lib.create_array(store=file, shape=shape, dtype=dtype, chunks=chunks, zarr_format=3, overwrite=True)
        h5 = None
    else:
        h5 = lib.File(file, "w")
        out = h5.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks or None)
    done = 0
    try:
        for idx in _slabs(shape, order, dtype.itemsize, r.blksize):
            # A slab of whole rows along the major axis is one contiguous byte range.
            sub = tuple(s.stop - s.start for s in idx)
            nbytes = int(np.prod(sub, dtype=np.int64)) * dtype.itemsize
            first = 0
            if sub:
                axis = 0 if order == "C" else len(sub) - 1
                first = idx[axis].start * (nbytes // sub[axis] if sub[axis] else 0)
            raw = np.frombuffer(r.read(first, first + nbytes), dtype=dtype)
            slab = raw.reshape(sub, order="F") if order == "F" else raw.reshape(sub)
            out[idx] = slab
            done += nbytes
            ui.progress("export", done, r.nbytes, t0)
    finally:
        if h5 is not None:
            h5.close()
        r.close()
        ui.done()
    secs = time.monotonic() - t0
    ui.report(
        {"array": name, "tid": r.tid, "file": file, "format": fmt, "bytes": r.nbytes, "seconds": secs},
        f"exported '{name}' at tid {r.tid} ({dtype.str}, {shape}) to {file} ({fmt}) in {secs:.1f} s",
    )


def _chunk_shape(shape: tuple[int, ...], order: str, itemsize: int, blksize: int) -> Optional[tuple[int, ...]]:
    if len(shape) == 0 or 0 in shape:
        return None
    idx = next(iter(_slabs(shape, order, itemsize, blksize)))
    return tuple(s.stop - s.start for s in idx)


def _import(
    store: str, name: str, file: str, fmt: str, blksize: Optional[int], replace: bool, note: Optional[str], ui: _Ui
) -> None:
    import numpy as np

    lib = _need("zarr" if fmt == "zarr" else "h5py")
    import outcore

    t0 = time.monotonic()
    h5 = None
    if fmt == "zarr":
        src = lib.open_array(file, mode="r")
    else:
        h5 = lib.File(file, "r")
        datasets = [k for k in h5 if isinstance(h5[k], lib.Dataset)]
        if name in datasets:
            src = h5[name]
        elif len(datasets) == 1:
            src = h5[datasets[0]]
        else:
            raise _Failure(f"{file} has datasets {datasets}: none is named '{name}'")
    try:
        shape, dtype = tuple(src.shape), np.dtype(src.dtype)
        db = outcore.open(store)
        conn = db.connect(transaction_manager=False)
        if name in conn.root:
            if not replace:
                raise _Failure(f"the store already has an array '{name}' (give --replace to replace it)")
            del conn.root[name]
        a = conn.root.create(name, shape, dtype, blksize=blksize)
        note = note or f"outcore import {file} as {name}"
        total = a.nbytes
        done = pending = 0
        part = 1
        for idx in _slabs(shape, "C", dtype.itemsize, a.blksize):
            slab = np.asarray(src[idx])
            a[idx] = slab
            done += slab.nbytes
            pending += slab.nbytes
            if pending >= IMPORT_COMMIT_BYTES and done < total:
                conn.commit(note=f"{note} (part {part})")
                part += 1
                pending = 0
            ui.progress("import", done, total, t0)
        tid = conn.commit(note=note if part == 1 else f"{note} (part {part}, last)")
    finally:
        if h5 is not None:
            h5.close()
        ui.done()
    secs = time.monotonic() - t0
    ui.report(
        {"array": name, "tid": tid, "file": file, "format": fmt, "bytes": total, "commits": part, "seconds": secs},
        f"imported {file} ({dtype.str}, {shape}) as '{name}' in tid {tid} ({part} commits) in {secs:.1f} s",
    )
