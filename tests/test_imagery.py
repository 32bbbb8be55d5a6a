"""Patch sources: the local-raster source cuts correctly centred, georeferenced patches."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import zarr
from affine import Affine
from pyproj import Transformer

from prom3e_geo.errors import InputError
from prom3e_geo.imagery import open_source
from prom3e_geo.imagery.geometry import utm_crs

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
    x, y = transform @ (cols, rows)
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


# -- the patch cache ------------------------------------------------------------------------------
FETCH = [
    "--source",
    "demo",
    "--size",
    "16",
    "--aoi",
    "-100,33,-90,38",
    "--resolution",
    "0.25",
    "--chunk",
    "4",
]


def _cache_arrays(path):
    import zarr

    g = zarr.open_group(str(path), mode="r")
    return {name: np.asarray(g[name][:]) for name in ("patches", "status", "chunk_done")}


def test_fetch_fills_a_cache_and_refuses_other_settings(tmp_path, run_cli):
    cache = tmp_path / "patches.zarr"
    r = run_cli("fetch", *FETCH, "--cache", cache)
    assert r.code == 0, r.err
    assert "0 already done" in r.out and "800 cells ok" in r.out  # 20 x 40 cells, all inside
    arrays = _cache_arrays(cache)
    assert arrays["patches"].shape == (20, 40, 16, 16, 3) and (arrays["status"] == 1).all()
    from prom3e_geo.grid import build_grid
    from prom3e_geo.plugins.demo.render import satellite_patches
    from prom3e_geo.plugins.demo.world import DemoWorld

    grid = build_grid(aoi="-100,33,-90,38", resolution=0.25)
    expected = satellite_patches(DemoWorld(0), grid.x[[5]], grid.y[[3]], 16)[0]
    np.testing.assert_allclose(
        arrays["patches"][3, 5].astype(np.float32), expected, atol=2e-3
    )  # float16
    again = run_cli("fetch", *FETCH, "--cache", cache)
    assert again.code == 0 and "0 chunk(s) fetched, 50 already done" in again.out
    other = run_cli("fetch", *FETCH[:2], "--size", "32", *FETCH[4:], "--cache", cache)
    assert other.code == 2 and "refusing to mix runs" in other.err and "size_px" in other.err


@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_killed_or_interrupted_fetch_resumes_to_an_identical_cache(tmp_path, how):
    """`kill -9` or Ctrl-C while batches are being fetched and written on their threads: a
    Ctrl-C ends the run at once with exit 130 and one line; either way the re-run finishes the
    cache to one identical to an uninterrupted run's."""
    import os
    import re
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import zarr

    exe = Path(sys.executable).with_name("prom3e-geo")
    reference = tmp_path / "reference.zarr"
    subprocess.run([exe, "fetch", *FETCH, "--cache", reference], check=True, capture_output=True)

    cache = tmp_path / "patches.zarr"
    # as from a terminal: Ctrl-C's signal neither ignored nor blocked, whatever this process
    # inherited (a suite started as a background job runs with SIGINT ignored; children inherit
    # that across exec and Python leaves it so: the fetch below then ran to its end)
    as_from_a_terminal = (
        "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
        "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", as_from_a_terminal, exe, "fetch", *FETCH, "--cache", cache],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PROM3E_GEO_PROGRESS_EVERY": "0.001"},  # a line every chunk
    )
    assert proc.stderr is not None
    # the line "grid chunks: K/50 chunks" comes after K chunks' markers are written: the
    # signal is sent at the fifth, while 45 chunks are left (polling the cache instead missed
    # the whole one-second fetch on a loaded machine)
    for line in proc.stderr:
        done = re.match(r"grid chunks: (\d+)/50 chunks", line)
        if done and int(done.group(1)) >= 5:
            break
    os.kill(proc.pid, getattr(signal, how))
    _, err = proc.communicate(timeout=60)
    if how == "SIGINT":
        assert proc.returncode == 130 and err.splitlines()[-1] == "prom3e-geo: error: interrupted"
        assert "Traceback" not in err
    assert 5 <= zarr.open_group(str(cache), mode="r")["chunk_done"][:].sum() < 50
    subprocess.run([exe, "fetch", *FETCH, "--cache", cache], check=True, capture_output=True)
    a, b = _cache_arrays(cache), _cache_arrays(reference)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_fetch_from_local_rasters_counts_invalid_cells(coordinate_raster, tmp_path, run_cli):
    from pyproj import Transformer

    lon0, lat0 = Transformer.from_crs(5070, 4326, always_xy=True).transform(
        ORIGIN[0] + 6000, ORIGIN[1] - 6000
    )
    bbox = f"{lon0 - 0.08},{lat0 - 0.08},{lon0 + 0.08},{lat0 + 0.08}"  # partly beyond the raster's edge
    r = run_cli(
        "fetch",
        "--source",
        f"local:{coordinate_raster}",
        "--size",
        "16",
        "--aoi",
        bbox,
        "--shape",
        "4x4",
        "--cache",
        tmp_path / "p.zarr",
    )
    assert r.code == 0, r.err
    status = _cache_arrays(tmp_path / "p.zarr")["status"]
    assert (status == 1).sum() > 0 and (status != 1).sum() > 0
    assert "outside every raster" in r.out or "mostly nodata" in r.out


