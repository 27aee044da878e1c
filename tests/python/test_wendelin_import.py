"""Import of wendelin.core ZODB databases (issue 17): the two fixture databases written by the real
wendelin.core 0.13 (`../shared/fixtures/wendelin/`, unzipped to a temporary directory), one import
over ZEO, and databases crafted by `wendelin_writer.py` (history, unknown classes, missing and
corrupt records, pickles that call `os.system`)."""

import gzip
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import outcore
from outcore._wendelin import CorruptRecordError, MissingObjectError, RefusedGlobalError, _Appender

pytest.importorskip("ZODB")
pytest.importorskip("zodburi")

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO.parent / "shared" / "fixtures" / "wendelin"
WRITER = Path(__file__).with_name("wendelin_writer.py")


def _fixture(name, tmp_path):
    """(path of the unzipped FileStorage, manifest) of fixture `name` (zblk0 or zblk1)."""
    gz = FIXTURES / f"{name}.fs.gz"
    if not gz.exists():
        pytest.skip(f"fixture {gz} not found")
    fs = tmp_path / f"{name}.fs"
    with gzip.open(gz, "rb") as src, open(fs, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return fs, json.loads((FIXTURES / f"{name}.fs.json").read_text())


def _written(scenario, tmp_path, marker=None):
    """A database written by `wendelin_writer.py` (in a child process): (path, its JSON)."""
    fs = tmp_path / f"{scenario}.fs"
    args = [sys.executable, str(WRITER), scenario, str(fs)] + ([str(marker)] if marker else [])
    out = subprocess.run(args, check=True, capture_output=True, text=True, timeout=120)
    return fs, json.loads(out.stdout or "{}")


def _describe(A):
    v = np.ascontiguousarray(A[...])
    dt = A.dtype.str if A.dtype.fields is None else repr(A.dtype.descr)
    return {"shape": list(A.shape), "dtype": dt, "order": A.order, "sha1": hashlib.sha1(v.tobytes()).hexdigest()}


def _check_manifest(dst, manifest):
    with outcore.open(dst, mode="r") as db:
        root = db.connect().root
        names = []
        root.visititems(lambda p, o: names.append(p) if isinstance(o, outcore.Array) else None)
        assert sorted(names) == sorted(manifest)
        for name, m in manifest.items():
            A = root[name]
            got = _describe(A)
            assert got == {k: m[k] for k in got}, name
            assert A.blksize == m["blksize"], name


def _state(dst):
    """What a database holds: its head and every array's description."""
    if not os.path.exists(dst):
        return None
    with outcore.open(dst, mode="r") as db:
        root = db.connect().root
        return db.head, {n: _describe(root[n]) for n in sorted(root._raw.keys())}


@pytest.fixture
def dst(tmp_path):
    return str(tmp_path / "dst.outcore")


@pytest.mark.parametrize("name", ["zblk0", "zblk1"])
def test_fixture_imports_as_its_manifest_says(name, tmp_path, dst):
    fs, manifest = _fixture(name, tmp_path)
    seen = []
    t = time.monotonic()
    r = outcore.import_wendelin(fs, dst, verify=True, progress=lambda done, total: seen.append((done, total)))
    secs = time.monotonic() - t
    _check_manifest(dst, manifest)
    assert r["verified"]["arrays"] == len(manifest)
    assert len(r["commits"]) == 1
    assert seen and seen[-1][0] == seen[-1][1] == r["bytes"]
    # Holes stay holes: the store's data file holds extents for the present blocks only.
    present = sum(a["blocks"] for a in r["arrays"].values())
    assert r["arrays"]["nested/bytes"]["blocks"] == 2  # of 6: the rest were never written
    assert os.path.getsize(dst + ".blocks") <= present * (2 << 20)
    with outcore.open(dst, mode="r") as db:
        assert db.history()[-1]["description"].startswith("import of the wendelin.core database")
    print(f"\n{name}: {r['bytes'] / 1e6:.1f} MB of blocks in {secs:.2f} s: {r['bytes'] / 1e6 / secs:.1f} MB/s")


def _import_and_compare(fs, dst, expected, blocks):
    """Import `fs` into `dst` (verified): the stored blocks per array are `blocks` and every
    array reads back as `expected` describes it. Returns the import report."""
    r = outcore.import_wendelin(fs, dst, verify=True)
    assert {n: a["blocks"] for n, a in r["arrays"].items()} == blocks
    with outcore.open(dst, mode="r") as db:
        root = db.connect().root
        for name, m in expected.items():
            assert _describe(root[name]) == m, name
    return r


def test_holes_stay_holes_with_small_blocks(tmp_path, dst):
    fs, expected = _written("sparse", tmp_path)
    blocks = expected.pop("blocks")
    assert blocks == {"u8": 2, "rows": 3, "cols": 2}  # of 25, 8 and 137
    _import_and_compare(fs, dst, expected, blocks)
    # the data file holds the present blocks only (each at most its block size)
    assert os.path.getsize(dst + ".blocks") <= 2 * 4096 + 3 * 8192 + 2 * 4096


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("view_budget", [None, 0])
def test_random_sparse_arrays(seed, view_budget, tmp_path, dst, monkeypatch):
    """Random shapes, orders, dtypes and sparse writes; with no budget for writes through the
    view, rows straddling a hole's edge are appended with their zeros (same data)."""
    if view_budget is not None:
        monkeypatch.setattr(_Appender, "VIEW_BUDGET", view_budget)
    fs, expected = _written("random", tmp_path, seed)
    blocks = expected.pop("blocks")
    r = _import_and_compare(fs, dst, expected, blocks)
    if view_budget is None:
        stored = sum(n * r["arrays"][a]["blksize"] for a, n in blocks.items())
        assert os.path.getsize(dst + ".blocks") <= stored


def test_file_url_and_existing_arrays(tmp_path, dst):
    fs, manifest = _fixture("zblk0", tmp_path)
    outcore.import_wendelin(f"file://{fs}", dst)
    before = _state(dst)
    with pytest.raises(outcore.AlreadyExistsError, match="'signal' exists"):
        outcore.import_wendelin(fs, dst)
    assert _state(dst) == before
    r = outcore.import_wendelin(fs, dst, overwrite=True, verify=True)
    assert r["verified"]["arrays"] == len(manifest)
    _check_manifest(dst, manifest)


def test_into_an_open_db_beside_other_arrays(tmp_path, dst):
    fs, manifest = _fixture("zblk1", tmp_path)
    with outcore.open(dst) as db:
        with db.transaction() as conn:
            conn.root.create("mine/x", data=np.arange(10))
        outcore.import_wendelin(fs, db)
        conn = db.connect()
        assert list(conn.root["mine/x"][:]) == list(range(10))
        assert conn.root["nested"]["be"].dtype == np.dtype(">u4")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_import_over_zeo(tmp_path, dst):
    fs, manifest = _fixture("zblk1", tmp_path)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "ZEO.runzeo", "-a", f"127.0.0.1:{port}", "-f", str(fs)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"runzeo did not start: {server.communicate(timeout=5)[0]!r}")
                time.sleep(0.1)
        r = outcore.import_wendelin(f"zeo://127.0.0.1:{port}", dst, verify=True)
        assert r["verified"]["arrays"] == len(manifest)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    _check_manifest(dst, manifest)


