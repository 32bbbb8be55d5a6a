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
from prom3e_geo.layers.novelty import NoveltyReference, place_vectors
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
    x, _ = demo.context().embed(lon, lat, CONTEXT)
    return lon, lat, x


def context_values(x: torch.Tensor, lon, lat) -> dict[str, torch.Tensor]:
    """What `uncertainty --layer novelty` searches for each cell: its context and its place."""
    return {"sat": x[:, 1], "loc": x[:, 2], "env": x[:, 3], "place": place_vectors(lon, lat)}


OOD_MAPS = {  # lon/lat boxes outside the demo world, as map AOIs (never used to choose anything)
    "places at sea": ["-72,30,-60,38", "-135,30,-126,42", "-94,24.5,-84,27.5"],
    "places in Alaska": ["-160,60,-142,68"],
    "places in Europe": ["0,40,20,55"],
    "places in South America": ["-68,-30,-48,-5"],
    "places in Africa": ["12,-10,35,12"],
}


def main() -> None:
    t0 = time.perf_counter()
    demo = load_demo()
    commons = [s.common for s in demo.world.species]
    folder = demo.folder
    reference = NoveltyReference.load(folder / "novelty.safetensors")
    calibration = ErrorCalibration.load(folder / "calibration.safetensors")
    lon, lat, x = cells(demo, "conus", "250x500")
    truth = demo.world.suitability(lon, lat) >= science.RANGE_THRESHOLD
    with torch.no_grad():
        out = infer_cells(demo.prom3e, x, list(CONTEXT))
    species = [j for j in range(len(commons)) if truth[:, j].sum() >= 50]
    dev, test = species[0::2], species[1::2]
    print("## Maps on the demo world\n")
    print(
        f"Paper grid (250 x 500, {len(lon):,} CONUS cells), context sat+loc+env, shipped "
        "models; `scripts/evaluate_maps.py` computes every number below."
    )
    print(
        f"Species with >= 50 in-range cells: {len(species)}; the mode is chosen on "
        f"{len(dev)} (even) with one stream of held-out photos and reported on the other "
        f"{len(test)} (odd) with another.\n"
    )

    def score(q, mode, target):
        return science.cell_scores(
            demo, x, CONTEXT, q, mode, target or "env", recon=out.recon_image
        )

    def auc(j, mode, target, seed):
        s = score(science.query_embedding(demo, j, seed=seed), mode, target)
        return roc_auc_score(truth[:, j], s), science.false_band(s, truth[:, j])

    print("### Which sdm mode\n")
    print(
        "ROC AUC against the true range (mean over species); false band: share of "
        "out-of-range cells scoring above the median in-range cell.\n"
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

    j = commons.index("northern cardinal")
    q = demo.encoders["image"].embed(["examples/cardinal.jpg"])[0]
    west = lon < -104
    print("\n### The headline map: `sdm --query examples/cardinal.jpg`\n")
    print("| mode | ROC AUC | out-of-range cells west of 104 W above the in-range median |")
    print("| --- | ---: | ---: |")
    for label, (mode, target) in MODES.items():
        s = score(q, mode, target)
        print(
            f"| {label} | {roc_auc_score(truth[:, j], s):.3f} | "
            f"{science.false_band(s, truth[:, j], west):.1%} |"
        )

    # -- novelty and trust on maps
    t = time.perf_counter()
    reference.scores(context_values(x, lon, lat))  # timed: the search of the whole map
    search_s = time.perf_counter() - t
    names = list(reference.modalities)

    def reference_errors(emb):
        xr = torch.zeros(reference.size, 6, 512)
        for m, i in (("sat", 1), ("loc", 2), ("env", 3)):
            xr[:, i] = emb[m]
        return calibration.predict(infer_cells(demo.prom3e, xr, list(CONTEXT)).logvar.numpy())

    def layer_values(xx, lo, la):
        with torch.no_grad():
            o = infer_cells(demo.prom3e, xx, list(CONTEXT))
        e = calibration.predict(o.logvar.numpy())
        n = reference.scores(context_values(xx, lo, la))["joint"]
        tr = reference.trust(n, e, names, reference_errors)
        return {"sigma_l1": o.sigma_l1.numpy(), "expected_error": e, "novelty": n, "trust": tr}

    layers = layer_values(x, lon, lat)
    p95 = {k: np.quantile(v, 0.95) for k, v in layers.items()}
    print("\n### Novelty and trust on maps\n")
    print(
        f"Reference: the shipped one ({reference.size:,} observations of "
        f"examples/observations.csv, at most one per 1-degree box; k = {reference.k}); exact "
        f"batched search of {len(lon):,} cells (sat, loc, env, place and their "
        f"concatenation): {search_s:.1f} s on this CPU.\n"
    )
    print(
        "Out of distribution on maps: share of cells above the CONUS map's 95th percentile "
        "(target >= 80% each for novelty, >= 80% mean for trust)\n"
    )
    print("| case | cells | sigma_l1 | expected_error | novelty | trust |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    shares = {k: [] for k in layers}
    rng = np.random.default_rng(3)
    at = rng.choice(len(lon), 2000, replace=False)
    patch_cases = {
        "cloud-covered patches": 0.55 + 0.03 * rng.standard_normal((2000, 32, 32, 3)),
        "empty patches (nodata)": np.zeros((2000, 32, 32, 3)),
    }
    cases = {}
    for name, patches in patch_cases.items():
        xx = x[at].clone()
        xx[:, 1] = demo.encoders["sat"].embed(patches.astype(np.float32))
        cases[name] = (xx, lon[at], lat[at])
    for name, boxes in OOD_MAPS.items():
        parts = [cells(demo, box, "20x20") for box in boxes]
        cases[name] = (
            torch.cat([p[2] for p in parts]),
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
        )
    for name, (xx, lo, la) in cases.items():
        v = layer_values(xx, lo, la)
        row = []
        for k in layers:
            share = float(np.mean(v[k] > p95[k]))
            shares[k].append(share)
            row.append(f"{share:.0%}")
        print(f"| {name} | {len(lo):,} | " + " | ".join(row) + " |")
    print("| mean | | " + " | ".join(f"{np.mean(shares[k]):.0%}" for k in layers) + " |")

    print("\nTargets on the CONUS map\n")
    print("| check | target | sigma_l1 | expected_error | novelty | trust |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    print(
        f"| false alarms: CONUS cells above the in-distribution 95th percentile | <= 7% | - | - "
        f"| {np.mean(layers['novelty'] > 0.95):.1%} | {np.mean(layers['trust'] > 0.95):.1%} |"
    )
    rho = {k: [] for k in layers}
    for j in species:
        s = score(science.query_embedding(demo, j, seed=TEST_SEED), *MODES["hybrid, target env"])
        error = np.abs((s - s.min()) / max(np.ptp(s), 1e-12) - truth[:, j])
        for k, v in layers.items():
            rho[k].append(spearmanr(v, error).statistic)
    print(
        f"| vs the sdm map's error against the true range (Spearman over cells per species, "
        f"mean over {len(species)}; default hybrid maps) | >= 0.3 | "
        + " | ".join(f"{np.mean(rho[k]):+.3f}" for k in layers)
        + " |"
    )
    recon = F.normalize(out.recon_image.float(), dim=-1)
    protos = torch.stack(
        [
            science.query_embedding(demo, i, n_photos=8, seed=TEST_SEED + 1)
            for i in range(len(commons))
        ]
    )
    scores = recon @ protos.T
    best = torch.from_numpy(demo.world.suitability(lon, lat).argmax(1))
    rank = ((scores > scores.gather(1, best[:, None])).sum(1) + 1).numpy()
    print(
        "| vs the rank, by the cell's reconstruction, of its most suitable species among all "
        "(Spearman over cells) | >= 0.3 | "
        + " | ".join(f"{spearmanr(v, rank).statistic:+.3f}" for v in layers.values())
        + " |"
    )
    print(f"\n({time.perf_counter() - t0:.0f} s in all)")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
