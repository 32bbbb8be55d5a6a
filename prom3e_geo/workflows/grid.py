"""`grid`: build a grid and write its AOI mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prom3e_geo.grid import Grid
from prom3e_geo.io.geotiff import write_cog
from prom3e_geo.io.outputs import GEOTIFF_SUFFIXES, check_extension, check_output
from prom3e_geo.io.provenance import provenance
from prom3e_geo.workflows.specs import GridSpec, provenance_command


def grid_mask(
    grid: GridSpec, out: Path, *, overwrite: bool = False, command: str | None = None
) -> Grid:
    """Write the AOI mask (1 inside, nodata outside) of the grid as a COG; returns the grid."""
    check_output(out, overwrite)
    check_extension(out, GEOTIFF_SUFFIXES, "a GeoTIFF (COG)")
    built = grid.build()
    tags = provenance(provenance_command(command, "grid_mask"), built)
    write_cog(out, {"aoi": np.ones(built.shape, np.float32)}, built, tags, overwrite=overwrite)
    return built
