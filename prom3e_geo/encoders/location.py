"""Location encoder: the GeoCLIP architecture, as TaxaBind uses it for ProM3E's `loc` modality.

Input (lat, lon) in degrees -> Equal Earth projection (scaled by SF / 180) -> three capsules, each
random Fourier features (fixed matrix b [256, 2], sigma 2^0, 2^4, 2^8: [cos 2 pi v b^T,
sin 2 pi v b^T]) -> MLP 512 -> 1024 -> 1024 -> 1024 (ReLU) -> head 1024 -> 512; the three heads
are summed. Module names match GeoCLIP's (`LocEnc{i}.capsule.{0,1,3,5}`, `LocEnc{i}.head.0`), so
its released weights load strictly.

Weights: the `geoclip` wheel ships `model/weights/location_encoder_weights.pth` (MIT licence);
it is located without importing the package, whose import pulls in torchvision. A TaxaBind
location checkpoint (any prefix, optionally under `state_dict`) loads the same way. A hub folder
(`MVRL/ecogeo`, saved by rshf's `GeoCLIP` through `PyTorchModelHubMixin`) has a `config.json` with
the architecture (`sigma`, `input_size`, `encoded_size`, `dim`; published: sigma [1, 16, 256],
2, 256, 512): it is read, and settings the architecture does not consume are refused.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prom3e_geo.encoders.base import Encoder
from prom3e_geo.encoders.state_dicts import load_state_dict, mixin_config, select_prefix
from prom3e_geo.errors import InputError, WeightsError

A1, A2, A3, A4 = 1.340264, -0.081106, 0.000893, 0.003796
SF = 66.50336
SIGMAS = (2.0**0, 2.0**4, 2.0**8)


def equal_earth(latlon: torch.Tensor) -> torch.Tensor:
    """Equal Earth projection of (lat, lon) degrees, scaled by SF / 180 as GeoCLIP does.

    Evaluated in float32 in the plain power form so that the result is bit-identical to the
    released GeoCLIP model's input.
    """
    lat, lon = torch.deg2rad(latlon[:, 0]), torch.deg2rad(latlon[:, 1])
    sqrt3 = torch.sqrt(torch.tensor(3.0))
    theta = torch.asin(sqrt3 / 2 * torch.sin(lat))
    denominator = 3 * (9 * A4 * theta**8 + 7 * A3 * theta**6 + 3 * A2 * theta**2 + A1)
    x = (2 * sqrt3 * lon * torch.cos(theta)) / denominator
    y = A4 * theta**9 + A3 * theta**7 + A2 * theta**3 + A1 * theta
    return (torch.stack((x, y), dim=1) * SF) / 180


# rshf `GeoCLIPConfig` fields and what this architecture accepts for them
CONFIG_KEYS = ("sigma", "input_size", "encoded_size", "dim")
CONFIG_IGNORED = ("transformers_version",)  # written by the saver, no architecture


class FourierFeatures(nn.Module):
    """[cos(2 pi v b^T), sin(2 pi v b^T)] with a fixed Gaussian matrix b (a buffer)."""

    b: torch.Tensor  # [features, inputs] random frequencies (a buffer: saved, not trained)

    def __init__(self, sigma: float, inputs: int = 2, features: int = 256) -> None:
        super().__init__()
        self.register_buffer("b", torch.randn(features, inputs) * sigma)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        # float32 whatever the autocast: at sigma 2^8 the phases reach thousands of radians, and
        # a bf16 product (8-bit mantissa) would turn cos/sin into noise
        with torch.autocast(v.device.type, enabled=False):
            vp = 2 * math.pi * v.float() @ self.b.T
            return torch.cat([torch.cos(vp), torch.sin(vp)], dim=-1)


class LocationCapsule(nn.Module):
    def __init__(self, sigma: float, encoded_size: int = 256, dim: int = 512) -> None:
        super().__init__()
        self.capsule = nn.Sequential(
            FourierFeatures(sigma, features=encoded_size),
            nn.Linear(2 * encoded_size, 2 * dim),
            nn.ReLU(),
            nn.Linear(2 * dim, 2 * dim),
            nn.ReLU(),
            nn.Linear(2 * dim, 2 * dim),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Linear(2 * dim, dim))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.capsule(v))
        return out


class LocationNet(nn.Module):
    """GeoCLIP's LocationEncoder: one capsule per sigma (2^0, 2^4, 2^8 by default), summed."""

    def __init__(
        self, sigmas: Sequence[float] = SIGMAS, encoded_size: int = 256, dim: int = 512
    ) -> None:
        super().__init__()
        self.count = len(sigmas)
        for i, sigma in enumerate(sigmas):
            self.add_module(f"LocEnc{i}", LocationCapsule(float(sigma), encoded_size, dim))

    def forward(self, latlon: torch.Tensor) -> torch.Tensor:
        v = equal_earth(latlon.float())
        capsules = [self.get_submodule(f"LocEnc{i}") for i in range(self.count)]
        out: torch.Tensor = capsules[0](v)
        for capsule in capsules[1:]:
            out = out + capsule(v)
        return out


