"""Compare two layers cell by cell: rank and linear correlation, and a bin-mean plot.

The paper relates location-only ||sigma||_1 to Shannon diversity by binning one and averaging the
other; `compare_layers` reports Spearman and Pearson correlation over the cells valid in both
rasters, and `bin_means` gives the per-bin mean and standard error for the plot.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from scipy.stats import pearsonr, spearmanr

from prom3e_geo.errors import InputError


@dataclass
class Comparison:
    x_name: str
    y_name: str
    n: int
    spearman: float
    spearman_p: float
    pearson: float
    pearson_p: float
    x: np.ndarray
    y: np.ndarray


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


def compare_layers(x_path, y_path, x_band=None, y_band=None) -> Comparison:
    x, tx, cx, xn = read_band(x_path, x_band)
    y, ty, cy, yn = read_band(y_path, y_band)
    if x.shape != y.shape or not tx.almost_equals(ty) or cx != cy:
        raise InputError(
            f"{x_path} and {y_path} are not on the same grid (shape, transform or CRS differ)"
        )
    both = np.isfinite(x) & np.isfinite(y)
    if both.sum() < 3:
        raise InputError(f"{x_path} and {y_path} share fewer than 3 valid cells")
    xs, ys = x[both], y[both]
    s = spearmanr(xs, ys)
    p = pearsonr(xs, ys)
    return Comparison(
        xn,
        yn,
        int(both.sum()),
        float(s.statistic),
        float(s.pvalue),
        float(p.statistic),
        float(p.pvalue),
        xs,
        ys,
    )


def bin_means(
    x: np.ndarray, y: np.ndarray, bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quantile bins of x: (bin centre of x, mean of y, standard error of y)."""
    edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
    centres, means, errors = [], [], []
    for b in range(len(edges) - 1):
        sel = which == b
        if sel.any():
            centres.append(x[sel].mean())
            means.append(y[sel].mean())
            errors.append(y[sel].std(ddof=1) / np.sqrt(sel.sum()) if sel.sum() > 1 else 0.0)
    return np.array(centres), np.array(means), np.array(errors)


def plot_comparison(result: Comparison, path: str | Path, overwrite: bool = False) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from prom3e_geo.io.outputs import atomic_output

    cx, my, se = bin_means(result.y, result.x)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.errorbar(cx, my, yerr=se, marker="o", capsize=3)
    ax.set_xlabel(f"{result.y_name} (bin mean)")
    ax.set_ylabel(f"mean {result.x_name}")
    ax.set_title(
        f"Spearman {result.spearman:.3f}, Pearson {result.pearson:.3f} (n = {result.n:,})",
        fontsize=9,
    )
    fig.tight_layout()
    with atomic_output(path, overwrite) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)
