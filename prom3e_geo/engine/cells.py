"""Cell inference: context modalities at cell centres -> ProM3E latent and reconstructions.

`CellContext` gathers the context modalities of cells (satellite patch -> sat encoder, location ->
loc encoder, environment vector -> env encoder) into the [N, 6, 512] input of ProM3E, and
`infer_cells` runs ProM3E with that visibility, returning what the map layers need: mu,
||sigma||_1 and the reconstructed image embedding (the SDM layer compares it with query photos).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from prom3e_geo.encoders.base import Encoder
from prom3e_geo.errors import InputError
from prom3e_geo.imagery.base import PatchSource
from prom3e_geo.model.prom3e import MODALITIES, ProM3E
from prom3e_geo.runtime import autocast

Environment = Callable[[np.ndarray, np.ndarray], np.ndarray]  # lon, lat -> raw env vectors


@dataclass
class CellContext:
    """Everything needed to embed the context modalities of cells."""

    encoders: Mapping[str, Encoder]
    source: PatchSource | None = None
    environment: Environment | None = None

    def gather(
        self, lon: np.ndarray, lat: np.ndarray, context: Sequence[str]
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Raw inputs per context modality (patch fetches happen here) and each modality's [N]
        validity (a failed patch invalidates only the sat input of its cell)."""
        lon, lat = np.ravel(lon), np.ravel(lat)
        raw: dict[str, Any] = {}
        valid = {}
        for name in context:
            if name not in self.encoders:
                raise InputError(f"no {name} encoder for the context")
            valid[name] = np.ones(lon.size, dtype=bool)
            if name == "sat":
                if self.source is None:
                    raise InputError("the sat context needs an imagery source (--source)")
                batch = self.source.fetch(lon, lat)
                valid[name] = np.asarray(batch.valid, dtype=bool)
                raw[name] = batch.patches[..., :3]  # the encoders see RGB
            elif name == "loc":
                raw[name] = np.c_[lat, lon]
            else:
                if self.environment is None:
                    raise InputError("the env context needs an environment raster (--env-raster)")
                raw[name] = self.environment(lon, lat)
        return raw, valid

    def encode(self, raw: Mapping[str, Any], n: int) -> torch.Tensor:
        """[N, 6, 512] ProM3E input with the gathered modalities encoded, each as one batch."""
        x = torch.zeros(n, len(MODALITIES), 512)
        for name, values in raw.items():
            x[:, MODALITIES.index(name)] = self.encoders[name].embed(values, batch_size=max(n, 1))
        return x

    def embed(
        self, lon: np.ndarray, lat: np.ndarray, context: Sequence[str]
    ) -> tuple[torch.Tensor, np.ndarray]:
        """([N, 6, 512] inputs with the context modalities filled, [N] all-input validity)."""
        raw, valid = self.gather(lon, lat, context)
        n = np.ravel(lon).size
        return self.encode(raw, n), np.logical_and.reduce([np.ones(n, bool), *valid.values()])


@dataclass
class CellOutputs:
    mu: torch.Tensor  # [N, E]
    sigma_l1: torch.Tensor  # [N]
    recon_image: torch.Tensor  # [N, 512], L2-normalised
    logvar: torch.Tensor  # [N, E]


@torch.inference_mode()
def infer_cells(
    model: ProM3E, x: torch.Tensor, context: Sequence[str], precision: str = "float32"
) -> CellOutputs:
    """ProM3E on cell inputs with the context modalities visible (one visibility for all, so masked
    tokens are dropped), readout rows only (`ProM3E.readout`), decoding only the image embedding,
    under `precision` (bf16 or float32)."""
    device = next(model.parameters()).device
    visible = torch.zeros(x.shape[0], x.shape[1], dtype=torch.bool, device=device)
    visible[:, [MODALITIES.index(m) for m in context]] = True
    x = x.to(device, non_blocking=device.type == "cuda")
    with autocast(device, precision):
        mu, logvar = model.readout(x, visible)
        recon = model.decode(mu, [0])[:, 0]
    # unit vectors again in float32: normalised in bf16 their norms are off by up to 0.5%
    return CellOutputs(
        F.normalize(mu.float(), dim=-1).cpu(),
        torch.exp(0.5 * logvar.float()).sum(-1).cpu(),
        F.normalize(recon.float(), dim=-1).cpu(),
        logvar.float().cpu(),
    )
