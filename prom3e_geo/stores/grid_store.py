"""Grid stores: Zarr groups on a grid with a run manifest and per-chunk completion markers.

The embedding store (`stores.embeddings`) and the patch cache (`stores.patches`) are grid stores.
Arrays are chunked by grid chunks, so every grid chunk is written as its own set of Zarr chunks:
writers of different chunks (threads, Dask workers) never touch the same file, and a chunk's
marker is set only after its data are written. The run manifest lives in the group attributes;
opening a store with a different manifest is refused rather than mixed.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
import zarr

from prom3e_geo.errors import InputError, StoreMismatchError
from prom3e_geo.grid import Chunk, Grid, gdal_crs_attribute, grid_coords
from prom3e_geo.partials import partial_path, remove, remove_stale_partials

MANIFEST_KEY = "prom3e_geo_manifest"

log = logging.getLogger(__name__)


def is_zarr_store(path: Path) -> bool:
    """True for a folder holding Zarr v2 or v3 group metadata."""
    return any((Path(path) / name).is_file() for name in (".zgroup", "zarr.json"))


class GridStore:
    """A Zarr group on a grid with a run manifest and per-chunk completion markers.

    Subclasses declare their arrays in `_declare`; `open_or_create` creates the group, or reopens
    it when the manifest matches and refuses it otherwise.
    """

    kind = "store"

    def __init__(self, path: str | Path, grid: Grid) -> None:
        self.path = Path(path)
        self.grid = grid
        self.group = zarr.open_group(str(self.path), mode="r+")

    @classmethod
    def open_or_create(cls, path: str | Path, grid: Grid, manifest: dict, **layout):
        """Create the store, or reopen it when its manifest matches (refuse otherwise).

        The skeleton (coordinates, arrays, markers, manifest) is built under a temporary name
        and renamed into place, so a store folder always has its manifest, however the run
        ends; a skeleton without one, left by an interrupted creation, is replaced."""
        path = Path(path)
        chunks_with_cells = sum(1 for c in grid.chunks() if grid.mask[c.rows, c.cols].any())
        manifest = json.loads(
            json.dumps({**manifest, "chunks_with_cells": chunks_with_cells})
        )  # normalise tuples
        if not path.parent.exists():
            raise InputError(f"output folder {path.parent} does not exist")
        remove_stale_partials(path)
        if path.exists() and not _unfinished_skeleton(path):
            if not is_zarr_store(path):
                raise InputError(f"{path} exists and is not a {cls.kind}")
            existing = read_manifest(path)
            if existing != manifest:
                diff = sorted(
                    k for k in set(existing) | set(manifest) if existing.get(k) != manifest.get(k)
                )
                raise StoreMismatchError(
                    f"{cls.kind} {path} was made by a different run (differs in: {', '.join(diff)}); "
                    "refusing to mix runs: choose another output or delete it"
                )
            return cls(path, grid)
        staging = partial_path(path)
        remove(staging)
        try:
            _create(staging, grid, manifest, lambda array: cls._declare(array, grid, **layout))
            remove(path)  # an unfinished skeleton of an earlier run, if any
            os.replace(staging, path)
        except BaseException:
            remove(staging)
            raise
        return cls(path, grid)

    @staticmethod
    def _declare(array, grid: Grid, **layout) -> None:
        """Create the subclass's arrays with `array(name, shape, chunks, dtype, fill, dims, **attrs)`."""

    # -- chunk bookkeeping ----------------------------------------------------------------------
    def chunk_position(self, chunk: Chunk) -> tuple[int, int]:
        ch, cw = self.grid.chunk_shape
        return chunk.row0 // ch, chunk.col0 // cw

    def pending(self) -> list[Chunk]:
        """Chunks with cells inside the AOI that are not complete yet."""
        done = self.group["chunk_done"][:]
        return [
            c
            for c in self.grid.chunks()
            if self.grid.mask[c.rows, c.cols].any() and not done[self.chunk_position(c)]
        ]

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Writes to the store: a full or read-only disk raises Zarr's OSError without a file
        name; it gets the store's path here, so that the message says where it happened."""
        try:
            yield
        except OSError as exc:
            if exc.filename is None and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
                raise OSError(exc.errno, exc.strerror, str(self.path)) from exc
            raise

    def mark_done(self, chunk: Chunk) -> None:
        self.group["chunk_done"][self.chunk_position(chunk)] = 1

    def finish(self) -> None:
        zarr.consolidate_metadata(str(self.path))


