"""Embedding stores on object storage, against moto's S3 server on 127.0.0.1.

Every store is compared with one written by a one-process local run of the same command: the
S3 store must hold the same bytes, whatever wrote it (a resumed run after `kill -9`, a Dask
cluster whose workers share nothing but the bucket, a worker killed mid-run). Those three run
under `-m slow` (each computes the store again); the default run keeps creation, refusal, the
lock, a map and the location checks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from prom3e_geo.errors import InputError
from prom3e_geo.stores.embeddings import open_store
from prom3e_geo.stores.grid_store import building, read_manifest
from prom3e_geo.stores.location import Location
from tests.s3_server import moto_s3

EXE = Path(sys.executable).with_name("prom3e-geo")
GRID = ["--aoi", "-100,33,-88,39", "--resolution", "0.5", "--chunk", "4", "--context", "loc"]
ARRAYS = ("mu", "sigma_l1", "recon_image", "ctx_loc", "valid", "valid_loc", "chunk_done", "aoi")
CHUNKS = 18  # 12 x 24 cells in chunks of 4


@pytest.fixture(scope="module")
def s3():
    with moto_s3() as (env, log):
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield env, log
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PROM3E_GEO_CACHE", str(tmp_path / "cache"))


def plain_env() -> dict[str, str]:
    """This process's environment without the thread limits (OMP_NUM_THREADS=1, MKL's,
    OpenBLAS's) that distributed sets in a process that starts a cluster, and never takes back:
    a command inheriting them would compute with one intra-op thread, not as a plain run."""
    import dask
    import distributed  # noqa: F401  (loads the nanny's configuration)

    spawned = dask.config.get("distributed.nanny.pre-spawn-environ")
    return {k: v for k, v in os.environ.items() if k not in spawned}


def embed(out, *extra, check=True):
    r = subprocess.run(
        [EXE, "embed", *GRID, *extra, "--out", str(out)],
        capture_output=True,
        text=True,
        env=plain_env(),
    )
    if check:
        assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def local_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "cube.zarr"
    embed(out)
    return out


@pytest.fixture(scope="module")
def s3_store(s3, local_store):
    """A store written to S3 by a plain `embed --out s3://...`."""
    url = "s3://maps/plain/cube.zarr"
    embed(url)
    return url


def arrays(where) -> dict[str, np.ndarray]:
    group = zarr.open_group(Location.parse(where).zarr_store(read_only=True), mode="r")
    return {name: np.asarray(group[name][:]) for name in ARRAYS}


def markers(url: str) -> int:
    """Chunk markers set so far, counted as objects (safe while the store is being made)."""
    location = Location.parse(url)
    keys = location.filesystem().glob(location.child("chunk_done/*"))
    return sum(not key.rsplit("/", 1)[-1].startswith(".") for key in keys)


def assert_same_store(a, b) -> None:
    x, y = arrays(a), arrays(b)
    for name in ARRAYS:
        np.testing.assert_array_equal(x[name], y[name], err_msg=name)


def test_embed_to_s3_equals_a_local_run_and_opens_in_xarray(s3_store, local_store):
    url = s3_store
    assert_same_store(url, local_store)
    assert read_manifest(url) == read_manifest(local_store)
    # the user's own xarray on the URL: the same dataset as on the local folder
    remote = xr.open_zarr(url, decode_coords="all")
    local = xr.open_zarr(local_store, decode_coords="all")
    xr.testing.assert_identical(remote, local)
    assert remote.rio.crs.to_epsg() == 4326
    # no lock object is left beside a finished store
    assert Location.parse("s3://maps/plain").filesystem().ls("maps/plain") == [
        "maps/plain/cube.zarr"
    ]


def test_a_store_of_another_run_on_s3_is_refused(s3_store):
    url = s3_store
    before = arrays(url)
    r = embed(url, "--resolution", "0.5", "--context", "sat,loc", check=False)
    assert r.returncode == 2 and "refusing to mix runs" in r.stderr
    assert "Traceback" not in r.stderr
    after = arrays(url)
    for name in ARRAYS:
        np.testing.assert_array_equal(before[name], after[name])


@pytest.mark.slow
def test_killed_embed_on_s3_resumes_to_the_same_store(s3, local_store):
    url = "s3://maps/killed/cube.zarr"
    proc = subprocess.Popen(
        [EXE, "embed", *GRID, "--out", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=plain_env(),
    )
    fs = Location.parse(url).filesystem()
    deadline, done = time.time() + 180, 0
    while time.time() < deadline and proc.poll() is None:
        done = markers(url)
        if done >= 3:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = int(arrays(url)["chunk_done"].sum())
    assert 3 <= done < CHUNKS, "killed mid-run"
    assert fs.exists("maps/killed/.cube.zarr.lock"), "the dead run's lock object is left"
    with pytest.raises(InputError, match="incomplete"):
        open_store(url)
    rerun = embed(url)  # takes the dead process's lock over at once, then resumes
    assert f"{done} already done" in rerun.stdout
    assert_same_store(url, local_store)
    assert not fs.exists("maps/killed/.cube.zarr.lock")


def test_the_lock_object_makes_a_second_builder_wait(s3):
    """The conditional put refuses a second holder until the first lets go."""
    url = "s3://maps/lock/cube.zarr"
    order = []

    def second() -> None:
        with building(url):
            order.append("2")

    with building(url):
        waiter = threading.Thread(target=second)
        waiter.start()
        time.sleep(1.5)
        order.append("1")
    waiter.join(10)
    assert order == ["1", "2"]
    assert not Location.parse(url).sibling(".cube.zarr.lock").exists()


def test_sdm_from_an_s3_store(s3_store, local_store, tmp_path):
    url = s3_store
    query = Path(__file__).resolve().parents[1] / "examples" / "cardinal.jpg"
    outs = []
    for name, store in (("remote", url), ("local", str(local_store))):
        out = tmp_path / f"{name}.tif"
        r = subprocess.run(
            [EXE, "sdm", "--query", str(query), "--embeddings", store, "--out", str(out)],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr
        outs.append(out)
    import rasterio

    with rasterio.open(outs[0]) as a, rasterio.open(outs[1]) as b:
        np.testing.assert_array_equal(a.read(), b.read())


def test_read_only_and_unknown_locations_are_refused(s3, tmp_path):
    r = embed("hf-hub:datasets/org/name/cube.zarr", check=False)
    assert r.returncode == 2 and "read-only" in r.stderr
    r = embed("ftp://host/cube.zarr", check=False)
    assert r.returncode == 2 and "unknown URL scheme" in r.stderr


@pytest.fixture
def cluster(s3, tmp_path):
    """A `LocalCluster(processes=True)` whose two workers each run in their own empty folder:
    they share nothing with the client or each other but the bucket. The thread limits that
    distributed leaves in this process's environment are taken back afterwards."""
    from dask.distributed import Client, LocalCluster

    before = dict(os.environ)
    try:
        with (
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            ) as c,
            Client(c) as client,
        ):
            folders = []
            for i, address in enumerate(client.scheduler_info()["workers"]):
                folder = tmp_path / f"worker{i}"
                folder.mkdir()
                client.run(os.chdir, str(folder), workers=[address])
                folders.append(folder)
            assert sorted(client.run(os.getcwd).values()) == sorted(map(str, folders))
            yield c, client, folders
    finally:
        os.environ.clear()
        os.environ.update(before)


