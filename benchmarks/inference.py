"""Grid inference speed and memory, measured side by side in one run.

1. Demo pipeline (demo patches + demo encoders + GeoCLIP + the demo ProM3E, sat+loc+env) on a
   block of paper-grid cells: end-to-end cells/s through the engine (`compute_chunk`, inputs of
   the next batch gathered on a thread), against the same work done serially (gather, then
   encode + ProM3E) and against encode + ProM3E alone on pre-gathered inputs (model compute);
   and against a naive loop that processes one cell at a time.
   The comparison runs twice: patches rendered by the demo source (CPU work competing with the
   encoders) and patches read from a patch cache filled beforehand (I/O, as with real imagery).
2. Peak RSS of `prom3e-geo embed` (a child process each) at about 10^4 and 10^5 cells, and with
   `--million` at 10^4 and 10^6 cells with the location context alone (the encoder that is cheap
   enough on a CPU to reach a million cells).
3. The same engine comparison with the full-size stack (CLIP ViT-B/16 satellite tower on 256 px
   patches, GeoCLIP, the 27.3 M ProM3E; random weights except GeoCLIP) on 256 cells.

    python benchmarks/inference.py [--cells 8192] [--full-cells 256] [--million]
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import vit_b16_satellite_tower

from prom3e_geo.grid import build_grid
from prom3e_geo.inference import PipelineSpec, compute_chunk, infer_cells, load_pipeline


def demo_comparison(cells: int, cached: bool) -> None:
    """The demo pipeline with patches rendered by the demo source (CPU work) or read from a patch
    cache filled beforehand (I/O, as with a real source)."""
    grid = dataclasses.replace(build_grid(), chunk_shape=(64, 64))
    inside = [c for c in grid.chunks() if grid.mask[c.rows, c.cols].sum() > 3000]
    chunk = inside[0]
    spec = PipelineSpec()
    if cached:
        from prom3e_geo.imagery import open_source
        from prom3e_geo.imagery.cache import fetch_grid

        folder = Path(tempfile.mkdtemp())
        mask = np.zeros_like(grid.mask)  # the cache holds the measured chunk only
        mask[chunk.rows, chunk.cols] = grid.mask[chunk.rows, chunk.cols]
        one_chunk = dataclasses.replace(grid, mask=mask)
        fetch_grid(open_source("demo"), one_chunk, folder / "patches.zarr", 32)
        spec = PipelineSpec(source=f"cache:{folder / 'patches.zarr'}")
    where = "patches read from a patch cache" if cached else "patches rendered by the demo source"
    compare(load_pipeline(spec), grid, chunk, cells, f"demo pipeline, {where}", naive_cells=64)


def compare(pipeline, grid, chunk, cells: int, label: str, naive_cells: int) -> None:
    """Engine vs serial vs model compute vs naive on the inside cells of one chunk, repeated
    until about `cells` cells are done."""
    n = int(grid.mask[chunk.rows, chunk.cols].sum())
    reps = max(1, cells // n)
    context, size = pipeline.spec.context, pipeline.spec.batch_size

    t = time.perf_counter()
    for _ in range(reps):
        compute_chunk(pipeline, grid, chunk)
    engine = time.perf_counter() - t

    lon, lat = (a.ravel()[grid.mask[chunk.rows, chunk.cols].ravel()] for a in grid.lonlat(chunk))
    t = time.perf_counter()
    gathered = [
        pipeline.cells.gather(lon[i : i + size], lat[i : i + size], context)
        for i in range(0, n, size)
    ]
    gather = time.perf_counter() - t
    t = time.perf_counter()
    for raw, valid in gathered:
        infer_cells(pipeline.model, pipeline.cells.encode(raw, valid.size), context)
    model = time.perf_counter() - t
    serial = gather + model

    t = time.perf_counter()
    for i in range(naive_cells):
        raw, valid = pipeline.cells.gather(lon[i : i + 1], lat[i : i + 1], context)
        infer_cells(pipeline.model, pipeline.cells.encode(raw, 1), context)
    naive = (time.perf_counter() - t) / naive_cells

    per_cell_engine = engine / (reps * n)
    print(f"{label}, {reps * n:,} cells ({'+'.join(context)}), {torch.get_num_threads()} threads:")
    print(f"  engine (prefetching)          {1 / per_cell_engine:8,.1f} cells/s")
    print(
        f"  same work serially            {n / serial:8,.1f} cells/s  (gather {gather / serial:.0%}, encode+model {model / serial:.0%})"
    )
    print(f"  encode + ProM3E alone         {n / model:8,.1f} cells/s")
    print(f"  naive one cell at a time      {1 / naive:8,.1f} cells/s")
    print(
        f"  ratios: engine / serial {serial / n / per_cell_engine:.2f}x, engine / naive {naive / per_cell_engine:.0f}x, "
        f"engine time over encode+model time {per_cell_engine / (model / n):.2f}"
    )


def peak_rss(resolution: float, aoi: str, context: str = "sat,loc,env") -> tuple[int, float, float]:
    """(cells, peak RSS in MiB, seconds) of one `prom3e-geo embed` child, measured by GNU time."""
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(sys.executable).with_name("prom3e-geo")
        t = time.perf_counter()
        proc = subprocess.run(
            [
                "/usr/bin/time",
                "-f",
                "maxrss_kb=%M",
                exe,
                "embed",
                "--aoi",
                aoi,
                "--resolution",
                str(resolution),
                "--context",
                context,
                "--out",
                Path(tmp) / "cube.zarr",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        seconds = time.perf_counter() - t
        rss = int(proc.stderr.rsplit("maxrss_kb=", 1)[1].split()[0]) / 1024
        cells = int(proc.stdout.split("cells valid")[0].split(";")[-1].replace(",", "").strip())
        return cells, rss, seconds


def full_size(cells: int) -> None:
    """The engine with full-size models: CLIP ViT-B/16 satellite tower on 256 px demo patches,
    GeoCLIP and the 27.3 M ProM3E (random weights except GeoCLIP), context sat + loc."""
    from prom3e_geo.encoders.clip import SatelliteEncoder
    from prom3e_geo.encoders.location import LocationEncoder
    from prom3e_geo.imagery.demo import DemoSource
    from prom3e_geo.inference import CellContext, Pipeline
    from prom3e_geo.model import ProM3E

    encoders = {"sat": SatelliteEncoder(vit_b16_satellite_tower()), "loc": LocationEncoder.load()}
    spec = PipelineSpec(model="full-size", context=("sat", "loc"), batch_size=64)
    pipeline = Pipeline(spec, ProM3E().eval(), CellContext(encoders, DemoSource(size=256)), {})
    grid = dataclasses.replace(build_grid(), chunk_shape=(16, 16))
    chunk = next(c for c in grid.chunks() if grid.mask[c.rows, c.cols].all())
    compare(pipeline, grid, chunk, cells, "full-size stack (ViT-B/16 + GeoCLIP + 27.3 M ProM3E)", 8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=8192)
    parser.add_argument("--full-cells", type=int, default=256)
    parser.add_argument(
        "--million", action="store_true", help="also 10^6 cells (location context, ~10 min)"
    )
    args = parser.parse_args()
    demo_comparison(args.cells, cached=False)
    demo_comparison(args.cells, cached=True)
    print("peak RSS of `prom3e-geo embed` (demo pipeline, fresh process each):")
    runs = [(0.1, "-100,30,-90,40", "sat,loc,env"), (0.05, "-110,30,-90,40", "sat,loc,env")]
    if args.million:
        runs += [(0.1, "-100,30,-90,40", "loc"), (0.028, "conus", "loc")]
    for resolution, aoi, context in runs:
        cells, rss, seconds = peak_rss(resolution, aoi, context)
        print(
            f"  {cells:>9,} cells, context {context:<11}: peak RSS {rss:6,.0f} MiB, "
            f"{seconds:5.0f} s ({cells / seconds:,.0f} cells/s)"
        )
    full_size(args.full_cells)


if __name__ == "__main__":
    main()
