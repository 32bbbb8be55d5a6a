"""`qgis-project`: one QGIS project holding the layers of a run, styled, with their provenance.

A run's maps come from several commands (`sdm`, `uncertainty`, `diversity`, `ica`), each
writing its own GeoTIFF and style sidecar, so the project is made afterwards from the files,
not by one of the commands (see the README's QGIS section).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from prom3e_geo.errors import InputError
from prom3e_geo.grid.aoi import Aoi, load_aoi
from prom3e_geo.io.outputs import check_distinct, check_output, committed_together
from prom3e_geo.io.qgis_project import (
    SUFFIXES,
    RasterLayer,
    aoi_path,
    read_raster_layer,
    write_qgis_project,
)

_AOI_TAG = re.compile(r"\baoi=(\S+)")


@dataclass(frozen=True)
class QgisSpec:
    """`qgis-project`: the GeoTIFFs `layers` (drawn in that order, the first on top), the AOI
    (as `--aoi`: conus, a vector file or a bbox; None: the one recorded in the layers'
    provenance) and the project's title (None: the file's name)."""

    layers: tuple[Path, ...]
    aoi: str | None = None
    title: str | None = None


@dataclass
class QgisResult:
    """The layers the project holds and the files written."""

    layers: list[RasterLayer]
    written: list[Path]


def qgis_project(spec: QgisSpec, out: str | Path, *, overwrite: bool = False) -> QgisResult:
    """Write the QGIS project `out` (.qgz or .qgs) of the spec's layers and the AOI outline
    beside it (`NAME_aoi.geojson`). Every input is checked before anything is written."""
    layer_paths, aoi, title = spec.layers, spec.aoi, spec.title
    out = Path(out)
    if out.suffix.lower() not in SUFFIXES:
        raise InputError(f"QGIS project {out} must end in .qgz or .qgs")
    if not layer_paths:
        raise InputError("give at least one layer (a GeoTIFF written by prom3e-geo)")
    outputs = [out, aoi_path(out)]
    for path in outputs:
        check_output(path, overwrite)
    inputs: list[Path | None] = [Path(p) for p in layer_paths]
    check_distinct(list[Path | None](outputs), inputs)
    layers = [read_raster_layer(p) for p in layer_paths]
    _check_names(layers)
    area = load_aoi(aoi) if aoi is not None else _recorded_aoi(layers)
    with committed_together():
        written = write_qgis_project(out, layers, area, title or out.stem, overwrite)
    return QgisResult(layers, written)


def _check_names(layers: Sequence[RasterLayer]) -> None:
    seen: dict[str, Path] = {}
    for layer in layers:
        if layer.name in seen:
            raise InputError(
                f"layers {seen[layer.name]} and {layer.path} have the same name {layer.name!r}; "
                "rename one"
            )
        seen[layer.name] = layer.path


def _recorded_aoi(layers: Sequence[RasterLayer]) -> Aoi:
    """The AOI named in the layers' `grid` tags: `conus` or a bbox can be rebuilt; an AOI read
    from a file is recorded by its name only, so that file must be given again."""
    names = {m.group(1) for layer in layers if (m := _AOI_TAG.search(layer.tags.get("grid", "")))}
    if not names:
        raise InputError("no layer records its AOI (not made by prom3e-geo?); pass --aoi")
    if len(names) > 1:
        raise InputError(f"the layers were made over different AOIs ({', '.join(sorted(names))}); "
                         "pass --aoi")  # fmt: skip
    (name,) = names
    if name == "conus":
        return load_aoi("conus")
    if name.startswith("bbox(") and name.endswith(")"):
        return load_aoi(name[5:-1])
    raise InputError(f"the layers were made over the AOI file {name!r}; pass it with --aoi FILE")
