"""Content hashes of input files and folders, for manifests and provenance tags."""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import Future
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


class BackgroundDigest:
    """`file_sha256(path)` computed on a thread of its own, begun now (hashlib lets go of the
    GIL while it hashes), for an input that the run reads anyway: hashing a 1 GB observations
    file after the counting added 0.6 s to a 4 s run; beside it, next to nothing."""

    def __init__(self, path: str | Path) -> None:
        self._digest: Future[str] = Future()
        threading.Thread(target=self._run, args=(path,), name="sha256", daemon=True).start()

    def _run(self, path: str | Path) -> None:
        try:
            self._digest.set_result(file_sha256(path))
        except BaseException as exc:  # noqa: BLE001 - raised where the digest is asked for
            self._digest.set_exception(exc)

    def result(self) -> str:
        return self._digest.result()
