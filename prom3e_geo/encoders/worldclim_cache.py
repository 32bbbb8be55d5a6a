"""The WorldClim 2.1 environment raster in the cache: where it lives, prepared on first use."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from prom3e_geo.settings import Settings


def worldclim_path(settings: Settings) -> Path:
    """Where the cached WorldClim feature raster lives."""
    return settings.cache_dir / "worldclim" / "wc2.1_5m_env20.tif"


def worldclim_raster(settings: Settings) -> Path:
    """WorldClim 2.1's 20 features in the cache, prepared (downloaded) the first time."""
    from prom3e_geo.worldclim import prepare_worldclim

    out = worldclim_path(settings)
    folder = out.parent
    if not out.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        prepare_worldclim(out, base_url=settings.worldclim_url, downloads=folder / "downloads")
    return out


class WorldClimEnvironment:
    """The environment of the cached WorldClim raster, prepared on first use (a map whose
    context has no `env` never downloads it)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._sample: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None

    def __call__(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        if self._sample is None:
            from prom3e_geo.encoders.environment import EnvironmentSampler

            self._sample = EnvironmentSampler(worldclim_raster(self.settings)).sample
        return self._sample(lon, lat)
