"""YAML run recipes: read with `yaml.safe_load`, checked against the expected sections and keys.

A typo in a recipe is an input error naming the bad key, never a silently ignored setting.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from prom3e_geo.errors import InputError
from prom3e_geo.model.prom3e import ProM3EConfig


@dataclass(frozen=True)
class LossSettings:
    kind: str = "contrastive"
    lambda_kl: float = 1e-3
    masked_only: bool = False


@dataclass(frozen=True)
class OptimSettings:
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 0.01
    t0_epochs: int = 20  # CosineAnnealingWarmRestarts period
    eta_min: float = 1e-6


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 500
    batch_size: int = 1024
    val_fraction: float = 0.1
    val_batch: int = 1024  # retrieval is ranked within blocks of this many samples
    seed: int = 0
    amp: str = "bf16"  # autocast dtype on CUDA: bf16, fp16 or none (CPU runs in float32)


@dataclass(frozen=True)
class TrainRecipe:
    """Everything stage-2 training needs apart from the data and the device."""

    model: ProM3EConfig = field(default_factory=ProM3EConfig)
    loss: LossSettings = field(default_factory=LossSettings)
    masking: dict[str, Any] = field(default_factory=lambda: {"strategy": "prom3e"})
    optim: OptimSettings = field(default_factory=OptimSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    data: tuple[
        dict[str, Any], ...
    ] = ()  # [{path: ..., weight: ...}], paths relative to the recipe

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        out = asdict(self)
        out["optim"]["betas"] = list(self.optim.betas)
        out["data"] = [dict(d) for d in self.data]
        return out


def _section(cls, data: Any, name: str, source: str):
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise InputError(f"recipe {source}: section {name!r} must be a mapping")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(
            f"recipe {source}: unknown key(s) {unknown} in {name!r} (known: {sorted(known)})"
        )
    try:
        if cls is OptimSettings and "betas" in data:
            data = {**data, "betas": tuple(float(b) for b in data["betas"])}
        return cls(**data)
    except (TypeError, ValueError) as exc:
        raise InputError(f"recipe {source}: bad {name!r} section: {exc}") from None


def recipe_from_dict(
    data: dict[str, Any], source: str = "<dict>", base: Path | None = None
) -> TrainRecipe:
    if not isinstance(data, dict):
        raise InputError(f"recipe {source} must be a YAML mapping")
    known = {f.name for f in fields(TrainRecipe)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(f"recipe {source}: unknown section(s) {unknown} (known: {sorted(known)})")
    masking = data.get("masking") or {"strategy": "prom3e"}
    if not isinstance(masking, dict) or "strategy" not in masking:
        raise InputError(f"recipe {source}: 'masking' needs a 'strategy'")
    entries = data.get("data") or []
    if not isinstance(entries, list):
        raise InputError(f"recipe {source}: 'data' must be a list of paths or {{path, weight}}")
    sources = []
    for entry in entries:
        entry = {"path": entry} if isinstance(entry, str) else dict(entry)
        path = Path(entry["path"])
        if base is not None and not path.is_absolute():
            path = base / path
        sources.append({"path": str(path), "weight": float(entry.get("weight", 1.0))})
    recipe = TrainRecipe(
        model=_section(ProM3EConfig, data.get("model"), "model", source),
        loss=_section(LossSettings, data.get("loss"), "loss", source),
        masking=dict(masking),
        optim=_section(OptimSettings, data.get("optim"), "optim", source),
        train=_section(TrainSettings, data.get("train"), "train", source),
        data=tuple(sources),
    )
    if recipe.train.amp not in ("bf16", "fp16", "none"):
        raise InputError(f"recipe {source}: train.amp must be bf16, fp16 or none")
    if not 0 <= recipe.train.val_fraction < 1:
        raise InputError(f"recipe {source}: train.val_fraction must be in [0, 1)")
    return recipe


def read_yaml(path: str | Path) -> dict:
    """A recipe file's mapping (`yaml.safe_load`); a missing file, bad YAML or another top-level
    type is an input error in one line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"recipe {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"recipe {path} is not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise InputError(f"recipe {path} must be a YAML mapping")
    return data


def load_recipe(path: str | Path) -> TrainRecipe:
    path = Path(path)
    return recipe_from_dict(read_yaml(path), str(path), base=path.parent)


@dataclass(frozen=True)
class EvaluationRecipe:
    """What `prom3e-geo evaluate` measures (all keys optional; the defaults evaluate the demo).

    Modality sets are written `a+b`; splits are seeded permutations of the samples.
    """

    model: str = "demo"  # a model preset (demo), or ProM3E weights (.ckpt, .safetensors, HF folder)
    data: str = (
        "demo"  # a registered evaluation dataset (demo), or paired embeddings (.parquet, ...)
    )
    n: int = 2000  # demo observations
    labels: str | None = None  # class labels of file data: .npy, or a one-column .csv/.txt
    targets: dict[str, str] = field(default_factory=dict)  # continuous targets: name -> file
    seed: int = 0
    val_fraction: float = 0.5  # retrieval: share used to choose delta; the rest is the test
    test_fraction: float = 0.2  # probes: held-out share
    probe_repeats: int = 5  # probes: seeded train/test splits averaged
    retrieval: tuple[str, ...] = ()  # "query->target"; default: every pair of image/sat/loc/env
    deltas: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
    zero_shot: tuple[str, ...] = ("image", "sat", "loc", "env", "sat+loc+env")
    probe_visible: str = "sat+loc+env"
    probe_features: tuple[str, ...] = ("recon", "mu", "modality", "register", "hidden")
    gaps: tuple[str, ...] = ("image-sat+loc", "image-loc+env")  # "a-b+third"
    sigma_sets: tuple[str, ...] = ("image", "sat", "loc", "env", "sat+loc+env", "image+sat+loc+env")
    extremes: int = 8  # most/least uncertain samples shown (images of the demo data)
    uncertainty_checks: bool = True  # does the uncertainty layer warn where the model errs?
    save_calibration: str | None = None  # write the calibrated variant here (for `uncertainty`)


def load_evaluation_recipe(path: str | Path | None) -> EvaluationRecipe:
    if path is None:
        return EvaluationRecipe()
    path = Path(path)
    data = read_yaml(path)
    data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    for key in ("data", "labels", "model"):  # paths are relative to the recipe; names stay
        value = data.get(key)
        if value and (path.parent / value).exists():
            data[key] = str(path.parent / value)
    if data.get("save_calibration"):  # an output: relative to the recipe
        data["save_calibration"] = str(path.parent / data["save_calibration"])
    targets = data.get("targets") or {}
    if not isinstance(targets, dict):
        raise InputError(f"recipe {path}: 'targets' must map names to files")
    data["targets"] = {k: str(path.parent / v) for k, v in targets.items()}
    recipe = _section(EvaluationRecipe, data, "evaluation", str(path))
    if not 0 < recipe.val_fraction < 1 or not 0 < recipe.test_fraction < 1:
        raise InputError(f"recipe {path}: val_fraction and test_fraction must be in (0, 1)")
    return recipe
