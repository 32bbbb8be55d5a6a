"""The layer set: what every layer function returns and every writer takes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from prom3e_geo.grid import Grid


@dataclass
class LayerSet:
    """Named 2-D bands on a grid, their one-line descriptions, the parameters that made them
    (written as provenance tags) and the manifest of the store they came from (if any)."""

    bands: dict[str, np.ndarray]
    docs: dict[str, str]
    params: dict[str, object]
    grid: Grid
    manifest: dict[str, object] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)  # band -> unit (tags, legends)
    classes: dict[str, tuple[str, ...]] = field(
        default_factory=dict
    )  # class bands: names of 0, 1..

    def summaries(self) -> dict[str, tuple[float, float, float]]:
        """(min, mean, max) of each band over its finite cells (NaN for an empty band)."""
        out = {}
        for name, band in self.bands.items():
            finite = band[np.isfinite(band)]
            out[name] = (
                (float(finite.min()), float(finite.mean()), float(finite.max()))
                if finite.size
                else (np.nan, np.nan, np.nan)
            )
        return out
