"""Arrays as NumPy sees them: attributes, basic indexing, views, resize, append, limits."""

import gc
import itertools
import logging
import time

import numpy as np
import pytest

import outcore

BLK = 4096  # smallest block size: many block edges in small arrays


@pytest.fixture(params=["outcore", "ram"])
def make(request, conn):
    """Creates an array: a persistent one, or a RAMArray with the same API."""

    def make(name, shape, dtype, order="C", blksize=None):
        if request.param == "ram":
            return outcore.RAMArray(shape, dtype, order=order)
        return conn.root.create(name, shape, dtype, order=order, blksize=blksize)

    return make


@pytest.mark.parametrize("order", ["C", "F"])
def test_attributes(make, order):
    shape, dtype = (5, 7, 3), np.dtype("<i4")
    A = make("A", shape, dtype, order=order)
    ref = np.empty(shape, dtype, order=order)
    assert A.shape == ref.shape
    assert A.dtype == ref.dtype
    assert A.ndim == ref.ndim
    assert A.size == ref.size
    assert A.itemsize == ref.itemsize
    assert A.nbytes == ref.nbytes
    assert A.strides == ref.strides
    assert A.order == order
    assert len(A) == 5 == len(np.asarray(A))  # axis 0, as NumPy, also for F order
    v = A[:]
    assert v.strides == ref.strides
    assert v.flags.c_contiguous == (order == "C")
    assert v.flags.f_contiguous == (order == "F")


def test_views_are_real_ndarrays_that_alias(make):
    A = make("A", 3 * BLK + 100, np.uint8, blksize=BLK)
    a = A[:]
    b = A[10:3000]
    assert type(a) is np.ndarray and type(b) is np.ndarray
    assert a.base is not None and b.base is not None
    assert np.shares_memory(a, b)
    b[0] = 42
    assert a[10] == 42
    A[11] = 43
    assert b[1] == 43
    assert np.asarray(A)[11] == 43


SLICES_1D = [
    slice(None),
    slice(0, 0),
    slice(5, 5),
    slice(-1, None),
    slice(None, None, -1),
    slice(None, None, -3),
    slice(BLK - 1, BLK + 1),
    slice(BLK, 2 * BLK),
    slice(BLK - 3, 3 * BLK + 7, 5),
    slice(3 * BLK + 50, BLK - 10, -7),
    slice(-BLK - 2, -2),
    slice(2 * BLK, None, 1000),
    slice(10**9, None),
    slice(None, -10**9),
    slice(100, 10),
]


