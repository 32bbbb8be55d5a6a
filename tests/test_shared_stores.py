"""Stores shared on the hub: `store push`, maps from `hf-hub:` locations, `store pull`.

Against the dataset hub stand-in on 127.0.0.1 (`tests.fake_dataset_hub`), every command run as
the installed `prom3e-geo` with `HF_ENDPOINT` pointed at it, as a user's shell would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import zarr

from tests.fake_dataset_hub import FakeDatasetHub

EXE = Path(sys.executable).with_name("prom3e-geo")
ROOT = Path(__file__).resolve().parents[1]
GRID = ["--aoi", "-100,33,-88,39", "--resolution", "0.5", "--chunk", "4", "--context", "loc"]
ARRAYS = ("mu", "sigma_l1", "recon_image", "ctx_loc", "valid", "chunk_done", "aoi")


@pytest.fixture(scope="module")
def hub():
    with FakeDatasetHub() as server:
        yield server


@pytest.fixture(scope="module")
def local_store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shared")
    out = folder / "cube.zarr"
    r = subprocess.run(
        [EXE, "embed", *GRID, "--out", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "PROM3E_GEO_CACHE": str(folder / "cache")},
    )
    assert r.returncode == 0, r.stderr
    return out


def run(hub, *args, tmp_path):
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_test_token",
           "PROM3E_GEO_CACHE": str(tmp_path / "cache")}  # fmt: skip
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def pushed(hub, local_store, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("push")
    r = run(hub, "store", "push", local_store, "hf-hub:datasets/lab/conus", tmp_path=tmp)
    assert r.returncode == 0, r.stderr
    return r.stdout.split("--embeddings ")[1].strip()


def test_push_uploads_every_file_as_one_commit(hub, local_store, pushed):
    files = hub.datasets["lab/conus"]["files"]
    local = {
        f"cube.zarr/{p.relative_to(local_store).as_posix()}": p.read_bytes()
        for p in local_store.rglob("*")
        if p.is_file()
    }
    assert files == local
    assert hub.commits == 1
    commit = hub.datasets["lab/conus"]["commit"]
    assert pushed == f"hf-hub:datasets/lab/conus@{commit}/cube.zarr"
    assert "hf_test_token" not in json.dumps({k: v.decode("latin-1") for k, v in files.items()})


@pytest.mark.slow
def test_a_map_from_the_hub_equals_a_map_from_the_local_store(hub, local_store, pushed, tmp_path):
    query = ROOT / "examples" / "cardinal.jpg"
    maps = []
    for name, store in (("hub", pushed), ("local", local_store)):
        out = tmp_path / f"{name}.tif"
        r = run(
            hub, "sdm", "--query", query, "--embeddings", store, "--out", out, tmp_path=tmp_path
        )
        assert r.returncode == 0, r.stderr
        maps.append(out)
    with rasterio.open(maps[0]) as a, rasterio.open(maps[1]) as b:
        np.testing.assert_array_equal(a.read(), b.read())


def test_xarray_opens_the_hub_url_as_the_local_dataset(hub, local_store, pushed, tmp_path):
    """The Python API: `prom3e_geo.open_store` on the hf-hub: location, and a notebook's own
    `xr.open_zarr` on its fsspec spelling hf://datasets/..., give the local store's dataset."""
    code = (
        "import sys, rioxarray, xarray as xr, prom3e_geo\n"
        "hf = 'hf://' + sys.argv[1].removeprefix('hf-hub:')\n"
        "remote = xr.open_zarr(hf, decode_coords='all')\n"
        "local = xr.open_zarr(sys.argv[2], decode_coords='all')\n"
        "xr.testing.assert_identical(remote.load(), local.load())\n"
        "xr.testing.assert_identical(prom3e_geo.open_store(sys.argv[1]).load(), local.load())\n"
        "print(remote.rio.crs.to_epsg())\n"
    )
    env = {**os.environ, "HF_ENDPOINT": hub.url}
    r = subprocess.run([sys.executable, "-c", code, pushed, str(local_store)],
                       capture_output=True, text=True, env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "4326"


def test_pull_copies_the_store(hub, local_store, pushed, tmp_path):
    dest = tmp_path / "pulled.zarr"
    r = run(hub, "store", "pull", pushed, dest, tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    a, b = zarr.open_group(str(dest), mode="r"), zarr.open_group(str(local_store), mode="r")
    for name in ARRAYS:
        np.testing.assert_array_equal(a[name][:], b[name][:], err_msg=name)
    again = run(hub, "store", "pull", pushed, dest, tmp_path=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_a_hub_store_made_with_other_weights_is_refused(hub, local_store, tmp_path):
    """The manifest's weights hash is checked against the user's weights before a map."""
    files = {}
    for p in local_store.rglob("*"):
        if p.is_file():
            files[f"other.zarr/{p.relative_to(local_store).as_posix()}"] = p.read_bytes()
    for key in ("other.zarr/.zattrs", "other.zarr/.zmetadata"):
        text = files[key].decode()
        sha = json.loads(json.loads(files["other.zarr/.zattrs"])["prom3e_geo_manifest"])[
            "model_sha256"
        ]
        files[key] = text.replace(sha, "0" * 64).encode()
    hub.datasets["lab/other"] = {"commit": "1" * 40, "files": files}
    query = ROOT / "examples" / "cardinal.jpg"
    out = tmp_path / "map.tif"
    r = run(hub, "sdm", "--query", query, "--embeddings", "hf-hub:datasets/lab/other/other.zarr",
            "--out", out, tmp_path=tmp_path)  # fmt: skip
    assert r.returncode == 2 and "weights of model demo changed" in r.stderr, r.stderr
    assert not out.exists()


def test_hub_locations_are_read_only_and_checked(hub, local_store, tmp_path):
    r = run(hub, "embed", *GRID, "--out", "hf-hub:datasets/lab/conus/new.zarr", tmp_path=tmp_path)
    assert r.returncode == 2 and "read-only" in r.stderr
    r = run(hub, "store", "push", local_store, "hf-hub:lab/conus", tmp_path=tmp_path)
    assert r.returncode == 2 and "hf-hub:datasets/ORG/NAME" in r.stderr
    r = run(hub, "sdm", "--query", ROOT / "examples" / "cardinal.jpg", "--embeddings",
            "hf-hub:datasets/lab/missing/cube.zarr", "--out", tmp_path / "m.tif", tmp_path=tmp_path)  # fmt: skip
    assert r.returncode in (1, 2) and "Traceback" not in r.stderr


def test_a_store_from_other_hub_releases_is_refused():
    """A part (tower or model) whose recorded release differs from the one this machine's
    pipeline resolved is refused, naming both; parts only one side knows are not compared."""
    from prom3e_geo.errors import StoreMismatchError
    from prom3e_geo.stores.compatibility import check_origins

    stored = {"origins": {"sat": "MVRL/ecosat@1111111", "model": "MVRL/ProM3E@2222222"}}
    check_origins("s.zarr", stored, {"sat": "MVRL/ecosat@1111111", "image": "MVRL/x@3"})
    with pytest.raises(StoreMismatchError, match=r"sat from MVRL/ecosat@1111111.*MVRL/ecosat@9"):
        check_origins("s.zarr", stored, {"sat": "MVRL/ecosat@9", "model": "MVRL/ProM3E@2222222"})
