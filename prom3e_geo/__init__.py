"""prom3e-geo: continental maps from the ProM3E multimodal ecological embedding model.

The public API (docs/api.md), what the README and the notebook use; everything else is internal.
Names are imported on first use, so `import prom3e_geo` stays light (no torch, no GDAL); the
`TYPE_CHECKING` block below names the same objects for type checkers and editors (a test keeps
the two lists equal).

    from prom3e_geo import GridSpec, MapInputs, OutputSpec, SdmSpec, sdm
"""

from __future__ import annotations

import importlib

from prom3e_geo.version import __version__

# `typing.TYPE_CHECKING` without importing typing (5 ms): mypy and pyright read this name as true
TYPE_CHECKING = False
if TYPE_CHECKING:
    from prom3e_geo.encoders.registry import build_encoder
    from prom3e_geo.engine.pipeline import Pipeline, load_pipeline, resolve_spec
    from prom3e_geo.engine.runner import embed_grid
    from prom3e_geo.engine.spec import PipelineSpec
    from prom3e_geo.errors import InputError
    from prom3e_geo.grid import Grid, build_grid
    from prom3e_geo.imagery.base import PatchSource, open_source
    from prom3e_geo.io.outputs import OutputSpec
    from prom3e_geo.layers.base import LayerSet
    from prom3e_geo.layers.diversity import compute_diversity
    from prom3e_geo.layers.sdm import encode_queries, similarity
    from prom3e_geo.model.checkpoint import load_prom3e
    from prom3e_geo.model.prom3e import ProM3E
    from prom3e_geo.observations import ObservationReader
    from prom3e_geo.settings import Settings
    from prom3e_geo.stores.embeddings import open_store
    from prom3e_geo.workflows.compare import CompareResult, CompareSpec, compare
    from prom3e_geo.workflows.diversity import DiversitySpec, diversity
    from prom3e_geo.workflows.evaluate import evaluation
    from prom3e_geo.workflows.grid import grid_mask
    from prom3e_geo.workflows.maps import (
        IcaSpec,
        MapResult,
        UncertaintySpec,
        embed,
        ica,
        sdm,
        uncertainty,
    )
    from prom3e_geo.workflows.patches import FetchResult, FetchSpec, fetch_patches
    from prom3e_geo.workflows.qgis import QgisResult, QgisSpec, qgis_project
    from prom3e_geo.workflows.sessions import MapInputs, MapSession
    from prom3e_geo.workflows.specs import GridSpec, RunSpec, SdmSpec

_PUBLIC = {
    # grids and observations
    "Grid": "prom3e_geo.grid",
    "build_grid": "prom3e_geo.grid",
    "ObservationReader": "prom3e_geo.observations",
    # models, encoders and imagery
    "ProM3E": "prom3e_geo.model.prom3e",
    "load_prom3e": "prom3e_geo.model.checkpoint",
    "build_encoder": "prom3e_geo.encoders.registry",
    "PatchSource": "prom3e_geo.imagery.base",
    "open_source": "prom3e_geo.imagery.base",
    # pipelines and stores
    "PipelineSpec": "prom3e_geo.engine.spec",
    "Pipeline": "prom3e_geo.engine.pipeline",
    "load_pipeline": "prom3e_geo.engine.pipeline",
    "resolve_spec": "prom3e_geo.engine.pipeline",
    "embed_grid": "prom3e_geo.engine.runner",
    "open_store": "prom3e_geo.stores.embeddings",
    # layers
    "LayerSet": "prom3e_geo.layers.base",
    "compute_diversity": "prom3e_geo.layers.diversity",
    "encode_queries": "prom3e_geo.layers.sdm",
    "similarity": "prom3e_geo.layers.sdm",
    # workflows, their specs and results
    "GridSpec": "prom3e_geo.workflows.specs",
    "RunSpec": "prom3e_geo.workflows.specs",
    "SdmSpec": "prom3e_geo.workflows.specs",
    "OutputSpec": "prom3e_geo.io.outputs",
    "MapInputs": "prom3e_geo.workflows.sessions",
    "MapSession": "prom3e_geo.workflows.sessions",
    "MapResult": "prom3e_geo.workflows.maps",
    "UncertaintySpec": "prom3e_geo.workflows.maps",
    "IcaSpec": "prom3e_geo.workflows.maps",
    "embed": "prom3e_geo.workflows.maps",
    "sdm": "prom3e_geo.workflows.maps",
    "uncertainty": "prom3e_geo.workflows.maps",
    "ica": "prom3e_geo.workflows.maps",
    "grid_mask": "prom3e_geo.workflows.grid",
    "FetchResult": "prom3e_geo.workflows.patches",
    "FetchSpec": "prom3e_geo.workflows.patches",
    "fetch_patches": "prom3e_geo.workflows.patches",
    "DiversitySpec": "prom3e_geo.workflows.diversity",
    "diversity": "prom3e_geo.workflows.diversity",
    "CompareSpec": "prom3e_geo.workflows.compare",
    "CompareResult": "prom3e_geo.workflows.compare",
    "compare": "prom3e_geo.workflows.compare",
    "QgisSpec": "prom3e_geo.workflows.qgis",
    "QgisResult": "prom3e_geo.workflows.qgis",
    "qgis_project": "prom3e_geo.workflows.qgis",
    "evaluation": "prom3e_geo.workflows.evaluate",
    "Settings": "prom3e_geo.settings",
    "InputError": "prom3e_geo.errors",
}

__all__ = [
    "__version__",
    "CompareResult",
    "CompareSpec",
    "DiversitySpec",
    "FetchResult",
    "FetchSpec",
    "Grid",
    "GridSpec",
    "IcaSpec",
    "InputError",
    "LayerSet",
    "MapInputs",
    "MapResult",
    "MapSession",
    "ObservationReader",
    "OutputSpec",
    "PatchSource",
    "Pipeline",
    "PipelineSpec",
    "ProM3E",
    "QgisResult",
    "QgisSpec",
    "RunSpec",
    "SdmSpec",
    "Settings",
    "UncertaintySpec",
    "build_encoder",
    "build_grid",
    "compare",
    "compute_diversity",
    "diversity",
    "embed",
    "embed_grid",
    "encode_queries",
    "evaluation",
    "fetch_patches",
    "grid_mask",
    "ica",
    "load_pipeline",
    "load_prom3e",
    "open_source",
    "open_store",
    "qgis_project",
    "resolve_spec",
    "sdm",
    "similarity",
    "uncertainty",
]


def __getattr__(name: str) -> object:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'prom3e_geo' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
