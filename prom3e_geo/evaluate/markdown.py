"""The evaluation report as Markdown, and as HTML through markdown-it-py (CommonMark + tables)."""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from prom3e_geo.evaluate.measure import Evaluation, EvaluationSet
from prom3e_geo.model.prom3e import MODALITIES


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


def warning_markdown(warning: dict[str, dict[str, Any]]) -> list[str]:
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


STYLE = (
    "body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
)


def markdown_to_html(markdown: str, title: str) -> str:
    """A Markdown report as one HTML page (CommonMark with pipe tables)."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(markdown)
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{body}</body></html>\n"
    )
