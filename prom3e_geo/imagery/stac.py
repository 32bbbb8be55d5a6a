"""The `stac` source: Sentinel-2 L2A patches from a STAC API's cloud-optimised GeoTIFFs.

Specs: `stac` (Element 84 Earth Search, `sentinel-2-l2a`, anonymous) or `stac:URL` (any STAC
API; Planetary Computer URLs are signed with the `planetary_computer` package when it is
installed). Options after `?`: collection, time (start/end), max_cloud (0-1), bands (rgb or all),
tile_px, max_items, retries, retry_wait (s), timeout (s), assets (the asset keys of the bands,
comma-separated; Earth Search's by default), workers (threads reading patches).

Cells are grouped into the same UTM request tiles as the Sentinel Hub source; each tile is one
search (bbox, time window, `eo:cloud_cover` below the limit). Every cell takes the least-cloudy
item whose footprint contains it, falling back to the next one when that item's pixels are
mostly nodata there. Request tiles are searched by a few threads at once and their cells read by
`workers` threads (latency is hidden by overlapping requests: each cell's patch is a windowed,
reprojected read, `geometry.warp_patch`, on handles its thread opened, so only the header and
the COG blocks under the patch travel; GDAL's cache keeps a header once per asset). Where a tile
holds more cells of an item than its share of the threads, a thread reads several on the same
handles (fewer opens, and blocks shared by neighbouring patches read once). Digital numbers
become reflectance as (DN - offset) / 10000, where the offset is 1000 for processing baseline
04.00 and later unless the provider already removed it (`earthsearch:boa_offset_applied`), so
values match across baselines.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
from shapely.geometry import Point, shape

from prom3e_geo.errors import SourceError
from prom3e_geo.imagery.base import (
    L2AOptions,
    PatchBatch,
    TrafficCounter,
    band_names,
    check_window,
)
from prom3e_geo.imagery.geometry import PatchPlacement, RequestTile, request_tiles, warp_patch
from prom3e_geo.net import RetryPolicy

if TYPE_CHECKING:
    from pystac import Item
    from pystac_client import Client

EARTH_SEARCH = "https://earth-search.aws.element84.com/v1"
EARTH_SEARCH_ASSETS = {  # band -> asset key
    "B04": "red",
    "B03": "green",
    "B02": "blue",
    "B01": "coastal",
    "B05": "rededge1",
    "B06": "rededge2",
    "B07": "rededge3",
    "B08": "nir",
    "B8A": "nir08",
    "B09": "nir09",
    "B11": "swir16",
    "B12": "swir22",
}


def boa_offset(properties: dict[str, Any]) -> float:
    """The digital-number offset still present in an L2A item's assets."""
    if properties.get("earthsearch:boa_offset_applied"):
        return 0.0
    try:
        baseline = float(properties.get("s2:processing_baseline", "0"))
    except ValueError:
        return 0.0
    return 1000.0 if baseline >= 4.0 else 0.0


@dataclass(frozen=True, kw_only=True)
class StacOptions(L2AOptions):
    """The L2A options, plus the collection, the most items a search returns, the retries
    and the asset keys of the bands (comma-separated; Earth Search's by default)."""

    collection: str = "sentinel-2-l2a"
    max_items: int = 200
    retries: int = 5
    assets: str | None = None
    workers: int = 64


