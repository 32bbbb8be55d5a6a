"""The patch cache: one fetched patch per grid cell, in a resumable Zarr store.

`prom3e_geo.engine.fill_cache.fill_patch_cache` fills it chunk by chunk, with a completion marker per grid
chunk (`stores.grid_store.GridStore`); `stores.patch_reader.CacheSource` reads it back as an
imagery source. A cache whose manifest (source, patch size, grid) differs is refused. Each
cell's patch is its own Zarr chunk, so reading one cell back reads one file.

Arrays: `patches` (y, x, py, px, band) float16 reflectance (the source's bands), `status` (y, x)
uint8: 0 not in the AOI, 1 fetched, 2 invalid (e.g. outside the rasters or mostly nodata); the
reasons for invalid cells are counted in the returned summary.
"""

from __future__ import annotations

import numpy as np

from prom3e_geo.grid import Chunk, Grid
from prom3e_geo.stores.grid_store import ArrayFactory, GridStore, read_array

OK, INVALID = 1, 2


class PatchCache(GridStore):
    """The patch cache (see the module docstring)."""

    kind = "patch cache"

    @staticmethod
    def _declare(
        array: ArrayFactory, grid: Grid, size: int = 256, bands: tuple[str, ...] = ()
    ) -> None:
        h, w = grid.shape
        ch, cw = grid.chunk_shape
        array(
            "patches",
            (h, w, size, size, len(bands)),
            (1, 1, size, size, len(bands)),
            "float16",
            np.nan,
            ("y", "x", "py", "px", "band"),
            long_name=f"surface reflectance ({', '.join(bands)})",
        )
        array(
            "status",
            (h, w),
            (ch, cw),
            "uint8",
            0,
            ("y", "x"),
            long_name="0 outside the AOI, 1 fetched, 2 invalid",
        )

    def chunks_with_failures(self) -> list[Chunk]:
        """Finished chunks holding cells whose fetch failed (status 2)."""
        status = read_array(self.group, "status")
        done = read_array(self.group, "chunk_done")
        return [
            c
            for c in self.grid.chunks()
            if done[self.chunk_position(c)] and (status[c.rows, c.cols] == INVALID).any()
        ]
