"""The embedding store: per-cell ProM3E outputs on a grid, in a Zarr group that resumes.

Layout (Zarr v2, consolidated, readable by `xr.open_zarr(path, decode_coords="all")`):

| variable       | dims           | dtype   | content                                           |
| -------------- | -------------- | ------- | ------------------------------------------------- |
| `mu`           | (y, x, latent) | float16 | L2-normalised [mu] token                          |
| `sigma_l1`     | (y, x)         | float32 | ||sigma||_1 = sum exp(logvar / 2)                 |
| `recon_image`  | (y, x, embed)  | float16 | reconstructed image embedding (L2-normalised)     |
| `ctx_<m>`      | (y, x, embed)  | float16 | each context modality's input embedding (hybrid)  |
| `valid`        | (y, x)         | uint8   | 1 where the cell was computed with all its inputs |
| `chunk_done`   | (cy, cx)       | uint8   | completion marker of each grid chunk              |

plus `y`/`x` cell-centre coordinates and the CF `spatial_ref` grid mapping. Arrays are chunked by
grid chunks, so every grid chunk is written as its own set of Zarr chunks: writers of different
chunks (threads, Dask workers) never touch the same file, and a chunk's marker is set only after
its data are written. The run manifest (model id and weights hash, source, context, grid,
software version) lives in the group attributes; opening a store with a different manifest is
refused rather than mixed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
import zarr

from prom3e_geo.errors import InputError
from prom3e_geo.grid import Chunk, Grid
from prom3e_geo.io.outputs import is_zarr_store
from prom3e_geo.io.zarr import grid_coords

MANIFEST_KEY = "prom3e_geo_manifest"


@dataclass
class ChunkResult:
    """Outputs for the cells of one grid chunk (flattened inside-AOI cells, in row-major order)."""

    chunk: Chunk
    cells: np.ndarray  # [n] flat indices within the chunk
    mu: np.ndarray  # [n, latent]
    sigma_l1: np.ndarray  # [n]
    recon_image: np.ndarray  # [n, embed]
    context: dict[str, np.ndarray]  # modality -> [n, embed]
    valid: np.ndarray  # [n] bool


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
        """Create the store, or reopen it when its manifest matches (refuse otherwise)."""
        path = Path(path)
        chunks_with_cells = sum(1 for c in grid.chunks() if grid.mask[c.rows, c.cols].any())
        manifest = json.loads(
            json.dumps({**manifest, "chunks_with_cells": chunks_with_cells})
        )  # normalise tuples
        if path.exists():
            if not is_zarr_store(path):
                raise InputError(f"{path} exists and is not a {cls.kind}")
            existing = read_manifest(path)
            if existing != manifest:
                diff = sorted(
                    k for k in set(existing) | set(manifest) if existing.get(k) != manifest.get(k)
                )
                raise InputError(
                    f"{cls.kind} {path} was made by a different run (differs in: {', '.join(diff)}); "
                    "refusing to mix runs: choose another output or delete it"
                )
            return cls(path, grid)
        if not path.parent.exists():
            raise InputError(f"output folder {path.parent} does not exist")
        _create(path, grid, manifest, lambda array: cls._declare(array, grid, **layout))
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

    def mark_done(self, chunk: Chunk) -> None:
        self.group["chunk_done"][self.chunk_position(chunk)] = 1

    def finish(self) -> None:
        zarr.consolidate_metadata(str(self.path))


def scatter(chunk: Chunk, cells: np.ndarray, values: np.ndarray, fill, dtype) -> np.ndarray:
    """Values of a chunk's listed cells (flat indices) placed in a [h, w, ...] block."""
    h, w = chunk.shape
    out = np.full((h * w, *values.shape[1:]), fill, dtype=dtype)
    out[cells] = values
    return out.reshape(h, w, *values.shape[1:])


