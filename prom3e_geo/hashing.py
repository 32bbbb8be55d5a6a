"""Content hashes of input files and folders, for manifests and provenance tags."""

from __future__ import annotations

import hashlib
from pathlib import Path


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
