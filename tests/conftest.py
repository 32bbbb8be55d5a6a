"""Shared fixtures: small grids and an in-process CLI runner (helpers live in tests/helpers.py)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from prom3e_geo.grid import build_grid


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
