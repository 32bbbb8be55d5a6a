"""Environment encoder (ProM3E's `env` modality) and the raster sampler that feeds it.

The encoder is SINR's residual MLP as TaxaBind uses it: 20 inputs (elevation, then bio1..bio19,
each z-scored), Linear 20 -> 512 + ReLU, then 4 residual layers y = x + ReLU(W2 Dropout(ReLU(W1 x))).
Module names follow SINR (`feats.0`, `feats.{2..5}.w1/.w2`), so SINR / TaxaBind checkpoints load;
SINR's species head (`class_emb`) is not part of the embedding and is ignored.

The sampler reads a WorldClim-style multiband GeoTIFF (or VRT), any CRS, at points: nearest cell,
nodata and NaN -> 0 after standardisation, as TaxaBind does. Raw WorldClim values are z-scored per
band with the raster's own statistics (`standardize=True`, the default); a raster that is already
z-scored (SINR's `bioclim_elevation_scaled`) is passed through with `standardize=False`; the
default (None) decides from the raster's tags: `prepare_worldclim`'s output says it is z-scored.
Only the window covering the requested points is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window
from torch import nn

from prom3e_geo.encoders.base import Encoder
from prom3e_geo.encoders.state_dicts import load_state_dict, mixin_config, select_prefix
from prom3e_geo.errors import InputError
from prom3e_geo.worldclim import ENV_CHANNELS, SCALING_TAG


class ResLayer(nn.Module):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(size, size)
        self.w2 = nn.Linear(size, size)
        self.dropout1 = nn.Dropout()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.w2(self.dropout1(torch.relu(self.w1(x)))))


class EnvironmentNet(nn.Module):
    """SINR's ResidualFCNet feature trunk."""

    def __init__(self, inputs: int = 20, width: int = 512, depth: int = 4) -> None:
        super().__init__()
        self.inputs = inputs
        self.feats = nn.Sequential(
            nn.Linear(inputs, width), nn.ReLU(), *(ResLayer(width) for _ in range(depth))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.feats(x)
        return out


class EnvironmentEncoder(Encoder):
    """[N, 20] z-scored environment vectors -> 512-d embeddings."""

    modality = "env"

    def __init__(self, net: EnvironmentNet, device: str = "cpu", amp: str = "bf16") -> None:
        super().__init__(net, device, amp)
        self.net = net

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", depth: int = 4) -> EnvironmentEncoder:
        """A SINR checkpoint, or a SINR hub folder (`config.json` with `num_inputs`,
        `num_filts`, `depth`: the arguments of SINR's `ResidualFCNet`)."""
        config = mixin_config(path) if Path(path).is_dir() else {}
        try:
            net = EnvironmentNet(
                int(config.get("num_inputs", 20)),
                int(config.get("num_filts", 512)),
                int(config.get("depth", depth)),
            )
        except (TypeError, ValueError) as exc:
            raise InputError(f"environment encoder {path}: bad config.json: {exc}") from None
        state = select_prefix(load_state_dict(path), net.state_dict().keys(), path)
        net.load_state_dict(state, strict=True)
        return cls(net, device)

    def preprocess(self, raw: Sequence[Sequence[float]] | np.ndarray) -> torch.Tensor:
        values = np.asarray(raw, dtype=np.float32)
        inputs = self.net.inputs
        if values.ndim != 2 or values.shape[1] != inputs:
            raise InputError(f"environment vectors must be [N, {inputs}], got {values.shape}")
        return torch.from_numpy(np.nan_to_num(values, nan=0.0))

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(batch)
        return out


class EnvironmentSampler:
    """Nearest-cell values of a multiband raster at lon/lat points (see the module docstring)."""

    def __init__(
        self, path: str | Path, standardize: bool | None = None, bands: int = len(ENV_CHANNELS)
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"environment raster {self.path} does not exist")
        try:
            with rasterio.open(self.path) as ds:
                self.count, self.crs, self.transform = ds.count, ds.crs, ds.transform
                self.shape = (ds.height, ds.width)
                if standardize is None:
                    standardize = SCALING_TAG not in ds.tags()
                stats = ds.stats(approx=False) if standardize else None
        except rasterio.errors.RasterioIOError as exc:
            raise InputError(f"environment raster {self.path} cannot be read: {exc}") from None
        if self.count != bands:
            raise InputError(
                f"environment raster {self.path} has {self.count} bands; expected {bands} "
                f"({', '.join(ENV_CHANNELS[:3])}, ..., bio19)"
            )
        self.mean = np.array([s.mean for s in stats], dtype=np.float64) if stats else None
        self.std = np.array([s.std or 1.0 for s in stats], dtype=np.float64) if stats else None

    def sample(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """[N, bands] float32 values at the points; outside the raster or nodata -> 0."""
        lon, lat = (
            np.asarray(lon, dtype=np.float64).ravel(),
            np.asarray(lat, dtype=np.float64).ravel(),
        )
        x, y = lon, lat
        if self.crs is not None and not self.crs.is_geographic:
            from pyproj import Transformer

            x, y = Transformer.from_crs("EPSG:4326", self.crs.to_wkt(), always_xy=True).transform(
                lon, lat
            )
        inv = ~self.transform
        x, y = np.asarray(x), np.asarray(y)
        col = np.floor(inv.a * x + inv.b * y + inv.c).astype(np.int64)
        row = np.floor(inv.d * x + inv.e * y + inv.f).astype(np.int64)
        inside = (row >= 0) & (row < self.shape[0]) & (col >= 0) & (col < self.shape[1])
        out = np.zeros((lon.size, self.count), dtype=np.float32)
        if not inside.any():
            return out
        r0, r1 = row[inside].min(), row[inside].max() + 1
        c0, c1 = col[inside].min(), col[inside].max() + 1
        with rasterio.open(self.path) as ds:
            window = ds.read(
                window=Window(c0, r0, c1 - c0, r1 - r0), out_dtype="float64", masked=True
            )
        values = window[:, row[inside] - r0, col[inside] - c0].T  # [n_inside, bands], masked
        data = values.filled(np.nan)
        if self.mean is not None:
            data = (data - self.mean) / self.std
        out[inside] = np.nan_to_num(data, nan=0.0)
        return out
