"""Concurrent small commits: W writer processes, each making N commits of 5 random elements into
its own blocks of one array; prints commit latency (p50, p99, max), commits per second in all,
and conflicts. Checks the array afterwards against what every writer wrote.

    .venv/bin/python benches/writers.py --writers 4 16 --commits 200 --repeats 3 [--url postgresql://...]

Each run waits until no Rust build runs on the machine, and says whether one started during it.
Without --url the store is a local SQLite file in a temp dir (`--dir`). On PostgreSQL it also
prints the server's WAL bytes per commit (`pg_stat_wal`, read with `psql`; the delta includes
any other activity on the server, so run it on a server of its own)."""

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from peers import BuildWatch, _busy_jiffies, wait_for_no_build

BLK = 64 << 10  # bytes per block: each writer owns BLOCKS_PER_WRITER whole blocks
BLOCKS_PER_WRITER = 4


def writer(url, k, commits, q, ready, go):
    import outcore

    conn = outcore.open(url).connect(transaction_manager=False)
    A = conn.root["a"]
    ready.put(k)
    go.wait()
    cpu = time.process_time()
    per = BLK * BLOCKS_PER_WRITER // 8
    lo = k * per
    rng = np.random.default_rng(k)
    lat, conflicts, last = [], 0, {}
    for c in range(commits):
        idx = lo + rng.integers(0, per, 5)
        vals = rng.random(5)
        while True:
            v = A[:]
            v[idx] = vals
            t = time.perf_counter()
            try:
                conn.commit()
            except outcore.ConflictError:
                conflicts += 1
                conn.abort()
                continue
            lat.append(time.perf_counter() - t)
            break
        for i, x in zip(idx.tolist(), vals.tolist()):
            last[i] = x
    q.put((k, lat, conflicts, last, time.perf_counter(), time.process_time() - cpu))


def wal_bytes(url):
    """The server's WAL bytes written so far (PostgreSQL >= 14), or None without psql."""
    psql = shutil.which("psql")
    if not url.startswith("postgres") or not psql:
        return None
    plain = url.split("?")[0]
    out = subprocess.run([psql, plain, "-Atc", "SELECT wal_bytes FROM pg_stat_wal"], capture_output=True, text=True)
    return int(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None


def server_cpu():
    """CPU seconds used so far by this machine's PostgreSQL server processes, those that ended
    included (the postmaster's reaped children), or None without any. An estimate: a process
    that ends between its exit and its reaping is counted in neither, so short runs can even
    show a small negative figure."""
    hz, total, found = os.sysconf("SC_CLK_TCK"), 0, False
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/stat") as f:
                st = f.read()
        except (OSError, ValueError):
            continue
        name, rest = st[st.index("(") + 1 : st.rindex(")")], st[st.rindex(")") + 2 :].split()
        if name.startswith("postgres"):
            found = True
            total += sum(int(x) for x in rest[11:15])
    return total / hz if found else None


def run_once(url, writers, commits):
    """One run on a fresh array: W writers start together (after each has connected), and
    throughput is counted from that start to the last writer's end, not over process start-up."""
    import outcore

    n = writers * BLK * BLOCKS_PER_WRITER // 8
    db = outcore.open(url)
    conn = db.connect(transaction_manager=False)
    if "a" in conn.root:
        # The previous run's array and all history go, so every run starts from the same state.
        del conn.root["a"]
        conn.commit()
        conn.close()
        db.gc()
        vacuum(url)
        conn = db.connect(transaction_manager=False)
    conn.root.create("a", (n,), "f8", blksize=BLK)
    conn.commit()
    ctx = multiprocessing.get_context("spawn")
    q, ready, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=writer, args=(url, k, commits, q, ready, go)) for k in range(writers)]
    wait_for_no_build(poll=2.0, log=lambda m: print(m, file=sys.stderr))
    for pr in procs:
        pr.start()
    for _ in procs:
        ready.get(timeout=600)
    watch = BuildWatch()
    wal0 = wal_bytes(url)
    cpu0, srv0 = _busy_jiffies(), server_cpu() if url.startswith("postgres") else None
    t = time.perf_counter()
    go.set()
    results = [q.get(timeout=600) for _ in procs]
    wall = max(r[4] for r in results) - t
    cpu1, srv1 = _busy_jiffies(), server_cpu() if srv0 is not None else None
    cpu_wall = time.perf_counter() - t
    watch.stop()
    for pr in procs:
        pr.join()
    wal1 = wal_bytes(url)
    lat = np.array([x for r in results for x in r[1]]) * 1e3
    want = np.zeros(n)
    for r in results:
        for i, x in r[3].items():
            want[i] = x
    got = np.asarray(outcore.open(url).connect(transaction_manager=False).root["a"][:])
    out = {
        "store": "postgresql" if url.startswith("postgresql") else "sqlite",
        "writers": writers,
        "commits": len(lat),
        "p50 ms": float(np.percentile(lat, 50)),
        "p99 ms": float(np.percentile(lat, 99)),
        "max ms": float(lat.max()),
        "commits/s": len(lat) / wall,
        "conflicts": sum(r[2] for r in results),
        "data right": bool(np.array_equal(got, want)),
        "build overlapped": watch.seen,
        "CPU busy %": 100.0 * (cpu1 - cpu0) / os.sysconf("SC_CLK_TCK") / (cpu_wall * (os.cpu_count() or 1)),
    }
    client = sum(r[5] for r in results)
    out["client CPU ms/commit"] = 1e3 * client / max(len(lat), 1)
    if srv0 is not None and srv1 is not None:
        out["server CPU ms/commit"] = 1e3 * (srv1 - srv0) / max(len(lat), 1)
    if wal0 is not None and wal1 is not None:
        out["WAL KiB/commit"] = (wal1 - wal0) / 1024 / max(len(lat), 1)
    return out


