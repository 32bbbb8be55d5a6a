"""`train`: stage-2 training of ProM3E on all-paired modality embeddings."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from prom3e_geo.errors import InputError
from prom3e_geo.recipes import DataSource, load_recipe
from prom3e_geo.train.data import PairedEmbeddings, load_embeddings
from prom3e_geo.train.masking import check_masking
from prom3e_geo.train.stage2 import Stage2Trainer


@dataclass(frozen=True)
class TrainingRun:
    trainer: Stage2Trainer  # `fit(epochs, resume)` trains
    datasets: list[PairedEmbeddings]  # the data files it reads, as loaded


def prepare_training(
    recipe_path: Path,
    data_paths: Sequence[Path],
    out: Path,
    *,
    device: str = "auto",
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainingRun:
    """The trainer for a recipe and its data (`data_paths` replace the recipe's list, each with
    weight 1), checked before any epoch runs; `run.trainer.fit(...)` trains."""
    recipe = load_recipe(recipe_path)
    check_masking(recipe.masking, str(recipe_path))
    sources = [DataSource(path=str(p)) for p in data_paths] or list(recipe.data)
    if not sources:
        raise InputError(
            "no training data: pass --data FILE or list files under 'data' in the recipe"
        )
    if not out.parent.exists():
        raise InputError(f"output folder {out.parent} does not exist")
    datasets = [load_embeddings(s.path) for s in sources]
    trainer = Stage2Trainer(
        recipe,
        datasets,
        out,
        device=device,
        weights=[s.weight for s in sources],
        on_epoch=on_epoch,
    )
    return TrainingRun(trainer, datasets)
