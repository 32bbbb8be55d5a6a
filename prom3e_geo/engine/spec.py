"""The typed description of a grid inference run: what computes the cells, and how fast."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prom3e_geo.errors import InputError

CONTEXT_MODALITIES = ("sat", "loc", "env")
DEFAULT_MODEL = "demo"  # the preset used when no model is named: maps run offline out of the box


def parse_context(spec: str | Sequence[str]) -> list[str]:
    """`sat,loc,env` -> ['sat', 'loc', 'env'] (validated, order of the model)."""
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    unknown = [n for n in names if n not in CONTEXT_MODALITIES]
    if unknown or not names:
        raise InputError(f"context {spec!r}: choose one or more of {', '.join(CONTEXT_MODALITIES)}")
    return [m for m in CONTEXT_MODALITIES if m in names]


@dataclass(frozen=True)
class PipelineSpec:
    """What computes the cells, in a picklable form that Dask workers rebuild from.

    `model` is a model preset's name (the `prom3e_geo.presets` registry: the demo plug-in adds
    `demo`) or a ProM3E weights path; None is `DEFAULT_MODEL`. `encoders` maps modalities to encoder specs (a path or a
    registered encoder name such as `geoclip`); they override a preset's own encoders. `source`
    is the imagery source spec (default: the preset's source); `env_raster` the 20-band
    environment raster. `device`, `batch_size`, `prefetch` and `precision` change only the speed
    (and, for precision, the rounding recorded in the store manifest).
    """

    model: str | None = None
    source: str | None = None
    context: tuple[str, ...] = CONTEXT_MODALITIES
    encoders: tuple[tuple[str, str], ...] = ()
    env_raster: str | None = None
    device: str = "auto"
    batch_size: int = 1024
    prefetch: int = 2  # batches gathered ahead, each on its own thread
    precision: str = "auto"  # auto, bf16 or float32 (runtime.resolve_precision)
