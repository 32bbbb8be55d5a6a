"""The shipped demo models measured against the demo world's truth.

Thresholds come from measurements of the shipped build (benchmarks/RESULTS.md has the numbers
and the command); they sit below the measured values to absorb float noise, not to hide failures.
"""

from __future__ import annotations

import numpy as np
import pytest

from prom3e_geo.demo import science
from prom3e_geo.demo.build import QUERY_SPECIES, load_demo
from prom3e_geo.grid import build_grid


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
    # measured: mean 0.907, lowest 0.756 (California poppy)
    assert np.mean(list(fused.values())) >= 0.85, fused
    assert min(fused.values()) >= 0.70, fused


def test_the_full_context_maps_better_than_location_alone(auc):
    # measured: 0.907 with sat+loc+env vs 0.857 with location only
    assert np.mean(list(auc["fused"].values())) > np.mean(list(auc["loc"].values())) + 0.02


def test_sigma_against_true_richness_is_recorded(demo, grid):
    # The paper reports a positive relation (Spearman 0.401 with Shannon diversity); in the demo
    # world the shipped model gives a negative one (measured -0.361), also within every band of
    # observation density. This test pins the measured behaviour so that a change shows up.
    rho = science.sigma_richness(demo, grid)
    assert -0.6 < rho < -0.1, rho


def test_fused_reconstruction_retrieves_better_than_sat_or_loc_alone(demo):
    recall = science.reconstruction_recall(demo, n=1000)
    # measured recall@1 (species-level, 1,000 new observations): fused 0.103, loc 0.088,
    # sat 0.061, env 0.113 (environment alone is the strongest single input in this world)
    assert recall["sat+loc+env"][1] > recall["loc"][1] > 0.05
    assert recall["sat+loc+env"][1] > recall["sat"][1]
    assert recall["sat+loc+env"][10] > recall["sat+loc+env"][1]
