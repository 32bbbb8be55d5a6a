"""The `cache:PATH` source: patches read back from a patch cache written by `prom3e-geo fetch`.

Fetch once (resumably, with the network source's retries and quotas), then embed, map and
re-map from the cache as often as needed. A cell takes the cached patch of the cache-grid cell
containing its centre; cells outside the cache's grid, not fetched when the cache was opened, or
invalid at fetch time are invalid here, with that reason. `size` (if given) must match the
cache; `resolution` is accepted, as every source takes it, and fixed by the cache.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr
import zarr

from prom3e_geo.errors import InputError
from prom3e_geo.imagery.base import PatchBatch
from prom3e_geo.io.outputs import is_zarr_store
from prom3e_geo.store import grid_from_store, read_manifest

REASONS = {0: "not fetched into the cache", 2: "invalid when fetched"}


class CacheSource:
    """Patches from a patch cache (see the module docstring)."""

    name = "cache"

    def __init__(self, path: str | Path, size: int | None = None, resolution=None) -> None:
        self.path = Path(path)
        if not (self.path.is_dir() and is_zarr_store(self.path)):
            raise InputError(f"patch cache {self.path} does not exist")
        self.manifest = read_manifest(self.path)
        if not {"size_px", "bands", "source"} <= set(self.manifest):
            raise InputError(f"{self.path} is not a patch cache (run `prom3e-geo fetch`)")
        self.size = int(self.manifest["size_px"])
        self.bands = tuple(self.manifest["bands"])
        if size is not None and int(size) != self.size:
            raise InputError(f"patch cache {self.path} holds {self.size} px patches, not {size}")
        self.group = zarr.open_group(str(self.path), mode="r")
        self.grid = grid_from_store(xr.open_zarr(self.path, consolidated=False))
        self.status = np.asarray(self.group["status"][:]).ravel()

    def describe(self) -> dict:
        return {
            "source": "cache",
            "path": str(self.path),
            "fetched_from": self.manifest["source"],
            "size_px": self.size,
            "bands": list(self.bands),
        }

    def fetch(self, lon: np.ndarray, lat: np.ndarray) -> PatchBatch:
        index = self.grid.cell_index_lonlat(np.ravel(lon), np.ravel(lat))
        state = np.where(index >= 0, self.status[np.maximum(index, 0)].astype(np.int16), -1)
        batch = PatchBatch(
            np.zeros((index.size, self.size, self.size, len(self.bands)), dtype=np.float16),
            state == 1,
            [
                {"scene": f"cache {self.path.name}"}
                if s == 1
                else {"error": REASONS.get(int(s), "outside the cache's grid")}
                for s in state
            ],
        )
        ok = np.flatnonzero(batch.valid)
        if ok.size:
            rows, cols = np.divmod(index[ok], self.grid.width)
            patches = self.group["patches"]
            r0, c0, r1, c1 = rows.min(), cols.min(), rows.max() + 1, cols.max() + 1
            if (r1 - r0) * (c1 - c0) <= 2 * ok.size:
                # a compact block (as grid batches are): one read, whose chunks (one per cell)
                # Zarr fetches concurrently, far faster than a read per cell
                batch.patches[ok] = patches[r0:r1, c0:c1][rows - r0, cols - c0]
            else:  # scattered cells: read only theirs
                for i, row, col in zip(ok, rows, cols, strict=True):
                    batch.patches[i] = patches[row, col]
        return batch
