"""`embed`, `sdm`, `uncertainty` and `ica`: maps from per-cell embeddings.

A map reads an embedding store: the one given (`--embeddings`), or one built for the pipeline and
grid and cached under the settings' cache folder, keyed by the run's manifest and the grid, so
the next map of the same area reuses it (and an interrupted build resumes). A store fixes the
model: the pipeline that encodes queries, inverts them or recomputes sigma is rebuilt from the
store's manifest, and a different model asked for is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import xarray as xr

from prom3e_geo.engine.pipeline import Pipeline, load_pipeline, spec_from_manifest
from prom3e_geo.engine.runner import EmbedSummary, embed_grid
from prom3e_geo.engine.spec import PipelineSpec
from prom3e_geo.errors import InputError, StoreMismatchError
from prom3e_geo.evaluate.uncertainty import ErrorCalibration
from prom3e_geo.grid import Grid
from prom3e_geo.io.layers import write_layer_set
from prom3e_geo.io.outputs import OutputSpec
from prom3e_geo.layers.base import LayerSet
from prom3e_geo.layers.ica import ica_layers, is_register_token
from prom3e_geo.layers.novelty import NoveltyReference, novelty_layers
from prom3e_geo.layers.sdm import (
    DEFAULT_MODE,
    Query,
    cell_blocks,
    check_queries,
    check_sdm_options,
    check_towers,
    encode_queries,
    sdm_layers,
)
from prom3e_geo.layers.uncertainty import uncertainty_layers
from prom3e_geo.settings import Settings
from prom3e_geo.stores.embeddings import open_store
from prom3e_geo.stores.grid_store import grid_from_store, read_manifest
from prom3e_geo.workflows.specs import GridSpec, Progress, RunSpec


@dataclass(frozen=True)
class MapInputs:
    """Where a map's per-cell embeddings come from: the store `embeddings`, or else `pipeline`
    over `grid` (run as `run` says). `pipeline.model` None means: the store's model, or the
    default preset when a store is built."""

    embeddings: Path | str | None = None  # a path or a URL (stores.location)
    pipeline: PipelineSpec = PipelineSpec()
    grid: GridSpec = GridSpec()
    run: RunSpec = RunSpec()
    given: tuple[str, ...] = ()  # options the caller set that a given store fixes (refused)


@dataclass
class StoreView:
    path: Path | str
    ds: xr.Dataset
    grid: Grid
    manifest: dict


# -- stores -----------------------------------------------------------------------------------
def embed(
    pipeline: PipelineSpec,
    grid: GridSpec,
    out: Path,
    run: RunSpec,
    progress: Progress | None = None,
) -> EmbedSummary:
    """Fill (or finish) the embedding store at `out`."""
    return embed_grid(
        pipeline, grid.build(), out, run.workers, run.scheduler, progress, run.retry_failed
    )


def cached_store(
    spec: PipelineSpec,
    grid: Grid,
    settings: Settings,
    progress: Progress | None = None,
    run: RunSpec | None = None,
) -> Path:
    """The store for (pipeline, grid) in the cache, built or finished as needed. It is keyed by
    the run's manifest (models, source, context, resolved precision, software version) and the
    grid, so options that change only the speed (device, batch size, prefetch) share a store."""
    key = hashlib.sha256(
        json.dumps(
            {
                "manifest": load_pipeline(spec).manifest,
                "grid": grid.to_dict(),
                "chunk": grid.chunk_shape,
            },
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()[:20]
    path = settings.cache_dir / "stores" / f"{key}.zarr"
    path.parent.mkdir(parents=True, exist_ok=True)
    run = run or RunSpec()
    embed_grid(spec, grid, path, run.workers, run.scheduler, progress, run.retry_failed)
    return path


def open_embeddings(
    inputs: MapInputs,
    settings: Settings | None = None,
    progress: Progress | None = None,
    context: Sequence[str] | None = None,
) -> StoreView:
    """The given store, or the cached one for the pipeline (with `context`, if given) and grid.
    With a given store, options that the store fixes are refused rather than ignored."""
    path = inputs.embeddings
    if path is not None and inputs.given:
        options = ", ".join(f"--{name.replace('_', '-')}" for name in inputs.given)
        raise InputError(
            f"{options}: the embedding store {path} fixes the grid, imagery and context it was "
            "computed with; leave these options out (or leave out --embeddings)"
        )
    if path is None:
        spec = inputs.pipeline
        if context is not None:
            spec = dataclasses.replace(spec, context=tuple(context))
        settings = settings or Settings.from_environment()
        path = cached_store(spec, inputs.grid.build(), settings, progress, inputs.run)
    ds = open_store(path)
    return StoreView(path, ds, grid_from_store(ds), read_manifest(path))


def store_pipeline(store: StoreView, inputs: MapInputs) -> Pipeline:
    """The pipeline the store was made with, on the requested device and batch size. A model or
    encoder asked for that differs from the store's is refused; encoders of modalities the store
    did not use (the query towers) may be added."""
    manifest, asked = store.manifest, inputs.pipeline
    if asked.model is not None and asked.model != manifest["model"]:
        raise StoreMismatchError(
            f"the store {store.path} was computed with model {manifest['model']}, not "
            f"{asked.model}; leave out --model to use the store's"
        )
    spec = spec_from_manifest(
        manifest,
        device=asked.device,
        batch_size=asked.batch_size,
        precision=manifest.get("precision", "float32"),
    )
    stored = dict(spec.encoders)
    for modality, encoder in asked.encoders:
        if modality in stored and stored[modality] != encoder:
            raise StoreMismatchError(
                f"the store {store.path} was computed with the {modality} encoder "
                f"{stored[modality]}, not {encoder}"
            )
        stored[modality] = encoder
    pipeline = load_pipeline(dataclasses.replace(spec, encoders=tuple(stored.items())))
    if pipeline.manifest["model_sha256"] != manifest.get("model_sha256"):
        raise StoreMismatchError(
            f"the weights of model {manifest['model']} changed since the store {store.path} was "
            "computed; recompute the store"
        )
    return pipeline


# -- layers -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SdmSpec:
    queries: tuple[str, ...]
    mode: str = DEFAULT_MODE  # hybrid or recon
    delta: float = 0.5  # hybrid mixing weight
    target: str | None = None  # hybrid target modality (None: layers.sdm.hybrid_target)
    rescale: bool = False
    threshold: float | None = None


@dataclass
class MapResult:
    layers: LayerSet
    written: list[Path]


# how every map of a kind is styled: the CLI's outputs and the explorer's downloads
SDM_CMAP = "YlGn"
UNCERTAINTY_CMAP = "magma"  # sigma_l1's (the explorer's uncertainty layer)


@dataclass
class MapSession:
    """An embedding store opened with the pipeline that made it, kept for many maps: each new
    query then costs one pass of its tower and a dot product per cell (the browser explorer
    keeps one for its whole life; the `sdm` command makes one for its queries). With
    `keep_vectors`, the normalised per-cell vectors a mode reads are kept in memory after the
    first map (float32, 2 KiB per cell and variable): later maps skip reading the store."""

    store: StoreView
    pipeline: Pipeline
    keep_vectors: bool = False
    _kept: dict = field(default_factory=dict, repr=False)
    _keeping: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def open(
        cls,
        inputs: MapInputs,
        settings: Settings | None = None,
        progress: Progress | None = None,
        keep_vectors: bool = False,
    ) -> MapSession:
        store = open_embeddings(inputs, settings, progress)
        return cls(store, store_pipeline(store, inputs), keep_vectors)

    def cell_vectors(self, variable: str) -> list:
        """The store's normalised vectors of `variable` by blocks of rows (`cell_blocks`),
        read once and kept."""
        with self._keeping:
            if variable not in self._kept:
                self._kept[variable] = list(cell_blocks(self.store.ds, variable))
            return self._kept[variable]

    @property
    def encoders(self) -> dict:
        """The pipeline's towers by modality (image, text, audio, ... as the model has them)."""
        return self.pipeline.cells.encoders

    def sdm_layers(self, spec: SdmSpec, queries: Sequence[Query] | None = None) -> LayerSet:
        """The similarity layers of `queries` (already encoded), or of `spec.queries` (paths or
        species names) encoded here."""
        check_sdm_options(spec.delta, spec.threshold)
        if queries is None:
            queries = encode_queries(spec.queries, self.encoders)
        store, pipeline = self.store, self.pipeline
        layers = sdm_layers(
            store.ds,
            store.grid,
            list(queries),
            pipeline.model,
            spec.mode,
            spec.delta,
            spec.target,
            spec.rescale,
            spec.threshold,
            self.cell_vectors if self.keep_vectors else None,
        )
        origins = {**store.manifest.get("origins", {}), **self.encoders.origins()}
        layers.manifest = {**store.manifest, "origins": origins}  # with the query tower's
        return layers

    def stored_uncertainty(self) -> LayerSet:
        """||sigma||_1 of the store's own context, as stored (no model pass)."""
        store = self.store
        layers = uncertainty_layers(store.ds, store.grid, list(store.manifest["context"]))
        layers.manifest = store.manifest
        return layers


