"""Content hashes of input files and folders, for manifests and provenance tags."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path

SETTLED_S = 2.0  # a file changed less than this before its hash began is not remembered


def file_sha256(path: str | Path, block: int = 1 << 20, known: KnownDigests | None = None) -> str:
    """SHA-256 of a file, streamed (folders hash their sorted file list and contents). With
    `known`, a file hashed before and unchanged since is not read again."""
    path = Path(path)
    if known is not None and path.is_file():
        return known.sha256(path, block)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            digest.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            while chunk := fh.read(block):
                digest.update(chunk)
    return digest.hexdigest()


class KnownDigests:
    """SHA-256 digests of files already read, remembered in `folder` by the file's path and
    signature (size, modification and change times in ns, inode, device), as git's index and
    DVC's state remember theirs: a 1 GB observations file mapped again with other options is not
    hashed again (0.6 s of CPU). Any write to the file changes its signature, and a file that
    changed less than `SETTLED_S` before it was hashed (perhaps still being written) is not
    remembered. One small JSON file a path, replaced atomically; a folder that cannot be written
    only means hashing every time."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def sha256(self, path: Path, block: int = 1 << 20) -> str:
        real = path.resolve()
        entry = self.folder / f"{hashlib.sha256(str(real).encode()).hexdigest()[:32]}.json"
        before = _signature(real)
        with contextlib.suppress(OSError, ValueError):
            remembered = json.loads(entry.read_text())
            if remembered.get("signature") == before and remembered.get("path") == str(real):
                return str(remembered["sha256"])
        began = time.time_ns()
        digest = file_sha256(real, block)
        settled = max(before[1], before[2]) < began - int(SETTLED_S * 1e9)
        if settled and _signature(real) == before:
            record = {"path": str(real), "signature": before, "sha256": digest}
            with contextlib.suppress(OSError):
                _replace(entry, json.dumps(record))
        return digest


def _signature(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _replace(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class BackgroundDigest:
    """`file_sha256(path, known=known)` computed on a thread of its own, begun now (hashlib lets
    go of the GIL while it hashes), for an input that the run reads anyway: hashing a 1 GB
    observations file after the counting added 0.6 s to a 4 s run; beside it, it only shares
    the cores."""

    def __init__(self, path: str | Path, known: KnownDigests | None = None) -> None:
        self._digest: Future[str] = Future()
        threading.Thread(target=self._run, args=(path, known), name="sha256", daemon=True).start()

    def _run(self, path: str | Path, known: KnownDigests | None) -> None:
        try:
            self._digest.set_result(file_sha256(path, known=known))
        except BaseException as exc:  # noqa: BLE001 - raised where the digest is asked for
            self._digest.set_exception(exc)

    def result(self) -> str:
        return self._digest.result()
