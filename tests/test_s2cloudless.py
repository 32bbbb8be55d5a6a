"""The `s2cloudless` source against a tile stand-in on 127.0.0.1: patches equal an independent
computation (slippy-map tile bounds by their textbook formula, pyproj geodesics for the 1,024 m
square, PIL for the decoding, GDAL's warp), JPEG tiles as served, faults (404, 503, 429 with
Retry-After, a closed port), a resumed fetch into a patch cache that keeps display RGB exact."""

from __future__ import annotations

import io
import math
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import requests
from fake_tiles import FakeTiles
from PIL import Image
from pyproj import Geod, Transformer
from rasterio.transform import from_bounds
from rasterio.warp import Resampling, reproject

from prom3e_geo.imagery.base import open_source

POINTS = [(-90.2, 38.6), (-122.42, 37.77), (-77.0366, 38.8951)]  # St Louis, SF, Washington DC


def expected_patch(server: FakeTiles, lon: float, lat: float, z: int = 14) -> np.ndarray:
    """The patch computed without the source's code."""
    geod = Geod(ellps="WGS84")
    north = geod.fwd(lon, lat, 0, 512)[1]
    south = geod.fwd(lon, lat, 180, 512)[1]
    east = geod.fwd(lon, lat, 90, 512)[0]
    west = geod.fwd(lon, lat, 270, 512)[0]
    n = 2**z

    def tile_of(lo, la):
        x = int((lo + 180) / 360 * n)
        y = int((1 - math.asinh(math.tan(math.radians(la))) / math.pi) / 2 * n)
        return x, y

    (x0, y0), (x1, y1) = tile_of(west, north), tile_of(east, south)
    mosaic = np.zeros(((y1 - y0 + 1) * 256, (x1 - x0 + 1) * 256, 3), np.uint8)
    for ty in range(y0, y1 + 1):
        for tx in range(x0, x1 + 1):
            url = server.template().format(z=z, x=tx, y=ty)
            tile = np.asarray(
                Image.open(io.BytesIO(requests.get(url, timeout=10).content)).convert("RGB")
            )
            mosaic[(ty - y0) * 256 : (ty - y0 + 1) * 256, (tx - x0) * 256 : (tx - x0 + 1) * 256] = (
                tile
            )

    def corner(tx, ty):  # north-west corner of a tile, lon/lat by the slippy-map formula
        return tx / n * 360 - 180, math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * ty / n))))

    to_merc = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    left, top = to_merc.transform(*corner(x0, y0))
    right, bottom = to_merc.transform(*corner(x1 + 1, y1 + 1))
    out = np.zeros((3, 256, 256), np.uint8)
    reproject(
        mosaic.transpose(2, 0, 1),
        out,
        src_transform=from_bounds(left, bottom, right, top, mosaic.shape[1], mosaic.shape[0]),
        src_crs="EPSG:3857",
        dst_transform=from_bounds(west, south, east, north, 256, 256),
        dst_crs="EPSG:4326",
        resampling=Resampling.bilinear,
    )
    return out.transpose(1, 2, 0)


def source(server: FakeTiles, **options):
    query = "&".join(f"{k}={v}" for k, v in {"url": server.template(), **options}.items())
    return open_source(f"s2cloudless?{query}", size=256, resolution=4.0)


def test_patches_equal_an_independent_crop_of_the_tiles():
    with FakeTiles(fmt="png") as server:
        src = source(server)
        lon, lat = np.array(POINTS).T
        batch = src.fetch(lon, lat)
        assert batch.patches.dtype == np.uint8 and batch.patches.shape == (3, 256, 256, 3)
        assert batch.valid.all()
        for i, (x, y) in enumerate(POINTS):
            want = expected_patch(server, x, y)
            diff = np.abs(batch.patches[i].astype(int) - want.astype(int))
            assert diff.max() <= 1 and (diff == 0).mean() > 0.99  # GDAL's warp on the same grid
        # the centre pixel is the tile pixel under the point (red = column, green = row)
        n = 2**14
        fx = (POINTS[0][0] + 180) / 360 * n
        fy = (1 - math.asinh(math.tan(math.radians(POINTS[0][1]))) / math.pi) / 2 * n
        centre = batch.patches[0, 127:129, 127:129].astype(float).mean(axis=(0, 1))
        assert abs(centre[0] - (fx % 1) * 256) < 2 and abs(centre[1] - (fy % 1) * 256) < 2
        described = src.describe()
        assert described["attribution"].startswith("Sentinel-2 cloudless - https://s2maps.eu")
        assert "2020" in described["attribution"] and described["licence"] == "CC BY-NC-SA 4.0"
        src.close()


