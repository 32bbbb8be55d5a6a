"""The evaluation report: a recipe of measurements on one set of paired embeddings.

Data are an `EvaluationSet`: a registered evaluation dataset (the `EVALUATION_DATA` registry,
entry point group `prom3e_geo.evaluation_data`; the demo plug-in adds `demo`, new demo-world
observations) or paired embeddings in a training format with optional label and target files
(read by `prom3e_geo.workflows.evaluate`). `evaluate` runs what the recipe (`prom3e_geo.recipes.EvaluationRecipe`) asks:
retrieval (baseline / reconstruction / hybrid, delta chosen on the validation split), zero-shot
classification, linear probes, modality gaps and ||sigma||_1 per visible set; `write_report`
renders Markdown or HTML with its figures in a `<name>_files` folder beside it.
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass, field
from itertools import permutations
from pathlib import Path

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
from prom3e_geo.model.prom3e import MODALITIES
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
EVALUATION_DATA: Registry = Registry("prom3e_geo.evaluation_data", "evaluation dataset")


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
    warning: dict[str, dict] = field(default_factory=dict)  # layer -> uncertainty_checks
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


def evaluate(model, data: EvaluationSet, recipe: EvaluationRecipe) -> Evaluation:
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
    warning, calibration = {}, None
    context = [m for m in (1, 2, 3) if m in data.present]
    if recipe.uncertainty_checks and 0 in data.present and len(context) >= 2:
        warning, calibration = warning_checks(model, data, context, val, test)
    return Evaluation(
        retrieval, zs, probes, gaps, sigma, extremes, n, recipe.probe_repeats, warning, calibration
    )


def warning_checks(model, data: EvaluationSet, context: list[int], fit, test):
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


# -- rendering --------------------------------------------------------------------------------


def report_markdown(result: Evaluation, data: EvaluationSet, figures: dict[str, str]) -> str:
    lines = [f"# ProM3E evaluation: {data.name}", ""]
    lines += ["## Cross-modal retrieval", ""]
    lines += [
        "Test split as gallery; delta chosen on the validation split. R@k in %; median ranks "
        "for baseline / reconstruction / hybrid.",
        "",
        "| query -> target | delta | baseline R@1/5/10 | reconstruction R@1/5/10 | hybrid R@1/5/10 | median rank |",
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
        lines += ["", "## Zero-shot classification (reconstructed text)", ""]
        lines += ["| visible | top-1 % | top-5 % |", "| --- | ---: | ---: |"]
        for name, acc in result.zero_shot.items():
            lines.append(f"| {name} | {100 * acc[1]:.1f} | {100 * acc[5]:.1f} |")
    if result.probes:
        tasks = list(next(iter(result.probes.values())))
        lines += [
            "",
            "## Linear probes",
            "",
            f"MinMax + ridge (alpha by cross-validation); means over {result.probe_repeats} "
            "seeded train/test splits.",
            "",
        ]
        lines += ["| features | " + " | ".join(tasks) + " |", "| --- |" + " ---: |" * len(tasks)]
        for kind, scores in result.probes.items():
            lines.append(f"| {kind} | " + " | ".join(f"{scores[t]:.3f}" for t in tasks) + " |")
    if result.gaps:
        lines += ["", "## Modality gap (centroid distance)", ""]
        lines += ["| pair (+ third) | raw | reconstructed | reconstructed, third visible |"]
        lines += ["| --- | ---: | ---: | ---: |"]
        for name, g in result.gaps.items():
            lines.append(
                f"| {name} | {g['raw']:.3f} | {g['recon']:.3f} | {g['recon_plus_third']:.3f} |"
            )
    lines += ["", "## ||sigma||_1 by visible modalities", ""]
    lines += ["| visible | mean | sd |", "| --- | ---: | ---: |"]
    for name, values in result.sigma.items():
        lines.append(f"| {name} | {values.mean():.2f} | {values.std():.2f} |")
    if result.warning:
        lines += warning_markdown(result.warning)
    for title, src in figures.items():
        lines += ["", f"![{title}]({src})"]
    return "\n".join(lines) + "\n"


TARGETS = "targets: error prediction >= 0.3; evidence >= 90%; out of distribution >= 80%"


def warning_markdown(warning: dict[str, dict]) -> list[str]:
    """The uncertainty-as-a-warning tables: one column per layer."""
    names = list(warning)
    head = ["| measurement | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    first = warning[names[0]]
    lines = ["", "## Does the uncertainty layer warn where the model errs?", "", TARGETS, ""]
    lines += ["Error prediction: Spearman of the layer with the reconstruction error", ""] + head
    for visible, row in first["error_prediction"].items():
        for kind in row:
            cells = [f"{warning[n]['error_prediction'][visible][kind]:+.3f}" for n in names]
            lines.append(f"| {visible}, {kind} | " + " | ".join(cells) + " |")
    lines += ["", "More evidence, less uncertainty: share of samples lower with every context", ""]
    lines += head
    for key in first["evidence"]:
        label = "mean" if key == "all" else f"than {MODALITIES[int(key)]} alone"
        cells = [f"{warning[n]['evidence'][key]:.0%}" for n in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Out of distribution: share above the in-distribution 95th percentile", ""]
    lines += head
    for case in first["ood"]:
        cells = [f"{warning[n]['ood'][case]['share_above']:.0%}" for n in names]
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    if first["ood"]:
        means = [np.mean([c["share_above"] for c in warning[n]["ood"].values()]) for n in names]
        lines.append("| mean | " + " | ".join(f"{m:.0%}" for m in means) + " |")
    return lines


def write_figures(result: Evaluation, data: EvaluationSet, folder: Path) -> dict[str, str]:
    """PNG figures (sigma distributions, most/least uncertain images); title -> relative path."""
    from matplotlib.figure import Figure

    folder.mkdir(exist_ok=True)
    figures = {}
    fig = Figure(figsize=(6, 3.2))
    ax = fig.subplots()
    for name, values in result.sigma.items():
        ax.hist(values, bins=40, histtype="step", label=name, density=True)
    ax.set_xlabel("||sigma||_1")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / "sigma.png", dpi=110)
    figures["||sigma||_1 by visible modalities"] = f"{folder.name}/sigma.png"
    if result.extremes is not None and data.images is not None:
        least, most = result.extremes
        fig = Figure(figsize=(1.2 * len(least), 2.8))
        axes = fig.subplots(2, len(least), squeeze=False)
        for row, (label, index) in enumerate(
            (("least uncertain", least), ("most uncertain", most))
        ):
            for ax, i in zip(axes[row], index, strict=True):
                ax.imshow(data.images[i])
                ax.set_xticks([])
                ax.set_yticks([])
            axes[row][0].set_ylabel(label, fontsize=7)
        fig.tight_layout()
        fig.savefig(folder / "extremes.png", dpi=110)
        figures["Least (top) and most (bottom) uncertain images, image visible"] = (
            f"{folder.name}/extremes.png"
        )
    return figures


def markdown_to_html(markdown: str, title: str) -> str:
    """The report's Markdown subset (headings, pipe tables, images, paragraphs) as HTML."""
    body, table = [], []

    def flush_table():
        if table:
            rows = [r for r in table if not re.fullmatch(r"\|[\s\-:|]+\|", r)]
            cells = [[html.escape(c.strip()) for c in r.strip("|").split("|")] for r in rows]
            head = "".join(f"<th>{c}</th>" for c in cells[0])
            rest = "".join(
                "<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in cells[1:]
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rest}</tbody></table>")
            table.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush_table()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line[level:].strip())}</h{level}>")
        elif m := re.fullmatch(r"!\[(.*)\]\((.*)\)", line):
            body.append(
                f'<figure><img src="{html.escape(m[2])}" alt="{html.escape(m[1])}"><figcaption>{html.escape(m[1])}</figcaption></figure>'
            )
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    flush_table()
    style = "body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n"


def write_report(
    result: Evaluation, data: EvaluationSet, path: str | Path, final: Path | None = None
) -> Path:
    """Write the report (HTML when the name ends in .html, else Markdown) and its figures.

    `final` is the report's eventual name when `path` is a temporary one (figures are named
    after it)."""
    path = Path(path)
    final = Path(final or path)
    figures = write_figures(result, data, final.with_name(f"{final.stem}_files"))
    markdown = report_markdown(result, data, figures)
    if final.suffix.lower() in (".html", ".htm"):
        path.write_text(markdown_to_html(markdown, f"ProM3E evaluation: {data.name}"))
    else:
        path.write_text(markdown)
    return path
