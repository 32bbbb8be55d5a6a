"""ICA views: three independent components of a per-cell embedding as an RGB composite."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import xarray as xr

from prom3e_geo.errors import InputError, RunFailed
from prom3e_geo.grid import Grid
from prom3e_geo.layers.base import LayerSet
from prom3e_geo.layers.stored import stored_inputs, valid_blocks
from prom3e_geo.model.prom3e import MODALITIES, ProM3E, visibility

log = logging.getLogger(__name__)

ICA_TOKENS = ("mu", "recon_image", "ctx_sat", "ctx_loc", "ctx_env")


def ica_layers(
    ds: xr.Dataset,
    grid: Grid,
    context: list[str],
    token: str = "mu",
    seed: int = 0,
    max_fit: int = 50_000,
    model: ProM3E | None = None,
    max_iter: int = 1000,
) -> LayerSet:
    """Three independent components of a per-cell embedding (FastICA, fitted on at most
    `max_fit` random valid cells, then applied to every valid cell by blocks of rows, so that a
    stored token is never held whole: memory is the fit's plus one block), each stretched to
    0-1 between its 2nd and 98th percentiles and signed so that its long tail is positive: an
    RGB composite as in the supplement's maps.

    `token` is a stored array (`mu`, `recon_image`, `ctx_<m>`) or `register:K`, ProM3E's K-th
    register token (1-based), recomputed from the stored context embeddings (`context`) with
    the store's `model`. FastICA runs in float64 on a sample held in the store's precision
    (see `fit_ica`); if it does not converge in `max_iter` iterations, `RunFailed` says so:
    its last iterate is never mapped."""
    available = [t for t in ICA_TOKENS if t in ds] + ["register:K"]
    valid = np.asarray(ds["valid"].values, dtype=bool)
    if valid.sum() < 10:
        raise InputError(f"the store has {int(valid.sum())} valid cells; ICA needs at least 10")
    blocks: Callable[[], Iterable[np.ndarray]]
    if is_register_token(token):
        if model is None:
            raise InputError(f"{token} needs the store's model")
        index = int(token.removeprefix("register:"))
        values = register_tokens(ds, context, valid, index, model)  # computed, held whole
        blocks = partial(iter, [values])
    elif token in available:
        blocks = partial(valid_blocks, ds, token, valid)
    else:
        raise InputError(
            f"the store has no {token!r} embeddings (available: {', '.join(available)})"
        )
    n = int(valid.sum())
    rng = np.random.default_rng(seed)
    picks = rng.choice(n, min(max_fit, n), replace=False)  # the cells drawn as before
    ica = fit_ica(gather(blocks(), picks), seed, max_iter, token)
    components = np.concatenate([ica.transform(b) for b in blocks()])
    bands, docs = {}, {}
    for k in range(3):
        c = components[:, k]
        if np.mean((c - c.mean()) ** 3) < 0:
            c = -c
        lo, hi = np.percentile(c, [2, 98])
        band = np.full(grid.shape, np.nan, dtype=np.float32)
        band[valid] = np.clip((c - lo) / max(hi - lo, 1e-12), 0, 1)
        name = ("red", "green", "blue")[k]
        bands[f"ica_{k + 1}"] = band
        docs[f"ica_{k + 1}"] = f"independent component {k + 1} of {token} ({name}), 2-98% stretch"
    params = {"layer": "ica", "ica_token": token, "ica_seed": seed, "ica_algorithm": ica.algorithm}
    return LayerSet(bands, docs, params, grid)


@dataclass(frozen=True)
class IcaFit:
    """A fitted ICA: `transform` maps rows of an embedding to their independent components,
    `(x - mean) @ components.T`, as sklearn's `FastICA.transform` does."""

    mean: np.ndarray  # [D] float64
    components: np.ndarray  # [3, D] float64, unit-variance sources on the fit sample
    algorithm: str
    n_iter: int

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Components [n, 3] (float64) of rows `values` [n, D]."""
        return _project(values, self.mean, self.components)


def fit_ica(values: np.ndarray, seed: int, max_iter: int, token: str) -> IcaFit:
    """FastICA with three components, whitened as sklearn's `FastICA(whiten="unit-variance")`
    whitens but from a covariance summed over slices of `values` (`whitening`), so that the
    sample is never copied to float64 whole: the fit holds `values` as given plus a [D, D]
    matrix. The fixed-point iteration runs in float64 (in float32 it stalled and returned three
    copies of one component). The symmetric (`parallel`) algorithm is tried first; when it
    does not converge, the one-at-a-time (`deflation`) algorithm, which converges on
    embeddings where the symmetric update oscillates (the environment embedding of the demo
    world). sklearn's ConvergenceWarning is turned into an error here and the iteration count
    checked (deflation does not warn), so that no last iterate gets through silently: if both
    fail, `RunFailed`."""
    from sklearn.decomposition import FastICA
    from sklearn.exceptions import ConvergenceWarning

    mean, whiten = whitening(values, 3, token)
    scale = np.sqrt(len(values))
    white = _project(values, mean, whiten) * scale  # [n, 3]: unit covariance, as sklearn's X1
    for algorithm in ("parallel", "deflation"):
        # sklearn draws its starting rotation from `random_state` first in either case, so the
        # iteration starts where FastICA(whiten="unit-variance") on `values` would
        ica = FastICA(whiten=False, algorithm=algorithm, random_state=seed, max_iter=max_iter)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", ConvergenceWarning)
                ica.fit(white)
        except ConvergenceWarning:
            pass
        else:  # deflation does not warn: a unit that used every iteration did not converge
            if ica.n_iter_ < max_iter:
                unmixing = np.asarray(ica.components_, dtype=np.float64)  # W
                sources_std = (white @ unmixing.T / scale).std(axis=0)  # of W K (x - mean)
                components = (unmixing / sources_std[:, None]) @ whiten
                return IcaFit(mean, components, algorithm, int(ica.n_iter_))
        log.debug("FastICA (%s) did not converge in %d iterations", algorithm, max_iter)
    raise RunFailed(
        f"ica: FastICA did not converge on {token} in {max_iter} iterations (parallel and "
        "deflation algorithms); raise --max-iter or map another --token"
    )


_SLICE = 4096  # rows turned into float64 at a time when whitening


def whitening(values: np.ndarray, k: int, token: str) -> tuple[np.ndarray, np.ndarray]:
    """The mean [D] and the whitening matrix K [k, D] of sklearn's FastICA (`whiten_solver=
    "eigh"`: eigenvectors of the centred scatter matrix, largest first, signed so that their
    first entries are positive, divided by the square roots of their eigenvalues), computed in
    float64 from slices of `values` so that no float64 copy of the sample is made. `RunFailed`
    when the sample spans fewer than `k` directions."""
    n, dim = values.shape
    total = np.zeros(dim)
    for r0 in range(0, n, _SLICE):
        total += values[r0 : r0 + _SLICE].sum(axis=0, dtype=np.float64)
    mean = total / n
    scatter = np.zeros((dim, dim))
    for _, centred in _centred_slices(values, mean):
        scatter += centred.T @ centred
    eigenvalues, vectors = np.linalg.eigh(scatter)
    top = np.argsort(eigenvalues)[::-1][:k]
    eigenvalues, vectors = eigenvalues[top], vectors[:, top]
    # a direction whose variance is within the rounding of the sample's dtype is not one
    noise = max(float(np.finfo(values.dtype).eps) ** 2 * dim, 10 * float(np.finfo(float).eps))
    if eigenvalues[-1] <= noise * eigenvalues[0]:
        raise RunFailed(
            f"ica: the {token} embeddings of the fit cells span fewer than {k} directions; "
            "map another --token"
        )
    vectors *= np.where(vectors[0] < 0, -1.0, 1.0)
    return mean, (vectors / np.sqrt(eigenvalues)).T


def _project(values: np.ndarray, mean: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """`(values - mean) @ matrix.T` in float64, a slice of rows at a time."""
    out = np.empty((len(values), len(matrix)))
    for r0, centred in _centred_slices(values, mean):
        out[r0 : r0 + len(centred)] = centred @ matrix.T
    return out


def _centred_slices(values: np.ndarray, mean: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, rows - mean in float64) for slices of `_SLICE` rows of `values`."""
    for r0 in range(0, len(values), _SLICE):
        centred = values[r0 : r0 + _SLICE].astype(np.float64)
        centred -= mean
        yield r0, centred


def gather(blocks: Iterable[np.ndarray], picks: np.ndarray) -> np.ndarray:
    """Rows `picks` (indices into the concatenated `blocks`, in the order given) of blocks of
    rows, in the blocks' dtype, without concatenating the blocks."""
    out: np.ndarray | None = None
    start = 0
    for block in blocks:
        if out is None:
            out = np.empty((len(picks), block.shape[1]), dtype=block.dtype)
        inside = (picks >= start) & (picks < start + len(block))
        out[inside] = block[picks[inside] - start]
        start += len(block)
    assert out is not None, "no blocks"
    return out


def is_register_token(token: str) -> bool:
    return token.startswith("register:") and token.removeprefix("register:").isdigit()


def register_tokens(
    ds: xr.Dataset, context: list[str], valid: np.ndarray, k: int, model: ProM3E
) -> np.ndarray:
    """ProM3E's k-th register token for every valid cell, in row-major order."""
    registers = model.config.num_register_tokens
    if not 1 <= k <= registers:
        raise InputError(f"register:{k}: the model has registers 1-{registers}")
    visible = [MODALITIES.index(m) for m in context]
    device = next(model.parameters()).device
    blocks = []
    with torch.no_grad():
        for _, _, x in stored_inputs(ds, valid, context, model.config.input_dim):
            hidden = model.encode(x.float().to(device), visibility(len(x), visible, device=device))[
                2
            ]
            blocks.append(hidden[:, 1 + k].float().cpu().numpy())  # after [mu], [logvar]
    return np.concatenate(blocks)
