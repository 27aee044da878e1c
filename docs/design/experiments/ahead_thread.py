"""Cold mmap scans with a helper thread running ahead of the scanner on the same mapping, paired
against the plain mapping and numpy.memmap (caches dropped before each scan, a new process per
scan, order rotated per repeat).

    .venv/bin/python docs/design/experiments/ahead_thread.py FILE [--repeats N] [--variants a,b]
                                                           [--settle S] [--after S] [--json OUT]

The question (issue 13, design 008): on this VM a cold scan is sometimes slow because the first
access to freshly allocated page-cache memory is expensive (suspected host re-backing after free
page reporting), and the scanning thread pays it. Can a second thread, told where the scanner is,
take that cost (or the page-table work) off the scanning thread? This is an upper bound for what a
pager thread could do: it knows the scanner's exact position, which a pager would have to infer.

Variants (`+`-joined tokens; the file is summed with NumPy in 32 MiB slices, as benches/peers.py):
- memmap: numpy.memmap(FILE, mode="r") (MAP_SHARED read-only);
- privrw: MAP_PRIVATE read/write (outcore's views of long runs in file order, no advice);
- popN: a thread keeps the next N MiB after the scanner's position populated with
  madvise(MADV_POPULATE_READ) in 8 MiB calls (ctypes: the GIL is released during the call);
- touchN: a thread reads one byte of every 4 KiB page of the next N MiB (8 MiB at a time, a
  strided NumPy max, which releases the GIL);
- tripN: as popN, but the thread is not told the scanner's position: it infers it as a pager
  could, from tripwires. It populates each 16 MiB chunk except its first 2 MiB (a whole PMD, so
  that its own population never maps the tripwire) and polls the tripwires' present bits in
  /proc/self/pagemap every 0.5 ms; it starts when the view's first page is mapped and keeps at
  most N MiB populated beyond the last tripwire the scanner has crossed.

Per scan: GB/s, the scanning thread's user/sys CPU (getrusage RUSAGE_THREAD) and its run time
(schedstat), the helper thread's CPU, the process's minor/major faults, and how often the helper
found itself behind the scanner.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import mmap
import os
import resource
import statistics
import subprocess
import sys
import threading
import time

import numpy as np

MiB = 1 << 20
STEP = 32 * MiB  # scanned slice
HSTEP = 8 * MiB  # helper step
TCHUNK = 16 * MiB  # tripN: populated chunk
TRIP = 2 * MiB  # tripN: left unpopulated at each chunk's start
PAGE = 4096
MADV_POPULATE_READ = 22


def drop(settle, after=0.0):
    os.sync()
    time.sleep(settle)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("1\n")
    # Waiting after the drop lets free page reporting hand the freed blocks back to the host
    # (about 2 s after they are freed), so the scan's page cache lands in memory the host must
    # back again: the slow first touch of design 008.
    time.sleep(after)


def schedstat_ms():
    return int(open("/proc/thread-self/schedstat").read().split()[0]) / 1e6


def child(path, variant):
    toks = variant.split("+")
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size // STEP * STEP
    if "memmap" in toks:
        a = np.memmap(path, dtype=np.float64, mode="r", shape=(size // 8,))
        mm = None
    else:
        mm = mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        a = np.frombuffer(mm, dtype=np.float64)
    base = a.__array_interface__["data"][0]
    helper = None
    ahead = 0
    for t in toks:
        for kind in ("pop", "touch", "trip"):
            if t.startswith(kind):
                helper, ahead = kind, int(t[len(kind):]) * MiB
    pos = [0]
    stop = threading.Event()
    hstat = {"steps": 0, "behind": 0, "waits": 0, "cpu_ms": 0.0, "err": None}

    def run():
        c0 = time.thread_time()
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        u8 = np.frombuffer(a, dtype=np.uint8) if helper == "touch" else None
        done = 0
        if helper == "trip":
            trip_run(libc, c0)
            return
        while not stop.is_set() and done < size:
            p = pos[0]
            if done < p:  # the scanner passed us: no use touching what it has read
                hstat["behind"] += 1
                done = p - p % HSTEP
            if done < p + ahead:
                n = min(HSTEP, size - done)
                if helper == "pop":
                    if libc.madvise(base + done, n, MADV_POPULATE_READ) != 0:
                        hstat["err"] = os.strerror(ctypes.get_errno())
                        break
                else:
                    u8[done : done + n : PAGE].max()
                hstat["steps"] += 1
                done += n
            else:
                hstat["waits"] += 1
                time.sleep(0.0002)
        hstat["cpu_ms"] = (time.thread_time() - c0) * 1e3

    def trip_run(libc, c0):
        pm = os.open("/proc/self/pagemap", os.O_RDONLY)

        def mapped(off):
            return int.from_bytes(os.pread(pm, 8, (base + off) // PAGE * 8), "little") >> 63 == 1

        trips, crossed, done = [0], -1, 0
        while not stop.is_set() and (trips or done < size):
            while trips and mapped(trips[0]):
                crossed = trips.pop(0)
            if crossed >= 0 and done < size and done < crossed + ahead:
                n = min(TCHUNK, size - done)
                if n > TRIP and libc.madvise(base + done + TRIP, n - TRIP, MADV_POPULATE_READ) != 0:
                    hstat["err"] = os.strerror(ctypes.get_errno())
                    break
                if done:
                    trips.append(done)
                hstat["steps"] += 1
                done += n
            else:
                hstat["waits"] += 1
                time.sleep(0.0005)
        hstat["behind"] = len(trips)
        hstat["cpu_ms"] = (time.thread_time() - c0) * 1e3
        os.close(pm)

    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = resource.getrusage(resource.RUSAGE_THREAD)
    c0 = schedstat_ms()
    t = time.perf_counter()
    th = None
    if helper:
        th = threading.Thread(target=run, daemon=True)
        th.start()
    total = 0.0
    n = size // 8
    step = STEP // 8
    for i in range(0, n, step):
        pos[0] = i * 8
        total += float(np.asarray(a[i : i + step]).sum())
    dt = time.perf_counter() - t
    c1 = schedstat_ms()
    t1 = resource.getrusage(resource.RUSAGE_THREAD)
    stop.set()
    if th is not None:
        th.join()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    exp = n * (n - 1) / 2
    print(json.dumps({
        "gbs": size / dt / 1e9, "ok": abs(total - exp) <= 1e-9 * exp,
        "scan_run_ms": c1 - c0, "scan_user_ms": (t1.ru_utime - t0.ru_utime) * 1e3,
        "scan_sys_ms": (t1.ru_stime - t0.ru_stime) * 1e3,
        "minflt": r1.ru_minflt - r0.ru_minflt, "majflt": r1.ru_majflt - r0.ru_majflt,
        "helper": hstat if helper else None,
    }))


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def rng(xs, f="{:.2f}"):
    return f"{f.format(med(xs))} ({f.format(min(xs))}-{f.format(max(xs))})"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("file")
    p.add_argument("--repeats", type=int, default=6)
    p.add_argument("--variants", default="memmap,privrw,privrw+pop32,privrw+pop128,privrw+touch32,privrw+touch128")
    p.add_argument("--settle", type=float, default=5.0)
    p.add_argument("--after", type=float, default=0.0, help="seconds to wait after the drop")
    p.add_argument("--json", default=None)
    p.add_argument("--child", default=None)
    a = p.parse_args()
    if a.child:
        child(a.file, a.child)
        return
    vs = a.variants.split(",")
    res = {v: [] for v in vs}
    orders = []
    for rep in range(a.repeats):
        order = vs[rep % len(vs):] + vs[: rep % len(vs)]
        if rep % 2:
            order = order[::-1]
        orders.append(order)
        for v in order:
            drop(a.settle, a.after)
            out = subprocess.run([sys.executable, __file__, a.file, "--child", v], capture_output=True, text=True)
            if out.returncode:
                raise RuntimeError(out.stderr)
            r = json.loads(out.stdout)
            r["rep"] = rep
            r["time"] = time.strftime("%H:%M:%S", time.gmtime())
            res[v].append(r)
            h = r["helper"]
            hs = (f" helper cpu {h['cpu_ms']:.0f} ms steps {h['steps']} behind {h['behind']} waits {h['waits']}"
                  f"{' ERR ' + h['err'] if h['err'] else ''}") if h else ""
            print(f"# {r['time']} rep {rep} {v:16s} {r['gbs']:.3f} GB/s{'' if r['ok'] else ' WRONG SUM'} "
                  f"scan thread run {r['scan_run_ms']:.0f} ms (user {r['scan_user_ms']:.0f} sys {r['scan_sys_ms']:.0f}) "
                  f"minflt {r['minflt']} majflt {r['majflt']}{hs}", file=sys.stderr, flush=True)
            if a.json:
                with open(a.json, "w") as f:
                    json.dump({"variants": vs, "orders": orders, "results": res}, f)
    ref = vs[0]
    print(f"| variant | GB/s median (min-max) | / {ref} per repeat, median (min-max), repeats > 1 | "
          "scanning thread run ms | scanning thread user ms | helper CPU ms | minflt |")
    print("|---|---|---|---|---|---|---|")
    for v in vs:
        g = [r["gbs"] for r in res[v]]
        q = [x["gbs"] / y["gbs"] for x, y in zip(res[v], res[ref])]
        hc = [r["helper"]["cpu_ms"] for r in res[v] if r["helper"]]
        print(f"| {v} | {rng(g)} | {rng(q, '{:.3f}')}, {sum(x > 1 for x in q)}/{len(q)} | "
              f"{rng([r['scan_run_ms'] for r in res[v]], '{:.0f}')} | {rng([r['scan_user_ms'] for r in res[v]], '{:.0f}')} | "
              f"{rng(hc, '{:.0f}') if hc else '-'} | {med([r['minflt'] for r in res[v]]):.0f} |")


if __name__ == "__main__":
    main()