def write_sdm(layers: LayerSet, output: OutputSpec, command: str, mode: str) -> list[Path]:
    """An SDM layer set to its outputs, styled and titled as every SDM map is."""
    title = f"species distribution similarity ({mode})"
    return write_layer_set(layers, output, command, title, cmap=SDM_CMAP)


def write_uncertainty(
    layers: LayerSet, output: OutputSpec, command: str, layer: str = "sigma_l1"
) -> list[Path]:
    """An uncertainty layer set to its outputs, styled and titled as every map of its layer."""
    title, cmap = UNCERTAINTY_STYLE[layer]
    return write_layer_set(layers, output, command, title, cmap=cmap)


def sdm(
    spec: SdmSpec,
    inputs: MapInputs,
    output: OutputSpec,
    command: str,
    settings: Settings | None = None,
    progress: Progress | None = None,
) -> MapResult:
    """Species-distribution similarity map for query photos (or species names)."""
    check_sdm_options(spec.delta, spec.threshold)
    output.check([Path(q) for q in spec.queries])
    if inputs.embeddings is None:  # every query checked before a store is computed (hours
        # on a CPU): the pipeline building it has a tower for its kind, and the file reads
        check_towers(spec.queries, load_pipeline(inputs.pipeline).cells.encoders)
        check_queries(spec.queries)
    layers = MapSession.open(inputs, settings, progress).sdm_layers(spec)
    return MapResult(layers, write_sdm(layers, output, command, spec.mode))


