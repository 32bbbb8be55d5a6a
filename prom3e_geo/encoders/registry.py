"""Build an encoder from a spec: a registered encoder name, a local path, or an online hub id.

Two registries: `NAMED_ENCODERS` (entry point group `prom3e_geo.encoders`: `geoclip`, and the
demo plug-in's `demo`) build an encoder from a name and a modality; `LOADERS` (group
`prom3e_geo.encoder_loaders`, one per modality) load a modality's encoder from a weights path.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prom3e_geo.encoders.base import Encoder
from prom3e_geo.errors import InputError, WeightsError
from prom3e_geo.registry import Registry

MODALITIES = ("image", "sat", "loc", "env", "text", "audio")

NAMED_ENCODERS: Registry[Callable[[str, str], Encoder]] = Registry("prom3e_geo.encoders", "encoder")
LOADERS: Registry[Callable[[Path, str], Encoder]] = Registry(
    "prom3e_geo.encoder_loaders", "encoder loader"
)


def build_encoder(modality: str, spec: str, device: str = "cpu") -> Encoder:
    """An encoder for `modality` from `spec` (see the module docstring)."""
    if modality not in MODALITIES:
        raise InputError(f"unknown modality {modality!r} (one of {', '.join(MODALITIES)})")
    if spec in NAMED_ENCODERS:
        return NAMED_ENCODERS.get(spec)(modality, device)
    return LOADERS.get(modality)(_resolve(spec, modality), device)


def _resolve(spec: str, modality: str) -> Path:
    """A local path for the spec, downloading a hub id when online."""
    path = Path(spec).expanduser()
    if path.exists():
        return path
    if "/" in spec and not spec.startswith((".", "/")):
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(spec))
        except Exception as exc:  # offline, unknown id, no access
            raise WeightsError(
                f"{modality} encoder {spec!r}: not a local path and the hub is unreachable ({type(exc).__name__})"
            ) from None
    raise WeightsError(f"{modality} encoder weights {spec} do not exist")
