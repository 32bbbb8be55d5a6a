"""Pipeline assembly: from a `PipelineSpec` to loaded models, encoders and an imagery source.

A spec's `model` is either a model preset, looked up in the `PRESETS` registry (entry point group
`prom3e_geo.presets`; the demo plug-in registers `demo`), or a ProM3E weights path. A preset is a
function `(device) -> PipelineParts`: the model, its encoders, its environment and its default
imagery source. The spec's own encoders, environment raster and source override the preset's.
Pipelines are built once per process and spec (Dask workers rebuild them from the spec).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from prom3e_geo.encoders.base import Encoder
from prom3e_geo.engine.cells import CellContext, Environment
from prom3e_geo.engine.spec import DEFAULT_MODEL, PipelineSpec
from prom3e_geo.model.prom3e import ProM3E
from prom3e_geo.registry import Registry

DEFAULT_ENCODERS = {"loc": "geoclip"}  # for a ProM3E weights path without a preset
TAXABIND_PATCH = {"size": 256, "resolution": 10.0}  # TaxaBind's Sentinel-2 patches


@dataclass
class PipelineParts:
    """What a model preset provides."""

    model: ProM3E
    weights_sha256: str  # recorded in the manifest: a store is never finished by other weights
    encoders: dict[str, Encoder]
    encoder_specs: dict[str, str]  # modality -> the spec that rebuilds it, for the manifest
    environment: Environment | None = None
    source: str | None = None  # default imagery source spec
    synthetic: bool = False  # outputs are tagged as made from synthetic data
    coverage: tuple[float, float, float, float] | None = None  # lon/lat box the model knows
    patch: dict | None = None  # the imagery its sat encoder was trained on: size (px), resolution


PRESETS: Registry[Callable[[str], PipelineParts]] = Registry("prom3e_geo.presets", "model preset")


@dataclass
class Pipeline:
    spec: PipelineSpec
    model: ProM3E
    cells: CellContext
    manifest: dict
    precision: str  # resolved: bf16 or float32
    coverage: tuple[float, float, float, float] | None = None

    def close(self) -> None:
        if self.cells.source is not None:
            self.cells.source.close()


_PIPELINES: dict[PipelineSpec, Pipeline] = {}


def load_pipeline(spec: PipelineSpec) -> Pipeline:
    """Build (once per process) the models a spec names."""
    if spec in _PIPELINES:
        return _PIPELINES[spec]
    from prom3e_geo import __version__
    from prom3e_geo.runtime import flush_subnormals_, resolve_device, resolve_precision

    device = resolve_device(spec.device)
    precision = resolve_precision(spec.precision, device)
    model_id = spec.model or DEFAULT_MODEL
    parts = _parts(model_id, spec, str(device))
    source = None
    if "sat" in spec.context and (spec.source or parts.source):
        from prom3e_geo.imagery.base import open_source

        # the pipeline's patch size (and resolution) are the source's defaults, and a patch
        # cache made with others is refused by the cache source
        source = open_source(spec.source or parts.source, **(parts.patch or {}))
    cells = CellContext(parts.encoders, source, parts.environment)
    for encoder in cells.encoders.values():
        encoder.amp = precision
    manifest = {
        "software": f"prom3e-geo {__version__}",
        "model": model_id,
        "model_sha256": parts.weights_sha256,
        "source": source.describe() if source is not None else None,
        "context": list(spec.context),
        "encoders": parts.encoder_specs,
        "env_raster": spec.env_raster,
        "precision": precision,
        "synthetic": parts.synthetic or bool(source and source.describe().get("synthetic")),
    }
    model = flush_subnormals_(parts.model.to(device).eval())
    pipeline = Pipeline(spec, model, cells, manifest, precision, parts.coverage)
    _PIPELINES[spec] = pipeline
    return pipeline


def _parts(model_id: str, spec: PipelineSpec, device: str) -> PipelineParts:
    """The preset's parts (or a weights path's, with default encoders), with the spec's
    encoders and environment raster applied over them."""
    from prom3e_geo.encoders import build_encoder

    overrides = dict(spec.encoders)
    if model_id in PRESETS:
        parts = PRESETS.get(model_id)(device)
    else:
        from prom3e_geo.model.checkpoint import load_prom3e

        loaded = load_prom3e(model_id, device)
        overrides = {**DEFAULT_ENCODERS, **overrides}
        parts = PipelineParts(loaded.model, loaded.sha256, {}, {}, patch=TAXABIND_PATCH)
    built = {m: build_encoder(m, s, device) for m, s in overrides.items()}
    environment = parts.environment
    if spec.env_raster:
        from prom3e_geo.encoders.environment import EnvironmentSampler

        environment = EnvironmentSampler(spec.env_raster).sample
    return replace(
        parts,
        encoders={**parts.encoders, **built},
        encoder_specs={**parts.encoder_specs, **overrides},
        environment=environment,
    )


def spec_from_manifest(manifest: dict, **speed) -> PipelineSpec:
    """The spec that rebuilds the pipeline a store was made with (for queries, inversion and
    sigma of context subsets); `speed` sets device, batch size and the like."""
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
