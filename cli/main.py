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
import numpy as np
from prom3e_geo_cli.progress import ByteProgress, CellProgress

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


def with_options(fn: Callable, options: list) -> Callable:
    """Apply click options so that they appear in --help in the listed order."""
    for option in reversed(options):
        fn = option(fn)
    return fn


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
    return with_options(fn, options)


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


def pipeline_options(fn: Callable) -> Callable:
    """Model, encoders, imagery, context and execution options shared by embed/sdm/uncertainty."""
    options = [
        click.option(
            "--model",
            default="demo",
            show_default=True,
            help="demo, or ProM3E weights (.ckpt, .safetensors, HF folder).",
        ),
        click.option(
            "--source",
            default="demo",
            show_default=True,
            help="Imagery source: demo, local:PATH, cache:PATH (a fetch cache), sentinelhub[:PROFILE|cdse], stac[:URL], each with optional ?key=value&... options (time, max_cloud, ...).",
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
            default="geoclip",
            show_default=True,
            help="Location encoder: geoclip or a checkpoint.",
        ),
        click.option(
            "--env-encoder", default=None, help="Environment encoder checkpoint (SINR layout)."
        ),
        click.option(
            "--env-raster", default=None, help="20-band WorldClim-style raster for the env context."
        ),
        click.option(
            "--image-encoder",
            default=None,
            help="Image tower for photo queries (open_clip or HF folder).",
        ),
        click.option("--text-encoder", default=None, help="Text tower for species-name queries."),
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
            "--chunk",
            default=64,
            show_default=True,
            type=click.IntRange(min=8),
            help="Grid chunk edge (cells).",
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
    ]
    return with_options(fn, options)


def pipeline_spec(o: dict):
    from prom3e_geo.inference import PipelineSpec, parse_context

    encoders = tuple(
        (m, o[f"{k}_encoder"])
        for m, k in (
            ("sat", "sat"),
            ("loc", "loc"),
            ("env", "env"),
            ("image", "image"),
            ("text", "text"),
        )
        if o.get(f"{k}_encoder") and o["model"] != "demo"
    )
    return PipelineSpec(
        o["model"],
        o["source"],
        tuple(parse_context(o["context"])),
        encoders,
        o["env_raster"],
        o["device"],
        o["batch_size"],
        o["prefetch"],
        o["precision"],
    )


def grid_for(o: dict):
    import dataclasses

    grid = build_grid_from(o["aoi"], o["crs"], o["shape"], o["resolution"])
    return dataclasses.replace(grid, chunk_shape=(o["chunk"], o["chunk"]))


def store_for(o: dict, embeddings: Path | None) -> Path:
    """The given store, or one built (and cached) for the pipeline and grid options."""
    from prom3e_geo.layers.maps import cached_store

    if embeddings is not None:
        return embeddings
    with CellProgress() as progress:
        return cached_store(
            pipeline_spec(o), grid_for(o), progress, workers=o["workers"], scheduler=o["scheduler"]
        )


def write_layers(layers, o: dict, title: str, cmap: str = "viridis") -> list:
    """A layer set to the outputs of `output_options` (COG, optional Zarr and PNG), with
    provenance tags; `cmap="rgb"` draws the first three bands as one composite."""
    from prom3e_geo.io.layers import write_layer_outputs
    from prom3e_geo.io.png import Panel
    from prom3e_geo.io.provenance import provenance
    from prom3e_geo.layers.maps import manifest_tags

    tags = provenance(command_line(), layers.grid, params=layers.params)
    tags |= manifest_tags(layers.manifest)
    if cmap == "rgb":  # the first three bands as one composite
        panels = [Panel(np.dstack(list(layers.bands.values())[:3]), "")]
    else:
        panels = [Panel(v, f"{k}", "", cmap) for k, v in list(layers.bands.items())[:3]]
    return write_layer_outputs(
        layers.bands,
        layers.grid,
        tags,
        layers.docs,
        o["out"],
        zarr_path=o["zarr_path"],
        zarr_format=int(o["zarr_format"]),
        png_path=o["png_path"],
        png_panels=panels,
        png_title=title,
        overwrite=o["overwrite"],
    )


