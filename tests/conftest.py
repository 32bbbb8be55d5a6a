"""Shared fixtures: small grids and an in-process CLI runner (helpers live in tests/helpers.py)."""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

# Nothing the tests run may write to the real home folder or reach a real service: caches go to
# a folder of this session, and the hub endpoint is a closed local port unless a test starts
# the hub stand-in. Set before anything imports huggingface_hub (it reads them at import).
SESSION_HOME = Path(tempfile.mkdtemp(prefix="prom3e-geo-tests-"))
os.environ.update(
    {
        "HF_HOME": str(SESSION_HOME / "hf"),
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "XDG_CACHE_HOME": str(SESSION_HOME / "cache"),
        "PROM3E_GEO_CACHE": str(SESSION_HOME / "prom3e-geo"),
    }
)
os.environ.pop("HF_TOKEN", None)
os.environ.pop("HF_HUB_OFFLINE", None)

from prom3e_geo.grid import build_grid  # noqa: E402 (after the environment above)


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """Run `prom3e-geo ARGS...` in-process; returns exit code, stdout and stderr."""
    from prom3e_geo_cli.main import main

    def run(*args: str | Path) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["prom3e-geo", *map(str, args)])
        with pytest.raises(SystemExit) as exc:
            main()
        captured = capsys.readouterr()
        return CliResult(int(exc.value.code or 0), captured.out, captured.err)

    return run


@pytest.fixture
def small_grid():
    """A 10 x 20 lon/lat grid over a 2 x 1 degree bbox in Kansas: 0.1 degree cells."""
    return build_grid(aoi="-100,38,-98,39", shape="10x20")
