"""`fetch_patches` (the `fetch` command): one Sentinel-2 patch per grid cell into a patch cache."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prom3e_geo.engine.fill_cache import FetchSummary, fill_patch_cache
from prom3e_geo.imagery.base import PatchSource, open_source
from prom3e_geo.workflows.specs import GridSpec, Progress


@dataclass(frozen=True)
class FetchSpec:
    source: str
    cache: Path | str  # a path or an object-storage URL (stores.location)
    size: int | None = None  # patch edge in pixels (default: the source's own)
    resolution: float | None = None  # patch pixel size in metres (default: the source's own)
    batch_size: int = 256
    retry_failed: bool = True  # fetch again the cells that failed in an earlier run


@dataclass(frozen=True)
class FetchResult:
    summary: FetchSummary  # chunks and cells done, failed cells by reason
    traffic: dict[str, int]  # the source's own counts (requests, bytes, ...); empty if none


def fetch_patches(
    spec: FetchSpec,
    grid: GridSpec,
    *,
    progress: Callable[[PatchSource], Progress] | None = None,
) -> FetchResult:
    """Fill (or finish) the cache. `progress` is given the opened source (whose `stats` a
    progress display may show) and returns the chunk callback."""
    options = {"size": spec.size, "resolution": spec.resolution}
    source = open_source(spec.source, **{k: v for k, v in options.items() if v is not None})
    try:
        built = grid.build()
        summary = fill_patch_cache(
            source,
            built,
            spec.cache,
            spec.batch_size,
            progress(source) if progress else None,
            spec.retry_failed,
        )
        stats = source.stats() if hasattr(source, "stats") else {}
    finally:
        source.close()
    return FetchResult(summary, stats)
