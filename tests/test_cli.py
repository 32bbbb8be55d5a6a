"""The command line: outputs read back with rasterio/xarray, and bad input -> exit 2, one line."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr

from tests.helpers import assert_png_shows_a_picture, write_inat_csv

BBOX = "-100,38,-98,39"  # 10 x 20 cells of 0.1 degree with --shape 10x20


@pytest.fixture
def obs(tmp_path):
    # cell (row 1, col 2) has centre (-99.75, 38.85): two species, 2 + 2 observations
    rows = [(38.85, -99.75, "a"), (38.86, -99.74, "a"), (38.84, -99.76, "b"), (38.85, -99.75, "b")]
    rows += [(38.15, -98.15, "c")]  # row 8, col 18
    rows += [(38.15, -98.15, "d", "needs_id")]
    rows += [(45.0, -120.0, "e")]  # outside the grid
    return write_inat_csv(tmp_path / "obs.csv", rows)


def test_diversity_writes_cog_zarr_png_with_contract_bands_and_tags(tmp_path, obs, run_cli):
    out, zarr, png = tmp_path / "div.tif", tmp_path / "div.zarr", tmp_path / "div.png"
    r = run_cli(
        "diversity",
        "--observations",
        obs,
        "--aoi",
        BBOX,
        "--shape",
        "10x20",
        "--sigma",
        "0",
        "--out",
        out,
        "--zarr",
        zarr,
        "--png",
        png,
    )
    assert r.code == 0, r.err
    assert "read 7 rows, kept 7" in r.out and "outside the grid: 1" in r.out
    with rasterio.open(out) as ds:
        assert ds.descriptions == ("shannon", "richness", "shannon_raw", "richness_raw", "n_obs")
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        tags = ds.tags()
        shannon, richness, _, _, n_obs = ds.read()
    assert shannon[1, 2] == pytest.approx(math.log(2), abs=1e-6)
    assert richness[1, 2] == 2 and n_obs[1, 2] == 4
    assert n_obs[8, 18] == 2 and shannon[8, 18] == pytest.approx(math.log(2), abs=1e-6)
    assert tags["observations_sha256"] == hashlib.sha256(obs.read_bytes()).hexdigest()
    assert tags["sigma_cells"] == "0.0" and tags["software"].startswith("prom3e-geo ")
    assert tags["command"].startswith("prom3e-geo diversity --observations")
    assert "shape=10x20" in tags["grid"]
    ds = xr.open_zarr(zarr, decode_coords="all")
    assert ds.rio.crs.to_epsg() == 4326
    np.testing.assert_array_equal(ds.n_obs.values, n_obs)
    assert_png_shows_a_picture(png)


def test_diversity_filters_and_smoothing(tmp_path, obs, run_cli):
    out = tmp_path / "div.tif"
    r = run_cli(
        "diversity",
        "--observations",
        obs,
        "--aoi",
        BBOX,
        "--shape",
        "10x20",
        "--research-grade",
        "--out",
        out,
    )
    assert r.code == 0, r.err
    assert "not research grade: 1" in r.out
    with rasterio.open(out) as ds:
        n_obs = ds.read(5)
        richness = ds.read(2)
        assert ds.tags()["research_grade_only"] == "True"
    assert n_obs[8, 18] == 1
    # smoothed with sigma 2 over the observed cells: (1, 2) has 2 species and (8, 18) 1, far
    # apart: near (1, 2) the value is 2, and far from both cells it is nodata
    assert richness[1, 2] == pytest.approx(2.0, abs=1e-3) and np.isnan(richness[5, 10])


def test_grid_command_writes_the_mask(tmp_path, run_cli):
    out = tmp_path / "mask.tif"
    r = run_cli("grid", "--crs", "EPSG:5070", "--resolution", "20000", "--out", out)
    assert r.code == 0, r.err
    with rasterio.open(out) as ds:
        assert ds.crs.to_epsg() == 5070 and ds.res == (20000, 20000)
        assert ds.descriptions == ("aoi",)
        mask = ds.read(1, masked=True)
    assert 15000 < mask.count() < 25000  # about 7.8 M km2 / 400 km2


def _assert_clean_failure(r, tmp_path, before):
    assert r.code == 2, (r.out, r.err)
    assert r.err.startswith("prom3e-geo: error: ") and r.err.count("\n") == 1, r.err
    assert "Traceback" not in r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "no output, no leftovers"


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (None, ["--observations", "missing.csv"], "does not exist"),
        ("binary", ["--observations", "bad.csv"], "no latitude column"),
        ("wrongcols", ["--observations", "bad.csv"], "no latitude column"),
        ("outofrange", ["--observations", "bad.csv"], "no usable observation"),
        ("obs", ["--observations", "obs.csv", "--aoi", "10,10,11,11"], "no usable observation"),
        ("obs", ["--observations", "obs.csv", "--aoi", "-100,38,-98"], "does not exist"),
        ("obs", ["--observations", "obs.csv", "--aoi", "-300,38,-98,39"], "out of range"),
        ("obs", ["--observations", "obs.csv", "--since", "2023-13-01"], "not YYYY-MM-DD"),
        ("obs", ["--observations", "obs.csv", "--sigma", "-1"], "sigma"),
        ("obs", ["--observations", "obs.csv", "--shape", "1x2x3"], "ROWSxCOLS"),
        ("obs", ["--observations", "obs.csv", "--crs", "EPSG:0"], "unknown CRS"),
        ("obs", ["--observations", "obs.csv", "--zarr", "div.tif"], "named twice"),
        ("obs", ["--observations", "obs.csv", "--png", "sub/x.png"], "does not exist"),
        ("obs", ["--observations", "obs.csv", "--bogus"], "No such option"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_output(
    tmp_path, run_cli, monkeypatch, setup, args, message
):
    monkeypatch.chdir(tmp_path)
    if setup == "binary":
        (tmp_path / "bad.csv").write_bytes(b"\xff\xd8\xff\xe0 jpeg \x00\x01")
    elif setup == "wrongcols":
        (tmp_path / "bad.csv").write_text("a,b,species\n1,2,x\n")
    elif setup == "outofrange":
        (tmp_path / "bad.csv").write_text("latitude,longitude,species\n95,-100,x\n40,-200,y\n")
    elif setup == "obs":
        write_inat_csv(tmp_path / "obs.csv", [(38.5, -99.0, "a")])
    before = sorted(p.name for p in tmp_path.iterdir())
    r = run_cli("diversity", *args, "--out", "div.tif")
    _assert_clean_failure(r, tmp_path, before)
    assert message in r.err


def test_existing_output_is_kept_without_overwrite(tmp_path, obs, run_cli):
    out = tmp_path / "div.tif"
    out.write_bytes(b"precious")
    r = run_cli("diversity", "--observations", obs, "--aoi", BBOX, "--out", out)
    assert r.code == 2 and "--overwrite" in r.err
    assert out.read_bytes() == b"precious"
    r = run_cli("diversity", "--observations", obs, "--aoi", BBOX, "--out", out, "--overwrite")
    assert r.code == 0
    with rasterio.open(out) as ds:
        assert ds.count == 5


def test_output_equal_to_input_is_refused(tmp_path, obs, run_cli):
    r = run_cli("diversity", "--observations", obs, "--aoi", BBOX, "--out", obs, "--overwrite")
    assert r.code == 2 and "also an input" in r.err
    assert obs.read_text().startswith("id,observed_on")


def test_interrupted_run_leaves_no_partial_output(tmp_path, obs, run_cli, monkeypatch):
    import prom3e_geo.io.geotiff as geotiff

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(geotiff.rasterio.shutil, "copy", interrupted)
    before = sorted(p.name for p in tmp_path.iterdir())
    r = run_cli("diversity", "--observations", obs, "--aoi", BBOX, "--out", tmp_path / "div.tif")
    assert r.code == 130 and "interrupted" in r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_console_script_help_and_exit_codes(tmp_path):
    exe = Path(sys.executable).with_name("prom3e-geo")
    ok = subprocess.run([exe, "diversity", "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "Example:" in ok.stdout and "--sigma" in ok.stdout
    bad = subprocess.run(
        [exe, "diversity", "--observations", tmp_path / "nope.csv", "--out", tmp_path / "x.tif"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "does not exist" in bad.stderr


def test_leftovers_of_killed_runs_are_cleaned_by_the_next_run(tmp_path, obs, run_cli):
    """Regression: `.NAME.partial-PID` files and folders (and GDAL's `.staging.tif` and
    `.ovr.tmp` companions) left by a `kill -9` were never removed. The next run removes those of
    processes that no longer run, and leaves a running process's alone."""
    import os
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()  # a PID that has just ended
    stale = [
        tmp_path / f".div.tif.partial-{dead.pid}",
        tmp_path / f".div.tif.partial-{dead.pid}.staging.tif",
        tmp_path / f".div.tif.partial-{dead.pid}.ovr.tmp",
        tmp_path / f".div.png.partial-{dead.pid}",
    ]
    for path in stale:
        path.write_bytes(b"half a file")
    (tmp_path / f".div.zarr.partial-{dead.pid}").mkdir()
    (tmp_path / f".div.zarr.partial-{dead.pid}" / ".zgroup").write_text("{}")
    alive = tmp_path / f".div.tif.partial-{os.getppid()}"  # a running process's work
    alive.write_bytes(b"in progress")
    r = run_cli("diversity", "--observations", obs, "--aoi", BBOX, "--shape", "10x20", "--out",
                tmp_path / "div.tif", "--zarr", tmp_path / "div.zarr", "--png",
                tmp_path / "div.png")  # fmt: skip
    assert r.code == 0, r.err
    left = sorted(p.name for p in tmp_path.glob(".*"))
    assert left == [alive.name], left


