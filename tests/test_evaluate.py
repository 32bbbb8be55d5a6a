"""Evaluation measures against hand-computed values on tiny inputs, and the ica/evaluate CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prom3e_geo.evaluate.classification import linear_probe, ridge_r2, topk_accuracy
from prom3e_geo.evaluate.latent import modality_gap
from prom3e_geo.evaluate.retrieval import hybrid_scores, ranks_from_scores
from prom3e_geo.model.prom3e import visibility
from tests.helpers import assert_png_shows_a_picture


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
    assert r.code == 0, r.err
    assert_png_shows_a_picture(png)
    with rasterio.open(out) as ds:
        assert ds.descriptions == ("ica_1", "ica_2", "ica_3")
        assert ds.tags(1)["description"].startswith("independent component 1 of mu")
        data = ds.read(masked=True)
    assert data.min() >= 0 and data.max() <= 1 and data.count() > 0
    for band in data:  # each component stretched over the 2-98 % range
        assert np.ma.median(band) > 0.05 and band.max() == 1
    register = tmp_path / "register.tif"
    r = run_cli("ica", "--embeddings", store, "--token", "register:2", "--out", register)
    assert r.code == 0, r.err
    with rasterio.open(register) as ds:
        assert ds.tags(1)["description"].startswith("independent component 1 of register:2")
        assert ds.read(masked=True).count() == data.count()
    bad = run_cli("ica", "--embeddings", store, "--token", "register", "--out", tmp_path / "b.tif")
    assert bad.code == 2 and "no 'register' embeddings" in bad.err
    bad = run_cli(
        "ica", "--embeddings", store, "--token", "register:9", "--out", tmp_path / "b.tif"
    )
    assert bad.code == 2 and "registers 1-4" in bad.err
    missing = run_cli("ica", "--embeddings", tmp_path / "none.zarr", "--out", tmp_path / "c.tif")
    assert missing.code == 2 and "does not exist" in missing.err


class ReconstructionStub(torch.nn.Module):
    """A 'model' whose reconstructions are fixed: isolates the metric from the network."""

    def __init__(self, recon: torch.Tensor) -> None:
        super().__init__()
        self.recon = recon

    def forward(self, values, visible):
        from types import SimpleNamespace

        return SimpleNamespace(recon=self.recon[: values.shape[0]])


def test_zero_shot_by_hand():
    from prom3e_geo.evaluate.classification import zero_shot

    texts = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])  # three class prototypes
    labels = np.array([0, 1, 2, 2])
    values = torch.zeros(4, 6, 2)
    values[:, 4] = texts[labels]
    # reconstructed texts: sample 0 -> class 0 (right), 1 -> closest to class 2 (wrong, 2nd),
    # 2 -> class 2 (right), 3 -> class 0 (wrong: class 2 is 2nd, 0.6 vs 1.0)
    recon = torch.zeros(4, 6, 2)
    recon[:, 4] = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.6, 0.8], [1.0, 0.0]])
    acc = zero_shot(ReconstructionStub(recon), values, [0], labels)
    assert acc[1] == pytest.approx(0.5) and acc[5] == pytest.approx(1.0)


def test_evaluate_file_data_to_html(tmp_path, run_cli):
    """Paired embeddings in a training format + label and target files -> an HTML report."""
    from prom3e_geo.model.checkpoint import save_prom3e
    from prom3e_geo.model.prom3e import ProM3E, ProM3EConfig

    rng = np.random.default_rng(0)
    n, d = 300, 16
    labels = rng.integers(0, 4, n)
    centres = rng.normal(size=(4, d))
    arrays = {}
    for name in ("image", "sat", "loc", "env", "text"):
        x = centres[labels] + 0.3 * rng.normal(size=(n, d)) if name != "text" else centres[labels]
        arrays[name] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    np.savez(tmp_path / "paired.npz", **arrays)
    np.save(tmp_path / "labels.npy", labels)
    np.save(tmp_path / "temperature.npy", centres[labels, 0] + 0.1 * rng.normal(size=n))
    torch.manual_seed(0)
    config = ProM3EConfig(input_dim=d, embed_dim=32, heads=2, mlp_dim=64, depth=1)
    save_prom3e(ProM3E(config), tmp_path / "model.safetensors")
    (tmp_path / "eval.yaml").write_text(
        "model: model.safetensors\ndata: paired.npz\nlabels: labels.npy\n"
        "targets: {temperature: temperature.npy}\nretrieval: [sat->image]\n"
        "probe_features: [mu, hidden]\nprobe_repeats: 2\n"
    )
    out = tmp_path / "report.html"
    r = run_cli("evaluate", "--recipe", tmp_path / "eval.yaml", "--out", out)
    assert r.code == 0, r.err
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<td>sat -&gt; image</td>" in page
    assert "temperature R2" in page and (tmp_path / "report_files" / "sigma.png").is_file()
    again = run_cli("evaluate", "--recipe", tmp_path / "eval.yaml", "--out", out)
    assert again.code == 2 and "exists" in again.err
    (tmp_path / "bad.yaml").write_text(
        "model: model.safetensors\ndata: paired.npz\nlabels: labels.npy\nretrieval: [sat->photo]\n"
    )
    bad = run_cli("evaluate", "--recipe", tmp_path / "bad.yaml", "--out", tmp_path / "b.md")
    assert bad.code == 2 and "unknown modality 'photo'" in bad.err
    np.save(tmp_path / "short.npy", labels[:10])
    (tmp_path / "short.yaml").write_text(
        "model: model.safetensors\ndata: paired.npz\nlabels: short.npy\n"
    )
    short = run_cli("evaluate", "--recipe", tmp_path / "short.yaml", "--out", tmp_path / "c.md")
    assert short.code == 2 and "has 10 values for 300 samples" in short.err
    (tmp_path / "typo.yaml").write_text("nn: 5\n")
    typo = run_cli("evaluate", "--recipe", tmp_path / "typo.yaml", "--out", tmp_path / "d.md")
    assert typo.code == 2 and "unknown key 'nn' (did you mean 'n'?)" in typo.err
    assert not (tmp_path / "b.md").exists() and not (tmp_path / "c.md").exists()


def test_demo_evaluation_shows_hybrid_and_hidden_token_gains():
    """The must-show numbers of docs/evaluation.md, recomputed (same recipe, fewer pairs)."""
    from prom3e_geo.evaluate.measure import evaluate
    from prom3e_geo.recipes import EvaluationRecipe
    from prom3e_geo.workflows.evaluate import load_evaluation

    recipe = EvaluationRecipe(
        retrieval=("sat->env", "loc->env", "env->sat"),
        zero_shot=(),
        probe_features=("mu", "hidden"),
        gaps=(),
        sigma_sets=("loc",),
        extremes=0,
        uncertainty_checks=False,
    )
    model, data, _ = load_evaluation(recipe)
    result = evaluate(model, data, recipe)
    mean = {
        (r.query, r.target): {m: np.mean(list(v.values())) for m, v in r.recall.items()}
        for r in result.retrieval
    }
    wins = [
        pair
        for pair, m in mean.items()
        if m["hybrid"] > m["baseline"] and m["hybrid"] > m["reconstruction"]
    ]
    assert ("sat", "env") in wins  # delta chosen on validation beats both on test
    assert result.probes["hidden"]["temperature R2"] > result.probes["mu"]["temperature R2"]
    assert result.probes["hidden"]["elevation R2"] > result.probes["mu"]["elevation R2"]


def test_class_ranks_and_the_uncertainty_checks_on_constructed_scores():
    """Ranks by hand, and checks whose answers are known: a score equal to the error predicts
    it perfectly, the same score with more modalities is not lower, an out-of-distribution case
    built far above the in-distribution scores is all above its 95th percentile."""
    from prom3e_geo.evaluate.uncertainty import OodCase, class_ranks, uncertainty_checks
    from prom3e_geo.model import ProM3E, ProM3EConfig

    images = torch.eye(3)  # three classes, one image each, orthogonal
    recon = torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.5, 0.0], [0.0, 0.2, 0.1]])
    assert class_ranks(recon, images, np.array([0, 1, 2])).tolist() == [1, 2, 2]

    torch.manual_seed(0)
    model = ProM3E(ProM3EConfig(embed_dim=64, heads=4, mlp_dim=128)).eval()
    values = torch.nn.functional.normalize(torch.randn(200, 6, 512), dim=-1)
    labels = np.arange(200) % 4

    def cosine_error(v, visible):  # the error itself: a perfect predictor
        with torch.no_grad():
            recon = model(v, visibility(len(v), list(visible))).recon[:, 0]
        return (1 - torch.nn.functional.cosine_similarity(recon, v[:, 0])).numpy()

    def offset(v, visible):  # far above every in-distribution sample for the OOD values
        return np.where(v[:, 5, 0].numpy() > 5, 100.0, 0.0) + len(visible)

    checks = uncertainty_checks(cosine_error, model, values, labels, {"sat": [1]}, [1, 2], {})
    assert checks["error_prediction"]["sat"]["cosine"] == pytest.approx(1.0)
    far = values[:20].clone()
    far[:, 5, 0] = 10.0
    checks = uncertainty_checks(offset, model, values, None, {}, [1, 2], {"far": OodCase(far, [1])})
    assert checks["evidence"] == {"1": 0.0, "2": 0.0, "all": 0.0}  # two visible score higher
    assert checks["ood"]["far"]["share_above"] == 1.0


def test_the_report_measures_the_uncertainty_layer_and_saves_the_calibration(tmp_path, run_cli):
    import rasterio

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "n: 600\nretrieval: [sat->env]\nzero_shot: []\nprobe_features: [mu]\ngaps: []\n"
        "sigma_sets: [loc]\nextremes: 0\nsave_calibration: calibration.safetensors\n"
    )
    r = run_cli("evaluate", "--recipe", recipe, "--out", tmp_path / "report.md")
    assert r.code == 0, r.err
    text = (tmp_path / "report.md").read_text()
    assert "Does the uncertainty layer warn where the model errs?" in text
    assert "sigma_l1 (paper)" in text and "expected error (calibrated)" in text
    assert "places in Alaska" in text and "photos of no species" in text
    store = tmp_path / "cube.zarr"
    grid = ["--aoi", "-100,33,-96,36", "--resolution", "0.5"]
    assert run_cli("embed", *grid, "--out", store).code == 0
    out = tmp_path / "u.tif"
    r = run_cli("uncertainty", "--embeddings", store, "--calibration",
                tmp_path / "calibration.safetensors", "--out", out)  # fmt: skip
    assert r.code == 0, r.err
    with rasterio.open(out) as ds:
        assert ds.descriptions == ("sigma_l1", "expected_error")
        sigma, error = ds.read(1), ds.read(2)
    assert np.isfinite(error).sum() == np.isfinite(sigma).sum() > 0
    assert 0 < np.nanmedian(error) < 2  # a cosine error
    r = run_cli("uncertainty", "--embeddings", store, "--calibration", recipe, "--out",
                tmp_path / "v.tif")  # fmt: skip
    assert r.code == 2 and "calibration" in r.err
