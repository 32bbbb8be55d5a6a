"""Novelty and trust: the reference's invariants, its file, the reference command and the maps."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F

from prom3e_geo.errors import InputError, WeightsError
from prom3e_geo.layers.novelty import NoveltyReference

DIM, SPAN = 32, 16  # the clusters live in the first SPAN dimensions of DIM


def clusters(n: int, seed: int, centres_seed: int = 0) -> torch.Tensor:
    """n unit vectors around 4 fixed centres (the same centres for every seed; which centre
    each row takes depends on `seed` only, so two calls with one seed are paired)."""
    g = torch.Generator().manual_seed(centres_seed)
    centres = F.normalize(torch.randn(4, SPAN, generator=g), dim=-1)
    pick = torch.randint(0, 4, (n,), generator=torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed + 1000 * centres_seed + 1)
    inside = F.normalize(centres[pick] + 0.15 * torch.randn(n, SPAN, generator=g), dim=-1)
    return torch.cat([inside, torch.zeros(n, DIM - SPAN)], dim=1)


@pytest.fixture(scope="module")
def reference():
    return NoveltyReference(
        {"loc": clusters(400, 1), "env": clusters(400, 1, centres_seed=1)}, {"data": "test"}
    )


def test_more_distant_context_is_more_novel(reference):
    base = clusters(50, 3)
    away = torch.zeros(1, DIM)
    away[0, -1] = 1.0  # a direction none of the reference takes
    previous = None
    for angle in (0.0, 0.2, 0.5, 0.9, 1.5):  # rotate each sample away from the data
        moved = np.cos(angle) * base + np.sin(angle) * away
        novelty = reference.percentile("loc", moved)
        distance = reference.distances("loc", moved)
        if previous is not None:
            # farther from the reference: larger k-NN distance, never a lower percentile
            assert np.all(distance >= previous[1] - 1e-6)
            assert np.all(novelty >= previous[0])
        previous = (novelty, distance)
    assert np.mean(previous[0]) == 1.0  # far outside: beyond every reference sample


def test_samples_of_the_reference_itself_are_not_novel(reference):
    own = reference.scores({"loc": reference.embeddings["loc"], "env": reference.embeddings["env"]})
    # each sample's own embedding is among its k nearest: below its leave-one-out distance
    assert np.median(own["loc"]) < 0.2 and np.median(own["joint"]) < 0.2
    fresh = reference.scores({"loc": clusters(400, 5), "env": clusters(400, 5, centres_seed=1)})
    # new in-distribution samples are spread over 0-1, about uniformly
    for key in ("loc", "env", "joint"):
        assert 0.35 < np.mean(fresh[key]) < 0.65, key
        assert np.mean(fresh[key] > 0.95) < 0.12, key


def test_joint_novelty_sees_one_novel_modality_and_unusual_combinations(reference):
    far = F.normalize(torch.randn(100, DIM, generator=torch.Generator().manual_seed(11)), dim=-1)
    one_far = reference.scores({"loc": clusters(100, 7), "env": far})
    assert np.mean(one_far["loc"] > 0.95) < 0.2
    assert np.mean(one_far["joint"] > 0.95) > 0.9
    # both parts familiar, their pairing not: each loc cluster goes with one env cluster in the
    # reference; here they are paired at random
    paired = reference.scores({"loc": clusters(200, 7), "env": clusters(200, 7, centres_seed=1)})
    unpaired = reference.scores({"loc": clusters(200, 7), "env": clusters(200, 8, centres_seed=1)})
    assert np.mean(unpaired["loc"]) < 0.7 and np.mean(unpaired["env"]) < 0.7
    assert np.mean(unpaired["joint"] > 0.95) > 0.5 > np.mean(paired["joint"] > 0.95) + 0.3


def test_trust_ranks_novel_cells_above_familiar_ones_and_familiar_by_error(reference):
    ref_err = np.linspace(0, 1, reference.size)

    def expected(embeddings):
        assert set(embeddings) == {"loc", "env"} and len(embeddings["loc"]) == reference.size
        return ref_err

    joint = np.array([0.1, 0.5, 0.5, 0.99, 1.0])
    errors = np.array([0.2, 0.1, 0.9, 0.0, 0.0])
    trust = reference.trust(joint, errors, ["loc", "env"], expected)
    assert np.all((trust >= 0) & (trust <= 1))
    assert trust[2] > trust[0] > trust[1]  # familiar: ordered by expected error
    assert min(trust[3:]) > max(trust[:3])  # novel: above every familiar cell
    assert trust[4] >= trust[3]


def test_reference_file_round_trip_and_refusals(reference, tmp_path):
    path = tmp_path / "ref.safetensors"
    NoveltyReference(reference.embeddings, {"model_sha256": "abc", "data": "x"}).save(path)
    back = NoveltyReference.load(path, model_sha256="abc")
    assert back.origin["data"] == "x" and back.k == reference.k
    assert torch.allclose(back.embeddings["loc"], reference.embeddings["loc"], atol=2e-3)
    with pytest.raises(WeightsError, match="another model"):
        NoveltyReference.load(path, model_sha256="other")
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(WeightsError):
        NoveltyReference.load(tmp_path / "bad.safetensors")
    with pytest.raises(InputError, match="paired"):
        NoveltyReference({"loc": clusters(50, 1), "env": clusters(40, 1)})
    with pytest.raises(InputError, match="no sat"):
        reference.scores({"sat": clusters(5, 1)})


def test_reference_command_builds_a_reference_with_its_origin(tmp_path, run_cli):
    import pandas as pd

    rng = np.random.default_rng(0)
    observations = tmp_path / "obs.csv"
    pd.DataFrame(
        {
            "latitude": rng.uniform(33, 45, 80),
            "longitude": rng.uniform(-110, -80, 80),
            "scientific_name": "Cardinalis cardinalis",
        }
    ).to_csv(observations, index=False)
    out = tmp_path / "ref.safetensors"
    args = ["weights", "reference", "demo", "--observations", observations, "--out", out]
    r = run_cli(*args, "--rows", "60")
    assert r.code == 0, r.err
    assert "60 of 80 observations" in r.out
    ref = NoveltyReference.load(out)
    assert sorted(ref.modalities) == ["env", "loc", "place"] and ref.size == 60
    # the places are the observations' own (points on the unit sphere)
    assert torch.allclose(ref.embeddings["place"].norm(dim=1), torch.ones(60), atol=1e-3)
    assert ref.origin["model"] == "demo" and ref.origin["rows"] == "60"
    from prom3e_geo.hashing import file_sha256

    assert ref.origin["observations_sha256"] == file_sha256(observations)
    # bad input: one line, exit 2, nothing written
    assert run_cli(*args, "--rows", "60").code == 2  # exists, no --overwrite
    missing = run_cli("weights", "reference", "demo", "--observations", tmp_path / "no.csv",
                      "--out", tmp_path / "x.safetensors")  # fmt: skip
    assert missing.code == 2 and "does not exist" in missing.err
    few = run_cli(*args[:-1], tmp_path / "y.safetensors", "--rows", "5")
    assert few.code == 2 and "--rows" in few.err
    assert not (tmp_path / "x.safetensors").exists() and not (tmp_path / "y.safetensors").exists()


def test_europe_is_novel_against_conus_and_each_layer_is_a_band(tmp_path, run_cli):
    """`uncertainty --layer novelty --aoi 0,40,20,55` (Europe, outside the demo world) lies above
    the CONUS map's 95th percentile for >= 80% of its cells."""
    conus, europe = tmp_path / "conus.tif", tmp_path / "eu.tif"
    grid = ["--resolution", "1.0"]
    r = run_cli("uncertainty", "--layer", "novelty", *grid, "--out", conus)
    assert r.code == 0, r.err
    r = run_cli("uncertainty", "--layer", "novelty", "--aoi", "0,40,20,55", *grid, "--out", europe)
    assert r.code == 0, r.err
    with rasterio.open(conus) as ds:
        assert ds.descriptions[0] == "novelty"
        assert ds.descriptions[1:] == ("novelty_sat", "novelty_loc", "novelty_env", "novelty_place")
        us = ds.read(1, masked=True).compressed()
        assert ds.tags(1)["units"].startswith("share of in-distribution")
        assert (
            ds.tags()["layer"] == "novelty"
            and "examples/observations.csv" in ds.tags()["reference"]
        )
    with rasterio.open(europe) as ds:
        eu = ds.read(1, masked=True).compressed()
    assert us.size > 500 and eu.size > 100
    assert np.mean(us > 0.95) < 0.1  # CONUS is familiar (measured 6% on this grid)
    assert np.mean(eu > np.quantile(us, 0.95)) >= 0.8
    assert (tmp_path / "conus.qml").is_file()  # a QGIS ramp beside it
    for layer in ("trust", "expected_error"):
        out = tmp_path / f"{layer}.tif"
        r = run_cli("uncertainty", "--layer", layer, *grid, "--out", out)
        assert r.code == 0, r.err
        with rasterio.open(out) as ds:
            assert ds.descriptions == (layer,)
            values = ds.read(1, masked=True).compressed()
            assert values.size == us.size and np.isfinite(values).all()
    # bad input: one line, exit 2, before any work
    r = run_cli("uncertainty", "--layer", "novelty", "--reference", tmp_path / "none.safetensors",
                "--aoi", "0,40,20,55", "--resolution", "0.5", "--out", tmp_path / "x.tif")  # fmt: skip
    assert r.code == 2 and "does not exist" in r.err and not (tmp_path / "x.tif").exists()
    r = run_cli("uncertainty", "--layer", "novelty", "--reference", tmp_path / "conus.tif",
                *grid, "--out", tmp_path / "y.tif")  # fmt: skip
    assert r.code == 2 and "novelty reference" in r.err and "Traceback" not in r.err
    with rasterio.open(tmp_path / "trust.tif") as ds:
        trust = ds.read(1, masked=True).compressed()
    assert trust.min() >= 0 and trust.max() <= 1
