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

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from prom3e_geo.encoders.base import Encoder
from prom3e_geo.engine.cells import CellContext
from prom3e_geo.engine.parts import TAXABIND_PATCH, PipelineParts
from prom3e_geo.engine.presets import is_recipe_path, read_weights_recipe, recipe_parts
from prom3e_geo.engine.spec import DEFAULT_MODEL, PipelineSpec
from prom3e_geo.model.prom3e import ProM3E
from prom3e_geo.registry import Registry

DEFAULT_ENCODERS = {"loc": "geoclip"}  # for a ProM3E weights path without a preset


class EncoderSet(Mapping):
    """A pipeline's encoders by modality: those built already, and the others built from their
    spec on first use (with the preset's preprocessing and the run's autocast)."""

    def __init__(
        self, built, specs, device: str, preprocessing: dict, hint: str | None = None
    ) -> None:
        self.built = dict(built)
        self.specs = {m: s for m, s in specs.items() if m not in self.built}
        self.device, self.preprocessing, self.amp = device, preprocessing, None
        self.hint = hint

    def __getitem__(self, modality: str) -> Encoder:
        if modality not in self.built:
            if modality not in self.specs:
                raise KeyError(modality)
            from prom3e_geo.encoders import build_encoder

            encoder = build_encoder(
                modality,
                self.specs[modality],
                self.device,
                self.preprocessing.get(modality),
                self.hint,
            )
            self.built[modality] = self._with_amp(encoder)
        return self.built[modality]

    def __iter__(self) -> Iterator[str]:
        return iter({**self.built, **self.specs})

    def __len__(self) -> int:
        return len({**self.built, **self.specs})

    def set_amp(self, amp: str) -> None:
        self.amp = amp
        for encoder in self.built.values():
            self._with_amp(encoder)

    def _with_amp(self, encoder: Encoder) -> Encoder:
        if self.amp is not None:
            encoder.amp = self.amp
        return encoder

    def origins(self) -> dict[str, str]:
        """modality -> ORG/NAME@COMMIT of the built encoders whose weights came from the hub."""
        return {m: e.origin for m, e in self.built.items() if e.origin}

    def origin(self, modality: str) -> str | None:
        """ORG/NAME@COMMIT of a modality's hub weights, fetched but not loaded when not built
        yet (a store records its context encoders without loading them twice)."""
        if modality in self.built:
            return self.built[modality].origin
        if modality not in self.specs:
            return None
        from prom3e_geo.encoders.registry import fetch_encoder

        fetched = fetch_encoder(modality, self.specs[modality], self.hint)
        return fetched.origin if fetched else None


PRESETS: Registry[Callable[[str], PipelineParts]] = Registry("prom3e_geo.presets", "model preset")


@dataclass
class Pipeline:
    spec: PipelineSpec
    model: ProM3E
    cells: CellContext
    manifest: dict
    precision: str  # resolved: bf16 or float32
    coverage: tuple[float, float, float, float] | None = None
    companions: dict[str, str] = field(default_factory=dict)  # PipelineParts.companions

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
    parts.encoders.set_amp(precision)
    origins = {m: o for m in spec.context if (o := parts.encoders.origin(m))}
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
        "origins": {**parts.origins, **origins},
    }
    model = flush_subnormals_(parts.model.to(device).eval())
    pipeline = Pipeline(
        spec, model, cells, manifest, precision, parts.coverage, dict(parts.companions)
    )
    _PIPELINES[spec] = pipeline
    return pipeline


def _parts(model_id: str, spec: PipelineSpec, device: str) -> PipelineParts:
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
    encoders = EncoderSet(built, specs, device, preprocessing, parts.hint)
    environment = parts.environment
    if spec.env_raster:
        from prom3e_geo.encoders.environment import EnvironmentSampler

        environment = EnvironmentSampler(spec.env_raster).sample
    return replace(parts, encoders=encoders, encoder_specs=specs, environment=environment)


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
