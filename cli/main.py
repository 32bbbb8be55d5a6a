"""The `prom3e-geo` command line: parse options, call the library, report.

Exit codes: 0 success, 2 bad usage or bad input (one line on stderr), 1 internal error.
Set PROM3E_GEO_DEBUG=1 to get the traceback of an internal error.
"""

from __future__ import annotations

import functools
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import click
from prom3e_geo_cli.progress import ByteProgress

from prom3e_geo import __version__
from prom3e_geo.errors import InputError

PROG = "prom3e-geo"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name=PROG)
def cli() -> None:
    """Continental maps from the ProM3E multimodal ecological embedding model."""


def command_line() -> str:
    """The command as typed, for provenance tags."""
    return shlex.join([PROG, *sys.argv[1:]])


# -- shared option groups -----------------------------------------------------------------------
def grid_options(fn: Callable) -> Callable:
    """GRID = [--aoi conus|FILE|minx,miny,maxx,maxy] [--crs EPSG] [--shape RxC | --resolution R]."""
    options = [
        click.option(
            "--aoi",
            default="conus",
            show_default=True,
            help="Area: 'conus', a vector file (GeoJSON/GeoPackage/shapefile), or a lon/lat "
            "bbox 'minx,miny,maxx,maxy'.",
        ),
        click.option("--crs", default="EPSG:4326", show_default=True, help="Grid CRS."),
        click.option(
            "--shape", default=None, help="Grid ROWSxCOLS (default 250x500, the paper grid)."
        ),
        click.option(
            "--resolution",
            default=None,
            help="Cell size in CRS units instead of --shape, e.g. 0.05 (deg) or 5000 (m).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def build_grid_from(aoi: str, crs: str, shape: str | None, resolution: str | None):
    from prom3e_geo.grid import build_grid

    return build_grid(aoi=aoi, crs=crs, shape=shape, resolution=resolution)


overwrite_option = click.option(
    "--overwrite", is_flag=True, help="Replace outputs that already exist."
)


def out_path(required: bool = True, help: str = "Output GeoTIFF (COG).") -> Callable:
    return click.option(
        "--out", "out", required=required, type=click.Path(path_type=Path), help=help
    )


# -- commands -----------------------------------------------------------------------------------
@cli.command("grid")
@grid_options
@out_path(help="Output GeoTIFF (COG) of the AOI mask: 1 inside, nodata outside.")
@overwrite_option
def grid_command(aoi, crs, shape, resolution, out, overwrite) -> None:
    """Build a grid and write its AOI mask.

    \b
    Example:
      prom3e-geo grid --crs EPSG:5070 --resolution 5000 --out conus-5km.tif
    """
    import numpy as np

    from prom3e_geo.io.geotiff import write_cog
    from prom3e_geo.io.outputs import check_output
    from prom3e_geo.io.provenance import provenance

    check_output(out, overwrite)
    grid = build_grid_from(aoi, crs, shape, resolution)
    tags = provenance(command_line(), grid)
    write_cog(out, {"aoi": np.ones(grid.shape, np.float32)}, grid, tags, overwrite=overwrite)
    click.echo(f"grid: {grid.describe()}")
    click.echo(f"wrote {out}")


@cli.command("diversity")
@click.option(
    "--observations",
    required=True,
    type=click.Path(path_type=Path),
    help="iNaturalist CSV, GBIF CSV / Darwin Core Archive, or (Geo)Parquet.",
)
@click.option(
    "--sigma",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Gaussian smoothing in cells (0 disables).",
)
@grid_options
@out_path()
@click.option(
    "--zarr", "zarr_path", type=click.Path(path_type=Path), help="Also write a Zarr store."
)
@click.option("--zarr-format", type=click.Choice(["2", "3"]), default="2", show_default=True)
@click.option(
    "--png", "png_path", type=click.Path(path_type=Path), help="Also write a PNG quicklook."
)
@click.option("--lat-col", default=None, help="Latitude column (default: auto-detect).")
@click.option("--lon-col", default=None, help="Longitude column (default: auto-detect).")
@click.option("--species-col", default=None, help="Species column (default: auto-detect).")
@click.option("--research-grade", is_flag=True, help="Keep iNaturalist research-grade rows only.")
@click.option("--since", default=None, help="Keep observations on or after YYYY-MM-DD.")
@click.option("--until", default=None, help="Keep observations on or before YYYY-MM-DD.")
@overwrite_option
def diversity_command(
    observations,
    sigma,
    aoi,
    crs,
    shape,
    resolution,
    out,
    zarr_path,
    zarr_format,
    png_path,
    lat_col,
    lon_col,
    species_col,
    research_grade,
    since,
    until,
    overwrite,
) -> None:
    """Species richness and Shannon diversity maps from observations.

    Bands: shannon, richness (Gaussian-smoothed), shannon_raw, richness_raw, n_obs.

    \b
    Example:
      prom3e-geo diversity --observations inat.csv --out div.tif --png div.png
    """
    from prom3e_geo.io.layers import write_layer_outputs
    from prom3e_geo.io.outputs import check_distinct, check_output
    from prom3e_geo.io.png import Panel
    from prom3e_geo.io.provenance import provenance
    from prom3e_geo.layers.diversity import BAND_DOCS, compute_diversity
    from prom3e_geo.observations import ObservationReader, parse_date

    outputs = [out, zarr_path, png_path]
    for path in outputs:
        if path is not None:
            check_output(path, overwrite)
    check_distinct(outputs, [observations])
    date_range = (parse_date(since), parse_date(until))
    grid = build_grid_from(aoi, crs, shape, resolution)
    with ByteProgress("reading observations") as bar:
        reader = ObservationReader(
            observations,
            lat_col=lat_col,
            lon_col=lon_col,
            species_col=species_col,
            research_grade=research_grade,
            date_range=date_range,
            progress=bar.update_to,
        )
        layers = compute_diversity(reader, grid, sigma=sigma)
    report = reader.report
    if layers.observations_used == 0:
        raise InputError(
            f"no usable observation falls inside the AOI ({report.summary()}; "
            f"outside the grid: {layers.outside_grid:,}, outside the AOI: {layers.outside_aoi:,})"
        )
    tags = provenance(
        command_line(),
        grid,
        inputs={"observations": observations},
        params={
            "layer": "diversity",
            "sigma_cells": sigma,
            "species_column": reader.columns.species,
            "research_grade_only": research_grade,
            "date_range": f"{since or ''}/{until or ''}",
            "rows_read": report.rows_read,
            "rows_kept": report.rows_kept,
            "species": len(reader.species_names),
        },
    )
    panels = [
        Panel(layers.shannon, f"Shannon diversity (sigma {sigma:g} cells)", "H (nats)", "magma"),
        Panel(layers.richness, f"Species richness (sigma {sigma:g} cells)", "species", "viridis"),
    ]
    written = write_layer_outputs(
        layers.bands(),
        grid,
        tags,
        BAND_DOCS,
        out,
        zarr_path=zarr_path,
        zarr_format=int(zarr_format),
        png_path=png_path,
        png_panels=panels,
        png_title=f"{observations.name}: {grid.aoi_name}, {grid.crs_name()}, "
        f"{grid.height}x{grid.width} cells",
        overwrite=overwrite,
    )
    click.echo(f"observations: {report.summary()}")
    click.echo(
        f"diversity: {layers.observations_used:,} observations of {len(reader.species_names):,} "
        f"species in {layers.cells_with_data:,} of {grid.n_inside:,} cells "
        f"(outside the grid: {layers.outside_grid:,}, outside the AOI: {layers.outside_aoi:,})"
    )
    for path in written:
        click.echo(f"wrote {path}")


@cli.command("train")
@click.option("--recipe", required=True, type=click.Path(path_type=Path), help="YAML recipe.")
@click.option(
    "--data",
    "data_paths",
    multiple=True,
    type=click.Path(path_type=Path),
    help="All-paired embeddings (.parquet, .npy dict, .npz, .zarr); repeat to mix sources "
    "(equal weights). Replaces the recipe's data list.",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run folder.")
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly where it stopped.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override the epochs.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
def train_command(recipe, data_paths, out, resume, epochs, device) -> None:
    """Train ProM3E (stage 2) on all-paired modality embeddings.

    Writes OUT/metrics.csv, OUT/loss.png, OUT/last.safetensors, OUT/best.safetensors and
    OUT/state.pt (for --resume) after every epoch.

    \b
    Example:
      prom3e-geo train --recipe recipes/train-prom3e.yaml --data multinat.npy --out runs/prom3e
    """
    from prom3e_geo.recipes import load_recipe
    from prom3e_geo.train.data import load_embeddings
    from prom3e_geo.train.stage2 import Stage2Trainer

    spec = load_recipe(recipe)
    sources = [{"path": str(p), "weight": 1.0} for p in data_paths] or list(spec.data)
    if not sources:
        raise InputError(
            "no training data: pass --data FILE or list files under 'data' in the recipe"
        )
    if not out.parent.exists():
        raise InputError(f"output folder {out.parent} does not exist")
    datasets = [load_embeddings(s["path"]) for s in sources]
    for d in datasets:
        click.echo(f"data: {d.name}: {len(d):,} samples, modalities {d.present}")

    def report(m: dict) -> None:
        parts = [f"epoch {m['epoch']}", f"loss {m['train_loss']:.4f}"]
        if "val_loss" in m:
            parts.append(f"val {m['val_loss']:.4f}")
        if "val_recall@1" in m:
            parts.append(f"R@1 {m['val_recall@1']:.3f} R@5 {m['val_recall@5']:.3f}")
        parts.append(f"{m['seconds']:.1f}s")
        click.echo("  ".join(parts))

    trainer = Stage2Trainer(
        spec, datasets, out, device=device, weights=[s["weight"] for s in sources], on_epoch=report
    )
    click.echo(
        f"training on {trainer.device}: {sum(p.numel() for p in trainer.model.parameters()):,} "
        f"parameters, {trainer.steps_per_epoch} steps per epoch, masking {spec.masking['strategy']}"
    )
    history = trainer.fit(epochs=epochs, resume=resume)
    click.echo(f"done: {len(history)} epochs; weights in {out / 'best.safetensors'}")


@cli.group("demo")
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
def demo_build_command(recipe, out, examples, overwrite) -> None:
    """Regenerate the demo world's models, observations and query photos.

    \b
    Example (refresh the shipped demo):
      prom3e-geo demo build --recipe recipes/demo-world.yaml \\
          --out prom3e_geo/data/demo --examples examples --overwrite
    """
    from prom3e_geo.demo.build import DemoRecipe, build_demo

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
def demo_info_command(models) -> None:
    """Describe the demo world and how its models were made.

    \b
    Example:
      prom3e-geo demo info
    """
    from prom3e_geo.demo.build import describe_demo

    click.echo(describe_demo(models))


# -- entry point --------------------------------------------------------------------------------
def _fail(message: str, code: int) -> None:
    click.echo(f"{PROG}: error: {message}", err=True)
    sys.exit(code)


def handle_errors(fn: Callable[[], int | None]) -> Callable[[], None]:
    @functools.wraps(fn)
    def wrapper() -> None:
        try:
            code = fn()
        except InputError as exc:
            _fail(str(exc), 2)
        except click.ClickException as exc:  # usage errors: exit 2, one line
            _fail(" ".join(exc.format_message().split()), exc.exit_code)
        except (KeyboardInterrupt, click.Abort):
            _fail("interrupted", 130)
        except Exception as exc:
            if os.environ.get("PROM3E_GEO_DEBUG"):
                raise
            _fail(f"internal error: {type(exc).__name__}: {exc} (PROM3E_GEO_DEBUG=1 shows more)", 1)
        sys.exit(code or 0)

    return wrapper


@handle_errors
def main() -> int | None:
    return cli.main(prog_name=PROG, standalone_mode=False)


if __name__ == "__main__":
    main()
