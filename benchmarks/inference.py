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
3. Reading 256 px patches back from a patch cache (256 cells, median of 8 reads): Zarr's array
   API against the cache source's thread-pool reader at several thread counts.
4. The same engine comparison with the full-size stack (CLIP ViT-B/16 satellite tower on 256 px
   patches, GeoCLIP, the 27.3 M ProM3E; random weights) on `--full-cells` cells, patches rendered
   and read from a patch cache.

`--precision` (default auto: bf16 on CUDA, float32 on a CPU) sets the encoders' and ProM3E's
autocast; unless it is float32, the demo pipeline's outputs are first compared with float32 on
the CPU.

    python benchmarks/inference.py [--cells 8192] [--full-cells 256] [--million] [--device auto]
        [--precision auto] [--prefetch 2] [--full-batch 64,256]
        [--parts demo,rss,cache-read,full,full-cache]
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

from prom3e_geo.engine.cells import infer_cells
from prom3e_geo.engine.pipeline import load_pipeline
from prom3e_geo.engine.runner import compute_chunk
from prom3e_geo.engine.spec import PipelineSpec
from prom3e_geo.grid import build_grid
from prom3e_geo.runtime import resolve_device, resolve_precision


def measured_chunk(side: int):
    """The paper grid in side x side chunks, and its chunk with the most inside cells."""
    grid = dataclasses.replace(build_grid(), chunk_shape=(side, side))
    return grid, max(grid.chunks(), key=lambda c: grid.mask[c.rows, c.cols].sum())


def cache_of_chunk(source, grid, chunk) -> Path:
    """A patch cache holding the patches of one chunk, filled from `source` (not timed)."""
    from prom3e_geo.engine.fill_cache import fill_patch_cache

    path = Path(tempfile.mkdtemp()) / "patches.zarr"
    mask = np.zeros_like(grid.mask)
    mask[chunk.rows, chunk.cols] = grid.mask[chunk.rows, chunk.cols]
    fill_patch_cache(source, dataclasses.replace(grid, mask=mask), path, source.size)
    return path


def demo_comparison(cells: int, cached: bool, device: str, precision: str, prefetch: int) -> None:
    """The demo pipeline with patches rendered by the demo source (CPU work) or read from a patch
    cache filled beforehand (I/O, as with a real source)."""
    from prom3e_geo.imagery import open_source

    grid, chunk = measured_chunk(64)
    spec = PipelineSpec(device=device, prefetch=prefetch, precision=precision)
    if cached:
        path = cache_of_chunk(open_source("demo"), grid, chunk)
        spec = dataclasses.replace(spec, source=f"cache:{path}")
    where = "patches read from a patch cache" if cached else "patches rendered by the demo source"
    compare(load_pipeline(spec), grid, chunk, cells, f"demo pipeline, {where}", naive_cells=64)


def precision_agreement(device: str, precision: str, make=None, label="demo pipeline") -> None:
    """A pipeline's outputs on `device` at `precision` against float32 on the CPU, on one
    chunk; `make(device, precision)` builds it (default: the demo pipeline)."""
    make = make or (lambda d, p: load_pipeline(PipelineSpec(device=d, precision=p)))
    grid, chunk = measured_chunk(16 if label != "demo pipeline" else 64)
    ref = compute_chunk(make("cpu", "float32"), grid, chunk)
    pipeline = make(device, precision)
    out = compute_chunk(pipeline, grid, chunk)
    cos = (ref.recon_image * out.recon_image).sum(-1) / (
        np.linalg.norm(ref.recon_image, axis=-1) * np.linalg.norm(out.recon_image, axis=-1)
    )
    rel = np.abs(out.sigma_l1 - ref.sigma_l1) / ref.sigma_l1
    ctx = {m: (ref.context[m] * out.context[m]).sum(-1).min() for m in ref.context}
    where = next(pipeline.model.parameters()).device
    print(
        f"{label}, {pipeline.precision} on {where} vs float32 on the CPU, {ref.valid.size:,} cells:"
    )
    print(f"  recon_image cosine: min {cos.min():.4f}, mean {cos.mean():.5f}")
    print(f"  sigma_l1 relative difference: median {np.median(rel):.4f}, max {rel.max():.4f}")
    print("  context embeddings, min cosine: " + ", ".join(f"{m} {v:.4f}" for m, v in ctx.items()))


