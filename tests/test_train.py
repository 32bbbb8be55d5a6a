"""Stage-2 training: convergence on a known shared latent, exact resume, data formats, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prom3e_geo.errors import InputError
from prom3e_geo.model.checkpoint import load_prom3e
from prom3e_geo.recipes import TrainRecipe, load_recipe, parse_recipe
from prom3e_geo.train.data import from_arrays, load_embeddings
from prom3e_geo.train.stage2 import Stage2Trainer

NAMES = ["image", "sat", "loc", "env", "text"]


def paired_arrays(n=1500, dim=32, latent=8, noise=0.3, seed=0):
    """Five modalities, each a different nonlinear view of one shared latent plus noise."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, latent))
    return {
        m: np.tanh(z @ rng.normal(size=(latent, dim))) + noise * rng.normal(size=(n, dim))
        for m in NAMES
    }


def tiny_recipe(**overrides):
    data = {
        "model": {
            "input_dim": 32,
            "embed_dim": 64,
            "heads": 4,
            "mlp_dim": 128,
            "num_register_tokens": 2,
        },
        "optim": {"lr": 1e-3, "t0_epochs": 50},
        "train": {"epochs": 4, "batch_size": 128, "val_fraction": 0.2, "val_batch": 300, "seed": 1},
    }
    for key, value in overrides.items():
        data[key] = {**data.get(key, {}), **value}
    return parse_recipe(TrainRecipe, data, "<test>")


@pytest.fixture(scope="module")
def dataset():
    return from_arrays(paired_arrays(), "synthetic")


@pytest.mark.slow
def test_training_lowers_the_loss_and_retrieves_far_above_chance(dataset, tmp_path):
    # measured: recall@1 167x chance after 25 epochs (0.56); threshold 100x
    recipe = tiny_recipe(train={"epochs": 25, "batch_size": 64})
    history = Stage2Trainer(recipe, [dataset], tmp_path / "run", device="cpu").fit()
    first, last = history[0], history[-1]
    assert last["val_loss"] < first["val_loss"] - 0.5
    chance = 1 / 300  # recall@1 among 300 candidates
    assert last["val_recall@1"] > 100 * chance, last
    assert last["val_recall@5"] > last["val_recall@1"]


def test_short_training_improves_and_writes_run_files(dataset, tmp_path):
    out = tmp_path / "run"
    recipe = tiny_recipe(train={"epochs": 12, "batch_size": 64})
    history = Stage2Trainer(recipe, [dataset], out, device="cpu").fit()
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    assert history[-1]["val_recall@1"] > 20 / 300  # measured 51x chance after 12 epochs
    for name in (
        "metrics.csv",
        "loss.png",
        "last.safetensors",
        "best.safetensors",
        "state.pt",
        "recipe.yaml",
    ):
        assert (out / name).exists(), name
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"epoch", "train_loss", "val_loss", "val_recall@1", "score_image"} <= set(header)
    assert len((out / "metrics.csv").read_text().splitlines()) == 13
    assert load_prom3e(out / "last.safetensors").model.config.embed_dim == 64


def _weights(path):
    return load_prom3e(path / "last.safetensors").model.state_dict()


@pytest.mark.parametrize("strategy", ["prom3e", "miam"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(dataset, tmp_path, strategy):
    masking = {"strategy": strategy} | ({"warmup": 1, "window": 1} if strategy == "miam" else {})
    recipe = tiny_recipe(masking=masking)
    Stage2Trainer(recipe, [dataset], tmp_path / "straight", device="cpu").fit(epochs=4)
    Stage2Trainer(recipe, [dataset], tmp_path / "stopped", device="cpu").fit(epochs=2)
    resumed = Stage2Trainer(recipe, [dataset], tmp_path / "stopped", device="cpu")
    history = resumed.fit(epochs=4, resume=True)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "stopped")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_a_run_killed_mid_epoch_resumes_from_the_last_complete_epoch(
    dataset, tmp_path, monkeypatch
):
    recipe = tiny_recipe()
    Stage2Trainer(recipe, [dataset], tmp_path / "straight", device="cpu").fit(epochs=3)
    calls = {"n": 0}
    original = Stage2Trainer._train_epoch

    def dies_in_epoch_3(self):
        calls["n"] += 1
        if calls["n"] == 3:
            self.model.projectors[0].net[1].weight.data.add_(1.0)  # half-trained garbage
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Stage2Trainer, "_train_epoch", dies_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        Stage2Trainer(recipe, [dataset], tmp_path / "killed", device="cpu").fit(epochs=3)
    monkeypatch.setattr(Stage2Trainer, "_train_epoch", original)
    Stage2Trainer(recipe, [dataset], tmp_path / "killed", device="cpu").fit(epochs=3, resume=True)
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "killed")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_miam_receives_unimodal_scores_every_epoch(dataset, tmp_path):
    trainer = Stage2Trainer(
        tiny_recipe(masking={"strategy": "miam"}), [dataset], tmp_path / "r", device="cpu"
    )
    trainer.fit(epochs=2)
    assert len(trainer.masking.history) == 2
    assert np.isfinite(trainer.masking.history[-1][:5]).all() and np.isnan(
        trainer.masking.history[-1][5]
    )


