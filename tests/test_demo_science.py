"""The shipped demo models measured against the demo world's truth.

Thresholds come from measurements of the shipped build (benchmarks/RESULTS.md has the numbers
and the command); they sit below the measured values to absorb float noise, not to hide failures.
"""

from __future__ import annotations

import numpy as np
import pytest

from prom3e_geo.grid import build_grid
from prom3e_geo.plugins.demo import science
from prom3e_geo.plugins.demo.build import QUERY_SPECIES, load_demo


@pytest.fixture(scope="module")
def demo():
    return load_demo()


@pytest.fixture(scope="module")
def grid():
    return build_grid(resolution=0.5)  # 5,850 CONUS cells


@pytest.fixture(scope="module")
def auc(demo, grid):
    return {
        "fused": science.sdm_auc(demo, grid, QUERY_SPECIES, ("sat", "loc", "env")),
        "loc": science.sdm_auc(demo, grid, QUERY_SPECIES, ("loc",)),
    }


def test_sdm_maps_of_held_out_photos_separate_the_true_ranges(auc):
    fused = auc["fused"]
    assert len(fused) >= 10
    # The property: a map ranks a random in-range cell above a random out-of-range cell at
    # least three times in four on average, and no species' map is worse than chance.
    # Measured: mean 0.853, lowest 0.548 (California poppy, whose coastal range the 0.5-degree
    # cells barely resolve).
    assert np.mean(list(fused.values())) >= 0.75, fused
    assert min(fused.values()) >= 0.50, fused


def test_the_full_context_maps_better_than_location_alone(auc):
    # the property: the imagery and environment add information to location (measured: 0.853
    # with sat+loc+env vs 0.828 with location only)
    assert np.mean(list(auc["fused"].values())) > np.mean(list(auc["loc"].values()))


def test_sigma_against_true_richness_is_recorded(demo, grid):
    # The paper reports a positive relation (Spearman 0.401 with Shannon diversity); in the demo
    # world the shipped model gives a negative one (measured -0.603; every training setting tried
    # gave -0.36 to -0.65, see benchmarks/RESULTS.md). This test pins the measured behaviour so
    # that a change shows up.
    rho = science.sigma_richness(demo, grid)
    assert -0.8 < rho < -0.3, rho


def test_fused_reconstruction_retrieves_better_than_any_single_modality(demo):
    recall = science.reconstruction_recall(demo, n=1000)
    # measured recall@1 (species-level, 1,000 new observations): fused 0.105, env 0.089,
    # loc 0.084, sat 0.038
    assert recall["sat+loc+env"][1] > max(recall[m][1] for m in ("sat", "loc", "env"))
    assert recall["loc"][1] > 0.05
    assert recall["sat+loc+env"][10] > recall["sat+loc+env"][1]


def test_the_default_hybrid_mode_maps_better_than_the_reconstruction(demo, grid, auc):
    # The reconstruction's score follows how sharp a cell's reconstruction is (species-poor
    # mountains light up on every map); the hybrid score against the cells' own environment
    # embeddings does not. Measured on this grid: recon mean 0.853; hybrid env ~0.95.
    hybrid = science.sdm_auc(demo, grid, QUERY_SPECIES, mode="hybrid", target="env")
    assert np.mean(list(hybrid.values())) > np.mean(list(auc["fused"].values())) + 0.05, hybrid
    assert np.mean(list(hybrid.values())) >= 0.9, hybrid


def test_the_headline_cardinal_map_has_no_false_band(tmp_path, run_cli, demo, grid):
    """`sdm --query examples/cardinal.jpg` (default mode) against the true range, read back."""
    import rasterio

    out = tmp_path / "map.tif"
    r = run_cli("sdm", "--query", "examples/cardinal.jpg", "--resolution", "0.5", "--out", out)
    assert r.code == 0, r.err
    with rasterio.open(out) as ds:
        assert ds.tags()["mode"] == "hybrid" and ds.tags()["hybrid_target"] == "env"
        band = ds.read(1)
    lon, _, truth = science.cell_truth(demo, grid)
    scores = band[grid.mask]
    in_range = truth[:, [s.common for s in demo.world.species].index("northern cardinal")]
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(in_range, scores) >= 0.9
    # out-of-range cells west of 104 W as dark as the range: 27% with the reconstruction
    assert science.false_band(scores, in_range, lon < -104) < 0.05
