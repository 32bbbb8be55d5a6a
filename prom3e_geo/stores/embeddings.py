"""The embedding store: per-cell ProM3E outputs on a grid, in a Zarr group that resumes.

Layout (Zarr v2, consolidated, readable by `xr.open_zarr(path, decode_coords="all")`):

| variable       | dims           | dtype   | content                                              |
| -------------- | -------------- | ------- | ---------------------------------------------------- |
| `mu`           | (y, x, latent) | float16 | L2-normalised [mu] token                             |
| `sigma_l1`     | (y, x)         | float32 | ||sigma||_1 = sum exp(logvar / 2)                    |
| `recon_image`  | (y, x, embed)  | float16 | reconstructed image embedding (L2-normalised)        |
| `ctx_<m>`      | (y, x, embed)  | float16 | each context modality's input embedding (hybrid)     |
| `valid`        | (y, x)         | uint8   | 1 where the cell was computed with all its inputs    |
| `valid_<m>`    | (y, x)         | uint8   | 1 where context modality m had its input (a failed   |
|                |                |         | patch leaves `valid_loc` 1: loc-only maps keep it)   |
| `chunk_done`   | (cy, cx)       | uint8   | completion marker of each grid chunk                 |

plus `y`/`x` cell-centre coordinates, the AOI mask `aoi` and the CF `spatial_ref` grid mapping
(every array on the grid also carries GDAL's `_CRS`; see `stores.grid_store` for chunking,
markers and the manifest).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
import zarr
from zarr.core.metadata import ArrayV2Metadata, ArrayV3Metadata

from prom3e_geo.errors import InputError
from prom3e_geo.grid import Chunk, Grid
from prom3e_geo.stores.grid_store import GridStore, is_zarr_store, read_manifest, scatter
from prom3e_geo.stores.location import Location


@dataclass
class ChunkResult:
    """Outputs for the cells of one grid chunk (flattened inside-AOI cells, in row-major order)."""

    chunk: Chunk
    cells: np.ndarray  # [n] flat indices within the chunk
    mu: np.ndarray  # [n, latent]
    sigma_l1: np.ndarray  # [n]
    recon_image: np.ndarray  # [n, embed]
    context: dict[str, np.ndarray]  # modality -> [n, embed]
    valid_by: dict[str, np.ndarray]  # modality -> [n] bool: its input was available

    @property
    def valid(self) -> np.ndarray:
        """[n] bool: every context input was available."""
        return np.asarray(np.logical_and.reduce(list(self.valid_by.values())), dtype=bool)


class EmbeddingStore(GridStore):
    """The embedding store (see the module docstring)."""

    kind = "embedding store"

    @staticmethod
    def _declare(
        array: Callable[..., None],
        grid: Grid,
        latent: int = 1024,
        embed: int = 512,
        context: Sequence[str] = (),
    ) -> None:
        h, w = grid.shape
        ch, cw = grid.chunk_shape

        def cube(name: str, depth: int, dim: str, long_name: str) -> None:
            array(name, (h, w, depth), (ch, cw, depth), "float16", np.nan, ("y", "x", dim),
                  long_name=long_name)  # fmt: skip

        def plane(name: str, dtype: str, fill: float, long_name: str) -> None:
            array(name, (h, w), (ch, cw), dtype, fill, ("y", "x"), long_name=long_name)

        cube("mu", latent, "latent", "ProM3E [mu] token (L2-normalised)")
        plane("sigma_l1", "float32", np.nan, "||sigma||_1 = sum exp(logvar / 2)")
        cube("recon_image", embed, "embed", "reconstructed image embedding")
        for name in context:
            cube(f"ctx_{name}", embed, "embed", f"{name} input embedding")
        plane("valid", "uint8", 0, "1 where every context input was available")
        for name in context:
            plane(f"valid_{name}", "uint8", 0, f"1 where the {name} input was available")

    def chunks_with_failures(self) -> list[Chunk]:
        """Finished chunks holding AOI cells computed without all their inputs."""
        valid = np.asarray(_array(self.group, "valid")[:], dtype=bool)
        done = np.asarray(_array(self.group, "chunk_done")[:])
        mask = self.grid.mask
        return [
            c
            for c in self.grid.chunks()
            if done[self.chunk_position(c)]
            and (mask[c.rows, c.cols] & ~valid[c.rows, c.cols]).any()
        ]

    def write(self, result: ChunkResult) -> None:
        """Write one chunk's outputs, then its completion marker."""
        c, cells = result.chunk, result.cells

        def put(name: str, values: np.ndarray, fill: float, dtype: type[np.generic]) -> None:
            _array(self.group, name)[c.rows, c.cols] = scatter(c, cells, values, fill, dtype)

        put("mu", result.mu, np.nan, np.float16)
        put("sigma_l1", result.sigma_l1, np.nan, np.float32)
        put("recon_image", result.recon_image, np.nan, np.float16)
        for name, values in result.context.items():
            put(f"ctx_{name}", values, np.nan, np.float16)
        put("valid", result.valid.astype(np.uint8), 0, np.uint8)
        for name, ok in result.valid_by.items():
            put(f"valid_{name}", ok.astype(np.uint8), 0, np.uint8)
        self.mark_done(c)


def open_store(path: str | Path | Location) -> xr.Dataset:
    """The store at a path or URL as an xarray Dataset (lazy), refusing incomplete or foreign
    stores."""
    path = Location.parse(path)
    if not path.exists():
        raise InputError(f"embedding store {path} does not exist")
    if not is_zarr_store(path):
        raise InputError(f"{path} is not an embedding store (no Zarr group)")
    manifest = read_manifest(path)
    ds: xr.Dataset = xr.open_zarr(
        path.zarr_store(read_only=True), decode_coords="all", consolidated=False
    )
    if "mu" not in ds or "chunk_done" not in ds:
        raise InputError(f"{path} is not an embedding store (a patch cache or another store?)")
    if int(ds["chunk_done"].sum()) < int(manifest["chunks_with_cells"]):
        raise InputError(
            f"embedding store {path} is incomplete; re-run `prom3e-geo embed` to finish it"
        )
    return ds


def valid_for(ds: xr.Dataset, context: Sequence[str]) -> np.ndarray:
    """[H, W] bool: cells whose inputs for every modality of `context` were available. Stores
    made before per-modality validity existed fall back to the all-context `valid`."""
    if all(f"valid_{m}" in ds for m in context):
        planes = [np.asarray(ds[f"valid_{m}"].values, bool) for m in context]
        return np.asarray(np.logical_and.reduce(planes), dtype=bool)
    return np.asarray(ds["valid"].values, dtype=bool)


def _array(
    group: zarr.Group, name: str
) -> zarr.Array[ArrayV2Metadata] | zarr.Array[ArrayV3Metadata]:
    """The array `name` of a store's group (a typed lookup: a group can also hold groups)."""
    array = group[name]
    assert isinstance(array, zarr.Array), f"{name} is not an array"
    return array
