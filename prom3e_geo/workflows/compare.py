"""`compare`: correlate two layers (for example ||sigma||_1 against Shannon diversity)."""

from __future__ import annotations

from pathlib import Path

from prom3e_geo.errors import InputError
from prom3e_geo.io.outputs import check_output
from prom3e_geo.io.png import write_comparison_plot
from prom3e_geo.io.rasters import read_band
from prom3e_geo.layers.compare import Comparison, compare_layers, map_error


def compare(
    x_path: Path,
    y_path: Path,
    x_band: str | None = None,
    y_band: str | None = None,
    png: Path | None = None,
    overwrite: bool = False,
    truth: Path | None = None,
) -> Comparison:
    """Spearman and Pearson correlation of one band of each raster over their common valid
    cells; with `png`, the bin-mean plot. With `truth` (a raster of 1 where the mapped species
    is present, 0 where absent), the second layer becomes its error against the truth: |the
    layer rescaled to 0-1 over its cells - truth|, so that an uncertainty layer can be judged
    by whether it is high where the map is wrong."""
    if png is not None:
        check_output(png, overwrite)
    x, tx, cx, x_name = read_band(x_path, x_band)
    y, ty, cy, y_name = read_band(y_path, y_band)
    rasters = [(x_path, x, tx, cx), (y_path, y, ty, cy)]
    if truth is not None:
        t, tt, ct, t_name = read_band(truth)
        rasters.append((truth, t, tt, ct))
        y, y_name = map_error(y, t), f"error of {y_name} against {t_name}"
    for path, values, transform, crs in rasters[1:]:
        if values.shape != x.shape or not transform.almost_equals(tx) or crs != cx:
            raise InputError(
                f"{x_path} and {path} are not on the same grid (shape, transform or CRS differ)"
            )
    result = compare_layers(x, y, x_name, y_name)
    if png is not None:
        write_comparison_plot(result, png, overwrite)
    return result
