"""prom3e-geo: continental maps from the ProM3E multimodal ecological embedding model.

The public API, what the README and the notebook use; everything else is internal. Names are
imported on first use, so `import prom3e_geo` stays light (no torch, no GDAL).

    from prom3e_geo import GridSpec, MapInputs, OutputSpec, SdmSpec, sdm
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    # grids and observations
    "Grid": "prom3e_geo.grid",
    "build_grid": "prom3e_geo.grid",
    "ObservationReader": "prom3e_geo.observations",
    # models and encoders
    "ProM3E": "prom3e_geo.model.prom3e",
    "load_prom3e": "prom3e_geo.model.checkpoint",
    "build_encoder": "prom3e_geo.encoders.registry",
    "open_source": "prom3e_geo.imagery.base",
    # pipelines and stores
    "PipelineSpec": "prom3e_geo.engine.spec",
    "load_pipeline": "prom3e_geo.engine.pipeline",
    "embed_grid": "prom3e_geo.engine.runner",
    "open_store": "prom3e_geo.stores.embeddings",
    # layers
    "compute_diversity": "prom3e_geo.layers.diversity",
    "encode_queries": "prom3e_geo.layers.sdm",
    "similarity": "prom3e_geo.layers.sdm",
    # workflows and their specs
    "GridSpec": "prom3e_geo.workflows.specs",
    "RunSpec": "prom3e_geo.workflows.specs",
    "OutputSpec": "prom3e_geo.io.outputs",
    "MapInputs": "prom3e_geo.workflows.maps",
    "SdmSpec": "prom3e_geo.workflows.maps",
    "embed": "prom3e_geo.workflows.maps",
    "sdm": "prom3e_geo.workflows.maps",
    "uncertainty": "prom3e_geo.workflows.maps",
    "ica": "prom3e_geo.workflows.maps",
    "DiversitySpec": "prom3e_geo.workflows.diversity",
    "diversity": "prom3e_geo.workflows.diversity",
    "compare": "prom3e_geo.workflows.compare",
    "Settings": "prom3e_geo.settings",
    "InputError": "prom3e_geo.errors",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'prom3e_geo' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
