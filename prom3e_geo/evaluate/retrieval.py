"""Cross-modal retrieval metrics.

Query i's correct item is gallery item i. Ranks come from cosine similarity (inputs are
L2-normalised, so a dot product); rank 1 is the best.
"""

from __future__ import annotations

import torch


def retrieval_ranks(
    queries: torch.Tensor, gallery: torch.Tensor, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """1-based rank of the first relevant gallery item for every query ([N] long tensor).

    Without labels, query i's only relevant item is gallery item i; ties count against the query
    (an item scoring equal to the correct one ranks above it). With labels (class-level retrieval,
    as in the metric-learning Recall@K), every gallery item of the query's class is relevant.
    """
    scores = queries.float() @ gallery.float().T
    if labels is None:
        correct = scores.diagonal().unsqueeze(1)
        return (scores >= correct).sum(dim=1)
    relevant = labels[:, None] == labels[None, :]
    best_relevant = scores.masked_fill(~relevant, float("-inf")).max(dim=1, keepdim=True).values
    return (scores.masked_fill(relevant, float("-inf")) >= best_relevant).sum(dim=1) + 1


def recall_at_k(ranks: torch.Tensor, ks: tuple[int, ...] = (1, 5, 10)) -> dict[int, float]:
    """Fraction of queries whose correct item ranks within the top k."""
    return {k: float((ranks <= k).float().mean()) for k in ks}
