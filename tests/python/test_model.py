"""Random operation sequences against a plain NumPy model: writes through views and by index,
append, resize (growth and shrink), commit, abort, a second connection, and reopening."""

import numpy as np
import pytest

import outcore

BLK = 4096


@pytest.mark.parametrize("seed", range(6))
def test_random_operations_match_a_numpy_model(url, seed):
    rng = np.random.default_rng(seed)
    order = "C" if seed % 2 == 0 else "F"
    major = 0 if order == "C" else 1
    db = outcore.open(url)
    conn = db.connect(transaction_manager=False)
    A = conn.root.create("A", (40, 8) if order == "C" else (8, 40), np.int32, order=order, blksize=BLK)
    conn.commit()
    committed = np.zeros(A.shape, np.int32, order=order)
    work = committed.copy(order="K")
    views = [A[:]]

    def check(arr, model):
        got = np.asarray(arr)
        assert got.shape == model.shape
        assert np.array_equal(got, model)

    for step in range(120):
        op = rng.choice(["write", "view", "append", "resize", "commit", "abort", "other", "reopen"],
                        p=[0.3, 0.15, 0.12, 0.1, 0.12, 0.08, 0.08, 0.05])
        if op == "write" and work.size:
            axis_len = work.shape[major]
            a, b = sorted(rng.integers(0, axis_len + 1, 2))
            idx = (slice(a, b),) if major == 0 else (slice(None), slice(a, b))
            v = int(rng.integers(-1000, 1000))
            A[idx] = v
            work[idx] = v
        elif op == "view" and work.size:
            # write through a view kept from an earlier step (if its shape still fits)
            v = views[int(rng.integers(len(views)))]
            i = tuple(int(rng.integers(0, min(n, m))) for n, m in zip(v.shape, work.shape)) if v.size else None
            if i is not None and all(n > 0 for n in work.shape):
                val = int(rng.integers(1, 100))
                v[i] = val
                work[i] = val
            views.append(A[:])
            views = views[-5:]
        elif op == "append":
            k = int(rng.integers(0, 30))
            shape = list(work.shape)
            shape[major] = k
            part = rng.integers(-50, 50, shape).astype(np.int32)
            A.append(part)
            work = np.concatenate([work, part], axis=major)
        elif op == "resize":
            shape = list(work.shape)
            shape[major] = int(rng.integers(0, 2 * shape[major] + 5))
            A.resize(tuple(shape))
            new = np.zeros(shape, np.int32, order=order)
            keep = min(shape[major], work.shape[major])
            sl = (slice(0, keep),) if major == 0 else (slice(None), slice(0, keep))
            new[sl] = work[sl]
            work = new
        elif op == "commit":
            conn.commit()
            committed = work.copy()
        elif op == "abort":
            conn.abort()
            work = committed.copy()
        elif op == "other":
            other = outcore.open(url).connect(transaction_manager=False)
            check(other.root["A"], committed)
        elif op == "reopen":
            conn.commit()
            committed = work.copy()
            db = outcore.open(url)
            conn = db.connect(transaction_manager=False)
            A = conn.root["A"]
            views = [A[:]]
        check(A, work)
    conn.commit()
    check(outcore.open(url).connect(transaction_manager=False).root["A"], work)
