"""`compare`, `evaluate` and `train`: relating layers, measuring and training models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from prom3e_geo_cli.options import overwrite_option


@click.command("compare")
@click.option(
    "--uncertainty",
    "x_path",
    required=True,
    type=click.Path(path_type=Path),
    help="First raster (e.g. sigma.tif).",
)
@click.option(
    "--diversity",
    "y_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Second raster (e.g. div.tif).",
)
@click.option("--x-band", default=None, help="Band of the first raster (default: 1).")
@click.option("--y-band", default="shannon", show_default=True, help="Band of the second raster.")
@click.option("--png", "png_path", type=click.Path(path_type=Path), help="Bin-mean plot.")
@click.option(
    "--truth",
    type=click.Path(path_type=Path),
    default=None,
    help="Presence (1) / absence (0) raster: compare with the second layer's error against it.",
)
@click.option(
    "--min-obs",
    type=click.IntRange(min=1),
    default=None,
    help="Diversity rasters: compare cells with at least N observations (default 1).",
)
@overwrite_option
def compare_command(
    x_path: Path,
    y_path: Path,
    x_band: str | None,
    y_band: str,
    png_path: Path | None,
    truth: Path | None,
    min_obs: int | None,
    overwrite: bool,
) -> None:
    """Spearman and Pearson correlation of two layers over their common valid cells.

    With --truth, the second layer (a species map) is replaced by its error against the true
    range: is the uncertainty high where the map is wrong?

    \b
    Example:
      prom3e-geo compare --uncertainty sigma.tif --diversity div.tif --png compare.png
      prom3e-geo compare --uncertainty sigma.tif --diversity map.tif --y-band 1 --truth range.tif
    """
    from prom3e_geo.workflows.compare import CompareSpec, compare

    spec = CompareSpec(x_path, y_path, x_band, y_band, truth, min_obs)
    result = compare(spec, png_path, overwrite=overwrite)
    r = result.comparison
    click.echo(
        f"{r.x_name} vs {r.y_name} over {r.n:,} cells ({result.used}): Spearman "
        f"{r.spearman:.3f} (p {r.spearman_p:.2g}), Pearson {r.pearson:.3f} (p {r.pearson_p:.2g})"
    )
    for path in result.written:
        click.echo(f"wrote {path}")


@click.command("evaluate")
@click.option(
    "--recipe",
    type=click.Path(path_type=Path),
    default=None,
    help="Evaluation recipe (YAML); default: the demo model on new demo-world observations.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Report: .md (Markdown) or .html; figures go to <name>_files/ beside it.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing report.")
def evaluate_command(recipe: Path | None, out: Path, overwrite: bool) -> None:
    """Measure a ProM3E model: retrieval (baseline, reconstruction, hybrid), zero-shot,
    linear probes, modality gap and ||sigma||_1, as one report.

    \b
    Example:
      prom3e-geo evaluate --recipe recipes/evaluate-demo.yaml --out report.html
    """
    from prom3e_geo.workflows.evaluate import evaluation

    result = evaluation(recipe, out, overwrite=overwrite)
    for line in result.summary():
        click.echo(line)
    click.echo(f"wrote {out}")


@click.command("train")
@click.option("--recipe", required=True, type=click.Path(path_type=Path), help="YAML recipe.")
@click.option(
    "--data",
    "data_paths",
    multiple=True,
    type=click.Path(path_type=Path),
    help="All-paired embeddings (.parquet, .npy dict, .npz, .zarr); repeat to mix sources "
    "(equal weights). Replaces the recipe's data list.",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run folder.")
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly where it stopped.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override the epochs.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
def train_command(
    recipe: Path,
    data_paths: tuple[Path, ...],
    out: Path,
    resume: bool,
    epochs: int | None,
    device: str,
) -> None:
    """Train ProM3E (stage 2) on all-paired modality embeddings.

    Writes OUT/metrics.csv, OUT/loss.png, OUT/last.safetensors, OUT/best.safetensors and
    OUT/state.pt (for --resume) after every epoch.

    \b
    Example:
      prom3e-geo train --recipe recipes/train-prom3e.yaml --data multinat.npy --out runs/prom3e
    """
    from prom3e_geo.workflows.train import prepare_training

    run = prepare_training(recipe, data_paths, out, device=device, on_epoch=report_epoch)
    trainer = run.trainer
    for d in run.datasets:
        click.echo(f"data: {d.name}: {len(d):,} samples, modalities {d.present}")
    click.echo(
        f"training on {trainer.device}: {trainer.parameter_count:,} parameters, "
        f"{trainer.steps_per_epoch} steps per epoch, masking {trainer.recipe.masking['strategy']}"
    )
    history = trainer.fit(epochs=epochs, resume=resume)
    click.echo(f"done: {len(history)} epochs; weights in {out / 'best.safetensors'}")


def report_epoch(m: dict[str, Any]) -> None:
    parts = [f"epoch {m['epoch']}", f"loss {m['train_loss']:.4f}"]
    if "val_loss" in m:
        parts.append(f"val {m['val_loss']:.4f}")
    if "val_recall@1" in m:
        parts.append(f"R@1 {m['val_recall@1']:.3f} R@5 {m['val_recall@5']:.3f}")
    parts.append(f"{m['seconds']:.1f}s")
    click.echo("  ".join(parts))
