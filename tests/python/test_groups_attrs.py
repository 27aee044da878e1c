"""Groups, `create(data=)`, `fill_value`, `attrs`, `chunks`, `info` (issue 16)."""

from collections.abc import MutableMapping

import numpy as np
import pytest
import transaction

import outcore


def test_root_is_a_mutable_mapping_with_groups(conn):
    root = conn.root
    assert isinstance(root, MutableMapping) and isinstance(root, outcore.Group)
    assert root.name == "/" and root.path == ""
    x = root.create("a/b/x", (3,), "i4")
    root.create("a/y", data=[1.0, 2.0])
    root["top"] = np.arange(4)  # creates, with the data
    assert sorted(root) == ["a", "top"] and len(root) == 2
    assert root["a"]["b"]["x"].id == x.id == root["a/b/x"].id == root.group("a/b")["x"].id
    assert root["/a/b/x"].id == x.id and root["a"]["/a/b/x"].id == x.id
    a = root["a"]
    assert isinstance(a, outcore.Group) and a.name == "/a" and a.basename == "a"
    assert a.array_keys() == ["y"] and a.group_keys() == ["b"]
    assert [n for n, _ in a.arrays()] == ["y"] and [g.name for _, g in a.groups()] == ["/a/b"]
    assert "b" in a and "b/x" in a and "nope" not in a and "a/y" in root
    assert dict((k, type(v).__name__) for k, v in root.items()) == {"a": "Group", "top": "Array"}
    seen = []
    assert root.visit(seen.append) is None
    assert seen == ["a", "a/b", "a/b/x", "a/y", "top"]
    assert root.visititems(lambda p, o: p if isinstance(o, outcore.Array) and o.shape == (2,) else None) == "a/y"
    assert "x (3,) int32" in root.tree()
    # New groups exist once an array is created in them.
    g = root.group("new/sub")
    assert "new" not in root
    g.create("z", data=np.ones(2))
    assert root["new/sub/z"][1] == 1
    # A name is an array or a group, never both.
    with pytest.raises(outcore.AlreadyExistsError):
        root.create("a", 1, "u1")
    with pytest.raises(outcore.AlreadyExistsError):
        root.create("top/q", 1, "u1")
    with pytest.raises(KeyError):
        root["a/nope"]
    with pytest.raises(outcore.InvalidArgumentError):
        root.create("a//b", 1, "u1")
    # Replacing, moving and deleting.
    root["top"] = np.zeros(2)
    assert root["top"].shape == (2,)
    root.move("a", "moved")
    assert sorted(root) == ["moved", "new", "top"] and root["moved/b/x"].id == x.id
    del root["moved"]
    assert sorted(root) == ["new", "top"]
    conn.commit()
    assert sorted(conn.db.connect().root) == ["new", "top"]
    other = conn.db.connect().root
    other.pop("top")  # the Array handle it returns is gone (ArrayGoneError) once deleted
    assert "top" not in other


@pytest.mark.parametrize("order", ["C", "F"])
def test_create_with_data(conn, order):
    data = np.arange(24, dtype="<i2").reshape(2, 3, 4)
    A = conn.root.create("d", data=data, order=order)
    assert A.shape == data.shape and A.dtype == data.dtype and A.order == order
    np.testing.assert_array_equal(A[:], data)
    B = conn.root.create("cast", data=data, dtype="f4", attrs={"units": "m"})
    assert B.dtype == np.float32 and B.attrs == {"units": "m"}
    np.testing.assert_array_equal(B[:], data)
    S = conn.root.create("scalar", data=np.float64(2.5))
    assert S.shape == () and S[()] == 2.5
    with pytest.raises(outcore.ShapeError):
        conn.root.create("bad", (5,), data=np.ones(3))
    with pytest.raises(TypeError):
        conn.root.create("noshape")
    conn.commit()
    np.testing.assert_array_equal(conn.db.connect().root["d"][:], data)


def test_fill_value(conn):
    big = conn.root.create("big", (1 << 40,), "u1", fill_value=0)  # 1 TiB, nothing stored
    assert big.fill_value == 0 and big[123456789] == 0
    z = conn.root.create("z", (4,), "f8", fill_value=0.0)
    assert z.fill_value == 0.0 and z.fill_value.dtype == np.float64
    assert conn.root.create("plain", (4,), "f8").fill_value == 0
    nan = conn.root.create("nan", (4,), "f8", fill_value=np.nan)  # more in test_fill.py
    assert np.isnan(nan.fill_value) and np.isnan(nan[:]).all()
    conn.commit()


def test_attrs_are_transactional_and_versioned(db):
    conn = db.connect()
    A = conn.root.create("A", (2, 3), "f8", attrs={"units": "K"})
    assert dict(A.attrs) == {"units": "K"}
    A.attrs["_ARRAY_DIMENSIONS"] = ["y", "x"]
    A.attrs["scale"] = np.float32(0.5)  # NumPy scalars and arrays become numbers and lists
    A.attrs["levels"] = np.arange(3)
    A.attrs.update(long_name="temperature", nested={"a": [1, None, True]})
    assert A.attrs["scale"] == 0.5 and A.attrs["levels"] == [0, 1, 2]
    assert "units" in A.attrs and len(A.attrs) == 6
    transaction.commit()
    t1 = db.head
    other = db.connect(transaction_manager=False)
    assert other.root["A"].attrs["nested"] == {"a": [1, None, True]}
    del A.attrs["units"]
    A.attrs["units"] = "C"
    transaction.abort()
    assert A.attrs["units"] == "K"
    A.attrs["units"] = "C"
    transaction.commit()
    assert db.connect(at=t1).root["A"].attrs["units"] == "K"  # versioned with the array
    assert db.connect().root["A"].attrs["units"] == "C"
    with pytest.raises(outcore.InvalidArgumentError):
        A.attrs["bad"] = object()
    with pytest.raises(outcore.InvalidArgumentError):
        A.attrs.update({1: 2})
    with pytest.raises(KeyError):
        A.attrs["missing"]
    A.attrs.clear()
    assert dict(A.attrs) == {}
    transaction.abort()
    with pytest.raises(outcore.ReadOnlyError):
        db.connect(at=t1).root["A"].attrs["x"] = 1


def test_chunks_info_and_html(conn):
    A = conn.root.create("A", (1000, 1000), "f8", blksize="1MiB")
    assert A.chunks == (131, 1000)
    F = conn.root.create("F", (1024, 1024), "f8", blksize="1MiB", order="F")
    assert F.chunks == (1024, 128)
    assert conn.root.create("e", (0, 3), "f8", blksize=4096).chunks == (170, 3)
    A.attrs["units"] = "m"
    info = A.info
    for part in ["name        : A", "shape       : (1000, 1000)", "chunks      : (131, 1000)", '"units":"m"']:
        assert part in info
    html = A._repr_html_()
    assert html.startswith("<table") and "<th" in html and "(131, 1000)" in html
    # dask picks the block shape up
    da = pytest.importorskip("dask.array")
    assert da.from_array(A, chunks=A.chunks).chunks[1] == (1000,)
