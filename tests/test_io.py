"""Writers read back with the tools users use: rasterio (COG), xarray/rioxarray and GDAL (Zarr)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import xarray as xr

from prom3e_geo.errors import InputError
from prom3e_geo.grid import build_grid
from prom3e_geo.io.geotiff import write_cog
from prom3e_geo.io.outputs import atomic_output, check_output
from prom3e_geo.io.png import Panel, write_quicklook
from prom3e_geo.io.zarr import layer_dataset, write_zarr
from tests.helpers import assert_png_shows_a_picture


def _index_band(grid):
    """Value = 1000 * row + col: any shift of the grid shows up as a different value."""
    rows, cols = np.indices(grid.shape)
    return (1000.0 * rows + cols).astype(np.float32)


@pytest.fixture(scope="module", params=["EPSG:4326", "EPSG:5070"])
def grid(request):
    if request.param == "EPSG:4326":
        return build_grid(shape="250x500")  # the paper grid: wide enough for overviews
    return build_grid(crs="EPSG:5070", resolution=10000)


def test_cog_layout_bands_nodata_and_tags(tmp_path, grid):
    path = tmp_path / "layer.tif"
    band = _index_band(grid)
    write_cog(
        path,
        {"alpha": band, "beta": band * 2},
        grid,
        {"software": "test"},
        {"alpha": {"units": "u"}},
    )
    with rasterio.open(path) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert ds.profile["tiled"] and ds.dtypes == ("float32", "float32")
        assert ds.overviews(1), "internal overviews"
        assert ds.descriptions == ("alpha", "beta")
        assert ds.tags()["software"] == "test" and ds.tags(1)["units"] == "u"
        assert ds.crs == grid.crs and ds.transform.almost_equals(grid.transform)
        assert np.isnan(ds.nodata)
        data = ds.read(1, masked=True)
    np.testing.assert_array_equal(data.mask, ~grid.mask)
    np.testing.assert_array_equal(data.data[grid.mask], band[grid.mask])


def test_half_pixel_round_trip_through_geotiff_and_zarr(tmp_path, grid):
    band = _index_band(grid)
    write_cog(tmp_path / "a.tif", {"v": band}, grid)
    write_zarr(tmp_path / "a.zarr", layer_dataset({"v": band}, grid))
    row, col = np.argwhere(grid.mask)[len(np.argwhere(grid.mask)) // 2]
    x, y = grid.x[col], grid.y[row]
    with rasterio.open(tmp_path / "a.tif") as ds:
        assert ds.xy(row, col) == pytest.approx((x, y))  # rasterio: centre of the pixel
        assert ds.index(x, y) == (row, col)
        assert ds.read(1)[row, col] == 1000 * row + col
    zarr = xr.open_zarr(tmp_path / "a.zarr", decode_coords="all")
    np.testing.assert_allclose(zarr.x.values, grid.x)
    np.testing.assert_allclose(zarr.y.values, grid.y)
    assert float(zarr.v.sel(x=x, y=y).values) == 1000 * row + col
    assert zarr.rio.transform().almost_equals(grid.transform)


def test_zarr_v2_opens_in_xarray_and_gdal_with_crs(tmp_path, grid):
    band = _index_band(grid)
    ds = layer_dataset(
        {"v": band}, grid, attrs={"software": "test"}, var_attrs={"v": {"long_name": "V"}}
    )
    write_zarr(tmp_path / "a.zarr", ds)
    assert (tmp_path / "a.zarr" / ".zmetadata").exists()  # consolidated v2
    back = xr.open_zarr(tmp_path / "a.zarr", decode_coords="all")
    assert back.rio.crs == grid.crs
    assert back.attrs["software"] == "test" and back.v.attrs["long_name"] == "V"
    np.testing.assert_array_equal(np.isnan(back.v.values), ~grid.mask)
    with rasterio.open(f'ZARR:"{tmp_path / "a.zarr"}":/v') as gdal:
        assert gdal.crs == grid.crs
        assert gdal.transform.almost_equals(grid.transform)
        assert gdal.read(1)[grid.mask].tolist() == band[grid.mask].tolist()


def test_zarr_v3_opens_in_xarray_with_crs(tmp_path):
    grid = build_grid(aoi="-100,38,-98,39", shape="10x20")
    write_zarr(tmp_path / "a.zarr", layer_dataset({"v": _index_band(grid)}, grid), zarr_format=3)
    assert (tmp_path / "a.zarr" / "zarr.json").exists()
    back = xr.open_zarr(tmp_path / "a.zarr", decode_coords="all", consolidated=False)
    assert back.rio.crs == grid.crs
    np.testing.assert_array_equal(back.v.values, _index_band(grid))


def test_png_quicklook(tmp_path):
    grid = build_grid(aoi="-100,38,-98,39", shape="10x20")
    path = write_quicklook(tmp_path / "q.png", [Panel(_index_band(grid), "t", "u")], grid)
    assert_png_shows_a_picture(path)


def test_atomic_output_leaves_nothing_behind_on_failure(tmp_path):
    target = tmp_path / "out.tif"
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_existing_outputs_are_refused_or_replaced_safely(tmp_path):
    target = tmp_path / "out.tif"
    target.write_text("precious")
    with pytest.raises(InputError, match="already exists"):
        check_output(target)
    with atomic_output(target, overwrite=True) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]
    folder = tmp_path / "notes.zarr"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep")
    with pytest.raises(InputError, match="not a Zarr store"):
        check_output(folder, overwrite=True)
    with pytest.raises(InputError, match="does not exist"):
        check_output(tmp_path / "missing" / "x.tif")


def test_the_quicklook_outlines_the_grids_aoi_not_conus(tmp_path):
    """Regression: every PNG drew the CONUS outline, whatever the AOI."""
    import json

    import shapely

    from prom3e_geo.io.png import aoi_outline

    triangle = shapely.Polygon([(-100, 35), (-96, 35), (-98, 38)])
    path = tmp_path / "triangle.geojson"
    path.write_text(json.dumps({"type": "Feature", "properties": {},
                                "geometry": shapely.geometry.mapping(triangle)}))  # fmt: skip
    grid = build_grid(aoi=str(path), resolution="0.05")
    lines = aoi_outline(grid)
    assert len(lines) == 1 and len(lines[0]) > 20
    distance = shapely.distance(triangle.exterior, shapely.points(lines[0]))
    assert distance.max() < 0.05 * 1.5  # within a cell and a half of the triangle's edges
    box = build_grid(aoi="-100,38,-98,39", shape="10x20")  # the AOI fills the grid: no line
    assert aoi_outline(box) == []
    assert_png_shows_a_picture(
        write_quicklook(tmp_path / "t.png", [Panel(grid.mask * 1.0, "t")], grid)
    )


def test_a_style_sidecar_fits_its_ramp_to_the_2nd_98th_percentiles(tmp_path):
    """QGIS loads NAME.qml beside NAME.tif; its ramp must cover the spread the file has (a
    fixed 0-1 ramp left sigma_l1, 137-143, in one colour)."""
    import xml.etree.ElementTree as ET

    from prom3e_geo.io.qml import write_style

    values = np.linspace(137.5, 143.2, 1000).reshape(20, 50).astype(np.float32)
    values[0, :5] = np.nan
    path = write_style(tmp_path / "sigma.tif", values, "magma", "sigma_l1")
    assert path == tmp_path / "sigma.qml"
    shader = ET.parse(path).getroot().find(".//colorrampshader")
    lo, hi = np.nanpercentile(values, [2, 98])
    assert float(shader.get("minimumValue")) == pytest.approx(lo, rel=1e-5)
    assert float(shader.get("maximumValue")) == pytest.approx(hi, rel=1e-5)
    stops = [float(item.get("value")) for item in shader.findall("item")]
    assert stops[0] == pytest.approx(lo, rel=1e-5) and stops[-1] == pytest.approx(hi, rel=1e-5)
    assert stops == sorted(stops) and len({item.get("color") for item in shader}) == len(stops)


def test_a_style_label_reads_back_as_written(tmp_path):
    """A label with XML's special characters (a file name or query can hold any) is escaped:
    the sidecar parses and the label reads back unchanged."""
    import xml.etree.ElementTree as ET

    from prom3e_geo.io.qml import write_style

    label = 'sdm: "Quercus" & <oaks>\tnear\nQ\'s range\r'
    path = write_style(tmp_path / "s.tif", np.arange(20.0).reshape(4, 5), "viridis", label)
    assert ET.parse(path).getroot().find(".//colorrampshader").get("label") == label


@pytest.mark.parametrize("cmap", ["magma", "viridis", "inferno", "YlGn", "cividis"])
def test_style_colours_are_matplotlibs(cmap):
    """The ramps the maps use are tabled (no matplotlib import to write a style); every ramp,
    tabled or not, has matplotlib's colours at the style's stops."""
    import matplotlib

    from prom3e_geo.io.qml import STOPS, ramp_colours

    ramp = matplotlib.colormaps[cmap]
    expected = tuple(matplotlib.colors.to_hex(ramp(k / (STOPS - 1))) for k in range(STOPS))
    assert ramp_colours(cmap) == expected
