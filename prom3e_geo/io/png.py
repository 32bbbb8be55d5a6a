"""PNG quicklooks: map panels with the AOI outline and a colour bar, and the comparison plot.

Figures are built with matplotlib's object API (`Figure`), so the library never chooses a
backend or touches global pyplot state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prom3e_geo.grid import Grid
from prom3e_geo.io.outputs import atomic_output
from prom3e_geo.layers.compare import Comparison, bin_means


@dataclass(frozen=True)
class Panel:
    """One map: grid values [H, W] (NaN = nodata, drawn transparent) or an RGB composite
    [H, W, 3] in 0-1, a title, a colour-bar label."""

    values: np.ndarray
    title: str
    label: str = ""
    cmap: str = "viridis"
    vmin: float | None = None
    vmax: float | None = None
    classes: tuple[str, ...] = ()  # a class band (0, 1, ...): drawn with one colour per class


def write_quicklook(
    path: str | Path,
    panels: Sequence[Panel],
    grid: Grid,
    suptitle: str | None = None,
    overwrite: bool = False,
    dpi: int = 110,
    note: str | None = None,
) -> Path:
    """Render panels side by side to a PNG, with axis labels in the grid's units; `note` (for
    example that the data are synthetic) is printed in red under the title."""
    import matplotlib
    from matplotlib.figure import Figure

    minx, miny, maxx, maxy = grid.bounds
    aspect = 1.0
    if grid.crs.is_geographic:  # show degrees at their true ground proportion
        aspect = 1.0 / max(math.cos(math.radians((miny + maxy) / 2)), 0.1)
    panel_w = 6.0
    panel_h = panel_w * (maxy - miny) / (maxx - minx) * aspect + 0.9
    fig = Figure(figsize=(panel_w * len(panels), panel_h))
    axes = fig.subplots(1, len(panels), squeeze=False)
    outline = aoi_outline(grid)
    for ax, panel in zip(axes[0], panels, strict=True):
        where = dict(extent=(minx, maxx, miny, maxy), origin="upper", interpolation="nearest")
        if panel.values.ndim == 3:  # an RGB composite in 0-1, transparent where NaN
            shown = grid.mask & np.isfinite(panel.values).all(axis=-1)
            rgba = np.dstack([np.clip(np.nan_to_num(panel.values), 0, 1), shown])
            image = None
            ax.imshow(rgba, aspect=aspect, **where)
        elif panel.classes:  # one colour per class, named in the colour bar
            values = np.where(grid.mask, panel.values, np.nan)
            n = len(panel.classes)
            cmap = matplotlib.colors.ListedColormap(
                matplotlib.colormaps[panel.cmap](np.linspace(0.15, 0.85, n))
            ).with_extremes(bad=(0, 0, 0, 0))
            image = ax.imshow(
                np.ma.masked_invalid(values), cmap=cmap, vmin=-0.5, vmax=n - 0.5, aspect=aspect,
                **where,
            )  # fmt: skip
        else:
            values = np.where(grid.mask, panel.values, np.nan)
            cmap = matplotlib.colormaps[panel.cmap].with_extremes(bad=(0, 0, 0, 0))
            image = ax.imshow(
                np.ma.masked_invalid(values),
                cmap=cmap,
                vmin=panel.vmin,
                vmax=panel.vmax,
                aspect=aspect,
                **where,
            )
        for line in outline:
            ax.plot(line[:, 0], line[:, 1], color="0.25", linewidth=0.4)
        ax.set_xlim(minx, maxx)
        ax.set_ylim(miny, maxy)
        ax.set_title(panel.title, fontsize=10)
        ax.tick_params(labelsize=7)
        geographic = grid.crs.is_geographic
        ax.set_xlabel("longitude (degrees)" if geographic else "x (m)", fontsize=7)
        ax.set_ylabel("latitude (degrees)" if geographic else "y (m)", fontsize=7)
        if image is not None and panel.classes:
            bar = fig.colorbar(image, ax=ax, shrink=0.7, ticks=range(len(panel.classes)))
            bar.ax.set_yticklabels(panel.classes, fontsize=7)
        elif image is not None:
            fig.colorbar(image, ax=ax, shrink=0.7, label=panel.label)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    if note:
        fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=8, color="firebrick")
    fig.tight_layout()
    with atomic_output(path, overwrite) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return Path(path)


def aoi_outline(grid: Grid) -> list[np.ndarray]:
    """The outline of the grid's AOI as polylines [n, 2] in grid CRS coordinates: the 0.5
    contour of the AOI mask through the cell centres, so any AOI (CONUS, a vector file, a bbox,
    a store's grid) is drawn as the cells show it. Where the AOI fills the grid, nothing."""
    import contourpy

    if grid.mask.all():
        return []
    padded = np.pad(grid.mask.astype(np.float64), 1)  # close outlines along the grid edge
    dx, dy = grid.res
    x = np.concatenate([[grid.x[0] - dx], grid.x, [grid.x[-1] + dx]])
    y = np.concatenate([[grid.y[0] + dy], grid.y, [grid.y[-1] - dy]])
    lines = contourpy.contour_generator(x, y, padded).lines(0.5)
    return [np.asarray(line) for line in lines]  # the default line type: one array per line


def write_comparison_plot(result: Comparison, path: str | Path, overwrite: bool = False) -> Path:
    """The bin-mean plot of a comparison: mean of the first layer per quantile bin of the second."""
    from matplotlib.figure import Figure

    cx, my, se = bin_means(result.y, result.x)
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
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
    return Path(path)
