"""Measuring the demo models against the demo world's truth.

* `sdm_auc`: for each species, a similarity map of held-out photos (never seen in training)
  against the cells' reconstructed image embeddings, scored by ROC AUC against the true range.
* `sigma_richness`: Spearman correlation between ||sigma||_1 (location-only context) and the true
  number of species whose range covers the cell.
* `reconstruction_recall`: new observations; the photo embedding is reconstructed from a context
  set and the true photo is retrieved among all the others (recall@k).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from prom3e_geo.engine.cells import infer_cells
from prom3e_geo.evaluate.retrieval import recall_at_k, retrieval_ranks
from prom3e_geo.grid import Grid
from prom3e_geo.model.prom3e import MODALITIES, visibility
from prom3e_geo.plugins.demo.render import species_photos
from prom3e_geo.plugins.demo.world import RANGE_THRESHOLD, sample_observations

QUERY_SEED = 424242  # held-out photos come from their own random stream


def cell_truth(demo, grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lon, lat, in-range [N, S]) for the cells inside the AOI."""
    lon, lat = grid.lonlat()
    inside = grid.mask.ravel()
    lon, lat = lon.ravel()[inside], lat.ravel()[inside]
    return lon, lat, demo.world.suitability(lon, lat) >= RANGE_THRESHOLD


def query_embedding(
    demo, species_index: int, n_photos: int = 3, seed: int = QUERY_SEED
) -> torch.Tensor:
    """Mean embedding of n held-out photos of a species (L2-normalised)."""
    rng = np.random.default_rng(seed + species_index)
    photos = species_photos(demo.world, np.full(n_photos, species_index), rng, 128)
    return F.normalize(demo.encoders["image"].embed(list(photos)).mean(0), dim=-1)


def sdm_auc(
    demo, grid: Grid, species: Sequence[str], context: Sequence[str] = ("sat", "loc", "env")
) -> dict[str, float]:
    """ROC AUC of each species' similarity map against its true range."""
    lon, lat, truth = cell_truth(demo, grid)
    x, _ = demo.context().embed(lon, lat, context)
    recon = infer_cells(demo.prom3e, x, context).recon_image
    commons = [s.common for s in demo.world.species]
    out = {}
    for name in species:
        j = commons.index(name)
        similarity = (recon @ query_embedding(demo, j)).numpy()
        out[name] = float(roc_auc_score(truth[:, j], similarity))
    return out


def sigma_richness(demo, grid: Grid) -> float:
    """Spearman correlation of location-only ||sigma||_1 with the true local richness."""
    lon, lat, truth = cell_truth(demo, grid)
    x, _ = demo.context().embed(lon, lat, ["loc"])
    sigma = infer_cells(demo.prom3e, x, ["loc"]).sigma_l1.numpy()
    return float(spearmanr(sigma, truth.sum(axis=1)).correlation)


def reconstruction_recall(
    demo,
    n: int = 1000,
    seed: int = QUERY_SEED,
    ks: tuple[int, ...] = (1, 5, 10),
    by_species: bool = True,
) -> dict[str, dict[int, float]]:
    """Recall@k of the photos of n new observations from each context set's reconstruction: a hit
    when a photo of the observed species is among the top k (`by_species=False`: the exact photo)."""
    rng = np.random.default_rng(seed)
    lon, lat, species = sample_observations(demo.world, n, rng)
    photos = demo.encoders["image"].embed(list(species_photos(demo.world, species, rng, 64)))
    x, _ = demo.context().embed(lon, lat, ("sat", "loc", "env"))
    results = {}
    for name, ctx in {
        "sat+loc+env": ("sat", "loc", "env"),
        "sat": ("sat",),
        "loc": ("loc",),
        "env": ("env",),
    }.items():
        with torch.no_grad():
            out = demo.prom3e(x, visibility(n, [MODALITIES.index(m) for m in ctx]))
        labels = torch.from_numpy(species)
        results[name] = recall_at_k(
            retrieval_ranks(out.recon[:, 0], photos, labels if by_species else None), ks
        )
    return results
