"""Write docs/recipes.md, the reference of every recipe key, from the recipe models themselves.

    python scripts/recipe_docs.py > docs/recipes.md

Each recipe kind is a pydantic model (`prom3e_geo.recipes` and the models beside it); this lists
every key of every section with its type, default and description, so the reference cannot drift
from what the loaders accept (tests/test_recipe_models.py compares the committed file).
"""

from __future__ import annotations

import json
import types
import typing

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from prom3e_geo.engine.presets import PresetRecipe
from prom3e_geo.plugins.demo.build import DemoRecipe
from prom3e_geo.recipes import EvaluationRecipe, TrainRecipe

KINDS: tuple[tuple[str, type[BaseModel], str], ...] = (
    (
        "Training recipe",
        TrainRecipe,
        "`prom3e-geo train --recipe FILE` (examples: `recipes/train-prom3e.yaml`, "
        "`recipes/train-prom3e-miam.yaml`).",
    ),
    (
        "Evaluation recipe",
        EvaluationRecipe,
        "`prom3e-geo evaluate --recipe FILE` (example: `recipes/evaluate-demo.yaml`).",
    ),
    (
        "Weights preset recipe",
        PresetRecipe,
        "`--weights my-preset.yaml` and `prom3e-geo weights download my-preset.yaml`: a preset "
        "made of named parts.",
    ),
    (
        "Demo build recipe",
        DemoRecipe,
        "`prom3e-geo demo build --recipe FILE` (the shipped one: `recipes/demo-world.yaml`).",
    ),
)
CONSTRAINTS = (
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Ge, "ge", ">="),
    (annotated_types.Lt, "lt", "<"),
)
NAMES: dict[object, str] = {
    int: "integer",
    float: "number",
    bool: "boolean",
    str: "string",
    type(None): "null",
}


def type_name(annotation: object) -> str:
    """A field's type in words: `integer`, `list of string`, `mapping string -> string`, ..."""
    if annotation in NAMES:
        return NAMES[annotation]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return f"list of {type_name(args[0])}"
    if origin is tuple:
        return f"list of {len(args)} {type_name(args[0])}"
    if origin is dict:
        return f"mapping {type_name(args[0])} -> {type_name(args[1])}"
    raise ValueError(f"no words for the type {annotation!r}")


def default_text(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        keys_set = value.model_dump(exclude_unset=True)  # what differs from its own defaults
        return _json(keys_set) if keys_set else "see below"
    return _json(value)


def _json(value: object) -> str:
    return f"`{json.dumps(value, default=list)}`"


def type_text(field: FieldInfo) -> str:
    words = type_name(field.annotation)
    for constraint in field.metadata:
        for kind, attribute, symbol in CONSTRAINTS:
            if isinstance(constraint, kind):
                words += f", {symbol} {getattr(constraint, attribute)}"
    return words


def section(model: type[BaseModel], prefix: str) -> list[str]:
    """The table of one model's keys, then one table per nested section."""
    lines = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        lines.append(
            f"| `{key}` | {type_text(field)} | {default_text(field)} | {field.description} |"
        )
        inner = [a for a in (field.annotation, *typing.get_args(field.annotation))]
        for candidate in inner:
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                nested.append((key, candidate))
    for key, inner_model in nested:
        lines += ["", f"`{key}` takes:", "", *section(inner_model, f"{key}.")]
    return lines


def reference() -> str:
    """The whole of docs/recipes.md."""
    lines = [
        "# Recipe reference",
        "",
        "Every recipe is a YAML mapping checked against a typed model before any work starts: an",
        "unknown key or a value of the wrong type (`epochs: ten`, `batch_size: -5`) stops the run",
        "with one line naming the key, what it expects and the file (exit code 2). Lists are",
        "written as YAML lists; paths are relative to the recipe file.",
        "",
        "Generated from the models by `python scripts/recipe_docs.py > docs/recipes.md`; do not",
        "edit by hand.",
    ]
    for title, model, usage in KINDS:
        doc = " ".join((model.__doc__ or "").split("\n\n")[0].split())
        lines += ["", f"## {title}", "", usage, "", doc, "", *section(model, "")]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(reference(), end="")
