"""The `sentinelhub` source: Sentinel-2 L2A patches from the Sentinel Hub Process API.

Specs: `sentinelhub` (credentials from SH_CLIENT_ID / SH_CLIENT_SECRET, or the profile named by
SH_PROFILE in the user's sentinelhub config.toml), `sentinelhub:PROFILE` (that profile), and
`sentinelhub:cdse` (the Copernicus Data Space Ecosystem deployment, credentials from the
environment). Options after `?`: time (start/end), max_cloud (0-1), bands (rgb or all), tile_px,
threads, attempts, retry_wait (s), max_429, rounds, timeout (s), base_url, token_url.

Requests are tile-batched: the snapped UTM patches of neighbouring cells (same zone) share one
Process API request of at most `tile_px` x `tile_px` pixels (2500, the API maximum), returned as
a GeoTIFF in that zone and cut into patches, so each patch is exactly the one a request of its
own would return. The evalscript asks for the bands (digital numbers, harmonised to the pre-2022
baseline by the service; 20 m and 60 m bands resampled to the patch grid by the service),
dataMask and the CLM cloud mask, as a least-cloud mosaic over the time window limited to scenes
below `max_cloud`.

Failures: the SDK's public client retries 5xx, timeouts and connection errors (its
`SHConfig.max_download_attempts` = `attempts`, waiting `download_sleep_time` = `retry_wait` then
x3) and honours 429 Retry-After (milliseconds) up to `max_429` times; on top of that a request
whose payload is not the expected GeoTIFF or whose retries ran out is sent again up to `rounds`
times under the package's network policy (`prom3e_geo.net`); a request refused for its token
(revoked or expired early) is sent again at once with a new one. What still fails is recorded per cell. No
credential is ever logged, stored in a manifest, or put into an error message.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np
import rasterio
from rasterio.io import MemoryFile

from prom3e_geo.errors import CredentialsError, SourceError
from prom3e_geo.imagery.base import (
    L2AOptions,
    PatchBatch,
    TrafficCounter,
    band_names,
    check_window,
)
from prom3e_geo.imagery.geometry import PatchPlacement, RequestTile, request_tiles
from prom3e_geo.net import RetryPolicy

if TYPE_CHECKING:
    from sentinelhub.config import SHConfig
    from sentinelhub.data_collections import DataCollection

CDSE = {
    "sh_base_url": "https://sh.dataspace.copernicus.eu",
    "sh_token_url": "https://identity.dataspace.copernicus.eu/auth/realms/CDSE/protocol/openid-connect/token",
}


def evalscript(bands: tuple[str, ...]) -> str:
    """The bands as UINT16 digital numbers, then dataMask and CLM."""
    names = [*bands, "dataMask", "CLM"]
    inputs = ", ".join(f'"{b}"' for b in names)
    values = ", ".join(f"s.{b}" for b in names)
    return (
        "//VERSION=3\n"
        "function setup() {\n"
        f'  return {{input: [{{bands: [{inputs}], units: "DN"}}],\n'
        f'          output: {{bands: {len(names)}, sampleType: "UINT16"}}}};\n'
        "}\n"
        f"function evaluatePixel(s) {{ return [{values}]; }}\n"
    )


# requests-oauthlib logs the token request body (with the client secret) at DEBUG level.
for _name in ("requests_oauthlib", "oauthlib"):
    logging.getLogger(_name).setLevel(logging.INFO)


def sentinelhub_config(profile: str | None = None, **overrides: str) -> SHConfig:
    """An SHConfig from the environment or the user's profile, without writing any file.

    (`SHConfig()` creates the user's config.toml when it is missing; this never does.)
    """
    from sentinelhub.config import SHConfig

    if profile == "cdse":
        profile, overrides = None, {**CDSE, **overrides}
    profile = profile or os.environ.get("SH_PROFILE")
    if os.path.exists(SHConfig.get_config_location()):
        try:
            config = SHConfig(profile)
        except KeyError:
            raise SourceError(
                f"no sentinelhub profile {profile!r} in the user's config.toml"
            ) from None
    elif profile:
        raise SourceError(
            f"no sentinelhub profile {profile!r}: the user's config.toml does not exist"
        )
    else:
        config = SHConfig(use_defaults=True)
        config.sh_client_id = os.environ.get("SH_CLIENT_ID", "")
        config.sh_client_secret = os.environ.get("SH_CLIENT_SECRET", "")
    for key, value in overrides.items():  # the profile's or the environment's, then these
        setattr(config, key, value)
    if not (config.sh_client_id and config.sh_client_secret):
        raise CredentialsError(
            "Sentinel Hub credentials missing: set SH_CLIENT_ID and SH_CLIENT_SECRET, or a "
            "sentinelhub profile with sh_client_id and sh_client_secret"
        )
    return config


def s2_l2a_collection(base_url: str) -> DataCollection:
    """Sentinel-2 L2A bound to `base_url` (the SDK otherwise sends S2 L2A to services.sentinel-hub.com
    whatever the configured base URL)."""
    from sentinelhub.constants import ServiceUrl
    from sentinelhub.data_collections import DataCollection

    collection = DataCollection.SENTINEL2_L2A
    if base_url.rstrip("/") == ServiceUrl.MAIN:
        return collection
    name = "PROM3E_S2L2A_" + hashlib.sha1(base_url.encode()).hexdigest()[:12]
    return collection.define_from(name, service_url=base_url)


def check_reachable(url: str, timeout: float = 5.0) -> None:
    """Fail fast, with one line, when a service's host does not resolve or refuses connections
    (no network, a typo): the client library would otherwise retry with sleeps for many
    minutes. Slow answers, 429s and 5xx are left to the retries."""
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except socket.gaierror:
        raise SourceError(
            f"cannot resolve {host} (from {url}): no network, or a wrong base_url/token_url"
        ) from None
    except (ConnectionRefusedError, OSError) as exc:
        if isinstance(exc, TimeoutError):
            return  # slow, not absent: the retries handle it
        raise SourceError(f"cannot connect to {host}:{port} (from {url}): {exc}") from None


log = logging.getLogger(__name__)


@dataclass
class TileFailure(Exception):
    reason: str
    retry: bool


@dataclass(frozen=True, kw_only=True)
class SentinelHubOptions(L2AOptions):
    """The L2A options, plus the request threads, the SDK's download attempts and 429
    retries, the rounds a failed request is sent again, and the service's URLs."""

    retry_wait: float = 5.0  # the SDK's download_sleep_time
    timeout: float = 120.0
    threads: int = 4
    attempts: int = 4
    max_429: int = 20
    rounds: int = 3
    base_url: str | None = None
    token_url: str | None = None


class SentinelHubSource:
    """Patches from the Sentinel Hub Process API (see the module docstring)."""

    name = "sentinelhub"
    Options = SentinelHubOptions

    def __init__(
        self, profile: str | None = None, options: SentinelHubOptions | None = None
    ) -> None:
        o = options or SentinelHubOptions()
        time, max_cloud, bands, tile_px = o.time, o.max_cloud, o.bands, o.tile_px
        size, resolution, max_nodata, threads = o.size, o.resolution, o.max_nodata, o.threads
        attempts, retry_wait, max_429, rounds = o.attempts, o.retry_wait, o.max_429, o.rounds
        timeout, base_url, token_url = o.timeout, o.base_url, o.token_url
        self.time, self.max_cloud = check_window(time, max_cloud)
        self.bands = band_names(bands)
        if not 1 <= int(tile_px) <= 2500:
            raise SourceError(f"tile_px {tile_px} is outside 1-2500 (the Process API maximum)")
        urls = {"sh_base_url": base_url, "sh_token_url": token_url}
        self.config = sentinelhub_config(profile, **{k: v for k, v in urls.items() if v})
        for url in {self.config.sh_token_url, self.config.sh_base_url}:
            check_reachable(url)
        self.config.max_download_attempts = int(attempts)
        self.config.download_sleep_time = float(retry_wait)
        self.config.max_retries = int(max_429)
        self.config.download_timeout_seconds = float(timeout)
        self.collection = s2_l2a_collection(self.config.sh_base_url)
        self.size, self.resolution = int(size), float(resolution)
        self.max_nodata = float(max_nodata)
        self.tile_px, self.threads = int(tile_px), int(threads)
        # a request whose payload is broken or whose SDK retries ran out is sent again
        self.rounds = RetryPolicy(int(rounds), float(retry_wait), float(timeout))
        self.traffic = TrafficCounter("requests", "bytes")

    def describe(self) -> dict[str, Any]:
        return {
            "source": "sentinelhub",
            "base_url": self.config.sh_base_url,
            "collection": "sentinel-2-l2a",
            "time": "/".join(self.time),
            "max_cloud": self.max_cloud,
            "bands": list(self.bands),
            "mosaicking": "leastCC",
            "size_px": self.size,
            "resolution_m": self.resolution,
        }

    def stats(self) -> dict[str, int]:
        return self.traffic.snapshot()

    def close(self) -> None:
        """Nothing to release: each download round opens and closes its own client."""

    def fetch(self, lon: np.ndarray, lat: np.ndarray) -> PatchBatch:
        placement = PatchPlacement.snapped(lon, lat, self.size, self.resolution)
        n = placement.epsg.size
        batch = PatchBatch(
            np.zeros((n, self.size, self.size, len(self.bands)), dtype=np.float32),
            np.zeros(n, dtype=bool),
            [{"error": "not fetched"} for _ in range(n)],
        )
        tiles = list(request_tiles(placement, self.tile_px))
        with ThreadPoolExecutor(self.threads, thread_name_prefix="prom3e-sentinelhub") as pool:
            for tile, result in zip(tiles, pool.map(self._tile, tiles), strict=True):
                if isinstance(result, TileFailure):
                    for i in tile.cells:
                        batch.meta[i] = {"error": result.reason}
                else:
                    self._cut(tile, result, placement, batch)
        return batch

    def _tile(self, tile: RequestTile) -> np.ndarray | TileFailure:
        """One tile's data, its request sent again (under the round policy) while it fails in
        a way worth retrying; or the reason it failed."""

        def attempt() -> np.ndarray:
            return self._decode(tile, self._request(tile))

        def transient(exc: BaseException) -> bool:
            if isinstance(exc, TileFailure) and exc.retry:
                log.info("Sentinel Hub: a request failed (%s); sending it again", exc.reason)
                return True
            return False

        try:
            return self.rounds.call(attempt, transient)
        except TileFailure as failure:
            return failure

    def _request(self, tile: RequestTile) -> object:
        """One Process API request through the SDK's public client (which retries 5xx,
        timeouts and 429s as configured): its DownloadResponse, or the exception it failed
        with. A request refused for its token (revoked or expired early) is sent once more with
        a new token."""
        from oauthlib.oauth2 import OAuth2Error
        from sentinelhub.api.process import SentinelHubRequest
        from sentinelhub.constants import CRS, MimeType, MosaickingOrder
        from sentinelhub.download.sentinelhub_client import SentinelHubDownloadClient
        from sentinelhub.exceptions import DownloadFailedException, SHRateLimitWarning
        from sentinelhub.geometry import BBox

        request = SentinelHubRequest(
            evalscript=evalscript(self.bands),
            input_data=[
                SentinelHubRequest.input_data(
                    self.collection,
                    time_interval=self.time,
                    maxcc=self.max_cloud,
                    mosaicking_order=MosaickingOrder.LEAST_CC,
                )
            ],
            responses=[SentinelHubRequest.output_response("default", MimeType.TIFF)],
            bbox=BBox(tile.bounds, crs=CRS(tile.epsg)),
            size=(tile.width, tile.height),
            config=self.config,
        ).download_list[0]
        for renewed in (False, True):
            self.traffic.add("requests")
            client = SentinelHubDownloadClient(config=self.config)
            try:
                with warnings.catch_warnings():  # each 429 warns; they are retried and counted
                    warnings.simplefilter("ignore", SHRateLimitWarning)
                    return client.download([request], max_threads=1, decode_data=False)[0]
            except OAuth2Error as exc:
                raise CredentialsError(
                    f"Sentinel Hub rejected the credentials at {self.config.sh_token_url} "
                    f"({exc.error})"
                ) from None
            except DownloadFailedException as exc:
                if renewed or _status(exc) != 401:
                    return exc
                SentinelHubDownloadClient.clear_cache()  # the next request asks for a new token
            except Exception as exc:  # recorded per tile, never fatal to the run
                return exc
        raise AssertionError("unreachable: the renewed request returns")

    def _decode(self, tile: RequestTile, result: object) -> np.ndarray:
        """The tile's [bands + 2, H, W] uint16 array, checked against what was asked for."""
        from sentinelhub.download.models import DownloadResponse

        if isinstance(result, Exception):
            raise _failure(result)
        if not isinstance(result, DownloadResponse):
            raise TileFailure("no response", retry=True)
        self.traffic.add("bytes", len(result.content))
        try:
            with MemoryFile(result.content) as memory, memory.open() as ds:
                data: np.ndarray = ds.read()
                grid_ok = (
                    ds.crs is not None
                    and ds.crs.to_epsg() == tile.epsg
                    and (ds.width, ds.height) == (tile.width, tile.height)
                    and np.allclose(ds.bounds, tile.bounds, atol=self.resolution / 100)
                )
        except rasterio.errors.RasterioError:
            raise TileFailure("corrupt GeoTIFF payload", retry=True) from None
        if data.shape[0] != len(self.bands) + 2 or not grid_ok:
            raise TileFailure("payload is not the requested grid", retry=True)
        return data

    def _cut(
        self, tile: RequestTile, data: np.ndarray, placement: PatchPlacement, batch: PatchBatch
    ) -> None:
        rows, cols = tile.offsets(placement)
        s = self.size
        for i, r, c in zip(tile.cells, rows, cols, strict=True):
            block = data[:, r : r + s, c : c + s]
            covered = block[-2] > 0  # dataMask
            nodata = 1.0 - float(covered.mean())
            spectral = np.moveaxis(block[:-2], 0, -1)
            batch.patches[i] = np.where(covered[..., None], spectral, 0) / 1e4
            batch.valid[i] = nodata <= self.max_nodata
            cloud = float((block[-1][covered] > 0).mean()) if covered.any() else 1.0
            batch.meta[i] = {
                "scene": f"S2L2A leastCC {'/'.join(self.time)}",
                "cloud_fraction": round(cloud, 4),
                "nodata_fraction": round(nodata, 4),
                **({} if batch.valid[i] else {"error": "mostly nodata"}),
            }


def _failure(exc: Exception) -> TileFailure:
    """A recorded reason for a failed request: status and type only, never its text (which may
    quote request details)."""
    from sentinelhub.exceptions import OutOfRequestsException

    if isinstance(exc, OutOfRequestsException):
        return TileFailure("HTTP 429 rate limit (retries exhausted)", retry=True)
    code = _status(exc)
    if code is not None:
        if code == 401:
            return TileFailure("HTTP 401 token rejected", retry=False)
        if code == 403:
            return TileFailure("HTTP 403 forbidden (quota exhausted or no access)", retry=False)
        return TileFailure(f"HTTP {code}", retry=code >= 500 or code == 429)
    cause = getattr(exc, "request_exception", None) or exc
    return TileFailure(type(cause).__name__, retry=True)


def _status(exc: Exception) -> int | None:
    """The HTTP status behind a failed download, if there was a response."""
    response = getattr(getattr(exc, "request_exception", None), "response", None)
    return None if response is None else response.status_code
