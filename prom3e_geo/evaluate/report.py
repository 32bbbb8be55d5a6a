"""The evaluation report: every measurement of this package on one set of paired embeddings.

`demo_evaluation_set` draws new observations from the demo world (a random stream of their own,
never seen in training) with their photo, patch, location, environment and species-name
embeddings, the species as class labels and the true temperature and elevation as continuous
targets. `evaluate` runs retrieval (baseline / reconstruction / hybrid, delta chosen on the
validation half), zero-shot classification, linear probes, modality gaps and ||sigma||_1 per
visible set; `write_report` renders the results as Markdown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import permutations
from pathlib import Path

import numpy as np
import torch

from prom3e_geo.evaluate.classification import (
    FEATURE_KINDS,
    linear_probe,
    probe_features,
    ridge_r2,
    zero_shot,
)
from prom3e_geo.evaluate.latent import gap_change, sigma_by_visible
from prom3e_geo.evaluate.retrieval import RetrievalResult, cross_modal_retrieval
from prom3e_geo.model.prom3e import MODALITIES

EVAL_SEED = 515151  # the evaluation observations' own random stream


@dataclass
class EvaluationSet:
    values: torch.Tensor  # [N, 6, D], L2-normalised, absent modalities zero
    present: list[int]
    labels: np.ndarray | None = None  # [N] class ids
    targets: dict[str, np.ndarray] = field(default_factory=dict)  # continuous targets


@dataclass
class Evaluation:
    retrieval: list[RetrievalResult]
    zero_shot: dict[str, dict[int, float]]
    probes: dict[str, dict[str, float]]  # feature kind -> task -> score
    gaps: dict[str, dict[str, float]]
    sigma: dict[str, tuple[float, float]]
    n: int


def demo_evaluation_set(demo, n: int = 2000, seed: int = EVAL_SEED) -> EvaluationSet:
    from prom3e_geo.demo.render import species_photos
    from prom3e_geo.demo.world import sample_observations

    rng = np.random.default_rng(seed)
    lon, lat, species = sample_observations(demo.world, n, rng)
    x, _ = demo.context().embed(lon, lat, ("sat", "loc", "env"))
    x[:, 0] = demo.encoders["image"].embed(list(species_photos(demo.world, species, rng, 64)))
    names = [demo.world.species[s].common for s in species]
    x[:, 4] = torch.nn.functional.normalize(demo.encoders["text"].embed(names), dim=-1)
    fields = demo.world.fields(lon, lat)
    return EvaluationSet(
        x.float(),
        [0, 1, 2, 3, 4],
        species,
        {"temperature": fields["temperature"], "elevation": fields["elevation"]},
    )


def evaluate(model, data: EvaluationSet, seed: int = 0) -> Evaluation:
    n = data.values.shape[0]
    order = np.random.default_rng(seed).permutation(n)
    val, test = np.sort(order[: n // 2]), np.sort(order[n // 2 :])
    train80, test20 = np.sort(order[: int(0.8 * n)]), np.sort(order[int(0.8 * n) :])
    spatial = [m for m in (0, 1, 2, 3) if m in data.present]
    retrieval = [
        cross_modal_retrieval(model, data.values, q, t, val, test)
        for q, t in permutations(spatial, 2)
    ]
    zs, probes = {}, {}
    if data.labels is not None and 4 in data.present:
        for visible in ([0], [1], [2], [3], [1, 2, 3]):
            name = "+".join(MODALITIES[m] for m in visible)
            zs[name] = zero_shot(model, data.values[test], visible, data.labels[test])
    context = [m for m in (1, 2, 3) if m in data.present]  # what a map cell has
    for kind in FEATURE_KINDS:
        features = probe_features(model, data.values, context, kind)
        scores = {}
        if data.labels is not None:
            scores["species accuracy"] = linear_probe(features, data.labels, train80, test20)
        for name, target in data.targets.items():
            scores[f"{name} R2"] = ridge_r2(features, target, train80, test20)
        probes[kind] = scores
    gaps = {}
    if {0, 1, 2} <= set(data.present):
        gaps["image-sat (+loc)"] = gap_change(model, data.values, 0, 1, 2)
        gaps["image-loc (+env)"] = gap_change(model, data.values, 0, 2, 3)
    sets = {"+".join(MODALITIES[m] for m in v): v for v in ([0], [1], [2], [3], [1, 2, 3], spatial)}
    sigma = sigma_by_visible(model, data.values, sets)
    return Evaluation(retrieval, zs, probes, gaps, sigma, n)


def write_report(result: Evaluation, path: str | Path, title: str) -> Path:
    lines = [f"# {title}", "", f"{result.n:,} paired samples.", "", "## Cross-modal retrieval", ""]
    lines += [
        "Test half as gallery; delta chosen on the validation half. R@k in %.",
        "",
        "| query -> target | delta | baseline R@1/5/10 | reconstruction R@1/5/10 | hybrid R@1/5/10 | median rank b/r/h |",
        "| --- | ---: | --- | --- | --- | --- |",
    ]
    for r in result.retrieval:
        cell = {m: "/".join(f"{100 * v:.1f}" for v in r.recall[m].values()) for m in r.recall}
        ranks = "/".join(
            f"{r.median_rank[m]:.0f}" for m in ("baseline", "reconstruction", "hybrid")
        )
        lines.append(
            f"| {r.query} -> {r.target} | {r.delta:.1f} | {cell['baseline']} | "
            f"{cell['reconstruction']} | {cell['hybrid']} | {ranks} |"
        )
    if result.zero_shot:
        lines += ["", "## Zero-shot species classification", "", "| visible | top-1 | top-5 |"]
        lines += ["| --- | ---: | ---: |"]
        for name, acc in result.zero_shot.items():
            lines.append(f"| {name} | {100 * acc[1]:.1f} | {100 * acc[5]:.1f} |")
    tasks = list(next(iter(result.probes.values())))
    lines += ["", "## Linear probes (visible: the map context)", ""]
    lines += ["| features | " + " | ".join(tasks) + " |", "| --- |" + " ---: |" * len(tasks)]
    for kind, scores in result.probes.items():
        lines.append(f"| {kind} | " + " | ".join(f"{scores[t]:.3f}" for t in tasks) + " |")
    if result.gaps:
        lines += ["", "## Modality gap (centroid distance)", ""]
        lines += [
            "| pair | raw | reconstructed | reconstructed, third visible |",
            "| --- | ---: | ---: | ---: |",
        ]
        for name, g in result.gaps.items():
            lines.append(
                f"| {name} | {g['raw']:.3f} | {g['recon']:.3f} | {g['recon_plus_third']:.3f} |"
            )
    lines += [
        "",
        "## ||sigma||_1 by visible modalities",
        "",
        "| visible | mean | sd |",
        "| --- | ---: | ---: |",
    ]
    for name, (mean, sd) in result.sigma.items():
        lines.append(f"| {name} | {mean:.2f} | {sd:.2f} |")
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path
