"""Option groups shared by the commands, and the typed specs they become."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

import prom3e_geo  # the root only (its names load on first use): the specs' types below

F = TypeVar("F", bound=Callable[..., Any])

PROG = "prom3e-geo"
SOURCE_HELP = (
    "Imagery source: demo, local:PATH, cache:PATH (a fetch cache), sentinelhub[:PROFILE|cdse], "
    "stac[:URL], each with optional ?key=value&... options (time, max_cloud, ...)."
)


def command_line() -> str:
    """The command as typed, for provenance tags."""
    return shlex.join([PROG, *sys.argv[1:]])


def with_options(options: list[Callable[[F], F]]) -> Callable[[F], F]:
    """A decorator applying click options so that they appear in --help in the listed order."""

    def apply(fn: F) -> F:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


overwrite_option = click.option(
    "--overwrite", is_flag=True, help="Replace outputs that already exist."
)

grid_options = with_options(
    [
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
        click.option(
            "--chunk",
            default=None,
            type=click.IntRange(min=1),
            help="Grid chunk edge in cells, the unit of resume and of Dask tasks (default 64).",
        ),
    ]
)


def grid_spec(o: dict[str, Any]) -> prom3e_geo.GridSpec:
    """GridSpec from the grid options (removed from `o`)."""
    from prom3e_geo.workflows.specs import GridSpec

    return GridSpec(*(o.pop(k) for k in ("aoi", "crs", "shape", "resolution", "chunk")))


output_options = with_options(
    [
        click.option(
            "--out", required=True, type=click.Path(path_type=Path), help="Output GeoTIFF (COG)."
        ),
        click.option(
            "--zarr",
            "zarr_path",
            default=None,
            help="Also write a Zarr store: a path, or s3://, gs://, az:// (uploaded when complete).",
        ),
        click.option(
            "--zarr-format", type=click.Choice(["2", "3"]), default="2", show_default=True
        ),
        click.option(
            "--png", "png_path", type=click.Path(path_type=Path), help="Also write a PNG quicklook."
        ),
        overwrite_option,
    ]
)


def output_spec(o: dict[str, Any]) -> prom3e_geo.OutputSpec:
    """OutputSpec from the output options (removed from `o`)."""
    from prom3e_geo.io.outputs import OutputSpec

    out, zarr, fmt, png, overwrite = (
        o.pop(k) for k in ("out", "zarr_path", "zarr_format", "png_path", "overwrite")
    )
    return OutputSpec(out, zarr, int(fmt), png, overwrite)


ENCODER_OPTIONS = ("sat", "loc", "env", "image", "text", "audio")

pipeline_options = with_options(
    [
        click.option(
            "--weights",
            default=None,
            help="A weights preset: taxabind (the released ProM3E + TaxaBind encoders, "
            "downloaded once), demo, or a preset recipe (.yaml). Default: the store's with "
            "--embeddings, else demo. See `prom3e-geo weights list`.",
        ),
        click.option(
            "--model",
            default=None,
            help="ProM3E weights instead of a preset: a hub id (ORG/NAME[@REV]), a .ckpt, "
            ".safetensors or HF folder; encoders come from the --*-encoder options.",
        ),
        click.option(
            "--source", default=None, help=SOURCE_HELP + " Default: the model preset's source."
        ),
        click.option(
            "--context",
            default="sat,loc,env",
            show_default=True,
            help="Visible context modalities.",
        ),
        click.option(
            "--sat-encoder", default=None, help="Satellite encoder (HF folder or hub id)."
        ),
        click.option(
            "--loc-encoder",
            default=None,
            help="Location encoder: geoclip (the default for ProM3E weights), a checkpoint or "
            "a hub id.",
        ),
        click.option(
            "--env-encoder",
            default=None,
            help="Environment encoder (SINR checkpoint, folder or hub id).",
        ),
        click.option(
            "--env-raster", default=None, help="20-band WorldClim-style raster for the env context."
        ),
        click.option(
            "--image-encoder",
            default=None,
            help="Image tower for photo queries (open_clip or HF folder, or hub id).",
        ),
        click.option(
            "--text-encoder",
            default=None,
            help="Text tower for species-name queries (open_clip or HF folder, or hub id).",
        ),
        click.option(
            "--audio-encoder",
            default=None,
            help="Audio tower for recording queries (CLAP folder or hub id).",
        ),
        click.option(
            "--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."
        ),
        click.option(
            "--precision",
            default="auto",
            show_default=True,
            type=click.Choice(["auto", "bf16", "float32"]),
            help="Inference precision; auto is bf16 autocast on CUDA, float32 on a CPU.",
        ),
        click.option("--batch-size", default=1024, show_default=True, type=click.IntRange(min=1)),
        click.option(
            "--prefetch",
            default=2,
            show_default=True,
            type=click.IntRange(min=1),
            help="Batches whose inputs are gathered ahead, each on its own thread.",
        ),
        click.option(
            "--workers",
            default=None,
            type=click.IntRange(min=1),
            help="Run on a local Dask cluster.",
        ),
        click.option(
            "--scheduler", default=None, help="Address of an existing dask.distributed scheduler."
        ),
        click.option(
            "--retry-failed/--no-retry-failed",
            default=True,
            show_default=True,
            help="Compute again the finished chunks whose cells lacked an input (a failed patch).",
        ),
    ]
)


def pipeline_spec(o: dict[str, Any]) -> prom3e_geo.PipelineSpec:
    """PipelineSpec from the pipeline options (removed from `o`)."""
    from prom3e_geo.engine.spec import PipelineSpec, parse_context

    encoders = tuple(
        (m, spec) for m in ENCODER_OPTIONS if (spec := o.pop(f"{m}_encoder")) is not None
    )
    weights, model = o.pop("weights"), o.pop("model")
    if weights and model:
        raise click.UsageError("give --weights (a preset) or --model (ProM3E weights), not both")
    return PipelineSpec(
        model=weights or model,
        source=o.pop("source"),
        context=tuple(parse_context(o.pop("context"))),
        encoders=encoders,
        env_raster=o.pop("env_raster"),
        device=o.pop("device"),
        batch_size=o.pop("batch_size"),
        prefetch=o.pop("prefetch"),
        precision=o.pop("precision"),
    )


STORE_FIXED = ("aoi", "crs", "shape", "resolution", "chunk", "source", "context", "env_raster")


def map_inputs(
    o: dict[str, Any],
    embeddings: str | Path | None = None,
    store_fixed: tuple[str, ...] = STORE_FIXED,
) -> prom3e_geo.MapInputs:
    """MapInputs from the pipeline, grid and run options (removed from `o`), with the names of
    the options typed on the command line that an embedding store fixes."""
    from click.core import ParameterSource

    from prom3e_geo.workflows.maps import MapInputs
    from prom3e_geo.workflows.specs import RunSpec

    context = click.get_current_context()
    typed = tuple(
        name for name in store_fixed
        if context.get_parameter_source(name) == ParameterSource.COMMANDLINE
    )  # fmt: skip
    window = None  # --aoi with a given store: the part of it to map
    if embeddings is not None and "aoi" in typed:
        window, typed = o["aoi"], tuple(name for name in typed if name != "aoi")
    pipeline, grid = pipeline_spec(o), grid_spec(o)
    run = RunSpec(o.pop("workers"), o.pop("scheduler"), o.pop("retry_failed"))
    return MapInputs(embeddings, pipeline, grid, run, typed, window)
