"""`weights list|info|download` and `env prepare`: released weights and the WorldClim raster."""

from __future__ import annotations

from pathlib import Path

import click

from prom3e_geo_cli.options import overwrite_option


@click.group("weights")
def weights_group() -> None:
    """Weights presets: what they are made of, what is cached, downloading ahead of time.

    Hub files go to the Hugging Face cache ($HF_HOME/hub, default ~/.cache/huggingface/hub),
    the WorldClim raster to $PROM3E_GEO_CACHE/worldclim.
    """


@weights_group.command("list")
def weights_list_command() -> None:
    """List the weights presets.

    \b
    Example:
      prom3e-geo weights list
    """
    from prom3e_geo.workflows.preset_files import preset_names, preset_summary

    for name in preset_names():
        click.echo(f"{name:<10} {preset_summary(name)}")


@weights_group.command("info")
@click.argument("name")
def weights_info_command(name: str) -> None:
    """What preset NAME (or a preset recipe .yaml) consists of, and what of it is cached.

    \b
    Example:
      prom3e-geo weights info taxabind
    """
    from prom3e_geo.hub import hub_cache
    from prom3e_geo.workflows.preset_files import preset_info

    info = preset_info(name)
    click.echo(f"{info.name}: {info.description}")
    for p in info.parts:
        if p.repo is None:
            state = "local or bundled"
        elif p.cached is None:
            state = "not downloaded"
        else:
            state = f"cached {', '.join(c[:12] for c in p.cached.commits)} ({p.cached.bytes / 2**20:,.1f} MiB)"
        click.echo(f"  {p.part:<7} {p.spec:<40} {state}")
    if info.env_raster:
        ready = "prepared" if info.env_ready else "prepared on first use"
        click.echo(f"  {'raster':<7} {info.env_raster} ({ready})")
    if info.source:
        patch = ", ".join(f"{k} {v}" for k, v in (info.patch or {}).items())
        click.echo(f"  imagery {info.source} ({patch})")
    if info.note:
        click.echo(f"  note: {info.note}")
    if any(p.repo for p in info.parts):
        click.echo(f"hub cache: {hub_cache()}")


@weights_group.command("download")
@click.argument("name")
def weights_download_command(name: str) -> None:
    """Download preset NAME's weights (and prepare its environment) ahead of time.

    For an offline cluster: run this where there is internet, copy the hub cache folder
    ($HF_HOME/hub) and $PROM3E_GEO_CACHE/worldclim there, and set HF_HUB_OFFLINE=1 on it.

    \b
    Example:
      prom3e-geo weights download taxabind
    """
    from prom3e_geo.workflows.preset_files import download_preset

    fetched = download_preset(name, report=lambda line: click.echo(line, err=True))
    for f in fetched:
        click.echo(f"{f.origin}  {f.path}")
    click.echo(f"{name}: {len(fetched)} repositories in the cache")


@weights_group.command("reference")
@click.argument("name")
@click.option(
    "--observations",
    required=True,
    type=click.Path(path_type=Path),
    help="An observation file (iNaturalist or GBIF CSV, zip or Parquet) of the model's "
    "training distribution.",
)
@click.option(
    "--out", required=True, type=click.Path(path_type=Path), help="Reference (.safetensors)."
)
@click.option(
    "--context",
    default="loc,env",
    show_default=True,
    help="Modalities to encode (add sat when the preset's imagery is available).",
)
@click.option("--rows", default=2000, show_default=True, type=int, help="Observations drawn.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the draw.")
@click.option(
    "--thin",
    default=1.0,
    show_default=True,
    type=float,
    help="At most one observation per THIN x THIN degree box (0: off): cover where the "
    "observations reach, not where observers crowd.",
)
@overwrite_option
def weights_reference_command(
    name: str,
    observations: Path,
    out: Path,
    context: str,
    rows: int,
    seed: int,
    thin: float,
    overwrite: bool,
) -> None:
    """Build the novelty reference of preset NAME from an observation file: locations through
    the loc encoder, the preset's environment (WorldClim for taxabind) through the env encoder,
    patches through the sat encoder when sat is asked for. `uncertainty --layer novelty|trust
    --reference FILE` uses it; the file records its origin.

    \b
    Example:
      prom3e-geo weights reference taxabind --observations inat.csv --out taxabind-ref.safetensors
    """
    from prom3e_geo.engine.spec import parse_context
    from prom3e_geo.workflows.preset_files import build_novelty_reference

    summary = build_novelty_reference(
        name,
        observations,
        out,
        parse_context(context),
        rows,
        seed,
        overwrite,
        report=lambda line: click.echo(line, err=True),
        thin=thin,
    )
    click.echo(
        f"reference: {summary.rows:,} of {summary.observations:,} observations "
        f"({'+'.join(summary.context)}), {summary.seconds:.1f} s"
    )
    click.echo(f"wrote {summary.path}")


@click.group("env")
def env_group() -> None:
    """Environment rasters for the env context."""


@env_group.command("prepare")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output COG.")
@click.option(
    "--from",
    "source",
    type=click.Path(path_type=Path),
    default=None,
    help="A folder with WorldClim's archives (wc2.1_5m_elev.zip, wc2.1_5m_bio.zip) or their "
    "GeoTIFFs, instead of downloading them.",
)
@overwrite_option
def env_prepare_command(out: Path, source: Path | None, overwrite: bool) -> None:
    """Prepare WorldClim 2.1 (5 arc-minutes) as the 20-band env raster (elevation, bio1-19,
    each z-scored as SINR does). Downloads resume; $PROM3E_GEO_WORLDCLIM_URL sets the server.

    \b
    Example:
      prom3e-geo env prepare --out env.tif
    """
    from prom3e_geo.workflows.preset_files import prepare_environment

    prepare_environment(out, source, overwrite, report=lambda line: click.echo(line, err=True))
    click.echo(f"wrote {out}")
