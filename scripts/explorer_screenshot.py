"""Regenerate the README's picture of the browser explorer (docs/explorer.png).

Starts `prom3e-geo serve` on the demo store of the paper grid (built and cached by
`prom3e-geo sdm --query examples/cardinal.jpg --out map.tif`), drops examples/cardinal.jpg on
the page in headless Chromium (Debian's chromium and chromium-driver), clicks a cell in
Missouri and saves the window.

    .venv/bin/python scripts/explorer_screenshot.py [--out docs/explorer.png]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).with_name("prom3e-geo")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,900", "--hide-scrollbars"]  # fmt: skip


def main() -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "explorer.png")
    args = parser.parse_args()
    server = subprocess.Popen([EXE, "serve", "--port", "0"], stdout=subprocess.PIPE, text=True)
    profile = tempfile.TemporaryDirectory()
    try:
        url = server.stdout.readline().split(" on ")[1].split()[0]
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in [*FLAGS, f"--user-data-dir={profile.name}"]:
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
        try:
            wait = WebDriverWait(driver, 120)
            driver.get(url)
            wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "body[data-ready='1']")))
            driver.find_element(By.ID, "file").send_keys(str(ROOT / "examples" / "cardinal.jpg"))
            shown = (By.CSS_SELECTOR, "#map[data-shown^='sdm-']")
            wait.until(ec.presence_of_element_located(shown))
            driver.execute_script(
                "state.map.fire('click', {latlng: L.latLng(38.6, -92.4)})"  # central Missouri
            )
            wait.until(lambda d: "row" in d.find_element(By.ID, "cell").text)
            driver.save_screenshot(str(args.out))
        finally:
            driver.quit()
    finally:
        server.terminate()
        server.wait(30)
        profile.cleanup()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
