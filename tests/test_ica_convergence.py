"""ICA never maps a fit that did not converge (regression: on float32 input FastICA ran out of
iterations on a store's environment embeddings, its warning went unseen, and `ica` wrote
three copies of one component, exit 0)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from prom3e_geo.errors import RunFailed
from prom3e_geo.layers.ica import fit_ica

EXE = Path(sys.executable).with_name("prom3e-geo")
AREA = ["--aoi", "-92,30,-80,38", "--crs", "EPSG:5070", "--resolution", "40000"]


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ica") / "cube.zarr"
    made = run("embed", *AREA, "--out", path)
    assert made.returncode == 0, made.stderr
    return path


@pytest.mark.parametrize("token", ["ctx_env", "mu"])
def test_three_uncorrelated_components(store, tmp_path, token):
    out = tmp_path / "ica.tif"
    done = run("ica", "--embeddings", store, "--token", token, "--out", out)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr.lower(), done.stderr
    with rasterio.open(out) as src:
        bands = src.read(masked=True)
        assert src.tags()["ica_algorithm"] in ("parallel", "deflation")
    inside = ~bands.mask.any(axis=0)
    values = np.stack([b.data[inside] for b in bands]).astype(np.float64)
    assert inside.sum() > 500
    assert (values.std(axis=1) > 0.05).all(), values.std(axis=1)
    r = np.corrcoef(values)
    pairs = np.abs(r[np.triu_indices(3, 1)])
    assert (pairs < 0.2).all(), r


def test_no_convergence_exits_1_in_one_line(store, tmp_path):
    out = tmp_path / "ica.tif"
    failed = run(
        "ica", "--embeddings", store, "--token", "ctx_env", "--max-iter", "1", "--out", out
    )
    assert failed.returncode == 1, failed.stderr
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1, failed.stderr
    assert "did not converge on ctx_env in 1 iterations" in lines[0]
    assert "Traceback" not in failed.stderr
    assert not out.exists()


def test_fit_runs_in_float64_and_refuses_a_last_iterate():
    rng = np.random.default_rng(0)
    sources = np.stack(
        [rng.laplace(size=2000), rng.uniform(-1, 1, 2000), rng.exponential(size=2000)]
    )
    mixed = (rng.normal(size=(8, 3)) @ sources).T.astype(np.float32)
    ica = fit_ica(mixed, seed=0, max_iter=1000, token="test")
    assert ica.components.dtype == np.float64
    components = ica.transform(mixed)
    r = np.corrcoef(components.T, sources)[:3, 3:]
    assert (np.abs(r).max(axis=1) > 0.95).all(), r  # each component recovers one source
    with pytest.raises(RunFailed, match="did not converge"):
        fit_ica(mixed, seed=0, max_iter=1, token="test")


def mixed_sources(n: int = 9000, dim: int = 40) -> np.ndarray:
    rng = np.random.default_rng(1)
    sources = np.stack([rng.laplace(size=n), rng.uniform(-1, 1, n), rng.exponential(size=n)])
    mixed = (rng.normal(size=(dim, 3)) @ sources).T + 0.05 * rng.normal(size=(n, dim))
    return mixed.astype(np.float32)


def test_the_streamed_whitening_gives_sklearns_fit(monkeypatch):
    """The whitening summed over slices of the float32 sample gives the whitening, unmixing
    and sources sklearn's FastICA computes on the whole sample copied to float64 (its SVD
    whitening)."""
    from sklearn.decomposition import FastICA

    from prom3e_geo.layers import ica as ica_module

    mixed = mixed_sources()
    monkeypatch.setattr(ica_module, "_SLICE", 1000)  # many slices, the last one short
    reference = FastICA(n_components=3, whiten="unit-variance", random_state=0, max_iter=1000).fit(
        mixed.astype(np.float64)
    )
    mean, whiten = ica_module.whitening(mixed, 3, "test")
    np.testing.assert_allclose(mean, reference.mean_, rtol=1e-12)
    np.testing.assert_allclose(whiten, reference.whitening_, rtol=1e-9, atol=1e-12)
    fit = fit_ica(mixed, seed=0, max_iter=1000, token="test")
    assert fit.algorithm == "parallel" and fit.n_iter == reference.n_iter_
    scale = np.abs(reference.components_).max()
    np.testing.assert_allclose(fit.components, reference.components_, atol=1e-9 * scale)
    np.testing.assert_allclose(
        fit.transform(mixed), reference.transform(mixed.astype(np.float64)), atol=1e-8
    )


def test_a_sample_of_fewer_than_three_directions_is_refused():
    rng = np.random.default_rng(2)
    flat = (rng.normal(size=(500, 2)) @ rng.normal(size=(2, 16))).astype(np.float32)
    with pytest.raises(RunFailed, match="span fewer than 3 directions"):
        fit_ica(flat, seed=0, max_iter=1000, token="test")
