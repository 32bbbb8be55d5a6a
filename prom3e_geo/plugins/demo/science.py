"""Measuring the demo models against the demo world's truth.

* `sdm_auc`: for each species, a similarity map of held-out photos (never seen in training)
  against the cells' reconstructed image embeddings, scored by ROC AUC against the true range.
* `sigma_richness`: Spearman correlation between ||sigma||_1 (location-only context) and the true
  number of species whose range covers the cell.
* `reconstruction_recall`: new observations; the photo embedding is reconstructed from a context
  set and the true photo is retrieved among all the others (recall@k).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from prom3e_geo.engine.cells import infer_cells
from prom3e_geo.evaluate.retrieval import recall_at_k, retrieval_ranks
from prom3e_geo.grid import Grid
from prom3e_geo.layers.sdm import Query, invert
from prom3e_geo.model.prom3e import MODALITIES, visibility
from prom3e_geo.plugins.demo.build import DemoModels
from prom3e_geo.plugins.demo.render import species_photos
from prom3e_geo.plugins.demo.world import RANGE_THRESHOLD, sample_observations

QUERY_SEED = 424242  # held-out photos come from their own random stream


def cell_truth(demo: DemoModels, grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lon, lat, in-range [N, S]) for the cells inside the AOI."""
    lon, lat = grid.lonlat()
    inside = grid.mask.ravel()
    lon, lat = lon.ravel()[inside], lat.ravel()[inside]
    return lon, lat, demo.world.suitability(lon, lat) >= RANGE_THRESHOLD


def query_embedding(
    demo: DemoModels, species_index: int, n_photos: int = 3, seed: int = QUERY_SEED
) -> torch.Tensor:
    """Mean embedding of n held-out photos of a species (L2-normalised)."""
    rng = np.random.default_rng(seed + species_index)
    photos = species_photos(demo.world, np.full(n_photos, species_index), rng, 128)
    return F.normalize(demo.encoders["image"].embed(list(photos)).mean(0), dim=-1)


def cell_scores(
    demo: DemoModels,
    x: torch.Tensor,
    context: Sequence[str],
    query: torch.Tensor,
    mode: str = "recon",
    target: str = "env",
    delta: float = 0.5,
    recon: torch.Tensor | None = None,
) -> np.ndarray:
    """The `sdm` score of each cell (inputs `x` with `context` visible) for a query photo
    embedding: `recon` or `hybrid` with `target`, as `prom3e_geo.layers.sdm` computes them
    (`recon`: the cells' reconstructed image embeddings, when already computed)."""
    if mode == "recon":
        if recon is None:
            recon = infer_cells(demo.prom3e, x, context).recon_image
        return (F.normalize(recon.float(), dim=-1) @ query).numpy()
    own = F.normalize(x[:, MODALITIES.index(target)].float(), dim=-1)
    inverted = invert(demo.prom3e, [Query("q", "q", query, "image")], target)[0]
    return ((1 - delta) * (own @ query) + delta * (own @ inverted)).numpy()


def sdm_auc(
    demo: DemoModels,
    grid: Grid,
    species: Sequence[str],
    context: Sequence[str] = ("sat", "loc", "env"),
    mode: str = "recon",
    target: str = "env",
    seed: int = QUERY_SEED,
) -> dict[str, float]:
    """ROC AUC of each species' similarity map (held-out photos from `seed`'s stream) against
    its true range."""
    lon, lat, truth = cell_truth(demo, grid)
    x, _ = demo.context().embed(lon, lat, context)
    commons = [s.common for s in demo.world.species]
    out = {}
    for name in species:
        j = commons.index(name)
        query = query_embedding(demo, j, seed=seed)
        similarity = cell_scores(demo, x, context, query, mode, target)
        out[name] = float(roc_auc_score(truth[:, j], similarity))
    return out


def false_band(scores: np.ndarray, in_range: np.ndarray, where: np.ndarray | None = None) -> float:
    """Share of out-of-range cells (within `where`, default all) that score above the median
    in-range cell: the "as dark as the true range" bands of a map."""
    outside = ~in_range if where is None else ~in_range & where
    return float(np.mean(scores[outside] > np.median(scores[in_range])))


def sigma_richness(demo: DemoModels, grid: Grid) -> float:
    """Spearman correlation of location-only ||sigma||_1 with the true local richness."""
    lon, lat, truth = cell_truth(demo, grid)
    x, _ = demo.context().embed(lon, lat, ["loc"])
    sigma = infer_cells(demo.prom3e, x, ["loc"]).sigma_l1.numpy()
    return float(spearmanr(sigma, truth.sum(axis=1)).correlation)


def reconstruction_recall(
    demo: DemoModels,
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


def sigma_tracks_sdm_error(
    demo: DemoModels,
    grid: Grid,
    species: Sequence[str],
    context: Sequence[str] = ("sat", "loc", "env"),
    expected_error: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, float]:
    """Spearman over cells, per species, between the uncertainty of each cell and the error of
    that species' similarity map against its true range (|map rescaled to 0-1 - in range|).
    The uncertainty is ||sigma||_1, or with `expected_error` ([N, E] log-variances -> errors)
    the calibrated variant's expected error."""
    lon, lat, truth = cell_truth(demo, grid)
    x, _ = demo.context().embed(lon, lat, context)
    out = infer_cells(demo.prom3e, x, context)
    uncertainty = (
        out.sigma_l1.numpy() if expected_error is None else expected_error(out.logvar.numpy())
    )
    commons = [s.common for s in demo.world.species]
    result = {}
    for name in species:
        j = commons.index(name)
        similarity = (out.recon_image @ query_embedding(demo, j)).numpy()
        scaled = (similarity - similarity.min()) / max(np.ptp(similarity), 1e-12)
        error = np.abs(scaled - truth[:, j])
        result[name] = float(spearmanr(uncertainty, error).statistic)
    return result


def write_true_range(
    species: str,
    aoi: str,
    crs: str,
    shape: str | None,
    resolution: str | None,
    out: str | Path,
    overwrite: bool = False,
) -> Path:
    """The true range of a demo species on a grid, as a COG (1 in range, 0 outside, nodata
    outside the AOI), tagged as synthetic."""
    from prom3e_geo.errors import InputError
    from prom3e_geo.grid import build_grid
    from prom3e_geo.io.geotiff import write_cog
    from prom3e_geo.io.outputs import check_output
    from prom3e_geo.io.provenance import SYNTHETIC_TAG
    from prom3e_geo.plugins.demo.build import load_demo

    check_output(out, overwrite)
    demo = load_demo()
    commons = [s.common for s in demo.world.species]
    if species not in commons:
        raise InputError(f"no species {species!r} in the demo world ({', '.join(commons)})")
    grid = build_grid(aoi=aoi, crs=crs, shape=shape, resolution=resolution)
    _, _, truth = cell_truth(demo, grid)
    band = np.full(grid.shape, np.nan, dtype=np.float32)
    band[grid.mask] = truth[:, commons.index(species)]
    tags = {"layer": "true range", "species": species, "demo_world": SYNTHETIC_TAG}
    return write_cog(out, {"in_range": band}, grid, tags, overwrite=overwrite)
