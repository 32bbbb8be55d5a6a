"""Run recipes as typed models: YAML read with `yaml.safe_load`, every key and value checked.

Each recipe kind is one pydantic model (`extra="forbid"`, strict types): a typo in a key or a
value of the wrong type (`epochs: "ten"`, `batch_size: -5`) is an input error in one line naming
the key, what it expects and the file, never a silently ignored or coerced setting. The field
descriptions are the reference that `docs/recipes.md` is generated from
(`scripts/recipe_docs.py`).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

from prom3e_geo.errors import InputError
from prom3e_geo.model.prom3e import ProM3EConfig

M = TypeVar("M", bound=BaseModel)
Scalar = str | int | float | bool


class RecipeModel(BaseModel):
    """Base of every recipe section: unknown keys refused, no type coercion, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class LossSettings(RecipeModel):
    """The training loss (`ProM3ELoss`)."""

    kind: Literal["contrastive", "mse"] = Field(
        "contrastive", description="Reconstruction term: contrastive (InfoNCE) or mse."
    )
    lambda_kl: float = Field(1e-3, ge=0, description="Weight of the VIB (KL) term.")
    masked_only: bool = Field(False, description="Score reconstructions of masked modalities only.")


class OptimSettings(RecipeModel):
    """AdamW and its cosine schedule with warm restarts."""

    lr: float = Field(1e-4, gt=0, description="AdamW learning rate.")
    betas: tuple[float, float] = Field((0.9, 0.98), description="AdamW betas.")
    eps: float = Field(1e-6, gt=0, description="AdamW epsilon.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    t0_epochs: int = Field(
        20, gt=0, description="Period of the cosine annealing warm restarts, in epochs."
    )
    eta_min: float = Field(1e-6, ge=0, description="Lowest learning rate of the schedule.")


class TrainSettings(RecipeModel):
    """The training schedule, the validation split and the autocast dtype."""

    epochs: int = Field(500, gt=0, description="Epochs to train.")
    batch_size: int = Field(1024, gt=0, description="Samples per optimisation step.")
    val_fraction: float = Field(
        0.1, ge=0, lt=1, description="Share of the samples held out for validation."
    )
    val_batch: int = Field(
        1024, gt=0, description="Validation retrieval is ranked within blocks of this many."
    )
    seed: int = Field(0, description="Seed of the split, the batches and the masking.")
    amp: Literal["bf16", "fp16", "none"] = Field(
        "bf16", description="Autocast dtype on CUDA (CPU runs in float32)."
    )


class DataSource(RecipeModel):
    """One training file and its sampling weight."""

    path: str = Field(description="Paired embeddings file, relative to the recipe.")
    weight: float = Field(1.0, gt=0, description="Sampling weight among the recipe's files.")