def test_demo_source_patches_do_not_depend_on_their_batch():
    """Regression: the demo renderer used to seed its textures from the whole batch, so a cell's
    patch changed with --batch-size and with its neighbours."""
    source = open_source("demo", size=16)
    lon, lat = np.array([-95.0, -90.0, -85.0, -80.0]), np.array([35.0, 36.0, 37.0, 38.0])
    together = source.fetch(lon, lat).patches
    alone = source.fetch(lon[2:3], lat[2:3]).patches
    np.testing.assert_array_equal(together[2], alone[0])


def test_request_tiles_batch_dense_cells_and_split_sparse_ones():
    from prom3e_geo.imagery.geometry import PatchPlacement, request_tiles

    # a 10 x 10 block of cells 500 m apart (patches of 32 px at 10 m = 320 m: 2.4x more pixels
    # in one covering request than in the patches -> per cell) and the same block 200 m apart
    for spacing, expected in ((500.0, 100), (200.0, 1)):
        x, y = np.meshgrid(500_000 + spacing * np.arange(10), 4_100_000 + spacing * np.arange(10))
        lon, lat = Transformer.from_crs(32614, 4326, always_xy=True).transform(x.ravel(), y.ravel())
        placement = PatchPlacement.snapped(lon, lat, 32, 10.0)
        tiles = list(request_tiles(placement, 2500))
        assert len(tiles) == expected
        assert sorted(np.concatenate([t.cells for t in tiles])) == list(range(100))
        for tile in tiles:
            assert tile.width <= 2500 and tile.height <= 2500
            rows, cols = tile.offsets(placement)
            assert (rows >= 0).all() and (rows + 32 <= tile.height).all()
            assert (cols >= 0).all() and (cols + 32 <= tile.width).all()
    assert all(t.cells.size == 1 for t in request_tiles(placement, 32))  # max_px <= size


def test_embedding_from_a_patch_cache_matches_the_live_source(tmp_path, run_cli):
    import xarray as xr

    grid = ["--aoi", "-100,33,-96,36", "--resolution", "0.25"]
    cache = tmp_path / "patches.zarr"
    assert run_cli("fetch", "--source", "demo", *grid, "--size", "32", "--cache", cache).code == 0
    live, cached = tmp_path / "live.zarr", tmp_path / "cached.zarr"
    assert run_cli("embed", *grid, "--out", live).code == 0
    r = run_cli("embed", *grid, "--source", f"cache:{cache}", "--out", cached)
    assert r.code == 0, r.err
    a, b = xr.open_zarr(live), xr.open_zarr(cached)
    assert bool(b["valid"].all())
    # the cache holds float16 patches: embeddings agree to float16 precision, not bit for bit
    np.testing.assert_allclose(
        a["mu"].values.astype(np.float32), b["mu"].values.astype(np.float32), atol=2e-2
    )

    source = open_source(f"cache:{cache}")
    batch = source.fetch(np.array([-99.0, -120.0]), np.array([34.0, 45.0]))
    assert batch.valid.tolist() == [True, False]
    assert batch.meta[1]["error"] == "outside the cache's grid"
    # handed out as stored (float16, half the bytes to move to a GPU), bit for bit
    stored = zarr.open_group(str(cache), mode="r")["patches"]
    assert batch.patches.dtype == np.float16
    row, col = divmod(
        int(source.grid.cell_index_lonlat(np.array([-99.0]), np.array([34.0]))[0]), 16
    )
    np.testing.assert_array_equal(batch.patches[0], stored[row, col])
    with pytest.raises(InputError, match="holds 32 px patches"):
        open_source(f"cache:{cache}", size=64)
    with pytest.raises(InputError, match="does not exist"):
        open_source(f"cache:{tmp_path / 'none.zarr'}")
    with pytest.raises(InputError, match="not a patch cache"):
        open_source(f"cache:{live}")


