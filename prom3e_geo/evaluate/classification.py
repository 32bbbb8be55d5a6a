"""Zero-shot classification and linear probes on ProM3E features.

Zero-shot: the text embedding reconstructed from the visible modalities is compared with the
class text embeddings (the distinct text embeddings of the data, as the official evaluation);
top-1 / top-5 accuracy.

Linear probes: features from one forward pass with the given visible modalities, of a kind:
`recon` (the reconstructions of the visible modalities, concatenated), `mu`, `modality` (the
visible modality tokens), `register` (the register tokens) or `hidden` (every hidden token:
[mu], [logvar], registers, visible modality tokens, flattened; the paper's best). Features are
MinMax-scaled on the training split; classes by `RidgeClassifierCV(alphas=(0.1, 1, 10))`
(accuracy), continuous targets by `RidgeCV` (R^2 on the test split).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import RidgeClassifierCV, RidgeCV
from sklearn.preprocessing import MinMaxScaler

from prom3e_geo.model.prom3e import ProM3E, visibility

FEATURE_KINDS = ("recon", "mu", "modality", "register", "hidden")
ALPHAS = (0.1, 1.0, 10.0)


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose label is among the k highest scores (ties count against)."""
    scores = np.asarray(scores, dtype=float)
    correct = scores[np.arange(len(labels)), labels][:, None]
    return float(((scores >= correct).sum(axis=1) <= k).mean())


def zero_shot(
    model: ProM3E, values: torch.Tensor, visible: list[int], labels: np.ndarray, text: int = 4
) -> dict[int, float]:
    """Top-1/top-5 accuracy of the reconstructed text embedding against the class texts."""
    from prom3e_geo.evaluate.retrieval import reconstruct

    classes, first = np.unique(labels, return_index=True)
    prototypes = torch.nn.functional.normalize(values[first, text].float(), dim=-1)
    predicted = reconstruct(model, values.float(), visible)[:, text]
    scores = (predicted @ prototypes.T).numpy()
    index = np.searchsorted(classes, labels)
    return {k: topk_accuracy(scores, index, k) for k in (1, 5)}


def probe_features(
    model: ProM3E,
    values: torch.Tensor,
    visible: list[int],
    kinds: Sequence[str] = FEATURE_KINDS,
    batch: int = 1024,
) -> dict[str, np.ndarray]:
    """[N, F] features of each kind (see the module docstring), from one pass of the model."""
    unknown = [k for k in kinds if k not in FEATURE_KINDS]
    if unknown:
        raise ValueError(f"unknown feature kind {unknown[0]!r} (use {', '.join(FEATURE_KINDS)})")
    prefix = model.num_prefix_tokens
    tokens = {
        "mu": [0],
        "register": list(range(2, prefix)),
        "modality": [prefix + m for m in visible],
        "hidden": [*range(prefix), *(prefix + m for m in visible)],
    }
    out: dict[str, list[np.ndarray]] = {k: [] for k in kinds}
    with torch.no_grad():
        for start in range(0, values.shape[0], batch):
            part = values[start : start + batch].float()
            result = model(part, visibility(part.shape[0], visible, part.shape[1]))
            for kind in kinds:
                if kind == "recon":
                    feats = result.recon[:, visible]
                elif kind == "mu":
                    feats = result.mu[:, None]
                else:
                    feats = result.hidden[:, tokens[kind]]
                out[kind].append(feats.reshape(part.shape[0], -1).float().numpy())
    return {kind: np.concatenate(parts) for kind, parts in out.items()}


def linear_probe(
    features: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray
) -> float:
    """Test accuracy of a MinMax + RidgeClassifierCV probe fitted on `train`."""
    return _fit_score(RidgeClassifierCV(alphas=ALPHAS), features, labels, train, test)


def ridge_r2(
    features: np.ndarray, target: np.ndarray, train: np.ndarray, test: np.ndarray
) -> float:
    """Test R^2 of a MinMax + RidgeCV regression fitted on `train`."""
    return _fit_score(RidgeCV(alphas=ALPHAS), features, target, train, test)


def _fit_score(
    estimator: Any, features: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray
) -> float:
    """Scale to [0, 1] on the training rows, fit, and score on the test rows."""
    scaler = MinMaxScaler().fit(features[train])
    estimator.fit(scaler.transform(features[train]), y[train])
    return float(estimator.score(scaler.transform(features[test]), y[test]))
