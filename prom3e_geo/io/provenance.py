"""Provenance tags written into every output (GeoTIFF tags, Zarr attributes)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prom3e_geo import __version__
from prom3e_geo.grid import Grid


def file_sha256(path: str | Path, block: int = 1 << 20) -> str:
    """SHA-256 of a file, streamed (folders hash their sorted file list and contents)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            digest.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            while chunk := fh.read(block):
                digest.update(chunk)
    return digest.hexdigest()


def provenance(
    command: str,
    grid: Grid,
    inputs: Mapping[str, str | Path] | None = None,
    params: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Tags describing how an output was made: software, command, grid, inputs, parameters."""
    tags = {
        "software": f"prom3e-geo {__version__}",
        "command": command,
        "grid": grid.describe(),
    }
    for name, path in (inputs or {}).items():
        tags[f"{name}_file"] = Path(path).name
        tags[f"{name}_sha256"] = file_sha256(path)
    for key, value in (params or {}).items():
        tags[key] = str(value)
    return tags