def test_cache_reads_equal_zarr_reads_in_any_order_and_thread_count(tmp_path, run_cli):
    """The cache's chunk files are decoded in parallel outside Zarr's array API: every cell, in
    any order, repeated or not, with any thread count, equals Zarr's own read; a cell whose
    chunk file is absent holds the fill value (NaN), as Zarr reads it; one whose file is corrupt
    is invalid, with the reason, and the others are unaffected."""
    import json

    from prom3e_geo.stores.patch_reader import CacheSource

    grid = ["--aoi", "-100,33,-96,36", "--resolution", "0.25"]
    cache = tmp_path / "patches.zarr"
    assert run_cli("fetch", "--source", "demo", *grid, "--size", "16", "--cache", cache).code == 0
    stored = zarr.open_group(str(cache), mode="r")["patches"]
    source = CacheSource(cache)
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, source.grid.height, 300), rng.integers(0, source.grid.width, 300)
    (cache / "patches" / stored.metadata.encode_chunk_key((rows[7], cols[7], 0, 0, 0))).unlink()
    x, y = source.grid.x[cols], source.grid.y[rows]
    expected = np.stack([stored[r, c] for r, c in zip(rows, cols, strict=True)])
    removed = (rows == rows[7]) & (cols == cols[7])
    assert np.isnan(expected[removed]).all() and np.isfinite(expected[~removed]).all()
    for threads in (1, 3, 8):
        batch = CacheSource(cache, threads=threads).fetch(x, y)
        assert batch.valid.all()
        np.testing.assert_array_equal(batch.patches.view(np.uint16), expected.view(np.uint16))

    corrupt = cache / "patches" / stored.metadata.encode_chunk_key((rows[0], cols[0], 0, 0, 0))
    corrupt.write_bytes(b"not a blosc frame" * 4)
    batch = CacheSource(cache).fetch(x, y)
    hit = (rows == rows[0]) & (cols == cols[0])
    assert not batch.valid[hit].any() and batch.valid[~hit].all()
    assert batch.meta[0]["error"] == "unreadable in the cache (corrupt chunk file)"
    np.testing.assert_array_equal(
        batch.patches[~hit].view(np.uint16), expected[~hit].view(np.uint16)
    )

    zarray = cache / "patches" / ".zarray"
    meta = json.loads(zarray.read_text())
    meta["filters"] = [{"id": "delta", "dtype": "<f2"}]
    zarray.write_text(json.dumps(meta))
    consolidated = cache / ".zmetadata"
    meta = json.loads(consolidated.read_text())
    meta["metadata"]["patches/.zarray"]["filters"] = [{"id": "delta", "dtype": "<f2"}]
    consolidated.write_text(json.dumps(meta))
    with pytest.raises(InputError, match="unknown layout"):
        CacheSource(cache)


def test_closing_a_cache_source_stops_its_reader_threads(tmp_path, run_cli):
    """Regression: the cache source's thread pool was never shut down."""
    import threading

    cache = tmp_path / "patches.zarr"
    grid = ["--aoi", "-100,33,-99,34", "--resolution", "0.25"]
    assert run_cli("fetch", "--source", "demo", *grid, "--cache", cache).code == 0

    def readers() -> int:
        return sum(t.name.startswith("prom3e-cache-read") for t in threading.enumerate())

    before = readers()  # sources of pipelines other tests left open in this process
    source = open_source(f"cache:{cache}?threads=3")
    assert source.fetch(np.array([-99.6, -99.4]), np.array([33.4, 33.6])).valid.all()
    assert readers() > before
    source.close()
    assert readers() == before


