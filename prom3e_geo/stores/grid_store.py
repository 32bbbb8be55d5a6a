"""Grid stores: Zarr groups on a grid with a run manifest and per-chunk completion markers.

The embedding store (`stores.embeddings`) and the patch cache (`stores.patches`) are grid stores.
Arrays are chunked by grid chunks, so every grid chunk is written as its own set of Zarr chunks:
writers of different chunks (threads, Dask workers) never touch the same file, and a chunk's
marker is set only after its data are written. The run manifest lives in the group attributes;
opening a store with a different manifest is refused rather than mixed.

A store is named by a local path or an object-storage URL (`stores.location`). On a local disk
the skeleton is built under a temporary name and renamed into place. Object storage has no
rename, so there the order of writes carries the guarantees: the skeleton's arrays first, the
manifest (the group attributes) after them, each chunk's data objects before its marker object,
and the consolidated metadata last; a group without a manifest is an unfinished skeleton, and a
reader accepts a store only when every chunk's marker is set. Builders take turns through
`building` (`flock` locally, `stores.object_lock` on object storage).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
import zarr
from zarr.core.common import JSON

from prom3e_geo.errors import InputError, StoreMismatchError
from prom3e_geo.grid import Chunk, Grid, gdal_crs_attribute, grid_coords
from prom3e_geo.partials import partial_path, remove, remove_stale_partials
from prom3e_geo.stores.location import Location
from prom3e_geo.stores.object_lock import object_lock
from prom3e_geo.stores.zarr_tasks import settled_on_failure

MANIFEST_KEY = "prom3e_geo_manifest"

log = logging.getLogger(__name__)


StoreName = str | Path | Location


class ArrayFactory(Protocol):
    """What `GridStore._declare` is given: creates one array of the store."""

    def __call__(
        self,
        name: str,
        shape: tuple[int, ...],
        chunks: tuple[int, ...],
        dtype: str,
        fill: Any,
        dims: tuple[str, ...],
        **attrs: str,
    ) -> zarr.Array[Any]: ...


def is_zarr_store(path: StoreName) -> bool:
    """True for a folder (or prefix) holding Zarr v2 or v3 group metadata."""
    return Location.parse(path).has_zarr_group()


def read_array(group: zarr.Group, name: str) -> np.ndarray:
    """The whole of array `name` of a group, as numpy."""
    return np.asarray(array_of(group, name)[:])


def array_of(group: zarr.Group, name: str) -> zarr.Array[Any]:
    """Member `name` of a group, which must be an array."""
    member = group[name]
    if not isinstance(member, zarr.Array):
        raise InputError(f"{name} in {group.store} is not a Zarr array")
    return member


def open_group(path: StoreName, mode: str = "r") -> zarr.Group:
    """The Zarr group at a path or URL."""
    location = Location.parse(path)
    return zarr.open_group(location.zarr_store(read_only=mode == "r"), mode=mode)  # type: ignore[arg-type]  # zarr types mode as a Literal


class GridStore:
    """A Zarr group on a grid with a run manifest and per-chunk completion markers.

    Subclasses declare their arrays in `_declare`; `open_or_create` creates the group, or reopens
    it when the manifest matches and refuses it otherwise.
    """

    kind = "store"

    def __init__(self, path: StoreName, grid: Grid) -> None:
        self.location = Location.parse(path)
        self.path = self.location.text
        self.grid = grid
        self.group = open_group(self.location, mode="r+")

    @classmethod
    def open_or_create(
        cls, path: StoreName, grid: Grid, manifest: dict[str, Any], **layout: Any
    ) -> Self:
        """Create the store, or reopen it when its manifest matches (refuse otherwise).

        Locally the skeleton (coordinates, arrays, markers, manifest) is built under a temporary
        name and renamed into place; on object storage it is written in place with the manifest
        last. Either way a skeleton without a manifest, left by an interrupted creation, is
        replaced, and a store with a manifest is never mixed with another run."""
        location = Location.parse(path)
        location.check_writable()
        chunks_with_cells = sum(1 for c in grid.chunks() if grid.mask[c.rows, c.cols].any())
        manifest = json.loads(
            json.dumps({**manifest, "chunks_with_cells": chunks_with_cells})
        )  # normalise tuples
        if location.is_local:
            if not location.local.parent.exists():
                raise InputError(f"output folder {location.local.parent} does not exist")
            remove_stale_partials(location.local)
        if location.exists() and not _unfinished_skeleton(location):
            if not is_zarr_store(location):
                raise InputError(f"{location} exists and is not a {cls.kind}")
            existing = read_manifest(location)
            if existing != manifest:
                diff = sorted(
                    k for k in set(existing) | set(manifest) if existing.get(k) != manifest.get(k)
                )
                raise StoreMismatchError(
                    f"{cls.kind} {location} was made by a different run (differs in: "
                    f"{', '.join(diff)}); refusing to mix runs: choose another output or delete it"
                )
            return cls(location, grid)

        def declare(array: ArrayFactory) -> None:
            cls._declare(array, grid, **layout)

        if not location.is_local:  # no rename: in place, the manifest written last
            location.remove()  # an unfinished skeleton of an earlier run, if any
            _create(location, grid, manifest, declare)
            return cls(location, grid)
        staging = partial_path(location.local)
        remove(staging)
        try:
            with settled_on_failure():
                _create(Location.parse(staging), grid, manifest, declare)
            location.remove()  # an unfinished skeleton of an earlier run, if any
            os.replace(staging, location.local)
        except BaseException:
            remove(staging)
            raise
        return cls(location, grid)

    # the subclass's arrays: `_declare(array, grid, **layout)` creates each one with
    # `array(name, shape, chunks, dtype, fill, dims, **attrs)` (an `ArrayFactory`)
    _declare: ClassVar[Callable[..., None]]

    # -- chunk bookkeeping ----------------------------------------------------------------------
    def chunk_position(self, chunk: Chunk) -> tuple[int, int]:
        ch, cw = self.grid.chunk_shape
        return chunk.row0 // ch, chunk.col0 // cw

    def pending(self) -> list[Chunk]:
        """Chunks with cells inside the AOI that are not complete yet."""
        done = read_array(self.group, "chunk_done")
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
            with settled_on_failure():
                yield
        except OSError as exc:
            if exc.filename is None and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
                raise OSError(exc.errno, exc.strerror, str(self.path)) from exc
            raise

    def mark_done(self, chunk: Chunk) -> None:
        """Set a chunk's marker: its own object, written after the chunk's data."""
        array_of(self.group, "chunk_done")[self.chunk_position(chunk)] = 1

    def finish(self) -> None:
        zarr.consolidate_metadata(self.location.zarr_store())


@contextmanager
def building(path: StoreName) -> Iterator[None]:
    """Hold the right to build or finish the store at `path`: an exclusive `flock` on
    `.NAME.lock` beside it (the kernel releases it if the process dies), or on object storage
    the lock object of `stores.object_lock`. A second run on the same store (two maps of one
    area sharing the cache) waits, saying so, and then finds the chunks done instead of
    computing them again. The lock file is removed when the block ends normally (the store is
    complete: whoever locks it next finds nothing to do)."""
    location = Location.parse(path)
    if not location.is_local:
        location.check_writable()
        with object_lock(location):
            yield
        return
    path = location.local
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


def scatter(
    chunk: Chunk, cells: np.ndarray, values: np.ndarray, fill: Any, dtype: Any
) -> np.ndarray:
    """Values of a chunk's listed cells (flat indices) placed in a [h, w, ...] block."""
    h, w = chunk.shape
    out = np.full((h * w, *values.shape[1:]), fill, dtype=dtype)
    out[cells] = values
    return out.reshape(h, w, *values.shape[1:])