class EmbeddingStore(GridStore):
    """The embedding store (see the module docstring)."""

    kind = "embedding store"

    @staticmethod
    def _declare(
        array, grid: Grid, latent: int = 1024, embed: int = 512, context: Sequence[str] = ()
    ) -> None:
        h, w = grid.shape
        ch, cw = grid.chunk_shape
        spatial = {"grid_mapping": "spatial_ref"}
        array(
            "mu",
            (h, w, latent),
            (ch, cw, latent),
            "float16",
            np.nan,
            ("y", "x", "latent"),
            long_name="ProM3E [mu] token (L2-normalised)",
            **spatial,
        )
        array(
            "sigma_l1",
            (h, w),
            (ch, cw),
            "float32",
            np.nan,
            ("y", "x"),
            long_name="||sigma||_1 = sum exp(logvar / 2)",
            **spatial,
        )
        array(
            "recon_image",
            (h, w, embed),
            (ch, cw, embed),
            "float16",
            np.nan,
            ("y", "x", "embed"),
            long_name="reconstructed image embedding",
            **spatial,
        )
        for name in context:
            array(
                f"ctx_{name}",
                (h, w, embed),
                (ch, cw, embed),
                "float16",
                np.nan,
                ("y", "x", "embed"),
                long_name=f"{name} input embedding",
                **spatial,
            )
        array(
            "valid",
            (h, w),
            (ch, cw),
            "uint8",
            0,
            ("y", "x"),
            long_name="1 where every context input was available",
            **spatial,
        )

    def write(self, result: ChunkResult) -> None:
        """Write one chunk's outputs, then its completion marker."""
        c, cells, g = result.chunk, result.cells, self.group
        g["mu"][c.rows, c.cols] = scatter(c, cells, result.mu, np.nan, np.float16)
        g["sigma_l1"][c.rows, c.cols] = scatter(c, cells, result.sigma_l1, np.nan, np.float32)
        g["recon_image"][c.rows, c.cols] = scatter(c, cells, result.recon_image, np.nan, np.float16)
        for name, values in result.context.items():
            g[f"ctx_{name}"][c.rows, c.cols] = scatter(c, cells, values, np.nan, np.float16)
        g["valid"][c.rows, c.cols] = scatter(c, cells, result.valid.astype(np.uint8), 0, np.uint8)
        self.mark_done(c)


def read_manifest(path: str | Path) -> dict:
    group = zarr.open_group(str(path), mode="r")
    raw = group.attrs.get(MANIFEST_KEY)
    if raw is None:
        raise InputError(f"{path} is not a prom3e-geo store (no manifest)")
    return json.loads(raw)


def open_store(path: str | Path) -> xr.Dataset:
    """The store as an xarray Dataset (lazy), refusing incomplete or foreign stores."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"embedding store {path} does not exist")
    manifest = read_manifest(path)
    ds = xr.open_zarr(path, decode_coords="all", consolidated=False)
    if int(ds["chunk_done"].sum()) < int(manifest["chunks_with_cells"]):
        raise InputError(
            f"embedding store {path} is incomplete; re-run `prom3e-geo embed` to finish it"
        )
    return ds


def _create(path: Path, grid: Grid, manifest: dict, declare) -> None:
    """Coordinates, CRS, the AOI mask, completion markers and the manifest; `declare` adds the
    store's own arrays."""
    coords = (
        xr.Dataset(coords=grid_coords(grid))
        .rio.write_crs(grid.crs)
        .rio.write_transform(grid.transform)
    )
    coords.to_zarr(path, mode="w-", zarr_format=2, consolidated=False)
    group = zarr.open_group(str(path), mode="r+")
    ch, cw = grid.chunk_shape
    h, w = grid.shape

    def array(name, shape, chunks, dtype, fill, dims, **attrs):
        # integer markers get no fill value: xarray would otherwise decode their 0s as NaN
        fill = None if dtype == "uint8" else fill
        arr = group.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill)
        arr.attrs.update({"_ARRAY_DIMENSIONS": list(dims), **attrs})
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
        grid_mapping="spatial_ref",
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