def test_a_cache_of_other_patches_than_the_pipelines_is_refused(tmp_path, run_cli):
    """Regression: `fetch --source demo` made 256 px patches while the demo pipeline uses 32 px,
    and `embed` from that cache gave other embeddings than a direct run (cosine down to 0.74)."""
    grid = ["--aoi", "-100,33,-99,34", "--resolution", "0.25"]
    assert run_cli("fetch", "--source", "demo", *grid, "--cache", tmp_path / "a.zarr").code == 0
    import zarr

    assert zarr.open_group(str(tmp_path / "a.zarr"), mode="r")["patches"].shape[2] == 32
    big = tmp_path / "b.zarr"
    assert run_cli("fetch", "--source", "demo", "--size", "64", *grid, "--cache", big).code == 0
    r = run_cli("embed", *grid, "--source", f"cache:{big}", "--out", tmp_path / "c.zarr")
    assert r.code == 2 and "holds 64 px patches, not the 32 px this pipeline uses" in r.err
    assert not (tmp_path / "c.zarr").exists()


def test_a_patch_on_the_rasters_own_pixels_is_its_window(tmp_path):
    """A snapped patch in a raster of its zone and pixel size is read as a window: the values
    (and NaN at nodata) the bilinear warp gives for it, while patches off the pixel lattice,
    across the raster's edge or in another CRS are still warped."""
    from rasterio.crs import CRS

    from prom3e_geo.imagery.geometry import aligned_window, resampled, warp_patch

    path = tmp_path / "scene.tif"
    rng = np.random.default_rng(4)
    data = rng.integers(1, 10_000, (2, 300, 300)).astype("uint16")
    data[:, 40:60, 100:130] = 0  # nodata
    transform = Affine(10, 0, 580_000, 0, -10, 4_100_000)
    profile = {"driver": "GTiff", "width": 300, "height": 300, "count": 2, "dtype": "uint16"}
    with rasterio.open(path, "w", crs="EPSG:32614", transform=transform, nodata=0, **profile) as ds:
        ds.write(data)
    utm14, utm15 = CRS.from_epsg(32614), CRS.from_epsg(32615)
    with rasterio.open(path) as ds:
        patch = Affine(10, 0, 580_000 + 10 * 90, 0, -10, 4_100_000 - 10 * 30)
        window = aligned_window(ds, utm14, patch, 64)
        assert window is not None and (window.col_off, window.row_off) == (90, 30)
        fast = warp_patch([(ds, 1), (ds, 2)], utm14, patch, 64)
        np.testing.assert_array_equal(fast, resampled(ds, [1, 2], utm14, patch, 64))
        stale = np.full((3, 64, 64), 7.0, np.float32)  # read into a slice of a larger array
        assert np.shares_memory(warp_patch([(ds, 2)], utm14, patch, 64, stale[1:2]), stale)
        np.testing.assert_array_equal(stale[1], fast[1])
        assert (stale[[0, 2]] == 7.0).all()
        assert np.isnan(fast[:, 10:30, 10:40]).all() and not np.isnan(fast[:, 30:]).any()
        np.testing.assert_array_equal(fast[0, 30:], data[0, 60:94, 90:154])
        for other, crs in (
            (patch @ Affine.translation(0.5, 0), utm14),  # half a pixel off the lattice
            (Affine(10, 0, 580_000 + 10 * 250, 0, -10, 4_100_000), utm14),  # over the edge
            (patch, utm15),  # another zone
        ):
            assert aligned_window(ds, crs, other, 64) is None
            np.testing.assert_array_equal(
                warp_patch([(ds, 1)], crs, other, 64), resampled(ds, [1], crs, other, 64)
            )


