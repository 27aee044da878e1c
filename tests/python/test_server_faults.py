"""The shared store when its PostgreSQL server goes away: abort stays local and succeeds, a
reader of cold blocks waits for the server to come back (loads retry with backoff, up to
OUTCORE_LOAD_RETRY_SECONDS, default 60), and the connection works again once it is back. Each
test has its own server."""

import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import outcore
import transaction.interfaces


def test_abort_needs_no_server_and_the_connection_recovers(private_pg):
    db = outcore.open(private_pg.url)
    conn = db.connect(transaction_manager=False)
    A = conn.root.create("a", (1000,), "f8", compression="zstd")
    A[:] = 1.0
    conn.commit()
    A[:10] = 2.0
    private_pg.stop()
    # The pooled connection is gone before anything was sent: known not written, retryable.
    with pytest.raises(outcore.CommitNotWrittenError) as e:
        conn.commit()
    assert isinstance(e.value, outcore.StoreError)
    assert isinstance(e.value, transaction.interfaces.TransientError)
    conn.abort()  # local: discards the changes without the server
    conn.abort()  # again, still fine
    private_pg.start()
    assert A[:10].tolist() == [1.0] * 10
    A[:5] = 3.0
    conn.commit()
    fresh = outcore.open(private_pg.url).connect(transaction_manager=False).root["a"]
    np.testing.assert_array_equal(fresh[:], np.r_[[3.0] * 5, [1.0] * 995])


def test_a_reader_of_cold_blocks_survives_a_server_restart(private_pg):
    w = outcore.open(private_pg.url).connect(transaction_manager=False)
    A = w.root.create("a", (2_000_000,), "f8", compression="lz4", blksize=1 << 20)
    A[:] = np.arange(2_000_000, dtype="f8")
    w.commit()
    r = outcore.open(private_pg.url).connect(transaction_manager=False)
    B = r.root["a"]  # opened, nothing loaded yet
    private_pg.stop()
    later = private_pg.start_later(3)
    t = time.monotonic()
    total = float(np.asarray(B[:]).sum())  # waits in the loads until the server is back
    waited = time.monotonic() - t
    later.wait(timeout=60)
    assert total == float(np.arange(2_000_000, dtype="f8").sum())
    assert waited >= 2.0, waited  # it did wait for the server


def test_a_load_that_outlasts_the_retry_deadline_dies_with_its_cause(private_pg, tmp_path):
    # Past the deadline the access can only fail with SIGBUS: the cause is printed first.
    w = outcore.open(private_pg.url).connect(transaction_manager=False)
    A = w.root.create("a", (100_000,), "f8", compression="lz4")
    A[:] = 1.0
    w.commit()
    script = textwrap.dedent(
        f"""
        import os, sys, numpy as np, outcore
        B = outcore.open({private_pg.url!r}).connect(transaction_manager=False).root["a"]
        sys.stdin.readline()  # the server is down now
        print(float(np.asarray(B[:]).sum()), flush=True)
        """
    )
    env = dict(__import__("os").environ, OUTCORE_LOAD_RETRY_SECONDS="1")
    p = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(1.5)
    private_pg.stop()
    out, err = p.communicate("go\n", timeout=60)
    assert p.returncode < 0, (p.returncode, out, err)  # died by a signal, never read zeros
    assert out == ""
    assert "cannot reach" in err and "gets SIGBUS" in err, err


def test_connect_timeout_bounds_a_server_that_accepts_and_says_nothing():
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    t = time.monotonic()
    with pytest.raises(outcore.StoreError, match="connect_timeout"):
        outcore.open(f"postgresql://u@127.0.0.1:{port}/db?connect_timeout=1")
    assert time.monotonic() - t < 10  # not forever: the whole start is bounded
    listener.close()


def test_ctrl_c_interrupts_a_wait_for_a_frozen_server(private_pg):
    # The server stops answering (SIGSTOP: connections stay open, no reply ever comes). A call
    # that waits for it ends with KeyboardInterrupt on Ctrl-C, not after the 60 s io timeout.
    script = textwrap.dedent(
        f"""
        import signal, sys, time, outcore
        # Started from a shell without job control, SIGINT may be ignored: Ctrl-C raises here.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        db = outcore.open({private_pg.url!r})
        conn = db.connect(transaction_manager=False)
        conn.root.create("a", (10,), "f8")
        conn.commit()
        print("ready", flush=True)
        sys.stdin.readline()  # the server is frozen now
        t = time.monotonic()
        try:
            db.history(0)
            print("returned", flush=True)
        except KeyboardInterrupt:
            print(f"interrupted after {{time.monotonic() - t:.1f}} s", flush=True)
        """
    )
    p = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "ready\n", p.stderr.read()
        private_pg.freeze()
        p.stdin.write("go\n")
        p.stdin.flush()
        time.sleep(1.0)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    finally:
        private_pg.thaw()
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, (out, err)
    assert out.startswith("interrupted after"), (out, err)
    waited = float(out.split()[2])
    print("interrupt:", out.strip())
    assert 0.5 <= waited < 10, out  # interrupted, well before the io timeout


def test_a_corrupt_metadata_page_on_postgresql_is_a_corrupt_error(private_pg):
    # On PostgreSQL outcore's metadata rows are the server's pages: with data checksums (the
    # test servers have them) a flipped bit in them is the server's "invalid page" error, which
    # reaches the user as CorruptError, never as a silently wrong read.
    import os

    conn = outcore.open(private_pg.url).connect(transaction_manager=False)
    A = conn.root.create("a", (100_000,), "f8", compression="lz4")
    A[:] = 1.0
    conn.commit()
    assert private_pg.sql("SHOW data_checksums") == "on"
    rel = private_pg.sql("SELECT pg_relation_filepath('outcore_current')")
    private_pg.stop()
    path = os.path.join(private_pg.data, rel)
    with open(path, "r+b") as f:
        f.seek(8192 - 64)  # inside the page's newest row (rows fill a page from its end)
        b = f.read(1)
        f.seek(8192 - 64)
        f.write(bytes([b[0] ^ 0x10]))
    private_pg.start()
    B = outcore.open(private_pg.url).connect(transaction_manager=False).root["a"]
    with pytest.raises(outcore.CorruptError, match="invalid page"):
        B.load()
