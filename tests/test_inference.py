"""Grid inference and the map layers on the shipped demo world."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
import zarr

from prom3e_geo.errors import InputError
from prom3e_geo.stores.embeddings import open_store
from prom3e_geo.stores.grid_store import read_manifest
from tests.helpers import assert_png_shows_a_picture

EXE = Path(sys.executable).with_name("prom3e-geo")
ROOT = Path(__file__).resolve().parents[1]
CARDINAL = ROOT / "examples" / "cardinal.jpg"
SMALL = [
    "--aoi",
    "-100,33,-88,39",
    "--resolution",
    "0.25",
    "--chunk",
    "8",
]  # 24 x 48 cells, 18 chunks


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PROM3E_GEO_CACHE", str(tmp_path / "cache"))


def _arrays(path):
    g = zarr.open_group(str(path), mode="r")
    return {
        name: np.asarray(g[name][:])
        for name in ("mu", "sigma_l1", "recon_image", "ctx_loc", "valid", "chunk_done")
    }


def _assert_same_store(a, b):
    x, y = _arrays(a), _arrays(b)
    for name in x:
        np.testing.assert_array_equal(x[name], y[name], err_msg=name)


@pytest.fixture(scope="module")
def reference_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "cube.zarr"
    subprocess.run([EXE, "embed", *SMALL, "--out", out], check=True, capture_output=True)
    return out


def test_embed_writes_a_complete_georeferenced_store(reference_store):
    ds = open_store(reference_store)
    assert ds.rio.crs.to_epsg() == 4326
    assert ds["mu"].shape[:2] == (24, 48) and ds["recon_image"].shape[-1] == 512
    manifest = read_manifest(reference_store)
    assert manifest["model"] == "demo" and manifest["context"] == ["sat", "loc", "env"]
    assert len(manifest["model_sha256"]) == 64
    valid = np.asarray(ds["valid"].values, bool)
    assert valid.sum() == np.asarray(ds["aoi"].values, bool).sum() > 0
    assert np.isfinite(np.asarray(ds["sigma_l1"].values)[valid]).all()
    norms = np.linalg.norm(np.asarray(ds["recon_image"].values, dtype=np.float32)[valid], axis=-1)
    np.testing.assert_allclose(norms, 1.0, atol=2e-3)  # float16 storage


# a child that runs `embed` and kills itself (SIGKILL, no clean-up) as it starts writing its
# fourth chunk: a hard kill mid-run at the same place on any machine, however fast
KILLED_AT_FOURTH_CHUNK = """
import os, signal, sys
from prom3e_geo.stores.embeddings import EmbeddingStore
from prom3e_geo_cli.main import main

write, written = EmbeddingStore.write, []

def write_then_die(self, result):
    if len(written) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    written.append(result.chunk)
    return write(self, result)

