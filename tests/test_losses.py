"""Loss values on tiny inputs checked by hand."""

from __future__ import annotations

import math

import pytest
import torch

from prom3e_geo.train.losses import ProM3ELoss, contrastive_reconstruction, vib_kl

ALPHA, BETA = torch.tensor(-5.0), torch.tensor(5.0)


def test_contrastive_loss_on_two_orthonormal_pairs():
    e = torch.eye(2)
    # distances: 0 on the diagonal, sqrt(2) off it; logits 5 and 5 - 5 sqrt(2)
    expected = math.log(1 + math.exp(-5 * math.sqrt(2)))
    got = contrastive_reconstruction(e, e, ALPHA, BETA)
    assert got.item() == pytest.approx(expected, abs=1e-7)  # float32 log-softmax


def test_contrastive_loss_is_row_wise_and_blind_to_beta():
    pred = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    target = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    d = torch.cdist(pred, target)
    rows = [-torch.log_softmax(-5 * d[j] + 5, dim=0)[j] for j in range(2)]
    expected = (rows[0] + rows[1]).item() / 2
    assert contrastive_reconstruction(pred, target, ALPHA, BETA).item() == pytest.approx(
        expected, rel=1e-6
    )
    shifted = contrastive_reconstruction(pred, target, ALPHA, torch.tensor(123.0))
    assert shifted.item() == pytest.approx(expected, rel=1e-5)
    # not symmetric: swapping prediction and target changes the value
    assert contrastive_reconstruction(target, pred, ALPHA, BETA).item() != pytest.approx(expected)


def test_kl_of_unit_variance_is_half_the_mean_squared_mu():
    mu = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    assert vib_kl(mu, torch.zeros(3, 8)).item() == pytest.approx(0.5 / 8, rel=1e-6)
    logvar = torch.full((3, 8), math.log(2.0))
    expected = -0.5 * (1 + math.log(2.0) - 1 / 8 - 2.0)
    assert vib_kl(mu, logvar).item() == pytest.approx(expected, rel=1e-6)


def _batch(b=4, m=6, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(b, m, d, generator=g), dim=-1)
    return x, torch.nn.functional.normalize(torch.randn(b, m, d, generator=g), dim=-1)


def test_total_averages_present_modalities_and_adds_weighted_kl():
    recon, targets = _batch()
    visible = torch.zeros(4, 6, dtype=torch.bool)
    visible[:, 1] = True
    mu = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    logvar = torch.zeros(4, 8)
    out = ProM3ELoss()(recon, targets, visible, [0, 1, 2, 3, 4], mu, logvar, ALPHA, BETA)
    per = [contrastive_reconstruction(recon[:, i], targets[:, i], ALPHA, BETA) for i in range(5)]
    assert sorted(out.per_modality) == [0, 1, 2, 3, 4]  # audio (5) absent: not a target
    assert out.recon.item() == pytest.approx(torch.stack(per).mean().item(), rel=1e-6)
    assert out.total.item() == pytest.approx(out.recon.item() + 1e-3 * 0.5 / 8, rel=1e-6)


def test_masked_only_skips_what_a_sample_saw():
    recon, targets = _batch()
    visible = torch.zeros(4, 6, dtype=torch.bool)
    visible[:, 1] = True
    visible[:2, 2] = True  # rows 0-1 saw modality 2, rows 2-3 did not
    out = ProM3ELoss(masked_only=True)(
        recon, targets, visible, [0, 1, 2], torch.zeros(4, 8), torch.zeros(4, 8), ALPHA, BETA
    )
    assert sorted(out.per_modality) == [0, 2]
    expected = contrastive_reconstruction(recon[2:, 2], targets[2:, 2], ALPHA, BETA)
    assert out.per_modality[2].item() == pytest.approx(expected.item(), rel=1e-6)


def test_mse_variant_and_the_kl_guard(caplog):
    recon, targets = _batch()
    visible = torch.ones(4, 6, dtype=torch.bool)
    mse = ProM3ELoss(kind="mse", lambda_kl=0.0)(
        recon, targets, visible, [0], torch.zeros(4, 8), torch.zeros(4, 8), ALPHA, BETA
    )
    assert mse.total.item() == pytest.approx(
        ((recon[:, 0] - targets[:, 0]) ** 2).sum(-1).mean().item(), rel=1e-6
    )
    exploding = torch.full((4, 8), 20.0)  # exp(20) makes the KL astronomically large
    out = ProM3ELoss()(recon, targets, visible, [0, 1], torch.zeros(4, 8), exploding, ALPHA, BETA)
    assert out.kl.item() == 0.0 and "exceeds" in caplog.text
    with pytest.raises(ValueError):
        ProM3ELoss(kind="cosine")
