"""`embed`, `sdm`, `uncertainty` and `ica`: maps from per-cell embeddings.

Every map workflow takes its own spec first (what to compute), then the `MapInputs` (where the
embeddings come from: `workflows.sessions`) and the `OutputSpec` (where the layers go); the
settings, a progress callback and the command line recorded in the provenance are keyword
arguments. Each returns a `MapResult`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prom3e_geo.engine.pipeline import Pipeline, load_pipeline
from prom3e_geo.engine.runner import EmbedSummary, embed_grid
from prom3e_geo.engine.spec import PipelineSpec
from prom3e_geo.errors import InputError
from prom3e_geo.evaluate.uncertainty import ErrorCalibration
from prom3e_geo.io.layers import write_layer_set
from prom3e_geo.io.outputs import OutputSpec
from prom3e_geo.layers.base import LayerSet
from prom3e_geo.layers.ica import ica_layers, is_register_token
from prom3e_geo.layers.novelty import NoveltyReference, novelty_layers
from prom3e_geo.layers.sdm import check_queries, check_sdm_options, check_towers
from prom3e_geo.layers.uncertainty import uncertainty_layers
from prom3e_geo.settings import Settings
from prom3e_geo.workflows.sessions import (
    MapInputs,
    MapSession,
    open_embeddings,
    store_pipeline,
)
from prom3e_geo.workflows.specs import GridSpec, Progress, RunSpec, SdmSpec, provenance_command

__all__ = [
    "IcaSpec",
    "MapInputs",
    "MapResult",
    "MapSession",
    "SdmSpec",
    "UncertaintySpec",
    "embed",
    "ica",
    "sdm",
    "uncertainty",
    "write_sdm",
    "write_uncertainty",
]


@dataclass
class MapResult:
    """A map workflow's layers and the files written."""

    layers: LayerSet
    written: list[Path | str]  # paths, and object-storage URLs of Zarr outputs


# how every map of a kind is styled: the CLI's outputs and the explorer's downloads
SDM_CMAP = "YlGn"
UNCERTAINTY_CMAP = "magma"  # sigma_l1's (the explorer's uncertainty layer)
UNCERTAINTY_LAYERS = ("sigma_l1", "expected_error", "novelty", "trust")
UNCERTAINTY_STYLE = {  # layer -> (title, colour ramp)
    "sigma_l1": ("uncertainty ||sigma||_1", UNCERTAINTY_CMAP),
    "expected_error": ("expected reconstruction error", "magma"),
    "novelty": ("novelty: context unlike the training data", "inferno"),
    "trust": ("where to distrust the species map", "inferno"),
}


def embed(
    spec: PipelineSpec,
    grid: GridSpec,
    out: str | Path,  # a path or a URL (stores.location)
    *,
    run: RunSpec | None = None,
    progress: Progress | None = None,
) -> EmbedSummary:
    """Fill (or finish) the embedding store at `out` with the pipeline `spec` over `grid`."""
    run = run or RunSpec()
    pipeline = load_pipeline(spec)
    return embed_grid(
        pipeline.spec, grid.build(), out, run.workers, run.scheduler, progress, run.retry_failed
    )


def write_sdm(layers: LayerSet, output: OutputSpec, command: str, mode: str) -> list[Path | str]:
    """An SDM layer set to its outputs, styled and titled as every SDM map is."""
    title = f"species distribution similarity ({mode})"
    return write_layer_set(layers, output, command, title, cmap=SDM_CMAP)


def write_uncertainty(
    layers: LayerSet, output: OutputSpec, command: str, layer: str = "sigma_l1"
) -> list[Path | str]:
    """An uncertainty layer set to its outputs, styled and titled as every map of its layer."""
    title, cmap = UNCERTAINTY_STYLE[layer]
    return write_layer_set(layers, output, command, title, cmap=cmap)


def sdm(
    spec: SdmSpec,
    inputs: MapInputs,
    output: OutputSpec,
    *,
    settings: Settings | None = None,
    progress: Progress | None = None,
    command: str | None = None,
) -> MapResult:
    """Species-distribution similarity map for query photos (or species names)."""
    check_sdm_options(spec.delta, spec.threshold)
    output.check([Path(q) for q in spec.queries])
    if inputs.embeddings is None:  # every query checked before a store is computed (hours
        # on a CPU): the pipeline building it has a tower for its kind, and the file reads
        check_towers(spec.queries, load_pipeline(inputs.pipeline).encoders)
        check_queries(spec.queries)
    layers = MapSession.open(inputs, settings, progress).sdm_layers(spec)
    written = write_sdm(layers, output, provenance_command(command, "sdm"), spec.mode)
    return MapResult(layers, written)


