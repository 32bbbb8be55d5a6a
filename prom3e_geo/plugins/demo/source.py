"""The `demo` source: Sentinel-2-like patches rendered from the demo world, offline."""

from __future__ import annotations

import numpy as np

from prom3e_geo.errors import InputError
from prom3e_geo.imagery.base import RGB_BANDS, PatchBatch
from prom3e_geo.plugins.demo.render import satellite_patches
from prom3e_geo.plugins.demo.world import DemoWorld


class DemoSource:
    """Patches of the synthetic demo world (deterministic per location and seed)."""

    name = "demo"
    bands: tuple[str, ...] = RGB_BANDS

    def __init__(self, *, seed: int = 0, size: int = 32, bands: str = "rgb") -> None:
        if bands != "rgb":
            raise InputError("the demo source renders RGB only (bands=rgb)")
        self.world = DemoWorld(seed)
        self.size = size

    def describe(self) -> dict[str, object]:
        return {"source": "demo", "seed": self.world.seed, "size_px": self.size, "synthetic": True}

    def close(self) -> None:
        """Nothing to release: patches are rendered in memory."""

    def fetch(self, lon: np.ndarray, lat: np.ndarray) -> PatchBatch:
        patches = satellite_patches(self.world, lon, lat, self.size)
        cloud = (patches.mean(axis=-1) > 0.3).mean(axis=(1, 2))
        meta = [
            {"scene": f"demo-world-{self.world.seed}", "cloud_fraction": round(float(c), 3)}
            for c in cloud
        ]
        return PatchBatch(patches, np.ones(len(patches), dtype=bool), meta)
