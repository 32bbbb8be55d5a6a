"""Cross-modal retrieval: ranks, recall@k, and baseline / reconstruction / hybrid retrieval.

Query i's correct item is gallery item i. Ranks come from cosine similarity (inputs are
L2-normalised, so a dot product); rank 1 is the best.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from prom3e_geo.model.prom3e import ProM3E


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


@dataclass
class RetrievalResult:
    query: str
    target: str
    delta: float  # chosen on the validation split
    recall: dict[str, dict[int, float]]  # method -> {k: recall@k} on the test split
    median_rank: dict[str, float]


def reconstruct(
    model: ProM3E, values: torch.Tensor, visible: list[int], batch: int = 1024
) -> torch.Tensor:
    """ProM3E's deterministic reconstructions [N, M, D] of every modality from `visible`."""
    from prom3e_geo.model.prom3e import visibility

    outs = []
    with torch.no_grad():
        for start in range(0, values.shape[0], batch):
            part = values[start : start + batch]
            outs.append(model(part, visibility(part.shape[0], visible, part.shape[1])).recon)
    return torch.cat(outs)


def hybrid_scores(
    query: torch.Tensor, recon: torch.Tensor, gallery: torch.Tensor, delta: float
) -> torch.Tensor:
    """(1 - delta) cos(f_q, f_t) + delta cos(f^_t(q), f_t) for every query x gallery pair."""
    return (1 - delta) * (query @ gallery.T) + delta * (recon @ gallery.T)


def ranks_from_scores(scores: torch.Tensor) -> torch.Tensor:
    """1-based rank of the diagonal (query i's item is gallery item i); ties count against."""
    return (scores >= scores.diagonal().unsqueeze(1)).sum(dim=1)


def cross_modal_retrieval(
    values: torch.Tensor,
    recon: torch.Tensor,
    query: int,
    target: int,
    val_index: np.ndarray,
    test_index: np.ndarray,
    deltas: tuple[float, ...] = tuple(np.round(np.linspace(0, 1, 11), 2)),
    ks: tuple[int, ...] = (1, 5, 10),
) -> RetrievalResult:
    """Baseline (raw embeddings), reconstruction-only and hybrid retrieval of modality `target`
    from modality `query`, given `recon` = `reconstruct(model, values, [query])` (shared by every
    target of one query); delta maximises mean recall@k on the validation split, and every
    method is scored on the test split (each split is its own gallery)."""
    from prom3e_geo.model.prom3e import MODALITIES

    values = values.float()
    recon = recon[:, target]

    def ranks(index: np.ndarray, delta: float) -> torch.Tensor:
        i = torch.as_tensor(index)
        return ranks_from_scores(
            hybrid_scores(values[i, query], recon[i], values[i, target], delta)
        )

    def score(index: np.ndarray, delta: float) -> float:
        return float(np.mean(list(recall_at_k(ranks(index, delta), ks).values())))

    best = max(deltas, key=lambda d: score(val_index, d))  # the smallest delta on ties
    methods = {"baseline": 0.0, "reconstruction": 1.0, "hybrid": float(best)}
    test_ranks = {name: ranks(test_index, d) for name, d in methods.items()}
    return RetrievalResult(
        MODALITIES[query],
        MODALITIES[target],
        float(best),
        {name: recall_at_k(r, ks) for name, r in test_ranks.items()},
        {name: float(r.float().median()) for name, r in test_ranks.items()},
    )
