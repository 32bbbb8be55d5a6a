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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from prom3e_geo.layers.novelty import NoveltyReference
from prom3e_geo.model.prom3e import MODALITIES, ProM3E, visibility


@dataclass
class OodCase:
    """Out-of-distribution samples: [N, M, D] embeddings and the modalities visible in them."""

    values: torch.Tensor
    visible: list[int]


def _outputs(
    model: ProM3E, values: torch.Tensor, visible: Sequence[int]
) -> tuple[np.ndarray, torch.Tensor]:
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


Score = Callable[[torch.Tensor, Sequence[int]], np.ndarray]  # (values, visible) -> per sample


def sigma_score(model: ProM3E) -> Score:
    """The paper's layer: ||sigma||_1."""
    return lambda values, visible: _outputs(model, values, visible)[0]


def novelty_score(reference: NoveltyReference) -> Score:
    """The novelty layer: joint novelty percentile of the visible modalities."""

    def joint(values: torch.Tensor, visible: Sequence[int]) -> np.ndarray:
        return reference.scores({MODALITIES[m]: values[:, m] for m in visible})["joint"]

    return joint


def trust_score(reference: NoveltyReference, calibration: ErrorCalibration, model: ProM3E) -> Score:
    """The trust layer: novelty and the calibrated expected error, combined by
    `NoveltyReference.trust`."""
    expected = calibration.score(model)

    def trust(values: torch.Tensor, visible: Sequence[int]) -> np.ndarray:
        names = [MODALITIES[m] for m in visible]
        joint = reference.scores({n: values[:, m] for n, m in zip(names, visible, strict=True)})
        return reference.trust(
            joint["joint"],
            expected(values, visible),
            names,
            lambda embeddings: expected(_inputs(embeddings, values.shape[1]), visible),
        )

    return trust


def _inputs(embeddings: Mapping[str, torch.Tensor], slots: int) -> torch.Tensor:
    """[N, slots, D] ProM3E inputs from embeddings by modality name (absent slots zero)."""
    first = next(iter(embeddings.values()))
    x = torch.zeros(first.shape[0], slots, first.shape[1])
    for name, value in embeddings.items():
        x[:, MODALITIES.index(name)] = value
    return x


def uncertainty_checks(
    score: Score,
    model: ProM3E,
    values: torch.Tensor,
    labels: np.ndarray | None,
    visible_sets: Mapping[str, list[int]],
    context: Sequence[int],
    cases: Mapping[str, OodCase],
    quantile: float = 0.95,
) -> dict[str, dict[str, Any]]:
    """The three measurements of the module docstring for one uncertainty `score`:

    `error_prediction`: visible set -> Spearman with the `cosine` error and the class `rank`;
    `evidence`: context modality -> share of samples scored lower with all of `context` visible
    than with that modality alone, and `all`, their mean; `ood`: case -> the in-distribution
    `quantile` (`reference`), the case's `median` and its `share_above` the reference."""
    images = values[:, 0].float()
    prediction = {}
    for name, visible in visible_sets.items():
        recon = _outputs(model, values, visible)[1]
        scores = score(values, visible)
        error = 1 - (F.normalize(recon.float(), dim=-1) * F.normalize(images, dim=-1)).sum(1)
        row = {"cosine": float(spearmanr(scores, error.numpy()).statistic)}
        if labels is not None:
            row["rank"] = float(spearmanr(scores, class_ranks(recon, images, labels)).statistic)
        prediction[name] = row
    together = score(values, context)
    evidence = {str(m): float(np.mean(together < score(values, [m]))) for m in context}
    evidence["all"] = float(np.mean(list(evidence.values())))
    ood = {}
    for name, case in cases.items():
        reference = float(np.quantile(score(values, case.visible), quantile))
        scores = score(case.values, case.visible)
        ood[name] = {
            "reference": reference,
            "median": float(np.median(scores)),
            "share_above": float(np.mean(scores > reference)),
        }
    return {"error_prediction": prediction, "evidence": evidence, "ood": ood}


@dataclass
class ErrorCalibration:
    """The calibrated variant of the uncertainty layer: the expected cosine error of the
    reconstructed image embedding, predicted from the latent's log-variance vector by a ridge
    regression fitted on held-out samples over several visible sets.

    Why a variant: trained with the contrastive reconstruction loss and the VIB term, ProM3E's
    sigma measures how much latent noise a reconstruction tolerates, and the KL term pulls it up
    where the decoder is insensitive, which is where one species dominates and the error is
    low. ||sigma||_1 therefore falls where errors rise (negative error prediction on the demo
    world). The direction of the log-variance vector still carries the information; a linear
    read-out fitted to the error recovers it. It is stored beside the model (`save`, `load`)."""

    weight: np.ndarray  # [E]
    bias: float

    @classmethod
    def fit(
        cls, model: ProM3E, values: torch.Tensor, visible_sets: Sequence[list[int]]
    ) -> ErrorCalibration:
        from sklearn.linear_model import RidgeCV

        images = F.normalize(values[:, 0].float(), dim=-1)
        features, errors = [], []
        for visible in visible_sets:
            with torch.no_grad():
                out = model(values.float(), visibility(values.shape[0], visible, values.shape[1]))
            features.append(out.logvar.float().numpy())
            errors.append((1 - (out.recon[:, 0].float() * images).sum(1)).numpy())
        ridge = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(
            np.concatenate(features), np.concatenate(errors)
        )
        return cls(ridge.coef_.astype(np.float32), float(ridge.intercept_))

    def predict(self, logvar: torch.Tensor | np.ndarray) -> np.ndarray:
        """Expected cosine error for [N, E] log-variances."""
        errors: np.ndarray = np.asarray(logvar, dtype=np.float32) @ self.weight + self.bias
        return errors

    def score(self, model: ProM3E) -> Score:
        """The variant's layer: expected error of `model`'s reconstructions."""

        def expected(values: torch.Tensor, visible: Sequence[int]) -> np.ndarray:
            with torch.no_grad():
                out = model(values.float(), visibility(values.shape[0], list(visible)))
            return self.predict(out.logvar.float().numpy())

        return expected

    def save(self, path: str | Path, model_sha256: str = "") -> None:
        from safetensors.numpy import save_file

        save_file(
            {"weight": self.weight, "bias": np.array([self.bias], dtype=np.float32)},
            str(path),
            metadata={"kind": "prom3e-geo error calibration", "model_sha256": model_sha256},
        )

    @classmethod
    def load(cls, path: str | Path, model_sha256: str | None = None) -> ErrorCalibration:
        """A saved calibration; with `model_sha256`, refused unless fitted for that model."""
        from safetensors import SafetensorError, safe_open

        from prom3e_geo.errors import WeightsError

        try:
            with safe_open(str(path), "np") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        except (SafetensorError, OSError) as exc:
            raise WeightsError(f"calibration {path} cannot be read: {exc}") from None
        if meta.get("kind") != "prom3e-geo error calibration" or set(tensors) != {"weight", "bias"}:
            raise WeightsError(f"{path} is not a prom3e-geo error calibration")
        if model_sha256 is not None and meta.get("model_sha256") != model_sha256:
            raise WeightsError(f"calibration {path} was fitted for another model")
        return cls(tensors["weight"], float(tensors["bias"][0]))
