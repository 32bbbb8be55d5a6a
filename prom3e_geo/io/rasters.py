"""Reading one band of a GeoTIFF (for `compare`), with nodata as NaN."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import rasterio

from prom3e_geo.errors import InputError


def read_band(
    path: str | Path, band: str | int | None = None
) -> tuple[np.ndarray, object, object, str]:
    """(values with NaN for nodata, transform, crs, band name) of one band of a raster."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"raster {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            ds = rasterio.open(path)
        with ds:
            if ds.crs is None:
                raise InputError(f"raster {path} is not georeferenced (no CRS)")
            names = [d or f"band{i + 1}" for i, d in enumerate(ds.descriptions)]
            if band is None:
                index = 1
            elif isinstance(band, int) or str(band).isdigit():
                index = int(band)
            elif band in names:
                index = names.index(band) + 1
            else:
                raise InputError(f"raster {path} has no band {band!r} (bands: {', '.join(names)})")
            if not 1 <= index <= ds.count:
                raise InputError(
                    f"raster {path} has {ds.count} band(s); band {index} does not exist"
                )
            data = ds.read(index, masked=True).astype("float64").filled(np.nan)
            return data, ds.transform, ds.crs, names[index - 1]
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"raster {path} cannot be read: {exc}") from None
