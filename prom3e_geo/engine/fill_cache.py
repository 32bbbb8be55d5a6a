"""Filling a patch cache: one patch per grid cell from an imagery source, resumable.

Chunk by chunk, in batches: two batches are fetched at once (a source's own download pool
never runs dry between batches), each batch's patches are cast and written to their chunk
files by writer threads while the next ones are fetched, and a chunk's status and completion
marker are written once its patches are. What is held is a bounded number of batches, whatever
the chunk size. One fetch at a time fills a cache (`stores.grid_store.building`)."""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from prom3e_geo.errors import RunFailed
from prom3e_geo.grid import Chunk, Grid
from prom3e_geo.imagery.base import PatchBatch, PatchSource
from prom3e_geo.stores.grid_store import array_of, building, scatter
from prom3e_geo.stores.patches import INVALID, OK, CellFiles, PatchCache

log = logging.getLogger(__name__)


FETCHES_AHEAD = 2  # batches fetched at once
WRITERS = 2  # threads casting, encoding and writing fetched patches
WRITES_IN_FLIGHT = 1  # batches fetched and still being written, at most


@dataclass
class Unfinished:
    """A chunk fetched, whose patches are being written: its status waits for them."""

    number: int  # its place in the run's work, from 1
    chunk: Chunk
    retry: bool  # cells fetched again, each finished on its own
    cells: np.ndarray  # flat indices in the chunk
    status: np.ndarray  # OK or INVALID per cell
    writes: list[Future[None]] = field(default_factory=list)


@dataclass(frozen=True)
class BatchJob:
    """Cells of one chunk fetched in one call of the source."""

    chunk: Unfinished
    part: slice  # of the chunk's cells
    lon: np.ndarray
    lat: np.ndarray
    at: tuple[np.ndarray, np.ndarray]  # grid rows and columns of the cells
    last: bool  # the chunk's last batch


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
    display = getattr(source, "radiometry", "reflectance") == "display"  # uint8 RGB
    if display:
        manifest["radiometry"] = "display"
    # one fetch at a time fills a cache: a second one waits, then finds its chunks done
    with building(cache):
        store = PatchCache.open_or_create(
            cache, grid, manifest, size=size, bands=source.bands, display=display
        )
        pending = store.pending()
        failed = store.chunks_with_failures() if retry_failed else []
        total = sum(1 for c in grid.chunks() if grid.mask[c.rows, c.cols].any())
        summary = FetchSummary(str(cache), total, total - len(pending))
        work = [(c, False) for c in pending] + [(c, True) for c in failed]
        if work:
            log.info("grid: %s; %d chunk(s) to fetch", grid.describe(), len(work))
        status_array = array_of(store.group, "status")
        files = CellFiles(store.location, store.group)

        def finish(unfinished: Unfinished) -> None:
            """Once its patches are written: a chunk's status, and its marker (or, for cells
            fetched again, each one's status)."""
            for write in unfinished.writes:
                write.result()
            chunk, cells, status = unfinished.chunk, unfinished.cells, unfinished.status
            if unfinished.retry:
                rows, cols = np.divmod(cells, chunk.shape[1])
                for k in np.flatnonzero(status == OK):
                    status_array[chunk.row0 + rows[k], chunk.col0 + cols[k]] = OK
                summary.cells_retried += cells.size
            else:
                status_array[chunk.rows, chunk.cols] = scatter(chunk, cells, status, 0, np.uint8)
                store.mark_done(chunk)
            summary.cells_fetched += int((status == OK).sum())
            summary.cells_invalid += int((status == INVALID).sum())
            if progress:
                progress(min(summary.chunks_done_before + unfinished.number, total), total)

        # two batches are fetched at once (a source's own download pool never runs dry between
        # batches) while the writer threads cast and write the batch before; a chunk is finished
        # (status, marker) when the next one has been fetched, by then its writes are done
        jobs = _batches(work, grid, status_array, batch_size)
        fetcher = ThreadPoolExecutor(FETCHES_AHEAD, thread_name_prefix="prom3e-fetch")
        writer = ThreadPoolExecutor(WRITERS, thread_name_prefix="prom3e-cache-write")
        fetching: deque[tuple[BatchJob, Future[PatchBatch]]] = deque()
        writing: deque[Future[None]] = deque()
        unfinished: Unfinished | None = None

        def fetch_next() -> None:
            if (job := next(jobs, None)) is not None:
                fetching.append((job, fetcher.submit(source.fetch, job.lon, job.lat)))

        try:
            with store.writing():  # a full disk names the cache
                for _ in range(FETCHES_AHEAD):
                    fetch_next()
                while fetching:
                    job, fetched = fetching.popleft()
                    batch = fetched.result()
                    fetch_next()
                    job.chunk.status[job.part] = np.where(batch.valid, OK, INVALID)
                    summary.reasons.update(m["error"] for m in batch.meta if "error" in m)
                    write = writer.submit(files.write, *job.at, batch.patches, batch.valid)
                    job.chunk.writes.append(write)
                    writing.append(write)
                    while len(writing) > WRITES_IN_FLIGHT:  # memory: a bounded number of batches
                        writing.popleft().result()
                    if job.last:
                        if unfinished is not None:
                            finish(unfinished)
                        unfinished = job.chunk
                if unfinished is not None:
                    finish(unfinished)
                store.finish()
        finally:
            fetcher.shutdown(wait=True, cancel_futures=True)
            writer.shutdown(wait=True, cancel_futures=True)
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


def _batches(
    work: list[tuple[Chunk, bool]], grid: Grid, status: zarr.Array[Any], batch_size: int
) -> Iterator[BatchJob]:
    """The batches of cells to fetch, chunk by chunk: a chunk's cells inside the AOI, or those
    that had failed (`retry`)."""
    for number, (chunk, retry) in enumerate(work, start=1):
        inside = grid.mask[chunk.rows, chunk.cols].ravel()
        before = np.asarray(status[chunk.rows, chunk.cols]).ravel()
        cells = np.flatnonzero(inside & (before == INVALID) if retry else inside)
        lon, lat = (a.ravel()[cells] for a in grid.lonlat(chunk))
        rows, cols = np.divmod(cells, chunk.shape[1])
        fetched = Unfinished(number, chunk, retry, cells, np.zeros(cells.size, np.uint8))
        starts = range(0, cells.size, batch_size)
        for start in starts:
            part = slice(start, start + batch_size)
            at = (chunk.row0 + rows[part], chunk.col0 + cols[part])
            yield BatchJob(fetched, part, lon[part], lat[part], at, start == starts[-1])
