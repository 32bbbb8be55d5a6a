"""`prom3e-geo demo build|info`: the demo world's command group, registered in the
`prom3e_geo.cli` entry point group."""

from __future__ import annotations

from pathlib import Path

import click

from prom3e_geo.errors import InputError


@click.group("demo")
def demo_group() -> None:
    """The offline demo world: synthetic ecology over the real contiguous USA."""


@demo_group.command("build")
@click.option(
    "--recipe",
    type=click.Path(path_type=Path),
    default=None,
    help="Demo recipe YAML (default: the shipped recipes/demo-world.yaml settings).",
)
@click.option(
    "--out", required=True, type=click.Path(path_type=Path), help="Folder for the models."
)
@click.option(
    "--examples",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write query photos and observations.csv here.",
)
@click.option("--overwrite", is_flag=True, help="Replace models already in --out.")
def demo_build_command(
    recipe: Path | None, out: Path, examples: Path | None, overwrite: bool
) -> None:
    """Regenerate the demo world's models, observations and query photos.

    \b
    Example (refresh the shipped demo):
      prom3e-geo demo build --recipe recipes/demo-world.yaml \\
          --out prom3e_geo/plugins/demo/data --examples examples --overwrite
    """
    from prom3e_geo.plugins.demo.build import DemoRecipe, build_demo

    spec = DemoRecipe.load(recipe) if recipe else DemoRecipe()
    if (out / "prom3e.safetensors").exists() and not overwrite:
        raise InputError(f"{out} already holds demo models (pass --overwrite to replace them)")
    if not out.parent.exists():
        raise InputError(f"output folder {out.parent} does not exist")
    info = build_demo(spec, out, examples, progress=click.echo)
    click.echo(f"wrote {out} ({info['timings_s']['total_s']:.0f} s)")


@demo_group.command("info")
@click.option(
    "--models", type=click.Path(path_type=Path), default=None, help="A demo build folder."
)
def demo_info_command(models: Path | None) -> None:
    """Describe the demo world and how its models were made.

    \b
    Example:
      prom3e-geo demo info
    """
    from prom3e_geo.plugins.demo.build import describe_demo

    click.echo(describe_demo(models))


@demo_group.command("truth")
@click.option("--species", required=True, help="Common name, e.g. 'northern cardinal'.")
@click.option("--aoi", default="conus", show_default=True, help="Area (as for every map).")
@click.option("--crs", default="EPSG:4326", show_default=True, help="Grid CRS.")
@click.option("--shape", default=None, help="Grid ROWSxCOLS (default 250x500).")
@click.option("--resolution", default=None, help="Cell size in CRS units instead of --shape.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output COG.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
def demo_truth_command(
    species: str,
    aoi: str,
    crs: str,
    shape: str | None,
    resolution: str | None,
    out: Path,
    overwrite: bool,
) -> None:
    """The true range of a demo-world species (1 in range, 0 outside), on a map's grid: the
    truth that `compare --truth` judges maps and their uncertainty against.

    \b
    Example:
      prom3e-geo demo truth --species "northern cardinal" --out range.tif
    """
    from prom3e_geo.plugins.demo.science import write_true_range

    click.echo(f"wrote {write_true_range(species, aoi, crs, shape, resolution, out, overwrite)}")
