"""Workers in other processes write through pickled arrays, each committing through its own
connection: `da.store(x, A)` with dask's processes scheduler, and `ProcessPoolExecutor`
(issue 16)."""

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

import outcore

da = pytest.importorskip("dask.array")


def _fill(A, i, n):
    A[i * n : (i + 1) * n] = np.arange(i * n, (i + 1) * n)
    return i


@pytest.mark.parametrize("context", ["spawn", "fork"])
def test_dask_store_with_processes(tmp_path, context):
    import dask

    db = outcore.open(tmp_path / "p.outcore")
    conn = db.connect(transaction_manager=False)
    # Chunks (1000 x 1000 bytes... 10 x 10 of 100 x 100) smaller than a block: workers
    # writing different chunks of one block conflict and retry.
    A = conn.root.create("A", (1000, 1000), "f8", blksize=1 << 16)
    conn.commit()
    x = da.random.default_rng(5).random((1000, 1000), chunks=(100, 100))
    ref = x.compute()
    with dask.config.set({"multiprocessing.context": context}):
        da.store(x, A, scheduler="processes", num_workers=2, lock=False)
    conn.sync()  # the workers committed: move to their snapshot
    np.testing.assert_array_equal(A[:], ref)
    assert len(db.history()) > 1


def test_process_pool_executor(tmp_path):
    db = outcore.open(tmp_path / "q.outcore")
    conn = db.connect(transaction_manager=False)
    A = conn.root.create("A", (4000,), "i8", blksize=4096)
    conn.commit()
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=ctx) as ex:
        assert sorted(ex.map(_fill, [A] * 8, range(8), [500] * 8)) == list(range(8))
    conn.sync()
    np.testing.assert_array_equal(A[:], np.arange(4000))


def test_in_the_same_process_unpickling_is_a_plain_array(conn):
    A = conn.root.create("A", (3,), "f8")
    conn.commit()
    B = pickle.loads(pickle.dumps(A))
    assert type(B) is outcore.Array and B.id == A.id
    # pickled from another process (as a worker sees it)
    from outcore._ref import _array_by_ref

    W = _array_by_ref(conn.db.location, "A", A.id, pid=1)
    assert isinstance(W, outcore.WorkerArray) and W.shape == (3,) and len(W) == 3
    W[1] = 5.0  # commits at once
    conn.sync()
    assert A[1] == 5.0
    assert type(pickle.loads(pickle.dumps(W))) is outcore.Array
    ro = outcore.open(conn.db.location, mode="r").connect().root["A"]
    R = pickle.loads(pickle.dumps(ro))
    assert R.read_only and not R[:].flags.writeable


def _small_commits(url, k, n):
    """A forked worker: its own database handle, n commits of one element of its own block."""
    conn = outcore.open(url).connect(transaction_manager=False)
    A = conn.root["w"]
    for i in range(n):
        v = A[:]
        v[k * 512 + i] = k * 1000 + i
        conn.commit()
    B = conn.root.create(f"own{k}", (8,), "i8")
    B[:] = k
    conn.commit()
    return k, B.id


def test_forked_workers_commit_small_writes_to_their_own_blocks(url):
    # Workers forked from a process that has the database open (its store, connections,
    # pager and random generator state inherited), each opening its own: their small commits
    # (grouped on PostgreSQL: distinct commit ids) all land, the arrays they create get
    # distinct ids, and the parent goes on committing after them.
    db = outcore.open(url)
    conn = db.connect(transaction_manager=False)
    A = conn.root.create("w", (4 * 512,), "f8", blksize=4096)
    A[:] = -1.0  # every block stored: the workers' commits are small page writes
    conn.commit()
    assert A[:][0] == -1.0
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:
        done = pool.starmap_async(_small_commits, [(url, k, 30) for k in range(4)])
        results = sorted(done.get(timeout=300))
    assert [k for k, _ in results] == [0, 1, 2, 3]
    assert len({i for _, i in results}) == 4, results
    conn.sync()
    for k, i in results:
        assert conn.root[f"own{k}"].id == i and list(conn.root[f"own{k}"][:]) == [k] * 8
    got = np.asarray(A[:])
    for k in range(4):
        want = np.full(512, -1.0)
        want[:30] = k * 1000 + np.arange(30)
        np.testing.assert_array_equal(got[k * 512 : (k + 1) * 512], want)
    A[:][2047] = 7.0
    conn.commit()
    assert outcore.open(url).connect(transaction_manager=False).root["w"][2047] == 7.0
