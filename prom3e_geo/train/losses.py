"""ProM3E's training objective: contrastive reconstruction + a variational information bottleneck.

For each decoded modality i, predictions P (L2-normalised reconstructions) and targets T:

    logits[j, k] = alpha * ||P_j - T_k||_2 + beta          (alpha init -5, beta init +5)
    recon_i      = mean_j  -log softmax_k(logits[j, :])[j]  (row-wise, positives on the diagonal)

`recon` is the mean over decoded modalities. The VIB term is

    kl = -1/2 mean_{batch, dims}(1 + logvar - mu^2 - exp(logvar))

with mu the L2-normalised [mu] token; it is dropped (with a warning) when it exceeds 1e4, the
released code's guard against explosions. The total is recon + lambda_kl * kl, lambda_kl = 1e-3.

Decoded modalities are those present in the data (audio is neither input nor target when a dataset
has none). By default every present modality is a target, visible ones included; `masked_only`
restricts targets to the modalities a sample did not see. `kind="mse"` replaces the contrastive
term with the squared error summed over dimensions (the early, collapse-prone variant).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

KL_GUARD = 1e4


@dataclass
class LossOutput:
    total: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor
    per_modality: dict[int, torch.Tensor]  # detached, so logging decides when to sync


def contrastive_reconstruction(
    pred: torch.Tensor, target: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor
) -> torch.Tensor:
    """Row-wise cross-entropy over alpha * euclidean distance + beta, diagonal positives."""
    logits = alpha * torch.cdist(pred.float(), target.float()) + beta
    return F.cross_entropy(logits, torch.arange(pred.shape[0], device=pred.device))


def mse_reconstruction(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error summed over dimensions, averaged over samples."""
    return (pred.float() - target.float()).pow(2).sum(dim=-1).mean()


def vib_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) averaged over batch and latent dimensions."""
    mu, logvar = mu.float(), logvar.float()
    return -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())


class ProM3ELoss:
    """The training objective (see the module docstring)."""

    def __init__(
        self, kind: str = "contrastive", lambda_kl: float = 1e-3, masked_only: bool = False
    ) -> None:
        if kind not in ("contrastive", "mse"):
            raise ValueError(f"unknown loss kind {kind!r} (contrastive or mse)")
        self.kind, self.lambda_kl, self.masked_only = kind, lambda_kl, masked_only

    def __call__(
        self,
        recon: torch.Tensor,
        targets: torch.Tensor,
        visible: torch.Tensor,
        present: list[int],
        mu: torch.Tensor,
        logvar: torch.Tensor,
        alpha: torch.Tensor,
        beta: torch.Tensor,
    ) -> LossOutput:
        """recon/targets [B, M, I], visible [B, M], present = modality indices in the data."""
        terms: dict[int, torch.Tensor] = {}
        for i in present:
            rows = ~visible[:, i] if self.masked_only else torch.ones_like(visible[:, i])
            if int(rows.sum()) < (2 if self.kind == "contrastive" else 1):
                continue  # no negatives to contrast with
            pred, target = recon[rows, i], targets[rows, i]
            if self.kind == "contrastive":
                terms[i] = contrastive_reconstruction(pred, target, alpha, beta)
            else:
                terms[i] = mse_reconstruction(pred, target)
        recon_loss = torch.stack(list(terms.values())).mean() if terms else recon.sum() * 0.0
        kl = vib_kl(mu, logvar)
        if kl.item() > KL_GUARD:
            log.warning(
                "KL term %.3g exceeds %.0g; dropping it for this batch", kl.item(), KL_GUARD
            )
            kl = torch.zeros_like(kl)
        total = recon_loss + self.lambda_kl * kl
        per_modality = {i: t.detach() for i, t in terms.items()}
        return LossOutput(total, recon_loss.detach(), kl.detach(), per_modality)
