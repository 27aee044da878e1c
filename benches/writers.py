"""Concurrent small commits: W writer processes, each making N commits of 5 random elements into
its own blocks of one array; prints commit latency (p50, p99, max), commits per second in all,
and conflicts. Checks the array afterwards against what every writer wrote.

    .venv/bin/python benches/writers.py --writers 4 --commits 200 [--url postgresql://...]

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

BLK = 64 << 10  # bytes per block: each writer owns BLOCKS_PER_WRITER whole blocks
BLOCKS_PER_WRITER = 4


def writer(url, k, commits, q):
    import outcore

    conn = outcore.open(url).connect(transaction_manager=False)
    A = conn.root["a"]
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
    q.put((k, lat, conflicts, last))


def wal_bytes(url):
    """The server's WAL bytes written so far (PostgreSQL >= 14), or None without psql."""
    psql = shutil.which("psql")
    if not url.startswith("postgres") or not psql:
        return None
    plain = url.split("?")[0]
    out = subprocess.run([psql, plain, "-Atc", "SELECT wal_bytes FROM pg_stat_wal"], capture_output=True, text=True)
    return int(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--writers", type=int, default=4)
    p.add_argument("--commits", type=int, default=200)
    p.add_argument("--url", default=None, help="store URL (default: a new SQLite file)")
    p.add_argument("--dir", default=None)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    import outcore

    url = a.url or os.path.join(tempfile.mkdtemp(prefix="writers-", dir=a.dir), "w.outcore")
    n = a.writers * BLK * BLOCKS_PER_WRITER // 8
    conn = outcore.open(url).connect(transaction_manager=False)
    if "a" in conn.root:
        del conn.root["a"]
    conn.root.create("a", (n,), "f8", blksize=BLK)
    conn.commit()
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=writer, args=(url, k, a.commits, q)) for k in range(a.writers)]
    wal0 = wal_bytes(url)
    t = time.perf_counter()
    for pr in procs:
        pr.start()
    results = [q.get(timeout=600) for _ in procs]
    wall = time.perf_counter() - t
    for pr in procs:
        pr.join()
    wal1 = wal_bytes(url)
    lat = np.array([x for r in results for x in r[1]]) * 1e3
    conflicts = sum(r[2] for r in results)
    want = np.zeros(n)
    for r in results:
        for i, x in r[3].items():
            want[i] = x
    got = np.asarray(outcore.open(url).connect(transaction_manager=False).root["a"][:])
    ok = bool(np.array_equal(got, want))
    out = {
        "store": "postgresql" if url.startswith("postgresql") else "sqlite",
        "writers": a.writers,
        "commits": len(lat),
        "p50 ms": float(np.percentile(lat, 50)),
        "p99 ms": float(np.percentile(lat, 99)),
        "max ms": float(lat.max()),
        "commits/s": len(lat) / wall,
        "conflicts": conflicts,
        "data right": ok,
    }
    if wal0 is not None and wal1 is not None:
        out["WAL KiB/commit"] = (wal1 - wal0) / 1024 / max(len(lat), 1)
    print("| " + " | ".join(out) + " |")
    print("|" + "---|" * len(out))
    print("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in out.values()) + " |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f)
    if not ok:
        sys.exit("the array does not hold what the writers committed")


if __name__ == "__main__":
    main()
