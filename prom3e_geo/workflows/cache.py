"""`cache list|clean`: the embedding stores that `sdm` and `uncertainty` build and keep."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from prom3e_geo.partials import remove
from prom3e_geo.settings import Settings
from prom3e_geo.stores.grid_store import read_manifest


@dataclass
class CachedStore:
    path: Path
    bytes: int
    modified: float  # seconds since the epoch
    model: str
    context: str
    grid: str
    complete: bool


def cached_stores(settings: Settings | None = None) -> list[CachedStore]:
    """The cached embedding stores, most recently used first."""
    folder = (settings or Settings.from_environment()).cache_dir / "stores"
    stores = []
    for path in sorted(folder.glob("*.zarr")) if folder.is_dir() else []:
        files = [p for p in path.rglob("*") if p.is_file()]
        try:
            manifest = read_manifest(path)
            done = int(np.asarray(zarr.open_group(str(path), mode="r")["chunk_done"]).sum())
            complete = done >= int(manifest.get("chunks_with_cells", 0))
            grid = manifest.get("grid", {})
            described = (
                f"{grid.get('aoi')} {grid.get('crs')} {'x'.join(map(str, grid.get('shape', [])))}"
            )
        except Exception:  # a store an older version left unreadable: still listed, to clean
            manifest, complete, described = {}, False, "unreadable"
        stores.append(
            CachedStore(
                path,
                sum(p.stat().st_size for p in files),
                max((p.stat().st_mtime for p in files), default=path.stat().st_mtime),
                str(manifest.get("model", "?")),
                "+".join(manifest.get("context", [])),
                described,
                complete,
            )
        )
    return sorted(stores, key=lambda s: -s.modified)


def clean_cache(
    older_than_days: float | None = None, settings: Settings | None = None
) -> list[CachedStore]:
    """Remove cached stores (those unused for `older_than_days`, or all); returns them."""
    cutoff = None if older_than_days is None else time.time() - older_than_days * 86400
    removed = []
    for store in cached_stores(settings):
        if cutoff is None or store.modified < cutoff:
            remove(store.path)
            removed.append(store)
    return removed