class _ScriptedSource:
    """Patches that say where they are (float32 with fractions and a NaN pixel), invalid where
    `invalid(lon, lat)` is; raises on batch number `fail_at` (counting from 1)."""

    name, bands, size, radiometry = "scripted", ("red", "green", "blue"), 8, "reflectance"

    def __init__(self, invalid=lambda lon, lat: np.zeros(lon.size, bool), fail_at=None):
        self.invalid, self.fail_at, self.batches = invalid, fail_at, 0

    def describe(self):
        return {"source": "scripted"}

    def close(self):
        pass

    @staticmethod
    def patch(lon, lat):
        ramp = np.arange(8 * 8 * 3, dtype=np.float32).reshape(8, 8, 3) / 1000
        out = (lon[:, None, None, None] / 100 + lat[:, None, None, None] / 10_000 + ramp).astype(
            np.float32
        )
        out[:, 0, 0, 0] = np.nan  # a nodata pixel stays NaN
        return out

    def fetch(self, lon, lat):
        from prom3e_geo.imagery.base import PatchBatch

        self.batches += 1
        if self.batches == self.fail_at:
            raise ConnectionError("the service went away")
        bad = self.invalid(lon, lat)
        patches = self.patch(lon, lat)
        patches[bad] = 0  # what a source leaves in a cell it could not fill
        meta = [{"error": "scripted"} if b else {"scene": "s"} for b in bad]
        return PatchBatch(patches, ~bad, meta)


def test_a_filled_cache_holds_what_the_source_gave_and_no_stale_patch(tmp_path):
    """The writer threads put every valid cell's patch (cast to float16) in its own chunk file
    as Zarr writes it, NaN (no file) in invalid cells; a chunk is marked done only once its
    patches are written (a source failing midway leaves every marked chunk complete), and a
    chunk fetched again where a cell has turned invalid keeps no stale patch of it."""
    from prom3e_geo.engine.fill_cache import fill_patch_cache
    from prom3e_geo.grid import build_grid

    grid = build_grid(aoi="-100,33,-96,36", shape=(12, 16), chunk_shape=(4, 8))  # 6 chunks
    lon, lat = grid.lonlat()
    expected = _ScriptedSource.patch(lon.ravel(), lat.ravel()).reshape(12, 16, 8, 8, 3)
    cache = tmp_path / "cache.zarr"

    with pytest.raises(ConnectionError):  # 4 batches of 8 cells a chunk: dies in chunk 4
        fill_patch_cache(_ScriptedSource(fail_at=14), grid, cache, batch_size=8)
    group = zarr.open_group(str(cache), mode="r")
    done = np.asarray(group["chunk_done"][:])
    assert 1 <= done.sum() < 6
    patches = np.asarray(group["patches"][:])
    for r, c in zip(*np.nonzero(done), strict=True):
        block = (slice(4 * r, 4 * r + 4), slice(8 * c, 8 * c + 8))
        np.testing.assert_array_equal(patches[block], expected[block].astype(np.float16))

    fill_patch_cache(_ScriptedSource(), grid, cache, batch_size=8)  # finishes the rest
    patches = np.asarray(zarr.open_group(str(cache), mode="r")["patches"][:])
    np.testing.assert_array_equal(patches, expected.astype(np.float16))

    west = lambda lo, la: lo < -99  # noqa: E731  (cells of the first column turn invalid)
    group = zarr.open_group(str(cache), mode="r+")
    group["chunk_done"][0, 0] = 0  # chunk (0, 0) is fetched again
    summary = fill_patch_cache(_ScriptedSource(invalid=west), grid, cache, batch_size=8)
    assert summary.cells_invalid == int(west(lon, lat)[:4, :8].sum()) > 0
    group = zarr.open_group(str(cache), mode="r")
    patches, status = np.asarray(group["patches"][:]), np.asarray(group["status"][:])
    turned = west(lon, lat) & (np.arange(12)[:, None] < 4) & (np.arange(16)[None, :] < 8)
    assert (status[turned] == 2).all() and (status[~turned] == 1).all()
    assert np.isnan(patches[turned]).all()
    np.testing.assert_array_equal(patches[~turned], expected[~turned].astype(np.float16))
    assert np.isnan(patches[~turned][:, 0, 0, 0]).all()


