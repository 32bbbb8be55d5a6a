"""Maps read a store by blocks of rows and give, bit for bit, what a whole-array computation
gives: ICA fitted on the same random cells and applied to every valid cell, ||sigma||_1 from
the store. Blocks are made small here (a few rows) so that every map crosses many of them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import xarray as xr

from prom3e_geo.engine.cells import infer_cells
from prom3e_geo.engine.pipeline import load_pipeline, spec_from_manifest
from prom3e_geo.grid import Grid
from prom3e_geo.layers import ica as ica_module
from prom3e_geo.layers import sdm as sdm_module
from prom3e_geo.layers import stored as stored_module
from prom3e_geo.layers.ica import fit_ica, gather, ica_layers
from prom3e_geo.layers.sdm import cell_blocks
from prom3e_geo.layers.uncertainty import uncertainty_layers
from prom3e_geo.model.prom3e import MODALITIES
from prom3e_geo.stores.embeddings import open_store
from prom3e_geo.stores.grid_store import MANIFEST_KEY, grid_from_store

EXE = Path(sys.executable).with_name("prom3e-geo")
AREA = ["--aoi", "-92,30,-80,38", "--crs", "EPSG:5070", "--resolution", "40000"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[xr.Dataset, Grid]:
    path = tmp_path_factory.mktemp("blocks") / "cube.zarr"
    made = subprocess.run(
        [EXE, "embed", "--context", "loc,env", *AREA, "--out", path],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    ds = open_store(path)
    return ds, grid_from_store(ds)


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stored_module, "ROW_BLOCK", 3)
    monkeypatch.setattr(sdm_module, "ROW_BLOCK", 3)


def whole_array_ica(ds: xr.Dataset, token: str, seed: int, max_fit: int) -> np.ndarray:
    """The three stretched components computed on the whole array at once: [3, H, W]."""
    valid = np.asarray(ds["valid"].values, dtype=bool)
    values = np.asarray(ds[token].values, dtype=np.float32)[valid]
    rng = np.random.default_rng(seed)
    fit = values[rng.choice(len(values), min(max_fit, len(values)), replace=False)]
    components = fit_ica(fit, seed, 1000, token).transform(values)
    out = np.full((3, *valid.shape), np.nan, dtype=np.float32)
    for k in range(3):
        c = components[:, k]
        c = -c if np.mean((c - c.mean()) ** 3) < 0 else c
        lo, hi = np.percentile(c, [2, 98])
        out[k][valid] = np.clip((c - lo) / max(hi - lo, 1e-12), 0, 1)
    return out


@pytest.mark.parametrize("token", ["mu", "ctx_env"])
def test_ica_by_blocks_is_the_whole_array_ica(store: tuple[xr.Dataset, Grid], token: str) -> None:
    ds, grid = store
    valid = np.asarray(ds["valid"].values, dtype=bool)
    max_fit = int(valid.sum()) * 2 // 3  # a subsample: the picks are gathered across blocks
    assert valid.shape[0] > 5 * stored_module.ROW_BLOCK
    layers = ica_layers(ds, grid, ["loc", "env"], token, seed=3, max_fit=max_fit)
    expected = whole_array_ica(ds, token, 3, max_fit)
    for k in range(3):
        np.testing.assert_array_equal(layers.bands[f"ica_{k + 1}"], expected[k])
    assert np.isfinite(expected[:, valid]).all() and np.isnan(expected[:, ~valid]).all()


def test_gather_picks_rows_across_blocks_in_the_order_given() -> None:
    rows = np.arange(20, dtype=np.float32).reshape(10, 2)
    picks = np.array([9, 0, 4, 5, 3])
    blocks = [rows[:3], rows[3:4], rows[4:10]]
    got = gather(blocks, picks)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, rows[picks])


def test_stored_sigma_is_the_store_array(store: tuple[xr.Dataset, Grid]) -> None:
    ds, grid = store
    layers = uncertainty_layers(ds, grid, ["loc", "env"])
    valid = np.asarray(ds["valid"].values, dtype=bool)
    sigma = np.asarray(ds["sigma_l1"].values, dtype=np.float32)
    np.testing.assert_array_equal(layers.bands["sigma_l1"], np.where(valid, sigma, np.nan))
    assert np.isfinite(layers.bands["sigma_l1"][valid]).all()


def test_ica_blocks_read_no_more_than_a_block(
    store: tuple[xr.Dataset, Grid], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stored token is only ever read a block of rows at a time."""
    ds, grid = store
    seen: list[int] = []
    real = stored_module.valid_blocks

    def spy(ds: xr.Dataset, variable: str, valid: np.ndarray) -> Iterator[np.ndarray]:
        for block in real(ds, variable, valid):
            seen.append(len(block))
            yield block

    monkeypatch.setattr(ica_module, "valid_blocks", spy)
    ica_layers(ds, grid, ["loc", "env"], "ctx_env", seed=0)
    width = ds.sizes["x"]
    assert len(seen) > 5 and max(seen) <= stored_module.ROW_BLOCK * width


def test_sdm_blocks_are_the_whole_array_normalised(store: tuple[xr.Dataset, Grid]) -> None:
    ds, _ = store
    whole = F.normalize(torch.nan_to_num(torch.from_numpy(
        np.asarray(ds["ctx_env"].values, dtype=np.float32))), dim=-1)  # fmt: skip
    blocks = list(cell_blocks(ds, "ctx_env"))
    assert len(blocks) > 5
    assert torch.equal(torch.cat([b for _, b, _ in blocks]), whole)
    ok = np.concatenate([k for _, _, k in blocks])
    np.testing.assert_array_equal(ok, np.asarray(ds["valid"].values, dtype=bool))


def test_sigma_of_a_subset_is_the_whole_array_computation(
    store: tuple[xr.Dataset, Grid],
) -> None:
    ds, grid = store
    model = load_pipeline(spec_from_manifest(json.loads(ds.attrs[MANIFEST_KEY]))).model
    calibration = np.random.default_rng(0).normal(size=model.config.embed_dim)

    def expected_error(logvar: np.ndarray) -> np.ndarray:
        return np.asarray(logvar @ calibration, dtype=np.float32)

    layers = uncertainty_layers(ds, grid, ["loc", "env"], ["loc"], model, "float32", 100,
                                expected_error)  # fmt: skip
    valid = np.asarray(ds["valid_loc"].values, dtype=bool)
    x = torch.zeros(int(valid.sum()), len(MODALITIES), model.config.input_dim)
    x[:, MODALITIES.index("loc")] = torch.from_numpy(
        np.asarray(ds["ctx_loc"].values, dtype=np.float32)[valid]
    )
    out = infer_cells(model, x, ["loc"])  # every cell in one batch
    for band, values in (("sigma_l1", out.sigma_l1.numpy()),
                         ("expected_error", expected_error(out.logvar.numpy()))):  # fmt: skip
        expected = np.full(valid.shape, np.nan, dtype=np.float32)
        expected[valid] = values
        np.testing.assert_array_equal(layers.bands[band], expected)
