"""The outputs as QGIS users have them: the system GDAL (Debian 12: 3.6) and a real QGIS (3.22).

GDAL before the CF grid-mapping reader ignores `spatial_ref`; it reads the `_CRS` attribute that
every Zarr array on a grid carries. The QGIS project made by `qgis-project` is opened by PyQGIS
(`tests/qgis_check.py`, run with the system Python that has `python3-qgis`) from a copy of the
run folder moved elsewhere. `.ci/run` installs both; where they are missing, those tests skip.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pyproj
import pytest
import rasterio
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from prom3e_geo.grid import build_grid, load_aoi
from prom3e_geo.io.zarr import layer_dataset, write_zarr
from prom3e_geo.stores.embeddings import open_store

EXE = Path(sys.executable).with_name("prom3e-geo")
ROOT = Path(__file__).resolve().parents[1]
CHECK = Path(__file__).with_name("qgis_check.py")
SYSTEM_PYTHON = "/usr/bin/python3"
GDALINFO = shutil.which("gdalinfo")
RUN_GRID = ["--aoi", "-100,33,-88,39", "--crs", "EPSG:5070", "--resolution", "50000"]


def _has_pyqgis() -> bool:
    if not Path(SYSTEM_PYTHON).exists():
        return False
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import qgis.core"], capture_output=True)
    return probe.returncode == 0


needs_gdalinfo = pytest.mark.skipif(
    GDALINFO is None, reason="system GDAL not installed (apt-get install gdal-bin; see .ci/run)"
)
needs_qgis = pytest.mark.skipif(
    not _has_pyqgis(),
    reason="QGIS not installed (apt-get install python3-qgis; see .ci/run)",
)


def gdalinfo(uri: str) -> dict:
    out = subprocess.run([GDALINFO, "-json", uri], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def gdal_epsg(info: dict) -> int | None:
    """The EPSG code GDAL reports for a dataset's CRS (None: no CRS)."""
    wkt = info.get("coordinateSystem", {}).get("wkt")
    return pyproj.CRS.from_wkt(wkt).to_epsg() if wkt else None


