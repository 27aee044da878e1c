"""Paired cold scans: outcore against numpy.memmap of the same bytes (and a raw read), caches
dropped before each, alternating order, with per-scan counters.

    .venv/bin/python docs/design/experiments/cold_scan.py --dir DIR [--size MiB] [--repeats N]
        [--settle S] [--only raw,outcore,memmap] [--json FILE]

The files (an outcore store, a .npy-less raw file read by numpy.memmap and by the raw read) are
made once in DIR and kept (`--fresh` remakes them). Each scan runs in a new process and reports:
seconds, GB/s, getrusage minflt/majflt, the process's read_bytes, the disk's read requests and
sectors (/proc/diskstats, so the average request size) and a few /proc/vmstat counters, plus the
number of mappings (/proc/self/maps lines) covering the scanned array. Written for
docs/design/008-cold-scan.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "benches"))
import peers  # noqa: E402

MiB = 1 << 20
VMSTAT = ("pgmajfault", "pgfault", "thp_file_mapped", "nr_file_hugepages", "pgpgin", "workingset_refault_file")


def disk_reads() -> tuple[int, int]:
    """(read requests completed, sectors read) over whole disks."""
    ios = sectors = 0
    with open("/proc/diskstats") as f:
        for line in f:
            p = line.split()
            dev = p[2]
            if dev.startswith(("loop", "ram", "dm-", "zram", "sr")) or os.path.exists(f"/sys/class/block/{dev}/partition"):
                continue
            ios += int(p[3])
            sectors += int(p[5])
    return ios, sectors


def vmstat() -> dict:
    out = {}
    with open("/proc/vmstat") as f:
        for line in f:
            k, v = line.split()
            if k in VMSTAT:
                out[k] = int(v)
    return out


def maps_covering(lo: int, hi: int) -> int:
    n = 0
    with open("/proc/self/maps") as f:
        for line in f:
            a, b = (int(x, 16) for x in line.split()[0].split("-"))
            if a < hi and b > lo:
                n += 1
    return n


def scan_child(system: str, path: str, n: int, how: str) -> None:
    if how.endswith("+prefault"):
        # Touch and free 3 GiB of anonymous memory first, so the page cache the scan fills lands
        # in memory the host backs now: this VM's balloon reports free 2 MiB blocks to the host,
        # and the first guest access to one it took back is slow (docs/design/008-cold-scan.md).
        how = how.removesuffix("+prefault")
        junk = np.ones(3 << 27)
        del junk
    if system == "raw":
        r0, d0, v0 = resource.getrusage(resource.RUSAGE_SELF), disk_reads(), vmstat()
        t = time.perf_counter()
        gbs = peers.raw_read(path)
        dt = time.perf_counter() - t
        out = {"s": dt, "gbs": gbs, "sum": None, "maps": 0}
    else:
        s = peers.SYSTEMS[system](path)
        a = s.open_read()
        lo = a.__array_interface__["data"][0]
        out = {"maps": maps_covering(lo, lo + a.nbytes)}
        r0, d0, v0 = resource.getrusage(resource.RUSAGE_SELF), disk_reads(), vmstat()
        t = time.perf_counter()
        if how == "chunked":
            total = peers.chunked_sum(a, n)
        else:
            total = float(np.asarray(a).sum())
        dt = time.perf_counter() - t
        out.update(s=dt, gbs=n * 8 / dt / 1e9, sum=total)
    r1, d1, v1 = resource.getrusage(resource.RUSAGE_SELF), disk_reads(), vmstat()
    out["minflt"] = r1.ru_minflt - r0.ru_minflt
    out["majflt"] = r1.ru_majflt - r0.ru_majflt
    out["utime"] = r1.ru_utime - r0.ru_utime
    out["stime"] = r1.ru_stime - r0.ru_stime
    out["disk_ios"] = d1[0] - d0[0]
    out["disk_MiB"] = (d1[1] - d0[1]) * 512 / MiB
    out["avg_req_KiB"] = (d1[1] - d0[1]) * 512 / 1024 / max(1, d1[0] - d0[0])
    out["vm"] = {k: v1[k] - v0.get(k, 0) for k in v1}
    print(json.dumps(out))


def run_scan(system, path, n, how):
    env = dict(os.environ)
    if system == "outcore-huge":
        # An experiment build only (not committed): the pager reads OUTCORE_EXPERIMENT_HUGE and
        # then advises MADV_HUGEPAGE on every extent, as before the change of 008-cold-scan.
        system, env["OUTCORE_EXPERIMENT_HUGE"] = "outcore", "1"
    elif system == "outcore-noahead":
        # outcore without its scan-ahead thread (the kernel's readahead only).
        system, env["OUTCORE_SCAN_AHEAD_MIB"] = "outcore", "0"
    r = subprocess.run([sys.executable, __file__, "--child", system, path, str(n), how],
                       capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dir")
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--settle", type=float, default=3.0)
    p.add_argument("--only", default="raw,outcore,numpy.memmap")
    p.add_argument("--how", default="chunked", choices=("chunked", "whole"))
    p.add_argument("--prefault", action="store_true", help="touch and free 3 GiB before each scan")
    p.add_argument("--fresh", action="store_true")
    p.add_argument("--reads", action="store_true",
                   help="also 10,000 cold random reads per system and repeat (benches/peers.py's)")
    p.add_argument("--json", default=None)
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        system, path, n, how = a.child
        scan_child(system, path, int(n), how)
        return
    n = a.size * MiB // 8
    os.makedirs(a.dir, exist_ok=True)
    base = os.path.join(a.dir, "a")
    paths = {"raw": base + ".raw", "outcore": base, "outcore-huge": base, "outcore-noahead": base, "numpy.memmap": base}
    marker = os.path.join(a.dir, f"made-{a.size}")
    if a.fresh or not os.path.exists(marker):
        for f in os.listdir(a.dir):
            full = os.path.join(a.dir, f)
            if os.path.isdir(full):
                import shutil

                shutil.rmtree(full)
            else:
                os.remove(full)
        peers.write_raw(base + ".raw", n)
        for name in ("outcore", "numpy.memmap"):
            s = peers.SYSTEMS[name](base)

            def chunks():
                for i in range(0, n, peers.CHUNK // 8):
                    yield np.arange(i, min(i + peers.CHUNK // 8, n), dtype=np.float64)

            s.ingest(n, chunks())
        os.sync()
        time.sleep(15)
        open(marker, "w").close()
    for f in sorted(os.listdir(a.dir)):
        full = os.path.join(a.dir, f)
        if os.path.isfile(full) and os.path.getsize(full) > MiB:
            fr = subprocess.run(["filefrag", full], capture_output=True, text=True).stdout.strip()
            print(f"# {fr}", file=sys.stderr)
    systems = a.only.split(",")
    rows = []
    peers.SETTLE_S = a.settle
    for rep in range(a.repeats):
        order = systems[rep % len(systems):] + systems[: rep % len(systems)]
        if rep % 2 and len(systems) > 2:
            order = order[::-1]
        row = {}
        for name in order:
            peers.drop_caches()
            row[name] = run_scan(name, paths[name], n, a.how + ("+prefault" if a.prefault else ""))
            if row[name]["sum"] is not None:
                assert abs(row[name]["sum"] - n * (n - 1) / 2) < 1e-9 * n * n
            r = row[name]
            if a.reads and name != "raw":
                peers.drop_caches()
                rd = peers.run_child(name, paths[name], "reads", n, False)
                assert "wrong" not in rd, rd["wrong"]
                r["reads_mean_us"], r["reads_median_us"] = rd["mean_us"], rd["median_us"]
                print(f"# rep {rep} {name:13s} cold random reads mean {rd['mean_us']:.1f} us, "
                      f"median {rd['median_us']:.2f} us", file=sys.stderr)
            print(f"# rep {rep} {name:13s} {r['gbs']:.3f} GB/s minflt {r['minflt']} majflt {r['majflt']} "
                  f"maps {r['maps']} ios {r['disk_ios']} avg {r['avg_req_KiB']:.0f} KiB "
                  f"user {r['utime']:.2f} sys {r['stime']:.2f} vm {r['vm']}", file=sys.stderr)
        rows.append(row)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(rows, f, indent=1)
    print("| repeat | " + " | ".join(f"{s} GB/s" for s in systems) + " | outcore / memmap | outcore / raw |")
    print("|---|" + "---|" * (len(systems) + 2))
    ratios, rraw = [], []
    for i, row in enumerate(rows):
        g = {s: row[s]["gbs"] for s in systems}
        rm = g["outcore"] / g["numpy.memmap"] if "outcore" in g and "numpy.memmap" in g else None
        rr = g["outcore"] / g["raw"] if "outcore" in g and "raw" in g else None
        if rm:
            ratios.append(rm)
        if rr:
            rraw.append(rr)
        print(f"| {i + 1} | " + " | ".join(f"{g[s]:.3f}" for s in systems)
              + f" | {rm or float('nan'):.3f} | {rr or float('nan'):.3f} |")
    med = {s: statistics.median(r[s]["gbs"] for r in rows) for s in systems}
    print("| median | " + " | ".join(f"{med[s]:.3f}" for s in systems)
          + (f" | {statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})" if ratios else " | ")
          + (f" | {statistics.median(rraw):.3f} ({min(rraw):.3f}-{max(rraw):.3f}) |" if rraw else " | |"))

    if a.reads:
        for s in systems:
            if s != "raw":
                mean = [r[s]["reads_mean_us"] for r in rows]
                med_ = [r[s]["reads_median_us"] for r in rows]
                print(f"{s}: cold random reads mean {statistics.median(mean):.1f} us ({min(mean):.1f}-{max(mean):.1f}), "
                      f"median {statistics.median(med_):.2f} us ({min(med_):.2f}-{max(med_):.2f})")


if __name__ == "__main__":
    main()
