"""`store push|pull`: share an embedding store through a hub dataset repository."""

from __future__ import annotations

import click

from prom3e_geo_cli.options import overwrite_option


@click.group("store")
def store_group() -> None:
    """Share embedding stores: push one to a hub dataset repository, pull one to a folder.

    Maps read remote stores in place too: --embeddings s3://BUCKET/cube.zarr or
    hf-hub:datasets/ORG/NAME[@REV]/cube.zarr.
    """


@store_group.command("push")
@click.argument("store")
@click.argument("target")
def store_push_command(store: str, target: str) -> None:
    """Upload the local embedding store STORE to TARGET, as one commit.

    TARGET is hf-hub:datasets/ORG/NAME[@REVISION][/PATH.zarr]; credentials come from HF_TOKEN
    or `hf auth login`.

    \b
    Example:
      prom3e-geo store push conus.zarr hf-hub:datasets/my-lab/prom3e-conus
    """
    from prom3e_geo.workflows.store import push

    shared = push(store, target)
    click.echo(f"pushed {shared.files} files (model {shared.manifest['model']})")
    click.echo(f"map from it with: --embeddings {shared.location}")


@store_group.command("pull")
@click.argument("source")
@click.argument("dest")
@overwrite_option
def store_pull_command(source: str, dest: str, overwrite: bool) -> None:
    """Copy the remote embedding store SOURCE to the local folder DEST.

    \b
    Example:
      prom3e-geo store pull hf-hub:datasets/my-lab/prom3e-conus/conus.zarr conus.zarr
    """
    from prom3e_geo.workflows.store import pull

    shared = pull(source, dest, overwrite)
    click.echo(
        f"pulled {shared.files} files (model {shared.manifest['model']}) into {shared.location}"
    )