@dataclass(frozen=True)
class UncertaintySpec:
    """`uncertainty`: one layer per cell for `context` (any subset of the store's; None: the
    store's own): `sigma_l1` (the paper's; with a `calibration`, the expected error band beside
    it), `expected_error`, `novelty` or `trust`. The calibration and the novelty `reference`
    default to the ones shipped with the store's model (`PipelineParts.companions`)."""

    context: tuple[str, ...] | None = None
    layer: str = "sigma_l1"
    calibration: Path | None = None
    reference: Path | None = None


def uncertainty(
    spec: UncertaintySpec,
    inputs: MapInputs,
    output: OutputSpec,
    *,
    settings: Settings | None = None,
    progress: Progress | None = None,
    command: str | None = None,
) -> MapResult:
    """One uncertainty layer per cell (see `UncertaintySpec`)."""
    layer, calibration, context = spec.layer, spec.calibration, spec.context
    if layer not in UNCERTAINTY_LAYERS:
        raise InputError(f"unknown layer {layer!r} (one of {', '.join(UNCERTAINTY_LAYERS)})")
    output.check([calibration, spec.reference])
    for option, path in (("--calibration", calibration), ("--reference", spec.reference)):
        if path is not None and not Path(path).is_file():  # before any cell is computed
            raise InputError(f"{option} {path} does not exist")
    if calibration is not None:  # a bad file is refused before a store is computed
        ErrorCalibration.load(calibration)
    store = open_embeddings(inputs, settings, progress, context=inputs.pipeline.context)
    stored = list(store.manifest["context"])
    precision = store.manifest.get("precision", "float32")
    sha = store.manifest.get("model_sha256")
    if layer in ("expected_error", "trust"):
        calibration = _companion(store_pipeline(store, inputs), "calibration", calibration)
    expected_error = None
    if calibration is not None:
        expected_error = ErrorCalibration.load(calibration, model_sha256=sha).predict
    batch_size = inputs.pipeline.batch_size
    if layer in ("novelty", "trust"):
        pipeline = store_pipeline(store, inputs)
        path = _companion(pipeline, "novelty", spec.reference)
        layers = novelty_layers(
            store.ds,
            store.grid,
            stored,
            context,
            NoveltyReference.load(path, model_sha256=sha),
            pipeline.model,
            expected_error if layer == "trust" else None,
            precision,
            batch_size,
        )
    else:
        subset = context is not None and set(context) != set(stored)
        needs_model = subset or expected_error is not None
        model = store_pipeline(store, inputs).model if needs_model else None
        layers = uncertainty_layers(
            store.ds, store.grid, stored, context, model, precision, batch_size, expected_error
        )
        if layer == "expected_error":  # the band alone, without ||sigma||_1 beside it
            for table in (layers.bands, layers.docs, layers.units):
                table.pop("sigma_l1", None)
    layers.manifest = store.manifest
    written = write_uncertainty(layers, output, provenance_command(command, "uncertainty"), layer)
    return MapResult(layers, written)


_OPTION = {"calibration": "--calibration", "novelty": "--reference"}


def _companion(pipeline: Pipeline, kind: str, given: Path | None) -> Path:
    """The file given, or else the one of `kind` shipped with the pipeline's model."""
    if given is not None:
        return given
    if kind not in pipeline.companions:
        raise InputError(
            f"model {pipeline.manifest['model']} ships no {kind} file; give one with "
            + _OPTION[kind]
            + (" (prom3e-geo weights reference builds one)" if kind == "novelty" else "")
        )
    return Path(pipeline.companions[kind])


@dataclass(frozen=True)
class IcaSpec:
    """`ica`: three independent components of the per-cell embedding `token` (`mu`, a register
    token, ...), with FastICA's `seed` and iteration cap."""

    token: str = "mu"
    seed: int = 0
    max_iter: int = 1000


def ica(
    spec: IcaSpec,
    inputs: MapInputs,
    output: OutputSpec,
    *,
    settings: Settings | None = None,
    progress: Progress | None = None,
    command: str | None = None,
) -> MapResult:
    """Three independent components of a per-cell embedding of a store, as an RGB map
    (`RunFailed` when FastICA does not converge in `max_iter` iterations). It reads a given
    store only (`inputs.embeddings`); `settings` and `progress` are accepted for the common
    calling convention."""
    if inputs.embeddings is None:
        raise InputError("ica needs an embedding store (--embeddings)")
    output.check([inputs.embeddings])
    store = open_embeddings(inputs, settings, progress)
    model = store_pipeline(store, inputs).model if is_register_token(spec.token) else None
    context = list(store.manifest["context"])
    layers = ica_layers(
        store.ds, store.grid, context, spec.token, spec.seed, model=model, max_iter=spec.max_iter
    )
    layers.manifest = store.manifest
    title = f"ICA of {spec.token} (red, green, blue = components 1-3)"
    written = write_layer_set(layers, output, provenance_command(command, "ica"), title, cmap="rgb")
    return MapResult(layers, written)