def test_history_replays_every_transaction(tmp_path, dst):
    fs, expected = _written("history", tmp_path)
    r = outcore.import_wendelin(fs, dst, history=True, verify=True)
    assert r["skipped"] == []
    with outcore.open(dst, mode="r") as db:
        hist = db.history()
        assert [h["user"] for h in hist] == ["alice", "alice", "bob", "bob", "carol", "carol", "dave", "dave"]
        assert hist[1]["description"] == "fill a" and hist[-1]["description"] == "delete p"
        assert [h["extension"]["zodb"]["tid"] for h in hist] == list(expected)
        assert all(h["extension"]["purpose"] == "test" for h in hist)
        for h in hist:
            want = expected[h["extension"]["zodb"]["tid"]]
            root = db.connect(at=h["tid"]).root
            assert sorted(root._raw.keys()) == sorted(want), h["description"]
            for name, m in want.items():
                assert _describe(root[name]) == m, (h["description"], name)
        head = db.connect().root
        assert sorted(head._raw.keys()) == ["a", "g/b"]
        assert head["a"].blksize == 1 << 16 and head["g/b"].blksize == 1 << 15


def test_history_of_a_packed_fixture_keeps_the_final_state(tmp_path, dst):
    fs, manifest = _fixture("zblk1", tmp_path)
    r = outcore.import_wendelin(fs, dst, history=True, verify=True)
    assert len(r["commits"]) >= 1 and r["skipped"]  # packed: the early states are gone
    _check_manifest(dst, manifest)


