"""ProM3E inputs rebuilt from an embedding store's stored context embeddings."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import xarray as xr

from prom3e_geo.model.prom3e import MODALITIES

ROW_BLOCK = 64  # grid rows per block: bounded memory whatever the grid


def stored_inputs(
    ds: xr.Dataset, valid: np.ndarray, context: Sequence[str], input_dim: int
) -> Iterator[tuple[slice, np.ndarray, torch.Tensor]]:
    """Row blocks of a store's valid cells as ProM3E inputs built from the stored context
    embeddings: (rows, ok [r, w] bool, x [ok.sum(), 6, input_dim])."""
    for r0 in range(0, valid.shape[0], ROW_BLOCK):
        rows = slice(r0, min(r0 + ROW_BLOCK, valid.shape[0]))
        ok = valid[rows]
        if not ok.any():
            continue
        x = torch.zeros(int(ok.sum()), len(MODALITIES), input_dim)
        for m in context:
            x[:, MODALITIES.index(m)] = torch.from_numpy(
                np.asarray(ds[f"ctx_{m}"][rows].values, dtype=np.float32)[ok]
            )
        yield rows, ok, x
