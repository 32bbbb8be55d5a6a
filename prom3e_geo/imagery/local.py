"""The `local:PATH` source: patches cut from local rasters (GeoTIFF, COG, VRT) in any CRS.

PATH is one raster or a folder of them (searched recursively for .tif/.tiff/.vrt). Each patch is
a square of `size` x `size` pixels at `resolution` metres in the UTM zone of its cell centre,
centred on the cell, resampled bilinearly from whichever raster contains the centre (rasterio
warping: only the source window under the patch is read).

Bands 1, 2, 3 are taken as red, green, blue; with `bands=all` a raster holds the twelve L2A
bands in Sentinel-2 order (B01, B02, B03, B04, B05, B06, B07, B08, B8A, B09, B11, B12). Values become surface reflectance: float rasters are
taken as reflectance already; uint16 as Sentinel-2 L2A digital numbers (/ 10000, after the
processing-baseline offset of `boa_offset`, default 0); uint8 as display RGB (/ 255 / 2.5, the
inverse of the true-colour gain, so that the encoders see the same display colours). A patch with
more than `max_nodata` of its pixels outside the raster or nodata is marked invalid.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_transform
from rasterio.warp import transform_bounds

from prom3e_geo.encoders.clip import REFLECTANCE_GAIN
from prom3e_geo.errors import SourceError
from prom3e_geo.imagery.base import PatchBatch, band_names
from prom3e_geo.imagery.geometry import utm_crs, warp_patch

if TYPE_CHECKING:
    from affine import Affine

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt")
S2_FILE_ORDER = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")


class LocalSource:
    """Patches from local rasters (see the module docstring)."""

    name = "local"

    def __init__(
        self,
        path: str | Path,
        size: int = 256,
        resolution: float = 10.0,
        max_nodata: float = 0.5,
        boa_offset: float = 0.0,
        bands: str = "rgb",
    ) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise SourceError(f"local imagery {self.path} does not exist")
        files = (
            sorted(p for p in self.path.rglob("*") if p.suffix.lower() in RASTER_SUFFIXES)
            if self.path.is_dir()
            else [self.path]
        )
        if not files:
            raise SourceError(f"no GeoTIFF/VRT rasters under {self.path}")
        self.size, self.resolution, self.max_nodata, self.boa_offset = (
            size,
            resolution,
            max_nodata,
            boa_offset,
        )
        self.bands = band_names(bands)
        self.indexes = (
            [1, 2, 3] if bands == "rgb" else [S2_FILE_ORDER.index(b) + 1 for b in self.bands]
        )
        self.rasters = []
        for f in files:
            try:
                with rasterio.open(f) as ds:
                    if ds.crs is None:
                        raise SourceError(f"raster {f} has no CRS")
                    if ds.count < max(self.indexes):
                        raise SourceError(
                            f"raster {f} has {ds.count} band(s); bands={bands} needs "
                            f"{max(self.indexes)}"
                        )
                    bounds = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21)
                    self.rasters.append((f, bounds))
            except rasterio.errors.RasterioIOError as exc:
                raise SourceError(f"raster {f} cannot be read: {exc}") from None

    def describe(self) -> dict[str, Any]:
        return {
            "source": "local",
            "path": str(self.path),
            "rasters": len(self.rasters),
            "size_px": self.size,
            "resolution_m": self.resolution,
            "boa_offset": self.boa_offset,
            "bands": list(self.bands),
        }

    def close(self) -> None:
        """Nothing to release: each fetch opens and closes the rasters it reads."""

    def _raster_for(self, lon: float, lat: float) -> Path | None:
        for path, (minx, miny, maxx, maxy) in self.rasters:
            if minx <= lon <= maxx and miny <= lat <= maxy:
                return path
        return None

    def patch_transform(self, lon: float, lat: float) -> tuple[CRS, Affine]:
        """(UTM CRS, affine transform) of the patch centred on the point."""
        crs = utm_crs(lon, lat)
        (x,), (y,) = warp_transform("EPSG:4326", crs, [lon], [lat])
        half = self.size * self.resolution / 2
        return crs, from_origin(x - half, y + half, self.resolution, self.resolution)

    def fetch(self, lon: np.ndarray, lat: np.ndarray) -> PatchBatch:
        lon, lat = np.ravel(lon), np.ravel(lat)
        patches = np.zeros((lon.size, self.size, self.size, len(self.bands)), dtype=np.float32)
        valid = np.zeros(lon.size, dtype=bool)
        meta = []
        for i, (x, y) in enumerate(zip(lon, lat, strict=True)):
            path = self._raster_for(float(x), float(y))
            if path is None:
                meta.append({"error": "outside every raster"})
                continue
            crs, transform = self.patch_transform(float(x), float(y))
            with rasterio.open(path) as ds:
                out = warp_patch([(ds, k) for k in self.indexes], crs, transform, self.size)
                scale = self._scale(ds.dtypes[0])
            missing = float(np.isnan(out).any(axis=0).mean())
            patches[i] = np.nan_to_num(np.moveaxis(out, 0, -1) * scale[0] + scale[1])
            valid[i] = missing <= self.max_nodata
            entry: dict[str, Any] = {
                "scene": path.name,
                "nodata_fraction": round(missing, 4),
                **({} if valid[i] else {"error": "mostly nodata"}),
            }
            meta.append(entry)
        return PatchBatch(patches, valid, meta)

    def _scale(self, dtype: str) -> tuple[float, float]:
        """(multiplier, offset) from stored values to reflectance."""
        if dtype == "uint8":
            return 1 / 255 / REFLECTANCE_GAIN, 0.0
        if dtype in ("uint16", "int16", "uint32", "int32"):
            return 1 / 10000, -self.boa_offset / 10000
        return 1.0, 0.0
