"""Does ||sigma||_1 say where to distrust the model? Three measurements on held-out samples.

* Error prediction: Spearman between a sample's ||sigma||_1 and its reconstruction error, per
  visible set: the rank of its true class among all classes by the reconstructed image
  embedding (classes as the mean image embedding of their samples), and the cosine error
  1 - cos(reconstructed image, its own image embedding). A useful layer gives positive values.
* More evidence, less uncertainty (the supplement's Figs. 7-8): the share of samples whose
  ||sigma||_1 with every context modality visible is below their ||sigma||_1 with one of them.
* Out of distribution: the share of out-of-distribution inputs (`OodCase`: cloud-covered
  patches, places outside the world, a photo of no species, ...) whose ||sigma||_1 is above the
  95th percentile of in-distribution samples with the same visible modalities.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from prom3e_geo.model.prom3e import visibility


@dataclass
class OodCase:
    """Out-of-distribution samples: [N, M, D] embeddings and the modalities visible in them."""

    values: torch.Tensor
    visible: list[int]


def _outputs(model, values: torch.Tensor, visible: Sequence[int]):
    with torch.no_grad():
        out = model(values.float(), visibility(values.shape[0], list(visible), values.shape[1]))
    return out.sigma_l1.numpy(), out.recon[:, 0]


def class_ranks(recon: torch.Tensor, images: torch.Tensor, labels: np.ndarray) -> np.ndarray:
    """1-based rank of each sample's true class among all classes, by the cosine of its
    reconstructed image embedding with each class's mean image embedding."""
    classes = np.unique(labels)
    index = torch.from_numpy(np.searchsorted(classes, labels))
    prototypes = torch.stack([images[torch.from_numpy(labels == c)].mean(0) for c in classes])
    scores = F.normalize(recon.float(), dim=-1) @ F.normalize(prototypes.float(), dim=-1).T
    own = scores.gather(1, index[:, None])
    return (scores > own).sum(1).numpy() + 1


def error_prediction(
    model, values: torch.Tensor, labels: np.ndarray | None, visible_sets: Mapping[str, list[int]]
) -> dict[str, dict[str, float]]:
    """Spearman of ||sigma||_1 with the class rank (when labels exist) and the cosine error of
    the reconstructed image embedding, per visible set (the image itself never visible)."""
    images = values[:, 0].float()
    out = {}
    for name, visible in visible_sets.items():
        sigma, recon = _outputs(model, values, visible)
        cosine_error = 1 - (F.normalize(recon.float(), dim=-1) * F.normalize(images, dim=-1)).sum(1)
        row = {"cosine": float(spearmanr(sigma, cosine_error.numpy()).statistic)}
        if labels is not None:
            row["rank"] = float(spearmanr(sigma, class_ranks(recon, images, labels)).statistic)
        out[name] = row
    return out


def evidence(model, values: torch.Tensor, context: Sequence[int]) -> dict[str, float]:
    """Share of samples whose ||sigma||_1 with all of `context` visible is below their
    ||sigma||_1 with each single context modality (keys: the modality index as text), and
    `all`: the share over every (sample, single modality) pair."""
    together, _ = _outputs(model, values, context)
    shares = {str(m): float(np.mean(together < _outputs(model, values, [m])[0])) for m in context}
    shares["all"] = float(np.mean(list(shares.values())))
    return shares


def ood_shares(
    model, values: torch.Tensor, cases: Mapping[str, OodCase], quantile: float = 0.95
) -> dict[str, dict[str, float]]:
    """For each case: the in-distribution `quantile` of ||sigma||_1 with the case's visible
    modalities, the case's median, and the share of its samples above that quantile."""
    out = {}
    for name, case in cases.items():
        reference = np.quantile(_outputs(model, values, case.visible)[0], quantile)
        sigma = _outputs(model, case.values, case.visible)[0]
        out[name] = {
            "reference": float(reference),
            "median": float(np.median(sigma)),
            "share_above": float(np.mean(sigma > reference)),
        }
    return out
