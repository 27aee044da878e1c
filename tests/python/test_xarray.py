"""The xarray backend: `engine="outcore"` for `open_dataset` and `open_datatree`, lazily, with
`_ARRAY_DIMENSIONS`; `to_outcore` writes Datasets and DataTrees back (issue 16)."""

import numpy as np
import pytest

import outcore

xr = pytest.importorskip("xarray")
from outcore.xarray_backend import to_outcore  # noqa: E402


def _make(path):
    with outcore.open(path) as db:
        with db.transaction() as conn:
            root = conn.root
            root.create("t", data=np.arange(4.0), attrs={"_ARRAY_DIMENSIONS": ["t"], "units": "s"})
            root.create("x", data=np.arange(3) * 10, attrs={"_ARRAY_DIMENSIONS": ["x"]})
            root.create(
                "temp",
                data=np.arange(12.0).reshape(4, 3),
                attrs={"_ARRAY_DIMENSIONS": ["t", "x"], "units": "K", "long_name": "temperature"},
            )
            root.create("plain", data=np.ones((2, 2), "i4"))
            root.create("ocean/sst", data=np.full((4, 3), 280.0), attrs={"_ARRAY_DIMENSIONS": ["t", "x"]})
            root.create("ocean/deep/p", data=np.arange(4.0), attrs={"_ARRAY_DIMENSIONS": ["t"]})


def test_open_dataset_is_lazy_and_named(tmp_path):
    path = tmp_path / "climate.outcore"
    _make(path)
    ds = xr.open_dataset(path, engine="outcore")
    assert set(ds.data_vars) == {"temp", "plain"} and set(ds.coords) == {"t", "x"}
    assert ds["temp"].dims == ("t", "x") and ds["temp"].attrs == {"units": "K", "long_name": "temperature"}
    assert ds["plain"].dims == ("plain_dim_0", "plain_dim_1")
    assert ds["t"].attrs["units"] == "s"
    # lazy: the variable is not loaded until indexed or computed
    assert not ds["temp"].variable._in_memory
    assert float(ds["temp"].sel(t=2.0, x=10)) == 7.0
    np.testing.assert_array_equal(ds["temp"].isel(x=slice(1, None)).values, np.arange(12.0).reshape(4, 3)[:, 1:])
    assert float(ds["temp"].mean()) == 5.5
    ds.close()
    # the engine is also found from the path's suffix, and chunks={} gives dask arrays
    pytest.importorskip("dask")
    ds2 = xr.open_dataset(path, chunks={})
    assert ds2["temp"].chunks is not None and float(ds2["temp"].sum().compute()) == 66.0
    sub = xr.open_dataset(path, engine="outcore", group="ocean", drop_variables=["nothing"])
    assert list(sub.data_vars) == ["sst"] and float(sub["sst"][0, 0]) == 280.0


def test_open_datatree(tmp_path):
    path = tmp_path / "tree.outcore"
    _make(path)
    tree = xr.open_datatree(path, engine="outcore")
    assert set(tree.children) == {"ocean"}
    assert set(tree["ocean"].children) == {"deep"}
    assert float(tree["ocean/deep/p"][3]) == 3.0
    assert "temp" in tree.to_dataset()


def test_views_are_read_only_by_default(tmp_path):
    path = tmp_path / "ro.outcore"
    _make(path)
    ds = xr.open_dataset(path, engine="outcore")
    values = ds["temp"].values  # a zero-copy view of the read-only database
    assert not values.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        values[0, 0] = 1


def test_to_outcore_round_trips(tmp_path):
    ds = xr.Dataset(
        {"v": (("a", "b"), np.random.default_rng(1).random((5, 2)), {"units": "m"})},
        coords={"a": np.arange(5), "b": ["p", "q"]},
    )
    path = tmp_path / "w.outcore"
    to_outcore(ds, path)
    back = xr.open_dataset(path, engine="outcore").load()
    xr.testing.assert_identical(back, ds)
    with pytest.warns(UserWarning, match="not stored"):
        to_outcore(ds.assign_attrs(title="x"), path, group="copy")
    xr.testing.assert_identical(xr.open_dataset(path, engine="outcore", group="copy").load(), ds)
    tree = xr.DataTree.from_dict({"/": ds, "/sub": ds})
    to_outcore(tree, tmp_path / "t.outcore")
    xr.testing.assert_identical(xr.open_datatree(tmp_path / "t.outcore", engine="outcore").load(), tree)


def test_fill_values_are_the_cf_fill(tmp_path):
    path = tmp_path / "fill.outcore"
    with outcore.open(path) as db:
        with db.transaction() as conn:
            conn.root.create("sst", (3,), "f8", fill_value=np.nan, attrs={"_ARRAY_DIMENSIONS": ["x"]})
            conn.root["sst"][1] = 280.0
            conn.root.create("rec", (2,), np.dtype([("a", "u1"), ("b", "<i2")]), fill_value=(1, 2))
    ds = xr.open_dataset(path, engine="outcore", mask_and_scale=False)
    assert np.isnan(ds["sst"].encoding["_FillValue"]) and "_FillValue" not in ds["rec"].encoding
    np.testing.assert_array_equal(ds["sst"].values, [np.nan, 280.0, np.nan])
    assert ds["rec"].values["b"].tolist() == [2, 2]
    ds.close()
