"""The second round of edges, through the installed command: inputs checked before any work,
damaged compressed files, memory, output names, faults mid-run, provenance and hints. Each
test is a regression: the run was silently wrong, slow to fail, or failed with a traceback."""

from __future__ import annotations

import errno
import gzip
import os
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import pytest
import rasterio

EXE = Path(sys.executable).with_name("prom3e-geo")
ROOT = Path(__file__).resolve().parents[1]
CARDINAL = ROOT / "examples" / "cardinal.jpg"
OBSERVATIONS = ROOT / "examples" / "observations.csv"
DEMO_WEIGHTS = ROOT / "prom3e_geo" / "plugins" / "demo" / "data" / "prom3e.safetensors"
SMALL = ["--aoi", "-100,35,-99,36", "--resolution", "0.5"]


def run(*args, env=None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [EXE, *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


@pytest.fixture
def cli(run_cli, monkeypatch):
    """`cli(in_process, *args, env=...)`: the installed command as a subprocess, or (for the
    variants of a case whose first form already ran as a process) the same entry point in
    this process, which is faster."""

    def call(in_process: bool, *args, env=None) -> subprocess.CompletedProcess:
        if not in_process:
            return run(*args, env=env)
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        result = run_cli(*args)
        return subprocess.CompletedProcess(args, result.code, result.out, result.err)

    return call


def one_line_error(done: subprocess.CompletedProcess, code: int, *words: str) -> str:
    """The run exited `code` with exactly one line on stderr, holding `words`; returns it."""
    assert done.returncode == code, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# -- 4 and 11: queries are read before a store is computed ------------------------------------
def _queries(folder: Path) -> dict[str, tuple[str, str]]:
    (folder / "photos").mkdir(parents=True)
    (folder / "not-a-photo.jpg").write_text("hello")
    with wave.open(str(folder / "broken.wav"), "wb") as w:  # a header, then garbage
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(b"\0\0" * 100)
    (folder / "broken.wav").write_bytes((folder / "broken.wav").read_bytes()[:20])
    return {
        "missing": ("nope.jpg", "does not exist"),
        "folder": (str(folder / "photos"), "is a folder"),
        "empty": ("", "is empty"),
        "not an image": (str(folder / "not-a-photo.jpg"), "not an image file"),
        "no audio tower": (str(folder / "broken.wav"), "no audio encoder"),
    }


@pytest.mark.parametrize(
    ("case", "in_process"),
    [("missing", False), ("folder", False), ("empty", True), ("not an image", True),
     ("no audio tower", True)],
)  # fmt: skip
def test_a_bad_query_exits_2_before_any_store_is_built(tmp_path, cli, case, in_process):
    query, words = _queries(tmp_path)[case]
    cache = tmp_path / "cache"
    done = cli(
        in_process, "sdm", "--query", query, *SMALL, "--out", tmp_path / "map.tif",
        env={"PROM3E_GEO_CACHE": str(cache)},
    )  # fmt: skip
    one_line_error(done, 2, words)
    assert not list(cache.rglob("*.zarr")), "a store was computed before the query was checked"
    assert not (tmp_path / "map.tif").exists()


def test_a_bad_calibration_exits_2_before_any_store_is_built(tmp_path, cli):
    (tmp_path / "bad.cal").write_text("hello")
    cache = tmp_path / "cache"
    done = cli(
        True, "uncertainty", "--calibration", tmp_path / "bad.cal", *SMALL,
        "--out", tmp_path / "s.tif", env={"PROM3E_GEO_CACHE": str(cache)},
    )  # fmt: skip
    one_line_error(done, 2, "calibration", "cannot be read")
    assert not list(cache.rglob("*.zarr"))


def test_queries_are_checked_by_the_library_too(tmp_path):
    from prom3e_geo.errors import InputError
    from prom3e_geo.layers.sdm import check_queries, query_kind

    assert query_kind(str(CARDINAL)) == "image"
    assert query_kind("northern cardinal") == "text"
    with pytest.raises(InputError, match="is a folder"):
        check_queries([str(tmp_path)])
    with pytest.raises(InputError, match="distinct names"):
        check_queries([str(CARDINAL), str(CARDINAL)])
    _queries(tmp_path / "q")
    with pytest.raises(InputError, match="cannot be decoded"):
        check_queries([str(tmp_path / "q" / "broken.wav")])


# -- 5: damaged compressed observation files ----------------------------------------------------
def _damaged(folder: Path) -> dict[str, Path]:
    small = gzip.compress(OBSERVATIONS.read_bytes())
    lines = OBSERVATIONS.read_bytes().split(b"\n")
    rows = lines[0] + b"\n" + b"\n".join(lines[1:] * 6)
    assert len(rows) * 3 // 4 > 4 << 20  # damage past the 4 MiB read for the header: the Arrow
    big = gzip.compress(rows, compresslevel=1)  # reader meets it, not Python's gzip
    files = {}
    for name, data in (("small", small), ("big", big)):
        files[f"{name} truncated"] = folder / f"{name}-truncated.csv.gz"
        files[f"{name} truncated"].write_bytes(data[: len(data) * 3 // 4])
        crc = bytearray(data)
        crc[-8] ^= 0xFF  # the CRC-32 in the gzip trailer
        files[f"{name} bad CRC"] = folder / f"{name}-crc.csv.gz"
        files[f"{name} bad CRC"].write_bytes(bytes(crc))
    return files


@pytest.mark.parametrize(
    ("case", "in_process"),
    [("small truncated", False), ("small bad CRC", True), ("big truncated", True),
     ("big bad CRC", False)],
)  # fmt: skip
def test_a_damaged_gzip_is_bad_input(tmp_path, cli, case, in_process):
    """Regression: a truncated .csv.gz exited 130 "interrupted" (the EOFError became click's
    Abort) and a bad CRC exited 1 "internal error"."""
    path = _damaged(tmp_path)[case]
    out = tmp_path / "div.tif"
    done = cli(in_process, "diversity", "--observations", path, "--shape", "20x40", "--out", out)
    one_line_error(done, 2, "truncated or corrupt compressed file", path.name)
    assert not out.exists()


# -- 6: memory ------------------------------------------------------------------------------------
def test_sigma_is_bounded_by_the_grid(tmp_path, cli):
    """Regression: --sigma 1e9 allocated 60 GiB and died with a MemoryError (exit 1)."""
    for sigma in ("1e9", "3e7", "501"):
        done = cli(sigma != "1e9", "diversity", "--observations", OBSERVATIONS, "--sigma", sigma,
                   "--out", tmp_path / "d.tif")  # fmt: skip
        one_line_error(done, 2, "--sigma", "larger than the grid (250x500 cells); at most 500")
    assert not (tmp_path / "d.tif").exists()


@pytest.mark.parametrize(
    ("args", "limit", "words"),
    [
        (["grid", "--shape", "4000x4000"], "200M", ["building the grid", "--resolution"]),
        (
            ["diversity", "--observations", OBSERVATIONS, "--shape", "4000x4000",
             "--png", "{tmp}/d.png"],
            "1G",
            ["diversity with a quicklook", "needs about 2.9 GB", "leave out --png"],
        ),
    ],
)  # fmt: skip
def test_a_run_that_cannot_fit_is_refused_with_the_estimate(tmp_path, args, limit, words):
    args = [str(a).replace("{tmp}", str(tmp_path)) for a in args]
    done = run(*args, "--out", tmp_path / "o.tif", env={"PROM3E_GEO_MEMORY": limit})
    one_line_error(done, 2, "needs about", "is available", *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_estimate_is_checked_against_the_real_memory(tmp_path):
    """Without a cap: a diversity grid of 484 M cells (under the 500 M-cell limit) needs about
    43 GB by the measured 96 bytes a cell, and is refused before the grid is built."""
    import psutil

    from prom3e_geo.layers.diversity import DIVERSITY_BYTES_PER_CELL

    if psutil.virtual_memory().available > 22000 * 22000 * DIVERSITY_BYTES_PER_CELL:
        pytest.skip("this machine could hold it")
    done = run("diversity", "--observations", OBSERVATIONS, "--shape", "22000x22000",
               "--out", tmp_path / "d.tif")  # fmt: skip
    one_line_error(done, 2, "484,000,000 cells needs about 43.3 GB")


@pytest.mark.slow
def test_the_estimate_is_not_below_what_a_run_takes(tmp_path):
    """The bytes a cell the estimates use are at least what a run's peak memory grows by a
    cell (two grid sizes, the difference of their peaks: imports and fixed costs cancel)."""
    from prom3e_geo.grid import GRID_BYTES_PER_CELL
    from prom3e_geo.layers.diversity import DIVERSITY_BYTES_PER_CELL

    def peak(*args) -> int:
        done = subprocess.run(
            [sys.executable, "-c", PEAK, str(EXE), *map(str, args)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return int(done.stdout.split()[-1])

    for command, per_cell in (
        (["grid"], GRID_BYTES_PER_CELL),
        (["diversity", "--observations", OBSERVATIONS], DIVERSITY_BYTES_PER_CELL),
    ):
        small = peak(*command, "--shape", "500x500", "--out", tmp_path / "a.tif")
        large = peak(*command, "--shape", "2500x2500", "--out", tmp_path / "b.tif")
        grown = (large - small) / (2500**2 - 500**2)
        assert grown <= per_cell, (command[0], grown)
        for name in ("a", "b"):
            for suffix in (".tif", ".qml"):
                (tmp_path / f"{name}{suffix}").unlink(missing_ok=True)


PEAK = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, capture_output=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
"""


# -- 7: output names ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "bad", "in_process"),
    [
        (["sdm", "--query", CARDINAL, *SMALL, "--out", "{tmp}/map.jpg"], "map.jpg", False),
        (["diversity", "--observations", OBSERVATIONS, "--out", "{tmp}/div.jpg"], "div.jpg",
         False),
        (["diversity", "--observations", OBSERVATIONS, "--out", "{tmp}/d.tif",
          "--zarr", "{tmp}/d.nc"], "d.nc", True),
        (["diversity", "--observations", OBSERVATIONS, "--out", "{tmp}/d.tif",
          "--png", "{tmp}/d.jpg"], "d.jpg", True),
        (["grid", "--out", "{tmp}/mask.png"], "mask.png", True),
    ],
)  # fmt: skip
def test_an_extension_of_another_format_is_refused(tmp_path, cli, args, bad, in_process):
    """Regression: `--out map.jpg` wrote a GeoTIFF named .jpg, exit 0."""
    args = [str(a).replace("{tmp}", str(tmp_path)) for a in args]
    done = cli(in_process, *args, env={"PROM3E_GEO_CACHE": str(tmp_path / "cache")})
    one_line_error(done, 2, bad, "name it with")
    assert not [p for p in tmp_path.iterdir() if p.name != "cache"]


# -- 8: faults mid-run ------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs (needs the right to mount: root in a container)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2M", "tmpfs", str(folder)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


@pytest.mark.parametrize("filler_kb", [1900, 1700, 1550])  # fills up at the COG, Zarr, PNG
def test_a_full_disk_says_so_and_leaves_nothing(small_disk, filler_kb):
    """Regression: a full disk exited 1 as "internal error: CPLE_AppDefinedError ..."."""
    (small_disk / "filler").write_bytes(b"\0" * filler_kb * 1024)
    done = run(
        "diversity", "--observations", OBSERVATIONS, "--shape", "100x200",
        "--out", small_disk / "d.tif", "--zarr", small_disk / "d.zarr",
        "--png", small_disk / "d.png",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "no space left on device writing" in errors[0], done.stderr
    assert str(small_disk / "d.") in errors[0]
    assert "internal error" not in done.stderr
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


def test_a_zarr_write_that_fails_leaves_no_chunk_write_behind(small_disk):
    """Regression (CI): zarr writes chunks as concurrent tasks on its own event loop; when one
    met the full disk, the call raised while others were still queued, and at exit the process
    printed "Task was destroyed but it is pending!" as extra error lines. A failed write now
    returns only when zarr's loop runs nothing more, and leaves no file behind."""
    import asyncio

    import numpy as np
    import xarray as xr
    from zarr.core import sync as zarr_sync

    from prom3e_geo.io.outputs import WriteFailed
    from prom3e_geo.io.zarr import write_zarr

    (small_disk / "filler").write_bytes(b"\0" * 1500 * 1024)
    rng = np.random.default_rng(0)  # incompressible: the disk fills up part-way through
    layers = {f"v{i}": (("y", "x"), rng.random((200, 400), dtype=np.float32)) for i in range(4)}
    with pytest.raises(WriteFailed, match="no space left on device"):
        write_zarr(small_disk / "x.zarr", xr.Dataset(layers), chunks=(16, 16))  # 1,456 chunks
    loop = zarr_sync.loop[0]
    assert loop is not None
    left = asyncio.run_coroutine_threadsafe(_zarr_tasks(), loop).result(timeout=10)
    assert left == 0
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


async def _zarr_tasks() -> int:
    import asyncio

    return len(asyncio.all_tasks()) - 1  # less the one counting


def test_a_store_on_a_full_disk_names_the_store(small_disk):
    (small_disk / "filler").write_bytes(b"\0" * 1000 * 1024)
    store = small_disk / "e.zarr"
    done = run("embed", "--aoi", "-100,35,-98,37", "--resolution", "0.1", "--out", store)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"prom3e-geo: error: no space left on device writing {store}"
    )


@pytest.mark.parametrize(
    ("number", "words"),
    [
        (errno.ENOSPC, "no space left on device writing"),
        (errno.EROFS, "read-only file system writing"),
        (errno.EACCES, "permission denied writing"),
    ],
)
def test_a_write_fault_is_named_with_the_path(tmp_path, run_cli, monkeypatch, number, words):
    """The same mapping for a folder made read-only or closed mid-run (here the COG writer
    meets the OSError; no file system is remounted)."""
    import prom3e_geo.io.layers as layers
    from prom3e_geo.io.outputs import atomic_output

    def failing(path, *args, overwrite=False, **kwargs):
        with atomic_output(path, overwrite) as tmp:
            tmp.write_bytes(b"part")
            raise OSError(number, os.strerror(number), str(tmp))

    monkeypatch.setattr(layers, "write_cog", failing)
    out = tmp_path / "d.tif"
    r = run_cli("diversity", "--observations", OBSERVATIONS, "--shape", "20x40", "--out", out)
    assert r.code == 1, r.err
    assert r.err.strip() == f"prom3e-geo: error: {words} {out}"
    assert not list(tmp_path.iterdir())


# -- 9: provenance ----------------------------------------------------------------------------------
def test_the_demo_model_through_model_is_tagged_synthetic(tmp_path):
    """Regression: a map made with the demo world's weights through --model had no SYNTHETIC
    tag; the tag now travels in the weights' own metadata."""
    store = tmp_path / "m.zarr"
    made = run("embed", "--model", DEMO_WEIGHTS, "--loc-encoder", "demo", "--context", "loc",
               *SMALL, "--out", store)  # fmt: skip
    assert made.returncode == 0, made.stderr
    out = tmp_path / "u.tif"
    done = run("uncertainty", "--embeddings", store, "--context", "loc", "--out", out)
    assert done.returncode == 0, done.stderr
    with rasterio.open(out) as src:
        tags = src.tags()
    assert tags["model"] == str(DEMO_WEIGHTS)
    assert tags["demo_world"].startswith("SYNTHETIC")


def test_uncertainty_of_a_subset_states_one_context(tmp_path):
    """Regression: `uncertainty --context loc` carried context=sat+loc+env and sigma_context=loc."""
    cache = {"PROM3E_GEO_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "s.tif"
    done = run("uncertainty", "--context", "loc", *SMALL, "--out", out, env=cache)
    assert done.returncode == 0, done.stderr
    with rasterio.open(out) as src:
        tags = src.tags()
    assert tags["context"] == "loc"
    assert tags["store_context"] == "sat+loc+env"
    assert "sigma_context" not in tags


def test_diversity_without_dates_has_no_date_range(tmp_path):
    """Regression: `diversity` wrote date_range=/ when no dates were given."""
    out = tmp_path / "d.tif"
    assert run("diversity", "--observations", OBSERVATIONS, "--shape", "20x40",
               "--out", out).returncode == 0  # fmt: skip
    with rasterio.open(out) as src:
        assert "date_range" not in src.tags()
    dated = tmp_path / "dated.tif"
    assert run("diversity", "--observations", OBSERVATIONS, "--shape", "20x40",
               "--since", "2021-01-01", "--out", dated).returncode == 0  # fmt: skip
    with rasterio.open(dated) as src:
        assert src.tags()["date_range"] == "2021-01-01/"


# -- 11: hints ----------------------------------------------------------------------------------------
def test_swapped_columns_are_named(tmp_path):
    rows = OBSERVATIONS.read_text().splitlines()
    header = rows[0].split(",")
    lat, lon = header.index("latitude"), header.index("longitude")
    swapped = [rows[0]]
    for row in rows[1:]:
        fields = row.split(",")
        fields[lat], fields[lon] = fields[lon], fields[lat]
        swapped.append(",".join(fields))
    path = tmp_path / "swapped.csv"
    path.write_text("\n".join(swapped) + "\n")
    done = run("diversity", "--observations", path, "--shape", "20x40", "--out", tmp_path / "d.tif")
    one_line_error(done, 2, "look swapped", "--lat-col longitude --lon-col latitude")
    fixed = run("diversity", "--observations", path, "--shape", "20x40", "--lat-col",
                "longitude", "--lon-col", "latitude", "--out", tmp_path / "d.tif")  # fmt: skip
    assert fixed.returncode == 0 and "swapped" not in fixed.stderr, fixed.stderr


def test_a_bbox_across_the_antimeridian_is_explained(tmp_path):
    done = run("grid", "--aoi", "170,-20,-170,-10", "--out", tmp_path / "g.tif")
    one_line_error(done, 2, "minx > maxx", "antimeridian")


# -- 10: the notebook's outputs are not tracked ------------------------------------------------------
def test_the_notebooks_default_output_folder_is_ignored():
    """`jupyter execute` runs the kernel beside the notebook: the default `notebook-out/` lands
    in examples/ (from the root: in the root); git ignores both. That the notebook runs from
    another folder is `test_inference.test_the_example_notebook_runs`."""
    for path in ("notebook-out/similarity.png", "examples/notebook-out/similarity.png"):
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
        assert ignored.returncode == 0, f"{path} is not git-ignored"
