"""Content hashes of input files and folders, for manifests and provenance tags."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

SETTLED_S = 2.0  # a file changed less than this before its hash began is not remembered
HASH_BLOCK = 16 << 20  # bytes read and hashed at a time: hashlib lets go of the GIL for each
# block, so a thread hashing beside Python code (imports, a pipeline) rarely waits for it


def file_sha256(
    path: str | Path, block: int = HASH_BLOCK, known: KnownDigests | None = None
) -> str:
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
        for chunk in _blocks(f, 0, block):
            digest.update(chunk)
    return digest.hexdigest()


def _blocks(path: Path, offset: int, block: int) -> Iterator[memoryview]:
    """The bytes of `path` from `offset` on, a block at a time through one reused buffer (no
    new bytes object a block; each view is good until the next one)."""
    with open(path, "rb", buffering=0) as fh:
        st = os.fstat(fh.fileno())
        regular = stat.S_ISREG(st.st_mode) and st.st_size > 0  # not a pipe or a /proc file
        buffer = bytearray(max(1, min(block, st.st_size - offset + 1)) if regular else block)
        view = memoryview(buffer)
        if offset:
            fh.seek(offset)
        while n := fh.readinto(buffer):
            yield view[:n]


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

    def sha256(self, path: Path, block: int = HASH_BLOCK) -> str:
        entry = self.entry(path)
        return entry.digest or entry.remember(file_sha256(entry.path, block))

    def entry(self, path: Path) -> DigestEntry:
        """What is remembered of `path` now, taken as the moment its hashing begins."""
        real = path.resolve()
        name = f"{hashlib.sha256(str(real).encode()).hexdigest()[:32]}.json"
        return DigestEntry(real, self.folder / name)


class DigestEntry:
    """One file's entry in `KnownDigests`: the digest remembered for its signature of now
    (`digest`, None when there is none), and `remember` for the digest of a hash begun now."""

    def __init__(self, path: Path, record: Path) -> None:
        self.path, self._record = path, record
        self._signature = _signature(path)
        self.digest: str | None = None
        with contextlib.suppress(OSError, ValueError):
            remembered = json.loads(record.read_text())
            same = remembered.get("path") == str(path)
            if same and remembered.get("signature") == self._signature:
                self.digest = str(remembered["sha256"])
        self._began_ns = time.time_ns()

    def remember(self, digest: str) -> str:
        """Keep `digest` for the file if it had settled before the hash began and has not
        changed since; returns it."""
        self.digest = digest
        changed_ns = max(self._signature[1], self._signature[2])
        settled = changed_ns < self._began_ns - int(SETTLED_S * 1e9)
        with contextlib.suppress(OSError):  # gone since, or a folder that cannot be written
            if settled and _signature(self.path) == self._signature:
                record = {"path": str(self.path), "signature": self._signature, "sha256": digest}
                _replace(self._record, json.dumps(record))
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


def lowest_priority() -> None:
    """Give the calling thread the lowest CPU priority (nice 19) where threads have their own
    (Linux); elsewhere leave it as it is."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


class BackgroundDigest:
    """`file_sha256(path, known=known)` of an input the run reads anyway, begun now on a thread
    of its own at the lowest CPU priority: it takes the time a core would otherwise idle (while
    the run's libraries load, while a stage waits for another) and not the time of the work the
    run waits on. The thread leaves a copy of the hash's state after every block; asked for
    before it is done, the digest is finished from that copy by the asking thread, at its own
    priority and without waiting for the thread (on a busy machine a nice-19 thread may hardly
    run at all). A path that is not a file is left to `result`."""

    def __init__(self, path: str | Path, known: KnownDigests | None = None) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()  # guards what the two threads share, never a read
        self._asking = threading.Lock()  # one asking thread at a time
        self._asked = False
        self._partial, self._offset = hashlib.sha256(), 0  # the thread's progress
        self._digest: str | None = None
        self._error: BaseException | None = None
        self._is_file = self._path.is_file()
        self._entry = known.entry(self._path) if known and self._is_file else None
        if self._entry is not None:
            self._digest = self._entry.digest
        self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
        if self._digest is None and self._is_file:
            self._thread.start()

    def _run(self) -> None:
        lowest_priority()
        digest, done = hashlib.sha256(), 0
        try:
            for chunk in _blocks(self._path, 0, HASH_BLOCK):
                digest.update(chunk)
                done += len(chunk)
                with self._lock:
                    if self._asked:
                        return  # the asking thread goes on from the last copy
                    self._partial, self._offset = digest.copy(), done
        except BaseException as exc:  # noqa: BLE001 - raised where the digest is asked for
            with self._lock:
                self._error = exc
            return
        with self._lock:
            if not self._asked:
                self._digest = self._finished(digest.hexdigest())

    def _finished(self, digest: str) -> str:
        return self._entry.remember(digest) if self._entry is not None else digest

    def result(self) -> str:
        """The digest, the rest of the file hashed here if the thread has not finished."""
        with self._asking:
            with self._lock:
                self._asked = True
                if self._digest is not None:
                    return self._digest
                if self._error is not None:
                    raise self._error
                digest, offset = self._partial.copy(), self._offset
            if not self._is_file:
                self._digest = file_sha256(self._path)  # a folder, or the error of a missing one
                return self._digest
            for chunk in _blocks(self._path, offset, HASH_BLOCK):
                digest.update(chunk)
            self._digest = self._finished(digest.hexdigest())
            return self._digest
