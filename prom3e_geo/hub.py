"""Weights from the Hugging Face hub: `ORG/NAME[@REVISION]` or `hf-hub:ORG/NAME[@REVISION]`.

Files are downloaded with `huggingface_hub` into its standard cache, so `HF_HOME`,
`HF_HUB_CACHE`, `HF_ENDPOINT`, `HF_HUB_OFFLINE` and `HF_TOKEN` mean what they mean for every
other tool; only the files a loader needs are fetched, an interrupted file is resumed, and the
bars of `huggingface_hub` show the progress. On top of the library:

* server errors (5xx) and dropped connections are retried under the package's network policy
  (`POLICY`, `prom3e_geo.net`);
* every file downloaded in this call is checked against its ETag (sha256 for LFS files, the git
  blob id for the others); a file that does not match is removed and reported;
* failures become one-line errors naming the repository and what to do: `WeightsError` (exit 2)
  for what the user can fix (no such repository or revision, gated, offline with nothing
  cached), `DownloadError` (exit 1) for a failure of the world (server errors after the retries,
  refused connections, names that do not resolve).

A download returns the snapshot folder and the commit it resolved to, recorded in the provenance of
every output made with it.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from prom3e_geo.errors import DownloadError, WeightsError
from prom3e_geo.net import RetryPolicy

HUB_PREFIX = "hf-hub:"
POLICY = RetryPolicy(retries=3, backoff=0.5)
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
# the layout `PyTorchModelHubMixin.save_pretrained` (and transformers) writes: config.json plus
# one weights file, safetensors preferred
MIXIN_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
MIXIN_FILES = (["config.json"], [[name] for name in MIXIN_WEIGHTS])
_LOCAL_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".safetensors", ".yaml", ".yml", ".json")


def offline_hint(preset: str | None = None) -> str:
    """What to do when weights are not in the hub cache and the hub cannot be used: download
    them where there is internet and copy the cache here."""
    if preset:
        how = f"run `prom3e-geo weights download {preset}` on a machine with internet"
    else:
        how = "run the same command on a machine with internet (it downloads what it needs)"
    return f"{how}, then copy its hub cache folder ($HF_HOME/hub) to this machine"


@dataclass(frozen=True)
class HubRef:
    """A repository on the hub, at a revision (branch, tag or commit; None is `main`)."""

    repo_id: str
    revision: str | None = None

    def __str__(self) -> str:
        return self.repo_id + (f"@{self.revision}" if self.revision else "")


@dataclass(frozen=True)
class Fetched:
    """A downloaded (or cached) snapshot: its folder and the commit it resolved to."""

    path: Path
    repo_id: str
    commit: str

    @property
    def origin(self) -> str:
        return f"{self.repo_id}@{self.commit}"


def parse_hub_ref(spec: str) -> HubRef | None:
    """The hub repository a weights spec names, or None when it names a local path.

    `hf-hub:ORG/NAME[@REV]` is always a hub id; a bare `ORG/NAME[@REV]` is one when no such
    local path exists and it does not end like a weights file."""
    text = str(spec)
    explicit = text.startswith(HUB_PREFIX)
    if explicit:
        text = text[len(HUB_PREFIX) :]
    elif Path(text).expanduser().exists() or text.lower().endswith(_LOCAL_SUFFIXES):
        return None
    repo, _, revision = text.partition("@")
    if not _REPO_ID.fullmatch(repo) or (explicit is False and text.startswith((".", "/", "~"))):
        if explicit:
            raise WeightsError(f"{spec!r} is not a hub id (hf-hub:ORG/NAME[@REVISION])")
        return None
    return HubRef(repo, revision or None)


def hub_cache() -> Path:
    """The folder `huggingface_hub` downloads into ($HF_HUB_CACHE, default $HF_HOME/hub)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


_FETCHED: dict[tuple[str, str, HubRef, tuple[str, ...]], Fetched] = {}


def download_snapshot(
    ref: HubRef, patterns: Sequence[str], what: str = "weights", hint: str | None = None
) -> Fetched:
    """Download (or find in the cache) the files of `ref` that match `patterns`; once per
    process (a pipeline asks for a part's commit, then for its files, and is built twice by a
    map from a cached store: one round trip to the hub, not four)."""
    from huggingface_hub import constants, snapshot_download

    key = (constants.ENDPOINT, str(hub_cache()), ref, tuple(patterns))
    known = _FETCHED.get(key)
    if known is not None and known.path.is_dir():
        return known
    started = time.time()

    def attempt() -> Path:
        folder = snapshot_download(
            ref.repo_id, revision=ref.revision, allow_patterns=list(patterns)
        )
        return Path(folder)

    try:
        path = POLICY.call(attempt, _transient)
    except Exception as exc:  # noqa: BLE001 - classified below, re-raised as one line
        raise _classify(exc, ref, what, hint or offline_hint()) from None
    _verify_new_files(path, ref, what, started)
    _FETCHED[key] = Fetched(path, ref.repo_id, path.name)
    return _FETCHED[key]


