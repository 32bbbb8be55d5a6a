"""The evaluation report's figures as matplotlib figures (the workflow writes them)."""

from __future__ import annotations

from dataclasses import dataclass

from matplotlib.figure import Figure

from prom3e_geo.evaluate.measure import Evaluation, EvaluationSet


@dataclass
class ReportFigure:
    """A figure of the report: its file name (in the report's `<name>_files` folder) and
    caption."""

    name: str
    caption: str
    figure: Figure


def report_figures(result: Evaluation, data: EvaluationSet) -> list[ReportFigure]:
    """The sigma distributions and, with images, the most/least uncertain ones."""
    fig = Figure(figsize=(6, 3.2))
    ax = fig.subplots()
    for name, values in result.sigma.items():
        ax.hist(values, bins=40, histtype="step", label=name, density=True)
    ax.set_xlabel("||sigma||_1")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    fig.tight_layout()
    figures = [ReportFigure("sigma.png", "||sigma||_1 by visible modalities", fig)]
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
        caption = "Least (top) and most (bottom) uncertain images, image visible"
        figures.append(ReportFigure("extremes.png", caption, fig))
    return figures
