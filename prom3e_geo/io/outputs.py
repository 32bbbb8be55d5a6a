"""Safe output paths: refuse to clobber, write under a temporary name, rename when complete.

A crash, a Ctrl-C or a bad input never leaves a half-written file under the final name, and an
existing output is only replaced when the caller asked for it (`overwrite=True`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from prom3e_geo.errors import InputError
from prom3e_geo.partials import partial_path, remove, remove_stale_partials
from prom3e_geo.stores.grid_store import is_zarr_store


def check_output(path: str | Path, overwrite: bool = False) -> Path:
    """Validate an output path before any work is done; return it as a Path.

    An existing output is replaced only with `overwrite`, and only if it is of the same kind: a
    file for a file output, a Zarr store (a folder with Zarr metadata) for a `.zarr` output. A
    user's unrelated folder is never deleted.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"output folder {path.parent} does not exist")
    check_writable(path.parent)
    if not path.exists():
        return path
    if not overwrite:
        raise InputError(f"output {path} already exists (pass --overwrite to replace it)")
    if path.is_dir() and not is_zarr_store(path):
        raise InputError(
            f"output {path} is a folder that is not a Zarr store; refusing to replace it"
        )
    return path


@dataclass(frozen=True)
class OutputSpec:
    """A layer command's outputs: a COG, and optionally its Zarr twin and a PNG quicklook."""

    out: Path
    zarr: Path | None = None
    zarr_format: int = 2
    png: Path | None = None
    overwrite: bool = False

    def paths(self) -> list[Path]:
        return [p for p in (self.out, self.zarr, self.png) if p is not None]

    def check(self, inputs: Sequence[Path | None] = ()) -> None:
        """Refuse, before any work, outputs that exist (without overwrite), sit in a missing
        folder, repeat each other or name an input."""
        for path in self.paths():
            check_output(path, self.overwrite)
        check_distinct(self.paths(), list(inputs))


def check_writable(folder: Path) -> None:
    """Refuse a folder where no file can be created (read-only, /proc, a full disk)."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".prom3e-geo-probe-"):
            pass
    except OSError as exc:
        raise InputError(f"cannot write in {folder}: {exc.strerror or exc}") from None


def check_distinct(outputs: list[Path | None], inputs: list[Path | None]) -> None:
    """Refuse an output path that repeats another output or names an input."""
    seen: set[Path] = set()
    ins = {Path(p).resolve() for p in inputs if p is not None}
    for p in outputs:
        if p is None:
            continue
        r = Path(p).resolve()
        if r in ins:
            raise InputError(f"output {p} is also an input; choose another name")
        if r in seen:
            raise InputError(f"output {p} is named twice")
        seen.add(r)


_TOGETHER: ContextVar[list | None] = ContextVar("prom3e_geo_outputs_together", default=None)


@contextmanager
def committed_together() -> Iterator[None]:
    """Outputs finished inside the block (by `atomic_output`) are renamed into place together
    when the whole block succeeds; if any part fails, none of them appears."""
    finished: list[tuple[Path, Path]] = []
    token = _TOGETHER.set(finished)
    try:
        yield
    except BaseException:
        for tmp, _ in finished:
            remove(tmp)
        raise
    finally:
        _TOGETHER.reset(token)
    for tmp, path in finished:
        _commit(tmp, path)


@contextmanager
def atomic_output(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it into place only if the block succeeds
    (inside `committed_together`: when every output of that block has succeeded)."""
    path = check_output(path, overwrite)
    remove_stale_partials(path)
    tmp = partial_path(path)
    remove(tmp)
    try:
        yield tmp
    except BaseException:
        remove(tmp)
        raise
    together = _TOGETHER.get()
    if together is not None:
        together.append((tmp, path))
    else:
        _commit(tmp, path)


def _commit(tmp: Path, path: Path) -> None:
    """Move a finished temporary output into place (replacing an old one last)."""
    if path.exists():  # overwrite: move the old output aside, then swap, then delete it
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        remove(old)
        os.replace(path, old)
        os.replace(tmp, path)
        remove(old)
    else:
        os.replace(tmp, path)
