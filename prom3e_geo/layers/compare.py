"""Compare two layers cell by cell: rank and linear correlation, and a bin-mean plot.

The paper relates location-only ||sigma||_1 to Shannon diversity by binning one and averaging the
other; `compare_layers` reports Spearman and Pearson correlation over the cells valid in both
rasters, and `bin_means` gives the per-bin mean and standard error for the plot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


def compare_layers(x: np.ndarray, y: np.ndarray, x_name: str, y_name: str) -> Comparison:
    """Correlations of two bands of one grid over the cells finite in both."""
    if x.shape != y.shape:
        raise InputError(f"{x_name} and {y_name} are not on the same grid")
    both = np.isfinite(x) & np.isfinite(y)
    if both.sum() < 3:
        raise InputError(f"{x_name} and {y_name} share fewer than 3 valid cells")
    from scipy.stats import pearsonr, spearmanr  # here: importing scipy.stats takes ~0.3 s

    xs, ys = x[both], y[both]
    s = spearmanr(xs, ys)
    p = pearsonr(xs, ys)
    return Comparison(
        x_name,
        y_name,
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


def map_error(values: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """|values rescaled linearly to 0-1 over their finite cells - truth (1 present, 0 absent)|;
    NaN where either is missing."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.full_like(values, np.nan)
    lo, hi = float(finite.min()), float(finite.max())
    scaled = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    return np.asarray(np.abs(scaled - truth))
