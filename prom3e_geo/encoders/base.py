"""The encoder protocol: raw inputs of one modality -> L2-normalised 512-d embeddings.

An encoder has a `modality` (one of the ProM3E modalities), `preprocess` (raw inputs -> a tensor
batch on the CPU) and `encode` (that batch -> [B, D] L2-normalised, on the encoder's device).
`embed` runs both over any number of inputs in batches of `batch_size`, in inference mode, with
`amp` autocast: the constructor's amp (bf16 by default) applies on CUDA and a CPU encoder runs in
float32, as in training; the grid pipeline sets `amp` from its `--precision`. Subnormal weights
are set to zero (`runtime.flush_subnormals_`): they slow CPU matrix products several-fold. On
CUDA a batch goes to the GPU through a page-locked staging buffer that the encoder keeps (pinning
a fresh buffer per batch costs more than the copy it speeds up).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from prom3e_geo.runtime import autocast, flush_subnormals_, resolve_device


class Encoder(ABC):
    """A frozen modality encoder (see the module docstring)."""

    modality: str = ""
    dim: int = 512
    origin: str | None = None  # ORG/NAME@COMMIT when the weights came from the hub

    def __init__(
        self, module: torch.nn.Module, device: str | torch.device = "cpu", amp: str = "bf16"
    ) -> None:
        self.device = resolve_device(device)
        self.amp = amp if self.device.type == "cuda" else "none"
        self.module = flush_subnormals_(module.to(self.device).eval().requires_grad_(False))
        self.batch_size = 256
        self._staging = PinnedStaging() if self.device.type == "cuda" else None

    @abstractmethod
    def preprocess(self, raw: Sequence[Any]) -> torch.Tensor | dict[str, torch.Tensor]:
        """Raw inputs (paths, arrays, coordinates, strings...) -> a CPU batch."""

    @abstractmethod
    def forward(self, batch: Any) -> torch.Tensor:
        """A device batch -> unnormalised [B, D] features."""

    @torch.inference_mode()
    def encode(self, batch: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        """A preprocessed batch -> [B, D] L2-normalised float32 embeddings on the device."""
        batch = self._to_device(batch)
        with autocast(self.device, self.amp):
            features = self.forward(batch)
        return F.normalize(features.float(), dim=-1)

    def embed(self, raw: Sequence[Any], batch_size: int | None = None) -> torch.Tensor:
        """Preprocess and encode inputs in batches; returns [N, D] float32 on the CPU."""
        size = batch_size or self.batch_size
        parts = [
            self.encode(self.preprocess(raw[i : i + size])).cpu() for i in range(0, len(raw), size)
        ]
        return torch.cat(parts) if parts else torch.empty(0, self.dim)

    def _to_device(self, batch: Any) -> Any:
        if isinstance(batch, dict):
            return {k: self._to_device(v) for k, v in batch.items()}
        if self._staging is not None and batch.device.type == "cpu":
            return self._staging.to_device(batch, self.device)
        return batch.to(self.device)


class PinnedStaging:
    """A reusable page-locked host buffer for asynchronous host-to-device copies: a batch is
    copied into it and sent with `non_blocking=True`; the next batch waits for that copy to
    finish before it overwrites the buffer. The buffer grows to the largest batch seen."""

    def __init__(self) -> None:
        self.buffer: torch.Tensor | None = None
        self.sent: torch.cuda.Event | None = None

    def to_device(self, tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
        if self.sent is not None:
            self.sent.synchronize()
        nbytes = tensor.numel() * tensor.element_size()
        if self.buffer is None or self.buffer.numel() < nbytes:
            self.buffer = torch.empty(nbytes, dtype=torch.uint8).pin_memory()
        staged = self.buffer[:nbytes].view(tensor.dtype).view(tensor.shape)
        staged.copy_(tensor)
        out = staged.to(device, non_blocking=True)
        self.sent = torch.cuda.Event()  # type: ignore[no-untyped-call]  # torch leaves Event.__init__ unannotated
        self.sent.record(torch.cuda.current_stream(device))
        return out