UNCERTAINTY_LAYERS = ("sigma_l1", "expected_error", "novelty", "trust")
UNCERTAINTY_STYLE = {  # layer -> (title, colour ramp)
    "sigma_l1": ("uncertainty ||sigma||_1", UNCERTAINTY_CMAP),
    "expected_error": ("expected reconstruction error", "magma"),
    "novelty": ("novelty: context unlike the training data", "inferno"),
    "trust": ("where to distrust the species map", "inferno"),
}


def uncertainty(
    context: Sequence[str] | None,
    inputs: MapInputs,
    output: OutputSpec,
    command: str,
    settings: Settings | None = None,
    progress: Progress | None = None,
    calibration: Path | None = None,
    layer: str = "sigma_l1",
    reference: Path | None = None,
) -> MapResult:
    """One uncertainty layer per cell for `context` (any subset of the store's; default the
    store's own): `sigma_l1` (the paper's; with a `calibration`, the expected error band beside
    it), `expected_error`, `novelty` or `trust`. The calibration and the novelty `reference`
    default to the ones shipped with the store's model (`PipelineParts.companions`)."""
    if layer not in UNCERTAINTY_LAYERS:
        raise InputError(f"unknown layer {layer!r} (one of {', '.join(UNCERTAINTY_LAYERS)})")
    output.check([calibration, reference])
    for option, path in (("--calibration", calibration), ("--reference", reference)):
        if path is not None and not Path(path).is_file():  # before any cell is computed
            raise InputError(f"{option} {path} does not exist")
    if calibration is not None:  # a bad file is refused before a store is computed
        ErrorCalibration.load(calibration)
    store = open_embeddings(inputs, settings, progress, context=inputs.pipeline.context)
    stored = list(store.manifest["context"])
    model, precision = None, store.manifest.get("precision", "float32")
    sha = store.manifest.get("model_sha256")
    pipeline = store_pipeline(store, inputs) if layer != "sigma_l1" else None
    if layer in ("expected_error", "trust"):
        calibration = _companion(pipeline, "calibration", calibration, "--calibration")
    expected_error = None
    if calibration is not None:
        expected_error = ErrorCalibration.load(calibration, model_sha256=sha).predict
    if layer in ("novelty", "trust"):
        path = _companion(pipeline, "novelty", reference, "--reference")
        layers = novelty_layers(
            store.ds,
            store.grid,
            stored,
            context,
            NoveltyReference.load(path, model_sha256=sha),
            pipeline.model,
            expected_error if layer == "trust" else None,
            precision,
            inputs.pipeline.batch_size,
        )
    else:
        if (context and set(context) != set(stored)) or expected_error is not None:
            model = (pipeline or store_pipeline(store, inputs)).model
        layers = uncertainty_layers(
            store.ds,
            store.grid,
            stored,
            context,
            model,
            precision,
            inputs.pipeline.batch_size,
            expected_error,
        )
        if layer == "expected_error":  # the band alone, without ||sigma||_1 beside it
            for table in (layers.bands, layers.docs, layers.units):
                table.pop("sigma_l1", None)
    layers.manifest = store.manifest
    return MapResult(layers, write_uncertainty(layers, output, command, layer))


def _companion(pipeline: Pipeline, kind: str, given: Path | None, option: str) -> Path:
    """The file given, or else the one of `kind` shipped with the pipeline's model."""
    if given is not None:
        return given
    if kind not in pipeline.companions:
        raise InputError(
            f"model {pipeline.manifest['model']} ships no {kind} file; give one with {option}"
            + (" (prom3e-geo weights reference builds one)" if kind == "novelty" else "")
        )
    return Path(pipeline.companions[kind])


def ica(
    token: str,
    seed: int,
    inputs: MapInputs,
    output: OutputSpec,
    command: str,
    max_iter: int = 1000,
) -> MapResult:
    """Three independent components of a per-cell embedding of a store, as an RGB map
    (`RunFailed` when FastICA does not converge in `max_iter` iterations)."""
    if inputs.embeddings is None:
        raise InputError("ica needs an embedding store (--embeddings)")
    output.check([inputs.embeddings])
    store = open_embeddings(inputs)
    model = store_pipeline(store, inputs).model if is_register_token(token) else None
    context = list(store.manifest["context"])
    layers = ica_layers(store.ds, store.grid, context, token, seed, model=model, max_iter=max_iter)
    layers.manifest = store.manifest
    title = f"ICA of {token} (red, green, blue = components 1-3)"
    return MapResult(layers, write_layer_set(layers, output, command, title, cmap="rgb"))
