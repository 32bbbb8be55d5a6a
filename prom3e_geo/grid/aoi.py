"""Areas of interest: `conus`, a lon/lat bbox or a vector file, as one EPSG:4326 geometry.

Geometries are densified before they are reprojected, so that straight edges in one CRS (e.g. the
49th parallel in lon/lat) stay on their true path in another.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import shapely
from rasterio.crs import CRS

from prom3e_geo.errors import AoiError

if TYPE_CHECKING:
    import pyproj

WGS84 = CRS.from_epsg(4326)


@dataclass(frozen=True)
class Aoi:
    """An area of interest: a polygonal geometry in EPSG:4326 and a short name for provenance."""

    name: str
    geometry: shapely.Geometry


@functools.cache
def conus_boundary() -> shapely.Geometry:
    """The bundled contiguous-US boundary (48 states + DC) in EPSG:4326; see data/PROVENANCE.md.
    The file holds one valid multipolygon, already the union of the states: it is used as it
    is (a union of it again took 40 ms of every run and gave the same geometry)."""
    text = resources.files("prom3e_geo.data").joinpath("conus.geojson").read_text()
    parts = [shapely.geometry.shape(f["geometry"]) for f in json.loads(text)["features"]]
    if len(parts) == 1 and shapely.is_valid(parts[0]):
        return parts[0]
    return shapely.union_all(parts)


def load_aoi(spec: str) -> Aoi:
    """Parse an AOI spec: `conus`, a vector file path, or `minx,miny,maxx,maxy` in lon/lat."""
    spec = spec.strip()
    if spec.lower() == "conus":
        return Aoi("conus", conus_boundary())
    if _looks_like_bbox(spec):
        return Aoi(f"bbox({spec})", _parse_bbox(spec))
    return _read_aoi_file(Path(spec))


def _looks_like_bbox(spec: str) -> bool:
    return spec.count(",") == 3 and not Path(spec).exists()


def _parse_bbox(spec: str) -> shapely.Geometry:
    try:
        minx, miny, maxx, maxy = (float(v) for v in spec.split(","))
    except ValueError:
        raise AoiError(f"AOI bbox {spec!r} is not four numbers minx,miny,maxx,maxy") from None
    if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)):
        raise AoiError(f"AOI bbox {spec!r} has a non-finite value")
    if not (
        -180 <= minx <= 180 and -180 <= maxx <= 180 and -90 <= miny <= 90 and -90 <= maxy <= 90
    ):
        raise AoiError(
            f"AOI bbox {spec!r} is out of range: longitudes must lie in [-180, 180] and "
            "latitudes in [-90, 90] (order: minx,miny,maxx,maxy)"
        )
    if minx > maxx:
        raise AoiError(
            f"AOI bbox {spec!r} is empty as given (minx > maxx): an area across the "
            "antimeridian (180 degrees) is not supported as one bbox; map each side separately"
        )
    if minx >= maxx or miny >= maxy:
        raise AoiError(f"AOI bbox {spec!r} is empty: need minx < maxx and miny < maxy")
    return shapely.box(minx, miny, maxx, maxy)


def _read_aoi_file(path: Path) -> Aoi:
    import geopandas as gpd  # heavy import, only needed for AOI files

    if not path.exists():
        raise AoiError(f"AOI file {path} does not exist (and is not a minx,miny,maxx,maxy bbox)")
    try:
        frame = gpd.read_file(path)
    except Exception as exc:  # GDAL/pyogrio raise many types for unreadable files
        raise AoiError(
            f"AOI file {path} cannot be read as vector data: {_first_line(exc)}"
        ) from None
    geoms = frame.geometry[frame.geometry.notna() & ~frame.geometry.is_empty]
    polygons = [g for g in geoms if g.geom_type in ("Polygon", "MultiPolygon")]
    if not polygons:
        raise AoiError(f"AOI file {path} holds no polygon geometry")
    geometry = shapely.union_all(shapely.make_valid(np.asarray(polygons, dtype=object)))
    if frame.crs is None:
        minx, miny, maxx, maxy = geometry.bounds
        if not (minx >= -180 and maxx <= 180 and miny >= -90 and maxy <= 90):
            raise AoiError(f"AOI file {path} has no CRS and its coordinates are not lon/lat")
        src = WGS84
    else:
        src = CRS.from_user_input(frame.crs.to_wkt())
    geometry = reproject_geometry(geometry, src, WGS84)
    if geometry.is_empty:
        raise AoiError(f"AOI file {path} has an empty geometry")
    return Aoi(path.stem, geometry)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@functools.lru_cache(maxsize=16)
def crs_transformer(src_wkt: str, dst_wkt: str) -> pyproj.Transformer:
    """An always-xy transformer between two CRSs (cached: building one costs milliseconds;
    pyproj is imported here, when a grid or an AOI is reprojected, not by every run)."""
    import pyproj

    return pyproj.Transformer.from_crs(src_wkt, dst_wkt, always_xy=True)


def reproject_geometry(geometry: shapely.Geometry, src: CRS, dst: CRS) -> shapely.Geometry:
    """Reproject a geometry, densifying its edges first (1/1000 of its extent per segment)."""
    if src == dst or geometry.is_empty:
        return geometry
    minx, miny, maxx, maxy = geometry.bounds
    step = max(maxx - minx, maxy - miny) / 1000.0
    dense = shapely.segmentize(geometry, step) if step > 0 else geometry
    tr = crs_transformer(src.to_wkt(), dst.to_wkt())

    def forward(coords: np.ndarray) -> np.ndarray:
        x, y = tr.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    out = shapely.transform(dense, forward)
    return shapely.make_valid(out) if not out.is_valid else out
