"""Many small commits on a local store: latency, file growth, scan speed afterwards.

    .venv/bin/python benches/small_commits.py [--mib 64] [--commits 1000] [--elems 5] [--dir DIR]
                                              [--no-wait] [--json FILE]

Two cases, each on a fresh local store holding a --mib MiB float64 array filled with arange
(appended and committed, then the connection closed):

- "no reader": --commits transactions, each writing --elems random elements through a view
  (a = A[:]; a[i] = v) and committing (conn.commit(), timed alone);
- "reader open": the same, while a second process holds a connection opened before the first
  commit (it read its whole view once, keeps its snapshot, and verifies at the end that it still
  reads the ORIGINAL content); afterwards the reader exits, gc runs if the Python package
  exposes it (else: reported), one more commit is made, and the files are measured again.

Reported per case: commit p50/p99/max ms, commits/s (the whole loop: writes and commits);
growth of all store files (path, path.blocks, path-wal, path-shm, path.readers), apparent
(st_size) and allocated (st_blocks * 512); a cold scan (new process, sync + drop_caches, chunked
sum of A[:]; median of 5) before and after the commits and its ratio; the final content compared exactly
with a NumPy model of every write.
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
from peers import BuildWatch, ext_identity, chunked_sum, drop_caches, files_usage, fmt, store_files, table, wait_for_no_build  # noqa: E402

MiB = 1 << 20


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- child processes ------------------------------------------------------------------------------


def child_scan(path: str) -> None:
    import outcore

    t = time.perf_counter()
    conn = outcore.open(path).connect(transaction_manager=False)
    a = conn.root["a"][:]
    t_open = time.perf_counter() - t
    t = time.perf_counter()
    s = chunked_sum(a, a.shape[0])
    print(json.dumps({"open": t_open, "scan": time.perf_counter() - t, "sum": s}))


def child_reader(path: str) -> None:
    """Opens a connection, reads the whole view once, then waits (stdin) and verifies it still
    reads the original content (arange)."""
    import outcore

    conn = outcore.open(path).connect(transaction_manager=False)
    a = conn.root["a"][:]
    n = a.shape[0]
    s = chunked_sum(a, n)
    print(json.dumps({"ready": True, "tid": conn.tid, "sum": s}), flush=True)
    sys.stdin.readline()
    orig = np.arange(n, dtype=np.float64)
    same = np.array_equal(a, orig)
    bad = np.flatnonzero(a != orig)
    out = {"original": bool(same), "mismatches": int(bad.size), "tid": conn.tid,
           "first_bad": None if same else [int(bad[0]), float(a[bad[0]])]}
    # a fresh view of the same connection must agree too
    b = conn.root["a"][:]
    out["fresh_view_original"] = bool(np.array_equal(b, orig))
    print(json.dumps(out), flush=True)


def run_child(*args) -> dict:
    r = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"child {args} failed (rc {r.returncode}):\n{r.stderr[-4000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


# -- the workload -----------------------------------------------------------------------------------


def per_file(path: str) -> dict:
    out = {}
    for p in store_files(path):
        try:
            st = os.stat(p)
            out[os.path.basename(p)[len(os.path.basename(path)):] or "(sqlite)"] = (st.st_size, st.st_blocks * 512)
        except FileNotFoundError:
            pass
    return out


SCAN_REPEATS = 5


def cold_scan(path: str, model_sum: float) -> dict:
    """SCAN_REPEATS cold scans (each: sync + drop_caches, new process); "scan" is their median."""
    runs = []
    for _ in range(SCAN_REPEATS):
        drop_caches()
        runs.append(run_child("scan", path))
    sc = {"scan": float(np.median([r["scan"] for r in runs])), "scans": [r["scan"] for r in runs],
          "sums": [r["sum"] for r in runs]}
    sc["ok"] = all(x == model_sum for x in sc["sums"])
    if not sc["ok"]:
        log(f"#   WRONG SUM: {sc['sums']!r} != model {model_sum!r}")
    return sc


def create(path: str, n: int):
    import outcore

    db = outcore.open(path)
    conn = db.connect(transaction_manager=False)
    A = conn.root.create("a", 0, np.float64)
    A.append(np.arange(n, dtype=np.float64))
    conn.commit()
    del A, conn, db
    gc.collect()


def commits(path: str, model: np.ndarray, ncommits: int, nelem: int, rng) -> dict:
    import outcore

    conn = outcore.open(path).connect(transaction_manager=False)
    A = conn.root["a"]
    n = model.size
    times = np.empty(ncommits)
    t0 = time.perf_counter()
    for k in range(ncommits):
        ix = rng.integers(0, n, nelem)
        v = rng.random(nelem)
        a = A[:]
        a[ix] = v
        model[ix] = v
        t = time.perf_counter()
        conn.commit()
        times[k] = time.perf_counter() - t
    wall = time.perf_counter() - t0
    open_usage = (files_usage(store_files(path)), per_file(path))
    del A, a, conn
    gc.collect()
    return {"open usage": open_usage, "p50 ms": float(np.percentile(times, 50)) * 1e3, "p99 ms": float(np.percentile(times, 99)) * 1e3,
            "max ms": float(times.max()) * 1e3, "commits/s": ncommits / wall, "times": times.tolist()}


def check_model(path: str, model: np.ndarray) -> dict:
    import outcore

    conn = outcore.open(path).connect(transaction_manager=False)
    a = conn.root["a"][:]
    same = bool(np.array_equal(a, model))
    out = {"equal": same}
    if not same:
        bad = np.flatnonzero(a != model)
        out["mismatches"] = int(bad.size)
        out["first"] = [int(bad[0]), float(a[bad[0]]), float(model[bad[0]])]
        log(f"#   CONTENT DIFFERS from the model: {out}")
    del a, conn
    gc.collect()
    return out


def gc_store(path: str) -> str:
    """Runs the store's gc (keeping nothing older than the head) if the package exposes it."""
    import outcore

    db = outcore.open(path)
    f = getattr(db, "gc", None)
    if f is not None:
        for call in (lambda: f(keep_after=db.head()), lambda: f(db.head()), lambda: f()):
            try:
                return f"ran Db.gc: {call()!r}"
            except TypeError:
                continue
    exe = shutil.which("outcore")
    if exe:
        r = subprocess.run([exe, "gc", path], capture_output=True, text=True)
        return f"ran `outcore gc` (rc {r.returncode}): {(r.stdout + r.stderr).strip()[-300:]}"
    return "not exposed (no Db.gc in the Python package, no `outcore` command on PATH): not run"


