"""Regression (issue 18, step 3): a corrupt block reached through `A.load()` is the store's
error, `outcore.CorruptError` naming the block, never a `PagerError` whose cause became text;
here for the page-cache engine, whose mapped reads the store cannot verify (a flipped byte in
the data file). The userfaultfd engine's case is in test_array.py."""

import sqlite3

import numpy as np
import pytest

import outcore

BLK = 64 << 10


def test_a_flipped_byte_in_the_data_file_raises_corrupt_error_on_load(sqlite_url):
    conn = outcore.open(sqlite_url).connect(transaction_manager=False)
    A = conn.root.create("x", 3 * BLK // 8, "f8", blksize=BLK)
    A[:] = np.arange(3 * BLK // 8, dtype="f8")
    conn.commit()
    with sqlite3.connect(sqlite_url) as c:
        (off,) = c.execute("SELECT ext_off FROM outcore_current WHERE blk = 1").fetchone()
    with open(sqlite_url + ".blocks", "r+b") as f:
        f.seek(off + 100)
        b = f.read(1)
        f.seek(off + 100)
        f.write(bytes([b[0] ^ 1]))
    B = outcore.open(sqlite_url).connect(transaction_manager=False).root["x"]
    assert B.engine == "page cache"
    B.load(np.s_[: BLK // 8])  # block 0 is intact
    with pytest.raises(outcore.CorruptError, match="block 1"):
        B.load()