def batch_cells(valid: dict) -> int:
    """The number of cells in a gathered batch (its per-modality validity arrays)."""
    return next(iter(valid.values())).size


def compare(pipeline, grid, chunk, cells: int, label: str, naive_cells: int) -> None:
    """Engine vs serial vs model compute vs naive on the inside cells of one chunk, repeated
    until about `cells` cells are done."""
    n = int(grid.mask[chunk.rows, chunk.cols].sum())
    reps = max(1, cells // n)
    context, size = pipeline.spec.context, pipeline.spec.batch_size
    lon, lat = (a.ravel()[grid.mask[chunk.rows, chunk.cols].ravel()] for a in grid.lonlat(chunk))
    raw, valid = pipeline.cells.gather(lon[:size], lat[:size], context)  # warm-up, not timed
    infer_cells(
        pipeline.model, pipeline.cells.encode(raw, batch_cells(valid)), context, pipeline.precision
    )

    t = time.perf_counter()
    for _ in range(reps):
        compute_chunk(pipeline, grid, chunk)
    engine = time.perf_counter() - t

    t = time.perf_counter()
    gathered = [
        pipeline.cells.gather(lon[i : i + size], lat[i : i + size], context)
        for i in range(0, n, size)
    ]
    gather = time.perf_counter() - t
    t = time.perf_counter()
    for raw, valid in gathered:
        infer_cells(
            pipeline.model,
            pipeline.cells.encode(raw, batch_cells(valid)),
            context,
            pipeline.precision,
        )
    model = time.perf_counter() - t
    serial = gather + model

    t = time.perf_counter()
    for i in range(naive_cells):
        raw, valid = pipeline.cells.gather(lon[i : i + 1], lat[i : i + 1], context)
        infer_cells(pipeline.model, pipeline.cells.encode(raw, 1), context, pipeline.precision)
    naive = (time.perf_counter() - t) / naive_cells

    per_cell_engine = engine / (reps * n)
    device = next(pipeline.model.parameters()).device
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(
        f"{label}, {reps * n:,} cells ({'+'.join(context)}), batch {size}, "
        f"prefetch {pipeline.spec.prefetch}, {where}:"
    )
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
    if device.type == "cuda":
        print(
            f"  peak GPU memory               {torch.cuda.max_memory_allocated(device) / 2**30:8.2f} GiB"
        )
    for grid_name, grid_cells in (("paper grid", 71_381), ("1 km", 8_080_000)):  # CONUS land cells
        print(f"  projected CONUS {grid_name:10s}  {grid_cells * per_cell_engine / 60:8,.1f} min")


def peak_rss(resolution: float, aoi: str, context: str, device: str) -> tuple[int, float, float]:
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
                "--device",
                device,
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


def cache_read() -> None:
    """Cells/s reading one block of 256 px patches from a patch cache: Zarr's array API (one
    chunk per cell, handled on its event loop) against `CacheSource` at several thread counts."""
    import statistics

    import zarr

    from prom3e_geo.plugins.demo.source import DemoSource
    from prom3e_geo.stores.patch_reader import CacheSource

    grid, chunk = measured_chunk(16)
    path = cache_of_chunk(DemoSource(size=256), grid, chunk)
    inside = grid.mask[chunk.rows, chunk.cols].ravel()
    lon, lat = (a.ravel()[inside] for a in grid.lonlat(chunk))
    patches = zarr.open_group(str(path), mode="r")["patches"]
    readers = {"Zarr array API, one block read": lambda: patches[chunk.rows, chunk.cols]}
    for threads in (1, 2, 4, None):
        source = CacheSource(path, threads=threads)
        readers[f"cache source, {source.threads} threads{'' if threads else ' (default)'}"] = (
            lambda source=source: source.fetch(lon, lat)
        )
    rates: dict[str, list[float]] = {name: [] for name in readers}
    for _ in range(8):  # interleaved, so that a noisy moment hits every reader
        for name, read in readers.items():
            t = time.perf_counter()
            read()
            rates[name].append(lon.size / (time.perf_counter() - t))
    print(f"reading {lon.size} cells of 256 px float16 patches from a patch cache (median of 8):")
    base = statistics.median(rates["Zarr array API, one block read"])
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"  {name:<36} {rate:8,.0f} cells/s  ({rate / base:.2f}x)")


