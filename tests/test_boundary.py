"""The bundled CONUS boundary: regenerated from the Census source, it is the same file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import shapely

from prom3e_geo.grid import conus_boundary

ROOT = Path(__file__).resolve().parents[1]


def test_boundary_is_48_states_plus_dc_without_alaska_hawaii():
    conus = conus_boundary()
    assert conus.is_valid and conus.geom_type == "MultiPolygon"
    minx, miny, maxx, maxy = conus.bounds
    assert (
        -125 < minx < -124.5 and 24.4 < miny < 24.6 and -67.1 < maxx < -66.9 and 49.3 < maxy < 49.5
    )
    assert not shapely.contains_xy(conus, -149.9, 61.2)  # Anchorage
    assert not shapely.contains_xy(conus, -157.86, 21.31)  # Honolulu
    assert not shapely.contains_xy(conus, -66.1, 18.47)  # San Juan
    assert shapely.contains_xy(conus, -77.04, 38.90)  # Washington, DC


def test_build_script_regenerates_the_bundled_file(tmp_path):
    pytest.importorskip("_plotly_geo", reason="plotly-geo (dev extra) holds the Census source")
    out = tmp_path / "conus.geojson"
    subprocess.run(
        [sys.executable, ROOT / "scripts" / "build_conus_boundary.py", "--out", out],
        check=True,
        capture_output=True,
    )
    assert out.read_bytes() == (ROOT / "prom3e_geo" / "data" / "conus.geojson").read_bytes()
