"""Cold mmap scans of one plain file under several readahead policies, paired (caches dropped
before each, order rotated per repeat), to see what the disk gives a deeper queue.

    .venv/bin/python docs/design/experiments/ra_variants.py FILE [--repeats N] [--variants a,b]

Variants (each scan in a new process; the file is mapped MAP_PRIVATE read-only, summed with
NumPy in 32 MiB slices as benches/peers.py does):
- plain: nothing (numpy.memmap's case);
- huge: MADV_HUGEPAGE on the mapping (outcore's extents);
- seq: posix_fadvise(SEQUENTIAL) on the descriptor that was mapped (doubles its readahead window);
- willneedN: before each slice, posix_fadvise(WILLNEED) of the slice N slices ahead (a window
  kept N x 32 MiB ahead of the scan, from the scanning thread: no other thread);
- thread: a thread keeping 64 MiB ahead of the scan with posix_fadvise(WILLNEED) in 8 MiB steps.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

MiB = 1 << 20
STEP = 32 * MiB


def drop(settle):
    os.sync()
    time.sleep(settle)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("1\n")


def vda():
    """(read requests, sectors read, ms reading, weighted ms in flight) of the whole disks."""
    tot = [0, 0, 0, 0]
    with open("/proc/diskstats") as f:
        for line in f:
            q = line.split()
            if q[2].startswith(("loop", "ram", "dm-", "zram", "sr")) or os.path.exists(f"/sys/class/block/{q[2]}/partition"):
                continue
            for k, i in enumerate((3, 5, 6, 13)):
                tot[k] += int(q[i])
    return tot


def child(path, variant):
    if "@" in variant:  # another file: variant@path
        variant, path = variant.split("@")
    if "prefault" in variant:
        # Touch and free 3 GiB of anonymous memory first: the free blocks the scan's folios come
        # from are then backed by the host (free page reporting gives them back after ~2 s).
        junk = np.ones(3 << 27)
        del junk
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size // STEP * STEP
    if "shared" in variant:  # numpy.memmap mode "r"
        mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
    elif "privrw" in variant:  # outcore's views
        mm = mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    else:
        mm = mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
    a = np.frombuffer(mm, dtype=np.float64)
    if "huge" in variant:
        mm.madvise(14)  # MADV_HUGEPAGE
    if "seq" in variant:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    ahead = 0
    if variant.startswith("willneed"):
        ahead = int(variant[len("willneed"):].split("+")[0])
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    c0 = int(open("/proc/thread-self/schedstat").read().split()[0]) / 1e6
    d0 = vda()
    t = time.perf_counter()
    stop = None
    if "thread" in variant:
        import threading

        stop = threading.Event()
        pos = [0]

        def run():
            done = 0
            while not stop.is_set() and done < size:
                if done < pos[0] + 64 * MiB:
                    os.posix_fadvise(fd, done, 8 * MiB, os.POSIX_FADV_WILLNEED)
                    done += 8 * MiB
                else:
                    time.sleep(0.0005)

        th = threading.Thread(target=run, daemon=True)
        th.start()
    total = 0.0
    n = size // 8
    step = STEP // 8
    if ahead:
        os.posix_fadvise(fd, 0, ahead * STEP, os.POSIX_FADV_WILLNEED)
    for i in range(0, n, step):
        if ahead:
            o = (i // step + ahead) * STEP
            if o < size:
                os.posix_fadvise(fd, o, STEP, os.POSIX_FADV_WILLNEED)
        if stop is not None:
            pos[0] = i * 8
        total += float(a[i : i + step].sum())
    dt = time.perf_counter() - t
    if stop is not None:
        stop.set()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    d1 = vda()
    ios, sect, ms, wms = (b - a for a, b in zip(d0, d1))
    cpu = int(open("/proc/thread-self/schedstat").read().split()[0]) / 1e6
    print(json.dumps({"gbs": size / dt / 1e9, "minflt": r1.ru_minflt - r0.ru_minflt,
                      "majflt": r1.ru_majflt - r0.ru_majflt, "ios": ios,
                      "req_KiB": sect / 2 / max(ios, 1), "ms_per_io": ms / max(ios, 1),
                      "depth": wms / (dt * 1e3), "cpu_ms": cpu - c0}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("file")
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--variants", default="plain,huge,seq,willneed2,thread")
    p.add_argument("--settle", type=float, default=2.0)
    p.add_argument("--child", default=None)
    a = p.parse_args()
    if a.child:
        child(a.file, a.child)
        return
    vs = a.variants.split(",")
    res = {v: [] for v in vs}
    for rep in range(a.repeats):
        order = vs[rep % len(vs):] + vs[: rep % len(vs)]
        if rep % 2:
            order = order[::-1]
        for v in order:
            drop(a.settle)
            out = subprocess.run([sys.executable, __file__, a.file, "--child", v], capture_output=True, text=True)
            if out.returncode:
                raise RuntimeError(out.stderr)
            r = json.loads(out.stdout)
            res[v].append(r["gbs"])
            print(f"# rep {rep} {v:12s} {r['gbs']:.3f} GB/s minflt {r['minflt']} majflt {r['majflt']} "
                  f"ios {r['ios']} req {r['req_KiB']:.0f} KiB {r['ms_per_io']:.2f} ms/io depth {r['depth']:.2f} cpu {r['cpu_ms']:.0f} ms", file=sys.stderr)
    print("| variant | GB/s per repeat | median |")
    print("|---|---|---|")
    for v in vs:
        print(f"| {v} | {', '.join(f'{x:.2f}' for x in res[v])} | {statistics.median(res[v]):.3f} |")


if __name__ == "__main__":
    main()
