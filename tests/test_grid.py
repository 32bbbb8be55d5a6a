"""Grid construction, cell geometry, masks and AOI handling."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pyproj
import pytest
import shapely

from prom3e_geo.errors import InputError
from prom3e_geo.grid import WGS84, build_grid, conus_boundary, load_aoi


@pytest.fixture(scope="module")
def paper_grid():
    return build_grid()


def test_paper_grid_is_250_by_500_over_conus_bounds(paper_grid):
    g = paper_grid
    assert g.shape == (250, 500)
    assert g.crs == WGS84
    minx, miny, maxx, maxy = conus_boundary().bounds
    np.testing.assert_allclose(g.bounds, (minx, miny, maxx, maxy), atol=1e-9)
    assert g.res == pytest.approx(((maxx - minx) / 500, (maxy - miny) / 250))


def test_cell_centres_are_half_a_cell_from_the_corner(paper_grid):
    g = paper_grid
    rx, ry = g.res
    minx, _, _, maxy = g.bounds
    assert g.x[0] == pytest.approx(minx + rx / 2)
    assert g.y[0] == pytest.approx(maxy - ry / 2)
    assert g.x[-1] == pytest.approx(minx + (g.width - 0.5) * rx)
    assert np.all(np.diff(g.y) < 0)
    x, y = g.centres()
    np.testing.assert_array_equal(
        g.cell_index(x, y).reshape(g.shape), np.arange(g.mask.size).reshape(g.shape)
    )


def test_points_on_cell_edges_and_outside(paper_grid):
    g = paper_grid
    minx, miny, maxx, maxy = g.bounds
    idx = g.cell_index(
        np.array([minx, maxx + 1e-9, minx - 1e-9]), np.array([maxy - 1e-12, miny, maxy])
    )
    assert idx.tolist() == [0, -1, -1]


@pytest.mark.parametrize(
    ("place", "lon", "lat", "inside"),
    [
        ("Kansas City", -94.58, 39.10, True),
        ("San Diego", -117.16, 32.72, True),
        ("Toronto", -79.38, 43.65, False),
        ("Tijuana", -117.02, 32.50, False),
        ("Gulf of Mexico", -90.0, 26.0, False),
        ("Lake Michigan", -87.0, 43.5, False),
    ],
)
def test_mask_spot_checks(place, lon, lat, inside):
    g = build_grid(resolution=0.05)
    i = g.cell_index_lonlat(np.array([lon]), np.array([lat]))[0]
    assert (i >= 0 and bool(g.mask.ravel()[i])) is inside, place


def test_equal_area_grid_snaps_to_resolution_and_matches_geodesic_area():
    g = build_grid(crs="EPSG:5070", resolution=5000)
    assert g.crs.to_epsg() == 5070
    assert g.res == (5000, 5000)
    assert all(v % 5000 == 0 for v in g.bounds)
    # Geodesic area on the ellipsoid, independent of any projection. Edges are densified in
    # lon/lat first: Geod joins vertices by great circles, which would bow the 49th parallel north.
    dense = shapely.segmentize(conus_boundary(), 0.01)
    geod_km2 = abs(pyproj.Geod(ellps="WGS84").geometry_area_perimeter(dense)[0]) / 1e6
    assert g.n_inside * 25.0 == pytest.approx(geod_km2, rel=0.002)


def test_edges_are_densified_before_reprojection():
    # The 49th parallel is a straight line in lon/lat and an arc in Albers; a chord would bulge
    # north by about a degree over Montana. A point at 49.5N must stay outside.
    g = build_grid(crs="EPSG:5070", resolution=5000)
    x, y = pyproj.Transformer.from_crs(4326, 5070, always_xy=True).transform(
        [-109.0, -109.0], [49.5, 48.8]
    )
    idx = g.cell_index(np.array(x), np.array(y))
    assert g.mask.ravel()[idx].tolist() == [False, True]


def test_lonlat_of_projected_grid_round_trips(small_grid):
    g = build_grid(aoi="-100,38,-98,39", crs="EPSG:5070", resolution=10000)
    lon, lat = g.lonlat()
    x, y = pyproj.Transformer.from_crs(4326, 5070, always_xy=True).transform(lon, lat)
    xx, yy = g.centres()
    np.testing.assert_allclose(x, xx, atol=1e-4)
    np.testing.assert_allclose(y, yy, atol=1e-4)


def test_bbox_aoi_masks_every_cell(small_grid):
    assert small_grid.shape == (10, 20)
    assert small_grid.mask.all()
    assert small_grid.res == pytest.approx((0.1, 0.1))


def test_chunks_tile_the_grid_exactly_once():
    g = build_grid(aoi="-100,38,-98,39", shape="10x20")
    g = type(g)(g.crs, g.transform, g.shape, g.mask, g.aoi_name, chunk_shape=(4, 7))
    seen = np.zeros(g.shape, int)
    for chunk in g.chunks():
        seen[chunk.rows, chunk.cols] += 1
    assert (seen == 1).all()
    assert [c.index for c in g.chunks()] == list(range(9))


def test_aoi_file_in_another_crs(tmp_path):
    import geopandas as gpd

    poly = shapely.box(-100, 38, -98, 39)
    path = tmp_path / "aoi.gpkg"
    gpd.GeoDataFrame(geometry=[poly], crs=4326).to_crs(3857).to_file(path)
    g = build_grid(aoi=str(path), shape="10x20")
    assert g.aoi_name == "aoi"
    np.testing.assert_allclose(g.bounds, (-100, 38, -98, 39), atol=1e-6)


def test_geojson_aoi_without_crs_member(tmp_path):
    path = tmp_path / "area.geojson"
    path.write_text(
        json.dumps(
            {"type": "Polygon", "coordinates": [[[-100, 38], [-98, 38], [-98, 39], [-100, 38]]]}
        )
    )
    g = build_grid(aoi=str(path), shape="10x20")
    assert 0 < g.n_inside < 200  # a triangle: about half the cells


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"aoi": "-100,38,-98"}, "does not exist"),
        ({"aoi": "-200,38,-98,39"}, "out of range"),
        ({"aoi": "-98,38,-100,39"}, "empty"),
        ({"aoi": "a,b,c,d"}, "not four numbers"),
        ({"shape": "abc"}, "ROWSxCOLS"),
        ({"shape": "0x5"}, "positive"),
        ({"resolution": "-1"}, "positive"),
        ({"shape": "10x10", "resolution": "0.1"}, "not both"),
        ({"crs": "EPSG:99999999"}, "unknown CRS"),
        ({"shape": "100000x100000"}, "too large"),
    ],
)
def test_bad_grid_specs_raise_input_errors(kwargs, message):
    with pytest.raises(InputError, match=message):
        build_grid(**kwargs)


def test_aoi_file_problems(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_aoi(str(tmp_path / "missing.geojson"))
    garbage = tmp_path / "garbage.geojson"
    garbage.write_bytes(b"\x00\x01 not json")
    with pytest.raises(InputError, match="cannot be read"):
        load_aoi(str(garbage))
    points = tmp_path / "points.geojson"
    points.write_text(json.dumps({"type": "Point", "coordinates": [-100, 38]}))
    with pytest.raises(InputError, match="no polygon"):
        load_aoi(str(points))


def test_aoi_without_any_cell_centre_is_refused(tmp_path):
    ring = shapely.box(-100, 38, -98, 40).difference(shapely.box(-99.9, 38.1, -98.1, 39.9))
    path = tmp_path / "ring.geojson"
    path.write_text(shapely.to_geojson(ring))
    with pytest.raises(InputError, match="contains no cell centre"):
        build_grid(aoi=str(path), shape="1x1")


def test_the_bundled_boundary_is_the_union_of_its_features():
    """The boundary file is used as it is, without a union: its geometry must already be the
    union of its features, and the masks it gives those the union gives (cell for cell)."""
    from importlib import resources

    from rasterio.features import geometry_mask

    text = resources.files("prom3e_geo.data").joinpath("conus.geojson").read_text()
    parts = [shapely.geometry.shape(f["geometry"]) for f in json.loads(text)["features"]]
    union = shapely.union_all(parts)
    boundary = conus_boundary()
    assert shapely.is_valid(boundary) and shapely.equals(boundary, union)
    assert boundary.bounds == union.bounds
    grid = build_grid()
    for touched in (False, True):
        expected = geometry_mask(
            [union], grid.shape, grid.transform, invert=True, all_touched=touched
        )
        np.testing.assert_array_equal(grid.touched if touched else grid.mask, expected)


def test_cell_index_puts_odd_points_outside_without_warnings():
    """NaN, infinite and huge coordinates are off the grid (-1), quietly; the last cell's
    centre and the grid's first corner are on it."""
    grid = build_grid()
    t = grid.transform
    last = (t.c + t.a * (grid.width - 0.5), t.f + t.e * (grid.height - 0.5))
    x = np.array([np.nan, np.inf, -np.inf, -100.0, 1e308, t.c, last[0], t.c + t.a * grid.width])
    y = np.array([40.0, 40.0, np.inf, np.nan, 40.0, t.f, last[1], 40.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cells = grid.cell_index(x, y)
    assert cells.tolist() == [-1, -1, -1, -1, -1, 0, grid.height * grid.width - 1, -1]
