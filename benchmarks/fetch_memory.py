"""Peak memory and time of filling a patch cache, without the network: an instant source hands
out 256 px float32 RGB patches (786 KiB a cell) for one grid chunk of `--side` x `--side` cells,
batches of 256, into a cache on disk (under `--dir`). What it shows is what the engine holds:
before 2026-12-07 a chunk-sized float16 buffer (4,096 cells x 393 KiB for the default 64 x 64
chunk) besides the batch; now a bounded number of batches, whatever the chunk.

    python benchmarks/fetch_memory.py [--side 64] [--dir .]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from prom3e_geo.engine.fill_cache import fill_patch_cache
from prom3e_geo.grid import build_grid
from prom3e_geo.imagery.base import PatchBatch


class InstantSource:
    """Eight textures of reflectance, handed out in turn (a fresh array each batch)."""

    name, size, bands = "instant", 256, ("B04", "B03", "B02")

    def __init__(self) -> None:
        self.textures = np.random.default_rng(0).random((8, 256, 256, 3), dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        return {"source": "instant"}

    def fetch(self, lon: np.ndarray, lat: np.ndarray) -> PatchBatch:
        n = np.ravel(lon).size
        patches = self.textures[np.arange(n) % 8]  # a copy, as a source makes
        return PatchBatch(patches, np.ones(n, bool), [{"scene": "instant"}] * n)

    def close(self) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=64, help="cells along the chunk's edge")
    parser.add_argument("--dir", default=".", help="where the temporary cache goes")
    args = parser.parse_args()
    grid = build_grid("-100,33,-96,36", shape=(args.side, args.side), chunk_shape=(args.side,) * 2)
    source = InstantSource()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        started = time.perf_counter()
        fill_patch_cache(source, grid, Path(folder) / "cache.zarr", batch_size=256)
        seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cells = int(grid.mask.sum())
    print(
        f"{cells:,} cells: {seconds:.1f} s, peak RSS {peak:.0f} MiB ({before:.0f} before the fill)"
    )


if __name__ == "__main__":
    main()
