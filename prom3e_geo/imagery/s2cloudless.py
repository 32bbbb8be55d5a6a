"""The `s2cloudless` source: Sentinel-2 cloudless, the imagery TaxaBind's satellite tower saw.

iSatNat, the satellite half of TaxaBind's training data, credits "Sentinel-2 cloudless 2020 by
EOX IT Services GmbH" (its dataset card): an annual cloud-free RGB mosaic, served by EOX as
WMTS/XYZ tiles in Web Mercator (256 px JPEG, layer `s2cloudless-YEAR_3857`). Its patches were
made by MVRL's MapProxy/WMS download script (`download_sentinel.py`, CVGlobal, as published in
mvrl/geoclap): a square of +-`radius` metres on the local tangent plane centred on the point,
returned as `size` x `size` px in EPSG:4326 with bilinear resampling (defaults radius 512 m and
256 px, so 4 m/px). `docs/s2cloudless.md` holds the evidence and what is inferred.

Each patch is made the same way from the XYZ tiles: the tiles at `zoom` (14: about 9.5 m/px at
the equator, the mosaic's 10 m; EOX upsamples above it) that cover the square are fetched,
decoded, mosaicked with their Web Mercator transform and reprojected
bilinearly onto the patch's EPSG:4326 grid. Patches are uint8 display RGB (what the tower saw);
the satellite tower takes uint8 as is.

Spec: `s2cloudless[?year=2020&url=TEMPLATE&zoom=14&radius=512]`; `url` is a tile template with
`{z}`, `{x}`, `{y}` (and optionally `{year}`), EOX's by default. Tiles are fetched by `workers`
threads, each over a keep-alive connection of its own (at most `workers` connections), retried
on 429 (honouring Retry-After) and 5xx; a missing tile (404) or a server that keeps failing
invalidates only the cells that need it.
Decoded tiles are kept in a small in-memory cache, so neighbouring cells share their reads.

Licence: CC BY-NC-SA 4.0 (EOX); every output made from it carries the attribution.
"""

from __future__ import annotations

import io
import math
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from prom3e_geo.errors import SourceError
from prom3e_geo.imagery.base import RGB_BANDS, PatchBatch, TrafficCounter
from prom3e_geo.net import RETRY_STATUSES, RetryPolicy, pool, reason

EOX_TILES = "https://tiles.maps.eox.at/wmts/1.0.0/s2cloudless-{year}_3857/default/g/{z}/{y}/{x}.jpg"
LICENCE = "CC BY-NC-SA 4.0"
ATTRIBUTION = (
    "Sentinel-2 cloudless - https://s2maps.eu by EOX IT Services GmbH "
    "(Contains modified Copernicus Sentinel data {year})"
)
TILE = 256  # px, GoogleMapsCompatible tile matrix
ORIGIN = 20037508.342789244  # Web Mercator half-extent (m)
WGS84_A, WGS84_E2 = 6378137.0, 6.69437999014e-3


def tangent_box(lon: np.ndarray, lat: np.ndarray, radius: float) -> np.ndarray:
    """[N, 4] lon/lat bounds (west, south, east, north) of the +-radius m square on the local
    tangent plane at each point (the meridian and prime-vertical radii of WGS84; the second-order
    difference from an exact ENU-to-geodetic conversion is below a millimetre at 512 m)."""
    phi = np.radians(lat)
    w = 1 - WGS84_E2 * np.sin(phi) ** 2
    meridian = WGS84_A * (1 - WGS84_E2) / w**1.5
    normal = WGS84_A / np.sqrt(w)
    dlat = np.degrees(radius / meridian)
    dlon = np.degrees(radius / (normal * np.cos(phi)))
    return np.stack([lon - dlon, lat - dlat, lon + dlon, lat + dlat], axis=1)


def mercator_x(lon: np.ndarray) -> np.ndarray:
    """Web Mercator (EPSG:3857) easting, metres, of longitudes in degrees."""
    easting: np.ndarray = np.radians(lon) * WGS84_A
    return easting


def mercator_y(lat: np.ndarray) -> np.ndarray:
    """Web Mercator (EPSG:3857) northing, metres, of latitudes in degrees."""
    northing: np.ndarray = np.log(np.tan(np.pi / 4 + np.radians(lat) / 2)) * WGS84_A
    return northing


class TileError(Exception):
    """A tile that could not be had (the message is the reason a cell failed)."""


