"""Which embedding store a pipeline may read or fill: cache keys and store/model checks."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from prom3e_geo.errors import InputError, StoreMismatchError
from prom3e_geo.grid import Grid


def store_key(manifest: Mapping[str, Any], grid: Grid) -> str:
    """The cache name of the store a pipeline (its manifest: models, source, context, resolved
    precision, software version) computes over `grid`. Options that change only the speed
    (device, batch size, prefetch) are not in a manifest, so they share a store."""
    keyed = {"manifest": manifest, "grid": grid.to_dict(), "chunk": grid.chunk_shape}
    text = json.dumps(keyed, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def refuse_fixed_options(path: Path | str, given: Iterable[str]) -> None:
    """A given store fixes the grid, imagery and context: options that set them are refused
    rather than ignored."""
    options = ", ".join(f"--{name.replace('_', '-')}" for name in given)
    if options:
        raise InputError(
            f"{options}: the embedding store {path} fixes the grid, imagery and context it was "
            "computed with; leave these options out (or leave out --embeddings)"
        )


def check_model(path: Path | str, manifest: Mapping[str, Any], asked: str | None) -> None:
    """A model asked for (None: any) must be the one the store was computed with."""
    if asked is not None and asked != manifest["model"]:
        raise StoreMismatchError(
            f"the store {path} was computed with model {manifest['model']}, not {asked}; "
            "leave out --model to use the store's"
        )


def merge_encoders(
    path: Path | str, stored: Mapping[str, str], asked: Iterable[tuple[str, str]]
) -> dict[str, str]:
    """The store's encoders with those asked for added: a tower of a modality the store did
    not use (a query tower) may be added, one that differs from the store's is refused."""
    merged = dict(stored)
    for modality, encoder in asked:
        if modality in merged and merged[modality] != encoder:
            raise StoreMismatchError(
                f"the store {path} was computed with the {modality} encoder "
                f"{merged[modality]}, not {encoder}"
            )
        merged[modality] = encoder
    return merged


def check_weights(path: Path | str, manifest: Mapping[str, Any], model_sha256: str) -> None:
    """The model's weights must be the ones the store was computed with."""
    if model_sha256 != manifest.get("model_sha256"):
        raise StoreMismatchError(
            f"the weights of model {manifest['model']} changed since the store {path} was "
            "computed; recompute the store"
        )


def check_origins(
    path: Path | str, manifest: Mapping[str, Any], origins: Mapping[str, str]
) -> None:
    """The hub releases (ORG/NAME@COMMIT) the store's parts came from must be the ones the
    user's pipeline resolved: a tower or model from another commit embeds differently."""
    for part, stored in sorted((manifest.get("origins") or {}).items()):
        mine = origins.get(part)
        if mine is not None and mine != stored:
            raise StoreMismatchError(
                f"the store {path} was computed with {part} from {stored}, but this machine's "
                f"weights come from {mine}; download that revision or recompute the store"
            )
