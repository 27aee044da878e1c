"""Non-zero fill values (issue 16): never written elements read as `fill_value` everywhere, and
an untouched array costs no storage whatever its size."""

import os

import numpy as np
import pytest

import outcore

BS = 16384  # block size of these tests: arrays span several blocks
PER = BS // 8  # float64 elements per block


def _disk(path):
    """Bytes allocated by the store's files (metadata, WAL, data file)."""
    d = os.path.dirname(path)
    return sum(os.stat(os.path.join(d, f)).st_blocks * 512 for f in os.listdir(d))


def _same(a, b):
    """Equal, NaN included (by value; a written 0.0 is not NaN)."""
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("compression", [None, "zstd"])
def test_nan_fill_reads_everywhere(url, compression):
    db = outcore.open(url, blksize=BS)
    conn = db.connect(transaction_manager=False)
    n = 2 * PER + 100
    A = conn.root.create("n", (n,), "f8", fill_value=np.nan, compression=compression)
    assert np.isnan(A.fill_value) and A.engine == "userfaultfd"
    want = np.full(n, np.nan)
    _same(A[:], want)
    A[3] = 1.0
    A[PER : 2 * PER] = 0.0  # user zeros (a whole zero tail of a block) stay zeros
    want[3] = 1.0
    want[PER : 2 * PER] = 0.0
    t1 = conn.commit()
    _same(A[:], want)
    _same(db.connect(transaction_manager=False).root["n"][:], want)
    A.load()  # prefetch
    _same(np.array(A), want)
    _same(outcore.open(url).connect(transaction_manager=False).root["n"][:], want)

    # Growth: new elements read as fill, also in the last stored block; append.
    A.resize((n + PER,))
    A.append(np.array([7.0, 0.0]))
    want = np.concatenate([want, np.full(PER, np.nan), [7.0, 0.0]])
    _same(A[:], want)
    t2 = conn.commit()
    _same(db.connect(transaction_manager=False).root["n"][:], want)

    # Truncate, then grow: what was cut reads as fill again.
    A.resize((4,))
    A.resize((PER + 10,))
    cut = np.full(PER + 10, np.nan)
    cut[3] = 1.0
    _same(A[:], cut)
    conn.commit()
    _same(db.connect(transaction_manager=False).root["n"][:], cut)

    # History.
    old = np.full(n, np.nan)
    old[3] = 1.0
    old[PER : 2 * PER] = 0.0
    _same(db.connect(at=t1).root["n"][:], old)
    _same(db.connect(at=t2).root["n"][:], want)
    db.close()


def test_fill_values_of_any_dtype(db):
    conn = db.connect(transaction_manager=False)
    i = conn.root.create("i", (5, 3000), "i4", fill_value=-1)
    assert i.fill_value == -1 and (i[:] == -1).all()
    dt = np.dtype([("a", "u1"), ("b", "<i2")])  # 3-byte items: the fill keeps its phase
    s = conn.root.create("s", (2 * BS // 3 + 5,), dt, fill_value=(1, 2))
    assert s.fill_value["a"] == 1 and s.fill_value["b"] == 2
    assert (s[:]["a"] == 1).all() and (s[:]["b"] == 2).all()
    s[BS // 3] = (0, 0)
    conn.commit()
    s2 = db.connect(transaction_manager=False).root["s"]
    want = np.full(s2.shape, np.array((1, 2), dt))
    want[BS // 3] = (0, 0)
    _same(s2[:], want)
    b = conn.root.create("b", (10,), "?", fill_value=True)
    assert b[:].all()
    with pytest.raises(outcore.InvalidArgumentError):
        conn.root._raw.create("w", (4,), np.dtype("f8"), fill=b"\x01\x02\x03")


def test_a_terabyte_of_nan_costs_nothing(sqlite_url):
    db = outcore.open(sqlite_url, blksize=BS)
    conn = db.connect(transaction_manager=False)
    n = 1 << 37  # 1 TiB of float64
    A = conn.root.create("big", (n,), "f8", fill_value=np.nan)
    conn.commit()
    data = sqlite_url + ".blocks"
    size = lambda: os.path.getsize(data) if os.path.exists(data) else 0  # noqa: E731
    assert size() == 0
    before = _disk(sqlite_url)
    assert before < 4 << 20
    assert np.isnan(A[12345])
    assert np.isnan(A[n - 1000 :].sum())
    A[1 << 30 : (1 << 30) + 5] = 1.5
    conn.commit()
    assert size() <= BS  # one block
    assert _disk(sqlite_url) < before + (1 << 20)
    B = outcore.open(sqlite_url).connect(transaction_manager=False).root["big"]
    got = B[(1 << 30) - 1 : (1 << 30) + 6]
    _same(got, [np.nan] + [1.5] * 5 + [np.nan])
    db.close()


def test_zero_fill_keeps_the_page_cache_engine(db):
    conn = db.connect(transaction_manager=False)
    z = conn.root.create("z", (4,), "f8", fill_value=0.0)
    assert z.engine == "page cache" and z.fill_value == 0


def test_fill_with_data_append_rename_and_read_only(sqlite_url):
    with outcore.open(sqlite_url, blksize=BS) as db:
        with db.transaction() as conn:
            conn.root.create("d", data=np.arange(10.0), fill_value=np.nan)
            m = conn.root.create("m", (3, 0), "i2", order="F", fill_value=-7)
            m.append(np.ones((3, 2), "i2", order="F"))
            m.resize((3, 5))
    with outcore.open(sqlite_url, mode="r") as db:
        root = db.connect().root
        d = root["d"]
        assert np.isnan(d.fill_value) and d.engine == "userfaultfd"
        _same(d[:], np.arange(10.0))
        _same(root["m"][:], np.array([[1, 1, -7, -7, -7]] * 3, "i2"))
    with outcore.open(sqlite_url) as db:
        with db.transaction() as conn:
            conn.root["d"].resize((PER + 3,))
            conn.root.rename("d", "g/e")
        want = np.full(PER + 3, np.nan)
        want[:10] = np.arange(10.0)
        _same(db.connect().root["g/e"][:], want)
