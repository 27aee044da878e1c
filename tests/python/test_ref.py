"""ArrayRef (views by reference, across processes) and structured()."""

import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import outcore


def test_arrayref_of_outcore_views(sqlite_url):
    db = outcore.open(sqlite_url)
    conn = db.connect(transaction_manager=False)
    A = conn.root.create("A", (50, 8), np.int32, blksize=4096)
    A[:] = np.arange(400).reshape(50, 8)
    conn.commit()
    for idx in [(slice(None),), (slice(10, 20),), (slice(40, 5, -3), 2), (7,), (slice(3, 4), slice(None, None, -1))]:
        v = A[idx]
        ref = outcore.ArrayRef(v)
        assert ref.root == outcore.ArrayRoot(sqlite_url, "A", A.id)
        assert 0 <= ref.lo <= ref.hi <= A.nbytes
        np.testing.assert_array_equal(ref.deref(conn), v)
        back = pickle.loads(pickle.dumps(ref))
        np.testing.assert_array_equal(back.deref(), v)
    ref = outcore.ArrayRef(A[10:20])
    assert (ref.lo, ref.hi, ref.z) == (10 * 32, 20 * 32, 0)
    ref = outcore.ArrayRef(A[19:9:-1])
    assert (ref.lo, ref.hi, ref.z) == (10 * 32, 20 * 32, 9 * 32)
    # deref in another process: no data is pickled
    blob = pickle.dumps(outcore.ArrayRef(A[5:9, 1]))
    assert len(blob) < 1000
    code = f"""
        import pickle, sys
        ref = pickle.loads({blob!r})
        print(ref.deref().tolist())
        """
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(np.asarray(A)[5:9, 1].tolist())
    # the deref'd view is a view: writes go to the array
    w = outcore.ArrayRef(A[2, 3:5]).deref(conn)
    w[0] = -7
    assert A[2, 3] == -7


def test_arrayref_of_plain_ndarrays():
    a = np.arange(100, dtype=np.float64).reshape(10, 10).copy()  # owns its memory
    for v in [a, a[2:5], a[::-2, 3], a[4, ::3], a.T[1:3]]:
        ref = outcore.ArrayRef(v)
        assert ref.root is a
        d = ref.deref()
        np.testing.assert_array_equal(d, v)
        assert np.shares_memory(d, a)
    ref = outcore.ArrayRef(a[3:4])
    assert (ref.lo, ref.hi) == (240, 320)


def test_structured(conn):
    A = conn.root.create("A", (6, 3), np.float32)
    A[:] = np.arange(18).reshape(6, 3)
    dt = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    s = outcore.structured(A, dt)
    assert s.shape == (6,) and s.dtype == dt
    assert s[2]["y"] == 7.0
    s[2]["z"] = -1
    assert A[2, 2] == -1  # no copy
    F = conn.root.create("F", (2, 5), np.int16, order="F")
    F[:] = [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]
    sf = outcore.structured(F, [("a", "<i2"), ("b", "<i2")])
    assert sf.shape == (5,) and sf[1]["a"] == 2 and sf[1]["b"] == 7
    with pytest.raises(ValueError):
        outcore.structured(A, np.dtype([("x", "<f8")]))


def test_ram_array_shrink_then_grow_reads_zeros():
    R = outcore.RAMArray((4, 2), np.int64)
    R[:] = 5
    v = R[:]
    R.resize((1, 2))
    R.resize((4, 2))
    assert (R[1:] == 0).all() and (R[0] == 5).all()
    assert (v[1:] == 0).all()
    assert repr(R).startswith("<outcore.RAMArray")


def test_arrays_pickle_by_reference(sqlite_url):
    conn = outcore.open(sqlite_url).connect(transaction_manager=False)
    A = conn.root.create("A", (1000, 100), np.float64)
    A[:] = 2.5
    conn.commit()
    blob = pickle.dumps(A)
    assert len(blob) < 1000
    B = pickle.loads(blob)
    assert B.shape == A.shape and B.id == A.id and (B[:] == 2.5).all()
    code = f"""
        import pickle
        import numpy as np
        A = pickle.loads({blob!r})
        print(float(np.asarray(A).sum()))
        """
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout) == 2.5 * 100000


def test_references_survive_renames(sqlite_url):
    db = outcore.open(sqlite_url)
    conn = db.connect(transaction_manager=False)
    A = conn.root.create("A", (20, 4), np.int64, blksize=4096)
    A[:] = np.arange(80).reshape(20, 4)
    conn.commit()
    assert conn.open_by_id(A.id).name == "A"
    ref = outcore.ArrayRef(A[3:7, 1])
    blob = pickle.dumps(A)
    refblob = pickle.dumps(ref)
    conn.root.rename("A", "B")
    # in the renaming transaction
    np.testing.assert_array_equal(ref.deref(conn), [13, 17, 21, 25])
    assert outcore.ArrayRef(A[0]).root == outcore.ArrayRoot(sqlite_url, "B", A.id)
    conn.commit()
    # in other connections and after unpickling
    other = db.connect(transaction_manager=False)
    B = other.open_by_id(A.id)
    assert B.name == "B" and B[19, 3] == 79
    np.testing.assert_array_equal(ref.deref(other), [13, 17, 21, 25])
    np.testing.assert_array_equal(pickle.loads(refblob).deref(), [13, 17, 21, 25])
    C = pickle.loads(blob)
    assert C.name == "B" and C.id == A.id and C[3, 1] == 13
    # in another process
    code = f"""
        import pickle
        print(pickle.loads({refblob!r}).deref().tolist(), pickle.loads({blob!r}).name)
        """
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[13, 17, 21, 25] B"
    # a deleted array is gone, by reference too
    del conn.root["B"]
    conn.commit()
    with pytest.raises(outcore.NoSuchArrayError):
        ref.deref(db.connect(transaction_manager=False))
    with pytest.raises(KeyError):
        pickle.loads(blob)
    with pytest.raises(KeyError):
        conn.open_by_id(12345)