class StacSource:
    """Patches from a STAC API with COG assets (see the module docstring)."""

    name = "stac"
    Options = StacOptions

    def __init__(self, url: str | None = None, options: StacOptions | None = None) -> None:
        o = options or StacOptions()
        time, max_cloud, bands, assets = o.time, o.max_cloud, o.bands, o.assets
        size, resolution, tile_px, max_nodata = o.size, o.resolution, o.tile_px, o.max_nodata
        retries, retry_wait, timeout = o.retries, o.retry_wait, o.timeout
        collection, max_items = o.collection, o.max_items
        window, self.max_cloud = check_window(time, max_cloud)
        self.time = "/".join(window)
        self.bands = band_names(bands)
        self.url, self.collection = url or EARTH_SEARCH, collection
        self.size, self.resolution, self.tile_px = int(size), float(resolution), int(tile_px)
        self.max_nodata, self.max_items = float(max_nodata), int(max_items)
        if assets is None:
            self.assets = [EARTH_SEARCH_ASSETS[b] for b in self.bands]
        else:
            self.assets = [a.strip() for a in str(assets).split(",")]
        if len(self.assets) != len(self.bands):
            raise SourceError(
                f"assets {assets!r}: name {len(self.bands)} asset keys, for {', '.join(self.bands)}"
            )
        self.gdal_env = {
            "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
            "AWS_NO_SIGN_REQUEST": "YES",
            "GDAL_HTTP_MAX_RETRY": str(int(retries)),
            "GDAL_HTTP_RETRY_DELAY": str(float(retry_wait)),
            "GDAL_HTTP_TIMEOUT": str(int(timeout)),
            "VSI_CACHE": "TRUE",
            # the header of a COG in one request, neighbouring blocks in one range request
            "GDAL_INGESTED_BYTES_AT_OPEN": "32768",
            "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        }
        # request tiles are searched by a few threads, their cells read by `workers` threads,
        # each opening its own handles (a GDAL dataset is not thread-safe); the connections
        # held never exceed the threads of the two pools
        self.workers = int(o.workers)
        searchers = min(8, self.workers)
        self._tile_pool = ThreadPoolExecutor(searchers, "prom3e-stac-search")
        self._read_pool = ThreadPoolExecutor(self.workers, "prom3e-stac-read")
        # a tile's cells in an item are read by this many jobs at most (twice its share of the
        # read threads, so that threads do not idle while a tile's last jobs finish); cells
        # beyond that share a job's asset handles (an open is a round trip and ~1 ms of CPU)
        # and the blocks GDAL has cached for them
        self.jobs_per_tile = max(1, 2 * self.workers // searchers)
        self.policy = RetryPolicy(int(retries), float(retry_wait), float(timeout))
        self._client: Client | None = None
        self._lock = threading.Lock()
        self.traffic = TrafficCounter("searches", "asset opens")

    def _open(self) -> Client:
        from pystac_client import Client
        from pystac_client.stac_api_io import StacApiIO

        policy = self.policy
        io = StacApiIO(max_retries=policy.urllib3_retry(), timeout=policy.timeout)
        return Client.open(self.url, stac_io=io, modifier=_signer(self.url))

    @property
    def client(self) -> Client:
        """The API client, opened on first use: a pipeline whose cells are all stored already
        (a finished store, an offline re-run) never contacts the catalogue."""
        with self._lock:
            if self._client is None:
                try:
                    self._client = self._open()
                except Exception as exc:
                    raise SourceError(
                        f"cannot open the STAC API at {self.url}: {type(exc).__name__}"
                    ) from None
            return self._client

    def describe(self) -> dict[str, Any]:
        return {
            "source": "stac",
            "url": self.url,
            "collection": self.collection,
            "time": self.time,
            "max_cloud": self.max_cloud,
            "bands": list(self.bands),
            "assets": self.assets,
            "size_px": self.size,
            "resolution_m": self.resolution,
        }

    def stats(self) -> dict[str, Any]:
        return self.traffic.snapshot()

    def close(self) -> None:
        """Stop the search and read threads."""
        self._tile_pool.shutdown(wait=True)
        self._read_pool.shutdown(wait=True)

    def fetch(self, lon: np.ndarray, lat: np.ndarray) -> PatchBatch:
        lon, lat = np.ravel(lon).astype(float), np.ravel(lat).astype(float)
        self.client  # noqa: B018 - an API that cannot be opened is an input error, not failed cells
        placement = PatchPlacement.snapped(lon, lat, self.size, self.resolution)
        n = lon.size
        batch = PatchBatch(
            np.zeros((n, self.size, self.size, len(self.bands)), dtype=np.float32),
            np.zeros(n, dtype=bool),
            [{"error": f"no scene below {self.max_cloud:.0%} cloud"} for _ in range(n)],
        )
        tiles = list(request_tiles(placement, self.tile_px, split_sparse=False))
        for _ in self._tile_pool.map(lambda t: self._fill(t, lon, lat, placement, batch), tiles):
            pass
        return batch

    def _fill(
        self,
        tile: RequestTile,
        lon: np.ndarray,
        lat: np.ndarray,
        placement: PatchPlacement,
        batch: PatchBatch,
    ) -> None:
        """The cells of one request tile: a search, then each cell from the least cloudy item
        that holds it with data (the cells of an item read in parallel)."""
        try:
            items = self._search(tile)
        except Exception as exc:
            for i in tile.cells:
                batch.meta[i] = {"error": f"STAC search failed ({type(exc).__name__})"}
            return
        remaining = list(tile.cells)
        for item in items:
            footprint = shape(item.geometry)
            cells = [i for i in remaining if footprint.contains(Point(lon[i], lat[i]))]
            if cells:
                # at most `jobs_per_tile` jobs, each reading its cells on handles opened once
                groups = np.array_split(cells, min(len(cells), self.jobs_per_tile))
                jobs = [
                    self._read_pool.submit(self._read, item, group.tolist(), placement, batch)
                    for group in groups
                ]
                for job in jobs:
                    job.result()
                remaining = [i for i in remaining if not batch.valid[i]]
            if not remaining:
                break

    def _search(self, tile: RequestTile) -> list[Item]:
        """Items over the tile in the time window, least cloudy first."""
        self.traffic.add("searches")
        search = self.client.search(
            collections=[self.collection],
            bbox=tile.lonlat_bounds(),
            datetime=self.time,
            query={"eo:cloud_cover": {"lt": self.max_cloud * 100}},
            max_items=self.max_items,
        )
        items = list(search.items())
        return sorted(items, key=lambda item: item.properties.get("eo:cloud_cover", 100.0))

    def _read(
        self, item: Item, cells: list[int], placement: PatchPlacement, batch: PatchBatch
    ) -> None:
        """The patches of `cells` from one item, in this thread: each asset opened once for
        all of them, one at a time (a thread holds one connection)."""
        missing = [a for a in self.assets if a not in item.assets]
        if missing:
            for i in cells:
                batch.meta[i] = {"error": f"item {item.id} lacks asset(s) {', '.join(missing)}"}
            return
        try:
            with rasterio.Env(**self.gdal_env):
                for k, asset in enumerate(self.assets):
                    with rasterio.open(item.assets[asset].href) as ds:
                        self.traffic.add("asset opens")
                        for i in cells:  # each band straight into the batch (channels last)
                            band = batch.patches[i].transpose(2, 0, 1)[k : k + 1]
                            crs, transform = placement.crs(i), placement.transform(i)
                            warp_patch([(ds, 1)], crs, transform, self.size, band)
        except rasterio.errors.RasterioError as exc:
            for i in cells:
                batch.patches[i] = 0.0  # no half-read patch left behind
                batch.meta[i] = {"error": f"asset read failed ({type(exc).__name__})"}
            return
        offset = boa_offset(item.properties)
        cloud = item.properties.get("eo:cloud_cover")
        for i in cells:
            patch = batch.patches[i]
            holes = np.isnan(patch)
            nodata = float(_any_band(holes).mean())
            if nodata > self.max_nodata:
                patch[...] = 0.0  # invalid stays zero (a later item may still fill it)
                batch.meta[i] = {"error": "mostly nodata", "scene": item.id}
                continue
            patch -= offset  # in place: a patch is 0.8 MB of float32 per pass
            patch /= 1e4
            np.putmask(patch, holes, 0.0)  # integer bands read or warped: NaN, never inf
            batch.valid[i] = True
            batch.meta[i] = {
                "scene": item.id,
                "date": str(item.properties.get("datetime", ""))[:10],
                "cloud_fraction": None if cloud is None else round(cloud / 100, 4),
                "nodata_fraction": round(nodata, 4),
                "boa_offset": offset,
            }


def _any_band(mask: np.ndarray) -> np.ndarray:
    """`mask.any(axis=-1)` of a channels-last mask, band by band: numpy reduces a last axis of
    three elements one pixel at a time, 8x slower."""
    out = mask[..., 0].copy()
    for band in range(1, mask.shape[-1]):
        out |= mask[..., band]
    return out


def _signer(url: str) -> Callable[[Any], None] | None:
    """Planetary Computer's asset-signing modifier for its URLs, else None."""
    if "planetarycomputer" not in url:
        return None
    try:
        import planetary_computer
    except ImportError:
        raise SourceError(
            "Planetary Computer assets must be signed: pip install planetary-computer"
        ) from None
    sign: Callable[[Any], None] = planetary_computer.sign_inplace
    return sign
