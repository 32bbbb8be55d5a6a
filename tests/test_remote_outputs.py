"""Zarr layer outputs on object storage (`--zarr s3://...`), against moto's S3 server on
127.0.0.1: the same dataset as a local `--zarr`, opened by plain xarray from the URL with its
CRS; an existing output is refused before any work (kept), replaced only with --overwrite; a run
refused for its other outputs uploads nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import rioxarray  # noqa: F401  (the .rio accessor, as a notebook imports it)
import xarray as xr

from tests.s3_server import moto_s3

EXE = Path(sys.executable).with_name("prom3e-geo")
ROOT = Path(__file__).resolve().parents[1]
URL = "s3://maps/diversity.zarr"


@pytest.fixture(scope="module")
def s3_env():
    with moto_s3() as (env, _log):
        yield env


def diversity(tmp_path: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    observations = str(ROOT / "examples" / "observations.csv")
    args = ["diversity", "--observations", observations, "--resolution", "1", *extra]
    return subprocess.run(
        [str(EXE), *args], capture_output=True, text=True, cwd=tmp_path,
        env={**os.environ, **env}, timeout=600,
    )  # fmt: skip


def open_remote(env: dict[str, str]) -> xr.Dataset:
    """The output as a notebook opens it: xarray on the URL, the endpoint and keys given as
    storage options (fsspec caches file systems per options: an earlier module's stand-in,
    since stopped, is not reused)."""
    options = {
        "endpoint_url": env["AWS_ENDPOINT_URL"],
        "key": env["AWS_ACCESS_KEY_ID"],
        "secret": env["AWS_SECRET_ACCESS_KEY"],
    }
    return xr.open_zarr(URL, decode_coords="all", storage_options=options).load()


def test_a_zarr_output_on_s3_equals_the_local_one(tmp_path, s3_env):
    local = diversity(tmp_path, s3_env, "--out", "a.tif", "--zarr", "local.zarr")
    remote = diversity(tmp_path, s3_env, "--out", "b.tif", "--zarr", URL)
    assert local.returncode == 0 and remote.returncode == 0, local.stderr + remote.stderr
    assert URL in remote.stdout
    expected = xr.open_zarr(tmp_path / "local.zarr", decode_coords="all").load()
    got = open_remote(s3_env)
    xr.testing.assert_identical(got.drop_attrs(), expected.drop_attrs())
    assert got.rio.crs == expected.rio.crs and got.rio.crs.to_epsg() == 4326
    assert {k: v for k, v in got.attrs.items() if k != "command"} == {
        k: v for k, v in expected.attrs.items() if k != "command"
    }

    # an existing output: refused before any work, kept; replaced only with --overwrite
    again = diversity(tmp_path, s3_env, "--out", "c.tif", "--zarr", URL)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert again.stderr.count("\n") == 1 and not (tmp_path / "c.tif").exists()
    xr.testing.assert_identical(open_remote(s3_env), got)
    replaced = diversity(tmp_path, s3_env, "--out", "c.tif", "--zarr", URL, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    xr.testing.assert_identical(open_remote(s3_env).drop_attrs(), expected.drop_attrs())


def test_a_run_refused_for_its_other_outputs_uploads_nothing(tmp_path, s3_env):
    (tmp_path / "taken.tif").write_bytes(b"the user's file")
    url = "s3://maps/never.zarr"
    done = diversity(tmp_path, s3_env, "--out", "taken.tif", "--zarr", url)
    assert done.returncode == 2 and "taken.tif" in done.stderr
    assert (tmp_path / "taken.tif").read_bytes() == b"the user's file"
    listing = subprocess.run(
        [sys.executable, "-c", f"import fsspec; print(fsspec.filesystem('s3').exists('{url[5:]}'))"],
        capture_output=True, text=True, env={**os.environ, **s3_env}, check=True,
    )  # fmt: skip
    assert listing.stdout.strip() == "False"


def test_two_runs_writing_one_url_at_once_one_wins_whole(tmp_path, s3_env):
    """Two runs writing the same `--zarr s3://...` at once, as a user would start them: one
    wins, the other exits 2 in one line, and the store is the winner's, whole. (The window
    that the lock closes, between a run's check and its first object, is milliseconds wide:
    the next test holds the lock to show that an upload waits for it.)"""
    url = "s3://maps/raced.zarr"
    observations = str(ROOT / "examples" / "observations.csv")

    def start(resolution: str, name: str) -> subprocess.Popen[str]:
        args = ["diversity", "--observations", observations, "--resolution", resolution,
                "--out", f"{name}.tif", "--zarr", url]  # fmt: skip
        return subprocess.Popen(
            [str(EXE), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=tmp_path, env={**os.environ, **s3_env},
        )  # fmt: skip

    # the same grid, so that both reach their upload together; each takes a few seconds, so
    # both pass the check made before any work
    runs = [start("0.05", name) for name in ("a", "b")]
    stderr = [run.communicate(timeout=600)[1] for run in runs]
    finished = [(run.returncode, err) for run, err in zip(runs, stderr, strict=True)]
    codes = sorted(code for code, _ in finished)
    assert codes == [0, 2], finished
    loser = next(err for code, err in finished if code == 2)
    errors = [line for line in loser.splitlines() if "error:" in line]
    assert len(errors) == 1 and "raced.zarr" in errors[0], loser
    assert "appeared while this run was writing it" in loser or "already exists" in loser
    assert "Traceback" not in loser
    winner = "a" if finished[0][0] == 0 else "b"
    options = {
        "endpoint_url": s3_env["AWS_ENDPOINT_URL"],
        "key": s3_env["AWS_ACCESS_KEY_ID"],
        "secret": s3_env["AWS_SECRET_ACCESS_KEY"],
    }
    got = xr.open_zarr(url, decode_coords="all", storage_options=options).load()
    with rioxarray.open_rasterio(tmp_path / f"{winner}.tif") as tif:
        assert got.sizes["x"] == tif.sizes["x"] and got.sizes["y"] == tif.sizes["y"]


LOCK_SCRIPT = """
import sys, threading, time
import numpy as np, xarray as xr
from prom3e_geo.io.outputs import OutputAppeared, _upload_zarr
from prom3e_geo.stores.location import Location
from prom3e_geo.stores.object_lock import object_lock

