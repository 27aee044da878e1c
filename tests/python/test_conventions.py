"""What h5py, zarr and numpy.memmap users type first: paths, modes, sizes, context managers and
close, `len`, error classes (issue 16)."""

import gc
import os
import pathlib
import warnings

import numpy as np
import pytest
import transaction

import outcore


def test_open_takes_paths_and_expands_home(tmp_path, monkeypatch):
    p = tmp_path / "data.outcore"
    db = outcore.open(p)  # pathlib.Path
    assert db.location == str(p) and p.exists()
    monkeypatch.setenv("HOME", str(tmp_path))
    db2 = outcore.open("~/other.outcore")
    assert db2.location == str(tmp_path / "other.outcore")
    assert (tmp_path / "other.outcore").exists()
    assert outcore.open(pathlib.PurePosixPath(p)).location == str(p)
    with pytest.raises(TypeError):
        outcore.open(5)


def test_sizes_as_strings(tmp_path):
    assert outcore.parse_size("1GiB") == 1 << 30
    assert outcore.parse_size("512 MiB") == 512 << 20
    assert outcore.parse_size("2GB") == 2 * 10**9
    assert outcore.parse_size("1.5kib") == 1536
    assert outcore.parse_size(4096) == 4096 and outcore.parse_size(None) is None
    for bad in ["lots", "1 parsec", "-1GiB", True, 1.5]:
        with pytest.raises(outcore.InvalidArgumentError):
            outcore.parse_size(bad)
    db = outcore.open(tmp_path / "s.outcore", cache="64MiB", blksize="64KiB")
    A = db.connect().root.create("A", 10, "f8")
    assert A.blksize == 64 << 10


