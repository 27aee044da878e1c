"""The `outcore` command of the installed package: the console script and `python -m outcore`
run every command on real stores (local and PostgreSQL)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import outcore

SCRIPT = shutil.which("outcore", path=str(Path(sys.executable).parent)) or "outcore"
COMMANDS = ["info", "log", "history", "check", "gc", "export", "import", "cp", "demo"]


def run(*args, entry="script", check=True):
    cmd = [SCRIPT] if entry == "script" else [sys.executable, "-m", "outcore"]
    r = subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, timeout=600)
    if check:
        assert r.returncode == 0, f"{args}: {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def jrun(*args, **kw):
    return json.loads(run("--json", *args, **kw).stdout)


def make_store(url):
    """Two arrays over three commits with notes; returns the expected arrays at the head."""
    db = outcore.open(url, blksize=64 << 10)
    conn = db.connect(transaction_manager=False)
    a = conn.root.create("signal", (300_000,), "f8")
    a[:] = np.sin(np.arange(300_000) * 0.2)
    conn.commit(note="create signal", user="alice")
    g = conn.root.create("grid", (40, 50), "<i4", order="F")
    g[:] = np.arange(2000, dtype="<i4").reshape(40, 50)
    conn.commit(note="add grid", user="bob")
    a[1000:2000] = 7.0
    conn.commit(note="patch signal")
    conn.abort()
    return {"signal": np.array(a[:]), "grid": np.array(g[:])}


@pytest.mark.parametrize("entry", ["script", "module"])
def test_help_everywhere(entry):
    top = run("--help", entry=entry).stdout
    for c in COMMANDS:
        assert c in top
        assert "Usage: outcore" in run(c, "--help", entry=entry).stdout
    assert run("--version", entry=entry).stdout.strip() == f"outcore {outcore.__version__}"


def test_inspection_never_creates_a_store(tmp_path):
    missing = tmp_path / "typo.outcore"
    for c in (["info"], ["log"], ["check"], ["gc"], ["export"]):
        args = [*c, missing] + (["a", tmp_path / "a.npy"] if c == ["export"] else [])
        r = run(*args, check=False)
        assert r.returncode == 1 and "no store" in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []
    assert run("bogus-command", check=False).returncode == 2


def test_info_log_check_gc_on_a_local_store(tmp_path):
    path = tmp_path / "s.outcore"
    expect = make_store(str(path))
    info = jrun("info", path)
    arrays = {a["name"]: a for a in info["arrays"]}
    assert arrays["signal"]["shape"] == [300_000] and arrays["signal"]["dtype"] == "<f8"
    assert arrays["grid"]["order"] == "F" and arrays["grid"]["nbytes"] == expect["grid"].nbytes
    assert arrays["signal"]["engine"] == "page cache"
    assert info["format_version"] == 5
    text = run("info", path).stdout
    assert "signal" in text and "grid" in text and "last commit" in text and "store format 5" in text
    log = jrun("log", path)
    assert [t["note"] for t in log] == ["create signal", "add grid", "patch signal"]
    assert log[0]["user"] == "alice" and "T" in log[0]["time"]  # a local ISO date, not epoch
    assert "create signal" in run("history", path, entry="module").stdout
    chk = jrun("check", path)
    assert chk["ok"] and chk["arrays"] == 2 and chk["errors"] == []
    gc = jrun("gc", path)
    assert gc["removed"]["block_versions"] >= 1
    assert "removed" in run("gc", path).stdout


def test_check_names_a_flipped_byte(tmp_path):
    path = tmp_path / "s.outcore"
    db = outcore.open(str(path), blksize=64 << 10)
    conn = db.connect(transaction_manager=False)
    a = conn.root.create("x", (100_000,), "f8")
    a[:] = np.arange(100_000.0)
    conn.commit()
    conn.abort()
    del a, conn, db
    blocks = Path(f"{path}.blocks")
    data = bytearray(blocks.read_bytes())
    at = next(i for i in range(len(data) - 1, -1, -1) if data[i])  # a byte of the last block's data
    data[at] ^= 0x10
    blocks.write_bytes(bytes(data))
    r = run("check", path, check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAILED array 'x' block" in r.stdout, r.stdout
    doc = json.loads(run("--json", "check", path, check=False).stdout)
    assert not doc["ok"] and doc["errors"][0]["array"] == "x"


@pytest.mark.parametrize("fmt", ["npy", "zarr", "h5"])
def test_export_and_import_round_trip(tmp_path, fmt):
    path = tmp_path / "s.outcore"
    expect = make_store(str(path))
    for name, want in expect.items():
        f = tmp_path / f"{name}.{fmt}"
        run("export", path, name, f)
        if fmt == "npy":
            got = np.load(f)
        elif fmt == "zarr":
            zarr = pytest.importorskip("zarr")
            got = zarr.open_array(str(f), mode="r")[...]
        else:
            h5py = pytest.importorskip("h5py")
            with h5py.File(f, "r") as h:
                got = h[name][...]
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype
        # And back, into another store.
        other = tmp_path / "o.outcore"
        run("import", other, name, f)
        conn = outcore.open(str(other)).connect(transaction_manager=False)
        np.testing.assert_array_equal(conn.root[name][...], want)
    assert run("import", other, "signal", tmp_path / f"signal.{fmt}", check=False).returncode == 1
    run("import", "--replace", other, "signal", tmp_path / f"signal.{fmt}")


def test_export_at_an_older_tid(tmp_path):
    path = tmp_path / "s.outcore"
    make_store(str(path))
    first = jrun("log", path)[0]["tid"]
    run("export", "--at", first, path, "signal", tmp_path / "old.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "old.npy"), np.sin(np.arange(300_000) * 0.2))


def _history(url):
    return [(t["user"], t["note"]) for t in jrun("log", "-n", "0", url)]


def _arrays(url):
    conn = outcore.open(url).connect(transaction_manager=False)
    return {k: np.array(conn.root[k][...]) for k in conn.root.keys()}


@pytest.mark.parametrize("current", [False, True])
def test_cp_to_postgresql_and_back(tmp_path, current, request):
    from conftest import _pg_database

    pg, drop = _pg_database()
    request.addfinalizer(drop)
    src = tmp_path / "s.outcore"
    expect = make_store(str(src))
    flags = ["--current"] if current else []
    out = jrun("cp", *flags, src, pg)
    assert out["commits"] == (1 if current else 3) and out["blocks_verified"] > 0
    back = tmp_path / "back.outcore"
    run("cp", *flags, pg, back)
    for url in (pg, str(back)):
        got = _arrays(url)
        assert got.keys() == expect.keys()
        for k in expect:
            np.testing.assert_array_equal(got[k], expect[k])
    if not current:
        assert _history(str(src)) == _history(pg) == _history(str(back))
    # cp refuses to overwrite.
    assert run("cp", src, back, check=False).returncode == 1
    assert run("cp", src, pg, check=False).returncode == 1


def test_commands_on_postgresql(url, tmp_path):
    if not url.startswith("postgresql"):
        pytest.skip("the local store is covered above")
    expect = make_store(url)
    assert {a["name"] for a in jrun("info", url)["arrays"]} == set(expect)
    assert jrun("check", url)["ok"]
    run("export", url, "grid", tmp_path / "g.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "g.npy"), expect["grid"])
    run("import", url, "g2", tmp_path / "g.npy")
    assert len(jrun("log", url)) == 4
    jrun("gc", url)


def test_info_names_the_engine_of_a_fill_array(tmp_path):
    path = str(tmp_path / "f.outcore")
    db = outcore.open(path)
    conn = db.connect(transaction_manager=False)
    conn.root.create("plain", (1000,), "f8")
    conn.root.create("nan", (1000,), "f8", fill_value=np.nan)
    conn.commit()
    db.close()
    arrays = {a["name"]: a for a in jrun("info", path)["arrays"]}
    assert arrays["plain"]["engine"] == "page cache"
    assert arrays["nan"]["engine"] == "userfaultfd"  # a non-zero fill value is read through it


def _read_only_mount(src: Path, dst: Path, script: str) -> subprocess.CompletedProcess:
    """Run `script` (shell) in a new mount namespace where `dst` is a read-only bind mount of
    `src` (needs root; skips otherwise)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a read-only mount needs root and unshare")
    dst.mkdir()
    inner = f"mount --bind '{src}' '{dst}' && mount -o remount,bind,ro '{dst}' && {script}"
    r = subprocess.run(["unshare", "-m", "sh", "-c", inner], capture_output=True, text=True, timeout=600)
    if "mount" in r.stderr and r.returncode != 0 and "Permission denied" in r.stderr:
        pytest.skip(f"no mount namespace here: {r.stderr.strip()}")
    return r


