"""Provenance tags written into every output (GeoTIFF tags, Zarr attributes)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prom3e_geo.grid import Grid
from prom3e_geo.hashing import BackgroundDigest, file_sha256
from prom3e_geo.version import __version__

SYNTHETIC_NOTE = "SYNTHETIC (demo world): not a map of real species"
SYNTHETIC_TAG = (
    "SYNTHETIC: made from the prom3e-geo demo world (synthetic imagery, photos and species ranges)"
)


def provenance(
    command: str,
    grid: Grid,
    inputs: Mapping[str, str | Path] | None = None,
    params: Mapping[str, Any] | None = None,
    digests: Mapping[str, BackgroundDigest] | None = None,
) -> dict[str, str]:
    """Tags describing how an output was made: software, command, grid, inputs, parameters.
    An input's SHA-256 is computed here unless `digests` has it under the input's name."""
    tags = {
        "software": f"prom3e-geo {__version__}",
        "command": command,
        "grid": grid.describe(),
    }
    for name, path in (inputs or {}).items():
        tags[f"{name}_file"] = Path(path).name
        begun = (digests or {}).get(name)
        tags[f"{name}_sha256"] = begun.result() if begun else file_sha256(path)
    for key, value in (params or {}).items():
        tags[key] = str(value)
    return tags


def manifest_tags(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Provenance tags from a store's manifest (model id and hash, source, context, and the
    hub repository and commit of every part: `weights_model`, `weights_sat`, ...); outputs of
    synthetic data say so."""
    source = manifest.get("source") or {}
    tags = {
        "model": str(manifest.get("model")),
        "model_sha256": str(manifest.get("model_sha256")),
        "source": json.dumps(source),
        "context": "+".join(manifest.get("context", [])),
    }
    for part, origin in sorted((manifest.get("origins") or {}).items()):
        tags[f"weights_{part}"] = str(origin)
    imagery = source.get("fetched_from", source)  # a patch cache names where it came from
    for key in ("attribution", "licence"):
        if key in imagery:
            tags[f"imagery_{key}"] = str(imagery[key])
    if manifest.get("synthetic") or source.get("synthetic"):
        tags["demo_world"] = SYNTHETIC_TAG
    return tags
