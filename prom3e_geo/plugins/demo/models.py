"""The demo world's encoders: small networks trained by `prom3e-geo demo build`.

* image: a small CNN over 32 x 32 photos (the anchor, trained first against species names);
* text: one learned vector per species name (the demo's text tower);
* sat: a small CNN over 32 x 32 patches (strided first block), aligned to the photo anchor;
* env: an MLP over the 4 scaled environment features, aligned to the photo anchor;
* loc: the real GeoCLIP location encoder (frozen, weights from the geoclip wheel) followed by a
  learned MLP head, aligned to the photo anchor.

All are `prom3e_geo.encoders.Encoder`s, so the rest of the toolkit treats them like the real ones.
Weights are stored as one safetensors file (float16) with the species list in its metadata.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from prom3e_geo.encoders.base import Encoder
from prom3e_geo.encoders.clip import load_photo, normalize, patches_to_pixels, stack_patches
from prom3e_geo.encoders.location import LocationEncoder
from prom3e_geo.errors import InputError

DIM = 512
IMAGE_PX = 32


class SmallCNN(nn.Module):
    """Three conv blocks, global average pooling, a linear projection to 512. A `stem_stride` of
    2 makes the first block strided: a quarter of the compute, for the encoder run on every cell."""

    def __init__(self, width: int = 32, dim: int = DIM, stem_stride: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=stem_stride, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1),
            nn.BatchNorm2d(4 * width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.proj = nn.Linear(4 * width, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.proj(self.features(x))
        return out


def mlp(inputs: int, hidden: int = 256, dim: int = DIM) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(inputs, hidden),
        nn.GELU(),
        nn.Linear(hidden, hidden),
        nn.GELU(),
        nn.Linear(hidden, dim),
    )


class DemoNetworks(nn.Module):
    """Every trainable demo encoder part, so one state dict holds them all."""

    def __init__(self, num_species: int, env_features: int = 4) -> None:
        super().__init__()
        self.photo = SmallCNN()
        self.sat = SmallCNN(stem_stride=2)
        self.env = mlp(env_features)
        self.loc_head = mlp(DIM, 512)
        self.text = nn.Embedding(num_species, DIM)


def photo_pixels(images: Sequence[Any]) -> torch.Tensor:
    """Photos (paths, PIL images or uint8 [H, W, 3] arrays) -> normalised [B, 3, 32, 32]."""
    arrays = []
    for item in images:
        if isinstance(item, (str, Path)):
            item = load_photo(item)
        arrays.append(
            np.asarray(item.convert("RGB") if hasattr(item, "convert") else item, dtype=np.uint8)
        )
    if len({a.shape for a in arrays}) == 1:
        return uint8_photos_to_pixels(torch.from_numpy(np.stack(arrays)))
    return torch.cat([uint8_photos_to_pixels(torch.from_numpy(a)[None]) for a in arrays])


def uint8_photos_to_pixels(batch: torch.Tensor, size: int = IMAGE_PX) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> normalised [B, 3, size, size] (antialiased bilinear resize)."""
    rgb = batch.float().div_(255.0).permute(0, 3, 1, 2)
    if rgb.shape[-2:] != (size, size):
        rgb = F.interpolate(
            rgb, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    return normalize(rgb)


class DemoPhotoEncoder(Encoder):
    modality = "image"

    def preprocess(self, raw: Sequence[Any]) -> torch.Tensor:
        return photo_pixels(raw)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.module(batch)
        return out


class DemoSatEncoder(Encoder):
    modality = "sat"

    def preprocess(self, raw: Sequence[Any]) -> torch.Tensor:
        return stack_patches(raw)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.module(patches_to_pixels(batch, IMAGE_PX))
        return out


class DemoEnvEncoder(Encoder):
    modality = "env"

    def preprocess(self, raw: Sequence[Any]) -> torch.Tensor:
        values = np.asarray(raw, dtype=np.float32)
        width = self.module.get_submodule("0").in_features
        if values.ndim != 2 or values.shape[1] != width:
            raise InputError(f"demo environment vectors must be [N, {width}], got {values.shape}")
        return torch.from_numpy(values)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.module(batch)
        return out


class DemoLocEncoder(Encoder):
    """GeoCLIP (real weights, frozen) followed by the demo's learned head."""

    modality = "loc"

    def __init__(self, head: nn.Module, geoclip: LocationEncoder, device: str = "cpu") -> None:
        super().__init__(head, device)
        self.geoclip = geoclip
        self.batch_size = 4096

    def preprocess(self, raw: Sequence[Any]) -> torch.Tensor:
        return self.geoclip.preprocess(raw)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.module(F.normalize(self.geoclip.module(batch), dim=-1))
        return out


class DemoTextEncoder(Encoder):
    """Species names (scientific or common, case-insensitive) -> their learned vectors."""

    modality = "text"

    def __init__(
        self, table: nn.Embedding, species: list[tuple[str, str]], device: str = "cpu"
    ) -> None:
        super().__init__(table, device)
        self.species = species
        self.lookup: dict[str, int] = {}
        for i, (scientific, common) in enumerate(species):
            self.lookup[scientific.lower()] = i
            self.lookup[common.lower()] = i

    def preprocess(self, raw: Sequence[str]) -> torch.Tensor:
        ids = []
        for name in raw:
            key = name.strip().lower()
            if key not in self.lookup:
                close = difflib.get_close_matches(key, list(self.lookup), n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise InputError(f"the demo world has no species {name!r}{hint}")
            ids.append(self.lookup[key])
        return torch.tensor(ids, dtype=torch.long)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.module(batch)
        return out


def save_networks(nets: DemoNetworks, species: list[tuple[str, str]], path: Path) -> None:
    state = {
        k: v.detach().to(torch.float16).contiguous()
        for k, v in nets.state_dict().items()
        if v.is_floating_point()
    }
    state |= {
        k: v.detach().contiguous()
        for k, v in nets.state_dict().items()
        if not v.is_floating_point()
    }
    save_file(
        state, path, metadata={"format": "prom3e-geo/demo-encoders", "species": json.dumps(species)}
    )


def load_networks(path: Path) -> tuple[DemoNetworks, list[tuple[str, str]]]:
    with safe_open(path, framework="pt") as fh:
        species = [tuple(s) for s in json.loads(fh.metadata()["species"])]
    nets = DemoNetworks(len(species))
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(path).items()}
    nets.load_state_dict(state, strict=True)
    return nets.eval(), species


def demo_encoders(
    nets: DemoNetworks, species: list[tuple[str, str]], device: str = "cpu"
) -> dict[str, Encoder]:
    """The five demo encoders, keyed by modality."""
    return {
        "image": DemoPhotoEncoder(nets.photo, device),
        "sat": DemoSatEncoder(nets.sat, device),
        "env": DemoEnvEncoder(nets.env, device),
        "loc": DemoLocEncoder(nets.loc_head, LocationEncoder.load(device=device), device),
        "text": DemoTextEncoder(nets.text, species, device),
    }
