"""The patch-source protocol: one Sentinel-2 L2A patch per cell centre.

A source turns cell centres (lon/lat degrees) into a `PatchBatch`: surface-reflectance patches
[N, H, W, 3] (red, green, blue = B04, B03, B02 / 10000, float32), a per-patch validity flag and
per-patch metadata (scene id, date, cloud fraction, or the reason a cell failed). Sources are
chosen by spec: `demo` (the demo world) and `local:PATH` (local rasters); `sentinelhub` and `stac`
are planned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from prom3e_geo.errors import InputError


@dataclass
class PatchBatch:
    patches: np.ndarray  # [N, H, W, 3] float32 reflectance
    valid: np.ndarray  # [N] bool
    meta: list[dict] = field(default_factory=list)


class PatchSource(Protocol):
    """Anything that can deliver patches for cell centres."""

    name: str

    def describe(self) -> dict:
        """A JSON-serialisable description for manifests (no credentials)."""

    def fetch(self, lon: np.ndarray, lat: np.ndarray) -> PatchBatch:
        """Patches centred on the given points."""


def open_source(spec: str, **options) -> PatchSource:
    """A patch source from its spec (`demo`, ...)."""
    if spec == "demo":
        from prom3e_geo.imagery.demo import DemoSource

        return DemoSource(**options)
    if spec.startswith("local:"):
        from prom3e_geo.imagery.local import LocalSource

        return LocalSource(spec.removeprefix("local:"), **options)
    raise InputError(f"unknown imagery source {spec!r} (available: demo, local:PATH)")
