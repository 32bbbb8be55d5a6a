"""The `cache:PATH` source: patches read back from a patch cache written by `prom3e-geo fetch`.

Fetch once (resumably, with the network source's retries and quotas), then embed, map and
re-map from the cache as often as needed. A cell takes the cached patch of the cache-grid cell
containing its centre; cells outside the cache's grid, not fetched when the cache was opened, or
invalid at fetch time are invalid here, with that reason. `size` and `resolution` (if given:
the pipeline's) must match the cache's. It is the imagery source `cache:PATH` (registered in the `prom3e_geo.sources` group).

Reads are the hot path of a grid run from a cache (on a GPU the models outpace them). Zarr's
array API handles each chunk (one per cell) in Python on one event-loop thread, which holds a
read to about 2,000 256-px patches/s whatever the cores, so the cache's chunk files are read and
decoded (`stores.patches.CellFiles`) straight into the batch by `threads` threads, each taking
a share of the cells; a chunk file that is absent holds the fill value, as in Zarr, and one that
does not decode makes its cell invalid, with that reason, instead of failing the run.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from prom3e_geo.errors import SourceError
from prom3e_geo.imagery.base import PatchBatch
from prom3e_geo.stores.grid_store import (
    grid_from_store,
    is_zarr_store,
    open_group,
    read_array,
    read_manifest,
)
from prom3e_geo.stores.location import Location
from prom3e_geo.stores.patches import CellFiles

REASONS = {0: "not fetched into the cache", 2: "invalid when fetched"}


class CacheSource:
    """Patches from a patch cache (see the module docstring)."""

    name = "cache"

    def __init__(
        self,
        path: str | Path,
        size: int | None = None,
        resolution: float | None = None,
        threads: int | None = None,
    ) -> None:
        self.location = Location.parse(path)
        self.path = self.location.text
        if not is_zarr_store(self.location):
            raise SourceError(f"patch cache {self.path} does not exist")
        self.manifest = read_manifest(self.path)
        if not {"size_px", "bands", "source"} <= set(self.manifest):
            raise SourceError(f"{self.path} is not a patch cache (run `prom3e-geo fetch`)")
        self.size = int(self.manifest["size_px"])
        self.bands = tuple(self.manifest["bands"])
        # display RGB goes back out as uint8 (from a uint8 array, or the float16 one of a cache
        # written before, which held its values exactly)
        self.radiometry = self.manifest.get("radiometry", "reflectance")
        if size is not None and int(size) != self.size:
            raise SourceError(
                f"patch cache {self.path} holds {self.size} px patches, not the {size} px this "
                f"pipeline uses (fetch again with --size {size})"
            )
        held = self.manifest["source"].get("resolution_m")
        if resolution is not None and held is not None and float(held) != float(resolution):
            raise SourceError(
                f"patch cache {self.path} holds patches at {held} m, not the {resolution} m this "
                f"pipeline uses (fetch again with --patch-resolution {resolution})"
            )
        group = open_group(self.location)
        store = self.location.zarr_store(read_only=True)
        self.grid = grid_from_store(xr.open_zarr(store, consolidated=False))
        self.status = read_array(group, "status").ravel()
        self._files = CellFiles(self.location, group)
        self.threads = threads or min(16, 2 * (os.cpu_count() or 1))  # reads also wait on I/O
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="prom3e-cache-read")

    def describe(self) -> dict[str, Any]:
        return {
            "source": "cache",
            "path": str(self.path),
            "fetched_from": self.manifest["source"],
            "size_px": self.size,
            "bands": list(self.bands),
        }

    def close(self) -> None:
        """Stop the reader threads."""
        self._pool.shutdown(wait=True)

    def fetch(self, lon: np.ndarray, lat: np.ndarray) -> PatchBatch:
        index = self.grid.cell_index_lonlat(np.ravel(lon), np.ravel(lat))
        state = np.where(index >= 0, self.status[np.maximum(index, 0)].astype(np.int16), -1)
        batch = PatchBatch(
            np.zeros((index.size, self.size, self.size, len(self.bands)), self._files.dtype),
            state == 1,
            [
                {"scene": f"cache {self.location.name}"}
                if s == 1
                else {"error": REASONS.get(int(s), "outside the cache's grid")}
                for s in state
            ],
        )
        ok = np.flatnonzero(batch.valid)
        rows, cols = np.divmod(index[ok], self.grid.width)
        shares = np.array_split(np.arange(ok.size), self.threads)
        reads = [
            self._pool.submit(self._read, batch.patches, ok[s], rows[s], cols[s])
            for s in shares
            if s.size
        ]
        for read in reads:
            for i in read.result():
                batch.valid[i] = False
                batch.meta[i] = {"error": "unreadable in the cache (corrupt chunk file)"}
        if self.radiometry == "display" and batch.patches.dtype != np.uint8:
            batch.patches = np.nan_to_num(batch.patches).astype(np.uint8)
        return batch

    def _read(
        self, out: np.ndarray, at: np.ndarray, rows: np.ndarray, cols: np.ndarray
    ) -> list[int]:
        """Decode the cells' chunk files into out[at]; returns the cells whose chunk file does
        not decode."""
        return [
            int(i)
            for i, row, col in zip(at, rows, cols, strict=True)
            if not self._files.read(int(row), int(col), out[i])
        ]
