"""Each masking strategy's empirical distribution against its definition."""

from __future__ import annotations

import numpy as np
import pytest

from prom3e_geo.errors import InputError
from prom3e_geo.train.masking import STRATEGIES, corner_weights, make_masking

PRESENT = [0, 1, 2, 3, 4]  # no audio
N = 40_000


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_every_strategy_keeps_one_visible_and_never_shows_absent_audio(name):
    visible = make_masking(name, seed=3).sample(5000, PRESENT).numpy()
    assert visible.shape == (5000, 6)
    assert visible.any(axis=1).all()
    assert not visible[:, 5].any()


def test_prom3e_one_visible_nine_times_in_ten_shared_by_the_batch():
    m = make_masking("prom3e", seed=0)
    counts = []
    for _ in range(3000):
        v = m.sample(8, PRESENT).numpy()
        assert (v == v[0]).all()  # one visible set per batch
        counts.append(v[0].sum())
    counts = np.array(counts)
    assert set(counts) == {1, 2}
    assert (counts == 1).mean() == pytest.approx(0.9, abs=0.02)


def test_constant_masking_rate_including_the_at_least_one_rule():
    v = make_masking("constant", seed=0, q=0.75).sample(N, PRESENT).numpy()[:, :5]
    # visible with prob 0.25, plus 1/5 of the all-masked draws (prob 0.75^5) made visible
    expected = 0.25 + 0.75**5 / 5
    np.testing.assert_allclose(v.mean(axis=0), expected, atol=0.01)


def test_uniform_shares_one_probability_across_modalities():
    p = make_masking("uniform", seed=0).probabilities(N, np.arange(5))
    assert (p == p[:, :1]).all()
    assert p[:, 0].mean() == pytest.approx(0.5, abs=0.01)
    v = make_masking("uniform", seed=0).sample(N, PRESENT).numpy()[:, :5].astype(float)
    assert np.corrcoef(v[:, 0], v[:, 1])[0, 1] > 0.1  # shared u correlates the masks (~0.2)


def test_dirichlet_rows_sum_to_one_with_symmetric_means():
    p = make_masking("dirichlet", seed=0, alpha=1.0).probabilities(N, np.arange(5))
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(p.mean(axis=0), 0.2, atol=0.01)


def test_dropout_drops_whole_modalities():
    p = make_masking("dropout", seed=0, q=0.3).probabilities(N, np.arange(5))
    assert set(np.unique(p)) == {0.0, 1.0}
    np.testing.assert_allclose(p.mean(axis=0), 0.3, atol=0.01)


def test_opm_never_drops_dominated_modalities():
    m = make_masking("opm", seed=0, q=0.5, lam=0.5)
    np.testing.assert_allclose(m.probabilities(N, np.arange(5)).mean(axis=0), 0.5, atol=0.01)
    m.update(np.array([0.8, 0.2, 0.4, 0.4, 0.4, np.nan]), epoch=0)
    s = np.array([0.8, 0.2, 0.4, 0.4, 0.4]) + 1e-3
    rho = np.array([np.mean([s[i] / s[j] for j in range(5) if j != i]) for i in range(5)])
    expected = 0.5 * (1 + 0.5 * np.tanh(rho - 1)) * (rho > 1)
    got = m.probabilities(N, np.arange(5)).mean(axis=0)
    np.testing.assert_allclose(got, expected, atol=0.01)
    assert got[1] == 0.0 and got[0] > 0.5


def test_uniform_hypercube_is_independent_uniform():
    p = make_masking("uniform_hypercube", seed=0).probabilities(N, np.arange(5))
    np.testing.assert_allclose(p.mean(axis=0), 0.5, atol=0.01)
    assert abs(np.corrcoef(p[:, 0], p[:, 1])[0, 1]) < 0.03