def test_compare_uses_observed_cells_and_min_obs(tmp_path, run_cli):
    """Regression: compare correlated over every cell, unobserved ones as H = 0."""
    from scipy.stats import spearmanr

    from prom3e_geo.grid import build_grid
    from prom3e_geo.io.geotiff import write_cog

    grid = build_grid(aoi=BBOX, shape="10x20")
    rng = np.random.default_rng(0)
    sigma = rng.normal(140, 1, grid.shape).astype(np.float32)
    n_obs = rng.integers(0, 8, grid.shape).astype(np.float32)
    shannon = np.where(n_obs > 0, rng.uniform(0, 2, grid.shape), np.nan).astype(np.float32)
    write_cog(tmp_path / "s.tif", {"sigma_l1": sigma}, grid, {})
    write_cog(tmp_path / "d.tif", {"shannon": shannon, "n_obs": n_obs}, grid, {})
    for min_obs, args in ((1, []), (5, ["--min-obs", "5"])):
        r = run_cli("compare", "--uncertainty", tmp_path / "s.tif", "--diversity",
                    tmp_path / "d.tif", *args)  # fmt: skip
        assert r.code == 0, r.err
        used = n_obs >= min_obs
        expected = spearmanr(sigma[used], shannon[used]).statistic
        assert f"over {used.sum():,} cells" in r.out and f"Spearman {expected:.3f}" in r.out
        assert f"at least {min_obs} observation(s)" in r.out
    r = run_cli("compare", "--uncertainty", tmp_path / "s.tif", "--diversity", tmp_path / "s.tif",
                "--y-band", "sigma_l1", "--min-obs", "2")  # fmt: skip
    assert r.code == 2 and "needs a diversity raster" in r.err


