"""`serve`: the browser explorer of an embedding store (see `prom3e_geo.app`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from prom3e_geo_cli.maps import embeddings_option
from prom3e_geo_cli.options import PROG, grid_options, map_inputs, pipeline_options
from prom3e_geo_cli.progress import CellProgress

BASEMAPS = {"osm": "https://tile.openstreetmap.org/{z}/{x}/{y}.png"}


def exposure_warning(host: str) -> str | None:
    """A warning when `host` is reachable from other machines (not a loopback address)."""
    import ipaddress

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        loopback = False
    if loopback:
        return None
    return (
        f"{PROG}: warning: listening on {host}: anyone who can reach this machine can use the "
        "explorer and upload files to it"
    )


def basemap_url(value: str | None) -> str | None:
    """A tile URL template (https, with {z}, {x} and {y}) or a known name (osm)."""
    if value is None:
        return None
    url = BASEMAPS.get(value, value)
    if not url.startswith("https://") or not all(k in url for k in ("{z}", "{x}", "{y}")):
        raise click.BadParameter(
            "give 'osm' or an https tile URL template with {z}, {x} and {y}", param_hint="--basemap"
        )
    return url


@click.command("serve")
@embeddings_option
@click.option(
    "--layer",
    "layers",
    multiple=True,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="A GeoTIFF to show beside the maps (diversity, novelty, ...); repeat for more.",
)
@click.option("--mode", type=click.Choice(["hybrid", "recon"]), default="hybrid", show_default=True,
              help="The SDM mode the page starts with.")  # fmt: skip
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port (0: any free one).")  # fmt: skip
@click.option("--basemap", default=None,
              help="An online basemap under the layers: 'osm' or an https XYZ tile URL template "
              "(default: none; the page works offline).")  # fmt: skip
@click.option("--max-upload-mb", default=20.0, show_default=True,
              type=click.FloatRange(0.01, 1024), help="Largest photo or recording accepted.")  # fmt: skip
@pipeline_options
@grid_options
def serve_command(
    embeddings: str | None,
    layers: tuple[Path, ...],
    mode: str,
    host: str,
    port: int,
    basemap: str | None,
    max_upload_mb: float,
    **o: Any,
) -> None:
    """A local web app: drop a photo (or a recording, or type a species name) and see its map.

    The store, model and towers stay loaded, so a new photo's map takes one pass of the photo
    tower and a dot product per cell. Without --embeddings the store of the pipeline and grid
    options is used (built and cached as `sdm` does).

    \b
    Example:
      prom3e-geo serve --layer div.tif            # then open http://127.0.0.1:8000/
    """
    from prom3e_geo.app.explorer import Explorer, ExplorerOptions
    from prom3e_geo.app.server import bind, serve
    from prom3e_geo.errors import RunFailed
    from prom3e_geo.workflows.maps import MapSession

    inputs = map_inputs(o, embeddings)
    towers = [[f"--{m}-encoder", spec] for m, spec in inputs.pipeline.encoders]
    options = ExplorerOptions(mode, basemap_url(basemap), int(max_upload_mb * 2**20),
                              tuple(arg for pair in towers for arg in pair))  # fmt: skip
    with CellProgress() as progress:
        session = MapSession.open(inputs, progress=progress, keep_vectors=True)
    explorer = Explorer(session, layers, options)
    try:
        sock = bind(host, port)
    except OSError as exc:
        explorer.close()
        raise RunFailed(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    if warning := exposure_warning(host):
        click.echo(warning, err=True)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    click.echo(f"serving {session.store.path} on http://{shown}:{bound_port}/ (Ctrl-C stops)")
    serve(explorer, sock)
