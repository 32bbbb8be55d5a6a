"""The public API (docs/api.md): one calling convention, names type checkers see, and one
pipeline built per map."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

import prom3e_geo
from prom3e_geo.engine import pipeline as pipelines
from prom3e_geo.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CARDINAL = ROOT / "examples" / "cardinal.jpg"
SMALL = {"aoi": "-100,33,-88,39", "resolution": "0.5", "chunk": 6}  # 12 x 24 cells


def _type_checking_names() -> dict[str, str]:
    """name -> module of the `if TYPE_CHECKING:` imports of prom3e_geo/__init__.py."""
    tree = ast.parse((ROOT / "prom3e_geo" / "__init__.py").read_text())
    block = next(
        n for n in tree.body if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)
    )
    return {
        alias.name: node.module or ""
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }


def test_the_lazy_names_and_the_type_checking_block_name_the_same_objects():
    seen = _type_checking_names()
    assert seen == prom3e_geo._PUBLIC
    assert sorted(prom3e_geo.__all__) == sorted(["__version__", *seen])
    for name in (
        "fetch_patches",
        "grid_mask",
        "PatchSource",
        "LayerSet",
        "UncertaintySpec",
        "IcaSpec",
    ):
        assert name in seen
    for name, module in seen.items():
        assert getattr(prom3e_geo, name) is getattr(__import__(module, fromlist=[name]), name)
    with pytest.raises(AttributeError, match="no attribute 'nosuch'"):
        prom3e_geo.nosuch  # noqa: B018


def test_only_the_package_root_names_project_modules_for_type_checkers_alone():
    """import-linter skips `TYPE_CHECKING` imports (for the root's); anywhere else such a block
    may name outside libraries (kept out of import time), never a project module, which could
    hide an upward import from the layers contract."""
    hidden = []
    for folder in ("prom3e_geo", "prom3e_geo_cli"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "prom3e_geo" / "__init__.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                    hidden += [
                        f"{path.relative_to(ROOT)}: {inner.module}"
                        for inner in ast.walk(node)
                        if isinstance(inner, ast.ImportFrom)
                        and (inner.module or "").startswith(("prom3e_geo", "."))
                    ]
    assert hidden == []
    assert "TYPE_CHECKING" in (ROOT / "prom3e_geo" / "__init__.py").read_text()


def test_importing_the_package_loads_no_heavy_library():
    script = (
        "import sys, prom3e_geo; "
        "print(sorted(m for m in ('torch', 'rasterio', 'xarray', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_workflow_takes_its_spec_first_and_the_rest_by_keyword():
    """Same first argument kind (the workflow's own frozen spec), no `command` to pass, a result
    object rather than a tuple."""
    from prom3e_geo.workflows import compare, grid, maps, qgis

    for fn in (maps.sdm, maps.uncertainty, maps.ica, maps.embed, compare.compare, grid.grid_mask,
               qgis.qgis_project):  # fmt: skip
        params = list(inspect.signature(fn).parameters.values())
        assert params[0].name == "spec" or params[0].name == "grid", fn
        for p in params:
            if p.name in ("command", "overwrite", "settings", "progress", "run"):
                assert p.kind is p.KEYWORD_ONLY and p.default is not p.empty, (fn, p.name)
        assert "tuple" not in str(inspect.signature(fn).return_annotation), fn


def test_one_sdm_run_builds_its_pipeline_once(tmp_path, monkeypatch):
    """The store is built and read with one pipeline: the model and encoders load once (the
    spec is resolved before it names a pipeline; a store built in the run is read with the
    pipeline that built it, not one rebuilt from its manifest)."""
    from prom3e_geo import GridSpec, MapInputs, OutputSpec, SdmSpec, sdm

    built, assembled = [], []
    build, assemble = pipelines.build_pipeline, pipelines._assemble
    monkeypatch.setattr(pipelines, "build_pipeline", lambda spec: built.append(spec) or build(spec))
    monkeypatch.setattr(pipelines, "_assemble", lambda *a: assembled.append(a[0]) or assemble(*a))
    pipelines.close_pipelines()
    try:
        out = tmp_path / "map.tif"
        result = sdm(
            SdmSpec((str(CARDINAL),)),
            MapInputs(grid=GridSpec(**SMALL)),
            OutputSpec(out),
            settings=Settings(cache_dir=tmp_path / "cache"),
        )
    finally:
        pipelines.close_pipelines()
    assert len(built) == 1 and len(assembled) == 1
    (spec,) = built
    assert spec.model == "demo" and spec.precision == "float32" and spec.device == "cpu"
    assert result.written[0] == out
    with rasterio.open(out) as src:
        band = src.read(1, masked=True)
        assert src.tags()["command"] == "prom3e_geo.sdm()"  # no command string to pass
    assert band.count() > 0 and np.isfinite(band.compressed()).all()
    assert np.allclose(
        band.compressed(), result.layers.bands[next(iter(result.layers.bands))][~band.mask]
    )


def test_the_version_is_the_one_pyproject_declares():
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert prom3e_geo.__version__ == declared
