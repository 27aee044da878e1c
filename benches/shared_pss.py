"""Do processes reading the same array share one copy of it? Pss of 4 concurrent readers.

    .venv/bin/python benches/shared_pss.py [--mib 4096] [--procs 4] [--dir DIR] [--no-wait] [--json FILE]

Creates a --mib MiB float64 array in a local outcore store (appended in 64 MiB chunks, committed
every 512 MiB) and a plain file of the same bytes; then for outcore and for numpy.memmap: sync +
drop_caches, start --procs processes that each open the data and sum the whole array through one
view (outcore: A[:]; numpy.memmap: np.memmap(file)), wait until all have finished their scans
(they then block on a pipe), read /proc/PID/smaps_rollup of each, and report the sum of Pss (and
Rss, Pss_File, Pss_Anon) over the array size. Goal for outcore: sum of Pss / array < 1.5.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import BuildWatch, ext_identity, drop_caches, fmt, table, wait_for_no_build, write_raw  # noqa: E402

MiB = 1 << 20


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def child(kind: str, path: str) -> None:
    t = time.perf_counter()
    if kind == "outcore":
        import outcore

        conn = outcore.open(path).connect(transaction_manager=False)
        a = conn.root["a"][:]
    else:
        a = np.memmap(path, dtype=np.float64, mode="r")
    t_open = time.perf_counter() - t
    t = time.perf_counter()
    s = float(a.sum())
    print(json.dumps({"open": t_open, "scan": time.perf_counter() - t, "sum": s}), flush=True)
    sys.stdin.readline()  # the barrier: stay alive (view mapped) until the parent measured
    del a


def rollup(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            p = line.split()
            if len(p) == 3 and p[2] == "kB":
                out[p[0].rstrip(":")] = int(p[1]) * 1024
    return out


def run(kind: str, path: str, n: int, procs: int) -> dict:
    drop_caches()
    ps = [subprocess.Popen([sys.executable, __file__, "--child", kind, path], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True) for _ in range(procs)]
    t = time.perf_counter()
    res = []
    for p in ps:
        line = p.stdout.readline()
        if not line:
            for q in ps:
                q.kill()
            raise RuntimeError(f"{kind} reader died (rc {p.wait()})")
        res.append(json.loads(line))
    wall = time.perf_counter() - t
    mem = [rollup(p.pid) for p in ps]
    for p in ps:
        p.stdin.write("x\n")
        p.stdin.flush()
    rcs = [p.wait() for p in ps]
    size = n * 8
    exp = float(np.arange(n, dtype=np.float64).sum()) if n <= (1 << 27) else n * (n - 1) / 2
    return {
        "kind": kind, "rcs": rcs, "wall s": wall,
        "sums ok": all(abs(r["sum"] - exp) <= 1e-9 * exp for r in res), "sums": [r["sum"] for r in res],
        "scan s": [r["scan"] for r in res], "open s": [r["open"] for r in res],
        "mem": mem,
        "Pss/array": sum(m["Pss"] for m in mem) / size,
        "Rss/array": sum(m["Rss"] for m in mem) / size,
        "Pss_File/array": sum(m.get("Pss_File", 0) for m in mem) / size,
        "Pss_Anon/array": sum(m.get("Pss_Anon", 0) for m in mem) / size,
        "Pss per proc MiB": [m["Pss"] / MiB for m in mem],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mib", type=int, default=4096)
    p.add_argument("--procs", type=int, default=4)
    p.add_argument("--dir", default=None, help="where the files go (default: a temp dir here)")
    p.add_argument("--no-wait", action="store_true", help="do not wait for running Rust builds")
    p.add_argument("--json", default=None)
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(*args.child)
    n = args.mib * MiB // 8
    base = tempfile.mkdtemp(prefix="shared-pss-", dir=args.dir or ".")
    out = {"mib": args.mib, "procs": args.procs, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "runs": [], "extension": ext_identity()}
    watch = BuildWatch()
    try:
        import outcore

        store = os.path.join(base, "a.outcore")
        raw = os.path.join(base, "a.f8")
        log("# creating the store and the plain file")
        conn = outcore.open(store).connect(transaction_manager=False)
        A = conn.root.create("a", 0, np.float64)
        step = 64 * MiB // 8
        for i in range(0, n, step):
            A.append(np.arange(i, min(i + step, n), dtype=np.float64))
            if (i + step) % (512 * MiB // 8) == 0:
                conn.commit()
        conn.commit()
        del A, conn
        gc.collect()
        write_raw(raw, n)
        for kind, path in (("outcore", store), ("numpy.memmap", raw)):
            if not args.no_wait:
                wait_for_no_build(log=log)
            watch.reset()
            r = run(kind, path, n, args.procs)
            r["build overlapped"] = watch.seen
            r["other load"] = watch.other_load()
            log(f"# {kind}: Pss/array {r['Pss/array']:.3f}, Rss/array {r['Rss/array']:.3f}, sums ok {r['sums ok']}")
            out["runs"].append(r)
    finally:
        watch.stop()
        shutil.rmtree(base, ignore_errors=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(out, f, indent=1)
    cols = ["system", "sum Pss / array", "sum Rss / array", "Pss_File / array", "Pss_Anon / array",
            "Pss per process MiB", "scan s per process", "sums correct", "build overlapped", "other CPU (cores)"]
    rows = [[r["kind"], fmt(r["Pss/array"]), fmt(r["Rss/array"]), fmt(r["Pss_File/array"]), fmt(r["Pss_Anon/array"]),
             ", ".join(fmt(x) for x in r["Pss per proc MiB"]), ", ".join(fmt(x) for x in r["scan s"]),
             "yes" if r["sums ok"] and r["rcs"] == [0] * len(r["rcs"]) else f"NO {r['sums']} rc {r['rcs']}",
             "yes" if r["build overlapped"] else "no", fmt(r["other load"])] for r in out["runs"]]
    print(f"{args.procs} processes each summing a {args.mib} MiB float64 array through one view, started "
          "together after sync + drop_caches; smaps_rollup read while all are alive after their scans "
          "(goal for outcore: sum Pss / array < 1.5).\n")
    print(table(cols, rows))
    end = ext_identity()
    print(f"\noutcore extension (_outcore*.so mtime, size, inode): {out['extension']}"
          + ("" if end == out["extension"] else f" -> {end} (rebuilt during the run)"))


if __name__ == "__main__":
    main()