def test_jpeg_tiles_as_served_and_neighbours_share_their_tiles():
    with FakeTiles() as server:
        src = source(server)
        lon = np.array([-90.2, -90.2001])  # two cells in the same tiles
        batch = src.fetch(lon, np.array([38.6, 38.6]))
        want = expected_patch(server, -90.2, 38.6)
        assert np.abs(batch.patches[0].astype(int) - want.astype(int)).max() <= 3
        per_tile = server.counts.copy()
        assert max(per_tile.values()) == 2  # once by the source (shared), once by `expected`
        assert src.stats()["requests"] == len(per_tile)
        src.close()


def test_missing_tiles_and_failing_servers_invalidate_only_their_cells():
    with FakeTiles() as server:
        src = source(server, retry_wait=0.01, retries=2)
        lon, lat = np.array(POINTS).T
        n = 2**14
        x = int((POINTS[1][0] + 180) / 360 * n)
        y = int((1 - math.asinh(math.tan(math.radians(POINTS[1][1]))) / math.pi) / 2 * n)
        server.missing.add((x, y))
        x2 = int((POINTS[2][0] + 180) / 360 * n)
        y2 = int((1 - math.asinh(math.tan(math.radians(POINTS[2][1]))) / math.pi) / 2 * n)
        server.fail[(x2, y2)] = 100
        batch = src.fetch(lon, lat)
        assert batch.valid.tolist() == [True, False, False]
        assert "no such tile (HTTP 404)" in batch.meta[1]["error"]
        assert "kept failing" in batch.meta[2]["error"]
        src.close()

        src = source(server, retry_wait=0.01, retries=3)  # 503 twice, then served: retried
        server.fail.clear()
        server.fail[(x2, y2)] = 2
        assert src.fetch(lon[2:], lat[2:]).valid.all()
        src.close()


def test_429_with_retry_after_is_honoured():
    with FakeTiles() as server:
        src = source(server, retry_wait=0.01, workers=1)
        server.throttle = 1
        started = time.perf_counter()
        batch = src.fetch(np.array([-90.2]), np.array([38.6]))
        assert batch.valid.all() and time.perf_counter() - started >= 0.95
        src.close()


def test_a_closed_port_fails_the_cells_with_a_reason():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = open_source(
        f"s2cloudless?url=http://127.0.0.1:{port}/{{z}}/{{y}}/{{x}}.jpg&retries=0", size=256
    )
    batch = src.fetch(np.array([-90.2]), np.array([38.6]))
    assert not batch.valid.any() and "connection refused" in batch.meta[0]["error"]
    src.close()


def test_bad_options_are_one_line_errors(run_cli, tmp_path):
    for spec, words in (
        ("s2cloudless?url=http://x/tiles.jpg", "needs {z}, {x} and {y}"),
        ("s2cloudless?zoom=40", "zoom 40"),
        ("s2cloudless?colour=red", "takes the options"),
    ):
        r = run_cli("fetch", "--source", spec, "--aoi", "-91,38,-90,39", "--cache", tmp_path / "c")
        assert r.code == 2 and words in r.err and r.err.count("\n") == 1, r.err


def test_a_fetch_resumes_and_the_cache_gives_back_the_same_display_rgb(tmp_path):
    exe = str(Path(sys.executable).with_name("prom3e-geo"))
    with FakeTiles() as server:
        n = 2**14
        lon, lat = -90.05, 38.45
        bad = (
            int((lon + 180) / 360 * n),
            int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n),
        )
        server.missing.add(bad)
        spec = f"s2cloudless?url={server.template()}&retries=0"
        args = [exe, "fetch", "--source", spec, "--aoi", "-90.5,38,-90,38.5", "--shape", "4x4",
                "--cache", str(tmp_path / "cache.zarr")]  # fmt: skip
        first = subprocess.run(args, capture_output=True, text=True, timeout=300)
        assert first.returncode == 0, first.stderr
        requested = sum(server.counts.values())
        server.missing.clear()
        second = subprocess.run(args, capture_output=True, text=True, timeout=300)
        assert second.returncode == 0, second.stderr
        assert sum(server.counts.values()) - requested < requested  # only the failed cells again
        cache = open_source(f"cache:{tmp_path / 'cache.zarr'}", size=256, resolution=4.0)
        direct = source(server)
        from prom3e_geo.grid import build_grid

        grid = build_grid("-90.5,38,-90,38.5", shape=(4, 4))
        lons, lats = (a[grid.mask] for a in grid.lonlat())
        back, fresh = cache.fetch(lons, lats), direct.fetch(lons, lats)
        assert back.valid.all() and back.patches.dtype == np.uint8
        assert np.array_equal(back.patches, fresh.patches)  # display RGB kept exactly
        cache.close()
        direct.close()
