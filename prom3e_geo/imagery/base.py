"""The patch-source protocol: one Sentinel-2 L2A patch per cell centre.

A source turns cell centres (lon/lat degrees) into a `PatchBatch`: surface-reflectance patches
[N, H, W, B] (float32, digital numbers / 10000; a patch cache hands out the float16 it stores),
a per-patch validity flag and per-patch metadata (scene id, date, cloud fraction, or the reason a
cell failed). Bands are `RGB_BANDS` (B04, B03, B02: what the encoders see) or, with the source
option `bands=all`, `ALL_BANDS`: the twelve L2A spectral bands at 10 m, RGB first so that
`patches[..., :3]` is always RGB. Sources are chosen by spec: `demo` (the demo world), `local:PATH`
(local rasters), `sentinelhub` (the Sentinel Hub Process API), `stac` (a STAC API with COG assets,
Earth Search by default) and `cache:PATH` (a patch cache filled by `prom3e-geo fetch`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from prom3e_geo.errors import InputError

DEFAULT_TIME = "2023-06-01/2023-08-31"  # summer: leaves on, least snow
RGB_BANDS = ("B04", "B03", "B02")
ALL_BANDS = (*RGB_BANDS, "B01", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")


def band_names(bands: str) -> tuple[str, ...]:
    """The `bands` source option (rgb or all) as band names."""
    if bands not in ("rgb", "all"):
        raise InputError(f"bands={bands!r}: use rgb or all")
    return RGB_BANDS if bands == "rgb" else ALL_BANDS


def check_window(time: str, max_cloud: float) -> tuple[tuple[str, str], float]:
    """The time window START/END and the cloud limit (0-1), checked."""
    parts = str(time).split("/")
    if len(parts) != 2 or not all(parts):
        raise InputError(f"time window {time!r} is not START/END")
    if not 0 <= float(max_cloud) <= 1:
        raise InputError(f"max_cloud {max_cloud} is not between 0 and 1")
    return (parts[0], parts[1]), float(max_cloud)


@dataclass
class PatchBatch:
    patches: np.ndarray  # [N, H, W, B] reflectance, RGB first: float32 (float16 from a cache)
    valid: np.ndarray  # [N] bool
    meta: list[dict] = field(default_factory=list)


class PatchSource(Protocol):
    """Anything that can deliver patches for cell centres."""

    name: str
    bands: tuple[str, ...]

    def describe(self) -> dict:
        """A JSON-serialisable description for manifests (no credentials)."""

    def fetch(self, lon: np.ndarray, lat: np.ndarray) -> PatchBatch:
        """Patches centred on the given points."""


def parse_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """`name[:argument][?key=value&...]` -> (name, argument, options)."""
    head, _, query = spec.partition("?")
    name, _, argument = head.partition(":")
    options = {}
    for pair in filter(None, query.split("&")):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"imagery source option {pair!r} in {spec!r} is not key=value")
        options[key.replace("-", "_")] = _number_or_text(value)
    return name, argument, options


def _number_or_text(value: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def open_source(spec: str, **options) -> PatchSource:
    """A patch source from its spec: `demo`, `local:PATH`, `cache:PATH` (a patch cache made by
    `fetch`), `sentinelhub[:PROFILE|cdse]`,
    `stac[:URL]`, each optionally followed by `?key=value&...` source options (for example
    `stac?time=2023-06-01/2023-08-31&max_cloud=0.2`)."""
    name, argument, spec_options = parse_spec(spec)
    options = {**options, **spec_options}
    try:
        if name == "demo":
            from prom3e_geo.imagery.demo import DemoSource

            return DemoSource(**options)
        if name == "local":
            from prom3e_geo.imagery.local import LocalSource

            return LocalSource(argument, **options)
        if name == "cache":
            from prom3e_geo.imagery.cached import CacheSource

            return CacheSource(argument, **options)
        if name == "sentinelhub":
            from prom3e_geo.imagery.sentinelhub import SentinelHubSource

            return SentinelHubSource(argument or None, **options)
        if name == "stac":
            from prom3e_geo.imagery.stac import StacSource

            return StacSource(argument or None, **options)
    except TypeError as exc:
        raise InputError(f"imagery source {spec!r}: {exc}") from None
    raise InputError(
        f"unknown imagery source {spec!r} "
        "(available: demo, local:PATH, cache:PATH, sentinelhub, stac)"
    )
