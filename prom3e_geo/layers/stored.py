"""ProM3E inputs rebuilt from an embedding store's stored context embeddings."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import xarray as xr

from prom3e_geo.model.prom3e import MODALITIES

ROW_BLOCK = 16  # grid rows per block: memory bounded by a block (a quarter of a 64-row chunk)


def stored_inputs(
    ds: xr.Dataset, valid: np.ndarray, context: Sequence[str], input_dim: int
) -> Iterator[tuple[slice, np.ndarray, torch.Tensor]]:
    """Row blocks of a store's valid cells as ProM3E inputs built from the stored context
    embeddings: (rows, ok [r, w] bool, x [ok.sum(), 6, input_dim]). `x` is in the stored
    dtype (float16 in a store: half the memory of the block's float32 inputs, most of them the
    zeros of hidden modalities); the model takes it a batch at a time, `x[i:j].float()`."""
    dtype = torch.from_numpy(
        np.empty(0, np.result_type(*(ds[f"ctx_{m}"].dtype for m in context)))
    ).dtype
    for r0 in range(0, valid.shape[0], ROW_BLOCK):
        rows = slice(r0, min(r0 + ROW_BLOCK, valid.shape[0]))
        ok = valid[rows]
        if not ok.any():
            continue
        x = torch.zeros(int(ok.sum()), len(MODALITIES), input_dim, dtype=dtype)
        for m in context:
            x[:, MODALITIES.index(m)] = torch.from_numpy(
                np.asarray(ds[f"ctx_{m}"][rows].values)[ok]
            )
        yield rows, ok, x


def valid_blocks(ds: xr.Dataset, variable: str, valid: np.ndarray) -> Iterator[np.ndarray]:
    """The `valid` cells of a store's per-cell `variable` as float32 [n, D], by blocks of rows
    (row-major order across blocks, as `values[valid]` of the whole array would give)."""
    for r0 in range(0, valid.shape[0], ROW_BLOCK):
        rows = slice(r0, min(r0 + ROW_BLOCK, valid.shape[0]))
        if valid[rows].any():
            yield np.asarray(ds[variable][rows].values, dtype=np.float32)[valid[rows]]
