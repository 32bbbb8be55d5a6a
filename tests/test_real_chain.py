"""The real chain, run as a user runs it (the installed `prom3e-geo` in a subprocess), against
stand-ins on 127.0.0.1: the hub (`HF_ENDPOINT`), WorldClim's server
(`PROM3E_GEO_WORLDCLIM_URL`) and the STAC API. Every cache lives in the test's folder."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from fake_hub import FakeHub, FakeWorldClim
from fake_tiles import FakeTiles
from hub_repos import (
    CONFIG_REPO,
    REPOS,
    build_repos,
    worldclim_archives,
    worldclim_bands,
    worldclim_tif,
)

from prom3e_geo.encoders.environment import EnvironmentSampler

EXE = Path(sys.executable).with_name("prom3e-geo")
CARDINAL = Path("examples/cardinal.jpg").resolve()
AOI = "-98.08,36.96,-98.0,37.02"  # inside the fake STAC API's scene A (UTM 14N)


def run(env: dict, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(EXE), *map(str, args)], env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture
def user_env(tmp_path):
    """A user's environment with every cache (and HOME) in the test's folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PROM3E_GEO_"))}
    env |= {
        "HOME": str(tmp_path / "home"),
        "XDG_CACHE_HOME": str(tmp_path / "home" / ".cache"),
        "HF_HOME": str(tmp_path / "hf"),
        "PROM3E_GEO_CACHE": str(tmp_path / "prom3e-geo"),
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "PROM3E_GEO_PROGRESS_EVERY": "1000",
    }
    return env


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    return build_repos(tmp_path_factory.mktemp("repos"))


def expected_features(bands: dict[str, np.ndarray]) -> np.ndarray:
    """SINR's scaling, computed here on its own: < -1e6 missing, z-score per band."""
    out = []
    for values in bands.values():
        v = values.astype(np.float64)
        v[v < -1e6] = np.nan
        out.append((v - np.nanmean(v)) / np.nanstd(v))
    return np.stack(out)


# -- WorldClim --------------------------------------------------------------------------------------
def test_env_prepare_downloads_resumes_and_scales_as_sinr(user_env, tmp_path):
    bands = worldclim_bands()
    archives = worldclim_archives(bands)
    with FakeWorldClim(archives) as server:
        server.drop_after["wc2.1_5m_bio.zip"] = len(archives["wc2.1_5m_bio.zip"]) // 2
        env = user_env | {"PROM3E_GEO_WORLDCLIM_URL": server.url}
        r = run(env, "env", "prepare", "--out", tmp_path / "env.tif")
        assert r.returncode == 0, r.stderr
        resumed = [rng for _, path, rng in server.requests if path.endswith("bio.zip") and rng]
        assert resumed and int(resumed[0][6:-1]) > 0  # the second request asked for the rest
    with rasterio.open(tmp_path / "env.tif") as ds:
        assert ds.count == 20 and ds.descriptions[:2] == ("elevation", "bio1")
        assert ds.descriptions[-1] == "bio19" and ds.crs.to_epsg() == 4326
        assert ds.profile["tiled"] and "PROM3E_GEO_ENV_SCALING" in ds.tags()
        got = ds.read(masked=True).filled(np.nan)
    np.testing.assert_allclose(got, expected_features(bands), rtol=1e-5, atol=1e-6, equal_nan=True)
    # the sampler takes the prepared raster as it is (no second standardisation)
    sampler = EnvironmentSampler(tmp_path / "env.tif")
    sample = sampler.sample(np.array([-5.0]), np.array([5.0]))  # row 8, column 17
    np.testing.assert_allclose(sample[0], expected_features(bands)[:, 8, 17], rtol=1e-5)

    # the same GeoTIFFs found in a folder give the same raster; a corrupt archive is refused
    loose = tmp_path / "loose"
    loose.mkdir()
    for name, values in bands.items():
        (loose / name).write_bytes(worldclim_tif(values))
    r = run(user_env, "env", "prepare", "--from", loose, "--out", tmp_path / "again.tif")
    assert r.returncode == 0, r.stderr
    with rasterio.open(tmp_path / "again.tif") as ds:
        np.testing.assert_array_equal(ds.read(masked=True).filled(np.nan), got)

    broken = bytearray(archives["wc2.1_5m_elev.zip"])
    with zipfile.ZipFile(__import__("io").BytesIO(bytes(broken))) as zf:
        info = zf.infolist()[0]
    at = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
    broken[at] ^= 0xFF
    fresh = tmp_path / "fresh-cache"  # nothing downloaded yet
    with FakeWorldClim({**archives, "wc2.1_5m_elev.zip": bytes(broken)}) as server:
        env = user_env | {"PROM3E_GEO_WORLDCLIM_URL": server.url, "PROM3E_GEO_CACHE": str(fresh)}
        r = run(env, "env", "prepare", "--out", tmp_path / "bad.tif")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 1 and "CRC" in r.stderr, r.stderr
    assert not (tmp_path / "bad.tif").exists()
    downloads = fresh / "worldclim" / "downloads"
    assert not list(downloads.glob("wc2.1_5m_elev.zip*"))  # the corrupt download is gone


