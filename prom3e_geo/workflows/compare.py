"""`compare`: correlate two layers (for example ||sigma||_1 against Shannon diversity)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine

from prom3e_geo.errors import InputError
from prom3e_geo.io.outputs import check_extension, check_output
from prom3e_geo.io.png import write_comparison_plot
from prom3e_geo.io.rasters import read_band
from prom3e_geo.layers.compare import Comparison, compare_layers, map_error


@dataclass(frozen=True)
class CompareSpec:
    """`compare`: one band of each of two rasters on one grid (default: each one's first band).
    With `truth` (a raster of 1 where the mapped species is present, 0 where absent), the second
    layer becomes its error against the truth: |the layer rescaled to 0-1 over its cells -
    truth|, so that an uncertainty layer can be judged by whether it is high where the map is
    wrong. When the second raster is a diversity map (it has an `n_obs` band), only cells with
    at least `min_obs` observations are compared (default 1: the observed cells; unobserved
    cells have no diversity to compare)."""

    x: Path
    y: Path
    x_band: str | None = None
    y_band: str | None = None
    truth: Path | None = None
    min_obs: int | None = None


@dataclass
class CompareResult:
    """The correlations, a note of the cells used, and the files written."""

    comparison: Comparison
    used: str
    written: list[Path]


def compare(
    spec: CompareSpec, png: Path | None = None, *, overwrite: bool = False
) -> CompareResult:
    """Spearman and Pearson correlation of the two bands over their common valid cells (see
    `CompareSpec`); with `png`, the bin-mean plot."""
    x_path, y_path, truth, min_obs = spec.x, spec.y, spec.truth, spec.min_obs
    if png is not None:
        check_output(png, overwrite)
        check_extension(png, (".png",), "a PNG image")
    x, tx, cx, x_name = read_band(x_path, spec.x_band)
    y, ty, cy, y_name = read_band(y_path, spec.y_band)
    rasters = [(x_path, x, tx, cx), (y_path, y, ty, cy)]
    if truth is not None:
        t, tt, ct, t_name = read_band(truth)
        rasters.append((truth, t, tt, ct))
        y, y_name = map_error(y, t), f"error of {y_name} against {t_name}"
    for path, values, transform, crs in rasters[1:]:
        if values.shape != x.shape or not _same_transform(transform, tx) or crs != cx:
            raise InputError(
                f"{x_path} and {path} are not on the same grid (shape, transform or CRS differ)"
            )
    used = "cells valid in both"
    counts = _n_obs(y_path)
    if min_obs is not None and counts is None:
        raise InputError(
            f"--min-obs needs a diversity raster with an n_obs band; {y_path} has none"
        )
    if counts is not None:
        min_obs = 1 if min_obs is None else min_obs
        y = np.where(counts >= min_obs, y, np.nan)
        used = f"cells valid in both with at least {min_obs} observation(s)"
    result = compare_layers(x, y, x_name, y_name)
    if png is not None:
        write_comparison_plot(result, png, overwrite)
    return CompareResult(result, used, [png] if png is not None else [])


def _same_transform(a: object, b: object) -> bool:
    """Two rasters' affine transforms are equal to float precision."""
    return isinstance(a, Affine) and isinstance(b, Affine) and a.almost_equals(b)


def _n_obs(path: Path) -> np.ndarray | None:
    """The `n_obs` band of a diversity raster, or None for another raster."""
    try:
        return read_band(path, "n_obs")[0]
    except InputError:
        return None
