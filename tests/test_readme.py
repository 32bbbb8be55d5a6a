"""The README's code runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_xarray_snippet_runs_in_a_fresh_interpreter(tmp_path, run_cli):
    from tests.helpers import write_inat_csv

    obs = write_inat_csv(tmp_path / "obs.csv", [(39.0, -95.0, "a"), (39.0, -95.0, "b")] * 3)
    r = run_cli("diversity", "--observations", obs, "--aoi", "-100,35,-90,42", "--resolution",
                "0.5", "--out", tmp_path / "div.tif", "--zarr", tmp_path / "div.zarr")  # fmt: skip
    assert r.code == 0, r.err
    [snippet] = [b for b in _python_blocks((ROOT / "README.md").read_text()) if "div.zarr" in b]
    script = snippet + "\nassert ds.rio.crs.to_epsg() == 4326, ds.rio.crs\nprint('ok')\n"
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr
