"""Sentinel Hub fetching against the local fake service: requests per cell and cells/s, with and
without tile batching, without and with 20 % injected transient failures (429 with Retry-After,
500, truncated TIFF), side by side in one run.

Patches are 256 x 256 px at 10 m (2.56 km). Two grids: a dense one (1 km cells, EPSG:5070, a
30 x 30 km block in Kansas: patches overlap, so one 2500 px request serves hundreds of cells)
and the paper's spacing (0.1 degree cells, ~9 km: patches are apart, so batching saves little).
Retry waits are 0.05 s here (the SDK default is 5 s) so the numbers show request overhead, not
sleeping; the fake renders and encodes every GeoTIFF it serves, as a real service would.

    python benchmarks/fetch.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fake_services import CLIENT_ID, CLIENT_SECRET, FakeServices  # noqa: E402

from prom3e_geo.grid import build_grid  # noqa: E402
from prom3e_geo.imagery import open_source  # noqa: E402


def run(cells: tuple[np.ndarray, np.ndarray], tile_px: int, fault_rate: float) -> dict:
    lon, lat = cells
    with FakeServices(fault_rate=fault_rate, seed=1) as fake:
        source = open_source(
            f"sentinelhub?base_url={fake.url}&token_url={fake.url}/oauth/token"
            f"&tile_px={tile_px}&retry_wait=0.05&threads=4"
        )
        started = time.perf_counter()
        ok = 0
        for start in range(0, lon.size, 1024):
            batch = source.fetch(lon[start : start + 1024], lat[start : start + 1024])
            ok += int(batch.valid.sum())
        seconds = time.perf_counter() - started
        served = sum(v for k, v in fake.counts.items() if k == "/api/v1/process")
    return {
        "cells": lon.size,
        "ok": ok,
        "requests": served,
        "per_cell": served / lon.size,
        "cells_s": lon.size / seconds,
        "mb_per_cell": source.traffic["bytes"] / lon.size / 2**20,
    }


def main() -> None:
    os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp()
    os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"
    os.environ["SH_CLIENT_ID"], os.environ["SH_CLIENT_SECRET"] = CLIENT_ID, CLIENT_SECRET
    dense = build_grid(aoi="-98.2,38.0,-97.85,38.27", crs="EPSG:5070", resolution=1000)
    paper = build_grid(aoi="-100,36,-97,39", resolution=0.1)
    grids = {
        "dense (1 km)": tuple(a[dense.mask] for a in dense.lonlat()),
        "paper spacing (0.1 deg)": tuple(a[paper.mask] for a in paper.lonlat()),
    }
    print(
        f"{'grid':<24} {'batching':<10} {'faults':>6} {'cells':>6} {'ok':>6} {'requests':>8} "
        f"{'req/cell':>8} {'cells/s':>8} {'MB/cell':>8}"
    )
    for name, cells in grids.items():
        for fault_rate in (0.0, 0.2):
            for tile_px, label in ((1, "per cell"), (2500, "2500 px")):
                r = run(cells, tile_px, fault_rate)
                print(
                    f"{name:<24} {label:<10} {fault_rate:>6.0%} {r['cells']:>6} {r['ok']:>6} "
                    f"{r['requests']:>8} {r['per_cell']:>8.3f} {r['cells_s']:>8.1f} "
                    f"{r['mb_per_cell']:>8.3f}"
                )


if __name__ == "__main__":
    main()