def case(base: str, n: int, args, with_reader: bool, watch) -> dict:
    path = os.path.join(base, "reader.outcore" if with_reader else "plain.outcore")
    rng = np.random.default_rng(7)
    log(f"# case {'reader open' if with_reader else 'no reader'}")
    if not args.no_wait:
        wait_for_no_build(log=log)
    watch.reset()
    create(path, n)
    model = np.arange(n, dtype=np.float64)
    r = {"case": "reader open" if with_reader else "no reader"}
    r["scan before"] = cold_scan(path, chunked_sum(model, n))
    log(f"#   cold scan before: {n * 8 / r['scan before']['scan'] / 1e9:.3g} GB/s")
    reader = None
    if with_reader:
        reader = subprocess.Popen([sys.executable, __file__, "--child", "reader", path],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = reader.stdout.readline()
        if not line:
            raise RuntimeError(f"reader failed to start (rc {reader.wait()})")
        r["reader start"] = json.loads(line)
    gc.collect()
    f0, pf0 = files_usage(store_files(path)), per_file(path)
    c = commits(path, model, args.commits, args.elems, rng)
    f1, pf1 = c.pop("open usage")  # measured before the writing connection closed
    fc = files_usage(store_files(path))
    r["growth after close apparent MiB"] = (fc[0] - f0[0]) / MiB
    r["growth after close allocated MiB"] = (fc[1] - f0[1]) / MiB
    r.update({k: v for k, v in c.items() if k != "times"})
    r["growth apparent MiB"] = (f1[0] - f0[0]) / MiB
    r["growth allocated MiB"] = (f1[1] - f0[1]) / MiB
    r["per file growth MiB (apparent, allocated)"] = {
        k: ((pf1[k][0] - pf0.get(k, (0, 0))[0]) / MiB, (pf1[k][1] - pf0.get(k, (0, 0))[1]) / MiB) for k in pf1}
    log(f"#   commits: p50 {c['p50 ms']:.3g} ms, p99 {c['p99 ms']:.3g} ms, {c['commits/s']:.3g}/s; "
        f"growth {r['growth apparent MiB']:.3g} / {r['growth allocated MiB']:.3g} MiB")
    if reader:
        reader.stdin.write("verify\n")
        reader.stdin.flush()
        line = reader.stdout.readline()
        rc = reader.wait()
        r["reader end"] = json.loads(line) if line else {"error": f"reader died (rc {rc})"}
        r["reader rc"] = rc
        log(f"#   reader: {r['reader end']}")
        r["gc"] = gc_store(path)
        log(f"#   gc: {r['gc']}")
        c2 = commits(path, model, 1, args.elems, rng)
        f2, pf2 = c2.pop("open usage")
        r["after reader+gc+1 commit: growth apparent MiB"] = (f2[0] - f0[0]) / MiB
        r["after reader+gc+1 commit: growth allocated MiB"] = (f2[1] - f0[1]) / MiB
        r["after: per file growth MiB (apparent, allocated)"] = {
            k: ((pf2[k][0] - pf0.get(k, (0, 0))[0]) / MiB, (pf2[k][1] - pf0.get(k, (0, 0))[1]) / MiB) for k in pf2}
        r["extra commit ms"] = c2["max ms"]
    r["scan after"] = cold_scan(path, chunked_sum(model, n))
    log(f"#   cold scan after: {n * 8 / r['scan after']['scan'] / 1e9:.3g} GB/s")
    r["model"] = check_model(path, model)
    r["build overlapped"] = watch.seen
    r["other load"] = watch.other_load()
    return r


def report(res: dict) -> str:
    n = res["n"]
    lines = [f"{res['mib']} MiB float64 array, {res['commits']} commits of {res['elems']} random elements each; "
             f"OS cache dropped: {res['dropped']}. Growth: all store files, from before the writing connection "
             "opened to just before it closed (after close: once it closed; SQLite removes the WAL when the "
             "last connection to the file closes).", ""]
    cols = ["case", "commit p50 ms", "p99 ms", "max ms", "commits/s", "growth apparent MiB",
            "growth allocated MiB", "after close: apparent / allocated", "cold scan before GB/s (median of 5)", "after GB/s", "after/before", "final == model",
            "build overlapped", "other CPU (cores)"]
    rows = []
    for r in res["cases"]:
        b = n * 8 / r["scan before"]["scan"] / 1e9
        a = n * 8 / r["scan after"]["scan"] / 1e9
        ok = r["model"]["equal"] and r["scan before"]["ok"] and r["scan after"]["ok"]
        rows.append([r["case"], fmt(r["p50 ms"]), fmt(r["p99 ms"]), fmt(r["max ms"]), fmt(r["commits/s"]),
                     fmt(r["growth apparent MiB"]), fmt(r["growth allocated MiB"]),
                     f'{fmt(r["growth after close apparent MiB"])} / {fmt(r["growth after close allocated MiB"])}', fmt(b), fmt(a), fmt(a / b),
                     "yes" if ok else "NO", "yes" if r["build overlapped"] else "no", fmt(r["other load"])])
    lines.append(table(cols, rows))
    lines += ["", "Growth per file during the commits (writer still open), MiB (apparent / allocated):", ""]
    files = sorted({k for r in res["cases"] for k in r["per file growth MiB (apparent, allocated)"]})
    rows = []
    for r in res["cases"]:
        g = r["per file growth MiB (apparent, allocated)"]
        rows.append([r["case"]] + [f"{fmt(g[k][0])} / {fmt(g[k][1])}" if k in g else "-" for k in files])
    for r in res["cases"]:
        g = r.get("after: per file growth MiB (apparent, allocated)")
        if g:
            rows.append([r["case"] + ": after reader end + gc + 1 commit"] +
                        [f"{fmt(g[k][0])} / {fmt(g[k][1])}" if k in g else "-" for k in files])
    lines.append(table(["case"] + files, rows))
    for r in res["cases"]:
        if "reader end" in r:
            e = r["reader end"]
            lines += ["", f"Reader (opened at tid {r['reader start']['tid']}): still reads the original content at "
                          f"the end: {'yes' if e.get('original') and e.get('fresh_view_original') else 'NO'} ({e}); "
                          f"gc: {r['gc']}; after the reader ended, gc and one more commit "
                          f"({fmt(r['extra commit ms'])} ms): growth since before the commits "
                          f"{fmt(r['after reader+gc+1 commit: growth apparent MiB'])} MiB apparent, "
                          f"{fmt(r['after reader+gc+1 commit: growth allocated MiB'])} MiB allocated."]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mib", type=int, default=64)
    p.add_argument("--commits", type=int, default=1000)
    p.add_argument("--elems", type=int, default=5)
    p.add_argument("--dir", default=None, help="where the stores go (default: a temp dir here)")
    p.add_argument("--no-wait", action="store_true", help="do not wait for running Rust builds")
    p.add_argument("--json", default=None)
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        what, path = args.child
        return child_scan(path) if what == "scan" else child_reader(path)
    n = args.mib * MiB // 8
    base = tempfile.mkdtemp(prefix="small-commits-", dir=args.dir or ".")
    dropped = drop_caches()
    res = {"mib": args.mib, "n": n, "commits": args.commits, "elems": args.elems, "dropped": dropped,
           "cases": [], "started": time.strftime("%Y-%m-%d %H:%M:%S"), "extension": ext_identity()}
    watch = BuildWatch()
    try:
        for with_reader in (False, True):
            res["cases"].append(case(base, n, args, with_reader, watch))
    finally:
        watch.stop()
        shutil.rmtree(base, ignore_errors=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(res, f, indent=1)
    res["extension at end"] = ext_identity()
    print(report(res))
    print(f"\noutcore extension (_outcore*.so mtime, size, inode): {res['extension']}"
          + ("" if res["extension at end"] == res["extension"] else f" -> {res['extension at end']} (rebuilt during the run)"))


if __name__ == "__main__":
    main()
