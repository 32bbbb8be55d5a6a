"""Where patches lie: UTM placement of cell patches, request tiles, and warping into a patch.

Every source delivers a patch as a `size` x `size` square at `resolution` metres in the UTM zone
of its cell centre. Remote sources snap the patch's corner to the zone's pixel lattice (multiples
of the resolution, as Sentinel-2 itself), so a patch cut from a larger request equals the patch a
request of its own returns, pixel for pixel; the centre then lies within half a pixel of the cell
centre.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.enums import MaskFlags
from rasterio.transform import from_origin
from rasterio.warp import Resampling, reproject, transform_bounds
from rasterio.windows import Window, from_bounds

if TYPE_CHECKING:
    from affine import Affine
    from rasterio.io import DatasetReader

SMALL_INTEGERS = frozenset({"uint8", "int8", "uint16", "int16"})  # exact in float32


def utm_epsg(lon: np.ndarray | float, lat: np.ndarray | float) -> np.ndarray:
    """EPSG codes of the WGS 84 / UTM zones containing the points."""
    zone = (np.floor((np.asarray(lon) + 180) / 6).astype(int) % 60) + 1
    codes: np.ndarray = np.where(np.asarray(lat) >= 0, 32600, 32700) + zone
    return codes


def utm_crs(lon: float, lat: float) -> CRS:
    """The WGS 84 / UTM zone CRS containing a point."""
    return CRS.from_epsg(int(utm_epsg(lon, lat)))


@dataclass(frozen=True)
class PatchPlacement:
    """Patches of N cells: UTM zone and upper-left corner (metres) of each."""

    epsg: np.ndarray  # [N] int
    left: np.ndarray  # [N] float
    top: np.ndarray  # [N] float
    size: int
    resolution: float

    @classmethod
    def snapped(
        cls, lon: np.ndarray, lat: np.ndarray, size: int, resolution: float
    ) -> PatchPlacement:
        lon, lat = np.ravel(lon).astype(float), np.ravel(lat).astype(float)
        epsg = utm_epsg(lon, lat)
        x, y = np.empty_like(lon), np.empty_like(lat)
        for code in np.unique(epsg):
            here = epsg == code
            x[here], y[here] = Transformer.from_crs(4326, int(code), always_xy=True).transform(
                lon[here], lat[here]
            )
        half = size * resolution / 2
        left = np.round((x - half) / resolution) * resolution
        top = np.round((y + half) / resolution) * resolution
        return cls(epsg, left, top, size, resolution)

    def transform(self, i: int) -> Affine:
        origin: Affine = from_origin(self.left[i], self.top[i], self.resolution, self.resolution)
        return origin

    def crs(self, i: int) -> CRS:
        return CRS.from_epsg(int(self.epsg[i]))


@dataclass(frozen=True)
class RequestTile:
    """One request covering the patches of `cells`: a UTM box on the patches' pixel lattice."""

    epsg: int
    bounds: tuple[float, float, float, float]  # left, bottom, right, top (metres)
    cells: np.ndarray  # indices into the placement
    width: int
    height: int

    def offsets(self, placement: PatchPlacement) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) of each cell's patch inside the tile's pixel grid."""
        res = placement.resolution
        rows = np.rint((self.bounds[3] - placement.top[self.cells]) / res).astype(int)
        cols = np.rint((placement.left[self.cells] - self.bounds[0]) / res).astype(int)
        return rows, cols

    def lonlat_bounds(self) -> tuple[float, float, float, float]:
        west, south, east, north = transform_bounds(
            CRS.from_epsg(self.epsg), "EPSG:4326", *self.bounds, densify_pts=21
        )
        return float(west), float(south), float(east), float(north)


def request_tiles(
    placement: PatchPlacement, max_px: int, split_sparse: bool = True
) -> Iterator[RequestTile]:
    """Group patches into requests of at most `max_px` x `max_px` pixels.

    Cells are bucketed by zone and by a square lattice of (max_px - size) pixels on their
    corners, so a bucket's patches always fit one request. A bucket whose request would hold
    more pixels than its patches together (sparse cells: processing units are billed per pixel)
    is sent as one request per cell instead, unless `split_sparse` is off (sources that read
    windows per cell anyway); `max_px <= size` gives one request per cell.
    """
    size, res = placement.size, placement.resolution
    n = placement.epsg.size
    if max_px <= size:
        keys = np.arange(n)[:, None]
    else:
        step = (max_px - size) * res
        keys = np.stack(
            [
                placement.epsg,
                np.floor(placement.left / step).astype(np.int64),
                np.floor(placement.top / step).astype(np.int64),
            ],
            axis=1,
        )
    _, bucket = np.unique(keys, axis=0, return_inverse=True)
    bucket = bucket.ravel()
    order = np.argsort(bucket, kind="stable")
    for cells in np.split(order, np.flatnonzero(np.diff(bucket[order])) + 1) if n else []:
        tile = _covering_tile(placement, cells)
        if not split_sparse or tile.width * tile.height <= cells.size * size * size:
            yield tile
        else:
            yield from (_covering_tile(placement, cells[i : i + 1]) for i in range(cells.size))


def _covering_tile(placement: PatchPlacement, cells: np.ndarray) -> RequestTile:
    res, side = placement.resolution, placement.size * placement.resolution
    left = float(placement.left[cells].min())
    top = float(placement.top[cells].max())
    right = float(placement.left[cells].max()) + side
    bottom = float(placement.top[cells].min()) - side
    return RequestTile(
        int(placement.epsg[cells[0]]),
        (left, bottom, right, top),
        cells,
        int(round((right - left) / res)),
        int(round((top - bottom) / res)),
    )


def warp_patch(
    bands: Sequence[tuple[DatasetReader, int]],
    crs: CRS,
    transform: Affine,
    size: int,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Bilinearly resample bands (open rasterio dataset, band index) into one patch grid.

    Only the source window under the patch is read, once per dataset for all its bands; pixels
    beyond the raster or at its nodata come back NaN. A patch that is a window of the raster
    itself (same CRS and pixel size, corner on a pixel corner, wholly inside: a snapped patch
    in a Sentinel-2 asset of its zone) is read as that window, which is what the bilinear warp
    returns for it, at a tenth of the CPU; any other is warped. Returns float32
    [len(bands), size, size]: `out` when given (a window of one dataset is read into it, with
    no copy).
    """
    if out is None:
        out = np.empty((len(bands), size, size), dtype=np.float32)
    per_dataset: dict[int, tuple[DatasetReader, list[int], list[int]]] = {}
    for k, (ds, index) in enumerate(bands):
        _, slots, indexes = per_dataset.setdefault(id(ds), (ds, [], []))
        slots.append(k)
        indexes.append(index)
    for ds, slots, indexes in per_dataset.values():
        window = aligned_window(ds, crs, transform, size)
        if window is None:
            out[slots] = resampled(ds, indexes, crs, transform, size)
        elif len(slots) == len(out):  # every band from this dataset, in order
            window_values(ds, indexes, window, out)
        else:
            out[slots] = window_values(ds, indexes, window)
    return out


