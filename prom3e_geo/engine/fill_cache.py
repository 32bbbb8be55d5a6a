"""Filling a patch cache: one patch per grid cell from an imagery source, resumable."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from prom3e_geo.errors import RunFailed
from prom3e_geo.grid import Grid
from prom3e_geo.imagery.base import PatchSource
from prom3e_geo.stores.grid_store import array_of, scatter
from prom3e_geo.stores.patches import INVALID, OK, PatchCache

log = logging.getLogger(__name__)


@dataclass
class FetchSummary:
    cache: str
    chunks_total: int
    chunks_done_before: int
    cells_fetched: int = 0  # fetched fine in this run
    cells_invalid: int = 0  # failed in this run
    cells_retried: int = 0  # cells that had failed before and were fetched again
    reasons: Counter[str] = field(default_factory=Counter)  # why cells failed in this run
    cells_ok_in_cache: int = 0  # after the run
    cells_failed_in_cache: int = 0
    seconds: float = 0.0


def fill_patch_cache(
    source: PatchSource,
    grid: Grid,
    cache: str | Path,
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
    retry_failed: bool = True,
) -> FetchSummary:
    """Fill (or finish) the patch cache for every chunk of `grid` with the source's patches
    (`source.size` pixels square). Cells that failed in an earlier run (no network, a scene
    missing, a rate limit) are fetched again unless `retry_failed` is off; a run after which
    no cell of the cache holds a patch raises `RunFailed` with the reasons."""
    started = time.perf_counter()
    size = source.size
    manifest = {
        "source": source.describe(),
        "size_px": size,
        "bands": list(source.bands),
        "grid": grid.to_dict(),
        "chunk_shape": list(grid.chunk_shape),
    }
    if getattr(source, "radiometry", "reflectance") == "display":  # uint8 RGB, kept exactly
        manifest["radiometry"] = "display"
    store = PatchCache.open_or_create(cache, grid, manifest, size=size, bands=source.bands)
    pending = store.pending()
    failed = store.chunks_with_failures() if retry_failed else []
    total = sum(1 for c in grid.chunks() if grid.mask[c.rows, c.cols].any())
    summary = FetchSummary(str(cache), total, total - len(pending))
    work = [(c, False) for c in pending] + [(c, True) for c in failed]
    if work:
        log.info("grid: %s; %d chunk(s) to fetch", grid.describe(), len(work))
    patches_array = array_of(store.group, "patches")
    status_array = array_of(store.group, "status")
    with store.writing():  # a full disk names the cache
        for i, (chunk, retry) in enumerate(work, start=1):
            inside = grid.mask[chunk.rows, chunk.cols].ravel()
            before = np.asarray(status_array[chunk.rows, chunk.cols]).ravel()
            cells = np.flatnonzero(inside & (before == INVALID) if retry else inside)
            lon, lat = (a.ravel()[cells] for a in grid.lonlat(chunk))
            patches = np.zeros((cells.size, size, size, len(source.bands)), dtype=np.float16)
            status = np.zeros(cells.size, dtype=np.uint8)
            for start in range(0, cells.size, batch_size):
                part = slice(start, start + batch_size)
                batch = source.fetch(lon[part], lat[part])
                patches[part] = batch.patches  # cast in place: no float16 copy of the batch
                status[part] = np.where(batch.valid, OK, INVALID)
                summary.reasons.update(meta["error"] for meta in batch.meta if "error" in meta)
            if retry:  # the cells one by one: each is its own Zarr chunk
                rows, cols = np.divmod(cells, chunk.shape[1])
                for k in np.flatnonzero(status == OK):
                    r, c = chunk.row0 + rows[k], chunk.col0 + cols[k]
                    patches_array[r, c] = patches[k]
                    status_array[r, c] = OK
                summary.cells_retried += cells.size
            else:
                patches_array[chunk.rows, chunk.cols] = scatter(
                    chunk, cells, patches, np.nan, np.float16
                )
                status_array[chunk.rows, chunk.cols] = scatter(chunk, cells, status, 0, np.uint8)
                store.mark_done(chunk)
            summary.cells_fetched += int((status == OK).sum())
            summary.cells_invalid += int((status == INVALID).sum())
            if progress:
                progress(min(summary.chunks_done_before + i, total), total)
        store.finish()
    final = np.asarray(status_array[:])
    summary.cells_ok_in_cache = int((final == OK).sum())
    summary.cells_failed_in_cache = int((final == INVALID).sum())
    summary.seconds = time.perf_counter() - started
    if summary.cells_ok_in_cache == 0 and summary.cells_failed_in_cache > 0:
        reasons = "; ".join(f"{k}: {v:,}" for k, v in summary.reasons.most_common(3))
        raise RunFailed(
            f"fetch: every one of the {summary.cells_failed_in_cache:,} cells failed "
            f"({reasons or 'as in the earlier run'}); re-run to retry them"
        )
    return summary
