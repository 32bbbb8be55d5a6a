"""Cross-modal retrieval metrics.

Query i's correct item is gallery item i. Ranks come from cosine similarity (inputs are
L2-normalised, so a dot product); rank 1 is the best.
"""

from __future__ import annotations

import torch


def retrieval_ranks(queries: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    """1-based rank of the correct gallery item for every query ([N] long tensor).

    Ties count against the query (an item scoring equal to the correct one ranks above it).
    """
    scores = queries.float() @ gallery.float().T
    correct = scores.diagonal().unsqueeze(1)
    return (scores >= correct).sum(dim=1)


def recall_at_k(ranks: torch.Tensor, ks: tuple[int, ...] = (1, 5, 10)) -> dict[int, float]:
    """Fraction of queries whose correct item ranks within the top k."""
    return {k: float((ranks <= k).float().mean()) for k in ks}