def output_options(fn: Callable) -> Callable:
    options = [
        click.option(
            "--out",
            "out",
            required=True,
            type=click.Path(path_type=Path),
            help="Output GeoTIFF (COG).",
        ),
        click.option(
            "--zarr", "zarr_path", type=click.Path(path_type=Path), help="Also write a Zarr store."
        ),
        click.option(
            "--zarr-format", type=click.Choice(["2", "3"]), default="2", show_default=True
        ),
        click.option(
            "--png", "png_path", type=click.Path(path_type=Path), help="Also write a PNG quicklook."
        ),
        overwrite_option,
    ]
    return with_options(fn, options)


def check_outputs(o: dict, inputs: list) -> None:
    from prom3e_geo.io.outputs import check_distinct, check_output

    outputs = [o["out"], o["zarr_path"], o["png_path"]]
    for path in outputs:
        if path is not None:
            check_output(path, o["overwrite"])
    check_distinct(outputs, inputs)


@cli.command("fetch")
@click.option(
    "--source",
    required=True,
    help="Imagery source: demo, local:PATH, sentinelhub[:PROFILE|cdse], stac[:URL], each with optional ?key=value&... options (time, max_cloud, ...).",
)
@click.option(
    "--cache", "cache", required=True, type=click.Path(path_type=Path), help="Patch cache (.zarr)."
)
@click.option(
    "--size",
    default=256,
    show_default=True,
    type=click.IntRange(min=8),
    help="Patch edge in pixels.",
)
@click.option(
    "--patch-resolution",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Patch pixel size in metres (all but the demo source).",
)
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--chunk",
    default=64,
    show_default=True,
    type=click.IntRange(min=1),
    help="Grid chunk edge (cells).",
)
@grid_options
def fetch_command(
    source, cache, size, patch_resolution, batch_size, chunk, aoi, crs, shape, resolution
) -> None:
    """Fetch one Sentinel-2 patch per grid cell into a resumable patch cache.

    Re-running resumes an interrupted fetch; a cache made with other settings is refused.

    \b
    Example:
      prom3e-geo fetch --source local:mosaic.vrt --aoi -100,35,-95,40 --resolution 0.05 --cache patches.zarr
      prom3e-geo fetch --source "stac?time=2023-06-01/2023-08-31&max_cloud=0.1" --cache conus.zarr
      SH_CLIENT_ID=... SH_CLIENT_SECRET=... prom3e-geo fetch --source sentinelhub:cdse --cache conus.zarr
    """
    import dataclasses

    from prom3e_geo.imagery import open_source
    from prom3e_geo.imagery.base import parse_spec
    from prom3e_geo.imagery.cache import fetch_grid

    options = {"size": size}
    if parse_spec(source)[0] != "demo":
        options["resolution"] = patch_resolution
    patch_source = open_source(source, **options)
    grid = dataclasses.replace(
        build_grid_from(aoi, crs, shape, resolution), chunk_shape=(chunk, chunk)
    )
    stats = getattr(patch_source, "stats", None)
    with CellProgress(stats) as progress:
        summary = fetch_grid(patch_source, grid, cache, size, batch_size, progress)
    reasons = "; ".join(f"{k}: {v:,}" for k, v in summary.reasons.most_common()) or "none"
    traffic = "".join(f"; {k} {v:,}" for k, v in stats().items()) if stats else ""
    click.echo(
        f"fetch: {summary.chunks_total - summary.chunks_done_before} chunk(s) fetched, {summary.chunks_done_before} "
        f"already done; {summary.cells_fetched:,} cells ok, {summary.cells_invalid:,} invalid "
        f"(reasons: {reasons}){traffic}; {summary.seconds:.1f} s"
    )
    click.echo(f"wrote {cache}")


