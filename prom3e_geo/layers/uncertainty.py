"""The uncertainty layer: ||sigma||_1 per cell (the paper's Fig. 5a) from an embedding store.

For the store's own context the stored value is used; any subset of it is computed from the
stored context embeddings by ProM3E alone, without re-encoding a cell, and is valid wherever the
subset's inputs were (a cell whose patch failed still has a location-only sigma). With an
`expected_error` read-out (the calibrated variant, `prom3e_geo.evaluate.uncertainty`), a second
band holds the expected reconstruction error predicted from each cell's latent log-variance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
    expected_error: Callable[[np.ndarray], np.ndarray] | None = None,
) -> LayerSet:
    """||sigma||_1 for `context` (default: the store's own context `stored`) and, with
    `expected_error` ([N, E] log-variances -> [N] errors), the `expected_error` band; `model`
    (the store's) is needed for either a proper subset or the expected error."""
    wanted = list(context) if context else list(stored)
    missing = [m for m in wanted if m not in stored]
    if missing:
        raise InputError(
            f"the store has no {', '.join(missing)} embeddings (its context is {'+'.join(stored)})"
        )
    valid = valid_for(ds, wanted)
    recompute = set(wanted) != set(stored) or expected_error is not None
    sigma = np.full(grid.shape, np.nan, dtype=np.float32)
    error = np.full(grid.shape, np.nan, dtype=np.float32)
    if not recompute:
        sigma = np.asarray(ds["sigma_l1"].values, dtype=np.float32)
    elif model is None:
        raise InputError("the sigma of a context subset and the expected error need the model")
    else:
        for rows, ok, x in stored_inputs(ds, valid, wanted, model.config.input_dim):
            sigmas, logvars = [], []  # only what is mapped is kept of each batch's outputs
            for i in range(0, x.shape[0], batch_size):
                out = infer_cells(model, x[i : i + batch_size].float(), wanted, precision)
                sigmas.append(out.sigma_l1)
                if expected_error is not None:
                    logvars.append(out.logvar)
            sigma[rows][ok] = torch.cat(sigmas).numpy()
            if expected_error is not None:
                error[rows][ok] = expected_error(torch.cat(logvars).numpy())
    context_text = "+".join(wanted)
    bands = {"sigma_l1": np.where(valid, sigma, np.nan)}
    docs = {"sigma_l1": f"||sigma||_1 = sum exp(logvar / 2), context {context_text}"}
    if expected_error is not None:
        bands["expected_error"] = np.where(valid, error, np.nan)
        docs["expected_error"] = (
            f"expected cosine error of the reconstructed image embedding, context "
            f"{context_text} (calibrated read-out of the latent log-variance)"
        )
    # `context` is the map's; the store's own (its manifest's) is written as `store_context`
    params: dict[str, object] = {"layer": "uncertainty", "context": context_text}
    units = {"sigma_l1": "||sigma||_1 (latent std. dev., summed)", "expected_error": "1 - cosine"}
    return LayerSet(bands, docs, params, grid, units={k: units[k] for k in bands})
