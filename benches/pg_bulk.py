"""Bulk load and cold scan on PostgreSQL, against the server itself: a raw binary COPY of the same
bytes into a plain bytea table (rows of one block, STORAGE EXTERNAL, as outcore stores them), and
a raw binary COPY out of it, both through psql on this machine, measured in the same run as
outcore's ingest (appends of one block size each, one commit per --commit-every bytes) and cold
scan (a new process summing the whole view; the server's cache is not dropped between phases,
for either side).

    .venv/bin/python benches/pg_bulk.py --url postgresql://... [--mib 1024] [--repeats 3]

Needs `psql` on PATH. Prints a markdown table: GB/s per phase, median (min-max) over repeats,
and the ratios outcore / raw."""

import argparse
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

BLK = 2 << 20


def psql(url, *args, stdin=None):
    cmd = [shutil.which("psql") or "psql", url.split("?")[0], "-v", "ON_ERROR_STOP=1", "-Atq", *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, stdin=stdin).stdout


def copy_file(path, nbytes):
    """A binary COPY file of (id int, data bytea) rows of one block each (the same bytes outcore
    writes: float64 0, 1, 2, ...)."""
    with open(path, "wb") as f:
        f.write(b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0))
        n = nbytes // BLK
        per = BLK // 8
        for i in range(n):
            data = np.arange(i * per, (i + 1) * per, dtype="<f8").tobytes()
            f.write(struct.pack("!hii", 2, 4, i) + struct.pack("!i", len(data)) + data)
        f.write(struct.pack("!h", -1))


def settle(url):
    """Starts each timed phase from the same server state: no dead rows left by the last phase
    (outcore's gc, the dropped raw table) for autovacuum to clean meanwhile, no dirty buffers
    for a checkpoint to write (either side's phase would pay for the other's)."""
    psql(url, "-c", "VACUUM", "-c", "CHECKPOINT")


def raw_ingest(url, path):
    psql(url, "-c", "DROP TABLE IF EXISTS bench_raw",
         "-c", "CREATE TABLE bench_raw (id int PRIMARY KEY, data bytea NOT NULL)",
         "-c", "ALTER TABLE bench_raw ALTER COLUMN data SET STORAGE EXTERNAL")
    settle(url)
    t = time.perf_counter()
    psql(url, "-c", f"\\copy bench_raw FROM '{path}' WITH (FORMAT binary)")
    return time.perf_counter() - t


def raw_scan(url):
    settle(url)
    t = time.perf_counter()
    psql(url, "-c", "\\copy (SELECT data FROM bench_raw ORDER BY id) TO '/dev/null' WITH (FORMAT binary)")
    return time.perf_counter() - t


def outcore_ingest(url, nbytes, commit_every):
    script = textwrap.dedent(f"""
        import subprocess, time, numpy as np, outcore
        db = outcore.open({url!r})
        conn = db.connect(transaction_manager=False)
        if "bench" in conn.root:
            del conn.root["bench"]
            conn.commit()
            conn.close()
            db.gc()  # the raw side drops its table: free the last repeat's bytes here too
            conn = db.connect(transaction_manager=False)
        A = conn.root.create("bench", (0,), "f8", blksize={BLK})
        conn.commit()
        subprocess.run([{shutil.which("psql") or "psql"!r}, {url.split("?")[0]!r}, "-Atq", "-c", "VACUUM", "-c", "CHECKPOINT"], check=True)
        per = {BLK} // 8
        t = time.perf_counter()
        since = 0
        for i in range({nbytes} // {BLK}):
            A.append(np.arange(i * per, (i + 1) * per, dtype="f8"))
            since += {BLK}
            if since >= {commit_every}:
                conn.commit()
                since = 0
        conn.commit()
        print(time.perf_counter() - t)
    """)
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    return float(out.stdout.split()[-1])


def outcore_scan(url, nbytes):
    settle(url.split("?")[0])
    script = textwrap.dedent(f"""
        import time, numpy as np, outcore
        A = outcore.open({url!r}).connect(transaction_manager=False).root["bench"]
        t = time.perf_counter()
        s = float(np.asarray(A[:]).sum())
        print(time.perf_counter() - t, s)
    """)
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    took, s = out.stdout.split()[-2:]
    n = nbytes // 8
    if float(s) != float(n) * (n - 1) / 2:
        sys.exit(f"wrong sum {s}")
    return float(took)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--mib", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--commit-every-mib", type=int, default=64)
    a = p.parse_args()
    nbytes = a.mib << 20
    tmp = tempfile.mkdtemp(prefix="pg-bulk-")
    path = os.path.join(tmp, "raw.copy")
    copy_file(path, nbytes)
    runs = {k: [] for k in ("raw COPY in", "outcore ingest", "raw COPY out", "outcore cold scan")}
    for r in range(a.repeats):
        print(f"repeat {r + 1}/{a.repeats}", file=sys.stderr)
        runs["raw COPY in"].append(nbytes / raw_ingest(a.url, path) / 1e9)
        runs["outcore ingest"].append(nbytes / outcore_ingest(a.url, nbytes, a.commit_every_mib << 20) / 1e9)
        runs["raw COPY out"].append(nbytes / raw_scan(a.url) / 1e9)
        runs["outcore cold scan"].append(nbytes / outcore_scan(a.url, nbytes) / 1e9)
    psql(a.url, "-c", "DROP TABLE IF EXISTS bench_raw")
    shutil.rmtree(tmp)
    fmt = lambda v: f"{statistics.median(v):.3f} ({min(v):.3f}-{max(v):.3f})"
    print(f"| phase ({a.mib} MiB, {a.repeats} repeats) | GB/s |")
    print("|---|---|")
    for k, v in runs.items():
        print(f"| {k} | {fmt(v)} |")
    ingest = [o / r for o, r in zip(runs["outcore ingest"], runs["raw COPY in"])]
    scan = [o / r for o, r in zip(runs["outcore cold scan"], runs["raw COPY out"])]
    print(f"| ingest / raw COPY in | {fmt(ingest)} |")
    print(f"| cold scan / raw COPY out | {fmt(scan)} |")


if __name__ == "__main__":
    main()