def qgis(*args: str) -> dict:
    out = subprocess.run(
        [SYSTEM_PYTHON, str(CHECK), *args], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """A run's outputs in EPSG:5070 (12 x 24 cells): a store, sdm, uncertainty, diversity."""
    folder = tmp_path_factory.mktemp("run")
    steps = [
        ["embed", *RUN_GRID, "--context", "loc", "--out", "cube.zarr"],
        ["sdm", "--query", ROOT / "examples" / "cardinal.jpg", "--embeddings", "cube.zarr",
         "--out", "map.tif"],
        ["uncertainty", "--embeddings", "cube.zarr", "--context", "loc", "--out", "sigma.tif"],
        ["diversity", "--observations", ROOT / "examples" / "observations.csv", *RUN_GRID,
         "--out", "div.tif", "--zarr", "div.zarr"],
    ]  # fmt: skip
    from prom3e_geo_cli.main import main

    for step in steps:  # in one process: the model loads once
        with pytest.MonkeyPatch.context() as mp, pytest.raises(SystemExit) as exc:
            mp.chdir(folder)
            mp.setattr(sys, "argv", ["prom3e-geo", *map(str, step)])
            main()
        assert not exc.value.code, step
    return folder


# -- Zarr: GDAL's _CRS beside the CF grid mapping ------------------------------------------------
@needs_gdalinfo
@pytest.mark.parametrize(
    "crs, aoi, shape", [("EPSG:4326", "-100,38,-98,39", "10x20"), ("EPSG:5070", "conus", "20x40")]
)
def test_zarr_layers_show_their_crs_in_system_gdal_and_rioxarray(tmp_path, crs, aoi, shape):
    grid = build_grid(aoi=aoi, crs=crs, shape=shape)
    band = np.arange(grid.height * grid.width, dtype=np.float32).reshape(grid.shape)
    store = tmp_path / "a.zarr"
    write_zarr(store, layer_dataset({"v": band}, grid))
    info = gdalinfo(f'ZARR:"{store}":/v')
    assert gdal_epsg(info) == grid.crs.to_epsg()
    np.testing.assert_allclose(info["geoTransform"], grid.transform.to_gdal())
    back = xr.open_zarr(store, decode_coords="all")
    assert back.v.rio.crs == grid.crs and back.rio.crs == grid.crs
    assert pyproj.CRS.from_user_input(back.v.attrs["_CRS"]["wkt"]) == pyproj.CRS(crs)

    # without the attribute, this GDAL sees no CRS: `_CRS` is what carries it
    meta = json.loads((store / ".zmetadata").read_text())
    del meta["metadata"]["v/.zattrs"]["_CRS"]
    (store / ".zmetadata").write_text(json.dumps(meta))
    assert gdal_epsg(gdalinfo(f'ZARR:"{store}":/v')) is None


def test_zarr_v3_layers_carry_the_crs_attribute(tmp_path, small_grid):
    store = tmp_path / "a.zarr"
    band = np.ones(small_grid.shape, dtype=np.float32)
    write_zarr(store, layer_dataset({"v": band}, small_grid), zarr_format=3)
    attrs = json.loads((store / "v" / "zarr.json").read_text())["attributes"]
    assert pyproj.CRS.from_json_dict(attrs["_CRS"]["projjson"]).to_epsg() == 4326
    assert attrs["grid_mapping"] == "spatial_ref"
    back = xr.open_zarr(store, decode_coords="all", consolidated=False)
    assert back.v.rio.crs == small_grid.crs


@needs_gdalinfo
def test_embedding_store_arrays_show_their_crs_in_system_gdal(run_folder):
    store = run_folder / "cube.zarr"
    for name in ("sigma_l1", "valid", "aoi"):
        info = gdalinfo(f'ZARR:"{store}":/{name}')
        assert gdal_epsg(info) == 5070, name
    ds = open_store(store)
    assert ds.sigma_l1.rio.crs.to_epsg() == 5070
    assert "_CRS" in ds.mu.attrs and "_CRS" not in ds.chunk_done.attrs  # only arrays on the grid
    with rasterio.open(run_folder / "sigma.tif") as cog:
        np.testing.assert_allclose(
            gdalinfo(f'ZARR:"{store}":/sigma_l1')["geoTransform"], cog.transform.to_gdal()
        )


# -- the QGIS project ----------------------------------------------------------------------------
def _qml_limits(qml: Path) -> tuple[float, float]:
    renderer = ET.parse(qml).getroot().find("pipe/rasterrenderer")
    return float(renderer.get("classificationMin")), float(renderer.get("classificationMax"))


def test_project_xml_uses_relative_paths_only(run_folder, tmp_path):
    out = tmp_path / "run.qgz"  # another folder: the paths climb out of it
    r = cli("qgis-project", out, "map.tif", "div.tif", cwd=run_folder)
    assert r.returncode == 0, r.stderr
    with zipfile.ZipFile(out) as archive:
        assert archive.namelist() == ["run.qgs"]
        root = ET.fromstring(archive.read("run.qgs"))
    sources = [e.text for e in root.iter("datasource")]
    rel = Path("..") / run_folder.relative_to(tmp_path.parent)
    assert sources == ["./run_aoi.geojson", f"{rel}/map.tif", f"{rel}/div.tif"]
    assert str(tmp_path) not in ET.tostring(root, encoding="unicode")
    outline = json.loads((tmp_path / "run_aoi.geojson").read_text())
    assert outline["features"][0]["properties"]["aoi"] == "bbox(-100,33,-88,39)"


@needs_qgis
@pytest.mark.parametrize("suffix", [".qgz", ".qgs"])
def test_project_opens_in_qgis_from_a_moved_copy(run_folder, tmp_path, suffix):
    project = f"run{suffix}"
    r = cli("qgis-project", project, "map.tif", "sigma.tif", "div.tif", cwd=run_folder)
    assert r.returncode == 0, r.stderr
    moved = tmp_path / "elsewhere" / "shared-run"
    shutil.copytree(run_folder, moved)
    try:
        run_folder.rename(run_folder.with_name("gone"))  # nothing may point at the original
        seen = qgis(
            "--project", str(moved / project),
            "--raster", f'ZARR:"{moved}/div.zarr":/shannon',
            "--raster", f'ZARR:"{moved}/cube.zarr":/sigma_l1',
        )  # fmt: skip
    finally:
        run_folder.with_name("gone").rename(run_folder)
        (run_folder / project).unlink()
        (run_folder / "run_aoi.geojson").unlink()
    assert seen["qgis"].startswith("3.")
    p = seen["project"]
    assert p["read"] and p["crs"] == "EPSG:5070"
    layers = {layer["name"]: layer for layer in p["layers"]}
    assert list(layers) == ["AOI (bbox(-100,33,-88,39))", "map", "sigma", "div"]
    assert all(layer["valid"] for layer in layers.values())
    for name in ("map", "sigma", "div"):
        layer, tif = layers[name], moved / f"{name}.tif"
        assert Path(layer["source"]) == tif and layer["crs"] == "EPSG:5070"
        with rasterio.open(tif) as src:
            assert layer["bands"] == [f"Band {i}: {d}" for i, d in enumerate(src.descriptions, 1)]
            np.testing.assert_allclose(layer["extent"], tuple(src.bounds))
            assert layer["metadata"]["history"] == [src.tags()["command"]]
            assert f"software: {src.tags()['software']}" in layer["metadata"]["abstract"]
        renderer = layer["renderer"]
        assert renderer["type"] == "singlebandpseudocolor" and renderer["bands"] == [1]
        np.testing.assert_allclose(
            (renderer["min"], renderer["max"]), _qml_limits(tif.with_suffix(".qml")), rtol=1e-5
        )
        assert layer["rendered_colours"] > 20  # the ramp renders, not a blank or grey map
    aoi = layers["AOI (bbox(-100,33,-88,39))"]
    assert aoi["renderer"] == {"type": "singleSymbol", "symbol": "SimpleFill", "fill_style": "no"}
    np.testing.assert_allclose(aoi["extent"], load_aoi("-100,33,-88,39").geometry.bounds)
    assert aoi["crs"] == "EPSG:4326" and aoi["rendered_colours"] > 1
    assert len(seen["rasters"]) == 2
    for zarr in seen["rasters"]:  # the layer store and the embedding store, opened alone
        assert zarr["valid"] and zarr["crs"] == "EPSG:5070", zarr["uri"]
        with rasterio.open(moved / "div.tif") as src:
            np.testing.assert_allclose(zarr["extent"], tuple(src.bounds))
            assert zarr["size"] == [src.width, src.height]


# -- bad input: one line, exit 2, nothing written --------------------------------------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (["run.txt", "div.tif"], "must end in .qgz or .qgs"),
        (["run.qgz", "missing.tif"], "layer missing.tif does not exist"),
        (["run.qgz", "div.qml"], "is not a raster GDAL can read"),
        (["run.qgz", "div.zarr"], "is a folder: give GeoTIFFs"),
        (["run.qgz", "div.tif", "--aoi", "nowhere.gpkg"], "AOI file nowhere.gpkg does not exist"),
        (["run.qgz", "div.tif", "div.tif"], "have the same name 'div'"),
        (["run.qgz"], "Missing argument 'LAYERS...'"),
    ],
)
def test_bad_input_exits_2_in_one_line_before_writing(run_folder, args, message, run_cli,
                                                      monkeypatch):  # fmt: skip
    monkeypatch.chdir(run_folder)
    before = sorted(p.name for p in run_folder.iterdir())
    r = run_cli("qgis-project", *args)
    assert r.code == 2 and message in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1
    assert sorted(p.name for p in run_folder.iterdir()) == before