# -- the whole chain ----------------------------------------------------------------------------
def test_taxabind_map_from_an_empty_cache_then_bit_identical_offline(user_env, repos, tmp_path):
    """The published layout end to end: status, photo, text and recording queries, a map
    without imagery, tags naming every repository@commit, then the same map offline."""
    import soundfile

    recording = tmp_path / "song.wav"
    t = np.arange(48_000 * 3) / 48_000
    soundfile.write(recording, (0.3 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32), 48_000)
    grid = ["--aoi", AOI, "--shape", "2x3"]
    with (
        FakeHub() as hub,
        FakeWorldClim(worldclim_archives(worldclim_bands())) as worldclim,
        FakeTiles() as tiles,
    ):
        commits = {repo_id: hub.add_repo(repo_id, folder) for repo_id, folder in repos.items()}
        env = user_env | {"HF_ENDPOINT": hub.url, "PROM3E_GEO_WORLDCLIM_URL": worldclim.url}
        info = run(env, "weights", "info", "taxabind")
        assert info.returncode == 0, info.stderr
        assert "MVRL/ecosat" in info.stdout and "not downloaded" in info.stdout
        assert "imagery s2cloudless (size 256, resolution 4.0)" in info.stdout
        source = f"s2cloudless?url={tiles.template()}"
        sdm = ["sdm", "--weights", "taxabind", "--source", source, *grid]
        first = run(env, *sdm, "--query", CARDINAL, "--out", tmp_path / "map.tif")
        assert first.returncode == 0, first.stderr
        requests = sum(tiles.counts.values())
        assert requests >= 6  # every cell's patch came from the tiles
        text = run(env, *sdm, "--query", "Cardinalis cardinalis", "--out", tmp_path / "text.tif")
        assert text.returncode == 0, text.stderr
        sound = run(env, *sdm, "--query", recording, "--out", tmp_path / "song.tif")
        assert sound.returncode == 0, sound.stderr
        no_imagery = run(
            env, *sdm, "--context", "loc,env", "--query", CARDINAL, "--out", tmp_path / "le.tif"
        )
        assert no_imagery.returncode == 0, no_imagery.stderr
        assert sum(tiles.counts.values()) == requests  # loc+env asks for no imagery
        info = run(env, "weights", "info", "taxabind")
        assert commits[REPOS["model"]][:12] in info.stdout and "prepared" in info.stdout
    with rasterio.open(tmp_path / "map.tif") as ds:
        tags, online = ds.tags(), ds.read()
    for part in ("model", "sat", "loc", "env", "image"):
        repo_id = REPOS[part]
        assert tags[f"weights_{part}"] == f"{repo_id}@{commits[repo_id]}"
    assert tags["weights_config"] == f"{CONFIG_REPO}@{commits[CONFIG_REPO]}"
    assert tags["imagery_licence"] == "CC BY-NC-SA 4.0" and "EOX" in tags["imagery_attribution"]
    assert np.isfinite(online).sum() == 6 and "demo_world" not in tags
    for name, part in (("text.tif", "text"), ("song.tif", "audio")):
        with rasterio.open(tmp_path / name) as ds:
            assert (
                ds.tags()[f"weights_{part}"]
                == f"{REPOS['image' if part == 'text' else 'audio']}@{commits[REPOS['image' if part == 'text' else 'audio']]}"
            )
            assert np.isfinite(ds.read()).sum() == 6
    with rasterio.open(tmp_path / "le.tif") as ds:
        assert ds.tags()["context"] == "loc+env" and "weights_sat" not in ds.tags()

    # the stand-ins are gone; the same command, offline, from the caches
    offline = run(
        user_env | {"HF_HUB_OFFLINE": "1"},
        *sdm,
        "--query",
        CARDINAL,
        "--out",
        tmp_path / "again.tif",
    )
    assert offline.returncode == 0, offline.stderr
    with rasterio.open(tmp_path / "again.tif") as ds:
        assert ds.read().tobytes() == online.tobytes()
        assert {k: v for k, v in ds.tags().items() if k.startswith("weights_")} == {
            k: v for k, v in tags.items() if k.startswith("weights_")
        }
    assert not (tmp_path / "home").exists() or not any((tmp_path / "home").rglob("*.safetensors"))