def test_a_commands_outputs_appear_together_or_not_at_all(tmp_path, obs, run_cli, monkeypatch):
    """Regression: the GeoTIFF appeared although the Zarr asked for with it failed."""
    import prom3e_geo.io.layers

    def broken_png(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(prom3e_geo.io.layers, "write_quicklook", broken_png)
    r = run_cli("diversity", "--observations", obs, "--aoi", BBOX, "--shape", "10x20", "--out",
                tmp_path / "d.tif", "--zarr", tmp_path / "d.zarr", "--png", tmp_path / "d.png")  # fmt: skip
    assert r.code == 1 and "disk full" in r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["obs.csv"]  # no tif, zarr, qml, partial


def test_diversity_of_synthetic_observations_says_so(tmp_path, obs, run_cli):
    """Regression: the diversity map of the synthetic example observations was the one demo
    output without the SYNTHETIC tag."""
    root = Path(__file__).resolve().parents[1]
    grid = ["--aoi", "-100,35,-90,42", "--resolution", "0.5"]
    r = run_cli("diversity", "--observations", root / "examples" / "observations.csv", *grid,
                "--out", tmp_path / "demo.tif")  # fmt: skip
    assert r.code == 0, r.err
    r = run_cli("diversity", "--observations", obs, *grid, "--out", tmp_path / "real.tif")
    assert r.code == 0, r.err
    with rasterio.open(tmp_path / "demo.tif") as demo, rasterio.open(tmp_path / "real.tif") as real:
        assert demo.tags()["demo_world"].startswith("SYNTHETIC")
        assert "demo_world" not in real.tags()