class TrainRecipe(RecipeModel):
    """Everything stage-2 training needs apart from the data and the device
    (`prom3e-geo train --recipe`)."""

    model: ProM3EConfig = Field(
        default_factory=ProM3EConfig, description="ProM3E architecture (see the model keys)."
    )
    loss: LossSettings = Field(default_factory=LossSettings, description="Training loss.")
    masking: dict[str, Scalar] = Field(
        default_factory=lambda: dict[str, Scalar](strategy="prom3e"),
        description="`strategy` (a registered masking strategy) and its parameters, checked "
        "against the strategy's own signature.",
    )
    optim: OptimSettings = Field(default_factory=OptimSettings, description="Optimiser.")
    train: TrainSettings = Field(default_factory=TrainSettings, description="Schedule.")
    data: tuple[DataSource, ...] = Field(
        (), description="Training files: paths, or {path, weight} mappings."
    )

    @field_validator("masking")
    @classmethod
    def _strategy_named(cls, value: dict[str, Scalar]) -> dict[str, Scalar]:
        if not isinstance(value.get("strategy"), str):
            raise ValueError("needs a 'strategy' (the name of a masking strategy)")
        return value

    @field_validator("data", mode="before")
    @classmethod
    def _paths_as_sources(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            return tuple({"path": v} if isinstance(v, str) else v for v in value)
        return value

    def to_dict(self) -> dict[str, Any]:
        """The recipe as plain YAML/JSON data (what a run folder records)."""
        return self.model_dump(mode="json")


def parse_recipe(model: type[M], data: object, source: str) -> M:
    """`data` (YAML's mapping) as a `model`; any wrong key or value is an input error naming
    the key, what it expects and `source`."""
    try:
        return model.model_validate(_tuples(data))
    except ValidationError as exc:
        raise InputError(f"recipe {source}: {describe_error(model, exc)}") from None


def describe_error(model: type[BaseModel], exc: ValidationError) -> str:
    """The first validation error in words: `train.epochs: input should be a valid integer
    (got 'ten')`, or an unknown key with the nearest known one."""
    errors = exc.errors()
    error: ErrorDetails = errors[0]
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if error["type"] == "extra_forbidden":
        known = _known_keys(model, error["loc"][:-1])
        return f"unknown key {key!r}{_hint(str(error['loc'][-1]), known)}{more}"
    message = error["msg"][:1].lower() + error["msg"][1:]
    if error["type"] == "value_error":
        message = message.removeprefix("value error, ")
    got = "" if error["type"] == "missing" else f" (got {error['input']!r})"
    return f"{key}: {message}{got}{more}"


def _known_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys the (sub)model at `loc` takes."""
    current: object = model
    for part in loc:
        if (
            isinstance(current, type)
            and issubclass(current, BaseModel)
            and part in current.model_fields
        ):
            current = current.model_fields[str(part)].annotation
        args = getattr(current, "__args__", None)  # tuple[X, ...] / X | None: the model inside
        if args:
            current = next(
                (a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), current
            )
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _hint(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (known: {', '.join(known)})" if known else ""


def _tuples(data: object) -> object:
    """YAML lists as tuples (the models' sequences are immutable tuples)."""
    if isinstance(data, dict):
        return {k: _tuples(v) for k, v in data.items()}
    if isinstance(data, list):
        return tuple(_tuples(v) for v in data)
    return data


def read_yaml(path: str | Path) -> dict[str, object]:
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
    """A training recipe file; its data paths are made relative to the recipe's folder."""
    path = Path(path)
    recipe = parse_recipe(TrainRecipe, read_yaml(path), str(path))
    data = tuple(d.model_copy(update={"path": str(path.parent / d.path)}) for d in recipe.data)
    return recipe.model_copy(update={"data": data})


DEFAULT_DELTAS = tuple(round(0.1 * i, 1) for i in range(11))


class EvaluationRecipe(RecipeModel):
    """What `prom3e-geo evaluate` measures (all keys optional; the defaults evaluate the demo).

    Modality sets are written `a+b`; splits are seeded permutations of the samples.
    """

    model: str = Field(
        "demo",
        description="A model preset (demo), or ProM3E weights (.ckpt, .safetensors, HF "
        "folder), relative to the recipe.",
    )
    data: str = Field(
        "demo",
        description="A registered evaluation dataset (demo), or paired embeddings "
        "(.parquet, ...), relative to the recipe.",
    )
    n: int = Field(2000, gt=0, description="Observations of a registered dataset.")
    labels: str | None = Field(
        None, description="Class labels of file data: .npy, or a one-column .csv/.txt."
    )
    targets: dict[str, str] = Field(
        default_factory=dict, description="Continuous targets of file data: name -> file."
    )
    seed: int = Field(0, description="Seed of the splits.")
    val_fraction: float = Field(
        0.5, gt=0, lt=1, description="Retrieval: share used to choose delta; the rest is the test."
    )
    test_fraction: float = Field(0.2, gt=0, lt=1, description="Probes: held-out share.")
    probe_repeats: int = Field(5, gt=0, description="Probes: seeded train/test splits averaged.")
    retrieval: tuple[str, ...] = Field(
        (), description="Retrieval pairs `query->target`; empty: every pair of image/sat/loc/env."
    )
    deltas: tuple[float, ...] = Field(DEFAULT_DELTAS, description="Retrieval deltas tried.")
    zero_shot: tuple[str, ...] = Field(
        ("image", "sat", "loc", "env", "sat+loc+env"),
        description="Modality sets classified zero-shot against the species names.",
    )
    probe_visible: str = Field("sat+loc+env", description="Modalities the linear probes see.")
    probe_features: tuple[str, ...] = Field(
        ("recon", "mu", "modality", "register", "hidden"), description="Features probed."
    )
    gaps: tuple[str, ...] = Field(
        ("image-sat+loc", "image-loc+env"), description="Modality gaps measured, `a-b+third`."
    )
    sigma_sets: tuple[str, ...] = Field(
        ("image", "sat", "loc", "env", "sat+loc+env", "image+sat+loc+env"),
        description="Modality sets whose uncertainty (||sigma||) is reported.",
    )
    extremes: int = Field(
        8, ge=0, description="Most/least uncertain samples shown (images of the demo data)."
    )
    uncertainty_checks: bool = Field(
        True, description="Check that the uncertainty layer warns where the model errs."
    )
    save_calibration: str | None = Field(
        None,
        description="Write the calibrated variant here (for `uncertainty`), relative to "
        "the recipe.",
    )


def load_evaluation_recipe(path: str | Path | None) -> EvaluationRecipe:
    """An evaluation recipe file (None: the defaults). Paths are relative to the recipe; names
    of registered datasets and presets stay names."""
    if path is None:
        return EvaluationRecipe()
    path = Path(path)
    recipe = parse_recipe(EvaluationRecipe, read_yaml(path), str(path))
    update: dict[str, object] = {
        key: str(path.parent / value)
        for key in ("data", "labels", "model")
        if (value := getattr(recipe, key)) and (path.parent / value).exists()
    }
    if recipe.save_calibration:  # an output: relative to the recipe
        update["save_calibration"] = str(path.parent / recipe.save_calibration)
    update["targets"] = {k: str(path.parent / v) for k, v in recipe.targets.items()}
    return recipe.model_copy(update=update)
