"""A map of part of a given store (`--embeddings STORE --aoi AREA`): the window of the store's
cells under the AOI, on the store's lattice, with the same values as the whole store's map
there and nothing outside the AOI; an AOI beside the store is refused before any work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.features import geometry_mask
from rasterio.windows import from_bounds
from shapely.geometry import Polygon, mapping

EXE = Path(sys.executable).with_name("prom3e-geo")
ROOT = Path(__file__).resolve().parents[1]
TRIANGLE = Polygon([(-97.0, 34.2), (-91.3, 34.6), (-95.2, 38.4)])


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("window")
    done = cli(
        "embed", "--aoi", "-100,33,-88,39", "--resolution", "0.5", "--chunk", "4",
        "--context", "loc", "--out", "store.zarr", cwd=folder,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    aoi = folder / "triangle.geojson"
    aoi.write_text(json.dumps({"type": "Feature", "properties": {}, "geometry": mapping(TRIANGLE)}))
    return folder


def read(path: Path, window=None):
    with rasterio.open(path) as ds:
        return ds.read(1, window=window), ds.transform, ds.bounds


@pytest.mark.parametrize(
    "command",
    [
        ["sdm", "--query", str(ROOT / "examples" / "cardinal.jpg")],
        ["uncertainty", "--context", "loc"],
    ],
)
def test_a_window_of_the_store_equals_the_whole_map_there(store, command):
    whole = cli(
        *command, "--embeddings", "store.zarr", "--out", "whole.tif", "--overwrite", cwd=store
    )
    part = cli(
        *command, "--embeddings", "store.zarr", "--aoi", "triangle.geojson",
        "--out", "part.tif", "--overwrite", cwd=store,
    )  # fmt: skip
    assert whole.returncode == 0 and part.returncode == 0, whole.stderr + part.stderr
    values, transform, bounds = read(store / "part.tif")
    with rasterio.open(store / "whole.tif") as ds:
        window = from_bounds(*bounds, transform=ds.transform)
        assert window.col_off == round(window.col_off) and window.row_off == round(window.row_off)
        expected = ds.read(1, window=window.round_offsets().round_lengths())
        whole_transform = ds.transform
    assert transform.a == whole_transform.a and transform.e == whole_transform.e
    # independently: the cells whose centres fall inside the triangle
    inside = geometry_mask([TRIANGLE], out_shape=values.shape, transform=transform, invert=True)
    assert inside.any() and (~inside).any()
    assert np.array_equal(values[inside], expected[inside])
    assert np.isnan(values[~inside]).all()
    assert np.isfinite(values[inside]).all()
    # the window is the smallest holding those cells
    assert inside.any(axis=1)[[0, -1]].all() and inside.any(axis=0)[[0, -1]].all()


def test_an_aoi_beside_the_store_is_refused_before_any_work(store):
    done = cli(
        "uncertainty", "--context", "loc", "--embeddings", "store.zarr",
        "--aoi", "-80,40,-75,44", "--out", "beside.tif", cwd=store,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "holds no cell of the store's grid" in done.stderr
    assert not (store / "beside.tif").exists()


def test_other_grid_options_are_still_refused_with_a_store(store):
    done = cli(
        "uncertainty", "--context", "loc", "--embeddings", "store.zarr", "--aoi", "triangle.geojson",
        "--resolution", "1", "--out", "x.tif", cwd=store,
    )  # fmt: skip
    assert done.returncode == 2 and "--resolution" in done.stderr
