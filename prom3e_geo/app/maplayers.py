"""What the explorer shows: map layers (one band on a raster grid) drawn for a web map.

A layer is one band with its grid (CRS, north-up transform), units, colour map and a way to
write itself as a COG and a PNG quicklook (the same writers as the CLI's). For the web map it is
warped to Web Mercator (EPSG:3857, nearest cell, so a cell keeps one colour), coloured over its
2nd-98th percentiles (as the CLI's QGIS styles and quicklooks are) and sent as a transparent PNG
with its corners in lon/lat: Leaflet places an image overlay by two corners and projects them to
Web Mercator, so an image already in Web Mercator lands cell for cell.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pyproj
from affine import Affine
from rasterio.crs import CRS
from rasterio.transform import array_bounds
from rasterio.warp import Resampling, reproject, transform_bounds

from prom3e_geo.grid import Grid
from prom3e_geo.io.png import aoi_outline
from prom3e_geo.io.qml import stretch

Json = dict[str, object]  # what the page is sent about a layer, a cell or the grid
Writer = Callable[[Path, Path], None]  # writes a layer's COG and PNG quicklook

WEB_MERCATOR = CRS.from_epsg(3857)
MAX_LAT = 85.0  # Web Mercator's edge; a grid reaching past it is clipped there
IMAGE_MAX_PX = 1024  # longest side of a web image (cells at 2 pixels or more each)
COLOUR_STOPS = 11  # colour bar samples


@dataclass
class MapLayer:
    """One band to show. `write(cog, png)` writes its COG and PNG quicklook; `command` is the
    `prom3e-geo` command that writes the same COG ("" for a file given with --layer)."""

    id: str
    title: str
    band: str
    values: np.ndarray  # 2-D float, NaN where there is no value
    crs: CRS
    transform: Affine
    units: str
    cmap: str
    description: str
    command: str
    write: Writer = field(repr=False)
    kind: str = "store"  # sdm, uncertainty or file
    stem: str = ""  # the downloads' file name without suffix ("": the band's name)

    @property
    def shape(self) -> tuple[int, int]:
        h, w = self.values.shape
        return h, w

    @cached_property
    def range(self) -> tuple[float, float]:
        """The colour stretch: 2nd to 98th percentile of the finite values."""
        return stretch(self.values)

    def summary(self) -> Json:
        """What the page needs to list, draw and explain the layer."""
        import matplotlib

        lo, hi = self.range
        colormap = matplotlib.colormaps[self.cmap]
        colours = [matplotlib.colors.to_hex(colormap(i / (COLOUR_STOPS - 1))) for i in
                   range(COLOUR_STOPS)]  # fmt: skip
        return {
            "id": self.id,
            "title": self.title,
            "band": self.band,
            "kind": self.kind,
            "units": self.units,
            "description": self.description,
            "min": lo,
            "max": hi,
            "colours": colours,
            "bounds": lonlat_bounds(self.crs, self.transform, self.shape),
            "command": self.command,
        }

    def sample(self, lon: float, lat: float) -> Json | None:
        """The cell under (lon, lat): its row, column, value, centre (in the layer's CRS and in
        lon/lat) and corners in lon/lat; None outside the layer."""
        to_crs = _transformer(CRS.from_epsg(4326), self.crs)
        x, y = to_crs.transform(lon, lat)
        col, row = (np.floor(v) for v in ~self.transform @ (x, y))
        h, w = self.shape
        if not (np.isfinite(col) and np.isfinite(row) and 0 <= row < h and 0 <= col < w):
            return None
        row, col = int(row), int(col)
        cx, cy = self.transform @ (col + 0.5, row + 0.5)
        to_lonlat = _transformer(self.crs, CRS.from_epsg(4326))
        corners = [self.transform @ (col + dc, row + dr) for dc, dr in
                   ((0, 0), (1, 0), (1, 1), (0, 1))]  # fmt: skip
        value = float(self.values[row, col])
        clon, clat = to_lonlat.transform(cx, cy)
        return {
            "row": row,
            "col": col,
            "value": value if np.isfinite(value) else None,
            "x": float(cx),
            "y": float(cy),
            "crs": self.crs.to_string(),
            "lon": float(clon),
            "lat": float(clat),
            "corners": [list(to_lonlat.transform(px, py))[::-1] for px, py in corners],
        }

    def web_png(self) -> bytes:
        """The layer warped to Web Mercator and coloured: RGBA PNG, transparent without data."""
        import matplotlib
        from PIL import Image

        h, w = self.shape
        x0, y0, x1, y1 = _mercator_bounds(self.crs, self.transform, self.shape)
        scale = max(1.0, min(8.0, IMAGE_MAX_PX / max(h, w)))  # several pixels per cell
        dst_w = int(round(w * scale))
        dst_h = max(1, int(round(dst_w * (y1 - y0) / (x1 - x0))))
        dst_transform = Affine((x1 - x0) / dst_w, 0, x0, 0, -(y1 - y0) / dst_h, y1)
        warped = np.full((dst_h, dst_w), np.nan, dtype=np.float32)
        reproject(
            self.values.astype(np.float32),
            warped,
            src_transform=self.transform,
            src_crs=self.crs,
            src_nodata=np.nan,
            dst_transform=dst_transform,
            dst_crs=WEB_MERCATOR,
            dst_nodata=np.nan,
            resampling=Resampling.nearest,
        )
        lo, hi = self.range
        scaled = np.clip((warped - lo) / (hi - lo), 0, 1)
        rgba = matplotlib.colormaps[self.cmap](np.nan_to_num(scaled), bytes=True)
        rgba[..., 3] = np.where(np.isfinite(warped), 255, 0)
        buffer = io.BytesIO()
        Image.fromarray(rgba, "RGBA").save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue()


def _transformer(src: CRS, dst: CRS) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(src.to_wkt(), dst.to_wkt(), always_xy=True)


def _mercator_bounds(
    crs: CRS, transform: Affine, shape: tuple[int, int]
) -> tuple[float, float, float, float]:
    """(west, south, east, north) of the layer in Web Mercator metres (latitudes clipped)."""
    (south, west), (north, east) = lonlat_bounds(crs, transform, shape)
    to_merc = _transformer(CRS.from_epsg(4326), WEB_MERCATOR)
    x0, y0 = to_merc.transform(west, south)
    x1, y1 = to_merc.transform(east, north)
    return x0, y0, x1, y1


def lonlat_bounds(crs: CRS, transform: Affine, shape: tuple[int, int]) -> list[list[float]]:
    """[[south, west], [north, east]] of a raster in degrees (its edges densified, so a
    projected grid's curved edges are inside), latitudes clipped to Web Mercator's."""
    left, bottom, right, top = array_bounds(shape[0], shape[1], transform)
    west, south, east, north = transform_bounds(crs, "EPSG:4326", left, bottom, right, top,
                                                densify_pts=51)  # fmt: skip
    return [[max(south, -MAX_LAT), west], [min(north, MAX_LAT), east]]


def grid_geojson(grid: Grid) -> Json:
    """The grid's extent and its AOI outline (as the cells show it) in lon/lat, for the page's
    offline base map: a FeatureCollection of two line features."""
    to_lonlat = _transformer(grid.crs, CRS.from_epsg(4326))
    left, bottom, right, top = grid.bounds
    edge = np.linspace(0, 1, 51)
    xs = np.concatenate([left + (right - left) * edge, np.full(51, right),
                         right - (right - left) * edge, np.full(51, left)])  # fmt: skip
    ys = np.concatenate([np.full(51, top), top - (top - bottom) * edge,
                         np.full(51, bottom), bottom + (top - bottom) * edge])  # fmt: skip
    extent = [list(p) for p in zip(*to_lonlat.transform(xs, ys), strict=True)]
    outline = [
        [list(p) for p in zip(*to_lonlat.transform(line[:, 0], line[:, 1]), strict=True)]
        for line in aoi_outline(grid)
    ]
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"name": "grid", "describe": grid.describe()},
                "geometry": {"type": "LineString", "coordinates": extent},
            },
            {
                "type": "Feature",
                "properties": {"name": "aoi"},
                "geometry": {"type": "MultiLineString", "coordinates": outline},
            },
        ],
    }
