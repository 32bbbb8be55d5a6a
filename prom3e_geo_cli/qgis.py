"""`qgis-project`: the layers of a run in one QGIS project."""

from __future__ import annotations

from pathlib import Path

import click

from prom3e_geo_cli.options import overwrite_option


@click.command("qgis-project")
@click.argument("out", type=click.Path(path_type=Path))
@click.argument("layers", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--aoi",
    default=None,
    help="AOI outline: conus, a vector file or minx,miny,maxx,maxy (default: the layers' own).",
)
@click.option("--title", default=None, help="Project title (default: the file name).")
@overwrite_option
def qgis_project_command(
    out: Path, layers: tuple[Path, ...], aoi: str | None, title: str | None, overwrite: bool
) -> None:
    """Write a QGIS project (.qgz or .qgs) holding LAYERS (GeoTIFFs) and the AOI outline.

    Each layer keeps its style sidecar (NAME.qml) and shows its provenance in Layer Properties >
    Metadata; paths are relative, so the folder can be moved. The AOI outline is written beside
    the project as NAME_aoi.geojson. Layers are drawn in the order given, the first on top.

    \b
    Example:
      prom3e-geo qgis-project run.qgz map.tif sigma.tif div.tif
    """
    from prom3e_geo.workflows.qgis import QgisSpec, qgis_project

    spec = QgisSpec(tuple(Path(p) for p in layers), aoi, title)
    result = qgis_project(spec, out, overwrite=overwrite)
    for layer in result.layers:
        click.echo(f"{layer.name}: {', '.join(layer.bands)}")
    for path in result.written:
        click.echo(f"wrote {path}")
