"""Build an encoder from a spec: a local path, `geoclip` (location), or an online hub id."""

from __future__ import annotations

from pathlib import Path

from prom3e_geo.encoders.base import Encoder
from prom3e_geo.errors import InputError

MODALITIES = ("image", "sat", "loc", "env", "text", "audio")


def build_encoder(
    modality: str, spec: str, device: str = "cpu", tokenizer: str | None = None
) -> Encoder:
    """An encoder for `modality` from `spec` (see the module docstring)."""
    if modality not in MODALITIES:
        raise InputError(f"unknown modality {modality!r} (one of {', '.join(MODALITIES)})")
    if spec == "demo":
        from prom3e_geo.demo.build import load_demo

        encoders = load_demo(device=device).encoders
        if modality not in encoders:
            raise InputError(
                f"the demo world has no {modality} encoder (it has {', '.join(encoders)})"
            )
        return encoders[modality]
    path = _resolve(spec, modality)
    if modality == "loc":
        from prom3e_geo.encoders.location import LocationEncoder

        return LocationEncoder.load(None if spec == "geoclip" else path, device)
    if modality == "env":
        from prom3e_geo.encoders.environment import EnvironmentEncoder

        return EnvironmentEncoder.load(path, device)
    if modality == "sat":
        from prom3e_geo.encoders.clip import SatelliteEncoder

        return SatelliteEncoder.load(path, device)
    if modality == "audio":
        from prom3e_geo.encoders.audio import AudioEncoder

        return AudioEncoder.load(path, device)
    from prom3e_geo.encoders.clip import ImageEncoder, TextEncoder, load_clip_model

    clip = load_clip_model(path)
    if modality == "image":
        return ImageEncoder(clip, device)
    from transformers import CLIPTokenizer

    source = Path(tokenizer) if tokenizer else path
    try:
        tok = CLIPTokenizer.from_pretrained(
            str(source if source.is_dir() else source.parent), local_files_only=True
        )
    except (OSError, ValueError, TypeError):
        raise InputError(
            f"no CLIP tokenizer (vocab.json + merges.txt) in {source}; pass its folder"
        ) from None
    return TextEncoder(clip, tok, device)


def _resolve(spec: str, modality: str) -> Path:
    """A local path for the spec, downloading a hub id when online."""
    if spec == "geoclip" and modality == "loc":
        return Path(spec)
    path = Path(spec).expanduser()
    if path.exists():
        return path
    if "/" in spec and not spec.startswith((".", "/")):
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(spec))
        except Exception as exc:  # offline, unknown id, no access
            raise InputError(
                f"{modality} encoder {spec!r}: not a local path and the hub is unreachable ({type(exc).__name__})"
            ) from None
    raise InputError(f"{modality} encoder weights {spec} do not exist")
