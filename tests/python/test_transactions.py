"""Transactions: commit, abort, isolation, conflicts, invalidation, history, the `transaction`
package (two-phase commit with ZODB), and several processes sharing a database."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import transaction
from transaction.interfaces import DoomedTransaction, TransientError

import outcore


def _tm():
    return transaction.TransactionManager()


def run_child(code):
    """Runs `code` in a new Python process; returns its stdout."""
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_commit_then_reopen_in_a_new_process(url):
    db = outcore.open(url)
    conn = db.connect()
    A = conn.root.create("A", (100, 7), np.float64, blksize=4096)
    A[:] = np.arange(700).reshape(100, 7)
    A.append(np.full((3, 7), -1.0))
    txn = transaction.get()
    txn.note("fill A")
    txn.setUser("tester")
    txn.setExtendedInfo("purpose", "test")
    transaction.commit()
    out = run_child(
        f"""
        import numpy as np, outcore, transaction
        conn = outcore.open({url!r}).connect()
        A = conn.root["A"]
        print(A.shape, A.dtype, float(np.asarray(A).sum()))
        A[0, 0] = 1234.0
        A.resize((50, 7))
        transaction.get().note("child")
        transaction.commit()
        """
    )
    assert out.split("\n")[0] == f"(103, 7) float64 {np.arange(700).sum() - 21.0}"
    conn.sync()
    assert A.shape == (50, 7)
    assert A[0, 0] == 1234.0
    hist = db.history()
    assert [h["description"] for h in hist][-2:] == ["fill A", "child"]
    assert hist[-2]["extension"] == {"purpose": "test"}
    assert "tester" in hist[-2]["user"]
    assert hist[-1]["tid"] == db.head == conn.tid


def test_abort_discards_data_and_metadata(db):
    conn = db.connect()
    A = conn.root.create("A", 10, np.int32)
    A[:] = 1
    transaction.commit()
    v = A[:]
    A[:] = 5
    A.append([7, 7])
    conn.root.create("B", 3, np.int8)
    transaction.abort()
    assert A.shape == (10,)
    assert (v == 1).all() and (A[:] == 1).all()
    assert "B" not in conn.root
    # an aborted creation is gone
    C = conn.root.create("C", 3, np.int8)
    transaction.abort()
    with pytest.raises(outcore.ArrayGoneError):
        C[0]


def test_explicit_commit_and_abort_without_transaction_manager(db):
    conn = db.connect(transaction_manager=False)
    assert conn.transaction_manager is None
    A = conn.root.create("A", 4, np.uint8)
    A[1] = 3
    tid = conn.commit(note="explicit", user="me")
    assert tid == db.head
    assert db.history()[-1]["description"] == "explicit"
    A[1] = 9
    conn.abort()
    assert A[1] == 3


def test_isolation_and_invalidation(url):
    db = outcore.open(url)
    tm1, tm2 = _tm(), _tm()
    c1 = db.connect(transaction_manager=tm1)
    c2 = db.connect(transaction_manager=tm2)
    A1 = c1.root.create("A", 8, np.int64, blksize=4096)
    A1[:] = 1
    tm1.commit()
    tm2.begin()
    assert "A" in c2.root
    A2 = c2.root["A"]
    v2 = A2[:]
    assert (v2 == 1).all()
    A1[:] = 2
    A1.append(np.arange(4))
    tm1.commit()
    # c2 still reads its snapshot: data and shape
    assert (v2 == 1).all() and A2.shape == (8,)
    tm2.commit()  # a transaction boundary: c2 moves to the newest snapshot
    assert (v2 == 2).all()
    assert A2.shape == (12,)
    np.testing.assert_array_equal(A2[8:], np.arange(4))
    # abort is a boundary too
    A1[0] = 3
    tm1.commit()
    assert v2[0] == 2
    tm2.abort()
    assert v2[0] == 3


def test_data_conflict(url):
    db = outcore.open(url)
    tm1, tm2 = _tm(), _tm()
    c1 = db.connect(transaction_manager=tm1)
    c2 = db.connect(transaction_manager=tm2)
    c1.root.create("A", 1000, np.float64, blksize=4096)
    tm1.commit()
    tm2.begin()
    A1, A2 = c1.root["A"], c2.root["A"]
    A1[0] = 1.0
    A2[1] = 2.0  # same block
    A2[600] = 6.0  # and another one
    tm1.commit()
    with pytest.raises(outcore.ConflictError) as e:
        tm2.commit()
    assert isinstance(e.value, TransientError)
    tm2.abort()
    assert A2[0] == 1.0 and A2[1] == 0.0 and A2[600] == 0.0  # the winner's data
    A2[1] = 2.0
    tm2.commit()
    tm1.begin()
    assert A1[1] == 2.0 and A1[0] == 1.0


def test_different_blocks_do_not_conflict(db):
    tm1, tm2 = _tm(), _tm()
    c1 = db.connect(transaction_manager=tm1)
    c2 = db.connect(transaction_manager=tm2)
    with pytest.raises(ValueError):
        c1.root.create("bad", 10, np.uint8, blksize=1000)
    c1.root.create("A", 3 * 4096, np.uint8, blksize=4096)
    tm1.commit()
    tm2.begin()
    c1.root["A"][0] = 1
    c2.root["A"][5000] = 2
    tm1.commit()
    tm2.commit()
    tm1.begin()
    assert c1.root["A"][5000] == 2 and c2.root["A"][0] == 1


def test_shape_conflict(url):
    db = outcore.open(url)
    tm1, tm2 = _tm(), _tm()
    c1 = db.connect(transaction_manager=tm1)
    c2 = db.connect(transaction_manager=tm2)
    c1.root.create("A", (0, 2), np.int16)
    tm1.commit()
    tm2.begin()
    c1.root["A"].append([[1, 2]])
    c2.root["A"].append([[3, 4], [5, 6]])
    tm1.commit()
    with pytest.raises(outcore.ConflictError):
        tm2.commit()
    tm2.abort()
    A2 = c2.root["A"]
    assert A2.shape == (1, 2)
    np.testing.assert_array_equal(A2[0], [1, 2])


def test_retry_loop_with_attempts(db):
    tm1, tm2 = _tm(), _tm()
    c1 = db.connect(transaction_manager=tm1)
    c2 = db.connect(transaction_manager=tm2)
    c1.root.create("counter", 1, np.int64)
    tm1.commit()
    tries = 0
    for attempt in tm2.attempts(3):
        with attempt:
            tries += 1
            seen = c2.root["counter"][0]
            if tries == 1:  # a rival commits between our read and our commit
                c1.root["counter"][0] += 1
                tm1.commit()
            c2.root["counter"][0] = seen + 10
    assert tries == 2
    tm1.begin()
    assert c1.root["counter"][0] == 11


def test_writes_through_a_view_kept_from_an_earlier_transaction(db):
    tm = _tm()
    conn = db.connect(transaction_manager=tm)
    v = conn.root.create("A", 5, np.int8)[:]
    tm.commit()
    v[2] = 9  # no outcore call in this transaction
    tm.commit()
    other = db.connect(transaction_manager=False)
    assert other.root["A"][2] == 9
    v[3] = 4
    tm.abort()
    assert v[3] == 0


def test_doom(db):
    conn = db.connect()
    A = conn.root.create("A", 3, np.int8)
    transaction.commit()
    A[0] = 1
    transaction.doom()
    with pytest.raises(DoomedTransaction):
        transaction.commit()
    transaction.abort()
    assert A[0] == 0


def test_db_transaction_context_manager(db):
    with db.transaction(note="ctx") as conn:
        conn.root.create("A", 3, np.int8)[:] = 4
    assert db.history()[-1]["description"] == "ctx"
    with pytest.raises(RuntimeError):
        with db.transaction() as conn:
            conn.root["A"][0] = 100
            raise RuntimeError("boom")
    check = db.connect(transaction_manager=False)
    np.testing.assert_array_equal(check.root["A"][:], [4, 4, 4])


def test_historical_connection(db):
    conn = db.connect(transaction_manager=False)
    A = conn.root.create("A", 4, np.int32)
    A[:] = 1
    t1 = conn.commit()
    A[:] = 2
    A.append([3])
    conn.commit()
    old = db.connect(at=t1)
    assert old.read_only and old.transaction_manager is None
    B = old.root["A"]
    assert B.shape == (4,)
    v = B[:]
    assert (v == 1).all()
    assert not v.flags.writeable
    with pytest.raises(ValueError):
        v[0] = 5
    with pytest.raises(outcore.ReadOnlyError):
        B.append([1])
    with pytest.raises(outcore.SnapshotError):
        db.connect(at=db.head + 10)
    when = db.history()[-1]["time"]
    assert (db.connect(at=when).root["A"][:] == [2, 2, 2, 2, 3]).all()
    for h in db.history():
        assert db.connect(at=h["time"]).tid == h["tid"]
        assert db.connect(at=h["time"].astimezone().replace(tzinfo=None)).tid == h["tid"]  # naive: local


def test_zodb_and_outcore_commit_atomically(tmp_path):
    ZODB = pytest.importorskip("ZODB")
    from ZODB.FileStorage import FileStorage

    zdb = ZODB.DB(FileStorage(str(tmp_path / "Data.fs")))
    odb = outcore.open(str(tmp_path / "arrays.outcore"))
    tm = _tm()
    zconn = zdb.open(transaction_manager=tm)
    oconn = odb.connect(transaction_manager=tm)
    tm.begin()
    zconn.root()["meta"] = {"rows": 3}
    oconn.root.create("A", 3, np.float32)[:] = 1.5
    tm.get().note("both")
    tm.commit()
    zdb2 = zdb.open(transaction_manager=_tm())
    assert zdb2.root()["meta"] == {"rows": 3}
    assert (odb.connect(transaction_manager=False).root["A"][:] == 1.5).all()

    # an outcore conflict (voted after ZODB) aborts the ZODB change too
    rival = odb.connect(transaction_manager=False)
    tm.begin()
    zconn.root()["meta"] = {"rows": 4}
    oconn.root["A"][0] = 2.0
    rival.root["A"][1] = 3.0
    rival.commit()
    with pytest.raises(outcore.ConflictError):
        tm.commit()
    tm.abort()
    zconn2 = zdb.open(transaction_manager=_tm())
    assert zconn2.root()["meta"] == {"rows": 3}
    assert oconn.root["A"][0] == 1.5
    # and a ZODB failure before the vote aborts the outcore change
    tm.begin()
    oconn.root["A"][2] = 9.0
    zconn.root()["meta"] = {"rows": 5}
    tm.doom()
    with pytest.raises(DoomedTransaction):
        tm.commit()
    tm.abort()
    assert odb.connect(transaction_manager=False).root["A"][2] == 1.5
    zdb.close()


def test_savepoints_roll_back_array_data_and_shape(url):
    db = outcore.open(url)
    conn = db.connect()
    A = conn.root.create("A", 4096, np.int64, blksize=8192)
    A[:] = 1
    transaction.commit()
    A[0] = 2  # dirty before the savepoint
    sp = transaction.savepoint()
    A[0] = 3
    A[4000] = 4  # a block first written after the savepoint
    A.append(np.arange(10))
    conn.root.create("tmp", 3, np.int8)
    a = A[:]  # a view taken after the savepoint
    sp.rollback()
    assert A.shape == (4096,)
    assert "tmp" not in conn.root
    assert A[0] == 2 and A[4000] == 1
    assert a[0] == 2 and a[4000] == 1  # views alias the restored data
    A[1] = 5
    sp.rollback()  # again: undoes what came after the first rollback too
    assert A[1] == 1
    transaction.commit()
    other = db.connect(transaction_manager=False)
    B = other.root["A"]
    assert B[0] == 2 and B[1] == 1 and B[4000] == 1 and B.shape == (4096,)
    # A savepoint of an ended transaction cannot be rolled back to.
    with pytest.raises(Exception):
        sp.rollback()


def test_two_processes_share_a_database(url):
    db = outcore.open(url)
    conn = db.connect(transaction_manager=False)
    conn.root.create("A", 1 << 16, np.int32, blksize=4096)
    conn.commit()
    code = f"""
        import numpy as np, outcore, sys
        conn = outcore.open({url!r}).connect(transaction_manager=False)
        A = conn.root["A"]
        A[PART * 1024:(PART + 1) * 1024] = PART + 1  # one block each
        conn.commit(note=f"part {{PART}}")
        print(int(np.asarray(A).sum()))
        """
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code.replace("PART", str(p)))],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(4)
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    conn.sync()
    A = conn.root["A"]
    for p in range(4):
        assert (A[p * 1024:(p + 1) * 1024] == p + 1).all()
    assert int(np.asarray(A).sum()) == 1024 * (1 + 2 + 3 + 4)


def test_changes_commit_after_the_python_objects_are_dropped(db):
    import gc

    conn = db.connect()
    conn.root.create("A", 4, np.int16)[:] = 3
    del conn
    gc.collect()
    transaction.commit()  # the joined data manager keeps the connection open
    check = db.connect(transaction_manager=False)
    assert (check.root["A"][:] == 3).all()


def test_views_outlive_their_connection(db):
    import gc

    conn = db.connect(transaction_manager=False)
    conn.root.create("A", 4, np.int16)[:] = 3
    conn.commit()
    v = db.connect(transaction_manager=False).root["A"][:]  # connection and array dropped
    gc.collect()
    assert (v == 3).all()


def test_explicit_transaction_manager(db):
    tm = transaction.TransactionManager(explicit=True)
    conn = db.connect(transaction_manager=tm)
    with tm:
        A = conn.root.create("A", 3, np.int8)
        A[0] = 1
    assert A[0] == 1  # reading outside a transaction is fine
    A[1] = 2  # a change outside a transaction joins the next one
    with tm:
        pass
    assert db.connect(transaction_manager=False).root["A"][1] == 2


def test_has_changes(db):
    conn = db.connect(transaction_manager=False)
    assert not conn.has_changes()
    A = conn.root.create("A", (100, 3), np.float64)
    assert conn.has_changes()
    conn.commit()
    assert not conn.has_changes()
    v = A[:]
    assert v.sum() == 0 and not conn.has_changes()  # reading changes nothing
    v[50, 1] = 1.0
    assert conn.has_changes()
    conn.abort()
    assert not conn.has_changes()
    A.resize((10, 3))
    assert conn.has_changes()
    conn.abort()
    conn.root.rename("A", "B")
    assert conn.has_changes()
    conn.commit()
    assert not conn.has_changes()
    assert not db.connect(at=db.head).has_changes()


class _Recorder:
    """Forwards to a `TxnHandle`, recording the names of the methods called."""

    def __init__(self, handle):
        self._handle = handle
        self.calls = []

    def __getattr__(self, name):
        attr = getattr(self._handle, name)
        if callable(attr):
            self.calls.append(name)
        return attr

    def __setattr__(self, name, value):
        if name in ("_handle", "calls"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._handle, name, value)


def _recorded(tm):
    from outcore._transaction import DataManager

    found = []
    tm._synchs.map(lambda s: found.append(s) if isinstance(s, DataManager) else None)
    (dm,) = found
    dm._handle = _Recorder(dm._handle)
    return dm._handle


def test_a_transaction_that_changed_nothing_makes_no_store_commit(db):
    tm = _tm()
    conn = db.connect(transaction_manager=tm)
    A = conn.root.create("A", 10, np.int32)
    tm.commit()
    rec = _recorded(tm)
    other = db.connect(transaction_manager=False)
    n = len(db.history())
    assert A[3] == 0 and A[:].sum() == 0  # joins the transaction: the views could be written
    other.root["A"][3] = 7
    other.commit()
    tm.commit()
    assert "commit" not in rec.calls and "has_changes" in rec.calls
    assert A[3] == 7  # the connection moved to the newest snapshot all the same
    assert len(db.history()) == n + 1  # only `other` committed
    A[4] = 1
    tm.commit()
    assert rec.calls.count("commit") == 1 and len(db.history()) == n + 2
    assert other.sync() and other.root["A"][4] == 1