@cli.command("embed")
@pipeline_options
@grid_options
@click.option(
    "--out", required=True, type=click.Path(path_type=Path), help="Embedding store (.zarr)."
)
def embed_command(**o) -> None:
    """Run the encoders and ProM3E over every grid cell into an embedding store.

    Re-running resumes an interrupted store; a store made by another pipeline is refused.

    \b
    Example:
      prom3e-geo embed --context sat,loc,env --out cube.zarr
    """
    from prom3e_geo.inference import embed_grid

    with CellProgress() as progress:
        summary = embed_grid(
            pipeline_spec(o), grid_for(o), o["out"], o["workers"], o["scheduler"], progress
        )
    click.echo(
        f"embed: {summary.chunks_computed} chunk(s) computed, {summary.chunks_done_before} already done, "
        f"{summary.chunks_total} in all; {summary.cells_valid:,} cells valid, {summary.cells_invalid:,} without "
        f"all inputs; {summary.seconds:.1f} s"
    )
    click.echo(f"wrote {o['out']}")


@cli.command("sdm")
@click.option(
    "--query",
    "queries",
    required=True,
    multiple=True,
    help="A photo (repeat for more), or a species name when the model has a text tower.",
)
@click.option(
    "--embeddings", type=click.Path(path_type=Path), default=None, help="Reuse an embedding store."
)
@click.option("--mode", type=click.Choice(["recon", "hybrid"]), default="recon", show_default=True)
@click.option("--delta", default=0.5, show_default=True, type=float, help="Hybrid mixing weight.")
@click.option(
    "--target",
    default="loc",
    show_default=True,
    type=click.Choice(["sat", "loc", "env"]),
    help="Hybrid target modality.",
)
@click.option(
    "--rescale", "rescale_01", is_flag=True, help="Rescale each band linearly to 0-1 over the AOI."
)
@click.option("--threshold", type=float, default=None, help="Add a presence band: similarity >= T.")
@output_options
@pipeline_options
@grid_options
def sdm_command(queries, embeddings, mode, delta, target, rescale_01, threshold, **o) -> None:
    """Species-distribution similarity map for query photos (one band per query).

    \b
    Example:
      prom3e-geo sdm --query examples/cardinal.jpg --out map.tif --png map.png
    """
    from prom3e_geo.layers.maps import sdm_layers

    check_outputs(o, [Path(q) for q in queries])
    store = store_for(o, embeddings)
    layers = sdm_layers(
        store, queries, pipeline_spec(o), mode, delta, target, rescale_01, threshold
    )
    written = write_layers(layers, o, f"species distribution similarity ({mode})", cmap="YlGn")
    for name, band in layers.bands.items():
        click.echo(
            f"{name}: min {np.nanmin(band):.3f}, mean {np.nanmean(band):.3f}, max {np.nanmax(band):.3f}"
        )
    for path in written:
        click.echo(f"wrote {path}")


@cli.command("uncertainty")
@click.option(
    "--embeddings", type=click.Path(path_type=Path), default=None, help="Reuse an embedding store."
)
@click.option(
    "--store-context",
    default="sat,loc,env",
    show_default=True,
    help="Context of the store built when --embeddings is not given (--context: any subset of it).",
)
@output_options
@pipeline_options
@grid_options
def uncertainty_command(embeddings, store_context, **o) -> None:
    """||sigma||_1 per cell for the chosen --context (the paper's uncertainty map).

    The sigma of any subset of a store's context comes from its stored embeddings, so the
    uncertainty of location alone reuses the store that `sdm` built.

    \b
    Example:
      prom3e-geo uncertainty --context loc --out sigma.tif --png sigma.png
    """
    from prom3e_geo.inference import parse_context
    from prom3e_geo.layers.maps import uncertainty_layers

    check_outputs(o, [])
    store = store_for({**o, "context": store_context}, embeddings)
    layers = uncertainty_layers(store, parse_context(o["context"]), pipeline_spec(o))
    written = write_layers(layers, o, "uncertainty ||sigma||_1", cmap="magma")
    for path in written:
        click.echo(f"wrote {path}")


