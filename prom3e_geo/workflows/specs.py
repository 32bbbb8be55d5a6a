"""Typed specs shared by the workflows: the grid and how a grid run is executed."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from prom3e_geo.grid import DEFAULT_CHUNK, CellMemory, Grid, build_grid
from prom3e_geo.layers.modes import DEFAULT_MODE

Progress = Callable[[int, int], None]  # (done, total) chunks


@dataclass(frozen=True)
class GridSpec:
    """GRID = [--aoi conus|FILE|minx,miny,maxx,maxy] [--crs EPSG] [--shape RxC | --resolution R],
    with the grid chunk edge (cells) that stores are chunked by."""

    aoi: str = "conus"
    crs: str = "EPSG:4326"
    shape: str | None = None
    resolution: str | None = None
    chunk: int | None = None  # default: grid.DEFAULT_CHUNK

    def build(self, memory: CellMemory | None = None) -> Grid:
        """The grid; `memory` is what the run needs a cell (checked before it is built)."""
        grid = build_grid(
            aoi=self.aoi, crs=self.crs, shape=self.shape, resolution=self.resolution, memory=memory
        )
        chunk = (self.chunk, self.chunk) if self.chunk else DEFAULT_CHUNK
        return dataclasses.replace(grid, chunk_shape=chunk)


@dataclass(frozen=True)
class RunSpec:
    """Where chunks run: in this process, on a local Dask cluster of `workers`, or on the
    dask.distributed `scheduler` at that address; and whether finished chunks with failed cells
    are computed again."""

    workers: int | None = None
    scheduler: str | None = None
    retry_failed: bool = True


@dataclass(frozen=True)
class SdmSpec:
    """`sdm`: the query photos, recordings or species names, and how they are compared."""

    queries: tuple[str, ...]
    mode: str = DEFAULT_MODE  # hybrid or recon
    delta: float = 0.5  # hybrid mixing weight
    target: str | None = None  # hybrid target modality (None: layers.sdm.hybrid_target)
    rescale: bool = False
    threshold: float | None = None


def provenance_command(command: str | None, workflow: str) -> str:
    """The command recorded in an output's provenance: the CLI's own line, or for a library
    call the workflow's name."""
    return command if command is not None else f"prom3e_geo.{workflow}()"
