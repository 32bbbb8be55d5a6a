"""Settings from the environment, read in one place.

The CLI reads them once per command and hands them to the workflows; library callers may build
their own `Settings` (for example another cache folder) or let a workflow read the environment.

| variable            | meaning                                                          |
| ------------------- | ---------------------------------------------------------------- |
| `PROM3E_GEO_CACHE`  | cache folder (default `$XDG_CACHE_HOME/prom3e-geo`, else         |
|                     | `~/.cache/prom3e-geo`): embedding stores built by `sdm`/`uncertainty` |
|                     | and the SHA-256 of observation files already read (`digests/`)    |
| `PROM3E_GEO_DEBUG`  | `1`: the CLI shows the traceback of an internal error            |
| `PROM3E_GEO_PROGRESS_EVERY` | seconds between progress lines in a log (default 10)     |
| `PROM3E_GEO_WORLDCLIM_URL` | where WorldClim 2.1's archives are downloaded from          |
|                     | (default: WorldClim's own server)                                |
| `PROM3E_GEO_MEMORY` | most memory a run may plan to use, e.g. `8G` (default: what the  |
|                     | system and its cgroup have available)                            |

Hub weights follow `huggingface_hub`'s own variables (`HF_HOME`, `HF_ENDPOINT`,
`HF_HUB_OFFLINE`, `HF_TOKEN`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from prom3e_geo.errors import InputError

WORLDCLIM_URL = "https://geodata.ucdavis.edu/climate/worldclim/2_1/base"


@dataclass(frozen=True)
class Settings:
    cache_dir: Path
    debug: bool = False
    progress_every_s: float = 10.0
    worldclim_url: str = WORLDCLIM_URL
    memory_limit: int | None = None  # bytes

    @property
    def digests_dir(self) -> Path:
        """Where the SHA-256 of files already read is remembered (`hashing.KnownDigests`)."""
        return self.cache_dir / "digests"

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        root = env.get("PROM3E_GEO_CACHE") or (
            Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "prom3e-geo"
        )
        return cls(
            cache_dir=Path(root),
            debug=env.get("PROM3E_GEO_DEBUG", "") not in ("", "0"),
            progress_every_s=float(env.get("PROM3E_GEO_PROGRESS_EVERY") or 10.0),
            worldclim_url=env.get("PROM3E_GEO_WORLDCLIM_URL") or WORLDCLIM_URL,
            memory_limit=_bytes(env.get("PROM3E_GEO_MEMORY")),
        )


def _bytes(text: str | None) -> int | None:
    """`800M`, `2G`, `1.5GiB`, `123456` -> bytes (None when unset)."""
    if not text:
        return None
    value = text.strip().upper().removesuffix("IB").removesuffix("B")
    scale = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}.get(value[-1:], 1)
    try:
        return int(float(value[:-1] if scale > 1 else value) * scale)
    except ValueError:
        raise InputError(f"PROM3E_GEO_MEMORY={text!r} is not a size like 8G or 800M") from None
