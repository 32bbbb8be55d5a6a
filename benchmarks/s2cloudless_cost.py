"""What fetching Sentinel-2 cloudless patches for a grid costs: tiles per cell, requests, bytes.

1. Every cell of the grid (default: the paper's CONUS grid): the zoom-14 tiles its 1,024 m patch
   needs (the source's own tile arithmetic), their total and the distinct tiles of the grid.
2. A real fetch of `--sample` cells through the source against the tile stand-in on 127.0.0.1
   (`tests/fake_tiles.py`): requests and bytes counted by the server, compared with (1), and the
   fetch rate on this machine (no latency: the stand-in answers at once).

    python benchmarks/s2cloudless_cost.py [--shape 250x500] [--sample 2000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from prom3e_geo.grid import build_grid  # noqa: E402
from prom3e_geo.imagery.base import open_source  # noqa: E402
from prom3e_geo.imagery.s2cloudless import tangent_box, tiles_of  # noqa: E402


def main() -> None:
    from fake_tiles import FakeTiles

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="250x500")
    parser.add_argument("--sample", type=int, default=2000)
    args = parser.parse_args()
    rows, cols = (int(v) for v in args.shape.split("x"))
    grid = build_grid(shape=(rows, cols))
    lon, lat = (a[grid.mask] for a in grid.lonlat())
    with FakeTiles() as server:
        source = open_source(f"s2cloudless?url={server.template()}", size=256, resolution=4.0)
        spans = [source.tile_span(box) for box in tangent_box(lon, lat, source.radius)]
        per_cell = np.array([len(tiles_of(s)) for s in spans])
        distinct = len({t for s in spans for t in tiles_of(s)})
        print(f"{args.shape} grid, {lon.size:,} cells; zoom {source.zoom}, 256 px over 1,024 m")
        print(f"  tiles per cell: mean {per_cell.mean():.2f}, "
              f"{', '.join(f'{k}: {(per_cell == k).mean():.0%}' for k in (1, 2, 4))}")  # fmt: skip
        print(f"  tile requests for the grid: {per_cell.sum():,} ({distinct:,} distinct tiles)")
        pick = np.random.default_rng(0).choice(lon.size, min(args.sample, lon.size), replace=False)
        started = time.perf_counter()
        for part in np.array_split(pick, max(1, pick.size // 256)):
            batch = source.fetch(lon[part], lat[part])
            assert batch.valid.all()
        seconds = time.perf_counter() - started
        stats = source.stats()
        want = len({t for i in pick for t in tiles_of(spans[i])})
        print(f"  fetched {pick.size:,} cells: {stats['requests']:,} requests (expected "
              f"{want:,}), {stats['bytes'] / pick.size / 1024:.1f} KiB per cell from the "
              f"stand-in's synthetic JPEGs, {pick.size / seconds:,.0f} cells/s on 127.0.0.1")  # fmt: skip
        source.close()


if __name__ == "__main__":
    main()
