"""The stored dtype description is versioned: arrays created now store a structured dtype as a
JSON object (format 2, `"version": 2`); arrays written before store the repr of `dtype.descr`
(format 1) and must keep opening and reading right. Plain dtypes are their type string in both."""

import json

import numpy as np
import pytest

import outcore
from outcore import _outcore
from outcore._dtype import from_descr

STRUCTURED = [
    np.dtype([("x", "<f4"), ("y", "<i8", (3,)), ("s", [("a", "u1"), ("b", "<f8")])]),
    np.dtype({"names": ["a", "b"], "formats": ["u1", "<f8"], "offsets": [0, 8], "itemsize": 24}),
    np.dtype([("a", "u1"), ("b", "<i4")], align=True),
    np.dtype({"names": ["x"], "formats": ["<f8"], "titles": ["the x"]}),
    np.dtype([("m", "<f4", (2, 3)), ("t", "<M8[ns]"), ("u", "<U3")]),
]


def _stored(path, name):
    r = _outcore.open_array_reader(path, name)
    try:
        return r.dtype
    finally:
        r.close()


def _sample(dt, n=4):
    """Distinct bytes in every field, zeros in the padding (structured assignment copies fields
    only)."""
    raw = np.zeros(n, dt)
    raw.view(np.uint8)[:] = np.arange(raw.nbytes, dtype=np.uint64).astype(np.uint8)
    ref = np.zeros(n, dt)
    ref[...] = raw
    return ref


@pytest.mark.parametrize("dt", STRUCTURED, ids=range(len(STRUCTURED)))
def test_structured_dtypes_are_stored_as_versioned_json(sqlite_url, dt):
    conn = outcore.open(sqlite_url).connect(transaction_manager=False)
    A = conn.root.create("S", 4, dt)
    ref = _sample(dt)
    A[:] = ref
    conn.commit()
    text = _stored(sqlite_url, "S")
    stored = json.loads(text)
    assert stored["version"] == 2 and stored["itemsize"] == dt.itemsize
    assert [f["name"] for f in stored["fields"]] == list(dt.names)
    assert from_descr(text) == dt
    B = outcore.open(sqlite_url).connect(transaction_manager=False).root["S"]
    assert B.dtype == dt and B[:].tobytes() == ref.tobytes()


def test_plain_dtypes_stay_type_strings(sqlite_url):
    conn = outcore.open(sqlite_url).connect(transaction_manager=False)
    conn.root.create("F", 3, ">f8")
    conn.commit()
    assert _stored(sqlite_url, "F") == ">f8"


@pytest.mark.parametrize("dt", STRUCTURED, ids=range(len(STRUCTURED)))
def test_format_1_descriptions_still_open_and_read(tmp_path, sqlite_url, dt):
    # The `outcore import` command stores a .npy file's descr as it is: the format-1 text.
    ref = _sample(dt, 5)
    np.save(tmp_path / "in.npy", ref)
    outcore.open(sqlite_url).close()
    assert _outcore.cli_main(["outcore", "import", "--quiet", sqlite_url, "old", str(tmp_path / "in.npy")]) == 0
    text = _stored(sqlite_url, "old")
    assert text.startswith("[(") and "version" not in text  # format 1: the repr of dtype.descr
    assert from_descr(text) == dt
    conn = outcore.open(sqlite_url).connect(transaction_manager=False)
    A = conn.root["old"]
    assert A.dtype == dt and A[:].tobytes() == ref.tobytes()
    A[1] = ref[4]
    conn.commit()
    assert _stored(sqlite_url, "old") == text  # an array keeps its description
    B = outcore.open(sqlite_url).connect(transaction_manager=False).root["old"]
    assert B[1].tobytes() == ref[4].tobytes()


@pytest.mark.parametrize("dt", STRUCTURED[:3], ids=range(3))
def test_npy_export_of_format_2_dtypes(tmp_path, sqlite_url, dt):
    conn = outcore.open(sqlite_url).connect(transaction_manager=False)
    ref = _sample(dt)
    conn.root.create("S", 4, dt)[:] = ref
    conn.commit()
    out = tmp_path / "out.npy"
    assert _outcore.cli_main(["outcore", "export", "--quiet", sqlite_url, "S", str(out)]) == 0
    back = np.load(out)
    assert back.dtype == dt and back.tobytes() == ref.tobytes()


def test_newer_formats_are_refused():
    newer = json.dumps({"version": 3, "itemsize": 8, "fields": []})
    with pytest.raises(outcore.DtypeError, match="format 3 is newer"):
        from_descr(newer)
