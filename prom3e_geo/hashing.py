"""Content hashes of input files and folders, for manifests and provenance tags."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
import threading
import time
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
        hasher = _FileHasher(f, block, digest)
        while hasher.step():
            pass
    return digest.hexdigest()


class _FileHasher:
    """One file fed into a SHA-256 a block at a time, through one reusable buffer (no new
    bytes object a block); `step` hashes the next block and says whether there was one."""

    def __init__(self, path: Path, block: int, digest: hashlib._Hash | None = None) -> None:
        self.digest = digest if digest is not None else hashlib.sha256()
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by the last step
        size = os.fstat(self._file.fileno()).st_size
        self._buffer = bytearray(max(1, min(block, size + 1)))
        self._view = memoryview(self._buffer)

    def step(self) -> bool:
        try:
            n = self._file.readinto(self._buffer)
        except BaseException:
            self._file.close()
            raise
        if not n:
            self._file.close()
            return False
        self.digest.update(self._view[:n])
        return True


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
            if remembered.get("signature") == self._signature and remembered.get("path") == str(
                path
            ):
                self.digest = str(remembered["sha256"])
        self._began_ns = time.time_ns()

    def remember(self, digest: str) -> str:
        """Keep `digest` for the file if it had settled before the hash began and has not
        changed since; returns it."""
        self.digest = digest
        changed_ns = max(self._signature[1], self._signature[2])
        settled = changed_ns < self._began_ns - int(SETTLED_S * 1e9)
        if settled and _signature(self.path) == self._signature:
            record = {"path": str(self.path), "signature": self._signature, "sha256": digest}
            with contextlib.suppress(OSError):
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
    run waits on. Asked for before it is done, the rest of the file is hashed by the asking
    thread, at that thread's priority, so a busy machine cannot leave it starving. A path that
    is not a file is left to `result`."""

    def __init__(self, path: str | Path, known: KnownDigests | None = None) -> None:
        self._path, self._known = Path(path), known
        self._lock = threading.Lock()  # held by whichever thread hashes, one block at a time
        self._asked = threading.Event()
        self._entry: DigestEntry | None = None
        self._hasher: _FileHasher | None = None
        self._digest: str | None = None
        self._error: BaseException | None = None
        if self._path.is_file():
            threading.Thread(target=self._run, name="sha256", daemon=True).start()

    def _run(self) -> None:
        lowest_priority()
        while not self._asked.is_set():
            with self._lock:
                if self._digest is not None or self._error is not None:
                    return
                try:
                    if not self._advance():
                        return
                except BaseException as exc:  # noqa: BLE001 - raised where it is asked for
                    self._error = exc

    def _advance(self) -> bool:
        """Take the hash one step further (the lock held); False once the digest is known."""
        if self._hasher is None:
            if not self._path.is_file():
                self._digest = file_sha256(self._path)  # a folder, or the error of a missing one
                return False
            if self._known is not None:
                self._entry = self._known.entry(self._path)
                if self._entry.digest is not None:
                    self._digest = self._entry.digest
                    return False
            self._hasher = _FileHasher(self._path, HASH_BLOCK)
        if self._hasher.step():
            return True
        digest = self._hasher.digest.hexdigest()
        self._digest = self._entry.remember(digest) if self._entry is not None else digest
        return False

    def result(self) -> str:
        """The digest, the rest of the file hashed here if the thread has not finished."""
        self._asked.set()
        with self._lock:
            if self._error is not None:
                raise self._error
            while self._digest is None and self._advance():
                pass
            assert self._digest is not None  # `_advance` returns False only once it is set
            return self._digest