def test_missing_directory_is_named(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        outcore.open(tmp_path / "no" / "such" / "dir" / "x.outcore")
    assert isinstance(e.value, outcore.NotFoundError) and isinstance(e.value, outcore.StoreError)
    msg = str(e.value)
    assert str(tmp_path / "no" / "such" / "dir") + " does not exist" in msg
    assert "unable to open database file" not in msg
    with pytest.raises(outcore.NotFoundError, match="does not exist"):
        outcore.open(tmp_path / "nodir" / "x.outcore", mode="r")
    (tmp_path / "afile").write_text("")
    with pytest.raises(outcore.NotFoundError, match="is not a directory"):
        outcore.open(tmp_path / "afile" / "x.outcore")


def test_modes(tmp_path):
    p = tmp_path / "m.outcore"
    for mode in ["r", "r+"]:
        with pytest.raises(FileNotFoundError):
            outcore.open(p, mode=mode)
        assert not p.exists()
    with outcore.open(p, mode="w-") as db:  # creates
        with db.transaction() as conn:
            conn.root.create("A", data=np.arange(5))
    with pytest.raises(FileExistsError) as e:
        outcore.open(p, mode="w-")
    assert isinstance(e.value, outcore.StoreExistsError)
    with pytest.raises(outcore.StoreExistsError):
        outcore.open(p, mode="x")
    assert list(outcore.open(p, mode="r+").connect().root) == ["A"]
    assert list(outcore.open(p, mode="a").connect().root) == ["A"]
    assert list(outcore.open(p).connect().root) == ["A"]  # "a" is the default
    with pytest.raises(ValueError, match="mode"):
        outcore.open(p, mode="rw")
    db = outcore.open(p, mode="w")  # emptied, in one commit
    assert list(db.connect().root) == []
    assert "mode 'w'" in db.history()[-1]["description"]
    head = db.head
    assert outcore.open(p, mode="w").head == head  # nothing to delete: no commit


def test_read_only_mode(tmp_path):
    p = tmp_path / "ro.outcore"
    with outcore.open(p) as db:
        with db.transaction() as conn:
            conn.root.create("A", data=np.arange(6.0).reshape(2, 3), attrs={"units": "m"})
            conn.root.create("C", data=np.arange(4.0), compression="zstd")
    db = outcore.open(p, mode="r")
    assert db.read_only
    conn = db.connect()
    assert conn.read_only and conn.transaction_manager is None
    A = conn.root["A"]
    assert A.read_only
    for view in [A[:], A[0], np.asarray(A), conn.root["C"][:]]:
        assert not view.flags.writeable
        with pytest.raises(ValueError, match="assignment destination is read-only"):
            view[...] = 1
        with pytest.raises(ValueError):
            view.flags.writeable = True  # the base exposes no writable buffer
    with pytest.raises(outcore.ReadOnlyError, match="mode 'r'"):
        A[0, 0] = 5
    for change in [
        lambda: conn.root.create("B", 3, "f8"),
        lambda: A.resize((3, 3)),
        lambda: A.append(np.ones((1, 3))),
        lambda: A.attrs.update(x=1),
        lambda: conn.root.__delitem__("A"),
        lambda: conn.commit(),
    ]:
        with pytest.raises(outcore.ReadOnlyError):
            change()
    np.testing.assert_array_equal(A[:], np.arange(6.0).reshape(2, 3))
    # A read-only connection still follows new commits at its boundaries.
    with outcore.open(p).transaction() as w:
        w.root["A"][0, 0] = 42
    assert A[0, 0] == 0
    conn.sync()
    assert A[0, 0] == 42
    transaction.commit()  # the read-only connection joined nothing: no error


def test_db_and_connection_are_context_managers(tmp_path):
    p = tmp_path / "cm.outcore"
    with outcore.open(p) as db:
        assert not db.closed
        with db.connect(transaction_manager=False) as conn:
            A = conn.root.create("A", data=np.arange(4.0))
            conn.commit()
            a = A[:]
            A[1] = 10  # uncommitted at close: discarded
        assert conn.closed
        with pytest.raises(outcore.ClosedError):
            A[0]
        with pytest.raises(outcore.ClosedError):
            A[0] = 1
        with pytest.raises(outcore.ClosedError):
            np.asarray(A)
        with pytest.raises(ValueError):  # ClosedError is a ValueError, as for closed files
            A.shape
        # Views stay readable, at the snapshot the connection read, without its uncommitted
        # changes.
        np.testing.assert_array_equal(a, [0, 1, 2, 3])
        other = db.connect()
    assert db.closed and other.closed
    with pytest.raises(outcore.ClosedError):
        db.connect()
    with pytest.raises(outcore.ClosedError):
        other.root["A"]
    conn.close()  # idempotent
    db.close()
    assert "closed" in repr(db) and "closed" in repr(conn)
    assert list(outcore.open(p, mode="r").connect().root["A"][:]) == [0, 1, 2, 3]


def test_views_of_a_closed_connection_stay_readable_after_others_commit(tmp_path):
    p = tmp_path / "snap.outcore"
    db = outcore.open(p)
    with db.transaction() as conn:
        A = conn.root.create("A", (1 << 16,), "i8", blksize=4096)
        A[:] = 7
        a = A[:]
    del A, conn
    gc.collect()
    for i in range(5):  # replaces every block, several times
        with db.transaction() as w:
            w.root["A"][:] = i
        db.gc()
    assert (a == 7).all()


def test_writes_after_the_transaction_block_warn(tmp_path):
    db = outcore.open(tmp_path / "late.outcore")
    with db.transaction() as conn:
        A = conn.root.create("A", data=np.zeros(8))
        a = A[:]
    assert conn.closed
    a[0] = 99  # the transaction is over: never committed
    with pytest.raises(outcore.ClosedError):
        A[1] = 5
    del A, conn
    gc.collect()
    with pytest.warns(RuntimeWarning, match="after its connection was closed were discarded"):
        del a
        gc.collect()
    assert db.connect().root["A"][0] == 0
    # Without late writes, releasing views says nothing.
    with db.transaction() as conn:
        b = conn.root["A"][:]
        b[1] = 1
    del conn
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        del b
        gc.collect()
    assert db.connect().root["A"][1] == 1


def test_closing_a_joined_connection(tmp_path):
    db = outcore.open(tmp_path / "joined.outcore")
    conn = db.connect()
    A = conn.root.create("A", data=np.zeros(3))
    a = A[:]
    conn.close()  # joined to the thread's transaction: leaves it, changes discarded
    transaction.commit()
    assert "A" not in db.connect().root
    # Writes into its views after the close: the next commit of the transaction says so.
    transaction.begin()
    b = outcore.open(tmp_path / "joined.outcore").connect()
    B = b.root.create("B", data=np.zeros(3))
    bv = B[:]
    transaction.commit()
    b.close()
    bv[0] = 1
    transaction.commit()  # the closed connection joined no transaction any more
    assert db.connect().root["B"][0] == 0
    del a, B, b
    with pytest.warns(RuntimeWarning, match="array 'B'"):
        del bv
        gc.collect()


def test_len_is_axis_0_as_numpy(conn):
    for order in "CF":
        A = conn.root.create(f"A{order}", (5, 7, 3), "i4", order=order)
        assert len(A) == len(np.asarray(A)) == 5
        assert [x.shape for x in A][:1] == [(7, 3)]
    with pytest.raises(TypeError):
        len(conn.root.create("scalar", (), "f8"))


def test_error_classes_are_builtins_and_raised(conn):
    with pytest.raises(TypeError) as e:
        conn.root.create("x", 3, "flaot64")
    assert isinstance(e.value, outcore.DtypeError) and "flaot64" in str(e.value)
    with pytest.raises(outcore.DtypeError):
        conn.root.create("x", 3, object)
    with pytest.raises(outcore.DtypeError):
        conn.root.create("x", data=np.zeros(3), dtype="nonsense")
    with pytest.raises(ValueError) as e:
        conn.root.create("x", (-1, 2), "f8")
    assert isinstance(e.value, outcore.ShapeError)
    with pytest.raises(ValueError) as e:
        conn.root.create("x", 3, "f8", order="K")
    assert isinstance(e.value, outcore.InvalidArgumentError)
    with pytest.raises(ValueError) as e:
        conn.root.create("x", 3, "f8", compression="gzip")
    assert isinstance(e.value, outcore.InvalidArgumentError)
    A = conn.root.create("x", (2, 3), "f8")
    with pytest.raises(ValueError) as e:
        A.append(np.ones((2, 2)))
    assert isinstance(e.value, outcore.ShapeError)
    with pytest.raises(KeyError) as e:
        conn.root["nope"]
    assert isinstance(e.value, outcore.NoSuchArrayError)
    with pytest.raises(ValueError) as e:
        conn.root.create("x", 3, "f8")
    assert isinstance(e.value, outcore.AlreadyExistsError)
    assert issubclass(outcore.ReadOnlyError, ValueError)
    assert issubclass(outcore.ClosedError, ValueError)
    assert issubclass(outcore.NotFoundError, FileNotFoundError)
    assert issubclass(outcore.StoreExistsError, FileExistsError)
    assert issubclass(outcore.OutOfRangeError, IndexError)
    assert issubclass(outcore.StoreError, OSError)