EmbeddingStore.write = write_then_die
sys.argv = ["prom3e-geo", "embed", *sys.argv[1:]]
main()
"""


def test_killed_embed_resumes_to_the_same_store(reference_store, tmp_path):
    out = tmp_path / "cube.zarr"
    args = [*map(str, SMALL), "--out", str(out)]
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_AT_FOURTH_CHUNK, *args], capture_output=True
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    done = zarr.open_group(str(out), mode="r")["chunk_done"][:].sum()
    assert done == 3, "killed mid-run, after three chunks"
    with pytest.raises(InputError, match="incomplete"):
        open_store(out)
    rerun = subprocess.run([EXE, "embed", *SMALL, "--out", out], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{done} already done" in rerun.stdout
    _assert_same_store(out, reference_store)


def test_dask_workers_give_the_same_store(reference_store, tmp_path):
    """Two Dask workers: the store of a plain run. The command's entry point runs in a Python
    that then reports its environment: distributed wrote `OMP_NUM_THREADS=1` (and MKL's,
    OpenBLAS's) into it before spawning the workers and never took it back, so whatever that
    process ran next computed on one thread; the run now leaves the environment as it found it."""
    import os

    out = tmp_path / "cube.zarr"
    script = (
        "import os, sys\n"
        "from prom3e_geo_cli.main import main\n"
        f"sys.argv = ['prom3e-geo', 'embed', *{SMALL!r}, '--workers', '2', '--out', {str(out)!r}]\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
        "print('after:', sorted(k for k in os.environ if k.endswith('_NUM_THREADS')))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "after: []", r.stdout
    _assert_same_store(out, reference_store)


def test_deeper_prefetch_gives_the_same_store(tmp_path):
    """40-cell batches (two per chunk, the second short), gathered one ahead or three ahead on
    threads: the same values."""
    stores = []
    for prefetch in ("1", "3"):
        out = tmp_path / f"cube{prefetch}.zarr"
        r = subprocess.run(
            [EXE, "embed", *SMALL, "--prefetch", prefetch, "--batch-size", "40", "--out", out],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr
        stores.append(out)
    _assert_same_store(*stores)


def test_bf16_and_float32_stores_agree_and_do_not_mix(tmp_path, run_cli):
    """`--precision bf16` (what `auto` picks on CUDA) against float32: the same maps to within
    bf16 rounding, unit reconstructions, and a store of one precision is never finished in the
    other."""
    stores = {}
    for precision in ("float32", "bf16"):
        out = tmp_path / f"{precision}.zarr"
        r = run_cli("embed", *SMALL, "--precision", precision, "--out", out)
        assert r.code == 0, r.err
        assert read_manifest(out)["precision"] == precision
        stores[precision] = _arrays(out)
    ref, low = stores["float32"], stores["bf16"]
    valid = ref["valid"]
    np.testing.assert_array_equal(valid, low["valid"])
    a, b = (s["recon_image"][valid].astype(np.float32) for s in (ref, low))
    np.testing.assert_allclose(np.linalg.norm(b, axis=-1), 1.0, atol=2e-3)  # float16 storage
    cosine = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    assert cosine.min() > 0.998 and np.median(cosine) > 0.9995  # measured: 0.9996, 0.9998
    sigma_a, sigma_b = ref["sigma_l1"][valid], low["sigma_l1"][valid]
    assert np.abs(sigma_b / sigma_a - 1).max() < 0.002  # measured: 0.0002
    r = run_cli("embed", *SMALL, "--precision", "float32", "--out", tmp_path / "bf16.zarr")
    assert r.code == 2 and "refusing to mix runs" in r.err and "precision" in r.err


def test_precision_choices():
    import torch

    from prom3e_geo.runtime import resolve_precision

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision("auto", cpu) == "float32"
    assert resolve_precision("auto", cuda) == "bf16"
    assert resolve_precision("bf16", cpu) == "bf16"
    assert resolve_precision("float32", cuda) == "float32"
    with pytest.raises(InputError, match="unknown precision"):
        resolve_precision("fp8", cpu)


def test_a_store_from_another_run_is_refused(reference_store, run_cli):
    r = run_cli("embed", *SMALL, "--context", "loc", "--out", reference_store)
    assert r.code == 2 and "refusing to mix runs" in r.err and "context" in r.err


def test_sdm_cog_has_the_contract_bands_nodata_crs_and_tags(reference_store, tmp_path, run_cli):
    out = tmp_path / "map.tif"
    r = run_cli(
        "sdm",
        "--query",
        CARDINAL,
        "--embeddings",
        reference_store,
        "--threshold",
        "0.2",
        "--rescale",
        "--out",
        out,
        "--zarr",
        tmp_path / "map.zarr",
        "--png",
        tmp_path / "map.png",
    )
    assert r.code == 0, r.err
    with rasterio.open(out) as ds:
        assert ds.descriptions == ("cardinal", "presence")
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert ds.crs.to_epsg() == 4326 and np.isnan(ds.nodata)
        tags = ds.tags()
        similarity = ds.read(1, masked=True)
        presence = ds.read(2, masked=True)
    assert tags["model"] == "demo" and len(tags["model_sha256"]) == 64
    assert "SYNTHETIC" in tags["demo_world"] and tags["threshold"] == "0.2"
    assert "[0, 1]" in tags["rescaled"]
    assert tags["query_cardinal_sha256"] and tags["context"] == "sat+loc+env"
    assert similarity.min() == 0.0 and similarity.max() == 1.0
    np.testing.assert_array_equal(
        presence.filled(-1)[~similarity.mask], (similarity.compressed() >= 0.2).astype(float)
    )
    zarr_ds = xr.open_zarr(tmp_path / "map.zarr", decode_coords="all")
    assert set(zarr_ds.data_vars) == {"cardinal", "presence"} and zarr_ds.rio.crs.to_epsg() == 4326


def test_species_name_queries_and_hybrid_mode(reference_store, tmp_path, run_cli):
    r = run_cli(
        "sdm",
        "--query",
        "northern cardinal",
        "--query",
        CARDINAL,
        "--embeddings",
        reference_store,
        "--mode",
        "hybrid",
        "--delta",
        "0.3",
        "--out",
        tmp_path / "map.tif",
    )
    assert r.code == 0, r.err
    with rasterio.open(tmp_path / "map.tif") as ds:
        assert ds.descriptions == ("northern_cardinal", "cardinal")
        assert ds.tags()["delta"] == "0.3" and ds.tags()["mode"] == "hybrid"
        a, b = ds.read(1, masked=True), ds.read(2, masked=True)
    assert np.corrcoef(a.compressed(), b.compressed())[0, 1] > 0.5  # name and photo agree


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.jpg", "does not exist"),
        (
            lambda d: (d / "notes.jpg").write_text("not an image") and d / "notes.jpg",
            "not an image",
        ),
        (
            lambda d: (d / "cut.jpg").write_bytes(CARDINAL.read_bytes()[:600]) and d / "cut.jpg",
            "truncated or corrupt",
        ),
        (
            lambda d: (
                (d / "song.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt ") and d / "song.wav"
            ),
            "no audio encoder for recording queries",
        ),
        (lambda d: "unicorn", "no species 'unicorn'"),
    ],
)
def test_bad_queries_exit_2_without_output(reference_store, tmp_path, run_cli, make, message):
    query = make(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    r = run_cli(
        "sdm", "--query", query, "--embeddings", reference_store, "--out", tmp_path / "map.tif"
    )
    assert r.code == 2 and message in r.err and r.err.count("\n") == 1, r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_uncertainty_and_compare(reference_store, tmp_path, run_cli):
    r = run_cli("uncertainty", "--embeddings", reference_store, "--out", tmp_path / "sigma.tif")
    assert r.code == 0, r.err
    with rasterio.open(tmp_path / "sigma.tif") as ds:
        assert ds.descriptions == ("sigma_l1",)
        sigma = ds.read(1, masked=True)
    assert sigma.count() > 0 and sigma.min() > 0
    obs = ROOT / "examples" / "observations.csv"
    r = run_cli("diversity", "--observations", obs, *SMALL[:4], "--out", tmp_path / "div.tif")
    assert r.code == 0, r.err
    r = run_cli(
        "compare",
        "--uncertainty",
        tmp_path / "sigma.tif",
        "--diversity",
        tmp_path / "div.tif",
        "--png",
        tmp_path / "cmp.png",
    )
    assert r.code == 0, r.err
    assert "sigma_l1 vs shannon" in r.out and "Spearman" in r.out
    assert_png_shows_a_picture(tmp_path / "cmp.png")
    r = run_cli("compare", "--uncertainty", tmp_path / "sigma.tif", "--diversity", CARDINAL)
    assert r.code == 2


def test_the_example_notebook_runs(tmp_path):
    """From a folder outside the repository (regression: it found examples/cardinal.jpg only
    from the root or examples/), with its default output folder there."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "examples" / "explore.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    out = tmp_path / "notebook-out"
    assert (out / "similarity.png").exists() and (out / "sigma.png").exists()
    outputs = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "Spearman(sigma_l1, Shannon)" in outputs


def test_qgis_styles_are_valid_xml():
    import xml.etree.ElementTree as ET

    for path in (ROOT / "examples" / "qgis").glob("*.qml"):
        renderer = ET.parse(path).getroot().find("pipe/rasterrenderer")
        assert renderer is not None and renderer.get("type") == "singlebandpseudocolor", path
        assert len(renderer.findall(".//colorrampshader/item")) >= 2


def test_sdm_from_a_store_uses_the_stores_model_and_refuses_another(tmp_path, run_cli):
    """Regression: `sdm --embeddings` inverted the queries with the CLI's --model (default demo)
    whatever model made the store, and tagged the map with the store's model."""
    import torch

    from prom3e_geo.model.checkpoint import save_prom3e
    from prom3e_geo.plugins.demo.build import load_demo

    model = load_demo().prom3e
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    other = save_prom3e(model, tmp_path / "other.safetensors")
    grid = ["--aoi", "-100,33,-96,36", "--resolution", "0.25", "--context", "loc"]
    encoders = ["--loc-encoder", "demo", "--image-encoder", "demo"]
    store = tmp_path / "other.zarr"
    r = run_cli("embed", *grid, "--model", other, *encoders, "--out", store)
    assert r.code == 0, r.err
    hybrid = ["sdm", "--query", CARDINAL, "--mode", "hybrid"]
    assert run_cli(*hybrid, "--embeddings", store, "--out", tmp_path / "a.tif").code == 0
    r = run_cli(*hybrid, *grid, "--model", other, *encoders, "--out", tmp_path / "b.tif")
    assert r.code == 0, r.err
    assert run_cli(*hybrid, *grid, "--out", tmp_path / "demo.tif").code == 0
    with (
        rasterio.open(tmp_path / "a.tif") as a,
        rasterio.open(tmp_path / "b.tif") as b,
        rasterio.open(tmp_path / "demo.tif") as d,
    ):
        np.testing.assert_array_equal(a.read(), b.read())
        assert np.nanmax(np.abs(a.read() - d.read())) > 1e-3  # the models' maps differ
        assert a.tags()["model"] == str(other) and d.tags()["model"] == "demo"
    r = run_cli(*hybrid, "--embeddings", store, "--model", "demo", "--out", tmp_path / "c.tif")
    assert r.code == 2 and "computed with model" in r.err and not (tmp_path / "c.tif").exists()


def test_a_failed_patch_invalidates_only_the_sat_input_of_its_cell(tmp_path, run_cli):
    """Regression: the store's single `valid` mixed modalities, so a cell whose patch failed was
    NaN in a location-only uncertainty map, which needs no patch."""
    cache = tmp_path / "patches.zarr"
    half = ["--aoi", "-100,33,-98,36", "--resolution", "0.25"]
    assert run_cli("fetch", "--source", "demo", *half, "--cache", cache).code == 0
    store = tmp_path / "cube.zarr"
    grid = ["--aoi", "-100,33,-96,36", "--resolution", "0.25"]  # the eastern half has no patch
    r = run_cli("embed", *grid, "--source", f"cache:{cache}", "--out", store)
    assert r.code == 0, r.err
    ds = xr.open_zarr(store)
    x = ds["x"].values
    sat_ok = ds["valid_sat"].values.astype(bool)
    assert sat_ok[:, x < -98].all() and not sat_ok[:, x > -98].any()
    assert ds["valid_loc"].values.all() and ds["valid_env"].values.all()
    for context, name in (("loc", "loc.tif"), ("sat,loc,env", "all.tif")):
        r = run_cli("uncertainty", "--embeddings", store, "--context", context, "--out",
                    tmp_path / name)  # fmt: skip
        assert r.code == 0, r.err
    with rasterio.open(tmp_path / "loc.tif") as loc, rasterio.open(tmp_path / "all.tif") as full:
        loc_sigma, full_sigma = loc.read(1), full.read(1)
    assert np.isfinite(loc_sigma).all()  # every cell has a location
    assert np.isfinite(full_sigma[:, x < -98]).all() and np.isnan(full_sigma[:, x > -98]).all()


def test_a_failing_dask_task_closes_the_local_cluster(monkeypatch, small_grid, tmp_path):
    """Regression: the LocalCluster was closed only after every task succeeded."""
    import dask.distributed

    from prom3e_geo.engine import runner
    from prom3e_geo.engine.spec import PipelineSpec

    events = []

    class Cluster:
        def __init__(self, **kwargs):
            events.append("started")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            events.append("closed")

    class Client:
        def __init__(self, address, **kwargs):
            assert isinstance(address, Cluster)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            events.append("client closed")

        def submit(self, fn, *args, **kwargs):
            return self

        def result(self):
            raise RuntimeError("a worker died")

    monkeypatch.setattr(dask.distributed, "LocalCluster", Cluster)
    monkeypatch.setattr(dask.distributed, "Client", Client)
    monkeypatch.setattr(dask.distributed, "as_completed", iter)
    spec = PipelineSpec(context=("loc",))
    with pytest.raises(RuntimeError, match="a worker died"):
        runner.embed_grid(spec, small_grid, tmp_path / "cube.zarr", workers=2)
    assert events == ["started", "client closed", "closed"]


def test_the_grid_chunk_default_is_one_number():
    """Regression: Python grids were chunked 128 x 128 and CLI grids 64 x 64, so stores made by
    each were never shared."""
    from prom3e_geo.grid import DEFAULT_CHUNK, build_grid
    from prom3e_geo.workflows.specs import GridSpec

    assert build_grid(aoi="-100,38,-98,39").chunk_shape == DEFAULT_CHUNK
    assert GridSpec(aoi="-100,38,-98,39").build().chunk_shape == DEFAULT_CHUNK
    help_text = subprocess.run([EXE, "embed", "--help"], capture_output=True, text=True).stdout
    assert f"(default {DEFAULT_CHUNK[0]})" in " ".join(help_text.split())


def test_compare_judges_uncertainty_by_the_maps_error_against_the_truth(tmp_path, run_cli):
    from prom3e_geo.layers.compare import map_error

    np.testing.assert_allclose(
        map_error(np.array([2.0, 4.0, 6.0, np.nan]), np.array([0.0, 1.0, 1.0, 1.0])),
        [0.0, 0.5, 0.0, np.nan],
    )
    grid = ["--aoi", "-100,33,-90,40", "--resolution", "0.5"]
    for command in (
        ["sdm", "--query", CARDINAL, *grid, "--out", tmp_path / "map.tif"],
        ["uncertainty", *grid, "--out", tmp_path / "sigma.tif"],
        ["demo", "truth", "--species", "northern cardinal", *grid, "--out", tmp_path / "t.tif"],
    ):
        r = run_cli(*command)
        assert r.code == 0, r.err
    r = run_cli("compare", "--uncertainty", tmp_path / "sigma.tif", "--diversity",
                tmp_path / "map.tif", "--y-band", "1", "--truth", tmp_path / "t.tif")  # fmt: skip
    assert r.code == 0, r.err
    assert "sigma_l1 vs error of cardinal against in_range" in r.out
    with (
        rasterio.open(tmp_path / "sigma.tif") as s,
        rasterio.open(tmp_path / "map.tif") as m,
        rasterio.open(tmp_path / "t.tif") as t,
    ):
        sigma, error = s.read(1), map_error(m.read(1).astype(float), t.read(1))
        assert t.tags()["demo_world"].startswith("SYNTHETIC")
    ok = np.isfinite(sigma) & np.isfinite(error)
    from scipy.stats import spearmanr

    expected = spearmanr(sigma[ok], error[ok]).statistic
    assert f"Spearman {expected:.3f}" in r.out
    r = run_cli("demo", "truth", "--species", "dodo", *grid, "--out", tmp_path / "d.tif")
    assert r.code == 2 and "no species 'dodo'" in r.err


@pytest.mark.parametrize("moment", ["staging folder", "store folder"])
def test_a_store_killed_as_its_folder_appears_is_resumed(tmp_path, moment):
    """Regression: a store killed between creating its folder and writing its manifest was
    broken for good ("not a prom3e-geo store (no manifest)"). Stores are now built under a
    temporary name and renamed; a kill at either moment leaves a store the next run finishes,
    and no leftover."""
    out = tmp_path / "cube.zarr"
    args = [EXE, "embed", *SMALL, "--context", "loc", "--out", out]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        staging = list(tmp_path.glob(".cube.zarr.partial-*"))
        if staging if moment == "staging folder" else out.exists():
            break
        time.sleep(0.001)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    rerun = subprocess.run(args, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert read_manifest(out)["context"] == ["loc"] and open_store(out)["valid"].values.any()
    assert not list(tmp_path.glob(".*")), list(tmp_path.glob(".*"))


def test_a_skeleton_without_a_manifest_from_an_older_run_is_replaced(tmp_path, run_cli):
    """What the old creation order left after a kill: a Zarr group with no manifest and no
    finished chunk. It is replaced, not refused; a Zarr group with data is never touched."""
    out = tmp_path / "cube.zarr"
    group = zarr.open_group(str(out), mode="w", zarr_format=2)
    group.create_array("chunk_done", shape=(3, 6), dtype="uint8", fill_value=None)
    r = run_cli("embed", *SMALL, "--context", "loc", "--out", out)
    assert r.code == 0, r.err
    assert read_manifest(out)["context"] == ["loc"]
    other = tmp_path / "theirs.zarr"
    zarr.open_group(str(other), mode="w", zarr_format=2).create_array(
        "chunk_done", shape=(3, 6), dtype="uint8", fill_value=None
    )[:] = 1
    r = run_cli("embed", *SMALL, "--context", "loc", "--out", other)
    assert r.code == 2 and "not a prom3e-geo store" in r.err


def test_progress_lines_in_logs_and_quiet(tmp_path):
    """Regression: with its output going to a log, a cold sdm printed nothing for minutes. A
    line every PROM3E_GEO_PROGRESS_EVERY seconds (0 here: every update), the grid before long
    work, nothing with --quiet, and nothing for a run shorter than the interval."""
    import os

    args = [EXE, "sdm", "--query", CARDINAL, *SMALL, "--context", "loc"]
    every = {**os.environ, "PROM3E_GEO_PROGRESS_EVERY": "0"}
    r = subprocess.run([*args, "--out", tmp_path / "a.tif"], capture_output=True, text=True,
                       env=every)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "prom3e-geo: grid: aoi=bbox(-100,33,-88,39)" in r.stderr  # a store is built: long work
    assert "18 of 18 chunks to compute" in r.stderr
    assert "grid chunks: 9/18 chunks (50%)" in r.stderr and "grid chunks: 18/18" in r.stderr
    assert "cardinal: min" in r.stdout  # the summary
    r = subprocess.run([*args, "--out", tmp_path / "b.tif"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == ""  # store cached, shorter than 10 s: quiet
    r = subprocess.run([EXE, "--quiet", *args[1:], "--out", tmp_path / "c.tif"],
                       capture_output=True, text=True, env=every)  # fmt: skip
    assert r.returncode == 0 and r.stderr == "" and "cardinal: min" in r.stdout


def test_cache_list_and_clean(tmp_path, run_cli):
    grid = ["--aoi", "-100,35,-99,36", "--resolution", "0.5", "--context", "loc"]
    assert run_cli("uncertainty", *grid, "--out", tmp_path / "s.tif").code == 0
    r = run_cli("cache", "list")
    assert (
        r.code == 0 and "1 store(s)" in r.out and "demo  sat+loc+env  bbox(-100,35,-99,36)" in r.out
    )
    stores = list((tmp_path / "cache" / "stores").glob("*.zarr"))
    assert len(stores) == 1
    r = run_cli("cache", "clean", "--older-than", "1")  # used just now: kept
    assert r.code == 0 and "removed 0 store(s)" in r.out and stores[0].exists()
    r = run_cli("cache", "clean")
    assert r.code == 0 and "removed 1 store(s)" in r.out and not stores[0].exists()