def vacuum(url):
    """VACUUM the server's tables after a gc (PostgreSQL, with psql), so runs do not inherit
    the previous runs' dead rows."""
    psql = shutil.which("psql")
    if url.startswith("postgres") and psql:
        subprocess.run([psql, url.split("?")[0], "-qc", "VACUUM"], capture_output=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--writers", type=int, nargs="+", default=[4], help="writer counts, run interleaved")
    p.add_argument("--commits", type=int, default=200)
    p.add_argument("--repeats", type=int, default=1, help="runs per writer count (medians printed too)")
    p.add_argument("--url", default=None, help="store URL (default: a new SQLite file)")
    p.add_argument("--dir", default=None)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    url = a.url or os.path.join(tempfile.mkdtemp(prefix="writers-", dir=a.dir), "w.outcore")
    runs = []
    for _ in range(a.repeats):
        for w in a.writers:
            out = run_once(url, w, a.commits)
            if not runs:
                print("| run | " + " | ".join(out) + " |")
                print("|" + "---|" * (len(out) + 1))
            runs.append(out)
            print(f"| {len(runs)} | " + " | ".join(fmt(v) for v in out.values()) + " |", flush=True)
    if a.repeats > 1:
        for w in a.writers:
            mine = [r for r in runs if r["writers"] == w]
            med = {k: (float(np.median([r[k] for r in mine])) if isinstance(v, float) else v) for k, v in mine[0].items()}
            med["data right"] = all(r["data right"] for r in mine)
            med["conflicts"] = sum(r["conflicts"] for r in mine)
            med["build overlapped"] = any(r["build overlapped"] for r in mine)
            print("| median | " + " | ".join(fmt(v) for v in med.values()) + " |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(runs, f)
    if not all(r["data right"] for r in runs):
        sys.exit("the array does not hold what the writers committed")


def fmt(v):
    return f"{v:.3g}" if isinstance(v, float) else str(v)


if __name__ == "__main__":
    main()
