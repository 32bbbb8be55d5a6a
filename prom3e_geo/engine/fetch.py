"""Fetching: one patch per grid cell from an imagery source into a resumable patch cache."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from prom3e_geo.grid import Grid
from prom3e_geo.imagery.base import PatchSource
from prom3e_geo.stores.grid_store import scatter
from prom3e_geo.stores.patches import INVALID, OK, PatchCache


@dataclass
class FetchSummary:
    cache: str
    chunks_total: int
    chunks_done_before: int
    cells_fetched: int = 0
    cells_invalid: int = 0
    reasons: Counter = field(default_factory=Counter)
    seconds: float = 0.0


def fetch_grid(
    source: PatchSource,
    grid: Grid,
    cache: str | Path,
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> FetchSummary:
    """Fill (or finish) the patch cache for every chunk of `grid` with the source's patches
    (`source.size` pixels square)."""
    started = time.perf_counter()
    size = source.size
    manifest = {
        "source": source.describe(),
        "size_px": size,
        "bands": list(source.bands),
        "grid": grid.to_dict(),
        "chunk_shape": list(grid.chunk_shape),
    }
    store = PatchCache.open_or_create(cache, grid, manifest, size=size, bands=source.bands)
    pending = store.pending()
    total = sum(1 for c in grid.chunks() if grid.mask[c.rows, c.cols].any())
    summary = FetchSummary(str(cache), total, total - len(pending))
    for i, chunk in enumerate(pending, start=1):
        cells = np.flatnonzero(grid.mask[chunk.rows, chunk.cols].ravel())
        lon, lat = (a.ravel()[cells] for a in grid.lonlat(chunk))
        patches = np.zeros((cells.size, size, size, len(source.bands)), dtype=np.float16)
        status = np.zeros(cells.size, dtype=np.uint8)
        for start in range(0, cells.size, batch_size):
            part = slice(start, start + batch_size)
            batch = source.fetch(lon[part], lat[part])
            patches[part] = batch.patches.astype(np.float16)
            status[part] = np.where(batch.valid, OK, INVALID)
            summary.reasons.update(meta["error"] for meta in batch.meta if "error" in meta)
        store.group["patches"][chunk.rows, chunk.cols] = scatter(
            chunk, cells, patches, np.nan, np.float16
        )
        store.group["status"][chunk.rows, chunk.cols] = scatter(chunk, cells, status, 0, np.uint8)
        store.mark_done(chunk)
        summary.cells_fetched += int((status == OK).sum())
        summary.cells_invalid += int((status == INVALID).sum())
        if progress:
            progress(summary.chunks_done_before + i, total)
    store.finish()
    summary.seconds = time.perf_counter() - started
    return summary
