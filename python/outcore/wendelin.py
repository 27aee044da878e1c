"""`python -m outcore.wendelin SRC DST [--verify] [--history] [--overwrite]`: imports the
wendelin.core arrays of a ZODB database (a FileStorage path, or a URL such as
`zeo://host:port`) into the outcore database DST (see `outcore.import_wendelin`).

Prints one line per imported array, then the totals; a progress bar on stderr when it is a
terminal. Exit status 0 on success, 1 when the import failed (the message names what failed;
DST is left as it was, except for the transactions already replayed with `--history`), 2 for
usage errors."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable, Optional, TextIO


def _bar(out: TextIO, unit: str) -> Callable[[int, int], None]:
    """A progress bar drawn on `out` (a terminal), at most ten times a second."""
    t0 = time.monotonic()
    last = [0.0]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < 0.1 and done < total:
            return
        last[0] = now
        frac = done / total if total else 1.0
        width = 30
        fill = int(frac * width)
        if unit == "bytes":
            rate = done / max(now - t0, 1e-9) / 1e6
            what = f"{done / 2**20:9.1f} / {total / 2**20:.1f} MiB  {rate:6.1f} MB/s"
        else:
            what = f"{done} / {total} transactions"
        out.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {frac * 100:5.1f}%  {what}")
        if done >= total:
            out.write("\n")
        out.flush()

    return show


def main(argv: Optional[list] = None, prog: str = "python -m outcore.wendelin") -> int:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Import the wendelin.core arrays (ZBigArray) of a ZODB database into outcore.",
    )
    p.add_argument("src", metavar="SRC", help="ZODB FileStorage path, or URL (zeo://host:port, file:///path)")
    p.add_argument("dst", metavar="DST", help="outcore database path or URL (created if missing)")
    p.add_argument("--verify", action="store_true", help="re-read every imported array and compare checksums")
    p.add_argument("--history", action="store_true",
                   help="replay every ZODB transaction as an outcore commit (user, note, time)")
    p.add_argument("--overwrite", action="store_true", help="replace arrays of the same name in DST")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar, no per-array lines")
    args = p.parse_args(argv)

    import outcore

    progress: Any = None
    if not args.quiet and sys.stderr.isatty():
        progress = _bar(sys.stderr, "transactions" if args.history else "bytes")
    try:
        r = outcore.import_wendelin(args.src, args.dst, verify=args.verify, overwrite=args.overwrite,
                                    history=args.history, progress=progress)
    except ImportError as e:  # the optional dependencies are missing
        print(f"outcore import-wendelin: {e} (pip install 'outcore[wendelin]')", file=sys.stderr)
        return 1
    except outcore.Error as e:
        print(f"outcore import-wendelin: {e}", file=sys.stderr)
        return 1
    if not args.quiet:
        for name, a in r["arrays"].items():
            print(f"{name}: shape {tuple(a['shape'])} {a['dtype']} order {a['order']}, "
                  f"{a['blocks']} blocks of {a['blksize']} bytes")
    mb = r["bytes"] / 1e6
    line = (f"imported {len(r['arrays'])} arrays, {mb:.1f} MB in {r['seconds']:.2f} s "
            f"({mb / max(r['seconds'], 1e-9):.1f} MB/s), {len(r['commits'])} commit(s)")
    if r["skipped"]:
        line += f", {len(r['skipped'])} ZODB transaction(s) not readable (packed) skipped"
    if "verified" in r:
        v = r["verified"]
        line += f"; verified {v['arrays']} arrays, {v['blocks']} blocks"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