def window_values(
    ds: DatasetReader, indexes: list[int], window: Window, out: np.ndarray | None = None
) -> np.ndarray:
    """Bands `indexes` in a window as float32 (into `out` when given), NaN where the dataset's
    mask says no data. Bands of 8 or 16-bit integers masked by a nodata value (a Sentinel-2
    asset's 0) are masked here by comparing with that value, exact in float32: GDAL would read
    the window again for it."""
    by_value = all(
        ds.dtypes[i - 1] in SMALL_INTEGERS
        and set(ds.mask_flag_enums[i - 1]) <= {MaskFlags.nodata, MaskFlags.all_valid}
        for i in indexes
    )
    if not by_value:
        filled: np.ndarray = ds.read(
            indexes, window=window, out_dtype="float32", masked=True
        ).filled(np.nan)
        if out is None:
            return filled
        out[...] = filled
        return out
    if out is None:
        out = np.empty((len(indexes), int(window.height), int(window.width)), np.float32)
    values: np.ndarray = ds.read(indexes, window=window, out=out)
    for band, i in zip(values, indexes, strict=True):
        if (nodata := ds.nodatavals[i - 1]) is not None:
            band[band == np.float32(nodata)] = np.nan
    return values


def aligned_window(ds: DatasetReader, crs: CRS, transform: Affine, size: int) -> Window | None:
    """The window of `ds` that is the patch grid (`transform`, `size`) itself, or None."""
    src = ds.transform
    if (src.b, src.d, transform.b, transform.d) != (0, 0, 0, 0):
        return None
    if not (math.isclose(src.a, transform.a) and math.isclose(src.e, transform.e)):
        return None
    col, row = (transform.c - src.c) / src.a, (transform.f - src.f) / src.e
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    col, row = round(col), round(row)
    if col < 0 or row < 0 or col + size > ds.width or row + size > ds.height:
        return None
    if ds.crs != crs:
        return None
    return Window(col, row, size, size)


def resampled(
    ds: DatasetReader, indexes: list[int], crs: CRS, transform: Affine, size: int
) -> np.ndarray:
    """Bands `indexes` of `ds` warped bilinearly into the patch grid: the source window under
    the patch (plus a 2-pixel margin) is read, then warped in memory."""
    side_x, side_y = size * transform.a, size * -transform.e
    left, top = transform.c, transform.f
    bounds = transform_bounds(crs, ds.crs, left, top - side_y, left + side_x, top, densify_pts=21)
    window = from_bounds(*bounds, transform=ds.transform)
    window = (
        Window(window.col_off - 2, window.row_off - 2, window.width + 4, window.height + 4)
        .round_offsets()
        .round_lengths()
    )
    data = ds.read(
        indexes,
        window=window,
        out_dtype="float32",
        masked=True,
        boundless=True,
        fill_value=ds.nodata or 0,
    )
    warped = np.full((len(indexes), size, size), np.nan, dtype=np.float32)
    with WARP_LOCK:  # the read above runs in parallel; the small in-memory warp does not
        _warp(data.filled(np.nan), warped, ds.window_transform(window), ds.crs, transform, crs)
    return warped


# rasterio wraps the in-memory datasets of a numpy-to-numpy reproject in
# `warnings.catch_warnings()`, which edits the process-wide warning filters and is not
# thread-safe (before Python 3.14): warps running at once in several fetch threads let a
# spurious NotGeoreferencedWarning escape. One warp at a time; the reads stay parallel.
WARP_LOCK = threading.Lock()


def _warp(
    data: np.ndarray,
    warped: np.ndarray,
    src_transform: Affine,
    src_crs: CRS,
    dst_transform: Affine,
    dst_crs: CRS,
) -> None:
    reproject(
        data,
        warped,
        src_transform=src_transform,
        src_crs=src_crs,
        src_nodata=np.nan,
        dst_transform=dst_transform,
        dst_crs=dst_crs,
        dst_nodata=np.nan,
        resampling=Resampling.bilinear,
    )