def fetch_weights(
    ref: HubRef,
    configs: Sequence[str],
    choices: Sequence[Sequence[str]],
    what: str,
    hint: str | None = None,
) -> Fetched:
    """The configuration files plus the first of the weight-file `choices` the repository has
    (so a repository holding both `.safetensors` and `.bin` costs one download, not two)."""
    for choice in choices:
        fetched = download_snapshot(ref, [*configs, *choice], what, hint)
        if not choice or any((fetched.path / name).is_file() for name in choice):
            return fetched
    names = ", ".join(n for choice in choices for n in choice)
    raise WeightsError(f"{what} {ref}: the repository has none of {names}")


# -- errors ---------------------------------------------------------------------------------------
def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _network_error(exc: BaseException) -> bool:
    module = type(exc).__module__.split(".")[0]
    return isinstance(exc, (ConnectionError, TimeoutError)) or module in (
        "httpx",
        "httpx2",
        "httpcore",
        "requests",
        "urllib3",
    )


def _transient(exc: BaseException) -> bool:
    """A server error or a dropped connection (not an offline machine, not a missing repo)."""
    if offline():
        return False
    for cause in (exc, exc.__cause__):
        if cause is None:
            continue
        status = _status(cause)
        if status is not None and status >= 500:
            return True
        if status is None and _network_error(cause) and "Connect" not in type(cause).__name__:
            return True
    return False


def _classify(exc: BaseException, ref: HubRef, what: str, hint: str) -> Exception:
    """The one-line error a failed download becomes (see the module docstring)."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    endpoint = constants.ENDPOINT
    if isinstance(exc, GatedRepoError):
        return WeightsError(
            f"{what} {ref.repo_id} is gated: accept its conditions at {endpoint}/{ref.repo_id} "
            "and set HF_TOKEN to a token of that account"
        )
    if isinstance(exc, RevisionNotFoundError):
        return WeightsError(f"{what} {ref.repo_id}: no revision {ref.revision!r} on {endpoint}")
    if isinstance(exc, RepositoryNotFoundError) or _status(exc) == 401:
        return WeightsError(
            f"{what} {ref.repo_id}: no such repository on {endpoint} "
            "(if it is private, set HF_TOKEN)"
        )
    if offline():
        return WeightsError(
            f"{what} {ref} is not in the hub cache {hub_cache()} and HF_HUB_OFFLINE is set: {hint}"
        )
    status = next((st for e in (exc, exc.__cause__) if e and (st := _status(e))), None)
    if status is not None and status >= 500:
        return DownloadError(
            f"{what} {ref}: {endpoint} kept failing (HTTP {status}) after {POLICY.retries} retries"
        )
    if isinstance(exc, LocalEntryNotFoundError) or _network_error(exc):
        return DownloadError(
            f"{what} {ref}: {endpoint} cannot be reached and {ref.repo_id} is not in the hub "
            f"cache {hub_cache()}: {hint}"
        )
    status = _status(exc)
    detail = f"HTTP {status}" if status else f"{type(exc).__name__}: {exc}"
    retried = f" after {POLICY.retries} retries" if _transient(exc) else ""
    return DownloadError(
        f"{what} {ref}: download failed{retried} ({' '.join(detail.split())[:200]})"
    )


# -- integrity ------------------------------------------------------------------------------------
def _verify_new_files(snapshot: Path, ref: HubRef, what: str, since: float) -> None:
    """Check each file downloaded since `since` against its ETag (the blob's name in the cache)."""
    for link in sorted(snapshot.rglob("*")):
        blob = Path(os.path.realpath(link))
        if not blob.is_file() or blob.stat().st_mtime < since - 1 or blob == link:
            continue
        etag = blob.name
        if len(etag) == 64:
            digest = _sha256(blob)
        elif len(etag) == 40:
            digest = _git_blob_id(blob)
        else:
            continue
        if digest != etag:
            blob.unlink()
            link.unlink()
            raise WeightsError(
                f"{what} {ref.repo_id}: {link.relative_to(snapshot)} does not match its ETag "
                f"({digest[:12]}... != {etag[:12]}...): the download was corrupted and has been "
                "removed; run the command again"
            )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _git_blob_id(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


# -- the cache ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CachedRepo:
    repo_id: str
    commits: tuple[str, ...]
    refs: tuple[str, ...]
    bytes: int


def cached_repos() -> dict[str, CachedRepo]:
    """The model repositories in the hub cache: their commits, refs and size on disk."""
    from huggingface_hub import scan_cache_dir

    if not hub_cache().is_dir():
        return {}
    repos = {}
    for repo in scan_cache_dir(hub_cache()).repos:
        if repo.repo_type != "model":
            continue
        commits = tuple(sorted(r.commit_hash for r in repo.revisions))
        refs = tuple(sorted(ref for r in repo.revisions for ref in r.refs))
        repos[repo.repo_id] = CachedRepo(repo.repo_id, commits, refs, repo.size_on_disk)
    return repos
