"""Work in progress beside an output: `.NAME.partial-PID[...]`, renamed to NAME when complete.

A crash or a `kill -9` can leave such a file or folder behind (and GDAL's `.staging.tif` or
`.ovr.tmp` companions, which carry the same prefix). Every writer removes the leftovers of
processes that no longer run before it starts, so they never accumulate and never block a run.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

_PID = re.compile(r"\.partial-(\d+)")


def partial_path(path: str | Path) -> Path:
    """This process's work-in-progress name for `path`."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial-{os.getpid()}")


def remove(path: Path) -> None:
    """Remove a file or a folder (not following a link); nothing if it is gone."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def remove_stale_partials(path: str | Path) -> list[Path]:
    """Remove the work in progress for `path` left by processes that are gone; returns it."""
    path = Path(path)
    stale: list[Path] = []
    if not path.parent.is_dir():
        return stale
    for candidate in path.parent.glob(f".{path.name}.partial-*"):
        match = _PID.search(candidate.name[len(path.name) + 1 :])
        if match and not is_running(int(match.group(1))):
            remove(candidate)
            stale.append(candidate)
    return stale


def is_running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