@pytest.mark.slow
def test_a_cluster_without_a_shared_disk_writes_one_s3_store(cluster, local_store, tmp_path):
    c, _, folders = cluster
    url = "s3://maps/cluster/cube.zarr"
    embed(url, "--scheduler", c.scheduler_address)
    assert_same_store(url, local_store)
    assert all(not any(f.iterdir()) for f in folders), "a worker wrote to its own disk"


@pytest.mark.slow
def test_a_worker_killed_mid_run_has_its_chunk_rerun(cluster, local_store):
    c, client, _ = cluster
    url = "s3://maps/lost-worker/cube.zarr"
    proc = subprocess.Popen(
        [EXE, "embed", *GRID, "--scheduler", c.scheduler_address, "--out", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=plain_env(),
    )
    pids = client.run(os.getpid)
    killed = None
    deadline = time.time() + 180
    while killed is None and time.time() < deadline and proc.poll() is None:
        started = markers(url) >= 2
        busy = [w for w, tasks in client.processing().items() if tasks]
        if started and busy:
            killed = busy[0]
            os.kill(pids[killed], signal.SIGKILL)  # mid-chunk: its task is in flight
        time.sleep(0.05)
    out, err = proc.communicate(timeout=600)
    assert killed is not None, "no chunk was in flight to lose"
    assert proc.returncode == 0, err
    assert_same_store(url, local_store)