def test_weights_info_is_a_status_even_offline_with_an_empty_cache(user_env):
    r = run(user_env | {"HF_HUB_OFFLINE": "1"}, "weights", "info", "taxabind")
    assert r.returncode == 0, r.stderr
    assert "MVRL/ProM3E" in r.stdout and "MVRL/taxabind-config" in r.stdout
    assert (
        r.stdout.count("not downloaded") == 2 and "prom3e-geo weights download taxabind" in r.stdout
    )
    demo = run(user_env, "weights", "info", "demo")
    assert demo.returncode == 0, demo.stderr
    assert all(f"  {m} " in demo.stdout for m in ("model", "image", "sat", "loc", "env", "text"))


def test_a_hub_that_keeps_failing_exits_1_naming_the_repository(user_env, repos, tmp_path):
    with FakeHub() as hub:
        hub.add_repo(REPOS["model"], repos[REPOS["model"]])
        hub.api_500 = 1000
        r = run(
            user_env | {"HF_ENDPOINT": hub.url},
            "sdm", "--model", REPOS["model"], "--query", CARDINAL, *["--aoi", AOI, "--shape", "2x3"],
            "--out", tmp_path / "m.tif",
        )  # fmt: skip
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "MVRL/ProM3E" in r.stderr and "HTTP 500" in r.stderr and "internal error" not in r.stderr
    assert not (tmp_path / "m.tif").exists()


def test_weights_download_fetches_every_part_then_works_offline(user_env, repos, tmp_path):
    with FakeHub() as hub, FakeWorldClim(worldclim_archives(worldclim_bands())) as worldclim:
        for repo_id, folder in repos.items():
            hub.add_repo(repo_id, folder)
        env = user_env | {"HF_ENDPOINT": hub.url, "PROM3E_GEO_WORLDCLIM_URL": worldclim.url}
        r = run(env, "weights", "download", "taxabind")
        assert r.returncode == 0, r.stderr
    assert all(repo_id in r.stdout for repo_id in REPOS.values())
    assert "openai/clip-vit-base-patch16" not in r.stdout  # the release ships its tokenizer
    r = run(user_env | {"HF_HUB_OFFLINE": "1"}, "weights", "info", "taxabind")
    assert r.returncode == 0 and "not downloaded" not in r.stdout, r.stdout + r.stderr