def net_from_config(config: dict[str, Any], path: Path) -> LocationNet:
    """The architecture a GeoCLIP `config.json` describes; settings it cannot honour refused."""
    config = config.get("config", config) if isinstance(config.get("config"), dict) else config
    unknown = sorted(set(config) - set(CONFIG_KEYS) - set(CONFIG_IGNORED))
    if unknown:
        raise WeightsError(
            f"location encoder {path}: config.json sets {', '.join(unknown)}, which the GeoCLIP "
            f"architecture does not have (it takes {', '.join(CONFIG_KEYS)})"
        )
    sigmas = config.get("sigma", list(SIGMAS))
    try:
        sigmas = [float(s) for s in sigmas]
        encoded, dim = int(config.get("encoded_size", 256)), int(config.get("dim", 512))
        inputs = int(config.get("input_size", 2))
    except (TypeError, ValueError):
        raise WeightsError(
            f"location encoder {path}: config.json has non-numeric settings"
        ) from None
    if not sigmas or min(sigmas) <= 0 or encoded <= 0:
        raise WeightsError(
            f"location encoder {path}: config.json needs positive sigma and encoded_size"
        )
    if inputs != 2:
        raise WeightsError(
            f"location encoder {path}: input_size {inputs}; the encoder takes 2 (the Equal Earth "
            "projection of lat, lon)"
        )
    if dim != 512:
        raise WeightsError(f"location encoder {path}: dim {dim}; ProM3E takes 512-d embeddings")
    return LocationNet(sigmas, encoded, dim)


def geoclip_weights_path() -> Path:
    """The weights file inside the installed `geoclip` wheel (the package is not imported)."""
    spec = importlib.util.find_spec("geoclip")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("the geoclip wheel is not installed: pip install --no-deps geoclip==1.3.0")
    path = (
        Path(spec.submodule_search_locations[0])
        / "model"
        / "weights"
        / "location_encoder_weights.pth"
    )
    if not path.is_file():
        raise InputError(f"the geoclip wheel has no location weights at {path}")
    return path


class LocationEncoder(Encoder):
    """(lat, lon) degrees -> 512-d embeddings."""

    modality = "loc"

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "cpu") -> LocationEncoder:
        """GeoCLIP weights from the wheel (path None), a TaxaBind location checkpoint, or a hub
        folder whose `config.json` sets the architecture."""
        path = Path(path) if path is not None else geoclip_weights_path()
        net = net_from_config(mixin_config(path), path) if path.is_dir() else LocationNet()
        stored = load_state_dict(path)
        if path.is_dir() and (extra := sorted(set(stored) - set(net.state_dict()))):
            raise WeightsError(
                f"location encoder {path}: the weights hold {', '.join(extra[:3])}"
                f"{' ...' if len(extra) > 3 else ''}, which the architecture its config.json "
                "describes does not consume"
            )
        state = select_prefix(stored, net.state_dict().keys(), path)
        net.load_state_dict(state, strict=True)
        return cls(net, device)

    def preprocess(self, raw: Sequence[Sequence[float]] | np.ndarray) -> torch.Tensor:
        latlon = torch.as_tensor(np.asarray(raw, dtype=np.float64), dtype=torch.float32).reshape(
            -1, 2
        )
        bad = ~((latlon[:, 0].abs() <= 90) & (latlon[:, 1].abs() <= 180))
        if bool(bad.any()):
            raise InputError(
                f"{int(bad.sum())} location(s) outside lat [-90, 90] / lon [-180, 180]"
            )
        return latlon

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.module(batch)
        return out


def geoclip_encoder(modality: str, device: str = "cpu") -> LocationEncoder:
    """The registered encoder `geoclip`: GeoCLIP's location weights from the installed wheel."""
    if modality != "loc":
        raise InputError(f"geoclip is a location encoder, not a {modality} encoder")
    return LocationEncoder.load(None, device)