def test_display_rgb_is_cached_as_uint8_and_older_float16_caches_still_read(tmp_path, monkeypatch):
    """A display-RGB source (uint8, the s2cloudless tiles) fills a uint8 cache, which Zarr
    reads back as the source's values exactly; a cache written before, which held display RGB
    as float16, is still handed out as the same uint8."""
    from prom3e_geo.engine import fill_cache
    from prom3e_geo.grid import build_grid
    from prom3e_geo.stores.patch_reader import CacheSource
    from prom3e_geo.stores.patches import PatchCache

    class Display(_ScriptedSource):
        radiometry = "display"

        @staticmethod
        def patch(lon, lat):
            return (np.nan_to_num(_ScriptedSource.patch(lon, lat)) * 1000 % 256).astype(np.uint8)

    grid = build_grid(aoi="-100,33,-96,36", shape=(4, 8), chunk_shape=(4, 8))
    lon, lat = grid.lonlat()
    expected = Display.patch(lon.ravel(), lat.ravel())
    fill_cache.fill_patch_cache(Display(), grid, tmp_path / "new.zarr", batch_size=8)
    stored = zarr.open_group(str(tmp_path / "new.zarr"), mode="r")["patches"]
    assert stored.dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(stored[:]).reshape(expected.shape), expected)

    create = PatchCache.open_or_create.__func__
    monkeypatch.setattr(  # the writer before: float16 whatever the radiometry
        fill_cache.PatchCache,
        "open_or_create",
        classmethod(lambda cls, *a, display, **k: create(cls, *a, **k)),
    )
    fill_cache.fill_patch_cache(Display(), grid, tmp_path / "old.zarr", batch_size=8)
    assert zarr.open_group(str(tmp_path / "old.zarr"), mode="r")["patches"].dtype == np.float16
    for name in ("new.zarr", "old.zarr"):
        source = CacheSource(tmp_path / name)
        batch = source.fetch(lon.ravel(), lat.ravel())
        source.close()
        assert batch.valid.all() and batch.patches.dtype == np.uint8, name
        np.testing.assert_array_equal(batch.patches, expected, err_msg=name)


@pytest.mark.parametrize(
    ("dtype", "nodata", "internal_mask"),
    [
        ("uint16", 0, False),
        ("int16", -32768, False),
        ("uint8", None, True),
        ("float32", -9999.0, False),
    ],
)
def test_window_values_are_the_masked_read(tmp_path, dtype, nodata, internal_mask):
    """A window's values with NaN where GDAL's mask says no data, whether the mask is a small
    integer nodata value (compared directly) or anything else (GDAL's masked read)."""
    from rasterio.windows import Window

    from prom3e_geo.imagery.geometry import window_values

    rng = np.random.default_rng(5)
    data = rng.integers(1, 200, (2, 50, 50)).astype(dtype)
    hole = np.zeros((50, 50), bool)
    hole[10:20, 5:30] = True
    profile = {"driver": "GTiff", "width": 50, "height": 50, "count": 2, "dtype": dtype,
               "crs": "EPSG:32614", "transform": Affine(10, 0, 580_000, 0, -10, 4_100_000)}  # fmt: skip
    path = tmp_path / "r.tif"
    with rasterio.open(path, "w", nodata=nodata, **profile) as ds:
        if nodata is not None:
            data[:, hole] = nodata
        ds.write(data)
        if internal_mask:
            ds.write_mask(np.where(hole, 0, 255).astype("uint8"))
    with rasterio.open(path) as ds:
        window = Window(2, 3, 40, 30)
        expected = ds.read([2, 1], window=window, out_dtype="float32", masked=True).filled(np.nan)
        got = window_values(ds, [2, 1], window)
        given = np.full((2, 30, 40), 7.0, np.float32)
        into = window_values(ds, [2, 1], window, given)
    np.testing.assert_array_equal(got, expected)
    assert into is given
    np.testing.assert_array_equal(given, expected)
    assert np.isnan(got[:, 7:17, 3:28]).all() and np.isnan(got).sum() == 2 * 10 * 25
