"""Fetch throughput under real latency: cells/s, requests and bytes per cell, connections held.

A stand-in runs in its own process on 127.0.0.1 (`tests/fake_latency.py`): every request is
answered after `--latency` seconds (50 ms: a continent away) and every response body is sent at
no more than `--bandwidth` bytes/s per connection. Two services, each filled through the engine
that `prom3e-geo fetch` runs (`fill_patch_cache`, into a patch cache on disk):

- `tiles`: the s2cloudless source against XYZ JPEG tiles (256 px, textured so that they weigh
  what photographs do), for `--cells` cells drawn from the paper's CONUS grid (71,381 cells;
  its patches are 1,024 m and ~9 km apart, so cells share no tile, as on the real grid);
- `cogs`: the stac source against a STAC API and 10 m uint16 COG assets (3 bands, 256 px
  deflate blocks, values with the noise of a real scene), read by GDAL over HTTP Range
  requests. The cells are a 3 km lattice inside one 30 km scene; every search answers the
  item with its asset URLs made unique (`?p=N`), so no request tile reuses another's cached
  blocks or headers, as far-apart cells of the CONUS grid would not.

The server counts the requests, the bytes, the most connections open at once and its own CPU
time; the fetching process's CPU time per cell (all threads), beside the stand-in's, says how
much of the two shared cores each takes.

    python benchmarks/fetch_latency.py [--part tiles|cogs|both] [--latency 0.05]
        [--bandwidth 4e6] [--cells 3000] [--passes 12]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import multiprocessing
import re
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from prom3e_geo.engine.fill_cache import fill_patch_cache  # noqa: E402
from prom3e_geo.grid import build_grid  # noqa: E402
from prom3e_geo.imagery.base import open_source  # noqa: E402

CONUS_CELLS = 71_381  # the paper grid (README, "What a CONUS map costs")
TILE_PATH = re.compile(r"/wmts/1\.0\.0/s2cloudless-(\d+)_3857/default/g/(\d+)/(\d+)/(\d+)\.jpg")
SCENE_PX, LEFT, TOP, EPSG = 3000, 580_000.0, 4_100_000.0, 32614  # UTM 14N, Kansas


def textured_jpegs(n: int = 16) -> list[bytes]:
    """JPEG tiles with the texture of imagery (smoothed noise), so they weigh ~20-30 KB."""
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        noise = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
        img = Image.fromarray(noise).filter(ImageFilter.GaussianBlur(1.2))
        buffer = io.BytesIO()
        img.save(buffer, format="JPEG", quality=85)
        out.append(buffer.getvalue())
    return out


def scene_cogs(folder: Path) -> dict[str, bytes]:
    """Three uint16 COG assets of one 30 km scene, as bytes (served from memory)."""
    from affine import Affine
    from fake_services import write_cog

    rng = np.random.default_rng(1)
    out = {}
    for key in ("red", "green", "blue"):
        base = rng.integers(800, 3000, (SCENE_PX // 30 + 1, SCENE_PX // 30 + 1))
        smooth = np.kron(base, np.ones((30, 30)))[:SCENE_PX, :SCENE_PX]
        data = (smooth + rng.normal(0, 60, smooth.shape)).clip(1, 10000).astype("uint16")
        path = folder / f"{key}.tif"
        write_cog(path, data, EPSG, Affine(10, 0, LEFT, 0, -10, TOP))
        out[key] = path.read_bytes()
    return out


def serve(part: str, latency: float, bandwidth: float, folder: str, queue: Any) -> None:
    """The stand-in for `part`, in this (child) process until it is terminated."""
    from fake_latency import LatencyServer
    from fake_services import FakeServices

    stac = FakeServices()
    files: dict[str, bytes] = {}
    tiles: list[bytes] = []
    searches = [0]
    if part == "tiles":
        tiles = textured_jpegs()
    else:
        files = scene_cogs(Path(folder))

    def send(handler: Any, status: int, body: bytes, headers: dict[str, str]) -> None:
        handler.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **headers}.items():
            handler.send_header(key, value)
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)

    def route(handler: Any, method: str, body: bytes) -> None:
        path = handler.path.split("?")[0]
        if m := TILE_PATH.fullmatch(path):
            x, y = int(m.group(4)), int(m.group(3))
            return send(
                handler, 200, tiles[(x * 7 + y) % len(tiles)], {"Content-Type": "image/jpeg"}
            )
        if path.startswith("/files/"):
            data = files[path.removeprefix("/files/").removesuffix(".tif")]
            ranged = handler.headers.get("Range", "")
            if not ranged.startswith("bytes="):
                return send(handler, 200, data, {"Accept-Ranges": "bytes"})
            first, _, last = ranged.removeprefix("bytes=").partition("-")
            a, b = int(first), min(int(last or len(data) - 1), len(data) - 1)
            headers = {"Content-Range": f"bytes {a}-{b}/{len(data)}", "Accept-Ranges": "bytes"}
            return send(handler, 206, data[a : b + 1], {"Content-Type": "image/tiff", **headers})
        if path == "/stac/search":
            with server.lock:
                searches[0] += 1
                n = searches[0]
            return stac.send_json(handler, 200, {"type": "FeatureCollection",
                                                 "features": [item(server.url, n)], "links": []})  # fmt: skip
        if path.rstrip("/") == "/stac":
            return stac.send_json(handler, 200, stac.landing())
        return send(handler, 404, b"", {})

    server = LatencyServer(route, latency, bandwidth)
    stac.url = server.url
    with server:
        queue.put(server.url)
        threading.Event().wait()


def item(url: str, n: int) -> dict[str, Any]:
    """The scene as a STAC item whose asset URLs are unique to search `n`."""
    from pyproj import Transformer

    to_lonlat = Transformer.from_crs(EPSG, 4326, always_xy=True)
    right, bottom = LEFT + SCENE_PX * 10, TOP - SCENE_PX * 10
    ring = [(LEFT, TOP), (right, TOP), (right, bottom), (LEFT, bottom), (LEFT, TOP)]
    lonlat = [to_lonlat.transform(x, y) for x, y in ring]
    lons, lats = zip(*lonlat, strict=True)
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": f"scene-{n}",
        "collection": "sentinel-2-l2a",
        "geometry": {"type": "Polygon", "coordinates": [lonlat]},
        "bbox": [min(lons), min(lats), max(lons), max(lats)],
        "properties": {
            "datetime": "2023-07-01T17:00:00Z",
            "eo:cloud_cover": 1.0,
            "s2:processing_baseline": "05.09",
        },  # fmt: skip
        "links": [],
        "assets": {
            k: {"href": f"{url}/files/{k}.tif?p={n}", "type": "image/tiff"}
            for k in ("red", "green", "blue")
        },
    }


def stats(url: str, what: str = "_stats") -> dict[str, int]:
    with urllib.request.urlopen(f"{url}/{what}") as response:
        counts: dict[str, int] = json.load(response)
    return counts


def measure(
    part: str, url: str, source_spec: str, lon: np.ndarray, lat: np.ndarray
) -> dict[str, Any]:
    """Fill a patch cache for the cells (lon, lat) through the engine; the server's counts."""
    from prom3e_geo.grid import Grid

    source = open_source(source_spec)
    grid: Grid = points_grid(lon, lat)
    served = stats(url, "_reset")
    with tempfile.TemporaryDirectory() as folder:
        started, cpu = time.perf_counter(), time.process_time()
        summary = fill_patch_cache(source, grid, Path(folder) / "cache.zarr", batch_size=256)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    counts = stats(url)
    source.close()
    n = int(grid.mask.sum())
    return {
        "part": part,
        "cells": n,
        "ok": summary.cells_ok_in_cache,
        "seconds": seconds,
        "cells_s": n / seconds,
        "cpu_ms_per_cell": cpu / n * 1000,  # the fetching process, all its threads
        "server_cpu_ms_per_cell": (counts["cpu_ms"] - served["cpu_ms"]) / n,  # the stand-in's
        "requests_per_cell": counts["requests"] / n,
        "kib_per_cell": counts["bytes"] / n / 1024,
        "connections_max": counts["connections_max"],
        "conus_minutes": CONUS_CELLS / (n / seconds) / 60,
    }


