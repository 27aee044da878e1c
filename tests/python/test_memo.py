"""An `Array` object remembers its metadata and whole-array ndarray between calls (so that
`A[i]` and `A[i] = v` are cheap) and forgets them at every change: resize or append through any
handle, create, delete, rename, commit, abort, sync, savepoint rollback, a lost conflict. Its
data manager is told about changes once per transaction."""

import numpy as np
import pytest
import transaction

import outcore


def _tm():
    return transaction.TransactionManager()


def test_resize_and_append_through_another_handle(conn):
    A = conn.root.create("A", 10, np.int64, blksize=4096)
    A[:] = np.arange(10)
    B = conn.root["A"]  # another handle of the same array
    assert A[9] == 9 and B[9] == 9
    B.resize(5)
    with pytest.raises(IndexError):
        A[9]
    assert A.shape == (5,) and len(A) == 5 and A[-1] == 4
    B.append(np.arange(100, 110))
    assert A.shape == (15,) and A[14] == 109 and A.nbytes == 15 * 8
    A[14] = -1
    assert B[14] == -1
    M = conn.root.create("M", (3, 4), np.float32, order="F")
    M[2, 3] = 1.5
    conn.root["M"].append(np.ones((3, 2), np.float32))
    assert M.shape == (3, 6) and len(M) == 3 and M[2, 3] == 1.5 and M[0, 5] == 1


def test_abort_commit_and_savepoints_restore_shapes(db):
    tm = _tm()
    conn = db.connect(transaction_manager=tm)
    A = conn.root.create("A", 4, np.int32)
    A[3] = 3
    tm.commit()
    A.resize(8)
    A[7] = 7
    tm.abort()
    with pytest.raises(IndexError):
        A[7]
    with pytest.raises(IndexError):
        A[7] = 1
    assert A.shape == (4,) and A[3] == 3
    sp = tm.savepoint()
    A.append([4, 5])
    assert A[5] == 5
    sp.rollback()
    with pytest.raises(IndexError):
        A[5]
    A.append([9])
    tm.commit()
    assert A.shape == (5,) and A[4] == 9


def test_boundaries_show_other_connections_changes(url):
    db = outcore.open(url)
    c1 = db.connect(transaction_manager=False)
    c2 = db.connect(transaction_manager=False)
    A1 = c1.root.create("A", (3, 2), np.float64)
    c1.commit()
    c2.sync()
    A2 = c2.root["A"]
    assert A2[2, 1] == 0 and A2.shape == (3, 2)
    A1.append([[1, 2]])
    A1[0, 0] = 5
    c1.commit()
    assert A2.shape == (3, 2) and A2[0, 0] == 0  # its snapshot
    with pytest.raises(IndexError):
        A2[3, 0]
    c2.sync()
    assert A2.shape == (4, 2) and A2[3, 1] == 2 and A2[0, 0] == 5
    A1.resize((1, 2))
    c1.commit()
    c2.abort()
    assert A2.shape == (1, 2)
    with pytest.raises(IndexError):
        A2[1, 0]
    A1.resize((2, 2))
    c1.commit()
    A2[0, 1] = 7.0
    c2.commit()  # moves to c1's commit too
    assert A2.shape == (2, 2) and A2[1, 0] == 0 and A2[0, 1] == 7


def test_delete_rename_and_aborted_creation(conn):
    A = conn.root.create("A", 5, np.uint8)
    conn.commit()
    assert A[0] == 0
    conn.root.rename("A", "B")
    assert A.name == "B" and A[4] == 0
    del conn.root["B"]
    with pytest.raises(outcore.ArrayGoneError):
        A[0]
    with pytest.raises(outcore.ArrayGoneError):
        A[0] = 1
    with pytest.raises(outcore.ArrayGoneError):
        A.shape
    conn.abort()
    assert A[0] == 0 and A.name == "A"
    C = conn.root.create("C", 3, np.int8)
    C[0] = 1
    conn.abort()
    with pytest.raises(outcore.ArrayGoneError):
        C[0]


def test_lost_conflict_needs_abort(db):
    c1 = db.connect(transaction_manager=False)
    c2 = db.connect(transaction_manager=False)
    c1.root.create("A", 10, np.int64)
    c1.commit()
    c2.sync()
    A1, A2 = c1.root["A"], c2.root["A"]
    assert A2[0] == 0
    A1[0] = 1
    A2[0] = 2
    c1.commit()
    with pytest.raises(outcore.ConflictError):
        c2.commit()
    with pytest.raises(outcore.NeedsAbortError):
        A2[0]
    with pytest.raises(outcore.NeedsAbortError):
        A2[1] = 3
    c2.abort()
    assert A2[0] == 1


def test_writes_join_every_transaction(db):
    tm = _tm()
    conn = db.connect(transaction_manager=tm)
    other = db.connect(transaction_manager=False)
    A = conn.root.create("A", (4, 2), np.int64)
    tm.commit()

    def seen():
        other.sync()
        return other.root["A"][:].tolist()

    for v in range(1, 4):
        A[0, 0] = v  # the first change of each transaction joins it
        A[1] = v
        tm.commit()
        assert seen() == [[v, 0], [v, v], [0, 0], [0, 0]]
    A[2, 0] = 9
    tm.abort()
    assert A[2, 0] == 0
    A[3, 1] = 8
    tm.begin()  # aborts the transaction A[3, 1] joined
    assert A[3, 1] == 0
    A[3, 1] = 6
    tm.get().note("six")
    tm.commit()
    assert seen()[3] == [0, 6] and db.history()[-1]["description"] == "six"
    # a manager in explicit mode: a change outside a transaction joins the next one at its end
    etm = transaction.TransactionManager(explicit=True)
    econn = db.connect(transaction_manager=etm)
    E = econn.root["A"]
    E[2, 1] = 5
    etm.begin()
    E[2, 0] = 4
    etm.commit()
    assert seen()[2] == [4, 5]


def test_int_and_tuple_fast_paths_keep_numpy_semantics(conn):
    A = conn.root.create("A", (3, 4), np.int16)
    A[1] = 7
    A[-1, -1] = 2
    assert A[1, 3] == 7 and A[2, 3] == 2 and isinstance(A[0, 0], np.int16)
    np.testing.assert_array_equal(A[1], [7, 7, 7, 7])
    for bad in ((3,), (0, 4), (-4, 0), (0, 0, 0)):
        with pytest.raises(IndexError):
            A[bad]
        with pytest.raises(IndexError):
            A[bad] = 1
    for idx in (True, (0, False)):
        with pytest.raises(TypeError):
            A[idx]
    assert A[()].shape == (3, 4)
    with pytest.raises(ValueError):
        A[0] = [1, 2]