def test_existing_project_is_kept_without_overwrite(run_folder, tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(run_folder)
    out = tmp_path / "run.qgz"
    out.write_text("mine")
    r = run_cli("qgis-project", out, "div.tif")
    assert r.code == 2 and "already exists" in r.err
    assert out.read_text() == "mine" and not (tmp_path / "run_aoi.geojson").exists()
    assert run_cli("qgis-project", out, "div.tif", "--overwrite").code == 0
    assert zipfile.is_zipfile(out)


def test_aoi_read_from_a_file_must_be_given_again(tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    aoi = tmp_path / "kansas.geojson"
    aoi.write_text(
        json.dumps({"type": "Feature", "properties": {},
                    "geometry": {"type": "Polygon", "coordinates": [
                        [[-100, 38], [-98, 38], [-98, 39], [-100, 39], [-100, 38]]]}})
    )  # fmt: skip
    r = run_cli("diversity", "--observations", ROOT / "examples" / "observations.csv", "--aoi",
                aoi, "--shape", "10x20", "--out", "k.tif")  # fmt: skip
    assert r.code == 0, r.err
    r = run_cli("qgis-project", "k.qgz", "k.tif")
    assert r.code == 2 and "pass it with --aoi FILE" in r.err
    assert not (tmp_path / "k.qgz").exists()
    assert run_cli("qgis-project", "k.qgz", "k.tif", "--aoi", aoi).code == 0
    outline = json.loads((tmp_path / "k_aoi.geojson").read_text())["features"][0]
    assert outline["properties"]["aoi"] == "kansas"
