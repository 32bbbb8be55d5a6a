"""Where a map's embeddings come from: a given store, or one cached for the pipeline and grid.

A map reads an embedding store: the one given (`--embeddings`), or one built for the pipeline and
grid and cached under the settings' cache folder, keyed by the run's manifest and the grid
(`stores.compatibility.store_key`), so the next map of the same area reuses it (and an
interrupted build resumes). A store fixes the model: a store built in this run is read with the
pipeline that built it; a given store's pipeline is rebuilt from its manifest, and a different
model asked for is refused.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from prom3e_geo.engine.encoder_set import EncoderSet
from prom3e_geo.engine.pipeline import Pipeline, load_pipeline, spec_from_manifest
from prom3e_geo.engine.runner import embed_grid
from prom3e_geo.engine.spec import PipelineSpec
from prom3e_geo.grid import Grid, grid_window
from prom3e_geo.layers.base import LayerSet
from prom3e_geo.layers.sdm import Query, cell_blocks, check_sdm_options, encode_queries, sdm_layers
from prom3e_geo.layers.uncertainty import uncertainty_layers
from prom3e_geo.settings import Settings
from prom3e_geo.stores.compatibility import (
    check_model,
    check_origins,
    check_weights,
    merge_encoders,
    refuse_fixed_options,
    store_key,
)
from prom3e_geo.stores.embeddings import open_store
from prom3e_geo.stores.grid_store import grid_from_store, read_manifest
from prom3e_geo.workflows.specs import GridSpec, Progress, RunSpec, SdmSpec

Block = tuple[
    slice, torch.Tensor, np.ndarray
]  # rows, their normalised vectors, validity (cell_blocks)


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
    window: str | None = None  # with a given store: map only its part under this AOI


@dataclass
class StoreView:
    """An opened embedding store; `built_by` is the pipeline that computed it in this run."""

    path: Path | str
    ds: xr.Dataset
    grid: Grid
    manifest: dict[str, Any]
    built_by: Pipeline | None = None


def cached_store(
    pipeline: Pipeline,
    grid: Grid,
    settings: Settings,
    progress: Progress | None = None,
    run: RunSpec | None = None,
) -> Path:
    """The store for (pipeline, grid) in the cache, built or finished as needed."""
    path = settings.cache_dir / "stores" / f"{store_key(pipeline.manifest, grid)}.zarr"
    path.parent.mkdir(parents=True, exist_ok=True)
    run = run or RunSpec()
    embed_grid(pipeline.spec, grid, path, run.workers, run.scheduler, progress, run.retry_failed)
    return path


def open_embeddings(
    inputs: MapInputs,
    settings: Settings | None = None,
    progress: Progress | None = None,
    context: Sequence[str] | None = None,
) -> StoreView:
    """The given store, or the cached one for the pipeline (with `context`, if given) and grid.
    With a given store, options that the store fixes are refused rather than ignored."""
    built_by = None
    if inputs.embeddings is not None:
        refuse_fixed_options(inputs.embeddings, inputs.given)
        path = inputs.embeddings
    else:
        spec = inputs.pipeline
        if context is not None:
            spec = dataclasses.replace(spec, context=tuple(context))
        built_by = load_pipeline(spec)
        settings = settings or Settings.from_environment()
        path = cached_store(built_by, inputs.grid.build(), settings, progress, inputs.run)
    ds = open_store(path)
    grid = grid_from_store(ds)
    if inputs.embeddings is not None and inputs.window is not None:
        grid, rows, cols = grid_window(grid, inputs.window)
        ds = store_window(ds, grid.mask, rows, cols)
    return StoreView(path, ds, grid, read_manifest(path), built_by)


def store_window(ds: xr.Dataset, mask: np.ndarray, rows: slice, cols: slice) -> xr.Dataset:
    """The store's rows and columns of a window, still lazy (a map reads only the chunks under
    it), with the cells outside `mask` marked invalid: no layer computes them."""
    part = ds.isel(y=rows, x=cols)
    inside = xr.DataArray(mask, dims=("y", "x"))
    marks = [name for name in part.data_vars if name == "aoi" or str(name).startswith("valid")]
    return part.assign({name: (part[name] * inside).astype(part[name].dtype) for name in marks})


def store_pipeline(store: StoreView, inputs: MapInputs) -> Pipeline:
    """The pipeline the store was made with: the one that built it in this run, or else one
    rebuilt from its manifest on the requested device and batch size. A model or encoder asked
    for that differs from the store's is refused; encoders of modalities the store did not use
    (the query towers) may be added."""
    if store.built_by is not None:
        return store.built_by
    manifest, asked = store.manifest, inputs.pipeline
    check_model(store.path, manifest, asked.model)
    spec = spec_from_manifest(
        manifest,
        device=asked.device,
        batch_size=asked.batch_size,
        precision=manifest.get("precision", "float32"),
    )
    encoders = merge_encoders(store.path, dict(spec.encoders), asked.encoders)
    pipeline = load_pipeline(dataclasses.replace(spec, encoders=tuple(encoders.items())))
    check_weights(store.path, manifest, pipeline.manifest["model_sha256"])
    check_origins(store.path, manifest, pipeline.manifest["origins"])
    return pipeline


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
    _kept: dict[str, list[Block]] = field(default_factory=dict, repr=False)
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

    def cell_vectors(self, variable: str) -> list[Block]:
        """The store's normalised vectors of `variable` by blocks of rows (`cell_blocks`),
        read once and kept."""
        with self._keeping:
            if variable not in self._kept:
                self._kept[variable] = list(cell_blocks(self.store.ds, variable))
            return self._kept[variable]

    @property
    def encoders(self) -> EncoderSet:
        """The pipeline's towers by modality (image, text, audio, ... as the model has them)."""
        return self.pipeline.encoders

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
