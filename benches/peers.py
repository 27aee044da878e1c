"""outcore next to numpy.memmap, zarr and h5py on the same workloads, in one run, one table.

    .venv/bin/python benches/peers.py [--size MiB] [--dir DIR]

(`pip install zarr h5py` into the venv first; `scripts/demo` or `scripts/test` creates it.)

Workloads, on a float64 array of --size MiB (default 1024):
- ingest: append in 8 MiB chunks, durable at the end (fsync / commit);
- cold scan: sum of the whole array in a new process, after dropping the OS cache when permitted;
- warm scan: the same sum again in that process;
- random writes: 10,000 single-element writes made durable; time and bytes the disk received
  (from /proc/diskstats, so the kernel's own write-back counts);
- cold random reads: 10,000 single-element reads in a new process after dropping the OS cache;
  median latency;
- resize: to 1 TiB and back (where the format can);
- abort: 100 MiB of changes discarded (where the format has transactions).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

MiB = 1 << 20
CHUNK = 8 * MiB
BLK = 2 * MiB
NRAND = 10_000


def disk_written() -> int:
    """Bytes written to block devices so far (sectors of 512 bytes)."""
    total = 0
    with open("/proc/diskstats") as f:
        for line in f:
            p = line.split()
            if len(p) > 9 and not p[2].startswith(("loop", "ram", "dm-")) and not p[2][-1].isdigit():
                total += int(p[9]) * 512
    return total


def drop_caches() -> bool:
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1\n")
        return True
    except OSError:
        return False


def fsync_path(path: str) -> None:
    for root, _, files in os.walk(path) if os.path.isdir(path) else [(os.path.dirname(path), [], [os.path.basename(path)])]:
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)


# -- one adapter per system: create+ingest, open for reading, random writes, resize, abort --


class Outcore:
    name = "outcore"

    def __init__(self, path: str):
        self.path = path + ".outcore"

    def ingest(self, n: int, chunks):
        import outcore
        import transaction

        db = outcore.open(self.path)
        conn = db.connect()
        A = conn.root.create("a", 0, np.float64)
        done = 0
        for c in chunks:
            A.append(c)
            done += c.nbytes
            if done % (64 * MiB) == 0:
                transaction.commit()
        transaction.commit()

    def open_read(self):
        import outcore

        self._db = outcore.open(self.path)
        self._conn = self._db.connect(transaction_manager=False)
        return self._conn.root["a"][:]

    def random_writes(self, idx, vals):
        import outcore

        conn = outcore.open(self.path).connect(transaction_manager=False)
        a = conn.root["a"][:]
        a[idx] = vals
        conn.commit()

    def resize(self):
        import outcore

        conn = outcore.open(self.path).connect(transaction_manager=False)
        A = conn.root["a"]
        n = A.shape[0]
        A.resize((1 << 40) // 8)
        conn.commit()
        A.resize(n)
        conn.commit()

    def abort(self, nbytes):
        import outcore

        conn = outcore.open(self.path).connect(transaction_manager=False)
        a = conn.root["a"][: nbytes // 8]
        a[:] = 7.0
        conn.abort()


class Memmap:
    name = "numpy.memmap"

    def __init__(self, path: str):
        self.path = path + ".npy"

    def ingest(self, n, chunks):
        # numpy.memmap cannot grow: append = extend the file, map the new part, write.
        done = 0
        with open(self.path, "wb"):
            pass
        for c in chunks:
            with open(self.path, "r+b") as f:
                f.truncate(done + c.nbytes)
            m = np.memmap(self.path, dtype=np.float64, mode="r+", offset=done, shape=c.shape)
            m[:] = c
            m.flush()
            del m
            done += c.nbytes
        fsync_path(self.path)

    def open_read(self):
        return np.memmap(self.path, dtype=np.float64, mode="r")

    def random_writes(self, idx, vals):
        m = np.memmap(self.path, dtype=np.float64, mode="r+")
        m[idx] = vals
        m.flush()
        fsync_path(self.path)

    resize = None
    abort = None


class Zarr:
    name = "zarr"

    def __init__(self, path: str):
        self.path = path + ".zarr"

    def ingest(self, n, chunks):
        import zarr

        z = zarr.open_array(self.path, mode="w", shape=(0,), chunks=(BLK // 8,), dtype="f8")
        for c in chunks:
            z.append(c)
        fsync_path(self.path)

    def open_read(self):
        import zarr

        return zarr.open_array(self.path, mode="r")

    def random_writes(self, idx, vals):
        import zarr

        z = zarr.open_array(self.path, mode="r+")
        for i, v in zip(idx, vals):
            z[int(i)] = v
        fsync_path(self.path)

    def resize(self):
        import zarr

        z = zarr.open_array(self.path, mode="r+")
        n = z.shape[0]
        z.resize(((1 << 40) // 8,))
        z.resize((n,))

    abort = None


class H5:
    name = "h5py"

    def __init__(self, path: str):
        self.path = path + ".h5"

    def ingest(self, n, chunks):
        import h5py

        with h5py.File(self.path, "w") as f:
            d = f.create_dataset("a", shape=(0,), maxshape=(None,), chunks=(BLK // 8,), dtype="f8")
            for c in chunks:
                s = d.shape[0]
                d.resize((s + len(c),))
                d[s:] = c
            f.flush()
        fsync_path(self.path)

    def open_read(self):
        import h5py

        self._f = h5py.File(self.path, "r")
        return self._f["a"]

    def random_writes(self, idx, vals):
        import h5py

        with h5py.File(self.path, "r+") as f:
            d = f["a"]
            for i, v in zip(idx, vals):
                d[int(i)] = v
            f.flush()
        fsync_path(self.path)

    def resize(self):
        import h5py

        with h5py.File(self.path, "r+") as f:
            d = f["a"]
            n = d.shape[0]
            d.resize(((1 << 40) // 8,))
            d.resize((n,))

    abort = None


SYSTEMS = {c.name: c for c in (Outcore, Memmap, Zarr, H5)}


def child(system: str, path: str, what: str) -> None:
    """Runs in a new process: cold/warm scans or cold random reads; prints JSON."""
    s = SYSTEMS[system](path)
    a = s.open_read()
    n = a.shape[0]
    out = {}
    if what == "scan":
        for label in ("cold", "warm"):
            t = time.perf_counter()
            total = 0.0
            step = BLK // 8 * 16
            for i in range(0, n, step):
                total += float(np.asarray(a[i : i + step]).sum())
            out[label] = time.perf_counter() - t
        out["sum"] = total
    else:
        rng = np.random.default_rng(3)
        idx = rng.integers(0, n, NRAND)
        lat = []
        for i in idx:
            t = time.perf_counter()
            float(a[int(i)])
            lat.append(time.perf_counter() - t)
        out["median_us"] = float(np.median(lat)) * 1e6
    print(json.dumps(out))


def run_child(system, path, what):
    r = subprocess.run([sys.executable, __file__, "--child", system, path, what], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=1024, help="MiB of float64 (default 1024)")
    p.add_argument("--dir", default=None, help="where the files go (default: a temp dir here)")
    p.add_argument("--only", default=None, help="comma-separated systems")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(*args.child)
    n = args.size * MiB // 8
    base = tempfile.mkdtemp(prefix="peers-", dir=args.dir or ".")
    dropped = drop_caches()
    rng = np.random.default_rng(1)
    idx = rng.integers(0, n, NRAND)
    vals = rng.random(NRAND)
    rows = []
    names = args.only.split(",") if args.only else list(SYSTEMS)
    for name in names:
        s = SYSTEMS[name](os.path.join(base, "a"))

        def chunks():
            for i in range(0, n, CHUNK // 8):
                yield np.arange(i, min(i + CHUNK // 8, n), dtype=np.float64)

        r = {"system": name}
        t = time.perf_counter()
        s.ingest(n, chunks())
        r["ingest GB/s"] = n * 8 / (time.perf_counter() - t) / 1e9
        drop_caches()
        scan = run_child(name, os.path.join(base, "a"), "scan")
        assert abs(scan["sum"] - n * (n - 1) / 2) < 1e-6 * n * n, (name, scan["sum"])
        r["cold scan GB/s"] = n * 8 / scan["cold"] / 1e9
        r["warm scan GB/s"] = n * 8 / scan["warm"] / 1e9
        os.sync()
        w0 = disk_written()
        t = time.perf_counter()
        s.random_writes(idx, vals)
        r["10k random writes s"] = time.perf_counter() - t
        os.sync()
        r["  MiB written"] = (disk_written() - w0) / MiB
        drop_caches()
        r["cold random read us"] = run_child(name, os.path.join(base, "a"), "reads")["median_us"]
        if s.resize:
            t = time.perf_counter()
            s.resize()
            r["resize 1 TiB+back s"] = time.perf_counter() - t
        if s.abort:
            t = time.perf_counter()
            s.abort(100 * MiB)
            r["abort 100 MiB s"] = time.perf_counter() - t
        rows.append(r)
        for f in os.listdir(base):
            full = os.path.join(base, f)
            shutil.rmtree(full) if os.path.isdir(full) else os.remove(full)
    shutil.rmtree(base, ignore_errors=True)
    cols = ["system", "ingest GB/s", "cold scan GB/s", "warm scan GB/s", "10k random writes s", "  MiB written",
            "cold random read us", "resize 1 TiB+back s", "abort 100 MiB s"]
    print(f"\n{args.size} MiB float64; OS cache dropped: {dropped}\n")
    print("| " + " | ".join(c.strip() for c in cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append("n/a" if v is None else (v if isinstance(v, str) else f"{v:.3g}"))
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
