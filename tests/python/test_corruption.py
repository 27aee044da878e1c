"""Corrupt metadata is detected, never read as wrong data: seeded single-bit flips in the
metadata pages (the SQLite file) of a local store with several arrays and commits. Each damaged
copy is opened in a new process that reads every array whole, at the head and at an older
snapshot, under a timeout. Every trial must read right or fail with a message; none may read
wrong data, die by a signal without a word, or hang.

`OUTCORE_FUZZ_TRIALS` changes the number of trials (default 200)."""

import json
import os
import random
import shutil
import subprocess
import sys
import hashlib
import inspect

import numpy as np
import pytest

import outcore

TRIALS = int(os.environ.get("OUTCORE_FUZZ_TRIALS", "200"))
SEED = 14
TIMEOUT = 60

def digest(conn):
    out = {}
    for name in sorted(conn.root.keys()):
        a = np.array(conn.root[name][...])
        out[name] = [list(a.shape), a.dtype.str, hashlib.sha1(a.tobytes()).hexdigest()]
    return out


# Reads everything a user could read: the arrays at the head and at snapshot argv[2] (the same
# `digest` as the expected values are computed with).
READER = (
    "import hashlib, json, sys\nimport numpy as np\nimport outcore\n"
    + inspect.getsource(digest)
    + """
db = outcore.open(sys.argv[1])
print(json.dumps({"head": digest(db.connect(transaction_manager=False)),
                  "old": digest(db.connect(at=int(sys.argv[2]), transaction_manager=False))}))
"""
)


def build(path):
    """Three arrays (raw, compressed, 2-D with holes) and a few commits; returns the tid of an
    older snapshot the readers also read."""
    db = outcore.open(path, blksize=64 << 10)
    conn = db.connect(transaction_manager=False)
    rng = np.random.default_rng(SEED)
    a = conn.root.create("raw", 0, "f8")
    a.append(rng.random(100_000))
    z = conn.root.create("zipped", (50_000,), "i4", compression="zstd")
    z[:] = np.arange(50_000, dtype="i4")
    m = conn.root.create("grid", (64, 512), "u2")
    m[3:9, :] = 7
    m[40, 100:300] = 9
    old = conn.commit()
    for k in range(6):
        i = rng.integers(0, 100_000, 5)
        a[:][i] = k  # through a view: fancy indexing
        z[int(rng.integers(0, 50_000))] = -k
        a.append(rng.random(3000))
        conn.commit()
    m.resize((32, 512))
    conn.commit()
    conn.abort()
    return old


def read(path, old):
    """Runs the reader on `path`: (outcome, detail) with outcome in
    ok/error/signal/timeout."""
    try:
        r = subprocess.run([sys.executable, "-c", READER, path, str(old)], capture_output=True, text=True,
                           timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return "timeout", ""
    if r.returncode == 0:
        return "ok", json.loads(r.stdout.strip().splitlines()[-1])
    if r.returncode < 0:
        return "signal", f"signal {-r.returncode}; stderr: {r.stderr.strip()[-400:]!r}"
    return "error", r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""


def files_of(path):
    return [p for p in (path, path + ".blocks", path + ".readers") if os.path.exists(p)]


# Tables whose rows decide what is read (and their indexes), for the targeted trials.
METADATA = ("outcore_current", "outcore_array", "outcore_blocks", "outcore_head", "outcore_txn",
            "outcore_local", "outcore_free", "outcore_retired", "outcore_staged", "outcore_redo",
            "outcore_meta", "outcore_array_tid", "outcore_txn_time", "outcore_retired_blk", "sqlite_schema")


def metadata_ranges(path):
    """Byte ranges of the used parts of the pages of the metadata tables (`dbstat`), or None
    where SQLite lacks that table."""
    import sqlite3

    c = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = c.execute("SELECT name, pgoffset, pgsize, unused FROM dbstat").fetchall()
    except sqlite3.OperationalError:
        return None
    finally:
        c.close()
    # Cells fill a page from its end; its header is at its start.
    out = []
    for name, off, size, unused in rows:
        if name in METADATA:
            out.append((off, 16))
            out.append((off + unused, size - unused))
    return out


@pytest.mark.parametrize("where", ["anywhere", "metadata rows"])
def test_metadata_bit_flips_are_detected_or_harmless(tmp_path, where):
    src = str(tmp_path / "src.outcore")
    old = build(src)
    import gc

    gc.collect()
    # All in the main file: the last connection closed checkpointed the WAL away.
    assert not os.path.exists(src + "-wal") or os.path.getsize(src + "-wal") == 0
    want = read(src, old)
    assert want[0] == "ok", want
    size = os.path.getsize(src)
    ranges = [(0, size)] if where == "anywhere" else metadata_ranges(src)
    if ranges is None:
        pytest.skip("this SQLite has no dbstat table to find the metadata pages")
    weights = [n for _, n in ranges]
    rng = random.Random(SEED)
    tally = {"right": 0, "detected": 0, "wrong": [], "silent signal": [], "timeout": []}
    for trial in range(TRIALS):
        d = tmp_path / f"t{trial}"
        d.mkdir()
        dst = str(d / "src.outcore")
        for f in files_of(src):
            shutil.copyfile(f, str(d / os.path.basename(f)))
        start, n = rng.choices(ranges, weights)[0]
        bit = start * 8 + rng.randrange(n * 8)
        with open(dst, "r+b") as f:
            f.seek(bit // 8)
            b = f.read(1)[0]
            f.seek(bit // 8)
            f.write(bytes([b ^ (1 << (bit % 8))]))
        outcome, detail = read(dst, old)
        spot = f"trial {trial}: bit {bit} (page {bit // 8 // 4096}, byte {bit // 8 % 4096})"
        if outcome == "ok":
            if detail == want[1]:
                tally["right"] += 1
            else:
                tally["wrong"].append(spot)
        elif outcome == "error":
            tally["detected"] += 1
        elif outcome == "signal":
            # A signal is acceptable only with the cause printed first.
            if "outcore" in detail:
                tally["detected"] += 1
            else:
                tally["silent signal"].append(f"{spot}: {detail}")
        else:
            tally["timeout"].append(spot)
        shutil.rmtree(d)
    print(f"\n{where}: {TRIALS} trials: {tally['right']} read right, {tally['detected']} detected, "
          f"{len(tally['wrong'])} wrong, {len(tally['silent signal'])} silent signals, "
          f"{len(tally['timeout'])} timeouts")
    assert not tally["wrong"], tally["wrong"]
    assert not tally["silent signal"], tally["silent signal"]
    assert not tally["timeout"], tally["timeout"]
