"""`cache list|clean`: the embedding stores `sdm` and `uncertainty` keep for the next map."""

from __future__ import annotations

import datetime as dt

import click


@click.group("cache")
def cache_group() -> None:
    """The cached embedding stores (in $PROM3E_GEO_CACHE, default ~/.cache/prom3e-geo)."""


@cache_group.command("list")
def cache_list_command() -> None:
    """List the cached stores: size, last use, model, context, grid.

    \b
    Example:
      prom3e-geo cache list
    """
    from prom3e_geo.workflows.cache import cached_stores

    stores = cached_stores()
    for s in stores:
        when = dt.datetime.fromtimestamp(s.modified).strftime("%Y-%m-%d %H:%M")
        state = "" if s.complete else " (incomplete)"
        click.echo(
            f"{s.path.name}  {s.bytes / 2**20:8.1f} MiB  {when}  {s.model}  {s.context}  "
            f"{s.grid}{state}"
        )
    total = sum(s.bytes for s in stores) / 2**20
    click.echo(f"{len(stores)} store(s), {total:,.1f} MiB")


@cache_group.command("clean")
@click.option(
    "--older-than",
    type=click.FloatRange(min=0),
    default=None,
    help="Only stores unused for this many days (default: all).",
)
def cache_clean_command(older_than: float | None) -> None:
    """Remove cached stores; the next map of their area builds them again.

    \b
    Example:
      prom3e-geo cache clean --older-than 30
    """
    from prom3e_geo.workflows.cache import clean_cache

    removed = clean_cache(older_than)
    freed = sum(s.bytes for s in removed) / 2**20
    click.echo(f"removed {len(removed)} store(s), freed {freed:,.1f} MiB")
