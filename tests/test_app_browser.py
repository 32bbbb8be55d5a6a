"""The explorer page in a real headless browser: Debian's Chromium driven by Selenium through
/usr/bin/chromedriver (no driver download). `prom3e-geo serve` runs as a real process on
127.0.0.1 with an ephemeral port. Skipped, with the reason, only where Chromium is absent
(`.ci/run` installs it)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import requests

EXE = Path(sys.executable).with_name("prom3e-geo")
ROOT = Path(__file__).resolve().parents[1]
CARDINAL = ROOT / "examples" / "cardinal.jpg"
SMALL = ["--aoi", "-100,33,-88,39", "--resolution", "0.5", "--chunk", "6"]  # 12 x 24 cells
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,800",  # a fake microphone, allowed without asking, plays TONE:
         "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
         "--autoplay-policy=no-user-gesture-required"]  # fmt: skip
TONE_HZ = 440

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or not CHROMEDRIVER.exists(),
    reason="Chromium and chromedriver are not installed (apt-get install chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp("store") / "cube.zarr"
    subprocess.run([EXE, "embed", *SMALL, "--out", out], check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def clap(tmp_path_factory):
    """A small CLAP audio tower (the architecture of TaxaBind's, random weights) projecting to
    the demo model's 512 dimensions: the store's pipeline gains a tower for recordings."""
    import torch
    from transformers import ClapAudioConfig, ClapAudioModelWithProjection

    torch.manual_seed(0)
    config = ClapAudioConfig(spec_size=256, window_size=8, num_mel_bins=64, patch_size=4,
                             patch_stride=(4, 4), depths=[1, 1], num_attention_heads=[1, 2],
                             patch_embeds_hidden_size=8, hidden_size=16, projection_dim=512,
                             projection_hidden_size=32, enable_fusion=False)  # fmt: skip
    folder = tmp_path_factory.mktemp("clap") / "clap"
    ClapAudioModelWithProjection(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def server(store, clap, tmp_path_factory):
    """`prom3e-geo serve` on 127.0.0.1:0 with a --layer file and an audio tower, shared by the
    tests (each opens the page afresh); yields (process, base URL)."""
    sigma = tmp_path_factory.mktemp("layer") / "sigma_loc.tif"
    subprocess.run([EXE, "uncertainty", "--embeddings", store, "--context", "loc",
                    "--out", sigma], check=True, capture_output=True)  # fmt: skip
    proc = subprocess.Popen(
        [
            EXE,
            "serve",
            "--embeddings",
            store,
            "--layer",
            sigma,
            "--port",
            "0",
            "--audio-encoder",
            clap,
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert " on http://127.0.0.1:" in line, line + proc.stderr.read()
        yield proc, line.split(" on ")[1].split()[0]
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.fixture
def browser(tmp_path):
    import soundfile
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    tone = tmp_path / "tone.wav"  # what the fake microphone hears (looped)
    t = np.arange(48_000 * 2) / 48_000
    soundfile.write(tone, 0.5 * np.sin(2 * np.pi * TONE_HZ * t), 48_000, subtype="PCM_16")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}",
                 f"--use-file-for-fake-audio-capture={tone}"]:  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    yield driver
    driver.quit()


def wait_for(driver, css: str, timeout: float = 60):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, css))
    )


def test_drop_a_photo_see_its_map_download_the_cog_sdm_writes(server, browser, store, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    proc, url = server
    browser.get(url)
    wait_for(browser, "body[data-ready='1']")
    titles = browser.find_element(By.ID, "layers").text
    assert "sigma_l1: uncertainty of sat+loc+env" in titles  # the store's
    assert "sigma_loc.tif: sigma_l1" in titles  # a --layer file
    browser.find_element(By.ID, "file").send_keys(str(CARDINAL))
    shown = wait_for(browser, "#map[data-shown^='sdm-']")  # the overlay image has loaded
    layer_id = shown.get_attribute("data-shown")
    assert "cardinal.jpg (hybrid)" in browser.find_element(By.ID, "current-title").text
    assert browser.find_element(By.ID, "ramp-units").text == "cosine similarity"
    browser.save_screenshot(str(tmp_path / "explorer.png"))
    assert (tmp_path / "explorer.png").stat().st_size > 10_000

    # the COG behind the page's download link is the one `prom3e-geo sdm` writes, byte for byte
    link = browser.find_element(By.ID, "download-tif").get_attribute("href")
    assert link == f"{url}api/layers/{layer_id}/download.tif"
    served = requests.get(link, timeout=60).content
    command = browser.find_element(By.ID, "command").text
    shutil.copy(CARDINAL, tmp_path / "cardinal.jpg")
    args = shlex.split(command)
    assert args[:3] == ["prom3e-geo", "sdm", "--query"] and str(store) in args
    subprocess.run([EXE, *args[1:]], cwd=tmp_path, check=True, capture_output=True)
    written = (tmp_path / "cardinal.tif").read_bytes()
    assert served == written
    with rasterio.MemoryFile(served) as f, f.open() as ds:
        mine = ds.read(1)
    with rasterio.open(tmp_path / "cardinal.tif") as ds:
        theirs = ds.read(1)
    assert mine[5, 10] == theirs[5, 10] and np.isfinite(theirs[5, 10])  # a known cell

    # a click on that cell shows its value and coordinates
    lon, lat = -100 + 10.5 * 0.5, 39 - 5.5 * 0.5
    browser.execute_script(
        "state.map.fire('click', {latlng: L.latLng(arguments[0], arguments[1])})", lat, lon
    )
    WebDriverWait(browser, 30).until(
        lambda d: "row 5, column 10" in d.find_element(By.ID, "cell").text
    )
    cell = browser.find_element(By.ID, "cell").text
    assert f"{theirs[5, 10]:.5g}" in cell and "36.2500° N, -94.7500° E" in cell


def test_a_corrupt_upload_shows_an_error_and_the_server_goes_on(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    proc, url = server
    browser.get(url)
    wait_for(browser, "body[data-ready='1']")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(CARDINAL.read_bytes()[:2000])  # a JPEG cut short
    browser.find_element(By.ID, "file").send_keys(str(broken))
    error = browser.find_element(By.ID, "error")
    WebDriverWait(browser, 60).until(lambda d: error.is_displayed())
    assert "broken.jpg is truncated or corrupt" in error.text
    song = tmp_path / "song.wav"
    song.write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunk")  # says WAV, is not one
    browser.find_element(By.ID, "file").send_keys(str(song))
    WebDriverWait(browser, 60).until(lambda d: "song.wav cannot be decoded" in error.text)
    browser.save_screenshot(str(tmp_path / "error.png"))
    assert proc.poll() is None
    assert requests.get(f"{url}api/info", timeout=30).status_code == 200
    browser.find_element(By.ID, "file").send_keys(str(CARDINAL))  # and still maps photos
    wait_for(browser, "#map[data-shown^='sdm-']")
    assert not error.is_displayed()


def test_record_a_sound_see_its_map_the_cog_sdm_writes_for_that_recording(server, browser, store,
                                                                         clap, tmp_path):  # fmt: skip
    """The page records the (fake) microphone into a WAV file, which the server maps through
    the audio tower; that WAV, given to `prom3e-geo sdm`, gives the same COG."""
    import base64
    import io
    import time

    import soundfile
    from selenium.webdriver.common.by import By

    proc, url = server
    browser.get(url)
    wait_for(browser, "body[data-ready='1']")
    record = browser.find_element(By.ID, "record")
    assert record.is_displayed() and "recording" in browser.find_element(By.ID, "drop").text
    record.click()
    wait_for(browser, "#record", 10)
    time.sleep(2.5)
    assert "recording" in browser.find_element(By.ID, "recording-status").text
    record.click()  # stop and map
    wait_for(browser, "#map[data-shown^='sdm-']")
    assert "recording.wav (hybrid)" in browser.find_element(By.ID, "current-title").text
    assert browser.find_element(By.ID, "error").text == ""
    browser.save_screenshot(str(tmp_path / "recording.png"))

    # the WAV the page sent: the fake microphone's tone, 2 to 10 s of it
    encoded = browser.execute_async_script(
        "const done = arguments[0], reader = new FileReader();"
        "reader.onload = () => done(reader.result); reader.onerror = () => done('');"
        "reader.readAsDataURL(state.recording);"
    )
    assert encoded.startswith("data:audio/wav;base64,")
    wav = base64.b64decode(encoded.split(",", 1)[1])
    samples, rate = soundfile.read(io.BytesIO(wav))
    assert samples.ndim == 1 and 2 <= samples.size / rate <= 10
    spectrum = np.abs(np.fft.rfft(samples))
    assert abs(np.argmax(spectrum) * rate / samples.size - TONE_HZ) < 5

    # its COG is the one `prom3e-geo sdm` writes for that WAV with the same audio tower
    command = browser.find_element(By.ID, "command").text
    args = shlex.split(command)
    assert args[:4] == ["prom3e-geo", "sdm", "--query", "recording.wav"]
    assert args[args.index("--audio-encoder") + 1] == str(clap)
    (tmp_path / "recording.wav").write_bytes(wav)
    subprocess.run([EXE, *args[1:]], cwd=tmp_path, check=True, capture_output=True)
    link = browser.find_element(By.ID, "download-tif").get_attribute("href")
    served = requests.get(link, timeout=60).content
    assert served == (tmp_path / "recording.tif").read_bytes()
    with rasterio.MemoryFile(served) as f, f.open() as ds:
        assert np.isfinite(ds.read(1)[5, 10])


def test_choose_an_uncertainty_layer_its_colour_bar_cells_and_downloads(server, browser, store,
                                                                       tmp_path):  # fmt: skip
    """Novelty of sat+loc chosen on the page: the file `prom3e-geo uncertainty --layer novelty
    --context sat,loc` writes, its units on the colour bar, its values in a clicked cell."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    proc, url = server
    browser.get(url)
    wait_for(browser, "body[data-ready='1']")
    Select(browser.find_element(By.ID, "uncertainty-layer")).select_by_value("novelty")
    browser.find_element(By.CSS_SELECTOR, "#uncertainty-context input[value='env']").click()
    browser.find_element(By.CSS_SELECTOR, "#uncertainty-form button").click()
    WebDriverWait(browser, 120).until(
        lambda d: d.find_element(By.ID, "current-title").text == "novelty: novelty of sat+loc"
    )
    shown = wait_for(browser, "#map[data-shown^='uncertainty-']")
    layer_id = shown.get_attribute("data-shown")
    titles = browser.find_element(By.ID, "layers").text
    assert (
        "novelty_sat: novelty of sat+loc" in titles and "novelty_loc: novelty of sat+loc" in titles
    )

    command = browser.find_element(By.ID, "command").text
    args = shlex.split(command)
    assert (
        args[:2] == ["prom3e-geo", "uncertainty"] and args[args.index("--layer") + 1] == "novelty"
    )
    subprocess.run([EXE, *args[1:]], cwd=tmp_path, check=True, capture_output=True)
    with rasterio.open(tmp_path / "novelty_sat-loc.tif") as ds:
        theirs, units = ds.read(1), ds.units[0] or ds.tags(1).get("units", "")
    assert units and browser.find_element(By.ID, "ramp-units").text == units
    link = browser.find_element(By.ID, "download-tif").get_attribute("href")
    assert link == f"{url}api/layers/{layer_id}/download.tif"
    served = requests.get(link, timeout=60).content
    assert served == (tmp_path / "novelty_sat-loc.tif").read_bytes()
    png = requests.get(
        browser.find_element(By.ID, "download-png").get_attribute("href"), timeout=60
    )
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.headers["content-disposition"] == 'attachment; filename="novelty_sat-loc.png"'

    lon, lat = -100 + 3.5 * 0.5, 39 - 8.5 * 0.5  # row 8, column 3
    browser.execute_script(
        "state.map.fire('click', {latlng: L.latLng(arguments[0], arguments[1])})", lat, lon
    )
    WebDriverWait(browser, 30).until(
        lambda d: "row 8, column 3" in d.find_element(By.ID, "cell").text
    )
    cell = browser.find_element(By.ID, "cell").text
    assert np.isfinite(theirs[8, 3])
    assert f"novelty: novelty of sat+loc {theirs[8, 3]:.5g} {units}" in cell
    browser.save_screenshot(str(tmp_path / "novelty.png"))
