"""The uncertainty layer: ||sigma||_1 per cell (the paper's Fig. 5a) from an embedding store.

For the store's own context the stored value is used; any subset of it is computed from the
stored context embeddings by ProM3E alone, without re-encoding a cell, and is valid wherever the
subset's inputs were (a cell whose patch failed still has a location-only sigma).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr

from prom3e_geo.engine.cells import infer_cells
from prom3e_geo.errors import InputError
from prom3e_geo.grid import Grid
from prom3e_geo.layers.base import LayerSet
from prom3e_geo.layers.stored import stored_inputs
from prom3e_geo.model.prom3e import ProM3E
from prom3e_geo.stores.embeddings import valid_for


def uncertainty_layers(
    ds: xr.Dataset,
    grid: Grid,
    stored: Sequence[str],
    context: Sequence[str] | None = None,
    model: ProM3E | None = None,
    precision: str = "float32",
    batch_size: int = 1024,
) -> LayerSet:
    """||sigma||_1 for `context` (default: the store's own context `stored`); `model` (the
    store's) is needed for a proper subset."""
    wanted = list(context) if context else list(stored)
    missing = [m for m in wanted if m not in stored]
    if missing:
        raise InputError(
            f"the store has no {', '.join(missing)} embeddings (its context is {'+'.join(stored)})"
        )
    valid = valid_for(ds, wanted)
    if set(wanted) == set(stored):
        sigma = np.asarray(ds["sigma_l1"].values, dtype=np.float32)
    else:
        if model is None:
            raise InputError("the sigma of a context subset needs the store's model")
        sigma = np.full(grid.shape, np.nan, dtype=np.float32)
        for rows, ok, x in stored_inputs(ds, valid, wanted, model.config.input_dim):
            block = np.full(ok.shape, np.nan, dtype=np.float32)
            block[ok] = torch.cat(
                [
                    infer_cells(model, part, wanted, precision).sigma_l1
                    for part in x.split(batch_size)
                ]
            ).numpy()
            sigma[rows] = block
    sigma = np.where(valid, sigma, np.nan)
    doc = f"||sigma||_1 = sum exp(logvar / 2), context {'+'.join(wanted)}"
    return LayerSet(
        {"sigma_l1": sigma},
        {"sigma_l1": doc},
        {"layer": "uncertainty", "sigma_context": "+".join(wanted)},
        grid,
    )
