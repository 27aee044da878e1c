"""outcore in the first hour, for users of h5py, zarr, xarray and numpy.memmap.

Run it: `python docs/examples/first_hour.py [DIRECTORY]` (a temporary directory by default).
`tests/python/test_docs_example.py` runs it, so every line here works.
"""

import pathlib
import sys
import tempfile

import numpy as np
import transaction

import outcore


def main(where: pathlib.Path) -> None:
    path = where / "climate.outcore"  # a pathlib.Path (or a str, "~" expanded)

    # 1. Create (mode "w": created, or emptied), in one transaction.
    with outcore.open(path, mode="w", cache="256MiB") as db:
        with db.transaction(note="first data") as conn:  # commits at the end of the block
            root = conn.root  # a MutableMapping of arrays and groups
            t = root.create("t", data=np.arange(365.0), attrs={"_ARRAY_DIMENSIONS": ["t"], "units": "days"})
            root.create("x", data=np.linspace(0, 1, 100), attrs={"_ARRAY_DIMENSIONS": ["x"]})
            temp = root.create("temp", (365, 100), "f4")  # zeros, costing nothing until written
            temp.attrs.update(_ARRAY_DIMENSIONS=["t", "x"], units="K")  # JSON-able, versioned
            temp[:] = 280 + 10 * np.sin(t[:, None] / 58)  # temp[...] are real ndarray views
            root.create("ocean/sst", data=np.full((365, 100), 290.0, "f4"), attrs={"_ARRAY_DIMENSIONS": ["t", "x"]})
            # A fill value is metadata: a billion NaNs stored as nothing until written.
            rain = root.create("ocean/rain", (10**9,), "f4", fill_value=np.nan)
            rain[:3] = 0.0

    # 2. Read-only: views refuse writes, commits raise outcore.ReadOnlyError.
    with outcore.open(path, mode="r") as db:
        conn = db.connect()
        temp = conn.root["temp"]
        print(temp)  # <outcore.Array 'temp' shape=(365, 100) dtype=float32 ...>
        print(temp.attrs["units"], temp.chunks, len(temp))
        print(conn.root["ocean"]["sst"].shape, sorted(conn.root), conn.root.group("ocean").array_keys())
        rain = conn.root["ocean/rain"]
        print("rain:", rain.fill_value, rain[:5], np.isnan(rain[10**9 - 10 :]).all())
        view = temp[10:20]
        try:
            view[0, 0] = 0
        except ValueError as e:
            print("read-only view:", e)  # assignment destination is read-only
        try:
            temp.attrs["units"] = "C"
        except outcore.ReadOnlyError as e:
            print("read-only database:", e)
        conn.root.visit(print)  # every array and group: ocean, ocean/sst, t, temp, x

    # 3. Read-write with the `transaction` package (ZODB's convention): commit or abort.
    db = outcore.open(path)  # mode "a": read-write, created if missing
    conn = db.connect()
    temp = conn.root["temp"]
    temp.attrs["history"] = "calibrated"
    temp[0] += 0.5
    transaction.commit()
    print("history:", [h["description"] for h in db.history()])

    # 4. xarray: lazily, dimensions from _ARRAY_DIMENSIONS.
    try:
        import xarray as xr
    except ImportError:
        xr = None
    if xr is not None:
        ds = xr.open_dataset(path, engine="outcore")
        print(ds["temp"].sel(t=100.0).mean().item(), ds["temp"].attrs)
        tree = xr.open_datatree(path, engine="outcore")
        print(list(tree.children))  # ['ocean']
        ds.close()

    # 5. dask: workers in other processes each commit through their own connection.
    try:
        import dask.array as da
    except ImportError:
        da = None
    if da is not None:
        out = conn.root.create("anomaly", temp.shape, temp.dtype, attrs={"_ARRAY_DIMENSIONS": ["t", "x"]})
        transaction.commit()  # the workers open the array by reference: it must be committed
        x = da.from_array(temp, chunks=(73, 100))
        anomaly = x - x.mean(axis=0)
        da.store(anomaly, out, scheduler="processes", num_workers=2, lock=False)
        conn.sync()  # move to the snapshot the workers committed
        assert np.allclose(out[:], temp[:] - temp[:].mean(axis=0), atol=1e-4)
        print("anomaly stored by worker processes:", float(np.abs(out[:]).max()))
    db.close()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(pathlib.Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as d:
            main(pathlib.Path(d))
