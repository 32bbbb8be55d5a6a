"""Every user error is one line on stderr and exit code 2, from the installed command, with
nothing written (regressions: each of these exited 1 as an "internal error", printed a GDAL
line first, or was accepted silently)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from prom3e_geo.grid import build_grid

EXE = Path(sys.executable).with_name("prom3e-geo")
ROOT = Path(__file__).resolve().parents[1]
CARDINAL = ROOT / "examples" / "cardinal.jpg"
SMALL = ["--aoi", "-100,35,-99,36", "--resolution", "0.5"]


def run(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A patch cache and an empty folder, to be misused as embedding stores."""
    root = tmp_path_factory.mktemp("made")
    assert run("fetch", "--source", "demo", *SMALL, "--cache", root / "p.zarr").returncode == 0
    assert run("embed", *SMALL, "--context", "loc", "--out", root / "e.zarr").returncode == 0
    (root / "empty").mkdir()
    return root


CASES = {
    "unwritable output folder": (["grid", "--out", "/proc/x.tif"], "cannot write in /proc"),
    "a patch cache as --embeddings": (
        ["sdm", "--query", CARDINAL, "--embeddings", "{made}/p.zarr", "--out", "{tmp}/o.tif"],
        "is not an embedding store",
    ),
    "an empty folder as --embeddings": (
        ["uncertainty", "--embeddings", "{made}/empty", "--out", "{tmp}/o.tif"],
        "is not an embedding store",
    ),
    "a cloud limit that is no number": (
        ["fetch", "--source", "stac?max_cloud=abc", *SMALL, "--cache", "{tmp}/c.zarr"],
        "max_cloud 'abc' is not a number",
    ),
    "an option the source does not take": (
        ["fetch", "--source", "demo?foo=bar", *SMALL, "--cache", "{tmp}/c.zarr"],
        "takes the options",
    ),
    "an unknown CRS": (["grid", "--crs", "EPSG:99999", "--out", "{tmp}/g.tif"], "unknown CRS"),
    "a report name of another kind": (["evaluate", "--out", "{tmp}/r.pdf"], ".md or .html"),
    "a folder as --observations": (
        ["diversity", "--observations", "{tmp}", "--out", "{tmp}/d.tif"],
        "is a folder",
    ),
    "a threshold that is not finite": (
        ["sdm", "--query", CARDINAL, *SMALL, "--threshold", "nan", "--out", "{tmp}/o.tif"],
        "--threshold must be a finite number",
    ),
    "a delta outside [0, 1] in recon mode": (
        ["sdm", "--query", CARDINAL, *SMALL, "--delta", "1.5", "--out", "{tmp}/o.tif"],
        "--delta must be in [0, 1]",
    ),
    "a grid option beside --embeddings (the store fixes the grid)": (
        [
            "sdm",
            "--query",
            CARDINAL,
            "--embeddings",
            "{made}/e.zarr",
            "--resolution",
            "1",
            "--out",
            "{tmp}/o.tif",
        ],
        "--resolution: the embedding store",
    ),  # fmt: skip
    "an AOI beside the given store's grid": (
        [
            "sdm",
            "--query",
            CARDINAL,
            "--embeddings",
            "{made}/e.zarr",
            "--aoi",
            "-90,30,-89,31",
            "--out",
            "{tmp}/o.tif",
        ],
        "holds no cell of the store's grid",
    ),  # fmt: skip
    "an imagery source beside --embeddings (nothing is fetched)": (
        [
            "uncertainty",
            "--embeddings",
            "{made}/e.zarr",
            "--source",
            "stac",
            "--out",
            "{tmp}/o.tif",
        ],
        "--source: the embedding store",
    ),  # fmt: skip
    "a context beside --embeddings in sdm": (
        [
            "sdm",
            "--query",
            CARDINAL,
            "--embeddings",
            "{made}/e.zarr",
            "--context",
            "sat",
            "--out",
            "{tmp}/o.tif",
        ],
        "--context: the embedding store",
    ),  # fmt: skip
    "an unknown model preset or missing weights": (
        ["sdm", "--query", CARDINAL, *SMALL, "--model", "nosuch", "--out", "{tmp}/o.tif"],
        "nosuch",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_exit_2(case, made, tmp_path):
    args, message = CASES[case]
    args = [str(a).format(made=made, tmp=tmp_path) for a in args]
    before = set(tmp_path.iterdir())
    r = run(*args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("prom3e-geo: error: "), r.stderr
    assert message in lines[0] and "Traceback" not in r.stderr
    assert set(tmp_path.iterdir()) == before  # nothing written, not even a hidden file


def test_an_unreachable_scheduler_is_refused_quickly(tmp_path):
    r = run("embed", *SMALL, "--context", "loc", "--scheduler", "tcp://127.0.0.1:9", "--out",
            tmp_path / "cube.zarr")  # fmt: skip
    assert r.returncode == 2 and "cannot reach the Dask scheduler" in r.stderr
    assert list(tmp_path.iterdir()) == []  # no store left behind


def test_a_grid_outside_the_demo_world_is_mapped_with_a_warning(tmp_path):
    r = run("embed", "--aoi", "5,45,7,47", "--context", "loc", "--out", tmp_path / "eu.zarr")
    assert r.returncode == 0, r.stderr
    assert "warning: 100% of the grid's cells lie outside the area model demo covers" in r.stderr


def test_a_bbox_without_a_shape_gets_the_paper_grids_cells_on_its_lattice():
    """Regression: a 5 x 5 degree box got 250 x 500 cells (125,000 non-square cells)."""
    conus, box = build_grid(), build_grid(aoi="-100,35,-95,40")
    assert box.res == pytest.approx(conus.res)
    assert box.shape == (51, 44)  # 5 / 0.0994 and 5 / 0.1156 cells, rounded out to the lattice
    # the box's cell centres are the CONUS grid's: maps of sub-areas line up cell for cell
    col = (box.x[0] - conus.x[0]) / conus.res[0]
    row = (conus.y[0] - box.y[0]) / conus.res[1]
    assert col == pytest.approx(round(col), abs=1e-6) and row == pytest.approx(round(row), abs=1e-6)
    assert build_grid(aoi="-100,35,-95,40", shape="10x10").shape == (10, 10)
