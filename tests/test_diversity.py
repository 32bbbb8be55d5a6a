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
    # unobserved is not zero: no diversity value where nothing was observed; n_obs counts 0
    assert (layers.n_obs[others] == 0).all() and np.isnan(layers.richness_raw[others]).all()
    assert np.isnan(layers.shannon_raw[others]).all()
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


@pytest.mark.parametrize("split", [1_000_000, 1])
def test_the_key_counter_counts_like_unique_in_bounded_buffers(monkeypatch, split):
    """Many reductions, chunks of 32- and 64-bit keys, keys seen again after they were merged:
    the same table as `np.unique`; the buffer never exceeds the larger of `_REDUCE_EVERY` and
    twice the table, plus one chunk. With `split` 1 the last merge is made as two key ranges on
    two threads (the late 64-bit key in the upper one)."""
    monkeypatch.setattr(diversity, "_REDUCE_EVERY", 50)
    monkeypatch.setattr(diversity, "_SPLIT_LAST_MERGE", split)
    rng = np.random.default_rng(3)
    chunks = [rng.zipf(1.3, size=int(rng.integers(1, 40))) % 5_000 for _ in range(300)]
    chunks = [c.astype(np.int32 if i % 3 else np.int64) for i, c in enumerate(chunks)]
    chunks.append(np.array([2**40, 7], dtype=np.int64))  # a key beyond 32 bits, late
    counter = diversity._KeyCounter()
    for c in chunks:
        counter.add(c)
        assert counter._pending_n < max(50, 2 * counter.keys.size) + c.size
    keys, counts = counter.result()
    expected_keys, expected_counts = np.unique(np.concatenate(chunks), return_counts=True)
    np.testing.assert_array_equal(keys, expected_keys)
    np.testing.assert_array_equal(counts, expected_counts)
    assert keys.dtype == np.int64 and counts.dtype == np.int32  # a key beyond 32 bits came
    again = counter.result()  # nothing pending: the same table, split or not
    np.testing.assert_array_equal(again[0], expected_keys)
    np.testing.assert_array_equal(again[1], expected_counts)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_indices_from_the_count_table_equal_the_textbook_formulas(dtype):
    """Shannon from ln N - sum(n ln n) / N against -sum p ln p computed cell by cell in Python,
    with counts up to 10^6 (where the two forms could part by rounding); richness, N and the
    distinct species (codes with gaps, some only in one cell) against plain Python counts."""
    rng = np.random.default_rng(5)
    n_cells = 50
    table: dict[int, int] = {}
    for _ in range(400):
        species, cell = int(rng.choice([0, 3, 4, 9, 40])), int(rng.integers(0, n_cells))
        table[species * n_cells + cell] = int(rng.choice([1, 2, 7, 1_000_000]))
    table[41 * n_cells + 7] = 5  # species 41 lives in one cell
    keys = np.array(sorted(table), dtype=dtype)
    counts = np.array([table[int(k)] for k in keys], dtype=np.int32)
    counter = diversity._KeyCounter()
    counter.add(np.repeat(keys, np.minimum(counts, 3)))
    assert counter.result()[0].dtype == np.int32  # keys that fit are sorted and kept as int32
    cells = diversity.CellSpeciesCounts(
        keys % dtype(n_cells), counts, diversity._distinct_species(keys, n_cells)
    )
    shannon, richness, n_obs = diversity.diversity_indices(cells, n_cells)
    assert cells.species == len({k // n_cells for k in table}) == 6
    for c in range(n_cells):
        here = [n for k, n in table.items() if k % n_cells == c]
        total = sum(here)
        expected = -sum(n / total * math.log(n / total) for n in here) if here else 0.0
        assert shannon[c] == pytest.approx(expected, abs=1e-12)
        assert (richness[c], n_obs[c]) == (len(here), total)
        if len(here) == 1:
            assert shannon[c] == 0.0


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


def test_smoothed_bands_are_the_gaussian_mean_of_observed_cells(small_grid):
    """Reference formula, written out here with scipy: at every cell, sum_o w R / sum_o w over
    the observed cells o (w the Gaussian weight), nodata where the observed cells hold under 2%
    of the kernel's weight within the AOI. Unobserved zeros never pull the values down."""
    from scipy import ndimage

    layers = compute_diversity([_chunk(_constructed_cells(small_grid))], small_grid, sigma=2.0)
    observed = layers.n_obs > 0
    raw = np.where(observed, layers.richness_raw, 0.0)
    gauss = lambda a: ndimage.gaussian_filter(a.astype(float), 2.0, mode="constant")  # noqa: E731
    expected = gauss(raw) / gauss(observed)
    expected[gauss(observed) / gauss(small_grid.mask) < 0.02] = np.nan
    np.testing.assert_allclose(layers.richness, expected, rtol=1e-5, equal_nan=True)
    assert layers.richness[1, 3] == pytest.approx(expected[1, 3]) and layers.richness[1, 3] > 1
    assert np.isnan(layers.richness).any() and np.isfinite(layers.richness).sum() > 3
    values = layers.richness[np.isfinite(layers.richness)]  # a mean of 1, 2 and 3 species
    assert values.min() >= 1 - 1e-6 and values.max() <= 3 + 1e-6


def test_no_observation_inside_gives_empty_layers(small_grid):
    """Regression: chunks whose points all fall outside used to crash the final reduction."""
    layers = compute_diversity([_chunk([(-120.0, 45.0, 0)])], small_grid, sigma=2.0)
    assert layers.observations_used == 0 and layers.outside_grid == 1
    assert np.isnan(layers.richness).all() and (layers.n_obs[small_grid.mask] == 0).all()


def test_observations_in_coastal_cells_count_though_the_cell_centre_is_outside(tmp_path):
    """Regression: observations in cells whose centre is at sea were dropped (1,155 points of an
    LA export inside CONUS, only 829 used). The AOI decides what is drawn, not what counts."""
    import json

    path = tmp_path / "coast.geojson"
    land = [[-100, 38], [-99.07, 38], [-99.07, 39], [-100, 39], [-100, 38]]
    path.write_text(json.dumps({"type": "Polygon", "coordinates": [land]}))
    grid = build_grid(aoi=str(path), resolution="0.1")
    assert grid.shape == (10, 10) and not grid.mask[:, 9].any() and grid.counted[:, 9].all()
    # on land, in column 9 (-99.1..-99.0), whose centre -99.05 lies at sea
    points = [(-99.09, 38.55, 0), (-99.08, 38.55, 1), (-99.55, 38.55, 2)]
    layers = compute_diversity([_chunk(points)], grid, sigma=1.0)
    assert layers.observations_used == 3 and layers.outside_aoi == 0
    assert layers.species_counted == 3
    assert np.isnan(layers.richness_raw[:, 9]).all()  # not drawn ...
    row = 4  # ... but its two species reach the drawn neighbour through the smoothing
    assert layers.richness[row, 8] > 1.0 and np.isfinite(layers.richness[row, 8])