def test_inspection_and_mode_r_work_on_read_only_media(tmp_path):
    """`info`, `log`, `check`, `export` and `outcore.open(mode="r")` read a store on a read-only
    file system (they open it read-only); nothing is created beside it."""
    src = tmp_path / "src"
    src.mkdir()
    expect = make_store(str(src / "s.outcore"))
    np.save(tmp_path / "expect.npy", expect["signal"])
    before = sorted(p.name for p in src.iterdir())
    ro = tmp_path / "ro"
    out = tmp_path / "out"
    out.mkdir()
    store = ro / "s.outcore"
    py = (
        "import numpy as np, outcore, sys; "
        f"A = outcore.open(sys.argv[1], mode='r').connect().root['signal']; "
        f"assert np.array_equal(A[:], np.load('{tmp_path / 'expect.npy'}')); print('mode-r-ok')"
    )
    script = " && ".join([
        f"'{SCRIPT}' --json info '{store}'",
        f"'{SCRIPT}' log '{store}'",
        f"'{SCRIPT}' check '{store}'",
        f"'{SCRIPT}' export '{store}' signal '{out / 'signal.npy'}'",
        f"'{sys.executable}' -c \"{py}\" '{store}'",
        f"! '{SCRIPT}' gc '{store}' 2> '{out / 'gc.err'}'",
    ])
    r = _read_only_mount(src, ro, script)
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    assert "patch signal" in r.stdout and "mode-r-ok" in r.stdout, r.stdout
    assert json.JSONDecoder().raw_decode(r.stdout)[0]["arrays"], r.stdout
    assert np.array_equal(np.load(out / "signal.npy"), expect["signal"])
    assert "read-only" in (out / "gc.err").read_text()
    assert sorted(p.name for p in src.iterdir()) == before, "nothing created beside the store"
