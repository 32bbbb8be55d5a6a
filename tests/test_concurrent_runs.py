"""Two runs at once on the same outputs or the same store, through the installed command.

Regressions: two `diversity` runs on one `--out/--zarr/--png` both exited 0 and one set silently
replaced the other (8 of 67 tries); two `sdm` runs on one uncached area both computed every
chunk of the store.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr

from prom3e_geo.io.outputs import OutputAppeared, atomic_output, committed_together

EXE = Path(sys.executable).with_name("prom3e-geo")
ROOT = Path(__file__).resolve().parents[1]
OBSERVATIONS = ROOT / "examples" / "observations.csv"


def start(*args, env=None) -> subprocess.Popen:
    return subprocess.Popen(
        [EXE, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate()
    return process.returncode, out, err


def race(tries: int, folder: Path) -> None:
    """`tries` times: two `diversity` runs (different smoothing, so that their outputs differ)
    on the same three outputs; exactly one wins, the loser exits 2 in one line and leaves no
    temporary behind, and the files read back whole and all from the winner."""
    out, zarr, png = folder / "div.tif", folder / "div.zarr", folder / "div.png"
    for attempt in range(tries):
        for path in (out, zarr, png, folder / "div.qml"):
            subprocess.run(["rm", "-rf", str(path)], check=True)
        runs = [
            start("diversity", "--observations", OBSERVATIONS, "--shape", "20x40",
                  "--sigma", sigma, "--out", out, "--zarr", zarr, "--png", png)
            for sigma in ("1", "3")
        ]  # fmt: skip
        results = [finish(p) for p in runs]
        codes = sorted(code for code, _, _ in results)
        assert codes == [0, 2], (attempt, results)
        winner = next(i for i, (code, _, _) in enumerate(results) if code == 0)
        loser_err = results[1 - winner][2].strip()
        assert len(loser_err.splitlines()) == 1, loser_err
        assert "already exists" in loser_err or "appeared while this run" in loser_err
        with rasterio.open(out) as src:
            shannon = src.read(1, masked=True)
            assert src.tags()["sigma_cells"] == ("1.0", "3.0")[winner]
        with xr.open_zarr(zarr, decode_coords="all") as ds:
            assert ds.attrs["sigma_cells"] == ("1.0", "3.0")[winner]
            np.testing.assert_array_equal(ds["shannon"].values[~shannon.mask], shannon.compressed())
        assert png.stat().st_size > 1000
        assert sorted(p.name for p in folder.iterdir()) == [
            "div.png",
            "div.qml",
            "div.tif",
            "div.zarr",
        ]


def test_two_writers_one_wins_the_whole_set(tmp_path):
    race(4, tmp_path)


@pytest.mark.slow
def test_two_writers_one_wins_the_whole_set_50_tries(tmp_path):
    race(50, tmp_path)


def test_an_output_that_appears_before_the_commit_is_kept(tmp_path):
    """The check at the commit itself: an output created between the start of the run and its
    commit is kept, the run's temporaries are removed, and nothing of its set appears."""
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    with pytest.raises(OutputAppeared, match="appeared while this run"), committed_together():
        for path in (first, second):
            with atomic_output(path) as tmp:
                tmp.write_text("mine")
        second.write_text("theirs")
    assert second.read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.txt"]


def test_overwrite_still_replaces(tmp_path):
    """With overwrite, an output that exists, or appeared meanwhile, is replaced."""
    path = tmp_path / "a.txt"
    path.write_text("old")
    with committed_together(), atomic_output(path, overwrite=True) as tmp:
        tmp.write_text("new")
    assert path.read_text() == "new"
    path.unlink()
    with committed_together():
        with atomic_output(path, overwrite=True) as tmp:
            tmp.write_text("newer")
        path.write_text("theirs")
    assert path.read_text() == "newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_two_maps_of_one_area_compute_the_store_once(tmp_path):
    """Two `sdm` at once on one uncached area and one cache: one computes the store's chunks,
    the other waits for it (and says so) and computes none; the two maps are equal."""
    env = {"PROM3E_GEO_CACHE": str(tmp_path / "cache")}
    area = ["--aoi", "-100,35,-97,37", "--resolution", "0.1", "--chunk", "8"]
    outs = [tmp_path / "a.tif", tmp_path / "b.tif"]
    runs = [start("sdm", "--query", ROOT / "examples" / "cardinal.jpg", *area, "--out", out,
                  env=env) for out in outs]  # fmt: skip
    results = [finish(p) for p in runs]
    assert [code for code, _, _ in results] == [0, 0], results
    computed = [err for _, _, err in results if "chunks to compute" in err]
    assert len(computed) == 1, [err for _, _, err in results]
    assert "12 of 12 chunks to compute" in computed[0]
    other = next(err for _, _, err in results if "chunks to compute" not in err)
    assert "waiting for another run that is building" in other, other
    stores = list((tmp_path / "cache" / "stores").glob("*.zarr"))
    assert len(stores) == 1
    assert not list((tmp_path / "cache" / "stores").glob(".*"))  # no lock or partial left
    with rasterio.open(outs[0]) as a, rasterio.open(outs[1]) as b:
        first, second = a.read(1), b.read(1)
    assert np.isfinite(first).sum() > 500
    np.testing.assert_array_equal(first, second)


def test_two_fetches_into_one_cache_fetch_it_once(tmp_path):
    """Two `fetch` at once into one cache: one fetches every chunk, the other waits for it (and
    says so) and fetches none; the cache equals one fetched alone, with no lock left."""
    import zarr

    area = ["--source", "demo", "--size", "32", "--aoi", "-100,33,-92,38", "--resolution",
            "0.1", "--chunk", "8"]  # fmt: skip
    runs = [start("fetch", *area, "--cache", tmp_path / "cache.zarr") for _ in range(2)]
    results = [finish(p) for p in runs]
    assert [code for code, _, _ in results] == [0, 0], results
    summaries = sorted(err + out for _, out, err in results)
    fetched = [s for s in summaries if "fetch: 0 chunk(s) fetched" not in s]
    assert len(fetched) == 1, summaries
    waited = next(s for s in summaries if "fetch: 0 chunk(s) fetched" in s)
    assert "waiting for another run that is building" in waited and "already done" in waited
    assert finish(start("fetch", *area, "--cache", tmp_path / "alone.zarr"))[0] == 0
    a, b = (zarr.open_group(str(tmp_path / n), mode="r") for n in ("cache.zarr", "alone.zarr"))
    for name in ("patches", "status", "chunk_done"):
        np.testing.assert_array_equal(np.asarray(a[name][:]), np.asarray(b[name][:]), name)
    assert not list(tmp_path.glob(".*"))
