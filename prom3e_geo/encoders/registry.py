"""Build an encoder from a spec: a registered encoder name, a local path, or a hub id.

Hub ids are `ORG/NAME[@REV]` or `hf-hub:ORG/NAME[@REV]`; only the files its loader reads are
downloaded.

Two registries: `NAMED_ENCODERS` (entry point group `prom3e_geo.encoders`: `geoclip`, and the
demo plug-in's `demo`) build an encoder from a name and a modality; `LOADERS` (group
`prom3e_geo.encoder_loaders`, one per modality) load a modality's encoder from a weights path.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prom3e_geo.encoders.base import Encoder
from prom3e_geo.errors import InputError, WeightsError
from prom3e_geo.hub import MIXIN_FILES, Fetched, fetch_weights, parse_hub_ref
from prom3e_geo.model.prom3e import MODALITIES
from prom3e_geo.registry import Registry

NAMED_ENCODERS: Registry[Callable[[str, str], Encoder]] = Registry("prom3e_geo.encoders", "encoder")
LOADERS: Registry[Callable[[Path, str], Encoder]] = Registry(
    "prom3e_geo.encoder_loaders", "encoder loader"
)


# the files each modality's loader reads from a hub repository: configuration files, then the
# weight-file choices in order of preference (only the first one the repository has is fetched)
_CLIP = (
    ["open_clip_config.json", "config.json", "vocab.json", "merges.txt", "tokenizer_config.json",
     "special_tokens_map.json"],
    [["open_clip_model.safetensors"], ["open_clip_pytorch_model.bin"], ["model.safetensors"],
     ["pytorch_model.bin"]],
)  # fmt: skip
HUB_FILES = {
    "image": _CLIP,
    "text": _CLIP,
    "sat": MIXIN_FILES,
    "loc": MIXIN_FILES,
    "env": MIXIN_FILES,
    "audio": (["config.json", "preprocessor_config.json"], MIXIN_FILES[1]),
}


def build_encoder(
    modality: str,
    spec: str,
    device: str = "cpu",
    preprocessing: object | None = None,
    hint: str | None = None,
) -> Encoder:
    """An encoder for `modality` from `spec` (see the module docstring). `preprocessing` (a
    preset's, for the image, sat and audio towers) is given to the tower as it is built; `hint`
    says what to do when hub files are missing offline."""
    if modality not in MODALITIES:
        raise InputError(f"unknown modality {modality!r} (one of {', '.join(MODALITIES)})")
    if spec in NAMED_ENCODERS:
        return NAMED_ENCODERS.get(spec)(modality, device)
    options = {} if preprocessing is None else {"preprocessing": _fetched(preprocessing, hint)}
    fetched = fetch_encoder(modality, spec, hint)
    if fetched is None:
        path = Path(spec).expanduser()
        if not path.exists():
            raise WeightsError(f"{modality} encoder weights {spec} do not exist")
        return LOADERS.get(modality)(path, device, **options)
    encoder = LOADERS.get(modality)(fetched.path, device, **options)
    encoder.origin = fetched.origin
    return encoder


def fetch_encoder(modality: str, spec: str, hint: str | None = None) -> Fetched | None:
    """The files of a hub encoder spec (downloaded, or from the cache) and the commit they are
    at; None for a registered name or a local path."""
    ref = None if spec in NAMED_ENCODERS else parse_hub_ref(spec)
    if ref is None:
        return None
    configs, choices = HUB_FILES[modality]
    return fetch_weights(ref, configs, choices, f"{modality} encoder", hint)


def _fetched(preprocessing: object, hint: str | None) -> object:
    """Preprocessing whose ClapProcessor repository (`processor`, audio) is a hub id: fetched now,
    with the preset's hint, and named by its folder."""
    from dataclasses import is_dataclass, replace

    processor = getattr(preprocessing, "processor", None)
    ref = parse_hub_ref(processor) if isinstance(processor, str) else None
    if ref is None or not is_dataclass(preprocessing) or isinstance(preprocessing, type):
        return preprocessing
    from prom3e_geo.hub import download_snapshot

    folder = download_snapshot(ref, ["preprocessor_config.json"], "audio processor", hint).path
    return replace(preprocessing, processor=str(folder))
