"""Regenerate the README's demo pictures from `make demo` outputs (demo-out/) and the world's truth.

make demo && .venv/bin/python scripts/make_readme_figures.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from prom3e_geo.grid import build_grid
from prom3e_geo.io.png import Panel, write_quicklook
from prom3e_geo.plugins.demo.build import load_demo
from prom3e_geo.plugins.demo.world import RANGE_THRESHOLD


def main() -> None:
    grid = build_grid()
    demo = load_demo()
    lon, lat = grid.lonlat()
    suit = demo.world.suitability(lon, lat).reshape(*grid.shape, -1)
    j = [s.common for s in demo.world.species].index("northern cardinal")
    truth = (suit[..., j] >= RANGE_THRESHOLD).astype(np.float32)
    richness = (suit >= RANGE_THRESHOLD).sum(-1).astype(np.float32)
    with rasterio.open("demo-out/map.tif") as ds:
        similarity = ds.read(1)
    with rasterio.open("demo-out/sigma.tif") as ds:
        sigma = ds.read(1)
    Path("docs").mkdir(exist_ok=True)
    write_quicklook(
        "docs/cardinal.png",
        [
            Panel(similarity, "sdm: similarity to examples/cardinal.jpg", "cosine", "YlGn"),
            Panel(
                truth, "true range of the northern cardinal (demo world)", "in range", "Greys", 0, 1
            ),
        ],
        grid,
        overwrite=True,
    )
    write_quicklook(
        "docs/uncertainty.png",
        [
            Panel(sigma, "uncertainty: ||sigma||_1, location only", "sigma_l1", "magma"),
            Panel(richness, "true species richness (demo world)", "species", "viridis"),
        ],
        grid,
        overwrite=True,
    )
    print("wrote docs/cardinal.png, docs/uncertainty.png")


if __name__ == "__main__":
    main()
