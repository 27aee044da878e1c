"""Writes ZODB FileStorages in wendelin.core's layout for the import tests, without wendelin.core:
classes named as wendelin's (`wendelin.bigarray.array_zodb.ZBigArray`, ...) whose states are
what wendelin.core 0.13 stores (see `../shared/reference/wendelin.md`), driven by a byte model
of each array. Run as a script (so the stand-in modules never enter the test process):

    python wendelin_writer.py SCENARIO OUT.fs [MARKER]

prints a JSON document: for `history`, the expected arrays after each transaction (by tid)."""

import hashlib
import io
import json
import os
import sys
import types

import numpy as np
import transaction
import zodbpickle.pickle
from BTrees.IOBTree import IOBTree
from BTrees.LOBTree import LOBTree
from BTrees.OOBTree import OOBTree
from persistent import Persistent
from persistent.mapping import PersistentMapping
from ZODB import DB
from ZODB.Connection import TransactionMetaData
from ZODB.FileStorage import FileStorage


def _module(name):
    m = types.ModuleType(name)
    sys.modules[name] = m
    return m


for _pkg in ("wendelin", "wendelin.bigfile", "wendelin.bigarray"):
    _module(_pkg)
_fz = _module("wendelin.bigfile.file_zodb")
_az = _module("wendelin.bigarray.array_zodb")
_mymod = _module("mymod")
CHUNK = 4096


class ZData(Persistent):
    def __init__(self, data):
        self.data = data

    def __getstate__(self):
        return self.data

    def __setstate__(self, s):
        self.data = s


class ZBlk0(Persistent):
    def __init__(self, data):
        self.blkdata = data

    def __getstate__(self):
        return self.blkdata

    def __setstate__(self, s):
        self.blkdata = s


class ZBlk1(Persistent):
    def __init__(self):
        self.chunktab = IOBTree()

    def __getstate__(self):
        return self.chunktab

    def __setstate__(self, s):
        self.chunktab = s


class ZBigFile(Persistent):
    def __init__(self, blksize):
        self.blksize = blksize
        self.blktab = LOBTree()

    def __getstate__(self):
        return (self.blksize, self.blktab)

    def __setstate__(self, s):
        self.blksize, self.blktab = s