def test_runs_are_not_mixed(dataset, tmp_path):
    Stage2Trainer(tiny_recipe(), [dataset], tmp_path / "r", device="cpu").fit(epochs=1)
    with pytest.raises(InputError, match="already holds a run"):
        Stage2Trainer(tiny_recipe(), [dataset], tmp_path / "r", device="cpu").fit(epochs=2)
    with pytest.raises(InputError, match="recipe differs"):
        other = tiny_recipe(optim={"lr": 5e-4})
        Stage2Trainer(other, [dataset], tmp_path / "r", device="cpu").fit(epochs=2, resume=True)
    with pytest.raises(InputError, match="nothing to resume"):
        Stage2Trainer(tiny_recipe(), [dataset], tmp_path / "new", device="cpu").fit(resume=True)
    wrong_dim = from_arrays(paired_arrays(dim=16), "small")
    with pytest.raises(InputError, match="16-d"):
        Stage2Trainer(tiny_recipe(), [wrong_dim], tmp_path / "x", device="cpu")


def test_training_data_formats_agree(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zarr

    arrays = paired_arrays(n=20, dim=8)
    arrays_with_silent_audio = {**arrays, "sound": np.zeros((20, 8))}
    np.save(tmp_path / "d.npy", arrays_with_silent_audio, allow_pickle=True)
    np.savez(tmp_path / "d.npz", **arrays)
    pq.write_table(
        pa.table({"id": np.arange(20), **{k: list(v) for k, v in arrays.items()}}),
        tmp_path / "d.parquet",
    )
    group = zarr.open_group(str(tmp_path / "d.zarr"), mode="w")
    for k, v in arrays.items():
        group.create_array(k, data=v)
    loaded = [load_embeddings(tmp_path / n) for n in ("d.npy", "d.npz", "d.parquet", "d.zarr")]
    for data in loaded:
        assert data.present == [0, 1, 2, 3, 4]  # silent audio counts as absent
        np.testing.assert_allclose(data.values, loaded[0].values, rtol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(data.values[:, :5], axis=-1), 1.0, rtol=1e-5)


def test_bad_training_data(tmp_path):
    import os

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo should-never-run",))

    np.save(tmp_path / "evil.npy", np.array({"image": Payload()}, dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="unsafe or corrupt pickle"):
        load_embeddings(tmp_path / "evil.npy")
    np.savez(tmp_path / "one.npz", image=np.ones((4, 8)))
    with pytest.raises(InputError, match="at least two modalities"):
        load_embeddings(tmp_path / "one.npz")
    np.savez(tmp_path / "ragged.npz", image=np.ones((4, 8)), sat=np.ones((5, 8)))
    with pytest.raises(InputError, match="one shape"):
        load_embeddings(tmp_path / "ragged.npz")
    np.savez(tmp_path / "odd.npz", image=np.ones((4, 8)), smell=np.ones((4, 8)))
    with pytest.raises(InputError, match="unknown modalities"):
        load_embeddings(tmp_path / "odd.npz")


def test_shipped_recipes_load():
    paper = load_recipe("recipes/train-prom3e.yaml")
    assert (
        paper.model.embed_dim == 1024
        and paper.train.batch_size == 1024
        and paper.optim.t0_epochs == 20
    )
    assert paper.masking["strategy"] == "prom3e" and paper.loss.lambda_kl == 1e-3
    miam = load_recipe("recipes/train-prom3e-miam.yaml")
    assert miam.masking == {
        "strategy": "miam",
        "kappa": 10.0,
        "lam": 1.0,
        "window": 3,
        "warmup": 10,
        "single_token": True,
    }


def test_train_command_runs_resumes_and_rejects_bad_recipes(tmp_path, run_cli):
    np.savez(tmp_path / "data.npz", **paired_arrays(n=400))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "model: {input_dim: 32, embed_dim: 32, heads: 2, mlp_dim: 64, num_register_tokens: 1}\n"
        "train: {epochs: 2, batch_size: 100, val_fraction: 0.25, amp: none}\n"
    )
    out = tmp_path / "run"
    r = run_cli("train", "--recipe", recipe, "--data", tmp_path / "data.npz", "--out", out)
    assert r.code == 0, r.err
    assert "epoch 2" in r.out and "R@1" in r.out
    r = run_cli(
        "train",
        "--recipe",
        recipe,
        "--data",
        tmp_path / "data.npz",
        "--out",
        out,
        "--resume",
        "--epochs",
        "3",
    )
    assert r.code == 0, r.err
    assert "epoch 3" in r.out and "epoch 1 " not in r.out
    r = run_cli("train", "--recipe", recipe, "--data", tmp_path / "data.npz", "--out", out)
    assert r.code == 2 and "already holds a run" in r.err
    recipe.write_text("train: {epoch: 3}\n")
    r = run_cli(
        "train", "--recipe", recipe, "--data", tmp_path / "data.npz", "--out", tmp_path / "x"
    )
    assert r.code == 2 and "unknown key 'train.epoch'" in r.err and r.err.count("\n") == 1
