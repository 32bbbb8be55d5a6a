"""The patch cache: one fetched patch per grid cell, in a resumable Zarr store.

`prom3e_geo.engine.fill_cache.fill_patch_cache` fills it chunk by chunk, with a completion marker per grid
chunk (`stores.grid_store.GridStore`); `stores.patch_reader.CacheSource` reads it back as an
imagery source. A cache whose manifest (source, patch size, grid) differs is refused. Each
cell's patch is its own Zarr chunk, so reading one cell back reads one file.

Arrays: `patches` (y, x, py, px, band) float16 reflectance (the source's bands; NaN where none),
or uint8 for a source of display RGB (`radiometry = "display"`, the s2cloudless tiles: kept
exactly, in half the bytes; 0 where none); `status` (y, x) uint8: 0 not in the AOI, 1 fetched,
2 invalid (e.g. outside the rasters or mostly nodata); the reasons for invalid cells are counted
in the returned summary. (Caches of display RGB written before held it as float16; they are
read as before.)

Zarr's array API handles each chunk in Python on one event-loop thread (about 1 ms a 256 px
patch written, as much again as the encoding and the file write themselves), so the writer and
the reader (`stores.patch_reader`) go to the chunk files directly through `CellFiles`: the
layout is fixed here (Zarr v2, one C-order chunk per cell, no filters), and the files are those
Zarr itself writes and reads (xarray and zarr open the cache as before).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.core.metadata import ArrayV2Metadata

from prom3e_geo.errors import SourceError
from prom3e_geo.grid import Chunk, Grid
from prom3e_geo.stores.grid_store import ArrayFactory, GridStore, array_of, read_array
from prom3e_geo.stores.location import Location

OK, INVALID = 1, 2
CELL_TYPES = (np.dtype("<f2"), np.dtype("u1"))  # reflectance, display RGB


class PatchCache(GridStore):
    """The patch cache (see the module docstring)."""

    kind = "patch cache"

    @staticmethod
    def _declare(
        array: ArrayFactory,
        grid: Grid,
        size: int = 256,
        bands: tuple[str, ...] = (),
        display: bool = False,
    ) -> None:
        h, w = grid.shape
        ch, cw = grid.chunk_shape
        what = "display RGB" if display else "surface reflectance"
        array(
            "patches",
            (h, w, size, size, len(bands)),
            (1, 1, size, size, len(bands)),
            "uint8" if display else "float16",
            0 if display else np.nan,
            ("y", "x", "py", "px", "band"),
            long_name=f"{what} ({', '.join(bands)})",
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


class CellFiles:
    """The chunk files of a patch cache's `patches` array, one per cell: encoded and decoded
    with the array's own compressor (numcodecs, which releases the GIL), so several threads
    read or write at once; on object storage through the location's file system."""

    def __init__(self, location: Location, group: zarr.Group) -> None:
        self.location = location
        metadata = array_of(group, "patches").metadata
        self.dtype = np.dtype(metadata.dtype.to_native_dtype())
        if (
            not isinstance(metadata, ArrayV2Metadata)
            or tuple(metadata.chunks) != (1, 1, *metadata.shape[2:])
            or metadata.order != "C"
            or metadata.filters
            or metadata.compressor is None
            or self.dtype not in CELL_TYPES
        ):
            raise SourceError(
                f"patch cache {location.text} has an unknown layout (one it did not write)"
            )
        self.fill = metadata.fill_value or 0  # none for uint8: Zarr reads 0
        self._key = metadata.encode_chunk_key
        self._compressor: Any = metadata.compressor
        self._fs = None if location.is_local else location.filesystem()

    def path(self, row: int, col: int) -> str:
        return self.location.child(f"patches/{self._key((row, col, 0, 0, 0))}")

    def read(self, row: int, col: int, out: np.ndarray) -> bool:
        """The cell's patch into `out` (contiguous, of `dtype`; the fill value where no file
        is); False when its file does not decode (zeros in `out` then)."""
        path = self.path(row, col)
        try:
            data = self._fs.cat_file(path) if self._fs else Path(path).read_bytes()
        except FileNotFoundError:
            out[...] = self.fill
            return True
        try:
            self._compressor.decode(data, out=out)
        except (RuntimeError, ValueError):
            out[...] = 0
            return False
        return True

    def write(
        self, rows: np.ndarray, cols: np.ndarray, patches: np.ndarray, keep: np.ndarray
    ) -> None:
        """Cell (rows[i], cols[i]) gets patches[i] (cast to `dtype`) where keep[i], and no file
        (the fill value) where not, so that a cell fetched again never keeps a stale patch. On
        object storage the batch's objects are put together (fsspec's `pipe`, concurrent on
        s3fs and the other async file systems) rather than one round trip after another."""
        cells = zip(rows.tolist(), cols.tolist(), patches, keep.tolist(), strict=True)
        objects: dict[str, bytes] = {}
        for row, col, patch, kept in cells:
            path = self.path(row, col)
            if kept:
                data = self._compressor.encode(np.ascontiguousarray(patch, dtype=self.dtype))
                if self._fs is None:
                    Path(path).write_bytes(data)
                else:
                    objects[path] = data
            elif self._fs is None:
                Path(path).unlink(missing_ok=True)
            elif self._fs.exists(path):
                self._fs.rm_file(path)
        if self._fs is not None and objects:
            self._fs.pipe(objects)