class S2CloudlessSource:
    """Patches from the Sentinel-2 cloudless XYZ tiles (see the module docstring)."""

    name = "s2cloudless"
    radiometry = "display"  # uint8 display RGB, not reflectance

    def __init__(
        self,
        *,
        size: int = 256,
        resolution: float | None = None,
        radius: float = 512.0,
        year: int = 2020,
        url: str | None = None,
        zoom: int = 14,
        workers: int = 64,
        retries: int = 4,
        retry_wait: float = 0.5,
        timeout: float = 30.0,
        cache_tiles: int = 512,
    ) -> None:
        self.size = int(size)
        if self.size < 8:
            raise SourceError(f"s2cloudless: size {size} px is too small")
        # `resolution` (m/px) is how a pipeline states its patch scale: the square then spans
        # size x resolution metres
        self.radius = float(radius) if resolution is None else self.size * float(resolution) / 2
        if not 0 < self.radius <= 50_000:
            raise SourceError(f"s2cloudless: radius {self.radius:g} m is not in (0, 50000]")
        self.year, self.zoom = int(year), int(zoom)
        if not 0 <= self.zoom <= 20:
            raise SourceError(f"s2cloudless: zoom {zoom} is not a tile level 0-20")
        template = url or EOX_TILES
        if not all(k in template for k in ("{z}", "{x}", "{y}")):
            raise SourceError(f"s2cloudless: url {template!r} needs {{z}}, {{x}} and {{y}}")
        self.template = template.replace("{year}", str(self.year))
        self.bands = RGB_BANDS
        self.workers, self.timeout = int(workers), float(timeout)
        self.traffic = TrafficCounter("requests", "bytes", "tiles_failed")
        self._tiles: OrderedDict[tuple[int, int], np.ndarray | TileError] = OrderedDict()
        self._capacity = int(cache_tiles)
        self._lock = threading.Lock()
        policy = RetryPolicy(int(retries), float(retry_wait), self.timeout)
        host = self.template.format(z=0, x=0, y=0)  # every tile comes from this host
        # a connection of its own for each download thread: a pool shared by 64 threads spent
        # more on its lock than on the requests
        self._connections = [
            pool(policy, 1, "s2cloudless source", host) for _ in range(self.workers)
        ]
        unused = list(self._connections)
        self._local = threading.local()

        def take_connection() -> None:
            self._local.http = unused.pop()

        self._pool = ThreadPoolExecutor(
            self.workers, thread_name_prefix="prom3e-s2cloudless", initializer=take_connection
        )

    def describe(self) -> dict[str, Any]:
        return {
            "source": "s2cloudless",
            "tiles": self.template.split("?")[0],
            "year": self.year,
            "zoom": self.zoom,
            "size_px": self.size,
            "radius_m": self.radius,
            "resolution_m": 2 * self.radius / self.size,
            "crs": "EPSG:4326",
            "attribution": ATTRIBUTION.format(year=self.year),
            "licence": LICENCE,
        }

    def stats(self) -> dict[str, Any]:
        """Tile requests, bytes received and tiles that failed, so far."""
        return self.traffic.snapshot()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for http in self._connections:
            http.clear()

    # -- patches ------------------------------------------------------------------------------
    def fetch(self, lon: np.ndarray, lat: np.ndarray) -> PatchBatch:
        lon, lat = np.ravel(lon).astype(np.float64), np.ravel(lat).astype(np.float64)
        boxes = tangent_box(lon, lat, self.radius)
        spans = [self.tile_span(b) for b in boxes]
        # tiles asked for in the order the cells need them, so that each cell is warped as soon
        # as its own tiles are in while the others are still on their way
        needed = dict.fromkeys(t for span in spans if span for t in tiles_of(span))
        pending = {t: self._pool.submit(self._tile, t) for t in needed}
        tiles: dict[tuple[int, int], np.ndarray | TileError] = {}
        patches = np.zeros((lon.size, self.size, self.size, 3), dtype=np.uint8)
        valid = np.zeros(lon.size, dtype=bool)
        meta: list[dict[str, Any]] = []
        for i, (box, span) in enumerate(zip(boxes, spans, strict=True)):
            if span is None:
                meta.append({"error": "outside the Web Mercator tiles (|lat| > 85.05)"})
                continue
            for t in tiles_of(span):
                if t not in tiles:
                    tiles[t] = pending[t].result()
            failed = [tiles[t] for t in tiles_of(span) if isinstance(tiles[t], TileError)]
            if failed:
                meta.append({"error": str(failed[0])})
                continue
            ready = {t: v for t in tiles_of(span) if isinstance(v := tiles[t], np.ndarray)}
            patches[i] = self._warp(box, span, ready)
            valid[i] = True
            meta.append({"scene": f"s2cloudless {self.year} z{self.zoom}"})
        return PatchBatch(patches, valid, meta)

    def tile_span(self, box: np.ndarray) -> tuple[int, int, int, int] | None:
        """(x0, y0, x1, y1) inclusive tile indices at the source's zoom covering a lon/lat box
        (a row of `tangent_box`), None off the map."""
        west, south, east, north = box
        if max(abs(south), abs(north)) > 85.0511:
            return None
        n = 2**self.zoom
        x0, y1 = _tile_xy(west, south, n)
        x1, y0 = _tile_xy(east, north, n)
        return x0, y0, x1, y1

    def _warp(
        self,
        box: np.ndarray,
        span: tuple[int, int, int, int],
        tiles: dict[tuple[int, int], np.ndarray],
    ) -> np.ndarray:
        """The tiles of `span` mosaicked and resampled bilinearly onto the patch's EPSG:4326
        grid, sampling at pixel centres as GDAL's warper does. Lon/lat to Web Mercator is
        separable (x from lon, y from lat), so each output row and column has its own pair of
        source rows and columns and weights."""
        x0, y0, x1, y1 = span
        if (x0, y0) == (x1, y1):
            mosaic = tiles[(x0, y0)]
        else:
            mosaic = np.empty(((y1 - y0 + 1) * TILE, (x1 - x0 + 1) * TILE, 3), dtype=np.uint8)
            for tx, ty in tiles_of(span):
                r, c = (ty - y0) * TILE, (tx - x0) * TILE
                mosaic[r : r + TILE, c : c + TILE] = tiles[(tx, ty)]
        west, south, east, north = box
        centres = (np.arange(self.size) + 0.5) / self.size
        x = mercator_x(west + centres * (east - west))
        y = mercator_y(north - centres * (north - south))
        pixel = 2 * ORIGIN / (TILE * 2**self.zoom)
        c0, fx = _neighbours((x + ORIGIN) / pixel - x0 * TILE - 0.5, mosaic.shape[1])
        r0, fy = _neighbours((ORIGIN - y) / pixel - y0 * TILE - 0.5, mosaic.shape[0])
        # the window under the patch (uint8), its columns gathered and blended first, then its
        # rows (contiguous), in float32: a + (b - a) * f, computed in place on `take`'s copies
        # (fancy indexing along the middle axis was 3x slower); the blend of two uint8 values
        # stays in [0, 255], so adding 0.5 and truncating rounds half up
        top, left = int(r0[0]), int(c0[0])
        window = mosaic[top : int(r0[-1]) + 2, left : int(c0[-1]) + 2]
        west_px = window.take(c0 - left, axis=1).astype(np.float32)
        cols = window.take(c0 + 1 - left, axis=1).astype(np.float32)
        cols -= west_px
        cols *= fx[None, :, None]
        cols += west_px
        upper = cols.take(r0 - top, axis=0)
        out = cols.take(r0 + 1 - top, axis=0)
        out -= upper
        out *= fy[:, None, None]
        out += upper
        out += 0.5
        patch: np.ndarray = out.astype(np.uint8)
        return patch

    # -- tiles --------------------------------------------------------------------------------
    def _tile(self, key: tuple[int, int]) -> np.ndarray | TileError:
        """[256, 256, 3] uint8 of tile (x, y) at the zoom, or the TileError it failed with
        (remembered for this source's life, so a missing tile is asked for once)."""
        with self._lock:
            if key in self._tiles:
                self._tiles.move_to_end(key)
                return self._tiles[key]
        tile = self._download(*key)
        with self._lock:
            self._tiles[key] = tile
            while len(self._tiles) > self._capacity:
                self._tiles.popitem(last=False)
        return tile

    def _download(self, x: int, y: int) -> np.ndarray | TileError:
        from urllib3.exceptions import HTTPError

        url = self.template.format(z=self.zoom, x=x, y=y)
        self.traffic.add("requests")
        try:
            response = self._local.http.request("GET", url)
        except HTTPError as exc:
            self.traffic.add("tiles_failed")
            return TileError(f"tile z{self.zoom}/{x}/{y}: {reason(exc)}")
        content = response.data
        self.traffic.add("bytes", len(content))
        status = response.status
        if status != 200:
            self.traffic.add("tiles_failed")
            what = "no such tile" if status == 404 else "server error"
            if status in RETRY_STATUSES:
                what = "the server kept failing"
            return TileError(f"tile z{self.zoom}/{x}/{y}: {what} (HTTP {status})")
        try:
            return _decode(content)
        except ValueError as exc:
            self.traffic.add("tiles_failed")
            return TileError(f"tile z{self.zoom}/{x}/{y}: {exc}")


