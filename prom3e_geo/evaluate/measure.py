"""Measurements of a ProM3E model on one set of paired embeddings, as a recipe asks.

Data are an `EvaluationSet`: a registered evaluation dataset (the `EVALUATION_DATA` registry,
entry point group `prom3e_geo.evaluation_data`; the demo plug-in adds `demo`, new demo-world
observations) or paired embeddings in a training format with optional label and target files
(read by `prom3e_geo.workflows.evaluate`). `evaluate` runs what the recipe
(`prom3e_geo.recipes.EvaluationRecipe`) asks: retrieval (baseline / reconstruction / hybrid,
delta chosen on the validation split), zero-shot classification, linear probes, modality gaps and
||sigma||_1 per visible set. `evaluate.markdown` and `evaluate.figures` render the result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import permutations
from typing import Any

import numpy as np
import torch

from prom3e_geo.errors import InputError
from prom3e_geo.evaluate.classification import (
    FEATURE_KINDS,
    linear_probe,
    probe_features,
    ridge_r2,
    zero_shot,
)
from prom3e_geo.evaluate.latent import extreme_sigma, gap_change, sigma_values
from prom3e_geo.evaluate.retrieval import RetrievalResult, cross_modal_retrieval, reconstruct
from prom3e_geo.evaluate.uncertainty import (
    ErrorCalibration,
    OodCase,
    novelty_score,
    sigma_score,
    trust_score,
    uncertainty_checks,
)
from prom3e_geo.layers.novelty import NoveltyReference
from prom3e_geo.model.prom3e import MODALITIES, ProM3E
from prom3e_geo.recipes import EvaluationRecipe
from prom3e_geo.registry import Registry


@dataclass
class EvaluationSet:
    values: torch.Tensor  # [N, 6, D], L2-normalised, absent modalities zero
    present: list[int]
    name: str
    labels: np.ndarray | None = None  # [N] class ids
    targets: dict[str, np.ndarray] = field(default_factory=dict)  # continuous targets
    images: np.ndarray | None = None  # [N, h, w, 3] uint8 ground images, for image grids
    ood: dict[str, OodCase] = field(default_factory=dict)  # out-of-distribution inputs, by name


log = logging.getLogger(__name__)

# name -> function(n) building an evaluation set of n samples
EVALUATION_DATA: Registry[Callable[..., EvaluationSet]] = Registry(
    "prom3e_geo.evaluation_data", "evaluation dataset"
)


@dataclass
class Evaluation:
    retrieval: list[RetrievalResult]
    zero_shot: dict[str, dict[int, float]]
    probes: dict[str, dict[str, float]]  # feature kind -> task -> score
    gaps: dict[str, dict[str, float]]
    sigma: dict[str, np.ndarray]  # visible set -> ||sigma||_1 per sample
    extremes: tuple[np.ndarray, np.ndarray] | None  # (least, most) uncertain, image visible
    n: int
    probe_repeats: int
    warning: dict[str, dict[str, Any]] = field(default_factory=dict)  # layer -> uncertainty_checks
    calibration: ErrorCalibration | None = None  # the calibrated variant, fitted on validation

    def summary(self) -> list[str]:
        """A few lines for the end of a run: what was measured, the headline numbers."""
        lines = [f"evaluated {self.n:,} samples: {len(self.retrieval)} retrieval pairs, "
                 f"{len(self.zero_shot)} zero-shot sets, {len(self.probes)} probe features"]  # fmt: skip
        for r in self.retrieval[:4]:
            best = max(r.recall, key=lambda m: r.recall[m].get(1, 0.0))
            lines.append(f"  {r.query}->{r.target}: best R@1 "
                         f"{100 * r.recall[best][1]:.1f}% ({best})")  # fmt: skip
        for name, checks in self.warning.items():
            rhos = [row["cosine"] for row in checks["error_prediction"].values()]
            lines.append(f"  {name}: error prediction Spearman {min(rhos):+.2f}..{max(rhos):+.2f}, "
                         f"evidence {checks['evidence']['all']:.0%}")  # fmt: skip
        return lines


def modality_set(text: str, present: list[int] | None = None) -> list[int]:
    """`sat+loc` -> [1, 2], checked against the modalities the data has."""
    names = [t.strip() for t in text.split("+")]
    unknown = [n for n in names if n not in MODALITIES]
    if unknown:
        raise InputError(
            f"unknown modality {unknown[0]!r} in {text!r} (use {', '.join(MODALITIES)})"
        )
    out = [MODALITIES.index(n) for n in names]
    if present is not None and not set(out) <= set(present):
        missing = [MODALITIES[m] for m in out if m not in present]
        raise InputError(f"{text!r} needs {', '.join(missing)}, which the data lacks")
    return out


def evaluate(model: ProM3E, data: EvaluationSet, recipe: EvaluationRecipe) -> Evaluation:
    n = data.values.shape[0]
    order = np.random.default_rng(recipe.seed).permutation(n)
    n_val, n_test = int(round(recipe.val_fraction * n)), int(round(recipe.test_fraction * n))
    val, test = np.sort(order[:n_val]), np.sort(order[n_val:])
    probe_splits = []  # `probe_repeats` seeded (train, test) splits; scores are their means
    for k in range(recipe.probe_repeats):
        shuffled = np.random.default_rng([recipe.seed, k]).permutation(n)
        probe_splits.append((np.sort(shuffled[n_test:]), np.sort(shuffled[:n_test])))
    if recipe.retrieval:
        pairs = [
            tuple(modality_set(m, data.present)[0] for m in p.split("->")) for p in recipe.retrieval
        ]
    else:
        pairs = list(permutations([m for m in (0, 1, 2, 3) if m in data.present], 2))
    log.info("evaluate: retrieval for %d pairs on %s", len(pairs), data.name)
    recons = {q: reconstruct(model, data.values, [q]) for q in {q for q, _ in pairs}}
    retrieval = [
        cross_modal_retrieval(data.values, recons[q], q, t, val, test, recipe.deltas)
        for q, t in pairs
    ]
    zs = {}
    if data.labels is not None and 4 in data.present:
        for name in recipe.zero_shot:
            visible = modality_set(name, data.present)
            zs[name] = zero_shot(model, data.values[test], visible, data.labels[test])
    log.info("evaluate: zero-shot and linear probes")
    probes = {}
    context = modality_set(recipe.probe_visible, data.present)
    if data.labels is not None or data.targets:
        unknown = [k for k in recipe.probe_features if k not in FEATURE_KINDS]
        if unknown:
            raise InputError(
                f"unknown probe feature {unknown[0]!r} (use {', '.join(FEATURE_KINDS)})"
            )
        all_features = probe_features(model, data.values, context, recipe.probe_features)
        for kind, features in all_features.items():
            scores = {}
            if data.labels is not None:
                scores["class accuracy"] = [
                    linear_probe(features, data.labels, *split) for split in probe_splits
                ]
            for name, target in data.targets.items():
                scores[f"{name} R2"] = [
                    ridge_r2(features, target, *split) for split in probe_splits
                ]
            probes[kind] = {task: float(np.mean(v)) for task, v in scores.items()}
    gaps = {}
    for spec in recipe.gaps:
        pair, _, third = spec.partition("+")
        a, _, b = pair.partition("-")
        ids = [modality_set(m, data.present)[0] for m in (a, b, third)]
        gaps[f"{a}-{b} (+{third})"] = gap_change(model, data.values, *ids)
    sigma = {}
    for name in recipe.sigma_sets:
        visible = modality_set(name)
        if set(visible) <= set(data.present):  # sets the data cannot show are skipped
            sigma[name] = sigma_values(model, data.values, visible)
    extremes = None
    if data.images is not None and recipe.extremes:
        extremes = extreme_sigma(model, data.values, [0], recipe.extremes)
    log.info("evaluate: modality gaps and the uncertainty layer")
    warning: dict[str, dict[str, Any]] = {}
    calibration = None
    context = [m for m in (1, 2, 3) if m in data.present]
    if recipe.uncertainty_checks and 0 in data.present and len(context) >= 2:
        warning, calibration = warning_checks(model, data, context, val, test)
    return Evaluation(
        retrieval, zs, probes, gaps, sigma, extremes, n, recipe.probe_repeats, warning, calibration
    )


def warning_checks(
    model: ProM3E, data: EvaluationSet, context: list[int], fit: np.ndarray, test: np.ndarray
) -> tuple[dict[str, dict[str, Any]], ErrorCalibration]:
    """`evaluate.uncertainty`'s measurements on the test split for ||sigma||_1 (the paper's
    layer), the calibrated variant, novelty and trust; the calibration and the novelty reference
    (photos and context embeddings) come from the validation split."""
    sets = {MODALITIES[m]: [m] for m in context} | {
        "+".join(MODALITIES[m] for m in context): context
    }
    calibration = ErrorCalibration.fit(model, data.values[fit], list(sets.values()))
    reference = NoveltyReference(
        {MODALITIES[m]: data.values[fit][:, m] for m in [0, *context]},
        {"data": f"{data.name}, validation split"},
    )
    labels = None if data.labels is None else data.labels[test]
    scores = {
        "sigma_l1 (paper)": sigma_score(model),
        "expected error (calibrated)": calibration.score(model),
        "novelty": novelty_score(reference),
        "trust": trust_score(reference, calibration, model),
    }
    warning = {
        name: uncertainty_checks(score, model, data.values[test], labels, sets, context, data.ood)
        for name, score in scores.items()
    }
    return warning, calibration
