"""`compare`: correlate two layers (for example ||sigma||_1 against Shannon diversity)."""

from __future__ import annotations

from pathlib import Path

from prom3e_geo.errors import InputError
from prom3e_geo.io.outputs import check_output
from prom3e_geo.io.png import write_comparison_plot
from prom3e_geo.io.rasters import read_band
from prom3e_geo.layers.compare import Comparison, compare_layers


def compare(
    x_path: Path,
    y_path: Path,
    x_band: str | None = None,
    y_band: str | None = None,
    png: Path | None = None,
    overwrite: bool = False,
) -> Comparison:
    """Spearman and Pearson correlation of one band of each raster over their common valid
    cells; with `png`, the bin-mean plot."""
    if png is not None:
        check_output(png, overwrite)
    x, tx, cx, x_name = read_band(x_path, x_band)
    y, ty, cy, y_name = read_band(y_path, y_band)
    if x.shape != y.shape or not tx.almost_equals(ty) or cx != cy:
        raise InputError(
            f"{x_path} and {y_path} are not on the same grid (shape, transform or CRS differ)"
        )
    result = compare_layers(x, y, x_name, y_name)
    if png is not None:
        write_comparison_plot(result, png, overwrite)
    return result
