"""Remote patch sources against fake services on 127.0.0.1: the real sentinelhub SDK and
pystac-client code paths, georeferencing, tile batching, faults, resume and credential hygiene."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from fake_services import (
    CLIENT_ID,
    CLIENT_SECRET,
    FakeServices,
    add_stac_scenes,
    pattern,
)
from pyproj import Transformer

from prom3e_geo.errors import InputError
from prom3e_geo.imagery import open_source

SIZE = 32


@pytest.fixture
def sh_env(monkeypatch, tmp_path):
    """Credentials in the environment; the user's home and config are never touched."""
    from sentinelhub import SentinelHubDownloadClient

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the fake serves plain http
    monkeypatch.setenv("SH_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("SH_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.delenv("SH_PROFILE", raising=False)
    SentinelHubDownloadClient.clear_cache()
    yield home
    SentinelHubDownloadClient.clear_cache()


def sh_spec(fake: FakeServices, **options) -> str:
    options = {"retry_wait": 0.01, "size": SIZE, **options}
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return f"sentinelhub?base_url={fake.url}&token_url={fake.url}/oauth/token&{query}"


def utm_corner(lon: float, lat: float, epsg: int) -> tuple[float, float, float, float]:
    """(x, y, left, top) of a cell's snapped patch, computed independently of the package."""
    x, y = Transformer.from_crs(4326, epsg, always_xy=True).transform(lon, lat)
    half = SIZE * 10 / 2
    return x, y, round((x - half) / 10) * 10, round((y + half) / 10) * 10


def expected_patch(epsg: int, left: float, top: float) -> np.ndarray:
    cols, rows = np.meshgrid(np.arange(SIZE) + 0.5, np.arange(SIZE) + 0.5)
    b04, b03, b02, _ = pattern(epsg, left + cols * 10, top - rows * 10)
    return np.stack([b04, b03, b02], axis=-1) / 1e4


# Three clusters of cells ~100 m apart: either side of the UTM 13/14 boundary at 102 W, and a
# pair near 98.4 W.
LON = np.array([-102.0015, -102.0005, -101.9995, -101.9985, -101.9975, -98.4, -98.399])
LAT = np.array([37.0, 37.0, 37.0, 37.0005, 36.9995, 38.2, 38.2005])
EPSG = np.where(LON < -102, 32613, 32614)


def test_sentinelhub_patches_are_centred_and_georeferenced(sh_env):
    with FakeServices() as fake:
        batch = open_source(sh_spec(fake)).fetch(LON, LAT)
    assert batch.valid.all()
    for i in range(LON.size):
        x, y, left, top = utm_corner(LON[i], LAT[i], EPSG[i])
        assert abs(left + SIZE * 5 - x) <= 5 and abs(top - SIZE * 5 - y) <= 5  # centred (half px)
        np.testing.assert_allclose(batch.patches[i], expected_patch(EPSG[i], left, top), atol=1e-6)
        cols, rows = np.meshgrid(np.arange(SIZE) + 0.5, np.arange(SIZE) + 0.5)
        clm = pattern(EPSG[i], left + cols * 10, top - rows * 10)[3]
        assert batch.meta[i]["cloud_fraction"] == pytest.approx(clm.mean(), abs=1e-4)


def test_tile_batching_cuts_the_same_patches_as_per_cell_requests(sh_env):
    with FakeServices() as fake:
        batched = open_source(sh_spec(fake))
        a = batched.fetch(LON, LAT)
        single = open_source(sh_spec(fake, tile_px=1))
        b = single.fetch(LON, LAT)
    np.testing.assert_array_equal(a.patches, b.patches)
    assert single.traffic["requests"] == LON.size
    assert batched.traffic["requests"] == 3  # one per cluster


def test_faults_are_survived_and_the_rest_reported(sh_env):
    with FakeServices() as fake:
        clean = open_source(sh_spec(fake, tile_px=1)).fetch(LON, LAT)
    faults = ["429", "500", "truncated", "expire", "slow", "429", "500"]
    x, y = Transformer.from_crs(4326, 32614, always_xy=True).transform(-98.4, 38.2)
    reject = (32614, x - 200, y - 200, x + 1500, y + 1500)  # the pair near 98.4 W: always 400
    with FakeServices(faults=faults, slow_s=1.5, reject_box=reject) as fake:
        source = open_source(sh_spec(fake, tile_px=1, timeout=0.5, threads=2))
        batch = source.fetch(LON, LAT)
        assert not fake.faults  # every fault was served
        assert fake.counts["/oauth/token"] >= 2  # a new token after the revoked one
    ok = np.arange(5)
    assert batch.valid[ok].all() and not batch.valid[5:].any()
    np.testing.assert_array_equal(batch.patches[ok], clean.patches[ok])
    assert [m["error"] for m in batch.meta[5:]] == ["HTTP 400", "HTTP 400"]


def test_exhausted_retries_are_recorded_not_fatal(sh_env):
    with FakeServices(faults=["500"] * 40) as fake:
        source = open_source(sh_spec(fake, tile_px=1, attempts=2, rounds=1))
        batch = source.fetch(LON[:2], LAT[:2])
    assert not batch.valid.any() and {m["error"] for m in batch.meta} == {"HTTP 500"}
    assert source.traffic["requests"] == 4  # 2 tiles x (first round + 1 retry round)


def test_credentials_come_from_a_profile_and_never_leak(sh_env, tmp_path, run_cli, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    with FakeServices(
        faults=["429", "500", "expire"], reject_box=(32614, 0, 0, 1e6, 4.1e6)
    ) as fake:
        config = sh_env / ".config" / "sentinelhub" / "config.toml"
        config.parent.mkdir(parents=True)
        config.write_text(
            f'[fake]\nsh_client_id = "{CLIENT_ID}"\nsh_client_secret = "{CLIENT_SECRET}"\n'
            f'sh_base_url = "{fake.url}"\nsh_token_url = "{fake.url}/oauth/token"\n'
        )
        before = config.read_bytes()
        cache = tmp_path / "patches.zarr"
        args = ["fetch", "--aoi", "-98.6,37,-98.4,37.1", "--resolution", "0.02", "--size", "32"]
        r = run_cli(
            *args, "--source", "sentinelhub:fake?retry_wait=0.01&tile_px=100", "--cache", cache
        )
    assert r.code == 0, r.err
    assert "30 cells ok, 20 invalid (reasons: HTTP 400: 20)" in r.out  # southern rows rejected
    assert "requests" in r.out and "bytes" in r.out
    assert config.read_bytes() == before  # the user's config is read, never rewritten
    written = b"".join(p.read_bytes() for p in cache.rglob("*") if p.is_file())
    for text in (r.out, r.err, caplog.text, written.decode("latin-1")):
        assert CLIENT_SECRET not in text
    assert CLIENT_ID not in written.decode("latin-1")  # the manifest names no credential


def test_bad_credentials_and_settings_are_one_line_errors(sh_env, run_cli, monkeypatch, tmp_path):
    args = ["fetch", "--aoi", "-98.6,37,-98.4,37.1", "--resolution", "0.05", "--size", "32"]
    with FakeServices() as fake:
        monkeypatch.setenv("SH_CLIENT_SECRET", "wrong-secret-XYZ")
        r = run_cli(*args, "--source", sh_spec(fake), "--cache", tmp_path / "a.zarr")
        assert r.code == 2 and "rejected the credentials" in r.err
        assert "wrong-secret-XYZ" not in r.err + r.out and r.err.count("\n") == 1
        monkeypatch.delenv("SH_CLIENT_SECRET")
        r = run_cli(*args, "--source", sh_spec(fake), "--cache", tmp_path / "b.zarr")
        assert r.code == 2 and "credentials missing" in r.err
        r = run_cli(*args, "--source", "sentinelhub:nosuch", "--cache", tmp_path / "c.zarr")
        assert r.code == 2 and "nosuch" in r.err
    assert not (sh_env / ".config").exists()  # nothing was written to the user's home
    for spec, message in [
        ("sentinelhub?time=2023", "START/END"),
        ("sentinelhub?max_cloud=7", "max_cloud"),
        ("sentinelhub?tile_px=9000", "2500"),
        ("sentinelhub?colour=red", "colour"),
        ("stac?time", "key=value"),
        ("landsat", "unknown imagery source"),
    ]:
        with pytest.raises(InputError, match=message):
            open_source(spec)


# a child that runs `fetch` and kills itself (SIGKILL, no clean-up) after writing its fourth
# chunk's patches, before marking it done: the same mid-run place on any machine, however fast
KILLED_AT_FOURTH_MARK = """
import os, signal, sys
from prom3e_geo.stores.patches import PatchCache
from prom3e_geo_cli.main import main

mark, marked = PatchCache.mark_done, []

def mark_or_die(self, chunk):
    if len(marked) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    marked.append(chunk)
    return mark(self, chunk)

PatchCache.mark_done = mark_or_die
sys.argv = ["prom3e-geo", *sys.argv[1:]]
main()
"""


def test_killed_sentinelhub_fetch_resumes_to_an_identical_cache(sh_env, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import zarr

    exe = Path(sys.executable).with_name("prom3e-geo")
    env = dict(os.environ)
    with FakeServices() as fake:
        args = [
            "fetch",
            "--source",
            sh_spec(fake, tile_px=200),
            "--aoi=-98.6,37,-98.2,37.2",
            "--resolution=0.02",
            "--size=32",
            "--chunk=4",
        ]  # 10 x 20 cells in 15 chunks
        reference, cache = tmp_path / "reference.zarr", tmp_path / "patches.zarr"
        subprocess.run([exe, *args, "--cache", reference], check=True, env=env, capture_output=True)
        killed = subprocess.run(
            [sys.executable, "-c", KILLED_AT_FOURTH_MARK, *args, "--cache", cache],
            env=env, capture_output=True,
        )  # fmt: skip
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        assert zarr.open_group(str(cache), mode="r")["chunk_done"][:].sum() == 3
        subprocess.run([exe, *args, "--cache", cache], check=True, env=env, capture_output=True)
    for name in ("patches", "status"):
        a = zarr.open_group(str(cache), mode="r")[name][:]
        b = zarr.open_group(str(reference), mode="r")[name][:]
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert (zarr.open_group(str(reference), mode="r")["status"][:] == 1).all()


# -- STAC -----------------------------------------------------------------------------------


@pytest.fixture
def stac(tmp_path):
    """The fake STAC API with its three scenes (`fake_services.add_stac_scenes`)."""
    with FakeServices(files=tmp_path) as fake:
        add_stac_scenes(fake, tmp_path)
        yield fake


def test_stac_takes_the_least_cloudy_scene_with_data_and_removes_the_offset(stac):
    source = open_source(f"stac:{stac.url}/stac?size={SIZE}&retry_wait=0")
    x = np.array([582_000.0, 592_000.0, 587_000.0, 575_000.0, 620_000.0])
    y = np.array([4_098_000.0, 4_088_000.0, 4_093_000.0, 4_095_000.0, 4_050_000.0])
    lon, lat = Transformer.from_crs(32614, 4326, always_xy=True).transform(x, y)
    batch = source.fetch(lon, lat)
    scenes = [m.get("scene") for m in batch.meta]
    # 0: only A; 1: B (clearer); 2: B is nodata there -> A; 3: only C, above 20 % cloud; 4: none
    assert scenes == ["A", "B", "A", None, None]
    assert batch.valid.tolist() == [True, True, True, False, False]
    assert not batch.patches[~batch.valid].any()  # cells without a patch hold zeros
    assert batch.meta[0]["boa_offset"] == 1000 and batch.meta[1]["boa_offset"] == 0
    for i in range(3):
        _, _, left, top = utm_corner(lon[i], lat[i], 32614)
        np.testing.assert_allclose(batch.patches[i], expected_patch(32614, left, top), atol=1e-6)
    assert "no scene below 20% cloud" in batch.meta[3]["error"]
    # request tiles (24.68 km lattice): {0}, {1, 2, 3}, {4}; each cell read opens its item's
    # three assets: A for 0, B for 1 and 2, A again for 2 (B is nodata there)
    assert source.traffic["searches"] == 3 and source.traffic["asset opens"] == 4 * 3


def test_stac_cells_beyond_a_tiles_share_of_threads_share_asset_handles(stac):
    """With 2 read threads a request tile's cells are read by at most 2 jobs, each opening the
    item's three assets once for all its cells; every patch is still its own window."""
    source = open_source(f"stac:{stac.url}/stac?size={SIZE}&retry_wait=0&workers=2")
    assert source.jobs_per_tile == 2
    x, y = np.meshgrid(np.arange(581_000.0, 585_000.0, 1_000.0), [4_098_000.0, 4_097_000.0])
    lon, lat = Transformer.from_crs(32614, 4326, always_xy=True).transform(x.ravel(), y.ravel())
    batch = source.fetch(np.asarray(lon), np.asarray(lat))
    source.close()
    assert batch.valid.all() and {m["scene"] for m in batch.meta} == {"A"}
    for i in range(8):
        _, _, left, top = utm_corner(lon[i], lat[i], 32614)
        np.testing.assert_allclose(batch.patches[i], expected_patch(32614, left, top), atol=1e-6)
    tiles = source.traffic["searches"]
    assert source.traffic["asset opens"] <= 3 * 2 * tiles < 3 * 8  # not three per cell


def test_stac_search_faults_are_retried(stac):
    stac.stac_faults.extend(["429", "500"])
    source = open_source(f"stac:{stac.url}/stac?size={SIZE}&retry_wait=0")
    lon, lat = Transformer.from_crs(32614, 4326, always_xy=True).transform(582_000.0, 4_098_000.0)
    batch = source.fetch(np.array([lon]), np.array([lat]))
    assert batch.valid.all() and not stac.stac_faults
    assert stac.counts["/stac/search"] == 3


def test_unreachable_stac_api_is_an_input_error_at_the_first_fetch():
    source = open_source("stac:http://127.0.0.1:9/stac?retries=0&timeout=2")  # no request yet
    with pytest.raises(InputError, match="cannot open the STAC API"):
        source.fetch(np.array([-98.0]), np.array([37.0]))


def test_all_bands_come_rgb_first_from_every_source(sh_env, stac, tmp_path):
    from fake_services import OTHER_BAND_DN

    from prom3e_geo.imagery.base import ALL_BANDS

    with FakeServices() as fake:
        rgb = open_source(sh_spec(fake)).fetch(LON[:2], LAT[:2])
        full = open_source(sh_spec(fake, bands="all")).fetch(LON[:2], LAT[:2])
    assert full.patches.shape == (2, SIZE, SIZE, 12) and full.valid.all()
    np.testing.assert_array_equal(full.patches[..., :3], rgb.patches)
    for k, band in enumerate(ALL_BANDS[3:], start=3):
        assert np.allclose(full.patches[..., k], OTHER_BAND_DN[band] / 1e4)

    # local: a 12-band raster in Sentinel-2 file order, band k holding k x 100
    path = tmp_path / "stack.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=200,
        height=200,
        count=12,
        dtype="uint16",
        crs="EPSG:32614",
        transform=Affine(10, 0, 580_000, 0, -10, 4_100_000),
    ) as ds:
        ds.write(np.stack([np.full((200, 200), 100 * (k + 1), "uint16") for k in range(12)]))
    lon, lat = Transformer.from_crs(32614, 4326, always_xy=True).transform(581_000.0, 4_099_000.0)
    batch = open_source(f"local:{path}?bands=all", size=SIZE).fetch(
        np.array([lon]), np.array([lat])
    )
    file_order = (
        "B01",
        "B02",
        "B03",
        "B04",
        "B05",
        "B06",
        "B07",
        "B08",
        "B8A",
        "B09",
        "B11",
        "B12",
    )
    expected = [100 * (file_order.index(b) + 1) / 1e4 for b in ALL_BANDS]
    np.testing.assert_allclose(batch.patches[0].mean(axis=(0, 1)), expected, atol=1e-5)
    rgb_only = tmp_path / "rgb.tif"
    with (
        rasterio.open(path) as src,
        rasterio.open(rgb_only, "w", **{**src.profile, "count": 3}) as dst,
    ):
        dst.write(src.read([1, 2, 3]))
    with pytest.raises(InputError, match="needs 12"):
        open_source(f"local:{rgb_only}?bands=all")
    # STAC: the fake's items have only red/green/blue assets
    source = open_source(f"stac:{stac.url}/stac?size={SIZE}&bands=all")
    lon, lat = Transformer.from_crs(32614, 4326, always_xy=True).transform(582_000.0, 4_098_000.0)
    batch = source.fetch(np.array([lon]), np.array([lat]))
    assert not batch.valid[0] and "lacks asset(s) coastal" in batch.meta[0]["error"]
    with pytest.raises(InputError, match="name 12 asset keys"):
        open_source(f"stac:{stac.url}/stac?bands=all&assets=red,green,blue")
    with pytest.raises(InputError, match="RGB only"):
        open_source("demo?bands=all")
    with pytest.raises(InputError, match="use rgb or all"):
        open_source(sh_spec(fake, bands="nir"))


def test_failed_cells_are_retried_and_an_all_failed_fetch_fails(sh_env, tmp_path, run_cli):
    """Regression: a fetch whose every cell failed (no network, a 500 storm) exited 0, marked
    its chunks done, and a re-run did nothing; now the failed cells stay retryable."""
    import zarr

    cache = tmp_path / "patches.zarr"
    with FakeServices(faults=["500"] * 10_000) as fake:
        args = ["fetch", "--source", sh_spec(fake, attempts=1, rounds=0),
                "--aoi=-98.6,37,-98.2,37.2", "--resolution=0.1", "--cache", cache]  # fmt: skip
        r = run_cli(*args)
        assert r.code == 1 and "every one of the 8 cells failed" in r.err
        assert "re-run to retry them" in r.err and r.err.count("\n") == 1
        assert (zarr.open_group(str(cache), mode="r")["status"][:] == 2).sum() == 8
        r = run_cli(*args, "--no-retry-failed")  # nothing fetched: the same failure, at once
        assert r.code == 1 and "8 cells failed (as in the earlier run)" in r.err
        store = tmp_path / "cube.zarr"
        embed = ["embed", "--source", f"cache:{cache}", "--aoi=-98.6,37,-98.2,37.2",
                 "--resolution=0.1", "--out", store]  # fmt: skip
        r = run_cli(*embed)  # a store without one valid cell is a failed run, not a success
        assert r.code == 1 and "none of the 8 cells" in r.err
        fake.faults.clear()  # the network is back
        r = run_cli(*args)
        assert r.code == 0, r.err
        assert (
            "8 failed cells retried; 8 cells ok" in r.out
            and "8 cells with a patch, 0 failed" in r.out
        )
        fresh = tmp_path / "fresh.zarr"
        assert run_cli(*args[:-1], fresh).code == 0
        r = run_cli(*embed)  # the failed chunks are computed again from the refreshed cache
        assert r.code == 0 and "with failed cells retried" in r.out, r.err
        assert "store: 8 cells valid, 0 without all inputs" in r.out
    a, b = zarr.open_group(str(cache), mode="r"), zarr.open_group(str(fresh), mode="r")
    for name in ("patches", "status", "chunk_done"):
        np.testing.assert_array_equal(a[name][:], b[name][:], err_msg=name)


def test_sentinelhub_at_a_port_that_refuses_fails_fast_with_one_line(sh_env, tmp_path):
    """Regression: with credentials and no network, `fetch --source sentinelhub:cdse` ran 900 s
    silently (the token host lookup retried with sleeps). Here through the installed command,
    against a closed port on 127.0.0.1."""
    import os
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"  # closed again when we leave
    exe = Path(sys.executable).with_name("prom3e-geo")
    started = time.perf_counter()
    r = subprocess.run(
        [exe, "fetch", "--source", f"sentinelhub?base_url={url}&token_url={url}/oauth/token",
         "--aoi=-98.6,37,-98.2,37.2", "--resolution=0.1", "--cache", tmp_path / "p.zarr"],
        capture_output=True, text=True, env=dict(os.environ),
    )  # fmt: skip
    assert time.perf_counter() - started < 30
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "cannot connect" in r.stderr and not (tmp_path / "p.zarr").exists()


def test_sentinelhub_whose_host_does_not_resolve_fails_fast(sh_env, tmp_path, run_cli, monkeypatch):
    """The same without DNS: name resolution fails (simulated here, so that the test sends no
    query to any resolver)."""
    import socket

    import prom3e_geo.imagery.sentinelhub as sentinelhub

    def no_dns(address, timeout=None):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(sentinelhub.socket, "create_connection", no_dns)
    url = "http://services.sentinel-hub.example"
    r = run_cli("fetch", "--source", f"sentinelhub?base_url={url}&token_url={url}/oauth/token",
                "--aoi=-98.6,37,-98.2,37.2", "--resolution=0.1", "--cache", tmp_path / "p.zarr")  # fmt: skip
    assert r.code == 2 and r.err.count("\n") == 1 and "cannot resolve" in r.err
    assert not (tmp_path / "p.zarr").exists()
