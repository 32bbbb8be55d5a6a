"""The browser explorer's server (`prom3e-geo serve`) without a browser: what it answers, what
it refuses, and that a slow map does not hold up other users. The page itself is driven in a
real browser in tests/test_app_browser.py."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import requests
from starlette.testclient import TestClient

from prom3e_geo.app.explorer import Explorer, ExplorerOptions
from prom3e_geo.app.server import bind, create_app
from prom3e_geo.app.uploads import safe_stem
from prom3e_geo.workflows.maps import MapInputs, MapSession

EXE = Path(sys.executable).with_name("prom3e-geo")
ROOT = Path(__file__).resolve().parents[1]
CARDINAL = ROOT / "examples" / "cardinal.jpg"
SMALL = ["--aoi", "-100,33,-88,39", "--resolution", "0.5", "--chunk", "6"]  # 12 x 24 cells


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp("store") / "cube.zarr"
    subprocess.run([EXE, "embed", *SMALL, "--out", out], check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def session(store):
    return MapSession.open(MapInputs(store), keep_vectors=True)  # as `serve` opens it


@pytest.fixture
def client(session):
    explorer = Explorer(session, options=ExplorerOptions(max_upload=200_000))
    with TestClient(create_app(explorer)) as c:
        c.explorer = explorer
        yield c
    explorer.close()


def cli_sdm(folder: Path, command: str) -> bytes:
    """Run the command the explorer names (in `folder`, holding the query) and return the COG."""
    import shlex

    args = shlex.split(command)
    assert args[0] == "prom3e-geo"
    subprocess.run([EXE, *args[1:]], cwd=folder, check=True, capture_output=True)
    return (folder / args[args.index("--out") + 1]).read_bytes()


def test_photo_map_is_the_cog_sdm_writes(client, store, tmp_path):
    r = client.post("/api/query?filename=cardinal.jpg", content=CARDINAL.read_bytes())
    assert r.status_code == 200, r.text
    layer = r.json()
    assert layer["command"] == (
        f"prom3e-geo sdm --query cardinal.jpg --embeddings {store} --mode hybrid --out cardinal.tif"
    )
    assert layer["units"] == "cosine similarity" and len(layer["colours"]) == 11
    served = client.get(f"/api/layers/{layer['id']}/download.tif")
    assert served.status_code == 200
    assert served.headers["content-disposition"] == 'attachment; filename="cardinal.tif"'
    (tmp_path / "cardinal.jpg").write_bytes(CARDINAL.read_bytes())
    assert served.content == cli_sdm(tmp_path, layer["command"])  # provenance tags included
    png = client.get(f"/api/layers/{layer['id']}/download.png")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_species_name_in_hybrid_mode_is_the_cog_sdm_writes(client, tmp_path):
    r = client.post("/api/species", json={"name": "Northern  Cardinal", "mode": "hybrid"})
    assert r.status_code == 200, r.text
    layer = r.json()
    assert "--query 'Northern Cardinal'" in layer["command"] and "--mode hybrid" in layer["command"]
    served = client.get(f"/api/layers/{layer['id']}/download.tif").content
    assert served == cli_sdm(tmp_path, layer["command"])


def test_uncertainty_layer_is_the_cog_uncertainty_writes(client, tmp_path):
    info = client.get("/api/info").json()
    assert info["note"].startswith("SYNTHETIC (demo world)")  # the demo store says so
    (sigma,) = [x for x in info["layers"] if x["kind"] == "uncertainty"]
    assert sigma["band"] == "sigma_l1" and "sigma" in sigma["units"]
    served = client.get(f"/api/layers/{sigma['id']}/download.tif").content
    assert served == cli_sdm(tmp_path, sigma["command"])


def test_a_click_gives_the_cells_values_and_coordinates(client, session):
    layer = client.post("/api/query?filename=c.jpg", content=CARDINAL.read_bytes()).json()
    cog = client.get(f"/api/layers/{layer['id']}/download.tif").content
    lon, lat = -93.3, 35.2  # row 7, column 13 of the 0.5-degree grid from (-100, 39)
    cell = client.get(f"/api/cell?lon={lon}&lat={lat}").json()
    assert cell["inside"] and (cell["row"], cell["col"]) == (7, 13)
    assert (cell["lon"], cell["lat"]) == (-93.25, 35.25)  # the cell's centre
    assert cell["corners"][0] == [35.5, -93.5]  # [lat, lon] of its north-west corner
    with rasterio.MemoryFile(cog) as f, f.open() as ds:
        expected = ds.read(1)[7, 13]
        (row, col) = ds.index(lon, lat)
    assert (row, col) == (7, 13)
    values = {v["id"]: v["value"] for v in cell["values"]}
    assert values[layer["id"]] == pytest.approx(float(expected), abs=0)
    outside = client.get("/api/cell?lon=0&lat=0").json()
    assert outside == {"inside": False, "values": []}
    assert client.get("/api/cell?lon=x").status_code == 400


def test_web_image_is_a_transparent_png_of_the_grid(client):
    import io

    from PIL import Image

    info = client.get("/api/info").json()
    layer = info["layers"][0]
    (south, west), (north, east) = layer["bounds"]
    assert (west, east) == pytest.approx((-100, -88)) and (south, north) == pytest.approx((33, 39))
    img = Image.open(io.BytesIO(client.get(f"/api/layers/{layer['id']}/image.png").content))
    assert img.mode == "RGBA" and img.width == 24 * 8
    alpha = np.asarray(img)[..., 3]
    assert alpha.max() == 255  # the cells inside the AOI are drawn


@pytest.mark.parametrize(
    "body, status, reason",
    [
        (b"", 400, "the upload is empty"),
        (b"not a photo at all", 400, "neither a photo"),
        (CARDINAL.read_bytes()[:3000], 400, "c.jpg is truncated or corrupt"),
        (b"\xff\xd8" + bytes(300_000), 413, "larger than the limit of 0.2 MiB"),
    ],
)
def test_bad_uploads_are_refused_with_a_reason_and_the_server_goes_on(client, body, status, reason):
    r = client.post("/api/query?filename=c.jpg", content=body)
    assert r.status_code == status and reason in r.json()["error"]
    assert "prom3e-geo-serve-" not in r.json()["error"]  # no server folder in messages
    assert (
        client.post("/api/query?filename=c.jpg", content=CARDINAL.read_bytes()).status_code == 200
    )


def test_no_request_path_reaches_the_file_system(client):
    for path in ("/static/../pyproject.toml", "/static/%2e%2e/%2e%2e/pyproject.toml",
                 "/static/vendor/leaflet/leaflet.js", "/api/layers/..%2F..%2Fetc/download.tif",
                 "/api/layers/sdm-1/download.exe"):  # fmt: skip
        assert client.get(path).status_code == 404, path
    assert client.get("/static/leaflet/LICENSE").text.startswith("BSD 2-Clause License")
    r = client.post("/api/query?filename=../../etc/pass%00wd.jpg", content=CARDINAL.read_bytes())
    assert r.status_code == 200 and r.json()["command"].startswith(
        "prom3e-geo sdm --query pass_wd.jpg"
    )
    assert not list(client.explorer.workdir.glob("query-*"))  # uploads are removed once encoded
    r = client.post("/api/species", json={"name": "../examples/cardinal.jpg"})
    assert r.status_code == 400 and "has no species '../examples/cardinal.jpg'" in r.json()["error"]


def test_safe_stems():
    assert safe_stem("C:\\photos\\my bird.JPG") == "my_bird"
    assert safe_stem("../../.bashrc") == "bashrc"
    assert safe_stem("...") == "upload"


def test_a_slow_map_does_not_hold_up_other_requests(session):
    """While one user's map is being made (held here), another user's request is answered."""
    explorer = Explorer(session)
    release, started = threading.Event(), threading.Event()
    real = explorer.query_upload

    def held(upload, mode=None):
        started.set()
        release.wait(30)
        return real(upload, mode)

    explorer.query_upload = held
    import uvicorn

    sock = bind("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(create_app(explorer), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(100):
            if server.started:
                break
            time.sleep(0.05)
        slow = {}
        first = threading.Thread(target=lambda: slow.update(r=requests.post(
            f"{url}/api/query?filename=a.jpg", data=CARDINAL.read_bytes(), timeout=60)))  # fmt: skip
        first.start()
        assert started.wait(30)
        t0 = time.perf_counter()
        other = requests.post(f"{url}/api/species", json={"name": "Northern Cardinal"}, timeout=20)
        assert other.status_code == 200 and time.perf_counter() - t0 < 10
        assert first.is_alive()  # the first map is still held
        release.set()
        first.join(30)
        assert slow["r"].status_code == 200
    finally:
        release.set()
        server.should_exit = True
        thread.join(10)
        explorer.close()


def test_serve_command_bad_input_and_the_exposure_warning(tmp_path, run_cli):
    from prom3e_geo_cli.serve import exposure_warning

    assert exposure_warning("127.0.0.1") is None and exposure_warning("::1") is None
    assert "warning: listening on 0.0.0.0" in exposure_warning("0.0.0.0")
    r = run_cli("serve", "--embeddings", tmp_path / "none.zarr", "--port", "0")
    assert r.code == 2 and r.err.count("\n") == 1 and "Traceback" not in r.err
    r = run_cli("serve", "--layer", tmp_path / "none.tif")
    assert r.code == 2 and "does not exist" in r.err
    r = run_cli("serve", "--basemap", "http://tiles.example/{z}/{x}/{y}.png")
    assert r.code == 2 and "https tile URL" in r.err


def test_serve_command_reports_a_port_in_use(store, run_cli):
    taken = bind("127.0.0.1", 0)
    try:
        r = run_cli("serve", "--embeddings", store, "--port", str(taken.getsockname()[1]))
    finally:
        taken.close()
    assert r.code == 1 and "cannot listen on 127.0.0.1" in r.err


def test_a_recording_goes_to_the_audio_tower_or_is_refused_with_the_reason(client):
    """The demo store's pipeline has no audio tower: a checked WAV reaches the tower lookup and
    is refused with that reason (a model with one maps it like a photo, `file_query`)."""
    import io
    import wave

    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(bytes(3200))
    assert "audio" not in client.get("/api/info").json()["queries"]
    r = client.post("/api/query?filename=song.wav", content=out.getvalue())
    assert r.status_code == 400
    assert r.json()["error"] == "this pipeline has no audio encoder for recording queries"


@pytest.mark.parametrize(
    "layer, context",
    [("novelty", ["sat", "loc"]), ("sigma_l1", ["loc"]), ("trust", ["env", "sat", "loc"])],
)
def test_uncertainty_layers_are_the_cogs_uncertainty_writes(
    client, store, tmp_path, layer, context
):
    """Any layer of `prom3e-geo uncertainty --layer` for any context: made by the same workflow,
    its COG the file that command writes (byte for byte, and the values of known cells)."""
    info = client.get("/api/info").json()
    assert info["uncertainty"] == {
        "layers": ["sigma_l1", "expected_error", "novelty", "trust"],
        "context": ["sat", "loc", "env"],
    }
    r = client.post("/api/uncertainty", json={"layer": layer, "context": context})
    assert r.status_code == 200, r.text
    made = r.json()["layers"]
    order = ",".join(m for m in ("sat", "loc", "env") if m in context)  # the store's order
    assert made[0]["band"] == layer and made[0]["kind"] == "uncertainty"
    assert made[0]["command"] == (
        f"prom3e-geo uncertainty --embeddings {store} --context {order} --layer {layer} "
        f"--out {layer}_{order.replace(',', '-')}.tif"
    )
    served = client.get(f"/api/layers/{made[0]['id']}/download.tif")
    name = f"{layer}_{order.replace(',', '-')}.tif"
    assert served.headers["content-disposition"] == f'attachment; filename="{name}"'
    written = cli_sdm(tmp_path, made[0]["command"])
    assert served.content == written
    with rasterio.MemoryFile(written) as f, f.open() as ds:
        bands = list(ds.descriptions)
        theirs = {b: ds.read(i + 1) for i, b in enumerate(bands)}
    assert [x["band"] for x in made] == bands  # one layer per band of the file
    for x in made:  # a click shows the file's values in known cells
        for row, col in ((2, 3), (7, 13), (10, 20)):
            lon, lat = -100 + (col + 0.5) * 0.5, 39 - (row + 0.5) * 0.5
            values = {v["id"]: v["value"] for v in client.get(f"/api/cell?lon={lon}&lat={lat}")
                      .json()["values"]}  # fmt: skip
            expected = float(theirs[x["band"]][row, col])
            assert np.isfinite(expected) and values[x["id"]] == expected
    again = client.post("/api/uncertainty", json={"layer": layer, "context": context[::-1]})
    assert [x["id"] for x in again.json()["layers"]] == [x["id"] for x in made]  # made once


def test_the_stored_sigma_is_not_made_again_and_bad_requests_are_refused(client):
    stored = [x for x in client.get("/api/info").json()["layers"] if x["kind"] == "uncertainty"]
    r = client.post(
        "/api/uncertainty", json={"layer": "sigma_l1", "context": ["env", "loc", "sat"]}
    )
    assert [x["id"] for x in r.json()["layers"]] == [x["id"] for x in stored]
    for body, reason in [
        ({"layer": "fear", "context": ["sat"]}, "unknown layer 'fear'"),
        ({"layer": "novelty", "context": ["smell"]}, "give a context of the store's modalities"),
        ({"layer": "novelty", "context": []}, "give a context of the store's modalities"),
        ({"layer": "novelty", "context": "sat"}, 'send {"layer"'),
        (["novelty"], 'send {"layer"'),
    ]:
        r = client.post("/api/uncertainty", json=body)
        assert r.status_code == 400 and reason in r.json()["error"], (body, r.text)