def test_corner_weights():
    w3 = corner_weights(3, single_token=True)
    np.testing.assert_allclose(w3, [0.5] + [1 / 12] * 6 + [0.0])
    np.testing.assert_allclose(
        corner_weights(3, single_token=False), [0.25] + [1 / 12] * 6 + [0.25]
    )
    np.testing.assert_allclose(corner_weights(5, single_token=False)[1:-1], 1 / 60)
    assert corner_weights(6).sum() == pytest.approx(1.0)


def test_beta_hypercube_follows_the_corner_weights_and_beta_means():
    kappa = 10.0
    m = make_masking("beta_hypercube", seed=0, kappa=kappa)
    p = m.probabilities(N, np.arange(3))
    corners = (p > 0.5).astype(int) @ np.array([4, 2, 1])  # modality 0 is the first digit
    freq = np.bincount(corners, minlength=8) / N
    np.testing.assert_allclose(freq, corner_weights(3), atol=0.015)
    # mask corner: p ~ Beta(kappa, 1), mean kappa/(kappa+1); keep: Beta(1, kappa), 1/(1+kappa)
    assert p[p > 0.5].mean() == pytest.approx(kappa / (kappa + 1), abs=0.01)
    assert p[p < 0.5].mean() == pytest.approx(1 / (1 + kappa), abs=0.01)


def test_miam_masks_a_dominant_stable_modality_more_than_a_weak_improving_one():
    m = make_masking("miam", seed=0, kappa=10, lam=1.0, window=1, warmup=2)
    before = m.sample(N, PRESENT).numpy()[:, :5].mean(axis=0)
    np.testing.assert_allclose(before, before.mean(), atol=0.015)  # no scores yet: symmetric
    m.update(np.array([0.80, 0.20, 0.5, 0.5, 0.5, np.nan]), epoch=0)
    m.update(np.array([0.80, 0.35, 0.5, 0.5, 0.5, np.nan]), epoch=1)  # 0 stable, 1 improving
    w = m.imbalance_weights(np.arange(5))
    assert w[0] > 1 > w[1]
    visible = m.sample(N, PRESENT).numpy()[:, :5].mean(axis=0)
    assert visible[0] < before[0] - 0.05  # the dominant modality is masked more
    assert visible[1] > before[1] + 0.05  # the weak, improving one is masked less


def test_miam_weights_follow_the_geometric_mean_formula():
    m = make_masking("miam", seed=0, lam=0.5, window=2, warmup=0, eps=1e-3)
    history = [[0.1, 0.2, 0.3], [0.2, 0.3, 0.3], [0.4, 0.35, 0.31]]
    for epoch, s in enumerate(history):
        m.update(np.array(s), epoch)
    s = np.array(history[-1]) + 1e-3
    d = np.abs(np.array(history[-1]) - np.array(history[0])) / 2 + 1e-3
    rho_s, rho_d = s / np.exp(np.log(s).mean()), d / np.exp(np.log(d).mean())
    np.testing.assert_allclose(m.imbalance_weights(np.arange(3)), (rho_s / rho_d) ** 0.5)


def test_state_round_trip_reproduces_the_next_draws():
    a = make_masking("miam", seed=5, warmup=0, window=1)
    a.update(np.array([0.5, 0.4, 0.3, 0.2, 0.1, np.nan]), 0)
    a.update(np.array([0.6, 0.4, 0.3, 0.2, 0.1, np.nan]), 1)
    a.sample(10, PRESENT)
    b = make_masking("miam", seed=99, warmup=0, window=1)  # same recipe, other seed
    b.load_state_dict(a.state_dict())
    assert (a.sample(50, PRESENT) == b.sample(50, PRESENT)).all()


def test_unknown_strategy_or_parameter_is_an_input_error():
    with pytest.raises(InputError, match="unknown masking strategy"):
        make_masking("random")
    with pytest.raises(InputError, match="unknown key 'sharpness' \\(known: kappa, "):
        make_masking("miam", sharpness=3)
    with pytest.raises(InputError, match="kappa: input should be a valid number"):
        make_masking("miam", kappa="sharp")
