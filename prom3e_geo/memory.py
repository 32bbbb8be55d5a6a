"""Memory a run will need, checked before it starts.

A grid or a smoothing kernel too large for the machine used to end, after seconds or minutes,
in a `MemoryError` or the kernel's out-of-memory killer. Commands estimate what they will
allocate from the grid shape (bytes per cell, measured) and refuse up front, with the estimate
and the option to change, what cannot fit in the memory available: the system's available
memory, the cgroup's limit when the process runs in one (a container), and `PROM3E_GEO_MEMORY`
when it is set.
"""

from __future__ import annotations

from pathlib import Path

from prom3e_geo.errors import InputError
from prom3e_geo.settings import Settings

CGROUP = Path("/sys/fs/cgroup")


def available_memory(limit: int | None = None) -> int:
    """Bytes this process can still allocate: the system's available memory, within the
    cgroup v2 limit (if any) and `limit` (if given)."""
    import psutil

    available = psutil.virtual_memory().available
    try:
        cap = (CGROUP / "memory.max").read_text().strip()
        used = int((CGROUP / "memory.current").read_text())
        if cap != "max":
            available = min(available, int(cap) - used)
    except (OSError, ValueError):
        pass  # no cgroup v2 limit visible
    return max(0, min(available, limit) if limit is not None else available)


def check_memory(need: float, what: str, advice: str, settings: Settings | None = None) -> None:
    """Refuse (`InputError`) a run estimated to need `need` bytes when they are not available;
    `what` names the run and `advice` says which option to change."""
    settings = settings or Settings.from_environment()
    available = available_memory(settings.memory_limit)
    if need > available:
        raise InputError(
            f"{what} needs about {_size(need)} of memory and {_size(available)} is available; "
            f"{advice}"
        )


def _size(n: float) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 2**10:.0f} KB"
