"""PNG quicklooks: one or more map panels with the CONUS outline and a colour bar."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prom3e_geo.grid import WGS84, Grid, conus_boundary, reproject_geometry
from prom3e_geo.io.outputs import atomic_output


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


def write_quicklook(
    path: str | Path,
    panels: Sequence[Panel],
    grid: Grid,
    suptitle: str | None = None,
    overwrite: bool = False,
    dpi: int = 110,
) -> Path:
    """Render panels side by side to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minx, miny, maxx, maxy = grid.bounds
    aspect = 1.0
    if grid.crs.is_geographic:  # show degrees at their true ground proportion
        aspect = 1.0 / max(math.cos(math.radians((miny + maxy) / 2)), 0.1)
    panel_w = 6.0
    panel_h = panel_w * (maxy - miny) / (maxx - minx) * aspect + 0.9
    fig, axes = plt.subplots(
        1, len(panels), figsize=(panel_w * len(panels), panel_h), squeeze=False
    )
    outline = reproject_geometry(conus_boundary(), WGS84, grid.crs)
    for ax, panel in zip(axes[0], panels, strict=True):
        where = dict(extent=(minx, maxx, miny, maxy), origin="upper", interpolation="nearest")
        if panel.values.ndim == 3:  # an RGB composite in 0-1, transparent where NaN
            shown = grid.mask & np.isfinite(panel.values).all(axis=-1)
            rgba = np.dstack([np.clip(np.nan_to_num(panel.values), 0, 1), shown])
            image = None
            ax.imshow(rgba, aspect=aspect, **where)
        else:
            values = np.where(grid.mask, panel.values, np.nan)
            cmap = plt.get_cmap(panel.cmap).with_extremes(bad=(0, 0, 0, 0))
            image = ax.imshow(
                np.ma.masked_invalid(values),
                cmap=cmap,
                vmin=panel.vmin,
                vmax=panel.vmax,
                aspect=aspect,
                **where,
            )
        for part in getattr(outline, "geoms", [outline]):
            if part.geom_type == "Polygon":
                xs, ys = part.exterior.xy
                ax.plot(xs, ys, color="0.25", linewidth=0.4)
        ax.set_xlim(minx, maxx)
        ax.set_ylim(miny, maxy)
        ax.set_title(panel.title, fontsize=10)
        ax.tick_params(labelsize=7)
        if image is not None:
            fig.colorbar(image, ax=ax, shrink=0.7, label=panel.label)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    with atomic_output(path, overwrite) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return Path(path)
