"""Cloud-optimised GeoTIFF writer.

Bands are staged in a tiled GeoTIFF next to the output and then copied with GDAL's COG driver,
which compresses them and lays out the tiles and the internal overviews the COG way (the COG
driver is CreateCopy-only). The staging file is not compressed: it is read once, by the copy
(compressing it too took 30 of the 80 ms a five-band map of the paper grid took to write), and
its 4 bytes a cell a band on disk are a fraction of the memory the map took to make.
Cells outside the grid's AOI are forced to the declared nodata.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil

from prom3e_geo.grid import Grid
from prom3e_geo.io.outputs import atomic_output

NODATA = np.float32(np.nan)


def write_cog(
    path: str | Path,
    bands: Mapping[str, np.ndarray],
    grid: Grid,
    tags: Mapping[str, str] | None = None,
    band_tags: Mapping[str, Mapping[str, str]] | None = None,
    overwrite: bool = False,
    compress: str = "DEFLATE",
    blocksize: int = 256,
    resampling: str = "AVERAGE",
) -> Path:
    """Write float32 bands (name -> 2-D array on `grid`) as a COG, named by band description."""
    for name, array in bands.items():
        if array.shape != grid.shape:
            raise ValueError(f"band {name} has shape {array.shape}, grid is {grid.shape}")
    profile = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": len(bands),
        "dtype": "float32",
        "crs": grid.crs,
        "transform": grid.transform,
        "nodata": NODATA,
        "tiled": True,
        "blockxsize": blocksize,
        "blockysize": blocksize,
        "BIGTIFF": "IF_SAFER",
    }
    with atomic_output(path, overwrite) as tmp:
        staging = tmp.with_name(tmp.name + ".staging.tif")
        try:
            with rasterio.open(staging, "w", **profile) as dst:
                dst.update_tags(**(tags or {}))
                for i, (name, array) in enumerate(bands.items(), start=1):
                    data = np.where(grid.mask, array, NODATA).astype(np.float32, copy=False)
                    dst.write(data, i)
                    dst.set_band_description(i, name)
                    extra = (band_tags or {}).get(name, {})
                    dst.update_tags(i, **extra)
                    if "units" in extra:
                        dst.set_band_unit(i, extra["units"])
            rasterio.shutil.copy(
                staging,
                tmp,
                driver="COG",
                COMPRESS=compress,
                PREDICTOR="YES",
                BLOCKSIZE=blocksize,
                OVERVIEW_RESAMPLING=resampling,
                BIGTIFF="IF_SAFER",
            )
        finally:
            staging.unlink(missing_ok=True)
    return Path(path)
