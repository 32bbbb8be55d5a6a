"""Zarr writer for layers: an xarray Dataset with CF georeferencing that GDAL and xarray read.

Variables are (y, x) float32 on the grid, with `y`/`x` cell-centre coordinates, the CF
`spatial_ref` grid mapping written by rioxarray, and GDAL's own `_CRS` attribute on each
variable (read by every GDAL with a Zarr driver; the CF grid mapping only by recent ones). The
default is Zarr v2 with consolidated metadata, which both GDAL (hence QGIS) and xarray open with
the CRS; v3 on request for xarray-only workflows. Read it back with `xr.open_zarr(path, decode_coords="all")`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from prom3e_geo.grid import Grid, gdal_crs_attribute, grid_coords
from prom3e_geo.io.outputs import atomic_output, is_local, remote_zarr_output
from prom3e_geo.stores.zarr_tasks import settled_on_failure


def layer_dataset(
    bands: Mapping[str, np.ndarray],
    grid: Grid,
    attrs: Mapping[str, str] | None = None,
    var_attrs: Mapping[str, Mapping[str, str]] | None = None,
) -> xr.Dataset:
    """Layers as a georeferenced Dataset; cells outside the AOI are NaN. Each variable carries
    GDAL's `_CRS` beside the CF grid mapping (`grid.gdal_crs_attribute`)."""
    data_vars = {}
    crs_attr = gdal_crs_attribute(grid.crs)
    for name, array in bands.items():
        values = np.where(grid.mask, array, np.nan).astype(np.float32)
        own = {**(var_attrs or {}).get(name, {}), "_CRS": crs_attr}
        data_vars[name] = xr.DataArray(values, dims=("y", "x"), attrs=own)
    ds = xr.Dataset(data_vars, coords=grid_coords(grid), attrs=dict(attrs or {}))
    ds = ds.rio.write_crs(grid.crs).rio.write_transform(grid.transform)
    written: xr.Dataset = ds.rio.write_coordinate_system()
    return written


def write_zarr(
    path: str | Path,
    dataset: xr.Dataset,
    zarr_format: int = 2,
    chunks: tuple[int, int] = (256, 256),
    overwrite: bool = False,
) -> Path | str:
    """Write a (y, x) Dataset to a consolidated Zarr store, atomically: at a path, or uploaded
    to an object-storage URL (`io.outputs.remote_zarr_output`); returns where it is."""
    if zarr_format not in (2, 3):
        raise ValueError("zarr_format must be 2 or 3")
    ds = dataset.copy()
    for var in ds.data_vars.values():  # edit the encoding in place: keeps rioxarray's grid_mapping
        if var.dims == ("y", "x"):
            var.encoding["chunks"] = tuple(
                min(c, n) for c, n in zip(chunks, var.shape, strict=True)
            )
    remote = not is_local(path)
    target = remote_zarr_output(str(path), overwrite) if remote else atomic_output(path, overwrite)
    with target as tmp, settled_on_failure():
        # consolidated metadata is standard for v2 and still experimental for v3
        ds.to_zarr(tmp, mode="w-", zarr_format=zarr_format, consolidated=zarr_format == 2)
    return str(path) if remote else Path(path)
