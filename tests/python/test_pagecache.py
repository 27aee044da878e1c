"""Local stores map uncompressed arrays from the data file (the page-cache engine): views work
with system calls for any user, in forked children, and are shared between processes."""

import multiprocessing
import os
import pathlib
import shutil
import tempfile
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import transaction

import outcore

N = 3 * 2**20 // 8 + 123
request_cleanup: list = []


@pytest.fixture(autouse=True)
def _cleanup():
    yield
    while request_cleanup:
        shutil.rmtree(request_cleanup.pop(), ignore_errors=True)  # a bit over 3 MiB of float64: two full blocks and a partial one


def _fill(path):
    db = outcore.open(path)
    conn = db.connect()
    A = conn.root.create("x", shape=(N,), dtype="f8")
    A[:] = np.arange(N, dtype="f8")
    transaction.commit()
    del A, conn, db
    import gc

    gc.collect()


CHILD = textwrap.dedent(
    """
    import os, socket, sys
    import numpy as np
    import outcore
    path, out = sys.argv[1], sys.argv[2]
    conn = outcore.open(path).connect()
    a = conn.root["x"][:]          # untouched: nothing read yet
    np.save(out + ".npy", a)
    conn.root["x"][:].tofile(out + ".tofile")
    with open(out + ".write", "wb") as f:
        os.write(f.fileno(), memoryview(conn.root["x"][:]).cast("B"))
    s1, s2 = socket.socketpair()
    got = bytearray()
    import threading
    def rd():
        while True:
            b = s2.recv(1 << 20)
            if not b:
                break
            got.extend(b)
    t = threading.Thread(target=rd); t.start()
    s1.sendall(memoryview(conn.root["x"][:]).cast("B")); s1.shutdown(socket.SHUT_WR); t.join()
    with open(out + ".socket", "wb") as f:
        f.write(got)
    import h5py
    with h5py.File(out + ".h5", "w") as f:
        f.create_dataset("x", data=conn.root["x"][:])
    print("ok", os.getuid())
    """
)


def _run_child(path, out, unprivileged):
    cmd = [sys.executable, "-c", CHILD, path, out]
    if unprivileged:
        cmd = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", *cmd]
    env = dict(os.environ)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize("unprivileged", [False, True])
def test_system_calls_read_untouched_views(unprivileged):
    if unprivileged and (os.geteuid() != 0 or shutil.which("setpriv") is None):
        pytest.skip("dropping privileges needs root and setpriv")
    # pytest's own temporary directories are private to their owner.
    tmp_path = pathlib.Path(tempfile.mkdtemp(prefix="outcore-unpriv-"))
    request_cleanup.append(tmp_path)
    os.chmod(tmp_path, 0o777)
    path = str(tmp_path / "s.outcore")
    _fill(path)
    for f in os.listdir(tmp_path):
        os.chmod(tmp_path / f, 0o666)
    out = str(tmp_path / "out")
    r = _run_child(path, out, unprivileged)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == ("65534" if unprivileged else str(os.getuid()))
    want = np.arange(N, dtype="f8").tobytes()
    assert np.load(out + ".npy").tobytes() == want
    for suffix in (".tofile", ".write", ".socket"):
        with open(out + suffix, "rb") as f:
            assert f.read() == want, suffix
    import h5py

    with h5py.File(out + ".h5", "r") as f:
        assert f["x"][:].tobytes() == want


_inherited = None


def _sum_slice(bounds):
    lo, hi = bounds
    return float(_inherited[lo:hi].sum())


def test_fork_pool_sums_slices_of_inherited_views(tmp_path):
    global _inherited
    path = str(tmp_path / "s.outcore")
    _fill(path)
    conn = outcore.open(path).connect()
    A = conn.root["x"]
    _inherited = A[:]
    _inherited[5] = 1000.0  # an uncommitted write the children see as of the fork
    chunks = [(i, min(i + 100_000, N)) for i in range(0, N, 100_000)]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        sums = pool.map(_sum_slice, chunks, chunksize=1)
    want = np.arange(N, dtype="f8")
    want[5] = 1000.0
    assert sums == [float(want[lo:hi].sum()) for lo, hi in chunks]
    transaction.abort()
    assert _inherited[5] == 5.0
    _inherited = None