# -- bad input ----------------------------------------------------------------------------------
def test_bad_weights_are_one_line_errors_and_write_nothing(user_env, repos, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    typo = tmp_path / "preset.yaml"
    typo.write_text("model: MVRL/ProM3E\nencoder:\n  loc: geoclip\n")
    with FakeHub() as hub:
        hub.add_repo(REPOS["model"], repos[REPOS["model"]])
        online = user_env | {"HF_ENDPOINT": hub.url}
        cases = [
            (online, ["sdm", "--weights", "nosuch"], "unknown model preset 'nosuch'"),
            (online, ["sdm", "--model", "MVRL/no-such-model"], "MVRL/no-such-model: no such repository"),
            (online, ["sdm", "--weights", typo], "unknown key 'encoder' (did you mean 'encoders'?)"),
            (user_env | {"HF_HUB_OFFLINE": "1"}, ["sdm", "--weights", "taxabind"], "`prom3e-geo weights download taxabind`"),
            (user_env | {"HF_HUB_OFFLINE": "1"}, ["sdm", "--model", "MVRL/ProM3E"], "run the same command on a machine with internet"),
            (user_env | {"HF_HUB_OFFLINE": "1"}, ["weights", "download", "taxabind"], "HF_HUB_OFFLINE is set"),
            (online, ["weights", "info", "nosuch"], "unknown weights preset 'nosuch'"),
        ]  # fmt: skip
        for env, args, message in cases:
            if args[0] == "sdm":
                args = [
                    *args,
                    "--query",
                    CARDINAL,
                    "--aoi",
                    AOI,
                    "--shape",
                    "2x3",
                    "--out",
                    out / "m.tif",
                ]
            r = run(env, *args)
            assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, (
                args,
                r.stderr,
            )
    assert not list(out.iterdir())


def test_a_preset_recipe_names_its_parts_and_maps_with_them(user_env, repos, tmp_path):
    bands = worldclim_bands()
    loose = tmp_path / "worldclim"
    loose.mkdir()
    for name, values in bands.items():
        (loose / name).write_bytes(worldclim_tif(values))
    assert (
        run(user_env, "env", "prepare", "--from", loose, "--out", tmp_path / "env.tif").returncode
        == 0
    )
    recipe = tmp_path / "mine.yaml"
    recipe.write_text(
        f"model: {REPOS['model']}\nencoders:\n  loc: geoclip\n  env: hf-hub:{REPOS['env']}\n"
        f"env_raster: {tmp_path / 'env.tif'}\nsource: local:{tmp_path}\n"
    )
    with FakeHub() as hub:
        commits = {r: hub.add_repo(r, repos[r]) for r in (REPOS["model"], REPOS["env"])}
        env = user_env | {"HF_ENDPOINT": hub.url}
        info = run(env, "weights", "info", recipe)
        assert info.returncode == 0 and "geoclip" in info.stdout and REPOS["env"] in info.stdout
        r = run(env, "embed", "--weights", recipe, "--context", "loc,env", "--aoi", AOI,
                "--shape", "2x3", "--out", tmp_path / "store.zarr")  # fmt: skip
        assert r.returncode == 0, r.stderr
    # the stand-in is gone: the store's pipeline is rebuilt from the cache
    r = run(user_env | {"HF_HUB_OFFLINE": "1"}, "uncertainty", "--embeddings", tmp_path / "store.zarr",
            "--context", "loc", "--out", tmp_path / "sigma.tif")  # fmt: skip
    assert r.returncode == 0, r.stderr
    with rasterio.open(tmp_path / "sigma.tif") as ds:
        tags = ds.tags()
        assert np.isfinite(ds.read(1)).sum() == 6
    assert tags["weights_model"] == f"{REPOS['model']}@{commits[REPOS['model']]}"
    assert tags["weights_env"] == f"{REPOS['env']}@{commits[REPOS['env']]}"
    assert "weights_loc" not in tags  # geoclip: the installed wheel, not the hub
