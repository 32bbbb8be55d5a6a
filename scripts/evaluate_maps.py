"""The map measurements of docs/evaluation.md ("Maps on the demo world"): which `sdm` mode maps
the demo world's species best, the headline cardinal map, and whether `novelty` and `trust` mark
where maps should not be believed. Prints Markdown; run from the repository root:

    nice -n 10 .venv/bin/python scripts/evaluate_maps.py > /tmp/maps.md

Everything is computed in-process from the shipped demo models (the same encoders, ProM3E and
score functions as `embed`, `sdm` and `uncertainty`), on the paper grid (250 x 500 over CONUS).
The sdm mode is chosen on the even-numbered species with one stream of held-out photos and
reported on the odd-numbered ones with another; nothing of novelty or trust is fitted here (the
reference and calibration are the shipped ones, built from other samples).
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from prom3e_geo.engine.cells import infer_cells
from prom3e_geo.evaluate.uncertainty import ErrorCalibration
from prom3e_geo.grid import build_grid
from prom3e_geo.layers.novelty import NoveltyReference
from prom3e_geo.plugins.demo import science
from prom3e_geo.plugins.demo.build import load_demo

CONTEXT = ("sat", "loc", "env")
MODES = {  # label -> (mode, hybrid target)
    "recon (paper Fig. 4)": ("recon", None),
    "hybrid, target loc": ("hybrid", "loc"),
    "hybrid, target sat": ("hybrid", "sat"),
    "hybrid, target env": ("hybrid", "env"),
}
DEV_SEED, TEST_SEED = 9001, 9002  # the photo streams for choosing and for reporting


def cells(demo, aoi: str, shape: str):
    grid = build_grid(aoi=aoi, shape=shape)
    lon, lat = grid.lonlat()
    inside = grid.mask.ravel()
    lon, lat = lon.ravel()[inside], lat.ravel()[inside]
    x, ok = demo.context().embed(lon, lat, CONTEXT)
    return lon, lat, x, ok


def main() -> None:
    t0 = time.perf_counter()
    demo = load_demo()
    commons = [s.common for s in demo.world.species]
    folder = demo.folder
    reference = NoveltyReference.load(folder / "novelty.safetensors")
    calibration = ErrorCalibration.load(folder / "calibration.safetensors")
    lon, lat, x, ok = cells(demo, "conus", "250x500")
    truth = demo.world.suitability(lon, lat) >= science.RANGE_THRESHOLD
    species = [j for j in range(len(commons)) if truth[:, j].sum() >= 50]
    dev, test = species[0::2], species[1::2]
    print("## Maps on the demo world\n")
    print(f"Paper grid (250 x 500, {len(lon):,} CONUS cells), context sat+loc+env, shipped models.")
    print(
        f"Species with >= 50 in-range cells: {len(species)}; the mode is chosen on "
        f"{len(dev)} (even) with one stream of held-out photos and reported on the other "
        f"{len(test)} (odd) with another.\n"
    )

    # -- sdm modes
    def auc(j, mode, target, seed):
        q = science.query_embedding(demo, j, seed=seed)
        s = science.cell_scores(demo, x, CONTEXT, q, mode, target or "env")
        return roc_auc_score(truth[:, j], s), science.false_band(s, truth[:, j])

    print("### Which sdm mode\n")
    print(
        "ROC AUC against the true range (mean over species); false band: share of out-of-range "
        "cells scoring above the median in-range cell.\n"
    )
    print(
        "| mode | AUC, choosing species | AUC, held-out species | lowest AUC (held out) "
        "| false band (held out) |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, (mode, target) in MODES.items():
        d = [auc(j, mode, target, DEV_SEED)[0] for j in dev]
        t = [auc(j, mode, target, TEST_SEED) for j in test]
        print(
            f"| {label} | {np.mean(d):.3f} | {np.mean([a for a, _ in t]):.3f} | "
            f"{min(a for a, _ in t):.3f} | {np.mean([b for _, b in t]):.1%} |"
        )

    # -- the headline query
    j = commons.index("northern cardinal")
    q = demo.encoders["image"].embed(["examples/cardinal.jpg"])[0]
    west = lon < -104
    print("\n### The headline map: `sdm --query examples/cardinal.jpg`\n")
    print("| mode | ROC AUC | out-of-range cells west of 104 W above the in-range median |")
    print("| --- | ---: | ---: |")
    headline = {}
    for label, (mode, target) in MODES.items():
        s = science.cell_scores(demo, x, CONTEXT, q, mode, target or "env")
        headline[label] = s
        print(
            f"| {label} | {roc_auc_score(truth[:, j], s):.3f} | "
            f"{science.false_band(s, truth[:, j], west):.1%} |"
        )

    # -- novelty and trust on maps
    with torch.no_grad():
        out = infer_cells(demo.prom3e, x, list(CONTEXT))
    sigma = out.sigma_l1.numpy()
    errors = calibration.predict(out.logvar.numpy())
    values = {m: x[:, i] for m, i in (("sat", 1), ("loc", 2), ("env", 3))}
    t = time.perf_counter()
    nov = reference.scores(values)
    search_s = time.perf_counter() - t

    def reference_errors(emb):
        xr = torch.zeros(reference.size, 6, 512)
        for m, i in (("sat", 1), ("loc", 2), ("env", 3)):
            xr[:, i] = emb[m]
        return calibration.predict(infer_cells(demo.prom3e, xr, list(CONTEXT)).logvar.numpy())

    trust = reference.trust(nov["joint"], errors, list(CONTEXT), reference_errors)
    layers = {"sigma_l1": sigma, "expected_error": errors, "novelty": nov["joint"], "trust": trust}
    e_lon, e_lat, e_x, _ = cells(demo, "0,40,20,55", "30x40")
    e_nov = reference.scores({m: e_x[:, i] for m, i in (("sat", 1), ("loc", 2), ("env", 3))})
    print("\n### Novelty and trust on maps\n")
    print(
        f"Reference: {reference.size:,} observations of examples/observations.csv "
        f"(k = {reference.k}); exact batched search of {len(lon):,} cells x 4 searches: "
        f"{search_s:.1f} s on this CPU.\n"
    )
    print("| check | target | sigma_l1 | expected_error | novelty | trust |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    p95 = {k: np.quantile(v, 0.95) for k, v in layers.items()}
    alarms = {"novelty": np.mean(nov["joint"] > 0.95), "trust": np.mean(trust > 0.95)}
    print(
        f"| false alarms: CONUS cells above the in-distribution 95th percentile | <= 7% | - | - "
        f"| {alarms['novelty']:.1%} | {alarms['trust']:.1%} |"
    )
    print(
        f"| Europe (0-20 E, 40-55 N, {len(e_lon):,} cells): novelty above the CONUS map's 95th "
        f"percentile | >= 80% | - | - | {np.mean(e_nov['joint'] > p95['novelty']):.1%} | - |"
    )
    rho = {k: [] for k in layers}
    rank_rho = {k: [] for k in layers}
    hybrid = MODES["hybrid, target env"]
    for j in species:
        qj = science.query_embedding(demo, j, seed=TEST_SEED)
        s = science.cell_scores(demo, x, CONTEXT, qj, *hybrid)
        scaled = (s - s.min()) / max(np.ptp(s), 1e-12)
        error = np.abs(scaled - truth[:, j])
        for k, v in layers.items():
            rho[k].append(spearmanr(v, error).statistic)
    cells_rank = {}
    recon = F.normalize(out.recon_image.float(), dim=-1)
    protos = torch.stack(
        [
            science.query_embedding(demo, j, n_photos=8, seed=TEST_SEED + 1)
            for j in range(len(commons))
        ]
    )
    scores = recon @ protos.T  # rank of the locally most suitable true species among all
    best = demo.world.suitability(lon, lat).argmax(1)
    own = scores.gather(1, torch.from_numpy(best)[:, None])
    cells_rank = ((scores > own).sum(1) + 1).numpy()
    for k, v in layers.items():
        rank_rho[k] = spearmanr(v, cells_rank).statistic
    print(
        f"| trust vs the sdm map's error against the true range (Spearman per species, mean "
        f"over {len(species)}; hybrid env maps) | >= 0.3 | "
        + " | ".join(f"{np.mean(rho[k]):+.3f}" for k in layers)
        + " |"
    )
    print(
        "| vs the rank of the cell's most suitable species among all by the reconstruction "
        "(Spearman over cells) | >= 0.3 | "
        + " | ".join(f"{rank_rho[k]:+.3f}" for k in layers)
        + " |"
    )
    print(f"\n({time.perf_counter() - t0:.0f} s in all)")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
