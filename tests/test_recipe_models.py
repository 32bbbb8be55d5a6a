"""Recipes are typed models: wrong value types stop the installed command with one line naming
the key, the expected type and the file (exit 2, nothing written); the reference in
docs/recipes.md is the models' own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from prom3e_geo.engine.presets import read_weights_recipe
from prom3e_geo.errors import InputError
from prom3e_geo.plugins.demo.build import DemoRecipe, stage2_recipe
from prom3e_geo.recipes import EvaluationRecipe, load_evaluation_recipe, load_recipe

EXE = Path(sys.executable).with_name("prom3e-geo")
ROOT = Path(__file__).resolve().parents[1]


def run(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True)


# kind -> (recipe text, command given the recipe and a fresh output path, the words the one
# line must hold besides the file)
CASES = {
    "train: epochs": (
        "train: {epochs: ten}\n",
        lambda r, out: ["train", "--recipe", r, "--data", ROOT / "x.npy", "--out", out],
        ["train.epochs", "valid integer", "'ten'"],
    ),
    "train: batch_size": (
        "train: {batch_size: -5}\n",
        lambda r, out: ["train", "--recipe", r, "--data", ROOT / "x.npy", "--out", out],
        ["train.batch_size", "greater than 0", "-5"],
    ),
    "train: lr": (
        "optim: {lr: fast}\n",
        lambda r, out: ["train", "--recipe", r, "--data", ROOT / "x.npy", "--out", out],
        ["optim.lr", "valid number", "'fast'"],
    ),
    "train: masking parameter": (
        "masking: {strategy: miam, kappa: high}\n",
        lambda r, out: ["train", "--recipe", r, "--data", ROOT / "x.npy", "--out", out],
        ["masking", "kappa", "valid number", "'high'"],
    ),
    "train: model width": (
        "model: {embed_dim: 12.5}\n",
        lambda r, out: ["train", "--recipe", r, "--data", ROOT / "x.npy", "--out", out],
        ["model.embed_dim", "valid integer", "12.5"],
    ),
    "evaluate: probe_repeats": (
        "probe_repeats: five\n",
        lambda r, out: ["evaluate", "--recipe", r, "--out", out.with_suffix(".md")],
        ["probe_repeats", "valid integer", "'five'"],
    ),
    "evaluate: deltas": (
        "deltas: [0.1, lots]\n",
        lambda r, out: ["evaluate", "--recipe", r, "--out", out.with_suffix(".md")],
        ["deltas.1", "valid number", "'lots'"],
    ),
    "weights preset: patch size": (
        "model: MVRL/ProM3E\npatch: {size: big, resolution: 4}\n",
        lambda r, out: ["weights", "info", r],
        ["patch.size", "valid integer", "'big'"],
    ),
    "weights preset: modality": (
        "model: MVRL/ProM3E\nencoders: {satt: ORG/tower}\n",
        lambda r, out: ["weights", "info", r],
        ["encoders", "unknown modality 'satt'", "did you mean 'sat'"],
    ),
    "demo build: lr": (
        "lr: fast\n",
        lambda r, out: ["demo", "build", "--recipe", r, "--out", out],
        ["lr", "valid number", "'fast'"],
    ),
    "demo build: epochs": (
        "photo_epochs: -1\n",
        lambda r, out: ["demo", "build", "--recipe", r, "--out", out],
        ["photo_epochs", "greater than 0", "-1"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_wrong_value_types_exit_2_naming_key_type_and_file(case, tmp_path):
    text, command, words = CASES[case]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    out = tmp_path / "out"
    r = run(*command(recipe, out))
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert str(recipe) in lines[0], lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert sorted(tmp_path.iterdir()) == [recipe]  # refused before any work


def test_unknown_keys_are_named_with_the_nearest_known_one(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train: {epoch: 3}\n")
    with pytest.raises(InputError, match=r"unknown key 'train.epoch' \(did you mean 'epochs'\?\)"):
        load_recipe(recipe)
    recipe.write_text("optim: {learning_rate: 0.1}\n")
    with pytest.raises(InputError, match=r"unknown key 'optim.learning_rate' \(known: lr, "):
        load_recipe(recipe)
    recipe.write_text("n: 10\nseeed: 1\n")
    with pytest.raises(InputError, match=r"'seeed' \(did you mean 'seed'\?\)"):
        load_evaluation_recipe(recipe)


def test_values_of_the_right_type_load_and_paths_follow_the_recipe(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "model: {embed_dim: 64, heads: 2, mlp_dim: 128}\n"
        "optim: {lr: 3.0e-4, betas: [0.8, 0.9]}\n"
        "train: {epochs: 4, batch_size: 32, amp: none}\n"
        "data: [a.npz, {path: b.npz, weight: 2}]\n"
    )
    r = load_recipe(recipe)
    assert (r.model.embed_dim, r.optim.lr, r.optim.betas, r.train.epochs) == (
        64,
        3e-4,
        (0.8, 0.9),
        4,
    )
    assert [(d.path, d.weight) for d in r.data] == [
        (str(tmp_path / "a.npz"), 1.0),
        (str(tmp_path / "b.npz"), 2.0),
    ]
    assert r.to_dict()["optim"]["betas"] == [0.8, 0.9]  # plain YAML data for the run folder
    (tmp_path / "labels.npy").write_bytes(b"")
    e = load_evaluation_recipe(
        _write(tmp_path / "e.yaml", "labels: labels.npy\nretrieval: [image->sat]\n")
    )
    assert e.labels == str(tmp_path / "labels.npy") and e.retrieval == ("image->sat",)
    assert e.model == "demo" and e.deltas == EvaluationRecipe().deltas
    preset = read_weights_recipe(
        _write(
            tmp_path / "p.yaml", "model: ORG/model\nencoders: {sat: ORG/sat}\nenv_raster: null\n"
        )
    )
    assert preset.encoders == {"sat": "ORG/sat"} and preset.env_raster is None
    assert preset.patch == {"size": 256, "resolution": 4.0}


def test_shipped_demo_recipe_is_the_default_and_maps_to_stage2():
    shipped = DemoRecipe.load(ROOT / "recipes" / "demo-world.yaml")
    assert shipped == DemoRecipe()
    # demo.json records the recipe as the shipped build wrote it
    import json

    recorded = json.loads((ROOT / "prom3e_geo/plugins/demo/data/demo.json").read_text())["recipe"]
    assert shipped.model_dump(mode="json") == recorded
    stage2 = stage2_recipe(shipped)
    assert (stage2.model.embed_dim, stage2.model.input_dim, stage2.train.amp) == (128, 512, "none")
    with pytest.raises(ValueError, match="input_dim must be 512"):
        DemoRecipe.model_validate({"prom3e": {"input_dim": 64}})


def test_docs_list_every_recipe_key_as_the_models_define_it():
    generated = subprocess.run(
        [sys.executable, ROOT / "scripts" / "recipe_docs.py"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    assert (ROOT / "docs" / "recipes.md").read_text() == generated
    for key in (
        "`train.epochs` | integer, > 0 | `500`",
        "`optim.betas` | list of 2 number",
        "`train.amp` | one of `bf16`, `fp16`, `none`",
        "`patch.size` | integer, > 0",
        '`stage2_masking` | string | `"uniform"`',
        "`model` | string | required",
    ):
        assert key in generated, key


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.slow
def test_photo_anchor_on_the_stage1_loop_reproduces_the_shipped_build():
    """The demo's photo anchor, now trained by `train.stage1.fit_batches`, gives the per-epoch
    losses the shipped build recorded in demo.json (same recipe, same seeds)."""
    import json

    import numpy as np
    import torch

    from prom3e_geo.plugins.demo.build import render_observations, train_photo_anchor
    from prom3e_geo.plugins.demo.models import DemoNetworks
    from prom3e_geo.plugins.demo.world import DemoWorld

    info = json.loads((ROOT / "prom3e_geo/plugins/demo/data/demo.json").read_text())
    recipe = DemoRecipe.model_validate(info["recipe"])
    torch.manual_seed(recipe.seed)  # as build_demo: the seed, the world, the sample, the nets
    world = DemoWorld(recipe.seed)
    sample = render_observations(
        world, recipe.train_observations, np.random.default_rng(recipe.seed)
    )
    nets = DemoNetworks(len(world.species))
    history = train_photo_anchor(nets, sample.photos, sample.labels, recipe, None)
    assert [round(v, 4) for v in history] == info["training"]["photo_anchor_loss"]
