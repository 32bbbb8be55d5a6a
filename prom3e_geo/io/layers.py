"""Write one set of layer bands to every requested format: COG, and optionally Zarr and PNG."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from prom3e_geo.grid import Grid
from prom3e_geo.io.geotiff import write_cog
from prom3e_geo.io.png import Panel, write_quicklook
from prom3e_geo.io.zarr import layer_dataset, write_zarr


def write_layer_outputs(
    bands: Mapping[str, np.ndarray],
    grid: Grid,
    tags: Mapping[str, str],
    band_docs: Mapping[str, str],
    out: str | Path,
    *,
    zarr_path: str | Path | None = None,
    zarr_format: int = 2,
    png_path: str | Path | None = None,
    png_panels: Sequence[Panel] = (),
    png_title: str | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write `bands` (name -> 2-D array on `grid`) with the same provenance everywhere.

    `band_docs` gives each band a one-line description (GeoTIFF band tag `description`, Zarr
    `long_name`). Returns the paths written.
    """
    written = [
        write_cog(
            out,
            bands,
            grid,
            tags,
            band_tags={n: {"description": band_docs.get(n, n)} for n in bands},
            overwrite=overwrite,
        )
    ]
    if zarr_path is not None:
        ds = layer_dataset(
            bands,
            grid,
            attrs=tags,
            var_attrs={n: {"long_name": band_docs.get(n, n)} for n in bands},
        )
        written.append(
            write_zarr(zarr_path, ds, zarr_format, chunks=grid.chunk_shape, overwrite=overwrite)
        )
    if png_path is not None:
        written.append(
            write_quicklook(png_path, png_panels, grid, suptitle=png_title, overwrite=overwrite)
        )
    return written
