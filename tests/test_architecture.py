"""The structure the architecture promises (docs/architecture.md): the core never imports the
demo plug-in, the CLI is thin, kinds are chosen through registries."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from prom3e_geo.errors import SourceError, UnknownNameError
from prom3e_geo.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "prom3e_geo"


def _core_modules() -> list[str]:
    modules = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if "plugins" in parts:
            continue
        modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


def test_no_core_module_imports_the_demo_plugin_in_a_fresh_interpreter():
    modules = _core_modules()
    assert len(modules) > 40 and "prom3e_geo.engine.pipeline" in modules
    script = textwrap.dedent(
        f"""
        import importlib, sys
        for name in {modules!r} + ["prom3e_geo_cli.main"]:
            importlib.import_module(name)
            leaked = sorted(m for m in sys.modules if m.startswith("prom3e_geo.plugins.demo"))
            if leaked:
                sys.exit(f"{{name}} imported {{leaked}}")
        print("clean")
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == "clean", run.stderr + run.stdout


def test_a_diversity_map_loads_no_model_stack(tmp_path):
    """Regression: the map specs named the sdm modes through `layers.sdm`, so every command,
    `diversity` included, imported torch and xarray first (3.7 s for a 1,000-row file on a
    quiet machine, 1.35 s without). A diversity run in a fresh interpreter loads neither, nor
    pyproj (40 ms; GDAL reads the grid's CRS, pyproj is for reprojections and Zarr outputs)."""
    observations = Path(__file__).resolve().parents[1] / "examples" / "observations.csv"
    script = textwrap.dedent(
        f"""
        import sys
        from prom3e_geo_cli.main import main
        sys.argv = ["prom3e-geo", "diversity", "--observations", {str(observations)!r},
                    "--out", {str(tmp_path / "d.tif")!r}]
        try:
            main()
        except SystemExit as exit:
            assert not exit.code, exit.code
        heavy = ("torch", "xarray", "dask", "zarr", "pandas", "matplotlib", "pyproj")
        print(sorted(m for m in heavy if m in sys.modules))
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[]", run.stdout
    assert (tmp_path / "d.tif").exists()


def _command_functions(tree: ast.Module) -> list[ast.FunctionDef]:
    def is_command(decorator: ast.expr) -> bool:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        return isinstance(target, ast.Attribute) and target.attr in ("command", "group")

    return [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and any(map(is_command, node.decorator_list))
    ]


def test_the_cli_is_thin():
    files = sorted((ROOT / "prom3e_geo_cli").glob("*.py")) + [
        PACKAGE / "plugins" / "demo" / "cli.py"
    ]
    assert len(files) > 10  # the CLI's modules, found where they live
    commands = 0
    for path in files:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            heavy = [n for n in names if n.split(".")[0] in ("numpy", "torch", "rasterio")]
            assert not heavy, f"{path.name}:{node.lineno} imports {heavy}"
        for fn in _command_functions(tree):
            commands += 1
            length = fn.end_lineno - fn.body[0].lineno + 1  # docstring and body: the typed
            assert length < 40, f"{path.name}: {fn.name} is {length} lines"  # signature aside
    assert commands >= 13  # grid ... train, and the demo group's build and info


def test_a_registry_lists_what_it_knows_and_refuses_the_rest():
    registry: Registry = Registry("prom3e_geo.no_such_group", "widget")
    registry.register("blue", 42)
    assert registry.names() == ["blue"] and "blue" in registry and registry.get("blue") == 42
    with pytest.raises(UnknownNameError, match=r"unknown widget 'red' \(available: blue\)"):
        registry.get("red")


def test_builtin_kinds_come_from_entry_points():
    from prom3e_geo.encoders.registry import LOADERS, NAMED_ENCODERS
    from prom3e_geo.engine.pipeline import PRESETS
    from prom3e_geo.imagery.base import SOURCES
    from prom3e_geo.train.masking import STRATEGIES

    assert {"local", "stac", "sentinelhub", "cache", "demo"} <= set(SOURCES.names())
    assert set(LOADERS.names()) == {"image", "sat", "loc", "env", "text", "audio"}
    assert {"geoclip", "demo"} <= set(NAMED_ENCODERS.names()) and "demo" in PRESETS
    assert len(STRATEGIES.names()) == 9 and STRATEGIES.get("miam").name == "miam"


class _Fussy:
    """A source whose constructor fails with a TypeError of its own (a bug, not bad input)."""

    name, bands, size = "fussy", ("B04",), 8

    def __init__(self, *, size: int = 8) -> None:
        raise TypeError("a bug inside the source")


def test_source_options_are_checked_by_signature_and_bugs_are_not_called_bad_input(monkeypatch):
    from prom3e_geo.imagery.base import SOURCES, open_source

    # registered in a copy of the loaded entries that is put back after the test: the source
    # must not stay registered for the tests that run after this one
    monkeypatch.setattr(SOURCES, "_loaded", dict(SOURCES._loaded))
    SOURCES.register("fussy", _Fussy)
    with pytest.raises(SourceError, match="takes the options size"):
        open_source("fussy?colour=red")
    with pytest.raises(SourceError, match="is written 'local:PATH'"):
        open_source("local")
    with pytest.raises(SourceError, match="is written 'demo'"):
        open_source("demo:somewhere")
    with pytest.raises(TypeError, match="a bug inside the source"):
        open_source("fussy?size=16")


def test_the_source_registered_by_that_test_does_not_outlive_it():
    from prom3e_geo.imagery.base import SOURCES

    with pytest.MonkeyPatch.context() as mp:
        test_source_options_are_checked_by_signature_and_bugs_are_not_called_bad_input(mp)
        assert "fussy" in SOURCES
    assert "fussy" not in SOURCES


def test_every_package_ships():
    """pyproject lists its packages by hand: a package missing there is missing from the wheel
    (an editable install would not notice)."""
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for path in (ROOT / "prom3e_geo").rglob("__init__.py")
    }
    assert found <= listed, sorted(found - listed)
