"""Evaluation measures against hand-computed values on tiny inputs, and the ica/evaluate CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prom3e_geo.evaluate.classification import linear_probe, ridge_r2, topk_accuracy
from prom3e_geo.evaluate.latent import modality_gap
from prom3e_geo.evaluate.retrieval import hybrid_scores, ranks_from_scores


def test_hybrid_scores_and_ranks_by_hand():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    recon = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    gallery = torch.tensor([[0.6, 0.8], [1.0, 0.0]])
    # delta 0: q @ g.T = [[0.6, 1.0], [0.8, 0.0]] -> query 0's item (0.6) loses to 1.0: rank 2;
    # query 1's item (0.0) loses to 0.8: rank 2
    assert ranks_from_scores(hybrid_scores(q, recon, gallery, 0.0)).tolist() == [2, 2]
    # delta 1: recon @ g.T = [[0.8, 0.0], [0.8, 0.0]] -> ranks 1 and 2
    assert ranks_from_scores(hybrid_scores(q, recon, gallery, 1.0)).tolist() == [1, 2]
    # delta 0.5: [[0.7, 0.5], [0.8, 0.0]]
    s = hybrid_scores(q, recon, gallery, 0.5)
    np.testing.assert_allclose(s.numpy(), [[0.7, 0.5], [0.8, 0.0]], atol=1e-6)


def test_topk_accuracy_by_hand():
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.4, 0.4, 0.2]])
    labels = np.array([0, 1, 1])
    # row 0 correct at rank 1; row 1 rank 2; row 2 tied with class 0 (ties count against): rank 2
    assert topk_accuracy(scores, labels, 1) == pytest.approx(1 / 3)
    assert topk_accuracy(scores, labels, 2) == pytest.approx(1.0)


def test_modality_gap_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # centroid (0.5, 0.5)
    b = torch.tensor([[2.0, 0.0], [2.0, 0.0]])  # normalised: centroid (1, 0)
    assert modality_gap(a, b) == pytest.approx(np.sqrt(0.5**2 + 0.5**2))
    assert modality_gap(a, a) == 0.0


def test_probes_learn_separable_and_linear_targets_but_not_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    labels = (x[:, 0] > 0).astype(int)
    target = 3 * x[:, 1] - x[:, 2]
    train, test = np.arange(300), np.arange(300, 400)
    assert linear_probe(x, labels, train, test) > 0.95
    assert ridge_r2(x, target, train, test) > 0.99
    noise = rng.integers(0, 2, 400)
    assert linear_probe(x, noise, train, test) < 0.7


def test_ica_cli_writes_an_rgb_cog_and_refuses_unknown_tokens(tmp_path, run_cli):
    import rasterio

    store = tmp_path / "cube.zarr"
    r = run_cli("embed", "--aoi", "-110,32,-95,42", "--resolution", "0.5", "--out", store)
    assert r.code == 0, r.err
    out, png = tmp_path / "ica.tif", tmp_path / "ica.png"
    r = run_cli("ica", "--embeddings", store, "--out", out, "--png", png)
    assert r.code == 0, r.err and png.stat().st_size > 0
    with rasterio.open(out) as ds:
        assert ds.descriptions == ("ica_1", "ica_2", "ica_3")
        assert ds.tags(1)["description"].startswith("independent component 1 of mu")
        data = ds.read(masked=True)
    assert data.min() >= 0 and data.max() <= 1 and data.count() > 0
    for band in data:  # each component stretched over the 2-98 % range
        assert np.ma.median(band) > 0.05 and band.max() == 1
    bad = run_cli("ica", "--embeddings", store, "--token", "register", "--out", tmp_path / "b.tif")
    assert bad.code == 2 and "no 'register' embeddings" in bad.err
    missing = run_cli("ica", "--embeddings", tmp_path / "none.zarr", "--out", tmp_path / "c.tif")
    assert missing.code == 2 and "does not exist" in missing.err


def test_demo_evaluation_shows_hybrid_and_hidden_token_gains(tmp_path, run_cli):
    out = tmp_path / "report.md"
    r = run_cli("evaluate", "--n", "1000", "--out", out)
    assert r.code == 0, r.err
    text = out.read_text()
    assert "## Cross-modal retrieval" in text and "## Linear probes" in text
    from prom3e_geo.demo.build import load_demo
    from prom3e_geo.evaluate.report import demo_evaluation_set, evaluate

    demo = load_demo()
    result = evaluate(demo.prom3e.eval(), demo_evaluation_set(demo, 2000))
    mean = {
        (r.query, r.target): {m: np.mean(list(v.values())) for m, v in r.recall.items()}
        for r in result.retrieval
    }
    wins = [
        pair
        for pair, m in mean.items()
        if m["hybrid"] > m["baseline"] and m["hybrid"] > m["reconstruction"]
    ]
    assert wins  # at least one pair where the validation-chosen delta beats both on test
    assert result.probes["hidden"]["temperature R2"] > result.probes["mu"]["temperature R2"]
    assert result.probes["hidden"]["elevation R2"] > result.probes["mu"]["elevation R2"]
