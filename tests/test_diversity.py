"""Diversity indices against hand-computed values; smoothing against a brute-force reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely

from prom3e_geo.grid import build_grid
from prom3e_geo.layers import diversity
from prom3e_geo.layers.diversity import compute_diversity, smooth_within
from prom3e_geo.observations import ObservationChunk


def _chunk(points: list[tuple[float, float, int]]) -> ObservationChunk:
    lon, lat, sp = zip(*points, strict=True)
    return ObservationChunk(np.array(lon), np.array(lat), np.array(sp, dtype=np.int32))


def _centre(grid, row, col):
    return float(grid.x[col]), float(grid.y[row])


def _constructed_cells(grid):
    """Cell (1,2): a,a,b,b. Cell (4,7): a,b,c,c. Cell (8,15): a,a,a. Jittered inside the cells."""
    pts = []
    for row, col, species in [(1, 2, [0, 0, 1, 1]), (4, 7, [0, 1, 2, 2]), (8, 15, [0, 0, 0])]:
        x, y = _centre(grid, row, col)
        for k, s in enumerate(species):
            pts.append((x + 0.01 * (k - 1.5), y - 0.01 * (k - 1.5), s))
    return pts


def test_richness_shannon_and_counts_match_hand_values(small_grid):
    layers = compute_diversity([_chunk(_constructed_cells(small_grid))], small_grid, sigma=0)
    expected = {
        (1, 2): (math.log(2), 2, 4),  # p = 1/2, 1/2
        (4, 7): (-(2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5)), 3, 4),  # = 1.0397 nats
        (8, 15): (0.0, 1, 3),
    }
    for (row, col), (h, s, n) in expected.items():
        assert layers.shannon_raw[row, col] == pytest.approx(h, abs=1e-6)
        assert layers.richness_raw[row, col] == s
        assert layers.n_obs[row, col] == n
    assert layers.shannon_raw[4, 7] == pytest.approx(1.0397208, abs=1e-6)
    others = np.ones(small_grid.shape, bool)
    for cell in expected:
        others[cell] = False
    assert (layers.n_obs[others] == 0).all() and (layers.richness_raw[others] == 0).all()
    # sigma = 0: smoothed bands equal raw ones
    np.testing.assert_array_equal(layers.shannon, layers.shannon_raw)
    assert layers.cells_with_data == 3 and layers.observations_used == 11


def test_counts_merge_across_chunks_and_reductions(small_grid, monkeypatch):
    pts = _constructed_cells(small_grid)
    whole = compute_diversity([_chunk(pts)], small_grid, sigma=0)
    monkeypatch.setattr(diversity, "_REDUCE_EVERY", 2)  # force many intermediate reductions
    pieces = [_chunk(pts[i : i + 3]) for i in range(0, len(pts), 3)]
    split = compute_diversity(pieces, small_grid, sigma=0)
    for name in diversity.BAND_NAMES:
        np.testing.assert_array_equal(getattr(split, name), getattr(whole, name))


def test_points_outside_grid_and_aoi_are_counted():
    aoi = shapely.Polygon([(-100, 38), (-98, 38), (-98, 39)])  # lower-right triangle of the bbox
    from prom3e_geo.grid import Aoi

    grid = build_grid(aoi=Aoi("triangle", aoi), shape="10x20")
    pts = [
        (-98.2, 38.1, 0),
        (-99.9, 38.9, 0),
        (-120.0, 45.0, 1),
    ]  # in, in bbox but outside, off-grid
    layers = compute_diversity([_chunk(pts)], grid, sigma=0)
    assert (layers.outside_aoi, layers.outside_grid, layers.observations_used) == (1, 1, 1)
    assert np.isnan(layers.n_obs[~grid.mask]).all()


def _brute_force_smooth(values, mask, sigma, truncate=4.0):
    radius = int(truncate * sigma + 0.5)
    out = np.full(values.shape, np.nan)
    for r, c in zip(*np.nonzero(mask), strict=True):
        num = den = 0.0
        for dr in range(-radius, radius + 1):
            for dc in range(-radius, radius + 1):
                rr, cc = r + dr, c + dc
                if 0 <= rr < mask.shape[0] and 0 <= cc < mask.shape[1] and mask[rr, cc]:
                    w = math.exp(-(dr * dr + dc * dc) / (2 * sigma * sigma))
                    num += w * values[rr, cc]
                    den += w
        out[r, c] = num / den
    return out


def test_smoothing_is_normalised_convolution_inside_the_mask():
    rng = np.random.default_rng(0)
    values = rng.random((12, 15))
    mask = np.zeros((12, 15), bool)
    mask[2:10, 1:9] = True
    mask[5:8, 9:14] = True
    got = smooth_within(values, mask, 1.5)
    np.testing.assert_allclose(got[mask], _brute_force_smooth(values, mask, 1.5)[mask], rtol=1e-6)
    assert np.isnan(got[~mask]).all()


def test_smoothing_does_not_leak_across_the_aoi_edge():
    mask = np.zeros((20, 20), bool)
    mask[:, :10] = True
    values = np.where(mask, 1.0, 1e6)  # huge values outside must not leak in
    got = smooth_within(values, mask, 2.0)
    np.testing.assert_allclose(got[mask], 1.0)  # a constant stays constant up to the edge
    assert np.isnan(got[:, 10:]).all()


def test_smoothed_richness_spreads_within_the_aoi(small_grid):
    layers = compute_diversity([_chunk(_constructed_cells(small_grid))], small_grid, sigma=2.0)
    assert layers.richness[1, 2] < 2 and layers.richness[1, 3] > 0
    assert np.nansum(layers.richness) > 0
    assert not np.isnan(layers.shannon[small_grid.mask]).any()


def test_no_observation_inside_gives_empty_layers(small_grid):
    """Regression: chunks whose points all fall outside used to crash the final reduction."""
    layers = compute_diversity([_chunk([(-120.0, 45.0, 0)])], small_grid, sigma=2.0)
    assert layers.observations_used == 0 and layers.outside_grid == 1
    assert (layers.richness[small_grid.mask] == 0).all()
