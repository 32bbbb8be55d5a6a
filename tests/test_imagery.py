"""Patch sources: the local-raster source cuts correctly centred, georeferenced patches."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer

from prom3e_geo.errors import InputError
from prom3e_geo.imagery import open_source
from prom3e_geo.imagery.local import utm_crs

ORIGIN = (-200_000.0, 1_900_000.0)  # EPSG:5070, over Kansas/Oklahoma
PIXEL = 30.0


@pytest.fixture(scope="module")
def coordinate_raster(tmp_path_factory):
    """Band 1 = easting / 1e6, band 2 = northing / 1e6 (EPSG:5070), band 3 = 0.1: any shift or
    flip of a patch shows up in its values."""
    path = tmp_path_factory.mktemp("local") / "mosaic.tif"
    h, w = 400, 400
    transform = Affine(PIXEL, 0, ORIGIN[0], 0, -PIXEL, ORIGIN[1])
    cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    x, y = transform * (cols, rows)
    data = np.stack([x / 1e6, y / 1e6, np.full_like(x, 0.1)]).astype("float32")
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=w,
        height=h,
        count=3,
        dtype="float32",
        crs="EPSG:5070",
        transform=transform,
        nodata=np.nan,
    ) as ds:
        ds.write(data)
    return path


def test_local_patches_are_centred_on_their_cells_in_utm(coordinate_raster):
    source = open_source(f"local:{coordinate_raster}", size=32, resolution=10.0)
    to_lonlat = Transformer.from_crs(5070, 4326, always_xy=True)
    lon, lat = to_lonlat.transform(
        [ORIGIN[0] + 6000, ORIGIN[0] + 4000], [ORIGIN[1] - 6000, ORIGIN[1] - 3000]
    )
    batch = source.fetch(np.array(lon), np.array(lat))
    assert batch.patches.shape == (2, 32, 32, 3) and batch.valid.all()
    for i in range(2):
        centre = batch.patches[i, 15:17, 15:17].mean(axis=(0, 1))  # the 4 pixels around the centre
        x, y = Transformer.from_crs(4326, 5070, always_xy=True).transform(lon[i], lat[i])
        assert centre[0] * 1e6 == pytest.approx(x, abs=15) and centre[1] * 1e6 == pytest.approx(
            y, abs=15
        )
        assert np.all(np.diff(batch.patches[i, 16, :, 0]) > 0)  # east is to the right
        assert np.all(np.diff(batch.patches[i, :, 16, 1]) < 0)  # north is up
    assert batch.meta[0]["scene"] == "mosaic.tif"


def test_cells_outside_or_at_the_edge_are_invalid(coordinate_raster):
    source = open_source(f"local:{coordinate_raster}", size=32, resolution=10.0)
    to_lonlat = Transformer.from_crs(5070, 4326, always_xy=True)
    lon, lat = to_lonlat.transform(
        [ORIGIN[0] + 1, ORIGIN[0] + 6000], [ORIGIN[1] - 1, ORIGIN[1] - 6000]
    )
    batch = source.fetch(np.array([lon[0], lon[1], -80.0]), np.array([lat[0], lat[1], 45.0]))
    assert batch.valid.tolist() == [False, True, False]
    assert (
        batch.meta[0]["error"] == "mostly nodata"
        and batch.meta[2]["error"] == "outside every raster"
    )


def test_uint16_digital_numbers_become_reflectance(tmp_path):
    path = tmp_path / "dn.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=64,
        height=64,
        count=3,
        dtype="uint16",
        crs="EPSG:32614",
        transform=Affine(10, 0, 500_000, 0, -10, 4_000_000),
    ) as ds:
        ds.write(np.full((3, 64, 64), 1500, dtype="uint16"))
    lon, lat = Transformer.from_crs(32614, 4326, always_xy=True).transform(500_320, 3_999_680)
    patch = (
        open_source(f"local:{path}", size=16, resolution=10.0)
        .fetch(np.array([lon]), np.array([lat]))
        .patches[0]
    )
    np.testing.assert_allclose(patch, 0.15, atol=1e-5)
    with_offset = open_source(f"local:{path}", size=16, resolution=10.0, boa_offset=1000).fetch(
        np.array([lon]), np.array([lat])
    )
    np.testing.assert_allclose(with_offset.patches[0], 0.05, atol=1e-5)


def test_utm_zones_and_bad_paths(tmp_path):
    assert utm_crs(-99.0, 38.0).to_epsg() == 32614 and utm_crs(-122.4, 37.8).to_epsg() == 32610
    with pytest.raises(InputError, match="does not exist"):
        open_source(f"local:{tmp_path / 'none'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no GeoTIFF"):
        open_source(f"local:{tmp_path / 'empty'}")
    with pytest.raises(InputError, match="unknown imagery source"):
        open_source("planet")