def _tile_xy(lon: float, lat: float, n: int) -> tuple[int, int]:
    """The XYZ tile holding a lon/lat point at a level of n x n tiles."""
    x = (lon + 180.0) / 360.0 * n
    phi = math.radians(lat)
    y = (1.0 - math.log(math.tan(phi) + 1.0 / math.cos(phi)) / math.pi) / 2.0 * n
    return min(max(int(x), 0), n - 1), min(max(int(y), 0), n - 1)


def _neighbours(position: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """For fractional pixel positions (pixel centres at integers): the lower neighbour and the
    weight of the upper one; the edge pixel is repeated beyond the ends."""
    position = np.clip(position, 0, length - 1)
    low = np.minimum(np.floor(position).astype(np.int64), length - 2)
    return low, (position - low).astype(np.float32)


def tiles_of(span: tuple[int, int, int, int]) -> list[tuple[int, int]]:
    x0, y0, x1, y1 = span
    return [(x, y) for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)]


def _decode(data: bytes) -> np.ndarray:
    """A tile's bytes (JPEG or PNG) as [256, 256, 3] uint8 (PIL: a tile carries no
    georeference of its own, its place is its z/x/y)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            pixels: np.ndarray = np.asarray(img if img.mode == "RGB" else img.convert("RGB"))
    except (UnidentifiedImageError, OSError):
        raise ValueError("not an image (JPEG or PNG) that can be decoded") from None
    if pixels.shape[:2] != (TILE, TILE):
        raise ValueError(f"a {pixels.shape[1]} x {pixels.shape[0]} tile, not 256 x 256")
    return pixels
