"""Store locations: a local path or a URL turned into a Zarr store object, so callers never ask which.

Every embedding store, patch cache and Zarr output is named by a location: a local path, or a URL
of an fsspec file system: `s3://` (s3fs), `gs://` (gcsfs), `az://` / `abfs://` (adlfs),
`https://` (read-only), and `hf-hub:datasets/ORG/NAME[@REV]/path.zarr` (read-only, through
huggingface_hub's `HfFileSystem`; `hf://datasets/...` is the same). fsspec was chosen over
obstore because zarr-python's `FsspecStore`, xarray's `storage_options` and `HfFileSystem` all
speak it: one stack covers every scheme, the hub included, and a user's `xr.open_zarr(URL)`
opens exactly what prom3e-geo wrote.

Credentials come only from each back end's own environment and configuration (for S3: the
`AWS_*` variables, `~/.aws`, instance roles; `AWS_ENDPOINT_URL` for MinIO, Ceph and other
S3-compatible stores; for the hub: `HF_TOKEN` and `HF_ENDPOINT`); nothing here reads, logs or
stores them, and `str(location)` is the text the user gave.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prom3e_geo.errors import CredentialsError, DownloadError, InputError
from prom3e_geo.partials import remove

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem
    from zarr.abc.store import Store

# the URL schemes prom3e-geo writes to, and those it only reads
WRITABLE = ("s3", "gs", "gcs", "az", "abfs", "abfss")
READ_ONLY = ("http", "https", "hf")
_URL = re.compile(r"^([a-z][a-z0-9+.-]*)://(.+)$")
_HF_HUB = re.compile(r"^hf-hub:(datasets/[^/@]+/[^/@]+)(?:@([^/]+))?(?:/(.*))?$")


@dataclass(frozen=True)
class Location:
    """Where a store lives: `protocol` ("file" for a local path) and the file system's `path`."""

    text: str  # as the user wrote it
    protocol: str
    path: str

    @classmethod
    def parse(cls, value: str | Path | Location) -> Location:
        """A location from a path or URL; an unknown scheme or a malformed hub id is an
        `InputError`."""
        if isinstance(value, Location):
            return value
        text = str(value)
        if text.startswith("hf-hub:"):
            match = _HF_HUB.match(text)
            if match is None:
                raise InputError(
                    f"{text}: a hub store is hf-hub:datasets/ORG/NAME[@REVISION]/PATH.zarr"
                )
            repo, revision, inner = match.groups()
            path = f"{repo}@{revision}" if revision else repo
            return cls(text, "hf", f"{path}/{inner}".rstrip("/") if inner else path)
        match = _URL.match(text)
        if match is None:
            return cls(text, "file", str(Path(text).expanduser().absolute()))
        scheme, rest = match.groups()
        if scheme not in WRITABLE + READ_ONLY:
            raise InputError(
                f"{text}: unknown URL scheme {scheme}:// (use a path, s3://, gs://, az://, "
                "https:// or hf-hub:datasets/ORG/NAME/PATH.zarr)"
            )
        path = text if scheme in ("http", "https") else rest.rstrip("/")
        return cls(text, scheme, path)

    def __str__(self) -> str:
        return self.text

    @property
    def is_local(self) -> bool:
        return self.protocol == "file"

    @property
    def writable(self) -> bool:
        return self.protocol == "file" or self.protocol in WRITABLE

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def local(self) -> Path:
        """The local path (only for a local location)."""
        if not self.is_local:
            raise ValueError(f"{self.text} is not a local path")
        return Path(self.path)

    def hub_address(self) -> tuple[str, str | None, str]:
        """For a hub location: (ORG/NAME, revision or None, path inside the repository)."""
        match = _HF_HUB.match(self.text) if self.protocol == "hf" else None
        if match is None:
            raise InputError(f"{self.text} is not a hub store (hf-hub:datasets/ORG/NAME/PATH.zarr)")
        repo, revision, inner = match.groups()
        return repo.removeprefix("datasets/"), revision, (inner or "").strip("/")

    def sibling(self, name: str) -> Location:
        """The location `name` in the same folder (or under the same prefix)."""
        parent = self.path.rstrip("/").rsplit("/", 1)[0]
        text = self.text.rstrip("/").rsplit("/", 1)[0]
        return Location(f"{text}/{name}", self.protocol, f"{parent}/{name}")

    def child(self, key: str) -> str:
        """The file system path of `key` inside this location."""
        return f"{self.path.rstrip('/')}/{key}"

    def check_writable(self) -> None:
        """Refuse, before any work, a location that prom3e-geo only reads."""
        if not self.writable:
            raise InputError(
                f"{self.text} is read-only (write stores to a path, s3://, gs:// or az://)"
            )

    def filesystem(self) -> AbstractFileSystem:
        """The fsspec file system (instances are cached by fsspec itself)."""
        import fsspec

        if self.protocol == "hf":
            from huggingface_hub import HfFileSystem

            return HfFileSystem()
        options = {} if self.protocol in ("http", "https") else {"use_listings_cache": False}
        try:  # no listings cache: another process (a worker, a second run) writes meanwhile
            return fsspec.filesystem(self.protocol, **options)
        except ImportError as exc:
            raise InputError(f"{self.text}: {exc}") from None

    def zarr_store(self, read_only: bool = False) -> Store:
        """The Zarr store object over this location."""
        from zarr.storage import FsspecStore, LocalStore

        if self.is_local:
            return LocalStore(self.path, read_only=read_only)
        read_only = read_only or not self.writable
        if self.protocol == "hf":
            return FsspecStore.from_url(self.url, read_only=True)
        options = {} if self.protocol in ("http", "https") else {"use_listings_cache": False}
        return FsspecStore.from_url(self.url, storage_options=options, read_only=read_only)

    @property
    def url(self) -> str:
        """The fsspec URL (`hf://...` for the hub, the path itself for a local location)."""
        if self.is_local or self.protocol in ("http", "https"):
            return self.path
        return f"{self.protocol}://{self.path}"

    def exists(self) -> bool:
        """Something (a file, a folder, a prefix holding objects) is at this location. The first
        remote call of a run: missing or refused credentials and an unreachable endpoint are
        named here in one line, before any work."""
        if self.is_local:
            return Path(self.path).exists()
        try:
            return bool(self.filesystem().exists(self.path))
        except Exception as exc:  # the back ends' own exception types (botocore, aiohttp, ...)
            raise self._access_error(exc) from exc

    def _access_error(self, exc: Exception) -> Exception:
        """A back end's failure as prom3e-geo's: credentials (exit 2) or the world (exit 1)."""
        name = type(exc).__name__
        if isinstance(exc, PermissionError) or "Credentials" in name or "Auth" in name:
            return CredentialsError(
                f"{self.text}: {exc} (credentials come from the back end's standard environment "
                "variables and config files)"
            )
        if isinstance(exc, OSError) or "Connect" in name or "Endpoint" in name:
            return DownloadError(f"{self.text}: cannot reach the storage service ({exc})")
        return exc

    def has_zarr_group(self) -> bool:
        """Zarr v2 or v3 group metadata at this location."""
        if self.is_local:
            return any((Path(self.path) / n).is_file() for n in (".zgroup", "zarr.json"))
        fs = self.filesystem()
        return any(fs.exists(self.child(n)) for n in (".zgroup", "zarr.json"))

    def remove(self) -> None:
        """Delete everything at this location (nothing if it is gone)."""
        if self.is_local:
            remove(Path(self.path))
            return
        fs = self.filesystem()
        if fs.exists(self.path):
            fs.rm(self.path, recursive=True)