def test_indexing_1d(make):
    n = 3 * BLK + 100
    A = make("A", n, np.uint16, blksize=BLK)
    ref = np.arange(n, dtype=np.uint16)
    A[:] = ref
    for s in SLICES_1D:
        got = A[s]
        assert isinstance(got, np.ndarray)
        np.testing.assert_array_equal(got, ref[s], err_msg=str(s))
        assert got.shape == ref[s].shape
    for i in [0, 1, BLK // 2 - 1, BLK // 2, n - 1, -1, -n]:
        assert A[i] == ref[i]
        assert isinstance(A[i], np.uint16)
    for i in [n, -n - 1, 10**12]:
        with pytest.raises(IndexError):
            A[i]
    # empty selections of an empty array
    E = make("E", 0, np.float32)
    assert E[:].shape == (0,)
    assert E[0:0].shape == (0,)
    assert E[::-1].shape == (0,)
    with pytest.raises(IndexError):
        E[0]


def test_writes_1d_through_every_kind_of_index(conn):
    n = 2 * BLK + 10
    A = conn.root.create("A", n, np.int64, blksize=BLK)
    ref = np.zeros(n, np.int64)
    for k, s in enumerate(SLICES_1D):
        A[s] = k + 1
        ref[s] = k + 1
    A[BLK // 8] = -5
    ref[BLK // 8] = -5
    A[-1] = 9
    ref[-1] = 9
    np.testing.assert_array_equal(np.asarray(A), ref)
    conn.commit()
    other = conn.db.connect(transaction_manager=False)
    np.testing.assert_array_equal(np.asarray(other.root["A"]), ref)


IDX_KINDS = ["all", "0", "-1", "mid", "inner", "step2", "step3"]


def _idx(kind, n):
    return {
        "all": slice(None),
        "0": 0,
        "-1": -1,
        "mid": n // 2,
        "inner": slice(1, -1),
        "step2": slice(n // 4 + 1, 3 * n // 4 - 1, 2),
        "step3": slice(n // 5 + 1, 4 * n // 5 - 1, 3),
    }[kind]


@pytest.mark.parametrize("order", ["C", "F"])
def test_indexing_nd_all_combinations(make, order):
    shape = (103, 101, 23, 17)
    A = make("A", shape, np.uint32, order=order, blksize=64 * 1024)
    ref = np.arange(np.prod(shape), dtype=np.uint32).reshape(shape, order=order)
    A[...] = ref
    combos = 0
    for kinds in itertools.product(IDX_KINDS, repeat=4):
        idx = tuple(_idx(k, n) for k, n in zip(kinds, shape))
        got = A[idx]
        want = ref[idx]
        if isinstance(want, np.ndarray):
            assert isinstance(got, np.ndarray)
            assert got.shape == want.shape, idx
            assert np.array_equal(got, want), idx
        else:
            assert got == want, idx
        combos += 1
    assert combos == 7**4
    # newaxis and Ellipsis
    np.testing.assert_array_equal(A[None, ..., 3], ref[None, ..., 3])
    np.testing.assert_array_equal(A[1, ..., None, 2], ref[1, ..., None, 2])
    np.testing.assert_array_equal(A[..., ::-2], ref[..., ::-2])
    with pytest.raises(IndexError):
        A[0, 0, 0, 0, 0]
    with pytest.raises(IndexError):
        A[103]
    with pytest.raises(IndexError):
        A[:, -102]


def test_advanced_indexing_is_a_type_error(make):
    A = make("A", (10, 4), np.float64)
    for idx in ([1, 2], np.array([1, 2]), (slice(None), [0]), np.ones(10, bool), True, 1.5, (0, [1])):
        with pytest.raises(TypeError, match=r"np\.asarray\(A\)"):
            A[idx]
        with pytest.raises(TypeError):
            A[idx] = 1
    # numpy integers are basic indices
    assert A[np.int64(3), np.uint8(1)] == 0.0
    np.asarray(A)[[1, 2]]  # the named alternative works (and copies)


def test_scalar_and_shape_mismatch_assignment(make):
    A = make("A", (4, 3), np.int32)
    A[1, 2] = 7
    A[2] = [1, 2, 3]
    A[3] = 5
    assert A[1, 2] == 7
    np.testing.assert_array_equal(A[2], [1, 2, 3])
    np.testing.assert_array_equal(A[3], [5, 5, 5])
    with pytest.raises(ValueError):
        A[0] = [1, 2]
    with pytest.raises(ValueError):
        A[:2] = np.ones((3, 3))


def test_list_and_asarray(make):
    A = make("A", 10, np.uint8)
    A[:] = np.arange(10)
    assert list(A) == list(range(10))
    B = make("B", (3, 2), np.int16)
    B[:] = [[1, 2], [3, 4], [5, 6]]
    rows = list(B)
    assert len(rows) == 3
    np.testing.assert_array_equal(rows[2], [5, 6])
    a = np.asarray(A)
    assert type(a) is np.ndarray and a.shape == (10,)
    a[0] = 99
    assert A[0] == 99  # a view, not a copy
    assert np.asarray(A, dtype=np.float64)[0] == 99.0
    with pytest.raises(ValueError):
        np.asarray(A, dtype=np.float64, copy=False)
    assert np.asarray(A, copy=False).base is not None
    c = np.array(A)  # a copy
    c[1] = 0
    assert A[1] == 1
    assert np.sum(A) == np.sum(np.asarray(A))


def test_structured_dtype(sqlite_url):
    db = outcore.open(sqlite_url)
    conn = db.connect(transaction_manager=False)
    dt = np.dtype([("x", "<f4"), ("y", "<i8", (3,)), ("s", [("a", "u1"), ("b", "<f8")])])
    A = conn.root.create("S", 5, dt)
    A[2] = (1.5, [1, 2, 3], (7, 2.5))
    conn.commit()
    other = outcore.open(sqlite_url).connect(transaction_manager=False)
    B = other.root["S"]
    assert B.dtype == dt
    assert B[2]["x"] == 1.5 and list(B[2]["y"]) == [1, 2, 3] and B[2]["s"]["b"] == 2.5
    np.testing.assert_array_equal(B["y"][2], [1, 2, 3])


def test_object_dtypes_are_rejected(conn):
    with pytest.raises(TypeError):
        conn.root.create("O", 5, object)
    with pytest.raises(TypeError):
        conn.root.create("O", 5, [("x", "<f8"), ("o", object)])
    with pytest.raises(TypeError):
        conn.root.create("O", 5, [("s", [("o", "O")])])
    assert "O" not in conn.root


def test_resize_keeps_views_coherent(make, conn):
    A = make("A", (10, 4), np.int32, blksize=BLK)
    A[:] = 1
    old = A[:]
    A.resize((2000, 4))
    assert A.shape == (2000, 4) and old.shape == (10, 4)
    new = A[:]
    assert (new[10:] == 0).all()  # growth reads zeros
    new[3] = 7
    assert (old[3] == 7).all()
    old[4] = 8
    assert (new[4] == 8).all()
    # shrink, then grow: the cut part reads zeros, not the old data
    new[1500] = 5
    A.resize((5, 4))
    A.resize((2000, 4))
    assert (A[1500] == 0).all()
    assert (A[4] == 8).all()
    if isinstance(A, outcore.Array):
        conn.commit()
    assert A.shape == (2000, 4)
    assert (old[3] == 7).all()


@pytest.mark.parametrize("order", ["C", "F"])
def test_append(conn, order):
    shape = (0, 3, 2) if order == "C" else (2, 3, 0)
    major = 0 if order == "C" else 2
    A = conn.root.create("A", shape, np.int64, order=order, blksize=BLK)
    ref = np.zeros(shape, np.int64, order=order)
    rng = np.random.default_rng(0)
    for k in [1, 0, 5, 300, 2]:
        part_shape = list(shape)
        part_shape[major] = k
        part = rng.integers(-1000, 1000, part_shape)
        A.append(part)
        ref = np.concatenate([ref, part], axis=major)
        assert A.shape == ref.shape
        assert len(A) == ref.shape[0] == len(np.asarray(A))
        np.testing.assert_array_equal(np.asarray(A), ref)
    before = np.asarray(A).copy()
    bad = [
        np.zeros((1, 3)),  # wrong ndim
        np.zeros((1, 3, 3)) if order == "C" else np.zeros((3, 3, 1)),  # wrong other dims
        np.zeros((1, 2, 2)) if order == "C" else np.zeros((2, 2, 1)),
        np.full((1, 3, 2) if order == "C" else (2, 3, 1), "abc"),  # cannot convert
        5,  # scalar
    ]
    for b in bad:
        with pytest.raises((ValueError, TypeError)):
            A.append(b)
        assert A.shape == ref.shape
        np.testing.assert_array_equal(np.asarray(A), before)
    conn.commit()
    other = conn.db.connect(transaction_manager=False)
    np.testing.assert_array_equal(np.asarray(other.root["A"]), ref)


def test_one_tib_array_maps_instantly(make, conn):
    n = 1 << 40
    A = make("T", n, np.uint8)
    t = time.monotonic()
    v = A[:]
    w = np.asarray(A)
    assert time.monotonic() - t < 2.0
    assert v.shape == (n,) and w.nbytes == n
    assert v[n - 1] == 0 and v[n // 2] == 0
    v[n - 1] = 7
    assert A[-1] == 7
    if isinstance(A, outcore.Array):
        conn.commit()
    assert A[-1] == 7


@pytest.mark.parametrize("i", range(48, 65))
def test_beyond_address_space_is_memory_error(make, i):
    with pytest.raises(MemoryError):
        A = make(f"Z{i}", (1 << i) - 1, np.uint8)
        A[:]


def test_base_keeps_memory_alive(sqlite_url):
    db = outcore.open(sqlite_url)
    conn = db.connect(transaction_manager=False)
    A = conn.root.create("A", (1000, 3), np.float64, blksize=BLK)
    A[:] = np.arange(3000).reshape(1000, 3)
    conn.commit()
    conn2 = db.connect(transaction_manager=False)
    v = conn2.root["A"][500:]
    assert v.base is not None
    del A, conn, conn2, db
    gc.collect()
    np.testing.assert_array_equal(v[:, 0], np.arange(1500, 3000, 3))  # loads from the store
    v[0, 0] = -1
    assert v[0, 0] == -1


def test_root_mapping(conn):
    assert len(conn.root) == 0 and list(conn.root) == []
    conn.root.create("b", 1, np.uint8)
    conn.root.create("a", 1, np.uint8)
    assert sorted(conn.root) == ["a", "b"] and len(conn.root) == 2
    assert "a" in conn.root and "z" not in conn.root and 5 not in conn.root
    with pytest.raises(KeyError):
        conn.root["z"]
    with pytest.raises(outcore.NoSuchArrayError):
        conn.root["z"]
    with pytest.raises(outcore.AlreadyExistsError):
        conn.root.create("a", 1, np.uint8)
    del conn.root["a"]
    assert "a" not in conn.root
    with pytest.raises(KeyError):
        del conn.root["a"]
    conn.root.rename("b", "c")
    assert list(conn.root) == ["c"]
    assert [a.name for a in conn.root.values()] == ["c"]
    assert [(n, a.shape) for n, a in conn.root.items()] == [("c", (1,))]
    assert conn.root.get("zz") is None
    with pytest.raises(ValueError):
        conn.root.create("bad order", 1, np.uint8, order="K")
    with pytest.raises(ValueError):
        conn.root.create("neg", (-1, 2), np.uint8)


def test_load_prefetches_and_raises_on_failure(sqlite_url):
    import sqlite3

    db = outcore.open(sqlite_url)
    conn = db.connect(transaction_manager=False)
    A = conn.root.create("A", (100, 64), np.float64, blksize=BLK)
    A[:] = 1.5
    conn.commit()
    B = outcore.open(sqlite_url).connect(transaction_manager=False).root["A"]
    B.load()
    B.load(np.s_[10:20])
    B.load(5)
    B.load((slice(None, None, -7), 3))
    B.load(np.s_[..., 1])
    B.load(np.s_[50:50])
    with pytest.raises(IndexError):
        B.load(100)
    with pytest.raises(TypeError):
        B.load([1, 2])
    assert (B[:] == 1.5).all()
    # a corrupt block: load raises instead of faulting later
    with sqlite3.connect(sqlite_url) as c:
        c.execute("UPDATE outcore_current SET checksum = checksum + 1 WHERE blk = 3")
    C = outcore.open(sqlite_url).connect(transaction_manager=False).root["A"]
    C.load(np.s_[:2])  # blocks 0..1 are fine
    with pytest.raises(outcore.CorruptError):
        C.load()
    with pytest.raises(outcore.CorruptError):
        C.load(np.s_[30:40])


def test_load_of_a_corrupt_compressed_block_raises_corrupt_error(sqlite_url, caplog):
    # Compressed arrays go through the userfaultfd engine: the store's error reaches Python as
    # itself (CorruptError naming the block), not as a pager failure.
    import sqlite3

    conn = outcore.open(sqlite_url).connect(transaction_manager=False)
    A = conn.root.create("Z", (100, 64), np.float64, blksize=BLK, compression="zstd")
    A[:] = np.arange(6400).reshape(100, 64)
    conn.commit()
    with sqlite3.connect(sqlite_url) as c:
        (n,) = c.execute("SELECT count(*) FROM outcore_blob").fetchone()
        assert n > 0
        c.execute("UPDATE outcore_blob SET data = zeroblob(length(data))")
    B = outcore.open(sqlite_url).connect(transaction_manager=False).root["Z"]
    with caplog.at_level(logging.WARNING, logger="outcore"):
        with pytest.raises(outcore.CorruptError, match="corrupt block"):
            B.load()
        # The engine's own log record reaches Python's logging (from its thread, later).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any("failed for good" in r.getMessage() for r in caplog.records):
            time.sleep(0.05)
    logged = [r for r in caplog.records if "failed for good" in r.getMessage()]
    assert logged and logged[0].name.startswith("outcore.") and logged[0].levelno == logging.ERROR, caplog.records


@pytest.mark.parametrize("compression", [None, "none", "lz4", "zstd", "zstd:9"])
def test_compression(sqlite_url, compression):
    db = outcore.open(sqlite_url, compression="lz4")
    conn = db.connect(transaction_manager=False)
    A = conn.root.create("A", (300, 50), np.float64, blksize=BLK, compression=compression)
    A[:] = np.arange(15000).reshape(300, 50) % 7
    conn.commit()
    B = outcore.open(sqlite_url).connect(transaction_manager=False).root["A"]
    np.testing.assert_array_equal(B[:], np.arange(15000).reshape(300, 50) % 7)


def test_bad_compression(sqlite_url):
    with pytest.raises(ValueError):
        outcore.open(sqlite_url, compression="gzip")
    conn = outcore.open(sqlite_url).connect(transaction_manager=False)
    for bad in ["zstd:0", "zstd:x", "LZ4"]:
        with pytest.raises(ValueError):
            conn.root.create("A", 3, np.uint8, compression=bad)


@pytest.mark.parametrize(
    "dt",
    [
        np.dtype([("a", "u1"), ("b", "<f8")], align=True),
        np.dtype({"names": ["x", "y"], "formats": ["<i2", "<f4"], "offsets": [4, 12], "itemsize": 20}),
        np.dtype([("s", np.dtype([("a", "u1"), ("b", "<i4")], align=True)), ("t", "<f8", (2, 3))]),
        np.dtype([(("title", "x"), "<f4"), ("y", "<i8", (3,))]),
        np.dtype("<M8[ns]"),
        np.dtype(">i4"),
        np.dtype("U5"),
        np.dtype("c16"),
        np.dtype("?"),
    ],
)
def test_dtypes_round_trip(sqlite_url, dt):
    conn = outcore.open(sqlite_url).connect(transaction_manager=False)
    A = conn.root.create("A", 4, dt)
    ref = np.zeros(4, dt)
    ref[1] = np.ones(1, dt)[0] if dt.names is None else ref[1]
    A[1] = ref[1]
    conn.commit()
    B = outcore.open(sqlite_url).connect(transaction_manager=False).root["A"]
    assert B.dtype == dt and B.itemsize == dt.itemsize
    assert B[:].tobytes() == ref.tobytes()