def full_pipeline(device, precision: str, batch: int = 256, prefetch: int = 2, source=None):
    """The full-size stack: CLIP ViT-B/16 satellite tower on 256 px patches, GeoCLIP's
    architecture and the 27.3 M ProM3E, random weights (seeded), context sat + loc."""
    from prom3e_geo.encoders.clip import SatelliteEncoder
    from prom3e_geo.encoders.location import LocationEncoder, LocationNet
    from prom3e_geo.engine.cells import CellContext
    from prom3e_geo.engine.pipeline import Pipeline
    from prom3e_geo.model import ProM3E
    from prom3e_geo.plugins.demo.source import DemoSource

    device = resolve_device(device)
    precision = resolve_precision(precision, device)
    torch.manual_seed(0)
    encoders = {
        "sat": SatelliteEncoder(vit_b16_satellite_tower(), device),
        "loc": LocationEncoder(LocationNet(), device),
    }
    model = ProM3E().to(device).eval()
    for encoder in encoders.values():
        encoder.amp = precision
    spec = PipelineSpec(model="full-size", context=("sat", "loc"), batch_size=batch,
                        prefetch=prefetch)  # fmt: skip
    cells = CellContext(encoders, source or DemoSource(size=256))
    return Pipeline(spec, model, cells, {}, precision)


def full_size(
    cells: int, cached: bool, device: str, precision: str, batches: list[int], prefetch: int
) -> None:
    """The engine with the full-size stack (`full_pipeline`) at each batch size."""
    from prom3e_geo.plugins.demo.source import DemoSource
    from prom3e_geo.stores.patch_reader import CacheSource

    grid, chunk = measured_chunk(16 if cells <= 256 else 64)
    source = DemoSource(size=256)
    if cached:
        source = CacheSource(cache_of_chunk(source, grid, chunk))
    where = "patches read from a patch cache" if cached else "patches rendered by the demo source"
    for batch in batches:
        pipeline = full_pipeline(device, precision, batch, prefetch, source)
        label = f"full-size stack (ViT-B/16 + GeoCLIP + 27.3 M ProM3E), {where}"
        compare(pipeline, grid, chunk, cells, label, 8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=8192)
    parser.add_argument("--full-cells", type=int, default=256)
    parser.add_argument("--full-batch", default="64", help="batch sizes, comma-separated")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--precision", default="auto", help="auto, bf16 or float32")
    parser.add_argument("--prefetch", type=int, default=2, help="batches gathered ahead")
    parser.add_argument(
        "--parts",
        default="demo,rss,cache-read,full,full-cache",
        help="which of demo, rss, cache-read, full (patches rendered), full-cache to run",
    )
    parser.add_argument(
        "--million", action="store_true", help="also 10^6 cells (location context, ~10 min)"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if "demo" in parts:
        device = resolve_device(args.device)
        if resolve_precision(args.precision, device) != "float32":
            precision_agreement(args.device, args.precision)
        for cached in (False, True):
            demo_comparison(args.cells, cached, args.device, args.precision, args.prefetch)
    if "rss" in parts:
        print("peak RSS of `prom3e-geo embed` (demo pipeline, fresh process each):")
        runs = [(0.1, "-100,30,-90,40", "sat,loc,env"), (0.05, "-110,30,-90,40", "sat,loc,env")]
        if args.million:
            runs += [(0.1, "-100,30,-90,40", "loc"), (0.028, "conus", "loc")]
        for resolution, aoi, context in runs:
            cells, rss, seconds = peak_rss(resolution, aoi, context, args.device)
            print(
                f"  {cells:>9,} cells, context {context:<11}: peak RSS {rss:6,.0f} MiB, "
                f"{seconds:5.0f} s ({cells / seconds:,.0f} cells/s)"
            )
    if "cache-read" in parts:
        cache_read()
    batches = [int(b) for b in args.full_batch.split(",")]
    if (
        "full" in parts
        and resolve_precision(args.precision, resolve_device(args.device)) != "float32"
    ):
        precision_agreement(args.device, args.precision, full_pipeline, "full-size stack")
    for part, cached in (("full", False), ("full-cache", True)):
        if part in parts:
            full_size(args.full_cells, cached, args.device, args.precision, batches, args.prefetch)


if __name__ == "__main__":
    main()
