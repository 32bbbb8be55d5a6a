"""Raster grids over an area of interest.

A `Grid` is a north-up raster in one CRS: a corner-based affine transform (pixel-is-area, as in
GeoTIFF), a shape, and a boolean mask of the cells whose *centre* lies inside the AOI. Every layer
and store of the toolkit lives on a `Grid`; cell centres are what the encoders see.

Constructors, all through `build_grid`:

* the paper grid (the default): the contiguous USA, EPSG:4326, 250 rows x 500 columns spanning
  the CONUS bounding box;
* a resolution in CRS units, e.g. 0.05 degrees, or 5000 m in the equal-area EPSG:5070; bounds are
  snapped outward to multiples of the resolution so that grids of one resolution align;
* any AOI: a vector file (GeoJSON, GeoPackage, shapefile, anything GDAL reads) or a lon/lat bbox.

AOIs are read in `grid.aoi`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rasterio
import shapely.geometry
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.features import geometry_mask

from prom3e_geo.errors import AoiError
from prom3e_geo.grid.aoi import (
    WGS84,
    Aoi,
    conus_boundary,
    crs_transformer,
    load_aoi,
    reproject_geometry,
)
from prom3e_geo.memory import check_memory

PAPER_SHAPE = (250, 500)
DEFAULT_CHUNK = (64, 64)  # grid chunk edge in cells: the unit of resume and of Dask tasks
MAX_CELLS = 500_000_000
# peak memory of building a grid and writing its mask: 16 bytes a cell measured (`grid --shape
# 4000x4000`: 534 MB, 1000x1000: 292 MB), with a margin
GRID_BYTES_PER_CELL = 24


@dataclass(frozen=True)
class Chunk:
    """A rectangular block of grid cells: rows [row0, row1) x columns [col0, col1)."""

    index: int
    row0: int
    row1: int
    col0: int
    col1: int

    @property
    def rows(self) -> slice:
        return slice(self.row0, self.row1)

    @property
    def cols(self) -> slice:
        return slice(self.col0, self.col1)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.row1 - self.row0, self.col1 - self.col0)


@dataclass(frozen=True, eq=False)
class Grid:
    """A north-up raster grid with an AOI mask (True = cell centre inside the AOI)."""

    crs: CRS
    transform: Affine
    shape: tuple[int, int]
    mask: np.ndarray = field(repr=False)
    aoi_name: str = "bbox"
    chunk_shape: tuple[int, int] = DEFAULT_CHUNK
    touched: np.ndarray | None = field(default=None, repr=False)  # cells touching the AOI

    @property
    def counted(self) -> np.ndarray:
        """Cells whose observations count: every cell touching the AOI (a coastal cell whose
        centre is at sea still holds the observations on its land), else the mask."""
        return self.mask if self.touched is None else (self.touched | self.mask)

    def __post_init__(self) -> None:
        if self.transform.b != 0 or self.transform.d != 0 or self.transform.e >= 0:
            raise ValueError("Grid needs a north-up transform without rotation")
        if self.mask.shape != self.shape or self.mask.dtype != bool:
            raise ValueError(f"mask must be a bool array of shape {self.shape}")
        self.mask.flags.writeable = False

    # -- geometry -------------------------------------------------------------------------------
    @property
    def height(self) -> int:
        return self.shape[0]

    @property
    def width(self) -> int:
        return self.shape[1]

    @property
    def res(self) -> tuple[float, float]:
        """Cell size (x, y) in CRS units, both positive."""
        return (self.transform.a, -self.transform.e)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(minx, miny, maxx, maxy) of the cell corners."""
        minx, maxy = self.transform.c, self.transform.f
        return (
            minx,
            maxy + self.height * self.transform.e,
            minx + self.width * self.transform.a,
            maxy,
        )

    @property
    def x(self) -> np.ndarray:
        """Cell-centre x coordinates of the columns (1-D, increasing)."""
        return self.transform.c + (np.arange(self.width) + 0.5) * self.transform.a

    @property
    def y(self) -> np.ndarray:
        """Cell-centre y coordinates of the rows (1-D, decreasing: row 0 is the north edge)."""
        return self.transform.f + (np.arange(self.height) + 0.5) * self.transform.e

    @property
    def n_inside(self) -> int:
        return int(self.mask.sum())

    def centres(self, chunk: Chunk | None = None) -> tuple[np.ndarray, np.ndarray]:
        """2-D arrays (x, y) of cell centres in the grid CRS, for the whole grid or one chunk."""
        rows = chunk.rows if chunk else slice(None)
        cols = chunk.cols if chunk else slice(None)
        return np.meshgrid(self.x[cols], self.y[rows])

    def lonlat(self, chunk: Chunk | None = None) -> tuple[np.ndarray, np.ndarray]:
        """2-D arrays (lon, lat) in degrees of cell centres, for the whole grid or one chunk."""
        x, y = self.centres(chunk)
        if self.crs == WGS84:
            return x, y
        lon, lat = crs_transformer(self.crs.to_wkt(), WGS84.to_wkt()).transform(x, y)
        return np.asarray(lon), np.asarray(lat)

    def cell_index(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Flat cell index (row * width + col) of points in the grid CRS; -1 outside the grid."""
        with np.errstate(invalid="ignore", over="ignore"):  # NaN, infinite, huge: outside
            col = np.subtract(x, self.transform.c, dtype=np.float64)
            row = np.subtract(y, self.transform.f, dtype=np.float64)
            np.floor(np.divide(col, self.transform.a, out=col), out=col)
            np.floor(np.divide(row, self.transform.e, out=row), out=row)
            inside = (col >= 0) & (col < self.width) & (row >= 0) & (row < self.height)
            flat = np.add(np.multiply(row, self.width, out=row), col, out=row)  # exact < 2**53
        return np.where(inside, flat, -1).astype(np.int64)

    def cell_index_lonlat(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Like `cell_index`, for points given in lon/lat degrees."""
        if self.crs == WGS84:
            return self.cell_index(lon, lat)
        x, y = crs_transformer(WGS84.to_wkt(), self.crs.to_wkt()).transform(lon, lat)
        return self.cell_index(np.asarray(x), np.asarray(y))

    # -- chunks ---------------------------------------------------------------------------------
    def chunks(self) -> Iterator[Chunk]:
        """Blocks of `chunk_shape` cells in row-major order (edge blocks are smaller)."""
        ch, cw = self.chunk_shape
        index = 0
        for row0 in range(0, self.height, ch):
            for col0 in range(0, self.width, cw):
                yield Chunk(
                    index, row0, min(row0 + ch, self.height), col0, min(col0 + cw, self.width)
                )
                index += 1

    # -- description ----------------------------------------------------------------------------
    def crs_name(self) -> str:
        epsg = self.crs.to_epsg()
        return f"EPSG:{epsg}" if epsg else self.crs.to_wkt()

    def describe(self) -> str:
        """One line for provenance tags and summaries."""
        rx, ry = self.res
        b = ", ".join(f"{v:.6g}" for v in self.bounds)
        return (
            f"aoi={self.aoi_name} crs={self.crs_name()} shape={self.height}x{self.width} "
            f"res={rx:.6g},{ry:.6g} bounds=({b}) cells_inside={self.n_inside}"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description, for manifests (the mask is summarised by its count)."""
        return {
            "aoi": self.aoi_name,
            "crs": self.crs_name(),
            "transform": list(self.transform)[:6],
            "shape": list(self.shape),
            "cells_inside": self.n_inside,
        }


# -- grid construction --------------------------------------------------------------------------
def parse_crs(spec: str) -> CRS:
    """A CRS from EPSG:N, WKT or PROJ text, read by GDAL inside rasterio's environment, whose
    error handler takes GDAL's own error line (outside it, GDAL prints "ERROR 1: PROJ: ..."
    before ours)."""
    try:
        with rasterio.Env():
            return CRS.from_user_input(spec)
    except (CRSError, ValueError):
        raise AoiError(f"unknown CRS {spec!r} (use e.g. EPSG:4326 or EPSG:5070)") from None


def parse_shape(spec: str) -> tuple[int, int]:
    """`250x500` -> (250, 500): rows x columns."""
    parts = spec.lower().replace(",", "x").split("x")
    try:
        rows, cols = (int(p) for p in parts)
    except ValueError:
        raise AoiError(f"grid shape {spec!r} is not ROWSxCOLS, e.g. 250x500") from None
    if rows <= 0 or cols <= 0:
        raise AoiError(f"grid shape {spec!r} must be positive")
    return rows, cols


def parse_resolution(spec: str | float) -> tuple[float, float]:
    """`0.05` or `5000` (square cells) or `RX,RY`, in CRS units."""
    parts = str(spec).split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise AoiError(f"resolution {spec!r} is not a number (or RX,RY)") from None
    if len(values) not in (1, 2) or not all(math.isfinite(v) and v > 0 for v in values):
        raise AoiError(f"resolution {spec!r} must be one or two positive numbers")
    return (values[0], values[-1])


@dataclass(frozen=True)
class CellMemory:
    """What a run on a grid allocates a cell (measured peak bytes), for the memory check."""

    bytes_per_cell: float
    task: str  # names the run in the message: "building the grid", "diversity"
    advice: str = ""  # more ways to need less, appended to the message: ", or leave out --png"


def build_grid(
    aoi: str | Aoi = "conus",
    crs: str | CRS = "EPSG:4326",
    shape: str | tuple[int, int] | None = None,
    resolution: str | float | tuple[float, float] | None = None,
    chunk_shape: tuple[int, int] = DEFAULT_CHUNK,
    memory: CellMemory | None = None,
) -> Grid:
    """Build a grid over an AOI. With neither shape nor resolution: the paper's 250 x 500 grid
    for CONUS, and for another AOI in a geographic CRS the paper grid's cells (about 0.116 x
    0.099 degrees) on the paper grid's lattice; in a projected CRS, 250 x 500 over the AOI.

    Before the mask is allocated, the memory of the run the grid is for (`memory`, default
    the grid's own) is checked against what is available (`InputError` if it cannot fit)."""
    if shape is not None and resolution is not None:
        raise AoiError("give either a grid shape or a resolution, not both")
    aoi = load_aoi(aoi) if isinstance(aoi, str) else aoi
    crs = parse_crs(crs) if isinstance(crs, str) else crs
    geometry = reproject_geometry(aoi.geometry, WGS84, crs)
    if geometry.is_empty or not math.isfinite(geometry.area):
        raise AoiError(f"AOI {aoi.name} cannot be represented in {crs.to_string()}")
    minx, miny, maxx, maxy = geometry.bounds

    if shape is None and resolution is None and aoi.name != "conus" and crs.is_geographic:
        # a sub-area of the paper grid: its cell size, on its lattice, so that the maps of a
        # sub-area line up cell for cell with CONUS maps
        x0, y0, x1, y1 = conus_boundary().bounds
        rx, ry = (x1 - x0) / PAPER_SHAPE[1], (y1 - y0) / PAPER_SHAPE[0]
        minx, maxx = x0 + math.floor((minx - x0) / rx) * rx, x0 + math.ceil((maxx - x0) / rx) * rx
        maxy, miny = y1 - math.floor((y1 - maxy) / ry) * ry, y1 - math.ceil((y1 - miny) / ry) * ry
        rows, cols = max(1, round((maxy - miny) / ry)), max(1, round((maxx - minx) / rx))
    elif resolution is not None:
        rx, ry = resolution if isinstance(resolution, tuple) else parse_resolution(resolution)
        minx, maxx = math.floor(minx / rx) * rx, math.ceil(maxx / rx) * rx
        miny, maxy = math.floor(miny / ry) * ry, math.ceil(maxy / ry) * ry
        rows, cols = max(1, round((maxy - miny) / ry)), max(1, round((maxx - minx) / rx))
    else:
        rows, cols = parse_shape(shape) if isinstance(shape, str) else (shape or PAPER_SHAPE)
        rx, ry = (maxx - minx) / cols, (maxy - miny) / rows
    if rows * cols > MAX_CELLS:
        raise AoiError(
            f"a grid of {rows}x{cols} = {rows * cols:,} cells is too large "
            f"(limit {MAX_CELLS:,}); use a coarser resolution or a smaller AOI"
        )
    memory = memory or CellMemory(GRID_BYTES_PER_CELL, "building the grid")
    check_memory(
        rows * cols * max(memory.bytes_per_cell, GRID_BYTES_PER_CELL),
        f"{memory.task} on {rows}x{cols} = {rows * cols:,} cells",
        "use a coarser --resolution (or a smaller --shape) or a smaller --aoi" + memory.advice,
    )
    transform = Affine(rx, 0.0, minx, 0.0, -ry, maxy)
    shapes = [shapely.geometry.mapping(geometry)]  # turned into GeoJSON once for both masks
    mask = geometry_mask(shapes, out_shape=(rows, cols), transform=transform, invert=True)
    touched = geometry_mask(
        shapes, out_shape=(rows, cols), transform=transform, invert=True, all_touched=True
    )
    grid = Grid(crs, transform, (rows, cols), mask, aoi.name, chunk_shape, touched)
    if grid.n_inside == 0:
        raise AoiError(
            f"AOI {aoi.name} contains no cell centre of a {rows}x{cols} grid; "
            "use a finer --shape or --resolution"
        )
    return grid


def grid_window(grid: Grid, aoi: str | Aoi) -> tuple[Grid, slice, slice]:
    """The part of `grid` under `aoi` (a state of a CONUS store): the smallest window of rows
    and columns holding every cell whose centre is inside both, on the same lattice, its mask
    their intersection; returns it with its rows and columns in `grid`."""
    aoi = load_aoi(aoi) if isinstance(aoi, str) else aoi
    geometry = reproject_geometry(aoi.geometry, WGS84, grid.crs)
    inside = grid.mask & geometry_mask(
        [geometry], out_shape=grid.shape, transform=grid.transform, invert=True
    )
    if not inside.any():
        raise AoiError(f"AOI {aoi.name} holds no cell of the store's grid ({grid.describe()})")
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    r = slice(int(rows[0]), int(rows[-1]) + 1)
    c = slice(int(cols[0]), int(cols[-1]) + 1)
    transform = grid.transform @ Affine.translation(c.start, r.start)
    shape = (r.stop - r.start, c.stop - c.start)
    return Grid(grid.crs, transform, shape, inside[r, c].copy(), aoi.name, grid.chunk_shape), r, c


def gdal_crs_attribute(crs: CRS) -> dict[str, Any]:
    """GDAL's own CRS attribute of a Zarr array (`_CRS`): the CRS as WKT2:2019 and PROJJSON.

    GDAL's Zarr driver (every version since 3.4) reads a `_CRS` dictionary on each array, with
    `url`, `wkt` and/or `projjson` members ("SRS encoding", https://gdal.org/drivers/raster/zarr.html);
    older GDALs, such as Debian 12's 3.6 under its QGIS 3.22, ignore the CF `grid_mapping`, so
    arrays carry both.
    """
    import pyproj  # only for Zarr outputs: 40 ms of a small map's run otherwise

    proj = pyproj.CRS.from_wkt(crs.to_wkt())
    return {"wkt": proj.to_wkt("WKT2_2019"), "projjson": proj.to_json_dict()}


def grid_coords(grid: Grid) -> dict[str, Any]:
    """Cell-centre `y`/`x` coordinates with CF attributes for the grid's CRS (xarray)."""
    import xarray as xr

    if grid.crs.is_geographic:
        xattrs = {"standard_name": "longitude", "units": "degrees_east", "axis": "X"}
        yattrs = {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"}
    else:
        xattrs = {"standard_name": "projection_x_coordinate", "units": "m", "axis": "X"}
        yattrs = {"standard_name": "projection_y_coordinate", "units": "m", "axis": "Y"}
    return {
        "y": xr.DataArray(grid.y, dims="y", attrs=yattrs),
        "x": xr.DataArray(grid.x, dims="x", attrs=xattrs),
    }
