"""Dask: `dask.array.from_array` over outcore arrays, their ndarray views and RAM arrays computes
the right values, and chunks read before a change are never taken for chunks read after it
(an array's dask token is its snapshot while its connection has no changes, else unique)."""

import pickle

import numpy as np
import pytest
import transaction

import outcore

da = pytest.importorskip("dask.array")
tokenize = pytest.importorskip("dask.base").tokenize


def _values(shape):
    return np.arange(np.prod(shape), dtype=np.float64).reshape(shape) * 0.5 - 7


@pytest.mark.parametrize("order", ["C", "F"])
def test_from_array_computes_sums_and_slices(url, order):
    conn = outcore.open(url).connect()
    A = conn.root.create("A", (1000, 7), np.float64, order=order, blksize=4096)
    ref = _values(A.shape)
    A[:] = ref
    transaction.commit()
    for src in (A, A[:], np.asarray(A)):
        for chunks in ((100, 7), (64, 3), "auto"):
            x = da.from_array(src, chunks=chunks)
            assert x.shape == ref.shape and x.dtype == ref.dtype
            assert float(x.sum().compute()) == ref.sum()
            np.testing.assert_array_equal(x.sum(axis=0).compute(), ref.sum(axis=0))
            np.testing.assert_array_equal(x[10:20, 3].compute(), ref[10:20, 3])
            np.testing.assert_array_equal(x[::-3, 1:].compute(), ref[::-3, 1:])
            np.testing.assert_array_equal(x[997].compute(), ref[997])
    # the synchronous scheduler too, and uncommitted data
    A[5, :] = 1e6
    ref[5, :] = 1e6
    x = da.from_array(A, chunks=(128, 7))
    assert float(x.sum().compute(scheduler="synchronous")) == ref.sum()
    transaction.abort()


def test_chunks_before_and_after_a_change_differ(db):
    conn = db.connect()
    A = conn.root.create("A", (100,), np.int64, blksize=4096)
    A[:] = 1
    transaction.commit()
    clean = tokenize(A)
    assert tokenize(conn.root["A"]) == clean  # no changes: the snapshot fixes the data
    # Chunks of from_array are views of the array (as for an ndarray): persist a copy.
    before = (da.from_array(A, chunks=10) * 1).persist()
    A[0] = 1001
    after = da.from_array(A, chunks=10) * 1
    assert after.name != before.name
    assert tokenize(A) != tokenize(A)  # changed: unique tokens
    assert int((after - before).sum().compute()) == 1000
    transaction.commit()
    assert tokenize(A) == tokenize(A) != clean
    assert int((da.from_array(A, chunks=10) * 1 - before).sum().compute()) == 1000


def test_historical_arrays_have_stable_tokens(db):
    conn = db.connect(transaction_manager=False)
    A = conn.root.create("A", (10,), np.int32)
    A[:] = 3
    tid = conn.commit()
    A[:] = 4
    conn.commit()
    old = db.connect(at=tid).root["A"]
    assert tokenize(old) == tokenize(db.connect(at=tid).root["A"])
    assert tokenize(old) != tokenize(db.connect().root["A"])
    assert int(da.from_array(old, chunks=3).sum().compute()) == 30


def test_ram_arrays(tmp_path):
    R = outcore.RAMArray((50, 4), np.float32)
    R[:] = _values(R.shape)
    before = (da.from_array(R, chunks=(7, 4)) * 1).persist()
    assert float(before.sum().compute()) == _values(R.shape).sum()
    R[0, 0] += 100
    after = da.from_array(R, chunks=(7, 4)) * 1
    assert float((after - before).sum().compute()) == 100
    # pickling copies the values into new memory
    C = pickle.loads(pickle.dumps(R))
    np.testing.assert_array_equal(C[:], R[:])
    C[1, 1] = -1
    assert R[1, 1] != -1 and C.shape == R.shape and C.dtype == R.dtype