def points_grid(lon: np.ndarray, lat: np.ndarray) -> Any:
    """A grid holding exactly these cell centres: a 1 x N lon/lat row whose cells are the
    points themselves, by replacing the grid's coordinates."""
    from prom3e_geo.grid import Grid

    class Points(Grid):
        def lonlat(self, chunk: Any = None) -> tuple[np.ndarray, np.ndarray]:
            if chunk is None:
                return lon[None, :], lat[None, :]
            return lon[None, chunk.cols], lat[None, chunk.cols]

    base = build_grid(aoi=f"{lon.min()},{lat.min()},{lon.max() + 1e-3},{lat.max() + 1e-3}",
                      shape=(1, lon.size), chunk_shape=(1, 256))  # fmt: skip
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    fields["mask"] = np.ones((1, lon.size), dtype=bool)
    return Points(**fields)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("tiles", "cogs", "both"), default="both")
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--bandwidth", type=float, default=4e6, help="bytes/s per connection")
    parser.add_argument("--cells", type=int, default=3000, help="CONUS cells for the tiles")
    parser.add_argument("--passes", type=int, default=12, help="passes over the scene's cells")
    parser.add_argument("--tile-workers", type=int, default=None)
    parser.add_argument("--cog-workers", type=int, default=None)
    args = parser.parse_args()
    parts = ("tiles", "cogs") if args.part == "both" else (args.part,)
    context = multiprocessing.get_context("spawn")
    print(f"latency {args.latency * 1000:.0f} ms per request, {args.bandwidth / 1e6:g} MB/s per "
          f"connection; projected CONUS time for {CONUS_CELLS:,} cells")  # fmt: skip
    for part in parts:
        queue = context.Queue()
        folder = tempfile.mkdtemp()
        child = context.Process(
            target=serve, args=(part, args.latency, args.bandwidth, folder, queue), daemon=True
        )
        child.start()
        try:
            url = queue.get(timeout=300)
            if part == "tiles":
                grid = build_grid()
                lon, lat = (a[grid.mask] for a in grid.lonlat())
                pick = np.sort(np.random.default_rng(0).choice(lon.size, args.cells, replace=False))
                workers = f"&workers={args.tile_workers}" if args.tile_workers else ""
                spec = f"s2cloudless?url={url}/wmts/1.0.0/s2cloudless-{{year}}_3857/default/g/{{z}}/{{y}}/{{x}}.jpg{workers}"
                result = measure(part, url, spec, lon[pick], lat[pick])
            else:
                lon, lat = scene_cells()
                lon, lat = np.tile(lon, args.passes), np.tile(lat, args.passes)
                workers = f"&workers={args.cog_workers}" if args.cog_workers else ""
                spec = f"stac:{url}/stac?retry_wait=0.2{workers}"
                result = measure(part, url, spec, lon, lat)
        finally:
            child.terminate()
            child.join()
        print(
            json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()})
        )


def scene_cells() -> tuple[np.ndarray, np.ndarray]:
    """Cell centres on a 3 km lattice inside the scene (patches 2.56 km: no shared blocks)."""
    from pyproj import Transformer

    to_lonlat = Transformer.from_crs(EPSG, 4326, always_xy=True)
    offsets = np.arange(2_000, SCENE_PX * 10 - 2_000, 3_000)
    x, y = np.meshgrid(LEFT + offsets, TOP - offsets)
    lon, lat = to_lonlat.transform(x.ravel(), y.ravel())
    return np.asarray(lon), np.asarray(lat)


if __name__ == "__main__":
    main()
