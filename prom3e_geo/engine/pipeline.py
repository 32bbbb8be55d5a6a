"""Pipeline assembly: from a `PipelineSpec` to loaded models, encoders and an imagery source.

A spec's `model` is a model preset, looked up in the `PRESETS` registry (entry point group
`prom3e_geo.presets`: `taxabind` from `presets.py`, `demo` from the demo plug-in), a preset
recipe (`.yaml`, see `presets.py`), or ProM3E weights (a path or a hub id). A preset is a
function `(device) -> PipelineParts`: the model, its encoders (built, or specs built when first
needed), its environment and its default imagery source. The spec's own encoders, environment
raster and source override the preset's. Pipelines are built once per process and spec (Dask
workers rebuild them from the spec).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from prom3e_geo.engine.cells import CellContext, Environment
from prom3e_geo.engine.encoder_set import EncoderSet
from prom3e_geo.engine.parts import TAXABIND_PATCH, PipelineParts
from prom3e_geo.engine.presets import is_recipe_path, read_weights_recipe, recipe_parts
from prom3e_geo.engine.spec import DEFAULT_MODEL, PipelineSpec
from prom3e_geo.model.prom3e import ProM3E
from prom3e_geo.registry import Registry

DEFAULT_ENCODERS = {"loc": "geoclip"}  # for a ProM3E weights path without a preset


PRESETS: Registry[Callable[[str], PipelineParts]] = Registry("prom3e_geo.presets", "model preset")


@dataclass
class Pipeline:
    """A resolved spec's loaded parts: the model on its device, the cell context (encoders,
    imagery source, environment) and the manifest a store made with it records."""

    spec: PipelineSpec  # resolved (`resolve_spec`): Dask workers rebuild the pipeline from it
    model: ProM3E
    encoders: EncoderSet  # the context's towers and the query towers (built when first used)
    cells: CellContext
    manifest: dict[str, Any]
    precision: str  # resolved: bf16 or float32
    coverage: tuple[float, float, float, float] | None = None
    companions: dict[str, str] = field(default_factory=dict)  # PipelineParts.companions

    def close(self) -> None:
        if self.cells.source is not None:
            self.cells.source.close()


_PIPELINES: dict[PipelineSpec, Pipeline] = {}


def resolve_spec(spec: PipelineSpec) -> PipelineSpec:
    """The spec with every choice made: the model named (`DEFAULT_MODEL` for None), the device
    and the precision concrete (`auto` -> cuda or cpu, bf16 or float32). Resolving a resolved
    spec changes nothing, so a spec and its resolution name one pipeline."""
    from prom3e_geo.runtime import resolve_device, resolve_precision

    device = resolve_device(spec.device)
    return replace(
        spec,
        model=spec.model or DEFAULT_MODEL,
        device=str(device),
        precision=resolve_precision(spec.precision, device),
    )


def load_pipeline(spec: PipelineSpec) -> Pipeline:
    """The pipeline of a spec, built once per process (`build_pipeline`) for its resolution."""
    resolved = resolve_spec(spec)
    if resolved not in _PIPELINES:
        _PIPELINES[resolved] = build_pipeline(resolved)
    return _PIPELINES[resolved]


def build_pipeline(spec: PipelineSpec) -> Pipeline:
    """Load the model, encoders and imagery source a resolved spec names."""
    from prom3e_geo.runtime import flush_subnormals_
    from prom3e_geo.version import __version__

    model_id = spec.model or DEFAULT_MODEL
    parts = _assemble(model_id, spec, spec.device)
    encoders = EncoderSet(
        parts.encoders, parts.encoder_specs, spec.device, parts.preprocessing, parts.hint
    )
    source = None
    if "sat" in spec.context and (spec.source or parts.source):
        from prom3e_geo.imagery.base import open_source

        # the pipeline's patch size (and resolution) are the source's defaults, and a patch
        # cache made with others is refused by the cache source
        source = open_source(spec.source or parts.source or "", **(parts.patch or {}))
    cells = CellContext(encoders, source, parts.environment)
    encoders.set_amp(spec.precision)
    origins = {m: o for m in spec.context if (o := encoders.origin(m))}
    described = source.describe() if source is not None else None
    manifest = {
        "software": f"prom3e-geo {__version__}",
        "model": model_id,
        "model_sha256": parts.weights_sha256,
        "source": described,
        "context": list(spec.context),
        "encoders": parts.encoder_specs,
        "env_raster": spec.env_raster,
        "precision": spec.precision,
        "synthetic": parts.synthetic or bool(described and described.get("synthetic")),
        "origins": {**parts.origins, **origins},
    }
    model = parts.model.to(spec.device).eval()
    flush_subnormals_(model)
    return Pipeline(
        spec,
        model,
        encoders,
        cells,
        manifest,
        spec.precision,
        parts.coverage,
        dict(parts.companions),
    )


def _assemble(model_id: str, spec: PipelineSpec, device: str) -> PipelineParts:
    """The preset's parts (or a weights path's, with default encoders), with the spec's
    encoders and environment raster applied over them."""
    overrides = dict(spec.encoders)
    if model_id in PRESETS:
        parts = PRESETS.get(model_id)(device)
    elif is_recipe_path(model_id):
        parts = recipe_parts(read_weights_recipe(model_id), device)
    else:
        from prom3e_geo.model.checkpoint import load_prom3e

        if "/" not in model_id and not Path(model_id).suffix and not Path(model_id).exists():
            PRESETS.get(model_id)  # a bare name: an unknown preset, named as such
        loaded = load_prom3e(model_id, device)
        overrides = {**DEFAULT_ENCODERS, **overrides}
        origins = {"model": loaded.origin} if loaded.origin else {}
        parts = PipelineParts(
            loaded.model,
            loaded.sha256,
            {},
            {},
            synthetic=loaded.synthetic,
            patch=TAXABIND_PATCH,
            origins=origins,
        )
    built = {m: e for m, e in parts.encoders.items() if m not in overrides}
    specs = {**parts.encoder_specs, **overrides}
    # a preset's preprocessing belongs to its own towers, not to a tower the spec puts instead
    preprocessing = {m: p for m, p in parts.preprocessing.items() if m not in overrides}
    environment: Environment | None = parts.environment
    if spec.env_raster:
        from prom3e_geo.encoders.environment import EnvironmentSampler

        environment = EnvironmentSampler(spec.env_raster).sample
    return replace(
        parts,
        encoders=built,
        encoder_specs=specs,
        preprocessing=preprocessing,
        environment=environment,
    )


def spec_from_manifest(manifest: dict[str, Any], **speed: Any) -> PipelineSpec:
    """The spec that rebuilds the pipeline a given store was made with (for queries, inversion
    and sigma of context subsets); `speed` sets device, batch size and the like."""
    preset_own = manifest["model"] if manifest["model"] in PRESETS else None
    encoders = tuple((m, s) for m, s in (manifest.get("encoders") or {}).items() if s != preset_own)
    return PipelineSpec(
        model=manifest["model"],
        context=tuple(manifest["context"]),
        encoders=encoders,
        env_raster=manifest.get("env_raster"),
        **speed,
    )


def close_pipelines() -> None:
    """Release every pipeline's imagery source (threads, sessions) and forget the pipelines."""
    for pipeline in _PIPELINES.values():
        pipeline.close()
    _PIPELINES.clear()