@contextmanager
def building(path: str | Path) -> Iterator[None]:
    """Hold the right to build or finish the store at `path`: an exclusive `flock` on
    `.NAME.lock` beside it (the kernel releases it if the process dies). A second run on the
    same store (two maps of one area sharing the cache) waits, saying so, and then finds the
    chunks done instead of computing them again. The lock file is removed when the block ends
    normally (the store is complete: whoever locks it next finds nothing to do)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"output folder {path.parent} does not exist")
    lock = path.with_name(f".{path.name}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another run that is building %s", path)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
        lock.unlink(missing_ok=True)
    finally:
        os.close(fd)


def scatter(chunk: Chunk, cells: np.ndarray, values: np.ndarray, fill, dtype) -> np.ndarray:
    """Values of a chunk's listed cells (flat indices) placed in a [h, w, ...] block."""
    h, w = chunk.shape
    out = np.full((h * w, *values.shape[1:]), fill, dtype=dtype)
    out[cells] = values
    return out.reshape(h, w, *values.shape[1:])


def _unfinished_skeleton(path: Path) -> bool:
    """A Zarr group with no manifest and no finished chunk: what an interrupted creation by an
    earlier version left (it created the folder first and the manifest last)."""
    if not (path.is_dir() and is_zarr_store(path)):
        return False
    try:
        group = zarr.open_group(str(path), mode="r")
        if MANIFEST_KEY in group.attrs:
            return False
        done = group["chunk_done"][:] if "chunk_done" in group else np.zeros(1)
    except Exception:  # unreadable metadata: not ours to judge
        return False
    return not np.asarray(done).any()


def read_manifest(path: str | Path) -> dict:
    group = zarr.open_group(str(path), mode="r")
    raw = group.attrs.get(MANIFEST_KEY)
    if raw is None:
        raise InputError(f"{path} is not a prom3e-geo store (no manifest)")
    return json.loads(raw)


def _create(path: Path, grid: Grid, manifest: dict, declare) -> None:
    """Coordinates, CRS, the AOI mask, completion markers and the manifest; `declare` adds the
    store's own arrays. Arrays on the grid (dims starting `y`, `x`) get the CF `grid_mapping` and
    GDAL's `_CRS` (`grid.gdal_crs_attribute`)."""
    coords = (
        xr.Dataset(coords=grid_coords(grid))
        .rio.write_crs(grid.crs)
        .rio.write_transform(grid.transform)
    )
    coords.to_zarr(path, mode="w-", zarr_format=2, consolidated=False)
    group = zarr.open_group(str(path), mode="r+")
    ch, cw = grid.chunk_shape
    h, w = grid.shape

    spatial = {"grid_mapping": "spatial_ref", "_CRS": gdal_crs_attribute(grid.crs)}

    def array(name, shape, chunks, dtype, fill, dims, **attrs):
        # integer markers get no fill value: xarray would otherwise decode their 0s as NaN
        fill = None if dtype == "uint8" else fill
        arr = group.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill)
        georef = spatial if tuple(dims[:2]) == ("y", "x") else {}  # CF and GDAL's own CRS
        arr.attrs.update({"_ARRAY_DIMENSIONS": list(dims), **attrs, **georef})
        return arr

    declare(array)
    array(
        "chunk_done",
        (-(-h // ch), -(-w // cw)),
        (1, 1),
        "uint8",
        0,
        ("chunk_y", "chunk_x"),
        long_name="grid chunk completion markers",
    )
    aoi = array(
        "aoi",
        (h, w),
        (ch, cw),
        "uint8",
        0,
        ("y", "x"),
        long_name="1 inside the AOI",
    )
    aoi[:] = grid.mask.astype(np.uint8)
    group.attrs[MANIFEST_KEY] = json.dumps(manifest)
    zarr.consolidate_metadata(str(path))


def grid_from_store(ds: xr.Dataset) -> Grid:
    """The grid a store was computed on (CRS, transform, shape, AOI mask, chunking)."""
    from affine import Affine
    from rasterio.crs import CRS

    manifest = json.loads(ds.attrs[MANIFEST_KEY])
    g = manifest["grid"]
    return Grid(
        CRS.from_user_input(g["crs"]),
        Affine(*g["transform"]),
        tuple(g["shape"]),
        np.asarray(ds["aoi"].values, dtype=bool),
        g["aoi"],
        tuple(manifest["chunk_shape"]),
    )
