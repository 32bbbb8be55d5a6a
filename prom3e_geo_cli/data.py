"""`grid`, `diversity` and `fetch`: grids, observation layers and imagery."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from prom3e_geo.settings import Settings
from prom3e_geo_cli.dates import DATE
from prom3e_geo_cli.options import (
    SOURCE_HELP,
    command_line,
    grid_options,
    grid_spec,
    output_options,
    output_spec,
    overwrite_option,
)
from prom3e_geo_cli.progress import ByteProgress, CellProgress


@click.command("grid")
@grid_options
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Output GeoTIFF (COG) of the AOI mask: 1 inside, nodata outside.",
)
@overwrite_option
def grid_command(out: Path, overwrite: bool, **o: Any) -> None:
    """Build a grid and write its AOI mask.

    \b
    Example:
      prom3e-geo grid --crs EPSG:5070 --resolution 5000 --out conus-5km.tif
    """
    from prom3e_geo.workflows.grid import grid_mask

    grid = grid_mask(grid_spec(o), out, overwrite=overwrite, command=command_line())
    click.echo(f"grid: {grid.describe()}")
    click.echo(f"wrote {out}")


@click.command("diversity")
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
@output_options
@click.option("--lat-col", default=None, help="Latitude column (default: auto-detect).")
@click.option("--lon-col", default=None, help="Longitude column (default: auto-detect).")
@click.option("--species-col", default=None, help="Species column (default: auto-detect).")
@click.option("--research-grade", is_flag=True, help="Keep iNaturalist research-grade rows only.")
@click.option("--since", default=None, type=DATE, help="Keep observations on or after YYYY-MM-DD.")
@click.option("--until", default=None, type=DATE, help="Keep observations on or before YYYY-MM-DD.")
def diversity_command(**o: Any) -> None:
    """Species richness and Shannon diversity maps from observations.

    Bands: shannon, richness (Gaussian-smoothed), shannon_raw, richness_raw, n_obs.

    \b
    Example:
      prom3e-geo diversity --observations inat.csv --out div.tif --png div.png
    """
    from prom3e_geo.hashing import BackgroundDigest, KnownDigests

    settings = Settings.from_environment()
    # the input's SHA-256 begins before the workflow's libraries load (on the idle core)
    digest = BackgroundDigest(o["observations"], KnownDigests(settings.digests_dir))
    from prom3e_geo.workflows.diversity import DiversitySpec, diversity

    grid, output = grid_spec(o), output_spec(o)
    with ByteProgress("reading observations") as bar:
        result = diversity(
            DiversitySpec(**o),
            grid,
            output,
            progress=bar.update_to,
            command=command_line(),
            settings=settings,
            digest=digest,
        )
    layers = result.layers
    click.echo(f"observations: {result.report.summary()}")
    click.echo(
        f"diversity: {layers.observations_used:,} observations of {result.species:,} "
        f"species counted in the cells touching the AOI; {layers.cells_with_data:,} of "
        f"{result.grid.n_inside:,} mapped cells observed (outside the grid: "
        f"{layers.outside_grid:,}, in no cell touching the AOI: {layers.outside_aoi:,})"
    )
    for path in result.written:
        click.echo(f"wrote {path}")


@click.command("fetch")
@click.option("--source", required=True, help=SOURCE_HELP)
@click.option(
    "--cache",
    "cache",
    required=True,
    help="Patch cache (.zarr): a path, or s3://, gs://, az:// (read it back with cache:URL).",
)
@click.option(
    "--size",
    default=None,
    type=click.IntRange(min=8),
    help="Patch edge in pixels (default: the source's; 256 for Sentinel-2 sources, 32 for demo).",
)
@click.option(
    "--patch-resolution",
    "patch_resolution",
    default=None,
    type=click.FloatRange(min=0, min_open=True),
    help="Patch pixel size in metres (default: the source's; 10 for Sentinel-2 sources).",
)
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--retry-failed/--no-retry-failed",
    default=True,
    show_default=True,
    help="Fetch again the cells that failed in an earlier run of this cache.",
)
@grid_options
def fetch_command(
    source: str,
    cache: Path,
    size: int | None,
    patch_resolution: float | None,
    batch_size: int,
    retry_failed: bool,
    **o: Any,
) -> None:
    """Fetch one Sentinel-2 patch per grid cell into a resumable patch cache.

    Re-running resumes an interrupted fetch; a cache made with other settings is refused.

    \b
    Example:
      prom3e-geo fetch --source local:mosaic.vrt --aoi -100,35,-95,40 --resolution 0.05 --cache patches.zarr
      prom3e-geo fetch --source "stac?time=2023-06-01/2023-08-31&max_cloud=0.1" --cache conus.zarr
      SH_CLIENT_ID=... SH_CLIENT_SECRET=... prom3e-geo fetch --source sentinelhub:cdse --cache conus.zarr
    """
    from prom3e_geo.workflows.patches import FetchSpec, fetch_patches

    spec = FetchSpec(source, cache, size, patch_resolution, batch_size, retry_failed)
    with CellProgress() as progress:
        fetched = fetch_patches(spec, grid_spec(o), progress=progress.watching)
    s, stats = fetched.summary, fetched.traffic
    reasons = "; ".join(f"{k}: {v:,}" for k, v in s.reasons.most_common()) or "none"
    traffic = "".join(f"; {k} {v:,}" for k, v in stats.items())
    click.echo(
        f"fetch: {s.chunks_total - s.chunks_done_before} chunk(s) fetched, "
        f"{s.chunks_done_before} already done, {s.cells_retried:,} failed cells retried; "
        f"{s.cells_fetched:,} cells ok, {s.cells_invalid:,} invalid (reasons: {reasons})"
        f"{traffic}; {s.seconds:.1f} s"
    )
    click.echo(
        f"cache: {s.cells_ok_in_cache:,} cells with a patch, {s.cells_failed_in_cache:,} failed"
        + (" (re-run to retry them)" if s.cells_failed_in_cache else "")
    )
    click.echo(f"wrote {cache}")
