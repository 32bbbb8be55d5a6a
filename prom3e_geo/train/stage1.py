"""Stage 1: align a modality encoder to a frozen anchor embedding (TaxaBind's recipe).

For a batch of pairs (x_i, a_i), with f the trainable encoder and a the anchor embeddings (both
L2-normalised), the loss is the symmetric InfoNCE over logits = s * f(x) a^T with a learnable
scale s (initialised at 1/0.07, clamped at 100). When samples carry labels (e.g. species), every
pair sharing a label counts as a positive, so repeated species in a batch are not pushed apart.
Works for any `nn.Module` encoder: the demo CNNs here, or real towers being fine-tuned.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MAX_LOGIT_SCALE = math.log(100.0)


def contrastive_targets(
    labels: torch.Tensor | None, n: int, device: torch.device | str
) -> torch.Tensor:
    """[n, n] target distribution: the diagonal, or uniform over same-label items."""
    if labels is None:
        return torch.eye(n, device=device)
    same = (labels[:, None] == labels[None, :]).float()
    return same / same.sum(dim=1, keepdim=True)


def info_nce(
    a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """Symmetric InfoNCE between L2-normalised [B, D] embeddings (soft targets with labels)."""
    logits = logit_scale.clamp(max=MAX_LOGIT_SCALE).exp() * a @ b.T
    targets = contrastive_targets(labels, a.shape[0], a.device)
    loss_ab = -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    loss_ba = -(targets.T * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
    return (loss_ab + loss_ba) / 2


def align_to_anchor(
    encoder: nn.Module,
    inputs: torch.Tensor,
    anchors: torch.Tensor,
    labels: torch.Tensor | None = None,
    epochs: int = 10,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    on_epoch: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train `encoder` so that normalize(encoder(inputs[i])) matches anchors[i]; returns the mean
    loss per epoch. The anchor is frozen."""
    anchors = F.normalize(anchors.float(), dim=-1)
    logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        emb = F.normalize(encoder(inputs[idx]), dim=-1)
        return info_nce(emb, anchors[idx], logit_scale, None if labels is None else labels[idx])

    encoder.train()
    history = fit_batches(
        [*encoder.parameters(), logit_scale],
        batch_loss,
        inputs.shape[0],
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        seed=seed,
        on_epoch=on_epoch,
    )
    encoder.eval()
    return history


def fit_batches(
    params: list[nn.Parameter],
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    on_epoch: Callable[[int, float], None] | None = None,
) -> list[float]:
    """The stage-1 loop: `epochs` passes over `n` samples in seeded random batches (the last
    partial batch dropped), AdamW on `params` with a cosine schedule over all steps;
    `batch_loss(indices)` gives a batch's loss. Returns the mean loss per epoch."""
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    steps = max(1, n // batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps)
    rng = np.random.default_rng(seed)
    history = []
    for epoch in range(epochs):
        order = torch.from_numpy(rng.permutation(n))
        total = 0.0
        for step in range(steps):
            loss = batch_loss(order[step * batch_size : (step + 1) * batch_size])
            optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            optimizer.step()
            scheduler.step()
            total += loss.item()
        history.append(total / steps)
        if on_epoch:
            on_epoch(epoch, history[-1])
    return history