class ZBigArray(Persistent):
    """Keeps a byte model (`self.model`, not stored) of its data in its order."""

    def __init__(self, shape, dtype, order="C", blksize=2 << 20, fmt="ZBlk0"):
        self._dtype = np.dtype(dtype)
        self._shape = tuple(shape)
        self._order = order
        self.zfile = ZBigFile(blksize)
        self.fmt = fmt
        self.model = bytearray(self.nbytes)

    @property
    def nbytes(self):
        return int(np.prod(self._shape, dtype=np.int64)) * self._dtype.itemsize

    def __getstate__(self):
        return ({"_dtype": self._dtype, "_shape": self._shape, "_order": self._order, "_stridev": ()},
                {"zfile": self.zfile})

    def __setstate__(self, s):
        d = dict(s[0])
        d.update(s[1])
        self._dtype, self._shape, self._order, self.zfile = d["_dtype"], d["_shape"], d["_order"], d["zfile"]

    def view(self):
        """The model as an ndarray of the array's shape and order (writable)."""
        n = self.nbytes
        a = np.frombuffer(self.model, dtype=np.uint8, count=n).view(self._dtype)
        return a.reshape(self._shape, order=self._order)

    def resize(self, shape):
        self._shape = tuple(shape)
        n = self.nbytes
        if n > len(self.model):
            self.model.extend(bytes(n - len(self.model)))
        # a shrink keeps the blocks (as wendelin does): the model keeps its bytes too

    def store(self):
        """Writes the blocks whose content differs from the model (wendelin's commit)."""
        bs = self.zfile.blksize
        tab = self.zfile.blktab
        nblk = -(-len(self.model) // bs)
        for k in range(nblk):
            want = bytes(self.model[k * bs:(k + 1) * bs]).rstrip(b"\0")
            have = _blkbytes(tab.get(k))
            if want == have or (not want and k not in tab):
                continue
            if self.fmt == "ZBlk0":
                if k in tab:
                    tab[k].blkdata = want
                else:
                    tab[k] = ZBlk0(want)
            else:
                if k not in tab:
                    tab[k] = ZBlk1()
                ct = tab[k].chunktab
                for off in range(0, bs, CHUNK):
                    c = want[off:off + CHUNK].rstrip(b"\0")
                    if not c:
                        if off in ct:
                            del ct[off]
                    elif off in ct:
                        if ct[off].data != c:
                            ct[off].data = c
                    else:
                        ct[off] = ZData(c)

    def expected(self):
        v = np.ascontiguousarray(self.view())
        return {"shape": list(self._shape), "dtype": self._dtype.str if self._dtype.fields is None else repr(self._dtype.descr),
                "order": self._order, "sha1": hashlib.sha1(v.tobytes()).hexdigest()}


def _blkbytes(z):
    if z is None:
        return b""
    if isinstance(z, ZBlk0):
        return z.blkdata
    buf = bytearray()
    for off, zd in z.chunktab.items():
        if off + len(zd.data) > len(buf):
            buf.extend(bytes(off + len(zd.data) - len(buf)))
        buf[off:off + len(zd.data)] = zd.data
    return bytes(buf).rstrip(b"\0")


class Thing(Persistent):
    """A class the import does not know."""


for _c in (ZData, ZBlk0, ZBlk1, ZBigFile):
    _c.__module__ = _fz.__name__
    setattr(_fz, _c.__name__, _c)
ZBigArray.__module__ = _az.__name__
_az.ZBigArray = ZBigArray
Thing.__module__ = "mymod"
_mymod.Thing = Thing


class Evil:
    """Unpickling it runs `touch MARKER`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def raw_store(path, records, ext=None):
    """Stores raw records {oid: data} in one transaction at the storage level."""
    st = FileStorage(path)
    t = TransactionMetaData("mallory", "raw records", ext or {})
    st.tpc_begin(t)
    for oid, data in records.items():
        try:
            serial = st.load(oid)[1]
        except KeyError:
            serial = b"\0" * 8
        st.store(oid, serial, data, "", t)
    st.tpc_vote(t)
    st.tpc_finish(t)
    st.close()


def record(module, name, state):
    """A record: class pickle and state pickle (persistent objects in `state` given as
    `("ref", oid)` tuples)."""
    f = io.BytesIO()
    f.write(b"\x80\x03c" + f"{module}\n{name}\n".encode() + b"q\x00.")
    p = zodbpickle.pickle.Pickler(f, 3)

    def pid(o):
        if isinstance(o, tuple) and len(o) == 2 and o[0] == "ref":
            return o[1]
        return None

    p.persistent_id = pid
    p.dump(state)
    return f.getvalue()


def _commit(tm, conn, user, note, arrays, out):
    for a in arrays.values():
        a.store()
    txn = tm.get()
    txn.user = user
    txn.note(note)
    txn.setExtendedInfo("purpose", "test")
    tm.commit()
    out[conn._storage.lastTransaction().hex()] = {k: a.expected() for k, a in arrays.items()}


def history(path):
    """Several transactions: appends, edits, a chunk zeroed, a shrink, an array deleted."""
    db = DB(FileStorage(path))
    tm = transaction.TransactionManager()
    conn = db.open(transaction_manager=tm)
    root = conn.root()
    out = {}
    live = {}
    root["a"] = live["a"] = ZBigArray((0,), np.float64, blksize=1 << 16)
    _commit(tm, conn, "alice", "create a", live, out)
    a = live["a"]
    a.resize((30000,))
    a.view()[:] = np.arange(30000) * 0.5
    _commit(tm, conn, "alice", "fill a", live, out)
    a.view()[100:110] = -1
    _commit(tm, conn, "bob", "edit a", live, out)
    root["g"] = g = OOBTree()
    g["b"] = live["g/b"] = ZBigArray((50, 300), ">i4", order="F", blksize=1 << 15, fmt="ZBlk1")
    live["g/b"].view()[:, 10:200] = np.arange(50 * 190, dtype=">i4").reshape(50, 190, order="F")
    _commit(tm, conn, "bob", "create g/b", live, out)
    live["g/b"].view()[:, 20:40] = 0  # whole chunks back to zeros: removed from the chunk table
    live["g/b"].view()[3, 150] = 7
    _commit(tm, conn, "carol", "zero a range of g/b", live, out)
    root["p"] = p = PersistentMapping()
    p["odd"] = live["p/odd"] = ZBigArray((10000,), np.int16, blksize=3 * 4096)  # not a power of two
    live["p/odd"].view()[5000:5010] = 3
    _commit(tm, conn, "carol", "odd block size", live, out)
    a.resize((1000,))
    _commit(tm, conn, "dave", "shrink a", live, out)
    del root["p"]
    del live["p/odd"]
    _commit(tm, conn, "dave", "delete p", live, out)
    conn.close()
    db.close()
    return out


def _base(path):
    """A database with one good array (a), for the crafted ones."""
    db = DB(FileStorage(path))
    tm = transaction.TransactionManager()
    conn = db.open(transaction_manager=tm)
    root = conn.root()
    root["a"] = a = ZBigArray((1000,), np.float64, blksize=1 << 16)
    a.view()[:] = 1.5
    a.store()
    tm.commit()
    oids = {"root": root._p_oid, "a": a._p_oid, "zfile": a.zfile._p_oid, "blk0": a.zfile.blktab[0]._p_oid}
    conn.close()
    db.close()
    return oids


def main():
    scenario, path = sys.argv[1], sys.argv[2]
    marker = sys.argv[3] if len(sys.argv) > 3 else None
    out = {}
    if scenario == "history":
        out = history(path)
    elif scenario == "big":  # one float64 array of MARKER MiB (for measurements), random data
        mib = int(marker or 64)
        db = DB(FileStorage(path), cache_size=1 << 22)  # the array (and its byte model) stay
        tm = transaction.TransactionManager()
        conn = db.open(transaction_manager=tm)
        root = conn.root()
        root["big"] = a = ZBigArray((0,), np.float64, fmt=os.environ.get("FMT", "ZBlk0"))
        tm.commit()
        rng = np.random.default_rng(0)
        step = 16 << 20  # 16 MiB per transaction, as wendelin's demo commits block by block
        for i in range(mib * (1 << 20) // step):
            n = a.nbytes
            a.resize((a._shape[0] + step // 8,))
            a.model[n:n + step] = rng.random(step // 8).tobytes()
            a.store()
            tm.commit()
            for z in a.zfile.blktab.values():
                z._p_deactivate()
        out = {"big": a.expected()}
        conn.close()
        db.close()
    elif scenario == "sparse":  # small blocks, most of them holes, rows across block boundaries
        db = DB(FileStorage(path))
        tm = transaction.TransactionManager()
        conn = db.open(transaction_manager=tm)
        root = conn.root()
        root["u8"] = a = ZBigArray((100000,), np.uint8, blksize=4096)
        a.view()[:10] = 1
        a.view()[50000:50010] = 2
        root["rows"] = b = ZBigArray((1000, 30), np.int16, blksize=8192, fmt="ZBlk1")
        b.view()[0] = 3
        b.view()[500, 29] = 4
        b.view()[999] = 5
        root["cols"] = c = ZBigArray((7, 20000), "<f4", order="F", blksize=4096)
        c.view()[:, 3] = 6
        c.view()[6, 19999] = 7
        for x in (a, b, c):
            x.store()
        tm.commit()
        out = {"u8": a.expected(), "rows": b.expected(), "cols": c.expected(),
               "blocks": {k: len(x.zfile.blktab) for k, x in (("u8", a), ("rows", b), ("cols", c))}}
        conn.close()
        db.close()
    elif scenario == "random":  # arrays of random shapes, orders and block sizes, sparse writes
        rng = np.random.default_rng(int(marker or 0))
        db = DB(FileStorage(path))
        tm = transaction.TransactionManager()
        conn = db.open(transaction_manager=tm)
        root = conn.root()
        out = {"blocks": {}}
        bs = 4096 * int(rng.choice([1, 2, 4]))  # one block size: the data file then holds no padding
        for i in range(12):
            nd = int(rng.integers(1, 4))
            shape = tuple(int(n) for n in rng.integers(1, 60, size=nd))
            shape = (shape[0] * int(rng.integers(1, 400)),) + shape[1:]
            dtype = [np.uint8, "<i2", ">f8", "V3", [("a", "<u2"), ("b", "u1")]][int(rng.integers(0, 5))]
            order = "CF"[int(rng.integers(0, 2))]
            x = ZBigArray(shape, dtype, order=order, blksize=bs, fmt=["ZBlk0", "ZBlk1"][i % 2])
            root[f"r{i}"] = x
            flat = np.frombuffer(x.model, np.uint8)
            for _ in range(int(rng.integers(0, 6))):
                lo = int(rng.integers(0, max(1, len(flat))))
                n = int(rng.integers(1, 3 * bs))
                x.model[lo:lo + n] = rng.integers(1, 255, size=len(flat[lo:lo + n]), dtype=np.uint8).tobytes()
            x.store()
            out[f"r{i}"] = x.expected()
            out["blocks"][f"r{i}"] = len(x.zfile.blktab)
        tm.commit()
        conn.close()
        db.close()
    elif scenario == "unknown":
        _base(path)
        db = DB(FileStorage(path))
        with db.transaction() as conn:
            conn.root()["z_thing"] = Thing()
        db.close()
    elif scenario == "unknown-block":  # a block of an array has a class the import does not know
        oids = _base(path)
        raw_store(path, {oids["blk0"]: record("mymod", "Thing", {"x": 1})})
    elif scenario == "missing":  # the root refers to an object that is not in the database
        oids = _base(path)
        raw_store(path, {oids["root"]: record("persistent.mapping", "PersistentMapping",
                                               {"data": {"a": ("ref", oids["a"]), "gone": ("ref", b"\0" * 7 + b"\x99")}})})
    elif scenario == "corrupt":  # a block record whose state is not a pickle
        oids = _base(path)
        raw_store(path, {oids["blk0"]: b"\x80\x03cwendelin.bigfile.file_zodb\nZBlk0\nq\x00.\x80\x03garbage"})
    elif scenario == "evil-state":  # the array's state calls os.system
        oids = _base(path)
        raw_store(path, {oids["a"]: record("wendelin.bigarray.array_zodb", "ZBigArray",
                                            ({"_dtype": Evil(marker), "_shape": (1000,), "_order": "C"},
                                             {"zfile": ("ref", oids["zfile"])}))})
    elif scenario == "evil-class":  # the class pickle of a block calls os.system
        oids = _base(path)
        f = io.BytesIO()
        zodbpickle.pickle.Pickler(f, 3).dump(Evil(marker))
        raw_store(path, {oids["blk0"]: f.getvalue() + zodbpickle.pickle.dumps(b"x", 3)})
    elif scenario == "evil-root":  # the root's state calls os.system
        oids = _base(path)
        raw_store(path, {oids["root"]: record("persistent.mapping", "PersistentMapping",
                                               {"data": {"a": ("ref", oids["a"]), "b": Evil(marker)}})})
    elif scenario == "evil-extension":  # a transaction extension calls os.system
        _base(path)
        st = FileStorage(path)
        t = TransactionMetaData("mallory", "evil extension", b"")
        t.extension_bytes = zodbpickle.pickle.dumps({"x": Evil(marker)}, 3)
        st.tpc_begin(t)
        st.tpc_vote(t)
        st.tpc_finish(t)
        st.close()
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