@cli.command("ica")
@click.option(
    "--embeddings",
    required=True,
    type=click.Path(path_type=Path),
    help="Embedding store (from embed, sdm or uncertainty).",
)
@click.option(
    "--token",
    default="mu",
    show_default=True,
    help="Per-cell embedding: mu, recon_image, ctx_sat, ctx_loc, ctx_env, or register:K "
    "(ProM3E's K-th register token, recomputed with --model).",
)
@click.option(
    "--model",
    default="demo",
    show_default=True,
    help="The store's ProM3E weights (for register tokens).",
)
@click.option("--seed", default=0, show_default=True, type=int, help="FastICA seed.")
@output_options
def ica_command(embeddings, token, model, seed, **o) -> None:
    """Three independent components of a per-cell embedding as an RGB map (FastICA).

    \b
    Example:
      prom3e-geo ica --embeddings cube.zarr --token mu --out ica.tif --png ica.png
    """
    from prom3e_geo.layers.maps import ica_layers

    check_outputs(o, [embeddings])
    if not Path(embeddings).is_dir():
        raise InputError(f"embedding store {embeddings} does not exist")
    from prom3e_geo.inference import PipelineSpec

    layers = ica_layers(embeddings, token, seed, spec=PipelineSpec(model=model))
    written = write_layers(
        layers, o, f"ICA of {token} (red, green, blue = components 1-3)", cmap="rgb"
    )
    for path in written:
        click.echo(f"wrote {path}")


@cli.command("evaluate")
@click.option(
    "--recipe",
    type=click.Path(path_type=Path),
    default=None,
    help="Evaluation recipe (YAML); default: the demo model on new demo-world observations.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Report: .md (Markdown) or .html; figures go to <name>_files/ beside it.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing report.")
def evaluate_command(recipe, out, overwrite) -> None:
    """Measure a ProM3E model: retrieval (baseline, reconstruction, hybrid), zero-shot,
    linear probes, modality gap and ||sigma||_1, as one report.

    \b
    Example:
      prom3e-geo evaluate --recipe recipes/evaluate-demo.yaml --out report.html
    """
    from prom3e_geo.evaluate.report import evaluate, load_evaluation, write_report
    from prom3e_geo.io.outputs import atomic_output, check_output
    from prom3e_geo.recipes import load_evaluation_recipe

    check_output(out, overwrite)
    settings = load_evaluation_recipe(recipe)
    model, data = load_evaluation(settings)
    result = evaluate(model, data, settings)
    with atomic_output(out, overwrite) as tmp:
        write_report(result, data, tmp, final=Path(out))
    click.echo(f"wrote {out}")


@cli.command("compare")
@click.option(
    "--uncertainty",
    "x_path",
    required=True,
    type=click.Path(path_type=Path),
    help="First raster (e.g. sigma.tif).",
)
@click.option(
    "--diversity",
    "y_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Second raster (e.g. div.tif).",
)
@click.option("--x-band", default=None, help="Band of the first raster (default: 1).")
@click.option("--y-band", default="shannon", show_default=True, help="Band of the second raster.")
@click.option("--png", "png_path", type=click.Path(path_type=Path), help="Bin-mean plot.")
@overwrite_option
def compare_command(x_path, y_path, x_band, y_band, png_path, overwrite) -> None:
    """Spearman and Pearson correlation of two layers over their common valid cells.

    \b
    Example:
      prom3e-geo compare --uncertainty sigma.tif --diversity div.tif --png compare.png
    """
    from prom3e_geo.io.outputs import check_output
    from prom3e_geo.layers.compare import compare_layers, plot_comparison

    if png_path is not None:
        check_output(png_path, overwrite)
    result = compare_layers(x_path, y_path, x_band, y_band)
    click.echo(
        f"{result.x_name} vs {result.y_name} over {result.n:,} cells: Spearman {result.spearman:.3f} "
        f"(p {result.spearman_p:.2g}), Pearson {result.pearson:.3f} (p {result.pearson_p:.2g})"
    )
    if png_path is not None:
        click.echo(f"wrote {plot_comparison(result, png_path, overwrite)}")


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
