"""The patch-source protocol: one Sentinel-2 L2A patch per cell centre.

A source turns cell centres (lon/lat degrees) into a `PatchBatch`: surface-reflectance patches
[N, H, W, B] (float32, digital numbers / 10000; a patch cache hands out the float16 it stores),
a per-patch validity flag and per-patch metadata (scene id, date, cloud fraction, or the reason a
cell failed). The grid engine calls `fetch` from several prefetch threads at once, so a source
must be thread-safe: shared counters go through `TrafficCounter`, clients must allow concurrent
calls. `close` releases what the source holds (thread pools, sessions). Bands are `RGB_BANDS` (B04, B03, B02: what the encoders see) or, with the source
option `bands=all`, `ALL_BANDS`: the twelve L2A spectral bands at 10 m, RGB first so that
`patches[..., :3]` is always RGB.

Sources are chosen by spec `NAME[:ARGUMENT][?key=value&...]` from the `SOURCES` registry (entry
point group `prom3e_geo.sources`): built in are `local:PATH` (local rasters), `sentinelhub`
(the Sentinel Hub Process API), `stac` (a STAC API with COG assets, Earth Search by default),
`s2cloudless` (EOX's annual cloud-free mosaic, the imagery TaxaBind's satellite tower saw: uint8
display RGB, declared by the source's `radiometry = "display"`) and `cache:PATH` (a patch cache
filled by `prom3e-geo fetch`); the demo plug-in adds `demo`. A source
class is constructed as `Source(ARGUMENT, **options)` (no ARGUMENT when the spec has none).
"""

from __future__ import annotations

import inspect
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from prom3e_geo.errors import SourceError
from prom3e_geo.registry import Registry

DEFAULT_TIME = "2023-06-01/2023-08-31"  # summer: leaves on, least snow
RGB_BANDS = ("B04", "B03", "B02")
ALL_BANDS = (*RGB_BANDS, "B01", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")


def band_names(bands: str) -> tuple[str, ...]:
    """The `bands` source option (rgb or all) as band names."""
    if bands not in ("rgb", "all"):
        raise SourceError(f"bands={bands!r}: use rgb or all")
    return RGB_BANDS if bands == "rgb" else ALL_BANDS


def check_window(time: str, max_cloud: float) -> tuple[tuple[str, str], float]:
    """The time window START/END and the cloud limit (0-1), checked."""
    parts = str(time).split("/")
    if len(parts) != 2 or not all(parts):
        raise SourceError(f"time window {time!r} is not START/END")
    try:
        cloud = float(max_cloud)
    except (TypeError, ValueError):
        raise SourceError(f"max_cloud {max_cloud!r} is not a number between 0 and 1") from None
    if not 0 <= cloud <= 1:
        raise SourceError(f"max_cloud {max_cloud} is not between 0 and 1")
    return (parts[0], parts[1]), cloud


@dataclass(frozen=True, kw_only=True)
class L2AOptions:
    """The options every Sentinel-2 L2A service source takes (the STAC and Sentinel Hub
    sources extend it with their own): patch size (px) and pixel size (m), the time window
    START/END, the cloud limit (0-1), the bands (rgb or all), the request tile (px), the nodata
    share above which a patch is invalid, the first retry wait (s) and the timeout (s)."""

    size: int = 256
    resolution: float = 10.0
    time: str = DEFAULT_TIME
    max_cloud: float = 0.2
    bands: str = "rgb"
    tile_px: int = 2500
    max_nodata: float = 0.5
    retry_wait: float = 1.0
    timeout: float = 60.0


@dataclass
class PatchBatch:
    patches: np.ndarray  # [N, H, W, B] reflectance, RGB first: float32 (float16 from a cache)
    valid: np.ndarray  # [N] bool
    meta: list[dict[str, Any]] = field(default_factory=list)


class PatchSource(Protocol):
    """Anything that can deliver patches for cell centres."""

    name: str
    bands: tuple[str, ...]
    size: int  # patch edge in pixels

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable description for manifests (no credentials)."""

    def fetch(self, lon: np.ndarray, lat: np.ndarray) -> PatchBatch:
        """Patches centred on the given points (called from several threads at once)."""

    def close(self) -> None:
        """Release threads, sessions and files."""


SOURCES: Registry[type] = Registry("prom3e_geo.sources", "imagery source")


class TrafficCounter:
    """Request and byte counts of a source, safe to update from the prefetch threads."""

    def __init__(self, *names: str) -> None:
        self._counts = dict.fromkeys(names, 0)
        self._lock = threading.Lock()

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def __getitem__(self, name: str) -> int:
        return self._counts[name]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


def parse_spec(spec: str) -> tuple[str, str, dict[str, int | float | str]]:
    """`name[:argument][?key=value&...]` -> (name, argument, options)."""
    head, _, query = spec.partition("?")
    name, _, argument = head.partition(":")
    options: dict[str, int | float | str] = {}
    for pair in filter(None, query.split("&")):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SourceError(f"imagery source option {pair!r} in {spec!r} is not key=value")
        options[key.replace("-", "_")] = _number_or_text(value)
    return name, argument, options


def _number_or_text(value: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def open_source(spec: str, **options: object) -> PatchSource:
    """A patch source from its spec (see the module docstring), for example
    `stac?time=2023-06-01/2023-08-31&max_cloud=0.2`; `options` are defaults that the spec's own
    options override. Options the source does not take are an input error naming them.

    A source class whose options are a dataclass (its `Options`, such as `L2AOptions`) is built
    as `Source(ARGUMENT, options=Options(**options))`; any other as `Source(ARGUMENT, **options)`."""
    name, argument, spec_options = parse_spec(spec)
    cls = SOURCES.get(name)
    options = {**options, **spec_options}
    args = (argument,) if argument else ()
    kind = getattr(cls, "Options", None)
    try:
        if kind is None:
            inspect.signature(cls).bind(*args, **options)
        else:
            inspect.signature(cls).bind(*args)
            inspect.signature(kind).bind(**options)
    except TypeError:
        params = list(inspect.signature(cls).parameters.values())
        positional = [
            p.name for p in params if p.default is p.empty and p.kind is not p.VAR_KEYWORD
        ]
        named = params if kind is None else inspect.signature(kind).parameters.values()
        keywords = [p.name for p in named if p.default is not p.empty]
        usage = f"{name}:{positional[0].upper()}" if positional else name
        raise SourceError(
            f"imagery source {spec!r}: the {name} source is written {usage!r} and takes the "
            f"options {', '.join(keywords) or 'none'}"
        ) from None
    source: PatchSource = (
        cls(*args, **options) if kind is None else cls(*args, options=kind(**options))
    )
    return source
