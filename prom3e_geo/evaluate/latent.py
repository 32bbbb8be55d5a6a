"""The latent space: modality gap and ||sigma||_1 per visible-modality set.

Modality gap (as in the paper's Fig. 9): the distance between the centroids of two sets of
L2-normalised embeddings. `gap_change` compares the gap between ProM3E's reconstructions of two
modalities, decoded from both of them, with the gap when a third modality is visible as well.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from prom3e_geo.model.prom3e import ProM3E, ProM3EOutput, visibility


def modality_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    """|| mean(a) - mean(b) || of the L2-normalised rows of a and b."""
    a, b = F.normalize(a.float(), dim=-1), F.normalize(b.float(), dim=-1)
    return float((a.mean(0) - b.mean(0)).norm())


def _forward(model: ProM3E, values: torch.Tensor, visible: list[int]) -> ProM3EOutput:
    with torch.no_grad():
        out: ProM3EOutput = model(
            values.float(), visibility(values.shape[0], visible, values.shape[1])
        )
    return out


def gap_change(model: ProM3E, values: torch.Tensor, a: int, b: int, third: int) -> dict[str, float]:
    """Gap between a and b: raw embeddings, reconstructions from {a, b}, and from {a, b, third}."""
    two = _forward(model, values, [a, b]).recon
    three = _forward(model, values, [a, b, third]).recon
    return {
        "raw": modality_gap(values[:, a], values[:, b]),
        "recon": modality_gap(two[:, a], two[:, b]),
        "recon_plus_third": modality_gap(three[:, a], three[:, b]),
    }


def sigma_values(model: ProM3E, values: torch.Tensor, visible: list[int]) -> np.ndarray:
    """||sigma||_1 of every sample with `visible` modalities."""
    return _forward(model, values, visible).sigma_l1.numpy()


def extreme_sigma(
    model: ProM3E, values: torch.Tensor, visible: list[int], n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the n least and n most uncertain samples (by ||sigma||_1)."""
    order = np.argsort(sigma_values(model, values, visible), kind="stable")
    return order[:n], order[::-1][:n]
