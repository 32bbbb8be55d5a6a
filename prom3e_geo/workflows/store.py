"""`store push` and `store pull`: an embedding store shared through a hub dataset repository.

A push uploads a complete local store as one commit (`HfApi.upload_folder`): a hub commit is
atomic, so readers of the repository see the whole store or none of it, and the returned
location pins that commit. A pull copies a complete remote store (hub, S3, GCS, Azure, HTTPS)
to a local folder under a temporary name, renamed when every object has arrived. Maps can also
read a hub store in place (`--embeddings hf-hub:...`); either way the store's manifest fixes
the model, and a map checks the user's weights against its hash before any work.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prom3e_geo.errors import InputError, RunFailed
from prom3e_geo.io.outputs import atomic_output
from prom3e_geo.stores.embeddings import open_store
from prom3e_geo.stores.grid_store import read_manifest
from prom3e_geo.stores.location import Location

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shared:
    """Where a store went or came from, and what it holds."""

    location: str  # a location that opens it (for a push: pinned to the new commit)
    files: int
    manifest: dict[str, Any]


def push(store: str | Path, target: str) -> Shared:
    """Upload the complete local store `store` to `target` (hf-hub:datasets/ORG/NAME[@REV][/PATH.zarr],
    PATH defaulting to the store's folder name); the dataset repository is created if needed."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    source = Location.parse(store)
    if not source.is_local:
        raise InputError(f"{store}: push uploads a local store (pull it first)")
    destination = Location.parse(target)
    repo, revision, inner = destination.hub_address()
    open_store(source)  # refuses an incomplete or foreign store before any upload
    manifest = read_manifest(source)
    inner = inner or source.name
    files = sum(1 for p in source.local.rglob("*") if p.is_file())
    api = HfApi()
    try:
        api.create_repo(repo, repo_type="dataset", exist_ok=True)
        info = api.upload_folder(
            repo_id=repo,
            repo_type="dataset",
            folder_path=source.local,
            path_in_repo=inner,
            revision=revision,
            commit_message=f"prom3e-geo embedding store {inner} (model {manifest['model']})",
        )
    except HfHubHTTPError as exc:
        raise RunFailed(f"push to {target} failed: {str(exc).splitlines()[0]}") from None
    commit = info.oid
    log.info("pushed %d files of %s as commit %s", files, store, commit)
    return Shared(f"hf-hub:datasets/{repo}@{commit}/{inner}", files, manifest)


def pull(source: str, dest: str | Path, overwrite: bool = False) -> Shared:
    """Copy the complete store at `source` (a URL) to the local folder `dest`, atomically."""
    location = Location.parse(source)
    if location.is_local:
        raise InputError(f"{source}: pull copies a remote store (hf-hub:, s3://, gs://, ...)")
    if Path(dest).suffix != ".zarr":
        raise InputError(f"{dest}: name the local store with .zarr")
    open_store(location)  # refuses an incomplete or foreign store before any download
    manifest = read_manifest(location)
    fs = location.filesystem()
    with atomic_output(dest, overwrite) as tmp:
        fs.get(location.path.rstrip("/") + "/", str(tmp), recursive=True)
        open_store(tmp)  # every object arrived and reads back
        files = sum(1 for p in Path(tmp).rglob("*") if p.is_file())
    return Shared(str(dest), files, manifest)
