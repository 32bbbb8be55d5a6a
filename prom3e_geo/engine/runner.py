"""The chunk runner: a pipeline over a whole grid into an embedding store.

`embed_grid` runs chunk by chunk, in fixed-size batches, with the inputs of the next `prefetch`
batches (patch fetches are I/O) gathered on threads while the current one is encoded, so memory
is bounded by the batch whatever the grid size. Finished chunks are skipped on a re-run; a store
made by a different pipeline is refused. `workers` or `scheduler` run one Dask task per chunk
instead, each writing its own region of the store.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prom3e_geo.engine.cells import infer_cells
from prom3e_geo.engine.pipeline import Pipeline, load_pipeline
from prom3e_geo.engine.spec import PipelineSpec
from prom3e_geo.errors import InputError, RunFailed
from prom3e_geo.grid import Chunk, Grid
from prom3e_geo.model.prom3e import MODALITIES
from prom3e_geo.runtime import release_freed_memory
from prom3e_geo.stores.embeddings import ChunkResult, EmbeddingStore
from prom3e_geo.stores.grid_store import building, read_array

log = logging.getLogger(__name__)


def compute_chunk(pipeline: Pipeline, grid: Grid, chunk: Chunk) -> ChunkResult:
    """All inside cells of one chunk, in batches, the inputs of the next `spec.prefetch` batches
    gathered on threads while the current one is encoded."""
    inside = np.flatnonzero(grid.mask[chunk.rows, chunk.cols].ravel())
    lon, lat = (a.ravel()[inside] for a in grid.lonlat(chunk))
    size, context, ahead = pipeline.spec.batch_size, pipeline.spec.context, pipeline.spec.prefetch
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("mu", "sigma", "recon")}
    ctx_parts: dict[str, list[np.ndarray]] = {m: [] for m in context}
    valid_parts: dict[str, list[np.ndarray]] = {m: [] for m in context}
    with ThreadPoolExecutor(max_workers=ahead) as pool:
        starts = iter(range(0, inside.size, size))

        def submit(start: int) -> Future[tuple[dict[str, Any], dict[str, np.ndarray]]]:
            part = slice(start, start + size)
            return pool.submit(pipeline.cells.gather, lon[part], lat[part], context)

        queue = deque(submit(start) for start in islice(starts, ahead))
        while queue:
            raw, valid = queue.popleft().result()
            queue.extend(submit(start) for start in islice(starts, 1))
            n = next(iter(valid.values())).size
            x = pipeline.cells.encode(raw, n)
            out = infer_cells(pipeline.model, x, context, pipeline.precision)
            parts["mu"].append(out.mu.numpy())
            parts["sigma"].append(out.sigma_l1.numpy())
            parts["recon"].append(out.recon_image.numpy())
            for m in context:
                ctx_parts[m].append(x[:, MODALITIES.index(m)].numpy())
                valid_parts[m].append(valid[m])
    return ChunkResult(
        chunk,
        inside,
        np.concatenate(parts["mu"]),
        np.concatenate(parts["sigma"]),
        np.concatenate(parts["recon"]),
        {m: np.concatenate(v) for m, v in ctx_parts.items()},
        {m: np.concatenate(v) for m, v in valid_parts.items()},
    )


@dataclass
class EmbedSummary:
    store: str
    chunks_total: int
    chunks_done_before: int
    chunks_computed: int  # in this run, retried chunks included
    cells_valid: int  # in the chunks computed in this run
    cells_invalid: int
    seconds: float
    chunks_retried: int = 0
    cells_valid_in_store: int = 0  # after the run
    cells_invalid_in_store: int = 0


def _dask_chunk(
    spec: PipelineSpec, grid: Grid, path: str, chunk: Chunk, threads: int
) -> tuple[int, int]:
    """One Dask task: compute a chunk and write its region (idempotent: recomputing rewrites the
    same values, so a lost worker's chunk can simply run again). It uses the submitting
    process's intra-op thread count: float summation order follows the thread count, and equal
    counts make the result bit-identical to a single-process run."""
    torch.set_num_threads(threads)
    return _compute_and_write(load_pipeline(spec), grid, EmbeddingStore(path, grid), chunk)


def _compute_and_write(
    pipeline: Pipeline, grid: Grid, store: EmbeddingStore, chunk: Chunk
) -> tuple[int, int]:
    """One chunk computed and written; returns its (valid, invalid) cell counts."""
    result = compute_chunk(pipeline, grid, chunk)
    with store.writing():
        store.write(result)
    counts = int(result.valid.sum()), int((~result.valid).sum())
    del result
    release_freed_memory()
    return counts


def embed_grid(
    spec: PipelineSpec,
    grid: Grid,
    out: str | Path,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    retry_failed: bool = True,
) -> EmbedSummary:
    """Fill (or finish) the embedding store at `out` for every chunk of `grid`. Finished chunks
    with cells that lacked an input (a patch that failed) are computed again unless
    `retry_failed` is off; a store left without a single valid cell raises `RunFailed`."""
    started = time.perf_counter()
    if scheduler is not None:  # before anything is created: an unreachable one leaves nothing
        _check_scheduler(scheduler)
    pipeline = load_pipeline(spec)
    warn_outside_coverage(pipeline, grid)
    with building(out):  # one run at a time computes a store; another waits, then reuses it
        manifest = {
            **pipeline.manifest,
            "grid": grid.to_dict(),
            "chunk_shape": list(grid.chunk_shape),
        }
        store = EmbeddingStore.open_or_create(
            out,
            grid,
            manifest,
            latent=pipeline.model.config.embed_dim,
            embed=pipeline.model.config.input_dim,
            context=list(spec.context),
        )
        fresh = store.pending()
        retried = store.chunks_with_failures() if retry_failed else []
        pending = fresh + retried
        total = sum(1 for c in grid.chunks() if grid.mask[c.rows, c.cols].any())
        done_before = total - len(fresh)
        if pending:  # long work ahead: say on what
            log.info("grid: %s; %d of %d chunks to compute", grid.describe(), len(pending), total)
        if progress:
            progress(done_before, total)
        if pending and (workers or scheduler):
            counts = _run_on_dask(spec, grid, out, pending, workers, scheduler)
        else:
            counts = (_compute_and_write(pipeline, grid, store, chunk) for chunk in pending)
        valid_cells = invalid_cells = 0
        for i, (ok, bad) in enumerate(counts, start=1):
            valid_cells, invalid_cells = valid_cells + ok, invalid_cells + bad
            if progress:
                progress(min(done_before + i, total), total)
        with store.writing():
            store.finish()
        valid = read_array(store.group, "valid").astype(bool)
        summary = EmbedSummary(
            str(out),
            total,
            done_before,
            len(pending),
            valid_cells,
            invalid_cells,
            time.perf_counter() - started,
            len(retried),
            int(valid.sum()),
            int((grid.mask & ~valid).sum()),
        )
        if summary.cells_valid_in_store == 0:
            raise RunFailed(
                f"embed: none of the {summary.cells_invalid_in_store:,} cells of {out} has all its "
                "inputs (every patch failed?); fix the source and re-run to retry them"
            )
        return summary


def warn_outside_coverage(pipeline: Pipeline, grid: Grid) -> None:
    """Log a warning when grid cells lie outside the area the model preset covers (the demo
    world is the contiguous USA): its maps there are extrapolations."""
    if pipeline.coverage is None:
        return
    lon, lat = (a[grid.mask] for a in grid.lonlat())
    minx, miny, maxx, maxy = pipeline.coverage
    outside = float(np.mean((lon < minx) | (lon > maxx) | (lat < miny) | (lat > maxy)))
    if outside > 0:
        log.warning(
            "%.0f%% of the grid's cells lie outside the area model %s covers (lon %g..%g, "
            "lat %g..%g): its values there are extrapolations",
            100 * outside, pipeline.manifest["model"], minx, maxx, miny, maxy,
        )  # fmt: skip


def _check_scheduler(address: str, timeout: str = "15s") -> None:
    """A scheduler that answers, checked before any work. A TCP address is first connected to
    directly: a closed port is refused in milliseconds, where Dask's client keeps retrying for
    the whole `timeout`."""
    import socket
    from urllib.parse import urlsplit

    from dask.distributed import Client

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme in ("tcp", "tls") and parts.hostname and parts.port:
        try:
            socket.create_connection((parts.hostname, parts.port), timeout=5).close()
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise InputError(f"cannot reach the Dask scheduler at {address}: {reason}") from None
    try:
        Client(address, timeout=timeout).close()  # type: ignore[no-untyped-call]  # distributed is untyped
    except OSError as exc:  # includes connection timeouts
        raise InputError(f"cannot reach the Dask scheduler at {address}: {exc}") from None


@contextmanager
def _environment_kept() -> Iterator[None]:
    """This process's environment as it was, once the block ends. distributed's nanny writes its
    workers' settings (`distributed.nanny.pre-spawn-environ`: `OMP_NUM_THREADS=1`, MKL's,
    OpenBLAS's) into the environment of the process that starts them, before each spawn, and
    never takes them back: a command started afterwards (a notebook's next run) would compute
    with one thread."""
    import dask
    import distributed  # noqa: F401  (loads the nanny's settings into dask's configuration)

    names = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}))
    before = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _run_on_dask(
    spec: PipelineSpec,
    grid: Grid,
    out: str | Path,
    pending: list[Chunk],
    workers: int | None,
    scheduler: str | None,
) -> Iterator[tuple[int, int]]:
    """Yield each chunk's (valid, invalid) counts as its Dask task finishes. A local cluster is
    closed however the run ends (a failed task, an interrupt)."""
    from contextlib import ExitStack

    from dask.distributed import Client, LocalCluster, as_completed

    with ExitStack() as stack:
        stack.enter_context(_environment_kept())  # left last: after the cluster has closed
        if scheduler is None:
            cluster = stack.enter_context(
                LocalCluster(  # type: ignore[no-untyped-call]  # distributed is untyped
                    n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
                )
            )
        client = stack.enter_context(
            Client(scheduler or cluster, timeout="15s")  # type: ignore[no-untyped-call]  # distributed is untyped
        )
        threads = torch.get_num_threads()
        futures = [
            client.submit(_dask_chunk, spec, grid, str(out), c, threads, pure=False, retries=3)
            for c in pending
        ]
        for future in as_completed(futures):  # type: ignore[no-untyped-call]  # distributed is untyped
            counts: tuple[int, int] = future.result()
            yield counts
