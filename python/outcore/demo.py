"""The original system's demo, re-created: `python -m outcore.demo [gen|read|all]`.

`gen` creates a float64 array and fills it with S(t) = 15 sin(0.2 t) chunk by chunk (32 MiB
per transaction, each committed with a note); `read` reopens the database and prints the shape,
size, mean and sum computed over the whole-array view, then the process VIRT and RSS (split
into the process's own memory, which stays small whatever the array size, and mapped pages of
the kernel's page cache, which the kernel reclaims under memory pressure), and a short summary
of what happened. Running `gen` again on the same store replaces the array and garbage-collects
the old one's history, so the store does not grow from run to run.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

import numpy as np
import transaction

import outcore

MiB = 1 << 20
CHUNK = 32 * MiB
NAME = "signal"


def _signal(start: int, stop: int) -> np.ndarray:
    return 15.0 * np.sin(0.2 * np.arange(start, stop, dtype=np.float64))


def _progress(label: str, done: int, total: int, t0: float) -> None:
    rate = done / MiB / max(time.monotonic() - t0, 1e-9)
    end = "\n" if done >= total else "\r"
    print(f"{label}: {done // MiB}/{total // MiB} MiB ({rate:.0f} MiB/s)", end=end, file=sys.stderr, flush=True)


def _vm() -> str:
    try:
        with open("/proc/self/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        # Local stores map the data file: its pages (RssFile) are the kernel's page cache, shared
        # between processes and reclaimed under memory pressure; RssAnon is this process's own.
        return (
            f"VIRT {fields['VmSize'].strip()}, RSS {fields['VmRSS'].strip()} "
            f"(anonymous {fields['RssAnon'].strip()}, page cache {fields['RssFile'].strip()})"
        )
    except (OSError, KeyError):
        return "VIRT/RSS unavailable"


def gen(path: str, size_mib: int, cache_mib: int | None) -> None:
    db = outcore.open(path, cache=None if cache_mib is None else cache_mib * MiB)
    conn = db.connect()
    if NAME in conn.root:
        del conn.root[NAME]
        transaction.get().note(f"demo: drop the previous {NAME}")
        transaction.commit()
        freed = db.gc()
        print(f"gen: replaced the previous {NAME} (gc: {freed})")
    n = size_mib * MiB // 8
    A = conn.root.create(NAME, n, np.float64)
    transaction.get().note(f"create {NAME} of {n} float64")
    transaction.commit()
    step = CHUNK // 8
    t0 = time.monotonic()
    for start in range(0, n, step):
        stop = min(start + step, n)
        A[start:stop] = _signal(start, stop)
        transaction.get().note(f"gen {NAME}[{start}:{stop}]")
        transaction.commit()
        _progress("gen", stop * 8, n * 8, t0)
    print(f"gen: {n} values in {time.monotonic() - t0:.1f} s; {_vm()}")


def read(path: str, cache_mib: int | None, verify: bool) -> None:
    # The same bytes read through the store instead of a mapping, for the summary.
    checked = _check(path)
    db = outcore.open(path, cache=None if cache_mib is None else cache_mib * MiB)
    conn = db.connect()
    A = conn.root[NAME]
    print(f"shape {A.shape}, size {A.size} ({A.nbytes // MiB} MiB)")
    t0 = time.monotonic()
    a = A[:]
    mean = a.mean()
    total = a.sum()
    print(f"mean {mean:.6f}, sum {total:.3f} ({time.monotonic() - t0:.1f} s)")
    if verify:
        step = CHUNK // 8
        t0 = time.monotonic()
        for start in range(0, A.size, step):
            stop = min(start + step, A.size)
            if not np.array_equal(a[start:stop], _signal(start, stop)):
                raise SystemExit(f"verify: wrong values in [{start}, {stop})")
            _progress("verify", stop * 8, A.nbytes, t0)
        print("verify: every value is right")
    print(_vm())
    _summary(db, A.nbytes, cache_mib, checked)


def _status() -> dict[str, int]:
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if v.strip().endswith("kB"):
                    out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


def _check(path: str) -> tuple[str, int]:
    """Run `outcore check` on the store in a child process (started while this process is still
    small, since a child's peak RSS counts the parent's pages it was forked with): (verdict, its
    peak RSS in bytes)."""
    r = subprocess.run([sys.executable, "-m", "outcore", "--quiet", "check", path], capture_output=True, text=True)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    verdict = "every block verified" if r.returncode == 0 else f"FAILED: {r.stdout.strip()} {r.stderr.strip()}"
    return verdict, peak


def _summary(db: outcore.Db, nbytes: int, cache_mib: int | None, checked: tuple[str, int]) -> None:
    st = _status()
    history = db.history()
    notes = [t.get("description", "") for t in history]
    gen_commits = sum(1 for d in notes if d.startswith("gen "))
    where = db.location
    files = [where + sfx for sfx in ("", "-wal", ".blocks") if os.path.exists(where + sfx)]
    disk = sum(os.stat(f).st_blocks * 512 for f in files)
    cache = (cache_mib or 1024) * MiB
    print("\nwhat just happened:")
    print(f"  - gen wrote {nbytes / MiB:.0f} MiB of float64 in {gen_commits} durable commits of 32 MiB each")
    others = len(history) - gen_commits
    print(f"    (plus {others} other{'' if others == 1 else 's'}); the store's history has {len(history)} commits.")
    print("  - read reopened the store in a new process and scanned the whole array as one NumPy view:")
    print(f"    the array is {nbytes / MiB:.0f} MiB, {nbytes / cache:.1f}x the cache budget ({cache / MiB:.0f} MiB).")
    if st:
        print(
            f"  - this process's own memory (anonymous RSS) is {st.get('RssAnon', 0) / MiB:.0f} MiB; its RSS also "
            f"counts {st.get('RssFile', 0) / MiB:.0f} MiB of mapped pages of the kernel's page cache (a local "
            "store's array is a mapping of its data file: shared, reclaimed under memory pressure)."
        )
    verdict, peak = checked
    print(
        f"  - `outcore check` read all {nbytes / MiB:.0f} MiB back through the store in another process "
        f"({verdict}) with a peak RSS of {peak / MiB:.0f} MiB."
    )
    print(f"  - the store is {where} ({disk / MiB:.0f} MiB on disk); inspect it with `outcore info {where}`,")
    print(f"    `outcore log {where}`, `outcore check {where}`.")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m outcore.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("step", nargs="?", choices=["gen", "read", "all"], default="all")
    p.add_argument("--path", default="demo.outcore", help="database file or postgresql:// URL")
    p.add_argument("--size", type=int, default=1024, help="array size in MiB (default 1024)")
    p.add_argument("--cache", type=int, default=256, help="cache budget in MiB (default 256)")
    p.add_argument("--verify", action="store_true", help="read: also check every value")
    args = p.parse_args(argv)
    if args.step in ("gen", "all"):
        gen(args.path, args.size, args.cache)
    if args.step in ("read", "all"):
        read(args.path, args.cache, args.verify)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