def test_uncompressed_arrays_use_the_page_cache_engine(tmp_path):
    path = str(tmp_path / "s.outcore")
    _fill(path)
    assert os.path.exists(path + ".blocks")
    # The data file holds the bytes; SQLite only metadata.
    assert os.path.getsize(path + ".blocks") >= N * 8


def test_a_forked_child_reads_inherited_views_and_its_inherited_connection_refuses(tmp_path):
    path = str(tmp_path / "s.outcore")
    _fill(path)
    conn = outcore.open(path).connect(transaction_manager=False)
    a = conn.root["x"][:]
    a[3] = -1.0  # uncommitted: the child sees it as of the fork
    want = float(np.arange(N, dtype="f8").sum()) - 3.0 - 1.0
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only report, never raise out of here
        try:
            ok = a[3] == -1.0 and a[N - 1] == N - 1 and float(a.sum()) == want
            try:
                conn.commit()
                msg = "the inherited connection committed"
            except outcore.Error as e:
                msg = f"{type(e).__name__}: {e}"
            os.write(w, f"{ok}|{msg}".encode())
        finally:
            os._exit(0)
    os.close(w)
    out = b""
    while chunk := os.read(r, 65536):
        out += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    ok, msg = out.decode().split("|", 1)
    assert ok == "True", msg
    assert "fork" in msg and "StoreError" in msg, msg
    # The parent's connection is unaffected.
    conn.commit()
    assert outcore.open(path).connect(transaction_manager=False).root["x"][3] == -1.0


def test_check_and_gc(tmp_path):
    path = str(tmp_path / "s.outcore")
    _fill(path)
    db = outcore.open(path)
    calls = []
    report = db.check(progress=lambda done, total: calls.append((done, total)))
    assert report["blocks"] == 2 and report["bytes"] == N * 8 and calls[-1] == (2, 2)
    conn = db.connect(transaction_manager=False)
    conn.root["x"][7] = 1.0
    conn.commit()
    assert db.gc()["block_versions"] >= 1
    # A flipped byte in the data file: reads through the mapping cannot see it, check does.
    with open(path + ".blocks", "r+b") as f:
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 1]))
    with pytest.raises(outcore.CorruptError, match="block 0"):
        outcore.open(path).check()


def test_the_engine_is_visible(tmp_path):
    db = outcore.open(str(tmp_path / "e.outcore"))
    conn = db.connect(transaction_manager=False)
    A = conn.root.create("raw", (10,), "f8")
    Z = conn.root.create("packed", (10,), "f8", compression="zstd")
    assert A.engine == "page cache" and "engine=page cache" in repr(A)
    assert Z.engine == "userfaultfd"
    conn.commit()
    old = db.connect(at=conn.tid, transaction_manager=False)
    assert old.root["raw"].engine == "userfaultfd"  # history loads through the fault engine


def test_a_forked_child_touching_a_userfaultfd_view_is_told_why_it_dies(tmp_path):
    # Views of compressed arrays (userfaultfd engine) are not inherited across fork (the child
    # would read zeros past the pager): the child's access is a SIGSEGV, with the cause on
    # stderr first, never wrong data or a silent death.
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        import numpy as np, outcore
        conn = outcore.open({str(tmp_path / "z.outcore")!r}).connect(transaction_manager=False)
        A = conn.root.create("z", (300_000,), "f8", compression="zstd")
        A[:] = 1.0
        conn.commit()
        v = A[:]
        assert v.sum() == 300_000.0
        pid = os.fork()
        if pid == 0:
            print("child sum", float(v.sum()), flush=True)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print("child signal", os.WTERMSIG(status) if os.WIFSIGNALED(status) else None, flush=True)
        print("parent sum", float(v.sum()), flush=True)
        """
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"child signal {int(__import__('signal').SIGSEGV)}" in r.stdout, (r.stdout, r.stderr)
    assert "child sum" not in r.stdout
    assert "parent sum 300000.0" in r.stdout
    assert "in a forked child" in r.stderr and "open the database again in the child" in r.stderr, r.stderr