url, folder = sys.argv[1], sys.argv[2]
ours = xr.Dataset({"v": (("y", "x"), np.zeros((4, 4), np.float32))})
ours.to_zarr(folder + "/ours.zarr", zarr_format=2, consolidated=True)
location = Location.parse(url)
outcome = []

def upload():
    try:
        _upload_zarr(__import__("pathlib").Path(folder + "/ours.zarr"), url, False)
        outcome.append("uploaded")
    except OutputAppeared:
        outcome.append("kept theirs")

with object_lock(location):  # another run holds the URL's lock
    worker = threading.Thread(target=upload)
    worker.start()
    time.sleep(2.5)
    print("waited", worker.is_alive() and not location.exists())
    (ours + 7).to_zarr(url, zarr_format=2, consolidated=True)  # the other run's store
worker.join(60)
print(outcome[0], float(xr.open_zarr(url)["v"].values.max()))
"""


def test_an_upload_waits_for_the_urls_lock_and_keeps_what_it_finds(tmp_path, s3_env):
    """Regression: the upload checked that the URL was free, then wrote; a second run could pass
    the same check meanwhile and both wrote. The upload now holds the URL's lock object while
    it checks and writes: it waits while another run holds it, and then keeps that run's store."""
    done = subprocess.run(
        [sys.executable, "-c", LOCK_SCRIPT, "s3://maps/locked.zarr", str(tmp_path)],
        capture_output=True, text=True, env={**os.environ, **s3_env}, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["waited True", "kept theirs 7.0"], done.stdout


def test_a_read_only_location_is_refused(tmp_path, s3_env):
    done = diversity(tmp_path, s3_env, "--out", "d.tif", "--zarr", "https://127.0.0.1:9/x.zarr")
    assert done.returncode == 2 and "read-only" in done.stderr


def test_a_patch_cache_on_s3_feeds_embed_as_a_local_one_does(tmp_path, s3_env):
    """`fetch --cache s3://...` then `embed --source cache:s3://...`: the same store as through a
    local cache."""
    grid = ["--aoi", "-100,33,-96,36", "--resolution", "0.5", "--chunk", "4"]

    def cli(*args: str) -> None:
        done = subprocess.run(
            [str(EXE), *args], capture_output=True, text=True, cwd=tmp_path,
            env={**os.environ, **s3_env}, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr

    url = "s3://maps/patches.zarr"
    cli("fetch", "--source", "demo", *grid, "--cache", url)
    cli("fetch", "--source", "demo", *grid, "--cache", "patches.zarr")
    context = ["--context", "sat,loc"]
    cli("embed", *grid, *context, "--source", f"cache:{url}", "--out", "remote.zarr")
    cli("embed", *grid, *context, "--source", "cache:patches.zarr", "--out", "local.zarr")
    remote = xr.open_zarr(tmp_path / "remote.zarr").load()
    local = xr.open_zarr(tmp_path / "local.zarr").load()
    for name in ("mu", "ctx_sat", "valid_sat"):
        xr.testing.assert_identical(remote[name], local[name])