@pytest.mark.parametrize("scenario, error, match", [
    ("unknown", RefusedGlobalError, "'mymod.Thing'"),
    ("unknown-block", RefusedGlobalError, "(array 'a': block 0|object 0x4).*'mymod.Thing'"),
    ("missing", MissingObjectError, "object 0x99 is missing"),
    ("corrupt", CorruptRecordError, "(array 'a': block 0|object 0x4).*corrupt record"),
])
@pytest.mark.parametrize("history", [False, True])
def test_errors_name_what_failed_and_leave_dst_unchanged(scenario, error, match, history, tmp_path, dst):
    """With history=True every record is read with the restricted lookup before the first
    commit, so these fail before anything is replayed too."""
    fs, _ = _written(scenario, tmp_path)
    with outcore.open(dst) as db:
        with db.transaction() as conn:
            conn.root.create("keep", data=np.arange(100.0))
    before = _state(dst)
    with pytest.raises(error, match=match):
        outcore.import_wendelin(fs, dst, history=history)
    assert _state(dst) == before
    # nothing created where there was no database
    with pytest.raises(error):
        outcore.import_wendelin(fs, str(tmp_path / "new.outcore"))
    assert not os.path.exists(tmp_path / "new.outcore")


@pytest.mark.parametrize("scenario", ["evil-state", "evil-class", "evil-root"])
@pytest.mark.parametrize("history", [False, True])
def test_a_pickle_calling_os_system_is_refused_and_nothing_runs(scenario, history, tmp_path, dst):
    marker = tmp_path / "marker"
    fs, _ = _written(scenario, tmp_path, marker)
    assert not marker.exists()
    with pytest.raises(RefusedGlobalError, match=r"'(posix|os)\.system'.* neither imported nor called") as e:
        outcore.import_wendelin(fs, dst, history=history)
    assert e.value.global_name in ("posix.system", "os.system")
    assert not marker.exists()
    assert not os.path.exists(dst)


def test_an_evil_transaction_extension_is_not_run(tmp_path, dst):
    marker = tmp_path / "marker"
    fs, _ = _written("evil-extension", tmp_path, marker)
    r = outcore.import_wendelin(fs, dst, history=True)
    assert not marker.exists()
    with outcore.open(dst, mode="r") as db:
        assert r["commits"] and "zodb" in db.history()[-1]["extension"]


def test_command_line(tmp_path, dst):
    fs, manifest = _fixture("zblk0", tmp_path)
    cmd = [sys.executable, "-m", "outcore.wendelin", str(fs), dst, "--verify"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "imported 6 arrays" in p.stdout and "verified 6 arrays" in p.stdout
    assert "\r" not in p.stderr  # no progress bar when stderr is not a terminal
    _check_manifest(dst, manifest)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 1 and "exists in the destination" in p.stderr
    p = subprocess.run(cmd + ["--overwrite", "-q"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([sys.executable, "-m", "outcore.wendelin", str(tmp_path / "nope.fs"), dst],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 1 and "no ZODB FileStorage" in p.stderr


def test_the_outcore_command_imports_too(tmp_path, dst):
    # `outcore import-wendelin` is the same import as `python -m outcore.wendelin`.
    fs, manifest = _fixture("zblk1", tmp_path)
    cmd = [sys.executable, "-m", "outcore", "import-wendelin", str(fs), dst, "--verify"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "verified" in p.stdout
    _check_manifest(dst, manifest)
    p = subprocess.run([sys.executable, "-m", "outcore", "import-wendelin", "--help"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "outcore import-wendelin" in p.stdout