def _unfinished_skeleton(location: Location) -> bool:
    """A Zarr group with no manifest and no finished chunk: what an interrupted creation left
    (on object storage, or by an earlier version: the manifest is written last)."""
    if not location.has_zarr_group():
        return False
    try:
        group = open_group(location)
        if MANIFEST_KEY in group.attrs:
            return False
        done = read_array(group, "chunk_done") if "chunk_done" in group else np.zeros(1)
    except Exception:  # unreadable metadata: not ours to judge
        return False
    return not np.asarray(done).any()


def read_manifest(path: StoreName) -> dict[str, Any]:
    """The run manifest of the store at a path or URL."""
    raw = open_group(path).attrs.get(MANIFEST_KEY)
    if not isinstance(raw, str):
        raise InputError(f"{path} is not a prom3e-geo store (no manifest)")
    manifest: dict[str, Any] = json.loads(raw)
    return manifest


def _create(
    location: Location,
    grid: Grid,
    manifest: dict[str, Any],
    declare: Callable[[ArrayFactory], None],
) -> None:
    """Coordinates, CRS, the AOI mask, completion markers and the manifest; `declare` adds the
    store's own arrays. Arrays on the grid (dims starting `y`, `x`) get the CF `grid_mapping` and
    GDAL's `_CRS` (`grid.gdal_crs_attribute`)."""
    coords = (
        xr.Dataset(coords=grid_coords(grid))
        .rio.write_crs(grid.crs)
        .rio.write_transform(grid.transform)
    )
    store = location.zarr_store()
    coords.to_zarr(store, mode="w-", zarr_format=2, consolidated=False)
    group = zarr.open_group(store, mode="r+")
    ch, cw = grid.chunk_shape
    h, w = grid.shape

    spatial: dict[str, JSON] = {
        "grid_mapping": "spatial_ref",
        "_CRS": gdal_crs_attribute(grid.crs),
    }

    def array(
        name: str,
        shape: tuple[int, ...],
        chunks: tuple[int, ...],
        dtype: str,
        fill: Any,
        dims: tuple[str, ...],
        **attrs: str,
    ) -> zarr.Array[Any]:
        # integer markers get no fill value: xarray would otherwise decode their 0s as NaN
        fill = None if dtype == "uint8" else fill
        arr = group.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill)
        georef = spatial if tuple(dims[:2]) == ("y", "x") else {}  # CF and GDAL's own CRS
        own: dict[str, JSON] = {"_ARRAY_DIMENSIONS": list(dims), **attrs, **georef}
        arr.attrs.update(own)
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
    group.attrs[MANIFEST_KEY] = json.dumps(manifest)  # last: the skeleton is complete
    zarr.consolidate_metadata(store)


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
